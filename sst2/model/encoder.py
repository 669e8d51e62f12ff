"""The encode function: the frozen backbone's features for batches of padded token ids.

`FeatureEncoder` says what it computes (a `FeatureSpec`'s features), on which
devices (one compiled copy per local replica), and whether its input shapes
must come from a fixed set (XLA) or may be anything (the fused CPU path).

Example:
    >>> from sst2.model import presets
    >>> backbone = presets.load_backbone(preset)
    >>> encoder = FeatureEncoder.for_backbone(backbone, FeatureSpec("cls", "all"),
    ...                                       jit_compile=False)
    >>> encoder.static_shapes, encoder.token_level, len(encoder.replicas)
    (False, False, 1)
    >>> encoder(tf.constant([[2, 7, 3]]), tf.constant([[1, 1, 1]])).shape
    TensorShape([1, 2, 16])
    >>> encoder.padded_lengths(sequence_length=12)
    (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
"""

import dataclasses
from typing import Callable

import tensorflow as tf

from sst2.model.backbone import FeatureSpec, frozen_features, pool_features
from sst2.model.inference import FastEncoder, onednn_fuses


@dataclasses.dataclass(frozen=True)
class FeatureEncoder:
    """Compiled functions `(token_ids, padding_mask) -> features`, one per device.

    Attributes:
        replicas: one function per local device; `encode` runs them on
            concurrent batches. Calling the encoder runs the first.
        static_shapes: whether inputs must come from a fixed set of shapes
            (XLA compiles once per shape): lengths in multiples of 8, full rows.
        token_level: whether the features keep a token axis (else pooled).
    """

    replicas: tuple[Callable, ...]
    static_shapes: bool
    token_level: bool

    def __call__(self, token_ids: tf.Tensor, padding_mask: tf.Tensor) -> tf.Tensor:
        return self.replicas[0](token_ids, padding_mask)

    def padded_lengths(self, sequence_length: int) -> tuple[int, ...]:
        """The lengths batches are padded to: multiples of 8 for XLA, else any length."""
        step = 8 if self.static_shapes else 1
        return tuple(range(step, sequence_length, step)) + (sequence_length,)

    @classmethod
    def for_backbone(cls, backbone, spec: FeatureSpec, jit_compile: bool,
                     devices: list[str] | None = None) -> "FeatureEncoder":
        """The encoder of `spec`'s features from a frozen keras-hub backbone.

        With `jit_compile` (GPU, TPU) XLA compiles the keras-hub layers whole,
        once per shape. Without it (CPU) `FastEncoder` runs oneDNN's fused
        kernels on any shape, so each length-sorted batch is padded only to its
        own longest sentence. With several `devices` and no XLA, each device
        gets its own copy of the weights and of the function.
        """
        if devices and len(devices) > 1 and not jit_compile:
            replicas = []
            for device in devices:
                with tf.device(device):  # the copy's weights live on its device
                    replicas.append(_compile(backbone, spec, jit_compile))
        else:
            replicas = [_compile(backbone, spec, jit_compile)]
        return cls(tuple(replicas), static_shapes=jit_compile, token_level=spec.token_level)


def _compile(backbone, spec: FeatureSpec, jit_compile: bool) -> Callable:
    if jit_compile:
        @tf.function(jit_compile=True, reduce_retracing=True)
        def features_fn(token_ids, padding_mask):
            return pool_features(backbone, token_ids, padding_mask, spec)

        return features_fn
    encoder = FastEncoder(backbone, fuse_layer_norm=onednn_fuses())
    frozen = spec.frozen_layers(backbone.num_layers) if spec.token_level else None

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)] * 2)
    def features_fn(token_ids, padding_mask):
        states = encoder(token_ids, padding_mask, num_layers=frozen)
        return frozen_features(states, padding_mask, spec)

    return features_fn
