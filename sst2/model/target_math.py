"""What a kind of target computes on tensors: its loss, its outputs, the mean of heads.

A kind (`sst2.run.targets`) names its loss and its output activation; this
module holds their computation, so a kind that reuses a loss and an activation
adds nothing here, and one with new math adds an entry to `LOSSES` or
`ACTIVATIONS`.

Example:
    >>> import tensorflow as tf
    >>> from sst2.run.targets import MultiLabel, Regression, TargetScale
    >>> logits = tf.constant([[2.0, -2.0, 0.0]])
    >>> [round(p, 3) for p in outputs(MultiLabel(), logits).numpy()[0].tolist()]  # per label
    [0.881, 0.119, 0.5]
    >>> float(loss(MultiLabel(), logits, tf.constant([[1, 0, 1]]))[0]) > 0
    True
    >>> outputs(Regression(), tf.constant([[0.5]]), TargetScale(3.0, 2.0)).numpy()
    array([4.], dtype=float32)
"""

import dataclasses
from typing import Callable

import keras
import tensorflow as tf

from sst2.run.targets import TargetScale

_TINY = 1e-7  # keeps an averaged probability's logarithm finite


def _softmax_cross_entropy(logits, labels, class_weights, scale):
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def _sigmoid_cross_entropy(logits, labels, class_weights, scale):
    """Binary cross-entropy per label, averaged over the labels; with `class_weights`
    (a positive weight per label), each label's positive examples weigh that much."""
    labels = tf.cast(labels, tf.float32)
    per_label = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    if class_weights is not None:
        per_label *= 1.0 + labels * (class_weights - 1.0)
    return tf.reduce_mean(per_label, axis=-1)


def _standardized_squared_error(logits, labels, class_weights, scale):
    """The squared error against the number standardized by the training scale."""
    scale = scale or TargetScale()
    standardized = (tf.cast(labels, tf.float32) - scale.mean) / scale.std
    return tf.square(logits[:, 0] - standardized)


# `Target.loss`'s names: the per-example loss of `logits` `[batch, units]` against labels.
LOSSES = {
    "softmax_cross_entropy": _softmax_cross_entropy,
    "sigmoid_cross_entropy": _sigmoid_cross_entropy,
    "standardized_squared_error": _standardized_squared_error,
}


@dataclasses.dataclass(frozen=True)
class Activation:
    """What logits become (`outputs(logits, scale)`) and the logits of a mean of heads
    (`mean_of_heads(logits)`, logits stacked `[heads, batch, units]`)."""

    outputs: Callable
    mean_of_heads: Callable


def _softmax(logits, scale=None):
    return tf.nn.softmax(logits, axis=-1)


def _sigmoid(logits, scale=None):
    return tf.sigmoid(logits)


def _unstandardized(logits, scale=None):
    scale = scale or TargetScale()
    return logits[:, 0] * scale.std + scale.mean


def _mean_softmax(logits):
    """Logits whose softmax is the heads' mean probabilities: softmax(log p) = p."""
    return tf.math.log(tf.maximum(tf.reduce_mean(_softmax(logits), 0), _TINY))


def _mean_sigmoid(logits):
    """Logits whose sigmoids are the heads' mean probabilities: sigmoid(logit(p)) = p."""
    p = tf.clip_by_value(tf.reduce_mean(_sigmoid(logits), 0), _TINY, 1 - _TINY)
    return tf.math.log(p) - tf.math.log1p(-p)


# `Target.activation`'s names.
ACTIVATIONS = {
    "softmax": Activation(_softmax, _mean_softmax),
    "sigmoid": Activation(_sigmoid, _mean_sigmoid),
    # The mean score is the score of the mean logit (the scale is linear).
    "unstandardized": Activation(_unstandardized, lambda logits: tf.reduce_mean(logits, 0)),
}


def loss(target, logits, labels, class_weights=None, scale: TargetScale | None = None):
    """`target`'s per-example training loss of `logits` `[batch, units]` against `labels`
    (`scale`: a regression target's `TargetScale`)."""
    return LOSSES[target.loss](logits, labels, class_weights, scale)


def outputs(target, logits, scale: TargetScale | None = None):
    """What a model of `target` answers for `logits`: probabilities, or scores on the
    training scale."""
    return ACTIVATIONS[target.activation].outputs(logits, scale)


def mean_of_heads(target, logits):
    """Logits `[batch, units]` whose answer is the mean of the answers of the heads whose
    logits `logits` stacks (`[heads, batch, units]`)."""
    return ACTIVATIONS[target.activation].mean_of_heads(logits)
