"""What a run learns to predict: one class, any set of labels, or a number. A registry.

`TARGETS[task]` is one object per `--task` that declares everything the kind
decides: how its labels are spelled in files (`labels`, read by
`sst2.text.labels`), the head's outputs, which loss it trains and which
activation makes its logits answers (computed by `sst2.model.target_math`),
how its answer is decided (`decision`, computed in the export by
`sst2.serve.graph.answers`), the export's outputs, the record `sst2.predict` and
`sst2.evaluate` write, its metrics, the output they score, whether it has
thresholds or a temperature, and what the log and the model card call it.
Labels reach it as `sst2.text.datasets` gives them: a class id, a 0/1 vector
over the label names, or a float (standardized by the training split's mean
and spread, `TargetScale`). Adding a kind is one class here and its tests; new
math (a loss, an activation, a decision) is an entry in the module that
computes it; a report section (`sst2.serve.report`) gives it pictures of its
own. Nothing here computes on tensors: the records, scores and agreements are
numpy's.

Example:
    >>> target = TARGETS["multi_label"]
    >>> target.units(num_labels=3), target.default_metric, target.thresholded
    (3, 'macro_f1', True)
    >>> target.loss, target.activation, target.decision
    ('sigmoid_cross_entropy', 'sigmoid', 'thresholds')
    >>> TARGETS["single_label"].record({"probabilities": [[0.2, 0.8]], "label_id": [1],
    ...                                 "label": [b"positive"]}, 0)
    {'label': 'positive', 'label_id': 1, 'probability': 0.8, 'probabilities': [0.2, 0.8]}
"""

import dataclasses

import numpy as np

from sst2.run import metrics
from sst2.run.errors import UserError


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

    @classmethod
    def from_record(cls, record: dict | None) -> "TargetScale | None":
        """The scale a `DatasetInfo.target_scale` record holds (None: none)."""
        return cls(**record) if record else None


