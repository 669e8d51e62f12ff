"""sst2: a DistilBERT sentiment classifier on GLUE SST-2, trained with a TensorFlow loop."""

import os

# This project is TensorFlow-native; keras-hub must use the TensorFlow backend.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# oneDNN's graph rewrites (matmuls fused with their epilogues, LayerNorm and softmax as
# one kernel each): TensorFlow turns them on by itself only on CPUs with AVX-512 and
# newer; on an AVX2-only CPU they make the encode pass 1.5x faster (docs/measurements.md,
# "The encode pass where oneDNN is off"). Set it to 0 to run TensorFlow's own default.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def _xla_without_onednn() -> None:
    """XLA's CPU compiler, which the pooled heads' steps use, swaps its own matmuls for
    oneDNN's when oneDNN is on: there the head phase took 2x as long (same numbers).
    Its own are kept, on the TensorFlow this was measured on (2.21; an older XLA would
    refuse the flag)."""
    from importlib import metadata

    try:
        version = tuple(int(part) for part in metadata.version("tensorflow").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if version >= (2, 21) and "xla_cpu_use_onednn" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_use_onednn=false".strip()


_xla_without_onednn()

__version__ = "0.1.0"
