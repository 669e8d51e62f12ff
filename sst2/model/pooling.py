"""What each pooling of `sst2.run.pooling.POOLINGS` computes: a layer's token states
to one vector per text, alone or for K stacked heads at once.

Example:
    >>> import tensorflow as tf
    >>> x = tf.constant([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])   # 1 text, 3 tokens (1 padding)
    >>> mask = tf.constant([[1, 1, 0]])
    >>> POOLING_MATH["mean"].pool(x, mask).numpy().tolist()
    [[2.0, 3.0]]
    >>> POOLING_MATH["cls_mean"].pool(x, mask).numpy().tolist()
    [[1.0, 2.0, 2.0, 3.0]]
"""

import dataclasses
from typing import Callable

import keras
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class PoolingMath:
    """`pool(x, mask, layer)`: float32 `[batch, length, hidden]` and its padding mask to
    `[batch, vectors * hidden]`. A learned pooling has `make_layer()`, whose weights the
    head trains, held as the head's attribute `layer_name`. `pool_stacked(x, mask,
    weights)` is a learned pooling for K heads at once (`sst2.head_search.stacked_heads`), each
    with its own layer weights (`weights`: the layer's, each stacked on a first axis of
    K), to `[K, batch, vectors * hidden]`; a learned pooling without it trains its heads
    one by one in a group."""

    pool: Callable
    make_layer: Callable | None = None
    layer_name: str | None = None
    pool_stacked: Callable | None = None


def _cls(x, mask, layer=None):
    return x[:, 0]


def _mean(x, mask, layer=None):
    # Padding positions hold real numbers too; only real tokens count.
    weights = tf.cast(mask, tf.float32)[:, :, None]
    return tf.reduce_sum(x * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, 1), 1.0)


def _cls_mean(x, mask, layer=None):
    return tf.concat([_cls(x, mask), _mean(x, mask)], axis=-1)


def _attention(x, mask, layer):
    """A learned score per token, softmax over the real tokens, the weighted sum."""
    scores = tf.squeeze(tf.cast(layer(x), tf.float32), -1)
    scores += (1.0 - tf.cast(mask, tf.float32)) * -1e9
    weights = tf.nn.softmax(scores, axis=-1)[:, :, None]
    return tf.reduce_sum(weights * tf.cast(x, tf.float32), axis=1)


def _attention_stacked(x, mask, weights):
    """`_attention` for K heads: `weights` are the score layer's kernels `[K, hidden, 1]`
    and biases `[K, 1]`."""
    kernel, bias = weights
    scores = tf.einsum("bld,kd->kbl", x, kernel[:, :, 0]) + bias[:, :, None]
    scores += (1.0 - tf.cast(mask, tf.float32))[None] * -1e9
    return tf.einsum("kbl,bld->kbd", tf.nn.softmax(scores, axis=-1), x)


def _score_layer():
    return keras.layers.Dense(1, name="attention_score")


POOLING_MATH = {
    "cls": PoolingMath(_cls),
    "mean": PoolingMath(_mean),
    "cls_mean": PoolingMath(_cls_mean),
    "attention": PoolingMath(_attention, make_layer=_score_layer,
                             layer_name="attention_score", pool_stacked=_attention_stacked),
}
