"""Accuracy, macro-F1 and MCC from the device's confusion matrix equal their definitions."""


import numpy as np
import pytest
import tensorflow as tf

from sst2.fit.evaluator import confusion_matrix
from sst2.run import metrics


def reference(labels, predictions, num_classes):
    """The metrics computed example by example, from their textbook definitions."""
    f1s = []
    for c in range(num_classes):
        tp = sum(1 for y, p in zip(labels, predictions) if y == c and p == c)
        fp = sum(1 for y, p in zip(labels, predictions) if y != c and p == c)
        fn = sum(1 for y, p in zip(labels, predictions) if y == c and p != c)
        if tp + fp + fn:  # classes that occur as a label or a prediction
            f1s.append(2 * tp / (2 * tp + fp + fn))
    # MCC as the correlation of the one-hot label and prediction vectors (Gorodkin 2004).
    x = np.eye(num_classes)[labels] - np.eye(num_classes)[labels].mean(0)
    y = np.eye(num_classes)[predictions] - np.eye(num_classes)[predictions].mean(0)
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return {"accuracy": float(np.mean(np.array(labels) == np.array(predictions))),
            "macro_f1": float(np.mean(f1s)),
            "mcc": float((x * y).sum() / denominator) if denominator else 0.0}


@pytest.mark.parametrize("num_classes, seed", [(2, 0), (2, 1), (5, 2), (6, 3), (6, 4)])
def test_metrics_equal_definitions(num_classes, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, 300)
    # Predictions better than chance, with one class never predicted.
    predictions = np.where(rng.random(300) < 0.6, labels, rng.integers(0, num_classes, 300))
    predictions[predictions == num_classes - 1] = 0
    weights = np.ones(300, np.float32)
    weights[-7:] = 0  # padding rows
    confusion = confusion_matrix(tf.constant(labels, tf.int32),
                                         tf.constant(predictions, tf.int32),
                                         tf.constant(weights), num_classes).numpy()
    assert confusion.sum() == 293
    got = metrics.from_confusion(confusion)
    expected = reference(labels[:-7], predictions[:-7], num_classes)
    for name in expected:
        assert got[name] == pytest.approx(expected[name], abs=1e-12), name


def test_degenerate_cases():
    assert metrics.from_confusion(np.array([[3, 0], [2, 0]]))["mcc"] == 0.0  # one prediction
    perfect = metrics.from_confusion(np.diag([4, 5, 6]))
    assert perfect == {"accuracy": 1.0, "macro_f1": 1.0, "mcc": 1.0}
    assert metrics.from_confusion(np.array([[0, 5], [5, 0]]))["mcc"] == -1.0


def test_an_undefined_correlation_is_undefined_not_zero():
    """Case 15: one validation example (or constant predictions) scored Pearson 0.0000."""
    from sst2.run import metrics, targets

    for scores, labels in (([1.0], [2.0]), ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])):
        found = metrics.regression_scores(np.array(scores), np.array(labels))
        assert found["pearson"] is None and found["spearman"] is None
        assert "pearson" not in targets.TARGETS["regression"].score(np.array(scores),
                                                                  np.array(labels))
    assert np.isnan(metrics.regression_scores(np.array([np.nan, 1.0]),
                                              np.array([1.0, 2.0]))["pearson"])
