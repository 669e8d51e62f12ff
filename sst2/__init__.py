"""sst2: a DistilBERT sentiment classifier on GLUE SST-2, trained with a TensorFlow loop."""

import os

# This project is TensorFlow-native; keras-hub must use the TensorFlow backend.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# oneDNN's graph rewrites (matmuls fused with their epilogues, LayerNorm and softmax as
# one kernel each): TensorFlow turns them on by itself only on CPUs with AVX-512 and
# newer; on an AVX2-only CPU they make the encode pass 1.5x faster (docs/measurements.md,
# "The encode pass where oneDNN is off"). Set it to 0 to run TensorFlow's own default.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
