"""How a head pools a layer's token states into one vector: a registry, by name.

`--pooling`'s choices, the log's description, the pooled width, whether the
head must read every token (a learned pooling) and the computation all come
from `POOLINGS`: adding a pooling is one entry here.

Example:
    >>> import tensorflow as tf
    >>> x = tf.constant([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])   # 1 text, 3 tokens (1 padding)
    >>> mask = tf.constant([[1, 1, 0]])
    >>> POOLINGS["mean"].pool(x, mask).numpy().tolist()
    [[2.0, 3.0]]
    >>> POOLINGS["cls_mean"].pool(x, mask).numpy().tolist()
    [[1.0, 2.0, 2.0, 3.0]]
    >>> sorted(POOLINGS)
    ['attention', 'cls', 'cls_mean', 'mean']
"""

import dataclasses
from typing import Callable


@dataclasses.dataclass(frozen=True)
class Pooling:
    """`pool(x, mask, layer)`: float32 `[batch, length, hidden]` and its padding mask to
    `[batch, vectors * hidden]`. A learned pooling has `make_layer()`, whose weights the
    head trains, held as the head's attribute `layer_name`; it reads every token's
    features, so the cache keeps them. `pool_stacked(x, mask, weights)` is a learned
    pooling for K heads at once (`sst2.fit.stacked_heads`), each with its own layer
    weights (`weights`: the layer's, each stacked on a first axis of K), to
    `[K, batch, vectors * hidden]`; a learned pooling without it trains its heads
    one by one in a group."""

    label: str
    vectors: int
    pool: Callable
    make_layer: Callable | None = None
    layer_name: str | None = None
    pool_stacked: Callable | None = None

    @property
    def learned(self) -> bool:
        return self.make_layer is not None


def _cls(x, mask, layer=None):
    return x[:, 0]


def _mean(x, mask, layer=None):
    import tensorflow as tf

    # Padding positions hold real numbers too; only real tokens count.
    weights = tf.cast(mask, tf.float32)[:, :, None]
    return tf.reduce_sum(x * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, 1), 1.0)


def _cls_mean(x, mask, layer=None):
    import tensorflow as tf

    return tf.concat([_cls(x, mask), _mean(x, mask)], axis=-1)


def _attention(x, mask, layer):
    """A learned score per token, softmax over the real tokens, the weighted sum."""
    import tensorflow as tf

    scores = tf.squeeze(tf.cast(layer(x), tf.float32), -1)
    scores += (1.0 - tf.cast(mask, tf.float32)) * -1e9
    weights = tf.nn.softmax(scores, axis=-1)[:, :, None]
    return tf.reduce_sum(weights * tf.cast(x, tf.float32), axis=1)


def _attention_stacked(x, mask, weights):
    """`_attention` for K heads: `weights` are the score layer's kernels `[K, hidden, 1]`
    and biases `[K, 1]`."""
    import tensorflow as tf

    kernel, bias = weights
    scores = tf.einsum("bld,kd->kbl", x, kernel[:, :, 0]) + bias[:, :, None]
    scores += (1.0 - tf.cast(mask, tf.float32))[None] * -1e9
    return tf.einsum("kbl,bld->kbd", tf.nn.softmax(scores, axis=-1), x)


def _score_layer():
    import keras

    return keras.layers.Dense(1, name="attention_score")


POOLINGS = {
    "cls": Pooling("[CLS]", 1, _cls),
    "mean": Pooling("mean", 1, _mean),
    "cls_mean": Pooling("[CLS] + mean", 2, _cls_mean),
    "attention": Pooling("attention", 1, _attention, make_layer=_score_layer,
                         layer_name="attention_score", pool_stacked=_attention_stacked),
}