class Target:
    """One kind of target (see the module); a subclass per kind.

    Attributes:
        name: its `--task` value.
        description: how the log names it.
        labels: how files spell its labels (`sst2.text.labels.READERS`): `classes`,
            `label_sets` or `numbers`.
        default_metric: what `--best_metric=auto` picks; `metrics`: what it reports.
        counts_correct: whether a step counts correct predictions (accuracy).
        answer: the output evaluation scores (and an ensemble averages).
        explains_each_label: word attributions toward each label, else toward the one
            answer.
        loss: its training loss, a name in `sst2.model.target_math.LOSSES`;
            activation: what makes its logits outputs (`ACTIVATIONS` there): probabilities
            or scores on the training scale.
        decision: how the export decides its answer from the outputs
            (`sst2.serve.graph.answers.DECISIONS`): `argmax`, `thresholds` or `score`.
        export_outputs: the serving signature's outputs, in order.
        thresholded: a tuned threshold per output (`--threshold`); calibrated: a
            temperature over its probabilities (`--calibrate`).
        standardized: the head learns the number standardized (`TargetScale`).
        has_classes: whether `label_names` name its outputs; inferred: what `--task=auto`
            picks for labels spelled as its are (one kind per spelling).
        tag: the model card's pipeline tag; verb: what the model does to a text;
            description_of_names: what the log calls its label names.

    A kind also says, in numpy (the methods below that raise here), what a `record`
    of its answers holds and how its outputs `score`.
    """

    name = description = labels = default_metric = tag = ""
    loss = activation = decision = ""
    metrics: tuple = ()
    counts_correct = thresholded = calibrated = standardized = False
    explains_each_label = False
    has_classes = inferred = True
    answer = "probabilities"
    export_outputs: tuple = ()
    verb, description_of_names = "classifies", "classes"

    def __repr__(self) -> str:
        return f"Target({self.name!r})"

    @property
    def softmax(self) -> bool:
        """One softmax over its outputs (what `--rdrop_alpha` compares)."""
        return self.activation == "softmax"

    def name_answers(self, answers: dict, label_names, separator: str) -> dict:
        """`answers` (numpy) with the string outputs an artifact without strings leaves
        to its client (`export_outputs` the numbers imply)."""
        return answers

    def agrees(self, answers: dict, reference: dict) -> np.ndarray:
        """Per text, whether two exports' answers (numpy) to it are the same answer:
        the same label, the same set of labels; a score within 1 % of the reference
        scores' range."""
        scores, reference_scores = answers[self.answer], reference[self.answer]
        spread = np.ptp(reference_scores) if len(reference_scores) else 0.0
        return np.abs(scores - reference_scores) <= 0.01 * spread

    def agreement(self, answers: dict, reference: dict) -> dict:
        """How far two exports' answers to the same texts agree: the share of texts that
        get the same answer (`agrees`) and the largest difference of `answer`."""
        return {"answers_equal": float(np.mean(self.agrees(answers, reference))),
                "largest_difference": float(np.abs(
                    answers[self.answer] - reference[self.answer]).max(initial=0.0))}

    def record(self, answers: dict, i: int, label_names=None, separator: str = ",") -> dict:
        """Example `i` of a batch of the export's answers (numpy arrays or lists), as
        plain JSON values: what `sst2.predict --json` prints and `sst2.evaluate` writes."""
        raise NotImplementedError

    def score(self, outputs, labels, thresholds=None, loss=None) -> dict:
        """Every metric it reports of `outputs` against `labels` (numpy), and `examples`."""
        raise NotImplementedError

    @property
    def collects_outputs(self) -> bool:
        """Whether evaluation needs every output at once (thresholds, correlations)
        rather than sums a step can add up."""
        return not self.counts_correct

    def units(self, num_labels: int) -> int:
        """The head's outputs for `num_labels` classes or labels."""
        return num_labels

    def reported(self, num_classes: int) -> list:
        """The metrics a run of `num_classes` classes reports (F1 of the positive class:
        two classes only)."""
        return [m for m in self.metrics if m != "f1" or num_classes == 2]

    def describe_labels(self, num_classes: int, scale: dict | None) -> str:
        """What the log says the run predicts."""
        return f"{num_classes} {self.description_of_names}"

    def submitted(self, answers: dict, named: bool) -> list:
        """What a GLUE submission's prediction column holds for the export's `answers`: a
        class id, or a class name (`named`)."""
        if named:
            return [name.decode() for name in answers["label"]]
        return [int(i) for i in answers["label_id"]]

    def class_weights(self, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """`--class_weights=balanced`: examples / (classes x the class's examples); 0 for a
        class without examples."""
        counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
        return np.divide(len(labels), num_classes * counts, out=np.zeros_like(counts),
                         where=counts > 0)


class SingleLabel(Target):
    name, labels, tag = "single_label", "classes", "text-classification"
    description = "one class per text (softmax)"
    default_metric, counts_correct, calibrated = "accuracy", True, True
    loss, activation, decision = "softmax_cross_entropy", "softmax", "argmax"
    metrics = ("loss", "accuracy", "macro_f1", "f1", "mcc")
    export_outputs = ("probabilities", "label_id", "label")

    def name_answers(self, answers: dict, label_names, separator: str) -> dict:
        return {**answers, "label": np.asarray(label_names, object)[answers["label_id"]]}

    def agrees(self, answers: dict, reference: dict) -> np.ndarray:
        return answers["label_id"] == reference["label_id"]

    def record(self, answers: dict, i: int, label_names=None, separator: str = ",") -> dict:
        """The label, its id and probability, and every class's probability."""
        probabilities = [round(float(p), 6) for p in answers["probabilities"][i]]
        label_id, label = int(answers["label_id"][i]), answers["label"][i]
        return {"label": label.decode() if isinstance(label, bytes) else str(label),
                "label_id": label_id, "probability": probabilities[label_id],
                "probabilities": probabilities}

    def score(self, outputs, labels, thresholds=None, loss=None) -> dict:
        """Every metric of probabilities against class ids; the loss is the mean negative
        log-likelihood."""
        num_classes = outputs.shape[1]
        chosen = outputs[np.arange(len(labels)), labels]
        confusion = np.bincount(labels * num_classes + outputs.argmax(-1),
                                minlength=num_classes ** 2).reshape(num_classes, num_classes)
        loss = float(-np.log(np.maximum(chosen, np.finfo(np.float32).tiny)).mean())
        return {"loss": loss, **metrics.from_confusion(confusion), "examples": len(labels)}


class MultiLabel(Target):
    name, labels, tag = "multi_label", "label_sets", "multi-label-classification"
    description = "any set of labels per text (a sigmoid per label)"
    default_metric, thresholded, explains_each_label = "macro_f1", True, True
    loss, activation, decision = "sigmoid_cross_entropy", "sigmoid", "thresholds"
    metrics = ("loss", "macro_f1", "micro_f1", "macro_f1_at_half", "subset_accuracy")
    export_outputs = ("probabilities", "predicted", "labels")
    description_of_names = "labels (multi-label)"

    def name_answers(self, answers: dict, label_names, separator: str) -> dict:
        names = [separator.join(n for n, chosen in zip(label_names, row) if chosen)
                 for row in answers["predicted"]]
        return {**answers, "labels": np.asarray(names, object)}

    def agrees(self, answers: dict, reference: dict) -> np.ndarray:
        return (answers["predicted"] == reference["predicted"]).all(axis=-1)

    def record(self, answers: dict, i: int, label_names=None, separator: str = ",") -> dict:
        """The predicted labels by name, and each label's probability (by name, where
        the export records its names)."""
        probabilities = [round(float(p), 6) for p in answers["probabilities"][i]]
        if not label_names:  # an export from before it recorded its names
            joined = answers["labels"][i]
            joined = joined.decode() if isinstance(joined, bytes) else joined
            return {"labels": joined.split(separator) if joined else [],
                    "probabilities": probabilities}
        return {"labels": [n for n, chosen in zip(label_names, answers["predicted"][i])
                           if chosen],
                "probabilities": dict(zip(label_names, probabilities))}

    def score(self, outputs, labels, thresholds=None, loss=None) -> dict:
        """Every metric of probabilities per label against 0/1 labels, at `thresholds`."""
        found = metrics.multi_label_scores(outputs, labels, thresholds)
        return metrics.from_scores("label_sets", found, len(labels), loss,
                                   {k: found[k] for k in ("per_label_f1", "thresholds")})

    def class_weights(self, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """Per label, its negatives over its positives (1 for a label without positives),
        so each label's positives weigh as much as its negatives in the loss.

        >>> MultiLabel().class_weights(np.array([[1, 0], [0, 0], [0, 1], [0, 1]]), 2).tolist()
        [3.0, 1.0]
        """
        positives = labels.sum(axis=0).astype(np.float64)
        negatives = len(labels) - positives
        return np.divide(negatives, positives, out=np.ones_like(positives),
                         where=positives > 0)


class Regression(Target):
    name, labels, tag = "regression", "numbers", "text-regression"
    description = "a number per text (mean squared error)"
    default_metric, standardized, has_classes = "pearson", True, False
    loss, activation, decision = "standardized_squared_error", "unstandardized", "score"
    metrics = ("loss", "pearson", "spearman", "mse")
    answer, export_outputs, verb = "score", ("score",), "scores"

    def units(self, num_labels: int) -> int:
        return 1

    def describe_labels(self, num_classes: int, scale: dict | None) -> str:
        return f"a number to predict (mean {scale['mean']:.3g}, std {scale['std']:.3g})"

    def record(self, answers: dict, i: int, label_names=None, separator: str = ",") -> dict:
        return {"score": round(float(answers["score"][i]), 6)}

    def score(self, outputs, labels, thresholds=None, loss=None) -> dict:
        return metrics.from_scores("numbers", metrics.regression_scores(outputs, labels),
                                   len(labels), loss)

    def submitted(self, answers: dict, named: bool) -> list:
        """A score with three decimals (GLUE's STS-B)."""
        return [f"{score:.3f}" for score in answers["score"]]

    def class_weights(self, labels: np.ndarray, num_classes: int) -> np.ndarray:
        raise UserError("--class_weights=balanced weighs classes; a regression run has none.")


TARGETS = {target.name: target for target in (SingleLabel(), MultiLabel(), Regression())}
# `--task`'s values: a kind, or `auto` (inferred from the training labels).
TASKS = ("auto", *TARGETS)
# The kind a label spelling implies when `--task=auto` (`sst2.text.labels.infer_labels`).
INFERRED = {target.labels: target.name for target in TARGETS.values() if target.inferred}


def best_metric(option: str, task: str, official: str | None = None,
                num_classes: int = 2) -> str:
    """`--best_metric`'s value for `task`: `auto` is the `official` metric (a GLUE task's)
    or the target's default; a metric the task does not report is refused.

    >>> best_metric("auto", "regression"), best_metric("auto", "single_label", "mcc")
    ('pearson', 'mcc')
    """
    target = TARGETS[task]
    name = (official or target.default_metric) if option == "auto" else option
    reported = target.reported(num_classes)
    if name not in reported:
        raise UserError(f"--best_metric={name}: a {task} run reports {', '.join(reported)}; "
                        "pick one of them (or auto).")
    return name
