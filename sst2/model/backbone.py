"""The frozen backbone's features: which ones a head reads, and how they are computed.

A frozen backbone in inference mode is a fixed function of the token ids, so
what it gives a head can be computed once and cached (`sst2.model.features`).
`FeatureSpec` says what that is: pooled vectors per layer, or token states
(with `trainable_layers`, the states below the unfrozen layers).
`pool_features` computes it with the keras-hub layers (the XLA path on
accelerators); `sst2.model.inference.FastEncoder` computes the same on CPUs.

Example:
    >>> spec = FeatureSpec(pooling="attention", layers="all", trainable_layers=2)
    >>> spec.token_level, spec.frozen_layers(backbone_layers=6)
    (True, 4)
    >>> spec.describe()
    "attention pooling over all layers' average, top 2 backbone layer(s) unfrozen"
    >>> from sst2.model import presets
    >>> backbone = presets.load_backbone(preset)
    >>> inputs = presets.load_preprocessor(preset, sequence_length=16)(["a gripping film"])
    >>> pool_features(backbone, inputs["token_ids"], inputs["padding_mask"],
    ...               FeatureSpec("cls", "all")).shape
    TensorShape([1, 2, 16])
"""

import dataclasses

import keras
import tensorflow as tf

from sst2.model.pooling import POOLING_MATH
from sst2.run.errors import UserError
from sst2.run.pooling import POOLINGS

# What `auto` pooling and layers mean: (pooling, layers) for one text, and for pairs
# encoded apart.
AUTOMATIC = ("attention", "all")
AUTOMATIC_SEPARATE = ("mean", "last")


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Which frozen-backbone features a head reads, and what the head adds on top.

    Attributes:
        pooling: a name in `sst2.run.pooling.POOLINGS` (`cls`, `mean`, `cls_mean`,
            `attention`).
        layers: `last` (the last layer) or `all` (every layer). Pooled
            features concatenate the layers' vectors. Token features average
            the layers' token states, which keeps the cache one layer wide (a
            learned mix measured no better than the plain average);
            with `trainable_layers` the cache holds two vectors per token, the
            last frozen layer's output (what the unfrozen layers read) and the
            frozen layers' average, and the head completes the average.
        head_layers: new transformer blocks the head runs over the cached
            token features before pooling.
        trainable_layers: the backbone's top N layers, unfrozen: the cache
            stops below them and the head holds trainable copies of them.
        separate_pairs: a sentence pair's two texts are encoded apart, each as
            one sentence (`--pair_encoding=separate`), and the head reads both.
    """

    pooling: str = "cls"
    layers: str = "last"
    head_layers: int = 0
    trainable_layers: int = 0
    separate_pairs: bool = False

    @classmethod
    def of(cls, model_config) -> "FeatureSpec":
        """The spec of a `config.ModelConfig` (whose construction validated the values).

        `auto` pooling and layers: attention over every layer's average, and for pairs
        encoded apart the mean of the last layer (a sentence-embedding backbone's own
        embedding; measured, docs/measurements.md).

        >>> from sst2.run.config import ModelConfig
        >>> FeatureSpec.of(ModelConfig()).pooling, FeatureSpec.of(ModelConfig(
        ...     pair_encoding="separate")).pooling
        ('attention', 'mean')
        """
        separate = model_config.pair_encoding == "separate"
        automatic = AUTOMATIC_SEPARATE if separate else AUTOMATIC
        pooling, layers = (value if value != "auto" else default for value, default in
                           zip((model_config.pooling, model_config.layers), automatic))
        return cls(pooling=pooling, layers=layers, head_layers=model_config.head_layers,
                   trainable_layers=model_config.trainable_layers, separate_pairs=separate)

    @property
    def has_transformer_blocks(self) -> bool:
        """Whether the head runs transformer blocks (new ones or unfrozen copies)."""
        return self.head_layers + self.trainable_layers > 0

    @property
    def token_level(self) -> bool:
        """Whether the head reads every token's features (else one vector per layer)."""
        return (POOLINGS[self.pooling].learned or self.head_layers > 0
                or self.trainable_layers > 0)

    def frozen_layers(self, backbone_layers: int) -> int:
        """How many backbone layers the encode pass runs (and the cache stores the output of)."""
        if self.trainable_layers > backbone_layers:
            raise UserError(f"--trainable_layers={self.trainable_layers} exceeds the backbone's "
                            f"{backbone_layers} layers")
        return backbone_layers - self.trainable_layers

    def cache_fields(self, backbone_layers: int) -> dict:
        """What in this spec changes the cached features (token-level heads share a cache)."""
        if self.token_level:
            return {"features": "tokens", "layers": self.layers,
                    "frozen_layers": self.frozen_layers(backbone_layers)}
        return {"features": "pooled", "pooling": self.pooling, "layers": self.layers}

    def num_layers(self, backbone_layers: int) -> int:
        """How many layers' vectors a pooled feature holds (token features: one average)."""
        return backbone_layers if self.layers == "all" and not self.token_level else 1

    def width(self, hidden_dim: int) -> int:
        """Size of one layer's pooled vector."""
        return hidden_dim * POOLINGS[self.pooling].vectors

    def describe(self) -> str:
        """One line for the log, e.g. `attention pooling over all layers' average`."""
        what = POOLINGS[self.pooling].label + " pooling"
        if self.layers == "last":
            what += " over the last layer"
        else:
            what += " over all layers" + ("' average" if self.token_level else ", concatenated")
        if self.head_layers:
            what += f", {self.head_layers} new transformer block(s)"
        if self.trainable_layers:
            what += f", top {self.trainable_layers} backbone layer(s) unfrozen"
        if self.separate_pairs:
            what += ", each text of a pair encoded alone, read as (u, v, |u-v|, u*v, cos)"
        return what

    @property
    def averages_unfrozen_layers(self) -> bool:
        """Whether the head completes an average of layers with its unfrozen copies."""
        return self.layers == "all" and self.trainable_layers > 0

    def feature_shape(self, backbone) -> tuple:
        """The shape of one example's cached features (`None`: the token axis)."""
        if self.averages_unfrozen_layers:
            return (None, 2, backbone.hidden_dim)
        if self.token_level:
            return (None, backbone.hidden_dim)
        return (self.num_layers(backbone.num_layers), self.width(backbone.hidden_dim))


