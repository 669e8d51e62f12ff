"""A temperature is folded into the export only where the validation set can trust it."""

import numpy as np
import pytest


def _overconfident(n, temperature=2.5, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, 2))
    true = np.exp(logits / temperature)
    true /= true.sum(1, keepdims=True)
    labels = np.array([rng.choice(2, p=p) for p in true])
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True), labels


def test_a_temperature_is_folded_in_only_where_it_can_be_trusted():
    """Case 8: one validation example gave T = 0.02 (a neutral text at p = 0.99987)."""
    from sst2.serve import temperature as calibration

    one = calibration.calibrate(np.array([[0.6, 0.4]]), np.array([0]))
    assert one["temperature"] == 1.0 and not one["applied"]
    assert "1 validation examples, fewer than the 100" in one["reason"]
    assert one["fitted_temperature"] < 0.1           # what would have been folded in
    assert one["ece_after"] == one["ece_before"]
    # Enough examples of a model overconfident by 2.5: cross-fitting confirms it.
    probabilities, labels = _overconfident(400)
    found = calibration.calibrate(probabilities, labels)
    assert found["applied"] and found["temperature"] == pytest.approx(2.5, rel=0.25)
    assert found["cross_fitted_nll"] < found["nll_before"]
    # A calibrated model: a temperature fitted on 150 examples does not help held-out ones.
    probabilities, labels = _overconfident(150, temperature=1.0, seed=3)
    kept = calibration.calibrate(probabilities, labels)
    assert kept["temperature"] == 1.0 and not kept["applied"], kept
    assert "within twice its standard error" in kept["reason"]
