"""sst2: a DistilBERT sentiment classifier on GLUE SST-2, trained with a TensorFlow loop."""

import os

# This project is TensorFlow-native; keras-hub must use the TensorFlow backend.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"
