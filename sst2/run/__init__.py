"""A run: its options, the registries naming what it computes, its folder and its files.

The registries (target kinds, metrics, poolings) import without TensorFlow.
"""
