"""A trained run restored, and the SavedModel on raw strings."""
