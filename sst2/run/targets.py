"""What a run learns to predict: one class, any set of labels, or a number. A registry.

`TARGETS[task]` says, for each `--task`, how many outputs the head has, its
training loss, what its logits become (in training, evaluation and the
export), and the metric that picks the best checkpoint by default. Labels
reach it as `sst2.text.datasets` gives them: a class id (`single_label`),
a 0/1 vector over the label names (`multi_label`), a float (`regression`,
standardized by the training split's mean and spread, `TargetScale`).
Adding a kind of target is one entry here (and its metrics in
`sst2.run.metrics`).

Example:
    >>> import tensorflow as tf
    >>> target = TARGETS["multi_label"]
    >>> target.units(num_labels=3), target.default_metric
    (3, 'macro_f1')
    >>> logits = tf.constant([[2.0, -2.0, 0.0]])
    >>> [round(p, 3) for p in target.outputs(logits).numpy()[0].tolist()]   # one per label
    [0.881, 0.119, 0.5]
    >>> float(target.loss(logits, tf.constant([[1, 0, 1]]))[0]) > 0
    True
    >>> TARGETS["regression"].outputs(tf.constant([[0.5]]), TargetScale(3.0, 2.0)).numpy()
    array([4.], dtype=float32)
"""

import dataclasses
from typing import Callable

import numpy as np

SINGLE_LABEL, MULTI_LABEL, REGRESSION = "single_label", "multi_label", "regression"


@dataclasses.dataclass(frozen=True)
class TargetScale:
    """A regression target's training mean and standard deviation: the head predicts
    `(y - mean) / std`, and every output is mapped back to the training scale."""

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def of(cls, values: np.ndarray) -> "TargetScale":
        values = np.asarray(values, np.float64)
        return cls(float(values.mean()), float(max(values.std(), 1e-6)))


def _single_label_loss(logits, labels, class_weights=None, scale=None):
    import keras

    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def _multi_label_loss(logits, labels, class_weights=None, scale=None):
    """Binary cross-entropy per label, averaged over the labels; with `class_weights` (a
    positive weight per label), each label's positive examples weigh that much."""
    import tensorflow as tf

    labels = tf.cast(labels, tf.float32)
    per_label = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    if class_weights is not None:
        per_label *= 1.0 + labels * (class_weights - 1.0)
    return tf.reduce_mean(per_label, axis=-1)


def _regression_loss(logits, labels, class_weights=None, scale=None):
    import tensorflow as tf

    scale = scale or TargetScale()
    standardized = (tf.cast(labels, tf.float32) - scale.mean) / scale.std
    return tf.square(logits[:, 0] - standardized)


def _softmax(logits, scale=None):
    import tensorflow as tf

    return tf.nn.softmax(logits, axis=-1)


def _sigmoid(logits, scale=None):
    import tensorflow as tf

    return tf.sigmoid(logits)


def _score(logits, scale=None):
    scale = scale or TargetScale()
    return logits[:, 0] * scale.std + scale.mean


@dataclasses.dataclass(frozen=True)
class Target:
    """One kind of target (see the module).

    Attributes:
        description: how the log names it.
        units: the head's outputs for `num_labels` classes or labels.
        loss: `(logits, labels, class_weights=None, scale=None)` -> per-example loss.
        outputs: `(logits, scale=None)` -> what a model answers: probabilities, or scores
            on the training scale.
        default_metric: what `--best_metric=auto` picks.
        counts_correct: whether a step counts correct predictions (accuracy).
        metrics: the names in `sst2.run.metrics.METRICS` its evaluation reports.
    """

    description: str
    units: Callable[[int], int]
    loss: Callable
    outputs: Callable
    default_metric: str
    counts_correct: bool
    metrics: tuple

    @property
    def name(self) -> str:
        return next(name for name, target in TARGETS.items() if target is self)

    @property
    def collects_outputs(self) -> bool:
        """Whether evaluation needs every output at once (thresholds, correlations)
        rather than sums a step can add up."""
        return not self.counts_correct


TARGETS = {
    SINGLE_LABEL: Target("one class per text (softmax)", lambda num_labels: num_labels,
                         _single_label_loss, _softmax, "accuracy", True,
                         ("loss", "accuracy", "macro_f1", "f1", "mcc")),
    MULTI_LABEL: Target("any set of labels per text (a sigmoid per label)",
                        lambda num_labels: num_labels, _multi_label_loss, _sigmoid,
                        "macro_f1", False,
                        ("loss", "macro_f1", "micro_f1", "macro_f1_at_half", "subset_accuracy")),
    REGRESSION: Target("a number per text (mean squared error)", lambda num_labels: 1,
                       _regression_loss, _score, "pearson", False,
                       ("loss", "pearson", "spearman", "mse")),
}


def best_metric(option: str, task: str, official: str | None = None,
                num_classes: int = 2) -> str:
    """`--best_metric`'s value for `task`: `auto` is the `official` metric (a GLUE task's)
    or the target's default; a metric the task does not report is refused.

    >>> best_metric("auto", "regression"), best_metric("auto", "single_label", "mcc")
    ('pearson', 'mcc')
    """
    from sst2.run.errors import UserError

    target = TARGETS[task]
    name = (official or target.default_metric) if option == "auto" else option
    reported = [m for m in target.metrics if m != "f1" or num_classes == 2]
    if name not in reported:
        raise UserError(f"--best_metric={name}: a {task} run reports {', '.join(reported)}; "
                        "pick one of them (or auto).")
    return name


def positive_weights(labels: np.ndarray) -> np.ndarray:
    """`--class_weights=balanced` for multi-label targets: per label, its negatives over
    its positives (1 for a label without positives), so each label's positives weigh
    as much as its negatives in the loss.

    >>> positive_weights(np.array([[1, 0], [0, 0], [0, 1], [0, 1]])).tolist()
    [3.0, 1.0]
    """
    positives = labels.sum(axis=0).astype(np.float64)
    negatives = len(labels) - positives
    return np.divide(negatives, positives, out=np.ones_like(positives), where=positives > 0)
