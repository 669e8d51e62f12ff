"""Metrics by name: what the steps' sums become, for the log, metrics.json, TensorBoard
and `--best_metric`.

A step returns sums (`loss`, `correct`, `count`; an eval step also a
confusion matrix summed on the device). `MetricSums`
adds them up; `MetricSums.result()` turns them into every metric in
`METRICS` that its sums allow, by name. Adding a metric is one entry in
`METRICS`: the epoch record (`train_<name>`, `val_<name>`), the log line,
TensorBoard and `--best_metric`'s choices follow from it.

Example:
    >>> confusion = np.array([[5, 1], [2, 2]])   # rows: true class; columns: predicted
    >>> {k: round(v, 4) for k, v in from_confusion(confusion).items()}
    {'accuracy': 0.7, 'macro_f1': 0.6703, 'mcc': 0.3563, 'f1': 0.5714}
    >>> sums = MetricSums(confusion=np.zeros((2, 2)))
    >>> sums.add({"loss": 3.0, "correct": 7.0, "count": 10.0, "confusion": confusion})
    >>> {k: round(v, 4) for k, v in sums.result().items()}
    {'loss': 0.3, 'accuracy': 0.7, 'macro_f1': 0.6703, 'f1': 0.5714, 'mcc': 0.3563, 'examples': 10}
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


def _per_example(name: str) -> Callable[[dict], float | None]:
    return lambda sums: None if sums.get(name) is None else sums[name] / max(sums["count"], 1.0)


def _from_confusion(name: str) -> Callable[[dict], float | None]:
    return lambda sums: (None if sums.get("confusion") is None
                         else from_confusion(sums["confusion"]).get(name))


def _from(key: str, name: str) -> Callable[[dict], float | None]:
    """A metric of the scores `sums[key]` holds (`label_sets`: `multi_label_scores`;
    `numbers`: `regression_scores`)."""
    return lambda sums: None if sums.get(key) is None else sums[key].get(name)


def _macro_f1(sums: dict) -> float | None:
    value = _from_confusion("macro_f1")(sums)
    return value if value is not None else _from("label_sets", "macro_f1")(sums)


# Every metric, in the order records and log lines show them.
METRICS = {
    "loss": Metric(_per_example("loss"), "loss", higher_is_better=False),
    "accuracy": Metric(_per_example("correct"), "accuracy"),
    "macro_f1": Metric(_macro_f1, "macro-F1"),
    "f1": Metric(_from_confusion("f1"), "F1"),
    "mcc": Metric(_from_confusion("mcc"), "MCC"),
    "micro_f1": Metric(_from("label_sets", "micro_f1"), "micro-F1"),
    "macro_f1_at_half": Metric(_from("label_sets", "macro_f1_at_half"), "macro-F1@0.5"),
    "subset_accuracy": Metric(_from("label_sets", "subset_accuracy"), "subset accuracy"),
    "pearson": Metric(_from("numbers", "pearson"), "Pearson"),
    "spearman": Metric(_from("numbers", "spearman"), "Spearman"),
    "mse": Metric(_from("numbers", "mse"), "MSE", higher_is_better=False),
}
# Each metric `--best_metric` may name, and whether higher is better.
BEST_METRICS = {name: metric.higher_is_better for name, metric in METRICS.items()}


def from_confusion(confusion: np.ndarray) -> dict:
    """Accuracy, macro-F1 and the multi-class Matthews correlation of a confusion matrix;
    with two classes, also the F1 of the second (the positive) class.

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
    result = {"accuracy": float(correct / total) if total else 0.0,
              "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
              "mcc": float(covariance / scale) if scale > 0 else 0.0}
    if len(confusion) == 2:  # two classes: F1 of the second (GLUE's MRPC and QQP)
        result["f1"] = float(f1[1])
    return result


def is_better(metric: str, value: float, best: float | None) -> bool:
    """Whether `value` of `metric` beats `best` (None: nothing yet).

    >>> is_better("loss", 0.3, 0.4), is_better("mcc", 0.3, 0.4), is_better("mcc", -1.0, None)
    (True, False, True)
    """
    if best is None:
        return True
    return value > best if BEST_METRICS[metric] else value < best


def _f1(tp, fp, fn):
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(denominator, np.float64),
                     where=denominator > 0)


