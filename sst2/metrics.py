"""Classification metrics from a confusion matrix: accuracy, macro-F1, Matthews correlation.

The eval step adds up a confusion matrix on the device (`confusion_matrix`);
`from_confusion` turns it into every metric at once, for any number of
classes. `BEST_METRICS` says which way each one improves, for `--best_metric`.

Example:
    >>> confusion = np.array([[5, 1], [2, 2]])   # rows: true class; columns: predicted
    >>> {k: round(v, 4) for k, v in from_confusion(confusion).items()}
    {'accuracy': 0.7, 'macro_f1': 0.6703, 'mcc': 0.3563}
"""

import numpy as np
import tensorflow as tf

# Each metric `--best_metric` may name, and whether higher is better.
BEST_METRICS = {"accuracy": True, "macro_f1": True, "mcc": True, "loss": False}


def confusion_matrix(labels: tf.Tensor, predictions: tf.Tensor, weights: tf.Tensor,
                     num_classes: int) -> tf.Tensor:
    """`[num_classes, num_classes]` float32 counts: row = true class, column = predicted;
    rows with weight 0 (padding) count for nothing."""
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
