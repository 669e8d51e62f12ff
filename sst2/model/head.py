"""The trainable classifier head over the frozen backbone's features.

Example:
    >>> head = ClassifierHead(hidden_units=0)            # the seed's head: one dense layer
    >>> head(tf.zeros([4, 1, 384])).shape
    TensorShape([4, 2])
    >>> head = ClassifierHead(hidden_units=8, pooling="attention", dropout=0.1, seed=0)
    >>> head({"tokens": tf.zeros([4, 7, 16]), "mask": tf.ones([4, 7], tf.int32)}).shape
    TensorShape([4, 2])
"""

import dataclasses

import keras
import tensorflow as tf

from sst2.model import presets
from sst2.model.backbone import FeatureSpec, pool_tokens
from sst2.model.pooling import POOLING_MATH

NUM_CLASSES = 2


@keras.saving.register_keras_serializable(package="sst2")
class Dropout(keras.layers.Dropout):
    """Keras's `Dropout` with its mask drawn by the Philox generator, named explicitly.

    The generator TensorFlow picks by default is slow under XLA on CPU: it made
    the two dropouts most of a compiled head step (docs/measurements.md).
    Same seeds, same state (`seed_generator`, restored on resume), same scaling.

    >>> layer = Dropout(0.5, seed=1)
    >>> out = layer(tf.ones([2, 4]), training=True).numpy()
    >>> sorted(set(out.ravel().tolist())) in ([0.0, 2.0], [2.0], [0.0])
    True
    >>> layer(tf.ones([2, 4])).numpy().tolist()  # inference: unchanged
    [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    """

    def call(self, inputs, training=False):
        if not training or self.rate <= 0:
            return inputs
        seed = tf.cast(tf.math.floormod(self.seed_generator.next(), tf.int32.max - 1), tf.int32)
        keep = tf.random.stateless_uniform(tf.shape(inputs), seed, alg="philox") >= self.rate
        return tf.where(keep, inputs / tf.cast(1 - self.rate, inputs.dtype),
                        tf.zeros_like(inputs))


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """What a `ClassifierHead` is made of, in one record (its Keras config).

    Attributes:
        hidden_units: the GELU layer's width (0: none).
        dropout: the rate before the hidden layer and before the logits.
        num_classes: the outputs (`Target.units`).
        seed: dropout's seed (None: unseeded).
        pooling: a name in `sst2.run.pooling.POOLINGS`.
        sequence_layers: transformer blocks over token features (unfrozen copies of the
            backbone's top layers first, then new ones).
        num_heads, intermediate_dim: those blocks' sizes (the backbone's).
        average_layers: the backbone layers whose average token features join the
            unfrozen copies' outputs (0: no average).
        unfrozen_layers: how many sequence layers continue the backbone.
        unfrozen_dtype: their Keras dtype policy (`mixed_bfloat16` or `float32`).
        thresholds: a tuned threshold per output (a thresholded target's).
        pair: it reads two sentences' features, encoded apart.
    """

    hidden_units: int = 0
    dropout: float = 0.0
    num_classes: int = NUM_CLASSES
    seed: int | None = None
    pooling: str = "cls"
    sequence_layers: int = 0
    num_heads: int = 12
    intermediate_dim: int = 3072
    average_layers: int = 0
    unfrozen_layers: int = 0
    unfrozen_dtype: str = "float32"
    thresholds: bool = False
    pair: bool = False


_SPEC_FIELDS = {field.name for field in dataclasses.fields(HeadSpec)}