def tune_thresholds(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per label, the probability threshold that maximizes that label's F1 on these
    examples (the midpoint between the chosen probability and the next lower one;
    0.5 for a label without positives).

    >>> tune_thresholds(np.array([[0.9, 0.2], [0.3, 0.1], [0.4, 0.3]]),
    ...                 np.array([[1, 0], [0, 0], [1, 0]])).round(3).tolist()
    [0.35, 0.5]
    """
    thresholds = np.full(labels.shape[1], 0.5)
    for j in range(labels.shape[1]):
        positives = labels[:, j].sum()
        if not positives:
            continue
        order = np.argsort(-probabilities[:, j], kind="stable")
        ranked, hits = probabilities[order, j], labels[order, j]
        tp = np.cumsum(hits)
        predicted = np.arange(1, len(hits) + 1)
        f1 = 2 * tp / (predicted + positives)
        # Only where the next probability differs can a threshold fall.
        last_of_run = np.append(ranked[1:] < ranked[:-1], True)
        best = int(np.argmax(np.where(last_of_run, f1, -1)))
        below = ranked[best + 1] if best + 1 < len(ranked) else 0.0
        thresholds[j] = (ranked[best] + below) / 2
    return thresholds


def multi_label_scores(probabilities: np.ndarray, labels: np.ndarray,
                       thresholds: np.ndarray | None = None) -> dict:
    """Micro- and macro-F1 (over every label), per-label F1 and subset accuracy at
    `thresholds` (default: tuned on these examples, `tune_thresholds`), and macro-F1
    at a fixed 0.5; with `thresholds`, the ones used.

    >>> scores = multi_label_scores(np.array([[0.9, 0.2], [0.3, 0.6]]), np.array([[1, 0], [0, 1]]),
    ...                             thresholds=np.array([0.5, 0.5]))
    >>> scores["macro_f1"], scores["subset_accuracy"]
    (1.0, 1.0)
    """
    if thresholds is None:
        thresholds = tune_thresholds(probabilities, labels)
    labels = labels.astype(bool)

    def counts(predicted):
        return ((predicted & labels).sum(0), (predicted & ~labels).sum(0),
                (~predicted & labels).sum(0))

    predicted = probabilities >= thresholds
    tp, fp, fn = counts(predicted)
    per_label = _f1(tp, fp, fn)
    return {"micro_f1": float(_f1(tp.sum(), fp.sum(), fn.sum())),
            "macro_f1": float(per_label.mean()),
            "macro_f1_at_half": float(_f1(*counts(probabilities >= 0.5)).mean()),
            "subset_accuracy": float((predicted == labels).all(axis=1).mean()),
            "per_label_f1": per_label.tolist(), "thresholds": thresholds.tolist()}


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank (as Spearman's rho needs)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson's r; NaN for non-finite inputs (so the run's finite check sees them), None
    where it is undefined (fewer than two examples, or constant scores or labels)."""
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    scale = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / scale) if scale > 0 else None


def shown(value: float | None) -> str:
    """A metric's value as logs, cards and reports print it; None is undefined.

    >>> shown(0.51234), shown(None)
    ('0.5123', 'undefined')
    """
    return "undefined" if value is None else f"{value:.4f}"


def regression_scores(scores: np.ndarray, labels: np.ndarray) -> dict:
    """Pearson and Spearman correlation and mean squared error of predicted `scores`
    (a correlation is None where undefined: one example, or constant scores).

    >>> {k: round(v, 3) for k, v in regression_scores(np.array([1.0, 2.0, 4.0]),
    ...                                               np.array([1.0, 3.0, 5.0])).items()}
    {'pearson': 0.982, 'spearman': 1.0, 'mse': 0.667}
    """
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, np.float64)
    return {"pearson": _pearson(scores, labels),
            "spearman": _pearson(_ranks(scores), _ranks(labels)),
            "mse": float(((scores - labels) ** 2).mean())}


def from_scores(key: str, found: dict, examples: int, loss: float | None = None,
                extra: dict | None = None) -> dict:
    """Every metric in `METRICS` that scores `found` under `key` allow (`label_sets`:
    `multi_label_scores`; `numbers`: `regression_scores`), `extra`, and `examples`.
    `loss` is the mean training loss where the caller has it.

    >>> from_scores("numbers", regression_scores(np.array([1.0, 2.0]), np.array([1.0, 3.0])), 2)
    {'pearson': 1.0, 'spearman': 1.0, 'mse': 0.5, 'examples': 2}
    """
    sums = {"loss": loss, "count": float(examples) if loss is None else 1.0, key: found}
    values = {name: metric.value(sums) for name, metric in METRICS.items()}
    return {**{k: v for k, v in values.items() if v is not None}, **(extra or {}),
            "examples": examples}


class MetricSums:
    """Accumulates the sums that steps return, in float64; with `confusion` (a
    `[classes, classes]` array, for evaluation), a confusion matrix too.
    `counts_correct=False`: the target has no accuracy (`sst2.run.targets`)."""

    NAMES = ("loss", "correct", "count")

    def __init__(self, loss: float = 0.0, correct: float = 0.0, count: float = 0.0,
                 confusion: np.ndarray | None = None, counts_correct: bool = True):
        self.loss, self.correct, self.count = loss, correct, count
        self.confusion = confusion
        self.counts_correct = counts_correct

    def add(self, sums: dict) -> None:
        self.loss += float(sums["loss"])
        self.correct += float(sums["correct"])
        self.count += float(sums["count"])
        if self.confusion is not None:
            self.confusion = self.confusion + np.asarray(sums["confusion"], np.float64)

    def totals(self) -> dict:
        """The sums by name, for a loop that continues them on the device (`set` takes
        back what it returns)."""
        names = self.NAMES + (("confusion",) if self.confusion is not None else ())
        return {name: getattr(self, name) for name in names}

    def set(self, totals: dict) -> None:
        """Takes the totals such a loop returns."""
        self.loss, self.correct, self.count = (float(totals[name]) for name in self.NAMES)
        if self.confusion is not None:
            self.confusion = np.asarray(totals["confusion"])

    def result(self) -> dict:
        """Every metric of `METRICS` these sums allow, by name, and `examples`."""
        sums = {"loss": self.loss, "correct": self.correct if self.counts_correct else None,
                "count": self.count, "confusion": self.confusion}
        values = {name: metric.value(sums) for name, metric in METRICS.items()}
        return {**{k: v for k, v in values.items() if v is not None},
                "examples": int(self.count)}

    def state(self) -> list[float]:
        return [self.loss, self.correct, self.count]

    def __repr__(self) -> str:
        return f"MetricSums(loss={self.loss}, correct={self.correct}, count={self.count})"
