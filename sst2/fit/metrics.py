"""Metrics by name: what the steps' sums become, for the log, metrics.json, TensorBoard
and `--best_metric`.

A step returns sums (`loss`, `correct`, `count`; an eval step also a
confusion matrix summed on the device, `confusion_matrix`). `MetricSums`
adds them up; `MetricSums.result()` turns them into every metric in
`METRICS` that its sums allow, by name. Adding a metric is one entry in
`METRICS`: the epoch record (`train_<name>`, `val_<name>`), the log line,
TensorBoard and `--best_metric`'s choices follow from it.

Example:
    >>> confusion = np.array([[5, 1], [2, 2]])   # rows: true class; columns: predicted
    >>> {k: round(v, 4) for k, v in from_confusion(confusion).items()}
    {'accuracy': 0.7, 'macro_f1': 0.6703, 'mcc': 0.3563}
    >>> sums = MetricSums(confusion=np.zeros((2, 2)))
    >>> sums.add({"loss": 3.0, "correct": 7.0, "count": 10.0, "confusion": confusion})
    >>> {k: round(v, 4) for k, v in sums.result().items()}
    {'loss': 0.3, 'accuracy': 0.7, 'macro_f1': 0.6703, 'mcc': 0.3563, 'examples': 10}
"""

import dataclasses
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Metric:
    """`value(sums)` from a `MetricSums`' totals (None where they do not allow it), its
    name in log lines, and whether higher is better."""

    value: Callable[[dict], float | None]
    label: str
    higher_is_better: bool = True


def _per_example(name: str) -> Callable[[dict], float]:
    return lambda sums: sums[name] / max(sums["count"], 1.0)


def _from_confusion(name: str) -> Callable[[dict], float | None]:
    return lambda sums: (None if sums.get("confusion") is None
                         else from_confusion(sums["confusion"])[name])


# Every metric, in the order records and log lines show them.
METRICS = {
    "loss": Metric(_per_example("loss"), "loss", higher_is_better=False),
    "accuracy": Metric(_per_example("correct"), "accuracy"),
    "macro_f1": Metric(_from_confusion("macro_f1"), "macro-F1"),
    "mcc": Metric(_from_confusion("mcc"), "MCC"),
}
# Each metric `--best_metric` may name, and whether higher is better.
BEST_METRICS = {name: metric.higher_is_better for name, metric in METRICS.items()}


def confusion_matrix(labels, predictions, weights, num_classes: int):
    """`[num_classes, num_classes]` float32 counts: row = true class, column = predicted;
    rows with weight 0 (padding) count for nothing."""
    import tensorflow as tf

    index = labels * num_classes + predictions
    return tf.reshape(tf.math.unsorted_segment_sum(weights, index, num_classes * num_classes),
                      [num_classes, num_classes])


def from_confusion(confusion: np.ndarray) -> dict:
    """Accuracy, macro-F1 and the multi-class Matthews correlation of a confusion matrix.

    Macro-F1 averages the per-class F1 over the classes that occur as a label or
    as a prediction (as scikit-learn does). The Matthews correlation is
    Gorodkin's multi-class form (scikit-learn's `matthews_corrcoef`), 0 when
    undefined (all predictions or all labels one class).
    """
    confusion = np.asarray(confusion, np.float64)
    total = confusion.sum()
    correct = np.trace(confusion)
    true_counts, predicted_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    tp = np.diag(confusion)
    denominators = true_counts + predicted_counts
    present = denominators > 0
    f1 = np.divide(2 * tp, denominators, out=np.zeros_like(tp), where=present)
    covariance = correct * total - true_counts @ predicted_counts
    scale = np.sqrt((total ** 2 - predicted_counts @ predicted_counts)
                    * (total ** 2 - true_counts @ true_counts))
    return {"accuracy": float(correct / total) if total else 0.0,
            "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
            "mcc": float(covariance / scale) if scale > 0 else 0.0}


def is_better(metric: str, value: float, best: float | None) -> bool:
    """Whether `value` of `metric` beats `best` (None: nothing yet).

    >>> is_better("loss", 0.3, 0.4), is_better("mcc", 0.3, 0.4), is_better("mcc", -1.0, None)
    (True, False, True)
    """
    if best is None:
        return True
    return value > best if BEST_METRICS[metric] else value < best


def score(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """Every metric of predicted `probabilities` (`[examples, classes]`) against integer
    `labels`, as the eval step sums them: the mean negative log-likelihood, and the
    confusion matrix's metrics; and `examples`.

    >>> score(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0]))["accuracy"]
    0.5
    """
    num_classes = probabilities.shape[1]
    chosen = probabilities[np.arange(len(labels)), labels]
    confusion = np.bincount(labels * num_classes + probabilities.argmax(-1),
                            minlength=num_classes ** 2).reshape(num_classes, num_classes)
    loss = float(-np.log(np.maximum(chosen, np.finfo(np.float32).tiny)).mean())
    return {"loss": loss, **from_confusion(confusion), "examples": len(labels)}


class MetricSums:
    """Accumulates the sums that steps return, in float64; with `confusion` (a
    `[classes, classes]` array, for evaluation), a confusion matrix too."""

    NAMES = ("loss", "correct", "count")

    def __init__(self, loss: float = 0.0, correct: float = 0.0, count: float = 0.0,
                 confusion: np.ndarray | None = None):
        self.loss, self.correct, self.count = loss, correct, count
        self.confusion = confusion

    def add(self, sums: dict) -> None:
        self.loss += float(sums["loss"])
        self.correct += float(sums["correct"])
        self.count += float(sums["count"])
        if self.confusion is not None:
            self.confusion = self.confusion + np.asarray(sums["confusion"], np.float64)

    def tensors(self) -> dict:
        """The sums as float64 tensors, for a loop that continues them on the device."""
        import tensorflow as tf

        names = self.NAMES + (("confusion",) if self.confusion is not None else ())
        return {name: tf.constant(getattr(self, name), tf.float64) for name in names}

    def set(self, totals: dict) -> None:
        """Takes the totals such a loop returns."""
        self.loss, self.correct, self.count = (float(totals[name]) for name in self.NAMES)
        if self.confusion is not None:
            self.confusion = np.asarray(totals["confusion"])

    def result(self) -> dict:
        """Every metric of `METRICS` these sums allow, by name, and `examples`."""
        sums = {"loss": self.loss, "correct": self.correct, "count": self.count,
                "confusion": self.confusion}
        values = {name: metric.value(sums) for name, metric in METRICS.items()}
        return {**{k: v for k, v in values.items() if v is not None},
                "examples": int(self.count)}

    def state(self) -> list[float]:
        return [self.loss, self.correct, self.count]

    def __repr__(self) -> str:
        return f"MetricSums(loss={self.loss}, correct={self.correct}, count={self.count})"
