"""R-Drop (Liang et al., 2021): two dropout passes of a batch pulled toward one answer.

`--rdrop_alpha` turns it on; `sst2.fit.steps.Trainer` runs the two passes in one call.
"""

import keras
import tensorflow as tf


def rdrop_loss(logits: tf.Tensor, logits_again: tf.Tensor, labels: tf.Tensor,
               alpha: float) -> tf.Tensor:
    """R-Drop's per-example loss (Liang et al., 2021, "R-Drop: Regularized Dropout").

    `logits` and `logits_again` are two training-mode passes over the same
    batch, with different dropout masks. The loss is their mean cross-entropy
    plus `alpha` times the mean of the two KL divergences between their
    predictions, which pulls the dropout sub-networks toward one answer.

    Example:
        >>> same = tf.constant([[2.0, 0.0]])
        >>> rdrop_loss(same, same, tf.constant([0]), alpha=1.0)  # no divergence: cross-entropy
        <tf.Tensor: shape=(1,), dtype=float32, numpy=array([0.12692805], dtype=float32)>
    """
    cross_entropy = 0.5 * (
        keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        + keras.losses.sparse_categorical_crossentropy(labels, logits_again, from_logits=True))
    log_p, log_q = tf.nn.log_softmax(logits), tf.nn.log_softmax(logits_again)
    # KL(p||q) + KL(q||p) = sum((p - q) * (log p - log q)).
    symmetric_kl = tf.reduce_sum((tf.exp(log_p) - tf.exp(log_q)) * (log_p - log_q), axis=-1)
    return cross_entropy + alpha * 0.5 * symmetric_kl