@keras.saving.register_keras_serializable(package="sst2")
class ClassifierHead(keras.Model):
    """The trainable classifier over frozen features.

    Pooled features (`[batch, num_layers, width]`) are concatenated across
    layers. Token features (a dict of `tokens` `[batch, length, hidden]` and
    `mask` `[batch, length]`) first pass through `sequence_layers` transformer
    blocks (new ones, or trainable copies of the backbone's top layers, see
    `copy_layers`), then are pooled by `pooling`. With `average_layers`, the
    tokens are `[batch, length, 2, hidden]`: the last frozen layer's output,
    which the first `unfrozen_layers` sequence layers continue, and the average
    of the other `average_layers - unfrozen_layers` backbone layers, which
    their outputs join (`FeatureSpec(layers="all", trainable_layers=N)`).
    Then: dropout, an
    optional GELU hidden layer with dropout, and a dense layer to logits. With
    `hidden_units=0` over one layer's `[CLS]` vector it is the seed's head.

    Its shape is a `HeadSpec`, given whole (`spec`) or field by field. A head with
    `thresholds` holds one per output (non-trainable).
    A `pair` head reads two sentences' features, `{"first": ..., "second": ...}`,
    each as above (encoded apart, `--pair_encoding=separate`), pools each, and
    reads `(u, v, |u - v|, u * v)` of the two vectors and their cosine.

    With `unfrozen_dtype="mixed_bfloat16"`, the unfrozen copies compute in
    bfloat16 (as the backbone does at that precision) while their variables,
    and so the optimizer's state, stay float32: Keras mixed precision. bfloat16
    has float32's range, so no loss scaling is needed.

    """

    def __init__(self, spec: HeadSpec | None = None, **kwargs):
        fields = {name: kwargs.pop(name) for name in list(kwargs) if name in _SPEC_FIELDS}
        super().__init__(**kwargs)  # Keras' own: name, dtype, trainable
        self.spec = spec = dataclasses.replace(spec or HeadSpec(), **fields)
        self.pair = spec.pair
        self.hidden_units = hidden_units = spec.hidden_units
        self.dropout = dropout = spec.dropout
        self.num_classes = num_classes = spec.num_classes
        self.seed = seed = spec.seed
        self.pooling = pooling = spec.pooling
        self.num_sequence_layers = sequence_layers = spec.sequence_layers
        self.num_heads = num_heads = spec.num_heads
        self.intermediate_dim = intermediate_dim = spec.intermediate_dim
        self.average_layers = spec.average_layers
        self.unfrozen_layers = unfrozen_layers = spec.unfrozen_layers
        self.unfrozen_dtype = unfrozen_dtype = spec.unfrozen_dtype
        if sequence_layers:
            from keras_hub.layers import TransformerEncoder

            # DistilBERT's own block: post-LayerNorm, exact GELU, epsilon 1e-12.
            self.sequence_layers = [
                TransformerEncoder(num_heads=num_heads, intermediate_dim=intermediate_dim,
                                   activation="gelu", dropout=dropout, layer_norm_epsilon=1e-12,
                                   name=f"sequence_layer_{i}",
                                   dtype=unfrozen_dtype if i < unfrozen_layers else "float32")
                for i in range(sequence_layers)]
            # One attribute each: tf.train.Checkpoint does not see into Keras' tracked lists.
            for i, layer in enumerate(self.sequence_layers):
                setattr(self, f"sequence_layer_{i}", layer)
        else:
            self.sequence_layers = []
        # A learned pooling's weights, as the head's attribute the registry names.
        self._pooling = POOLING_MATH[pooling]
        if self._pooling.make_layer:
            setattr(self, self._pooling.layer_name, self._pooling.make_layer())
        self.flatten = keras.layers.Flatten()
        self.input_dropout = Dropout(dropout, seed=seed)
        self.hidden = (
            keras.layers.Dense(hidden_units, activation="gelu", name="hidden")
            if hidden_units else None)
        self.hidden_dropout = Dropout(dropout, seed=None if seed is None else seed + 1)
        self.logits = keras.layers.Dense(num_classes, name="logits")
        if spec.thresholds:
            # Each label's probability threshold, tuned on the validation split at each
            # evaluation: checkpointed and exported with the weights that earned it.
            self.thresholds = tf.Variable(tf.fill([num_classes], 0.5), trainable=False,
                                          name="thresholds")

    def build(self, input_shape):
        # Sublayers build on the first call; nothing here depends on the shape.
        pass

    def _pool(self, tokens, mask, training):
        layers = self.sequence_layers
        if self.average_layers:
            x, frozen_average = tokens[:, :, 0], tokens[:, :, 1]
            unfrozen_outputs = []
            for layer in layers[:self.unfrozen_layers]:
                x = layer(x, padding_mask=mask, training=training)
                unfrozen_outputs.append(tf.cast(x, tf.float32))
            num_frozen = self.average_layers - self.unfrozen_layers
            x = (frozen_average * num_frozen + tf.add_n(unfrozen_outputs)) / self.average_layers
            layers = layers[self.unfrozen_layers:]
        else:
            x = tokens
        for layer in layers:  # each casts its input to its own compute dtype
            x = layer(x, padding_mask=mask, training=training)
        if not self._pooling.make_layer:
            return pool_tokens(x, mask, self.pooling)
        return self._pooling.pool(x, mask, getattr(self, self._pooling.layer_name))

    def _vector(self, features, training):
        if isinstance(features, dict):
            return self._pool(features["tokens"], features["mask"], training)
        return self.flatten(features)

    def call(self, features, training=False):
        if self.pair:  # two sentences encoded apart: InferSent's features and the cosine
            u, v = (self._vector(features[side], training) for side in ("first", "second"))
            x = tf.concat([u, v, tf.abs(u - v), u * v, cosine(u, v)], axis=-1)
        else:
            x = self._vector(features, training)
        x = self.input_dropout(x, training=training)
        if self.hidden is not None:
            x = self.hidden_dropout(self.hidden(x), training=training)
        return self.logits(x)

    @property
    def backbone_copies(self) -> list:
        """The sequence layers that continue the backbone (its unfrozen top layers)."""
        return self.sequence_layers[:self.unfrozen_layers]

    def copy_layers(self, layers: list) -> None:
        """Initializes the first sequence layers from backbone layers (partial unfreezing)."""
        for ours, theirs in zip(self.sequence_layers, layers):
            ours.set_weights([w.numpy().astype("float32") for w in theirs.weights])

    def get_config(self):
        return {**super().get_config(), **dataclasses.asdict(self.spec)}


