"""The SavedModel's graph: raw strings to answers (windows, packing, the answer), word
attributions, and the audit of the ops it needs."""
