"""Whether a model's 0.9 means 90 %: expected calibration error, and temperature scaling.

A single-label model's probabilities are calibrated when, among the texts it
answers with confidence c, a fraction c is right. `expected_calibration_error`
measures the gap (equal-width confidence bins, top label). `fit_temperature`
finds the one scalar T that makes `softmax(log p / T)` most likely on held-out
labels (Guo et al., 2017, "On Calibration of Modern Neural Networks"): the
labels never change (the order of the probabilities is kept), only how sure
the model says it is. The export folds T in (`sst2.serve.graph.serving`), where
`calibrate` trusts it: enough examples, and a better likelihood on examples the
temperature was not fitted on (cross-fitting).

Example:
    >>> labels = np.array([0, 0, 1, 1])
    >>> overconfident = np.array([[0.99, 0.01], [0.01, 0.99], [0.02, 0.98], [0.97, 0.03]])
    >>> round(expected_calibration_error(overconfident, labels), 3)
    0.482
    >>> temperature = fit_temperature(overconfident, labels)
    >>> bool(temperature > 1), bool((scaled(overconfident, temperature).argmax(1)
    ...                              == overconfident.argmax(1)).all())
    (True, True)
"""

import numpy as np

TINY = 1e-12


def _log_scaled(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.log(np.maximum(probabilities.astype(np.float64), TINY)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def scaled(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """`softmax(log p / T)`: the probabilities at temperature `temperature`."""
    return np.exp(_log_scaled(probabilities, temperature))


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray,
                            temperature: float = 1.0) -> float:
    """The mean negative log-likelihood of the labels at `temperature` (in log space:
    no probability is rounded to 0)."""
    return float(-_log_scaled(probabilities, temperature)[np.arange(len(labels)),
                                                            labels].mean())


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimizing the negative log-likelihood of `scaled(probabilities, T)`.

    The likelihood is convex in 1/T, so a golden-section search over 1/T in
    [0.02, 50] finds the minimum (to ~1e-6).
    """
    def loss(inverse):
        return negative_log_likelihood(probabilities, labels, 1.0 / inverse)

    low, high = 0.02, 50.0
    ratio = (np.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = loss(a), loss(b)
    for _ in range(80):
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = loss(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = loss(b)
    return float(1.0 / ((low + high) / 2))


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict:
    """Per confidence bin (equal width over [0, 1]): `confidence` (mean top probability),
    `accuracy` and `count`; empty bins hold NaN and 0."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(index, weights=correct, minlength=bins) / count
    return {"edges": np.linspace(0, 1, bins + 1), "confidence": mean_confidence,
            "accuracy": accuracy, "count": count}


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               bins: int = 15) -> float:
    """The count-weighted mean |accuracy - confidence| over the confidence bins."""
    table = reliability(probabilities, labels, bins)
    used = table["count"] > 0
    gaps = np.abs(table["accuracy"][used] - table["confidence"][used])
    return float((gaps * table["count"][used]).sum() / table["count"].sum())


# Fewer validation examples than this estimate no temperature worth folding in.
MIN_EXAMPLES = 100
# Cross-fitting's folds: each fold's negative log-likelihood at the temperature fitted on
# the others estimates what the temperature does on texts it has not seen.
FOLDS = 5


def _per_example_nll(probabilities, labels, temperature) -> np.ndarray:
    return -_log_scaled(probabilities, temperature)[np.arange(len(labels)), labels]


def cross_fitted_nll(probabilities: np.ndarray, labels: np.ndarray,
                     folds: int = FOLDS) -> np.ndarray:
    """Each example's negative log-likelihood at the temperature fitted on the folds it
    is not in (a fixed split: the same examples give the same numbers)."""
    fold = np.random.default_rng(0).permutation(len(labels)) % folds
    held_out = _per_example_nll(probabilities, labels, 1.0)
    for k in range(folds):
        held = fold == k
        if held.any() and (~held).any():
            temperature = fit_temperature(probabilities[~held], labels[~held])
            held_out[held] = _per_example_nll(probabilities[held], labels[held], temperature)
    return held_out


def calibrate(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """The temperature to fold in, with ECE and NLL before and after.

    A temperature is fitted on every example, but applied (`temperature`) only where
    it can be trusted: at least `MIN_EXAMPLES` examples, and a cross-fitted
    negative log-likelihood (`cross_fitted_nll`) below the uncalibrated one by more
    than twice the standard error of the per-example gain (a gain within the noise
    folds in nothing). Otherwise `temperature` is 1 (the probabilities are kept) and
    `reason` says why.
    """
    fitted = fit_temperature(probabilities, labels)
    nll_one = negative_log_likelihood(probabilities, labels)
    held_out, applied = None, False
    if len(labels) < MIN_EXAMPLES:
        reason = (f"{len(labels)} validation examples, fewer than the {MIN_EXAMPLES} a "
                  "temperature needs")
    else:
        per_example = cross_fitted_nll(probabilities, labels)
        gain = _per_example_nll(probabilities, labels, 1.0) - per_example
        noise = 2 * gain.std() / np.sqrt(len(gain))
        held_out = float(per_example.mean())
        applied = bool(gain.mean() > noise)
        reason = (f"cross-fitted NLL {held_out:.4f} at fitted temperatures against "
                  f"{nll_one:.4f} uncalibrated over {len(labels)} examples: a gain of "
                  f"{gain.mean():.4f}, {'above' if applied else 'within'} twice its "
                  f"standard error ({noise:.4f})")
    temperature = fitted if applied else 1.0
    after = scaled(probabilities, temperature)
    return {"temperature": temperature, "applied": bool(applied),
            "fitted_temperature": fitted, "cross_fitted_nll": held_out, "reason": reason,
            "ece_before": expected_calibration_error(probabilities, labels),
            "ece_after": expected_calibration_error(after, labels),
            "nll_before": nll_one,
            "nll_after": negative_log_likelihood(probabilities, labels, temperature),
            "accuracy_before": float((probabilities.argmax(1) == labels).mean()),
            "accuracy_after": float((after.argmax(1) == labels).mean()),
            "examples": int(len(labels))}
