"""The pretrained backbone, its frozen features and the head over them."""
