"""The behaviour suite run on an export's answers: which cases fail, per test and capability.

How an answer is read, and when a case fails (`TOLERANCE` is 0.1):

* a sentiment classifier is read three ways from its probabilities: the
  positive classes' total less the negative classes' (classes named with
  "positive" or "negative"), below -1/3 negative, above 1/3 positive, else
  neutral; any other single-label classifier reads as its most probable class;
* `mft`: the reading is not one the case expects;
* `inv`: the readings differ and the probability of the reference's class
  moves by more than the tolerance (multi-label: the chosen labels differ and
  some label's probability moves by more; regression: the score moves by more
  than the tolerance times the spread of the unchanged texts' scores);
* `dir`: the named side's probability (positive classes' total, or negative)
  falls by more than the tolerance.

Example:
    >>> import numpy as np
    >>> reader = Reader("argmax", ["negative", "positive"], sentiment=True)
    >>> reader.readings({"probabilities": np.array([[0.9, 0.1], [0.5, 0.5]])})
    ['negative', 'neutral']
"""

import numpy as np

from sst2.serve.behaviour.suite import Test

TOLERANCE = 0.1
EXAMPLES = 3  # failing cases kept per test


class Reader:
    """How one export's answers are read: a reading per text, and the numbers a case's
    tolerance applies to. `decision`: how its target decides an answer
    (`sst2.run.targets.Target.decision`: argmax, thresholds or score)."""

    def __init__(self, decision: str, label_names: list | None, sentiment: bool):
        self.decision, self.sentiment = decision, sentiment
        names = [str(n).lower() for n in (label_names or [])]
        self.label_names = list(label_names or [])
        self.positive = np.array(["positive" in n and "negative" not in n for n in names])
        self.negative = np.array(["negative" in n for n in names])

    def readings(self, answers: dict) -> list:
        """One reading per answered text: a sentiment, a class name, a set of labels,
        or (regression) the score."""
        if self.decision == "score":
            return [float(s) for s in np.ravel(answers["score"])]
        if self.decision == "thresholds":
            return [tuple(np.flatnonzero(row).tolist()) for row in answers["predicted"]]
        probabilities = answers["probabilities"]
        if self.sentiment:
            polarity = self.side(probabilities, "positive") - self.side(probabilities, "negative")
            return ["negative" if p < -1 / 3 else "positive" if p > 1 / 3 else "neutral"
                    for p in polarity]
        names = self.label_names or [str(i) for i in range(probabilities.shape[1])]
        return [names[i] for i in probabilities.argmax(-1)]

    def side(self, probabilities: np.ndarray, side: str) -> np.ndarray:
        """The total probability of the positive (or negative) classes, per text."""
        mask = self.positive if side == "positive" else self.negative
        return probabilities[:, mask].sum(-1)


def check(tests: list[Test], answers_of, reader: Reader) -> dict:
    """Every test's failures: `answers_of(case)` gives the export's answers to the case's
    texts (a dict of arrays, a row per text). Returns the results `behaviour.json`
    holds: per test, per capability, and the mean over tests."""
    scores = [answers_of(c)["score"] for t in tests for c in t.cases
              if reader.decision == "score" and t.kind == "inv"]
    spread = float(np.ptp(np.concatenate([s[:1] for s in scores]))) if scores else 0.0
    results = []
    for test in tests:
        failed, examples, groups = 0, [], {}
        for case in test.cases:
            answers = answers_of(case)
            fails = _fails(test.kind, case, answers, reader, spread)
            failed += fails
            if case.group:
                counts = groups.setdefault(case.group, {"cases": 0, "failed": 0})
                counts["cases"] += 1
                counts["failed"] += int(fails)
            if fails and len(examples) < EXAMPLES:
                examples.append(_example(case, answers, reader))
        results.append({
            "name": test.name, "capability": test.capability, "kind": test.kind,
            "about": test.about, "cases": len(test.cases), "failed": failed,
            "failure_rate": failed / len(test.cases) if test.cases else None,
            "examples": examples, **({"by_group": groups} if groups else {})})
    return {"tolerance": TOLERANCE, "tests": results, **summarize(results)}


def _fails(kind: str, case, answers: dict, reader: Reader, spread: float) -> bool:
    readings = reader.readings(answers)
    if kind == "mft":
        return readings[0] not in case.expect
    if kind == "dir":
        side = reader.side(answers["probabilities"], case.direction)
        return bool(side[1] < side[0] - TOLERANCE)
    if reader.decision == "score":
        return bool(np.ptp(answers["score"]) > TOLERANCE * spread)
    probabilities = answers["probabilities"]
    if reader.decision == "thresholds":
        moved = np.ptp(probabilities, axis=0).max()
    else:
        moved = np.ptp(probabilities[:, probabilities[0].argmax()])
    return len(set(readings)) > 1 and bool(moved > TOLERANCE)


def _example(case, answers: dict, reader: Reader) -> dict:
    example = {"texts": list(case.texts), "readings": reader.readings(answers)}
    if case.second is not None:
        example["second"] = case.second
    if "probabilities" in answers:
        example["probabilities"] = np.round(answers["probabilities"], 4).tolist()
    if case.expect:
        example["expected"] = list(case.expect)
    if case.direction:
        example["direction"] = case.direction
    return example


def summarize(results: list[dict]) -> dict:
    """The failure rate per capability (the mean of its tests') and over every test that
    had cases."""
    rated = [r for r in results if r["failure_rate"] is not None]
    capabilities = {}
    for r in rated:
        capabilities.setdefault(r["capability"], []).append(r["failure_rate"])
    return {"capabilities": {name: {"failure_rate": float(np.mean(rates)), "tests": len(rates)}
                             for name, rates in capabilities.items()},
            "mean_failure_rate": float(np.mean([r["failure_rate"] for r in rated]))
            if rated else None}
