"""Labelled text: GLUE SST-2 through tfds, local files, labels, tokens and batches."""