def hidden_states(backbone: keras.Model, token_ids: tf.Tensor, padding_mask: tf.Tensor,
                  num_layers: int | None = None) -> list:
    """Runs the backbone in inference mode: the embeddings' output, then each layer's.

    Returns `1 + num_layers` tensors (all layers by default).
    """
    x = backbone.embeddings(token_ids)
    x = backbone.embeddings_layer_norm(x)
    states = [x]
    for layer in backbone.transformer_layers[:num_layers]:
        x = layer(x, padding_mask=padding_mask, training=False)
        states.append(x)
    return states


def pool_tokens(x: tf.Tensor, padding_mask: tf.Tensor, pooling: str) -> tf.Tensor:
    """`[batch, length, hidden]` → `[batch, width]` by a fixed pooling of `POOLINGS`."""
    return POOLING_MATH[pooling].pool(tf.cast(x, tf.float32), padding_mask)


def frozen_features(states: list, padding_mask: tf.Tensor, spec: FeatureSpec) -> tf.Tensor:
    """What the cache stores, from `hidden_states`-style states (embeddings first).

    Pooled specs: float32 `[batch, num_layers, width]`. Token-level specs:
    `[batch, length, hidden]`, the output of the last frozen layer, or with
    `layers="all"` the average of the layers' outputs (embeddings excluded);
    with `layers="all"` and unfrozen layers, both: `[batch, length, 2, hidden]`.
    """
    if spec.token_level:
        last = tf.cast(states[-1], tf.float32)
        if spec.layers == "last":
            return last
        outputs = [tf.cast(x, tf.float32) for x in states[1:]]
        # With every layer unfrozen there is no frozen output; the head weighs this by 0.
        average = tf.add_n(outputs) / len(outputs) if outputs else tf.zeros_like(last)
        return tf.stack([last, average], axis=2) if spec.averages_unfrozen_layers else average
    layers = states[-1:] if spec.layers == "last" else states[1:]
    return tf.stack([pool_tokens(x, padding_mask, spec.pooling) for x in layers], axis=1)


def pool_features(
    backbone: keras.Model, token_ids: tf.Tensor, padding_mask: tf.Tensor, spec: FeatureSpec
) -> tf.Tensor:
    """Frozen features for a batch through the keras-hub layers (see `frozen_features`)."""
    frozen = spec.frozen_layers(backbone.num_layers) if spec.token_level else None
    states = hidden_states(backbone, token_ids, padding_mask, frozen)
    return frozen_features(states, padding_mask, spec)
