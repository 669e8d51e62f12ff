"""What this machine is good at: where XLA pays (its precision: `sst2.model.precision`).

The policies are measured (docs/measurements.md): on CPUs oneDNN's matmuls beat
XLA's, so XLA compiles only what it fuses well there.

Example:
    >>> backbone_jit(True) == has_accelerator()
    True
"""

import tensorflow as tf


def has_accelerator() -> bool:
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def backbone_jit(jit_compile: bool) -> bool:
    """XLA for the backbone only on accelerators: on CPU the fused oneDNN path is faster."""
    return jit_compile and has_accelerator()


def head_jit(jit_compile: bool, has_transformer_blocks: bool) -> bool:
    """XLA for the head's steps, except transformer blocks on CPU (oneDNN's matmuls win)."""
    return jit_compile and (has_accelerator() or not has_transformer_blocks)