def cosine(u, v):
    """`[batch, 1]`: the cosine similarity of each row's two vectors (a sentence-embedding
    backbone's own similarity, which the head starts from)."""
    return tf.reduce_sum(tf.math.l2_normalize(u, -1) * tf.math.l2_normalize(v, -1), -1,
                         keepdims=True)


def example_features(feature_shape: tuple, length: int = 8, pair: bool = False):
    """A one-example batch of zeros in the head's input format (to build it).

    `feature_shape` is one example's (`FeatureSpec.feature_shape`); `None` marks a token
    axis. `pair`: two sentences' features (`ClassifierHead(pair=True)`).
    """
    if pair:
        return {side: example_features(feature_shape, length) for side in ("first", "second")}
    if feature_shape[0] is None:
        return {"tokens": tf.zeros((1, length) + tuple(feature_shape[1:])),
                "mask": tf.ones((1, length), tf.int32)}
    return tf.zeros((1,) + tuple(feature_shape))


def rng_state_variables(layer: keras.layers.Layer) -> list:
    """The RNG state variables (e.g. dropout's seed generators) inside `layer`.

    Keras does not put them in `weights`, but an exact resume must restore them.
    """
    states = []
    for sublayer in layer._flatten_layers(include_self=True):
        generator = getattr(sublayer, "seed_generator", None)
        if generator is not None:
            states.append(generator.state)
    return states


def build_head(model_config, backbone, seed: int, copy_unfrozen: bool = False,
               num_classes: int = NUM_CLASSES,
               unfrozen_precision: str | None = None,
               thresholded: bool = False) -> ClassifierHead:
    """The head a `config.ModelConfig` describes, built over `backbone`'s features, with
    `num_classes` outputs (and, `thresholded`, a threshold per output).

    (A run's head: `sst2.model.assembly.head_for`.)

    The unfrozen layers compute in `unfrozen_precision` (default: the backbone's).
    With `copy_unfrozen` (a new run), the unfrozen layers start as copies of
    the backbone's top layers, read in float32 from the preset (a bfloat16
    backbone's weights are rounded to 8 bits of mantissa). A restored run
    reads them from its checkpoint instead.
    """
    spec = FeatureSpec.of(model_config)
    head = ClassifierHead(HeadSpec(
        hidden_units=model_config.head_hidden, dropout=model_config.dropout,
        num_classes=num_classes, seed=seed, pooling=spec.pooling,
        sequence_layers=model_config.trainable_layers + model_config.head_layers,
        num_heads=backbone.num_heads, intermediate_dim=backbone.intermediate_dim,
        average_layers=backbone.num_layers if spec.averages_unfrozen_layers else 0,
        unfrozen_layers=model_config.trainable_layers,
        unfrozen_dtype=("mixed_bfloat16" if (unfrozen_precision or backbone.dtype_policy
                                             .compute_dtype) == "bfloat16" else "float32"),
        thresholds=thresholded, pair=spec.separate_pairs))
    head(example_features(spec.feature_shape(backbone), pair=spec.separate_pairs))
    if model_config.trainable_layers and copy_unfrozen:
        if backbone.dtype_policy.variable_dtype != "float32":
            backbone = presets.load_backbone(model_config.preset, dtype="float32")
        # The unfrozen copies come right after the frozen layers; new blocks go on top.
        head.copy_layers(backbone.transformer_layers[spec.frozen_layers(backbone.num_layers):])
    return head
