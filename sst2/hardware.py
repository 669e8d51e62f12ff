"""What this machine is good at: the backbone's precision and where XLA pays.

The policies are measured (docs/measurements.md): on CPUs, oneDNN's bfloat16
matmuls run at about twice float32 where the CPU has AVX512-BF16 or AMX, and
oneDNN's matmuls beat XLA's, so XLA compiles only what it fuses well there.

Example:
    >>> resolve_precision("float32")
    'float32'
    >>> resolve_precision("auto") in ("float32", "bfloat16")
    True
"""

import tensorflow as tf


def has_accelerator() -> bool:
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def cpu_has_bfloat16() -> bool:
    """Whether the CPU has bfloat16 matmul units (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """`auto` -> `bfloat16` on accelerators and bfloat16 CPUs, else `float32`."""
    if precision != "auto":
        return precision
    return "bfloat16" if has_accelerator() or cpu_has_bfloat16() else "float32"


def backbone_jit(jit_compile: bool) -> bool:
    """XLA for the backbone only on accelerators: on CPU the fused oneDNN path is faster."""
    return jit_compile and has_accelerator()


def head_jit(jit_compile: bool, has_transformer_blocks: bool) -> bool:
    """XLA for the head's steps, except transformer blocks on CPU (oneDNN's matmuls win)."""
    return jit_compile and (has_accelerator() or not has_transformer_blocks)

