"""What a run learns to predict: one class, any set of labels, or a number. A registry.

`TARGETS[task]` is one object per `--task` that owns everything the kind
decides: how its labels are spelled in files (`labels`, read by
`sst2.text.labels`), the head's outputs and loss, what logits become (in
training, evaluation and the export), how the answers of several heads
average, the export's outputs, the record `sst2.predict` and
`sst2.evaluate` write, its metrics, the output they score, whether it has
thresholds or a temperature, and what the log and the model card call it.
Labels reach it as `sst2.text.datasets` gives them: a class id, a 0/1 vector
over the label names, or a float (standardized by the training split's mean
and spread, `TargetScale`). Adding a kind is one class here and its tests
(and a report section, `sst2.serve.report`, for pictures of its own).

The module imports without TensorFlow; the methods that compute on tensors
import it when called.

Example:
    >>> import tensorflow as tf
    >>> target = TARGETS["multi_label"]
    >>> target.units(num_labels=3), target.default_metric, target.thresholded
    (3, 'macro_f1', True)
    >>> logits = tf.constant([[2.0, -2.0, 0.0]])
    >>> [round(p, 3) for p in target.outputs(logits).numpy()[0].tolist()]   # one per label
    [0.881, 0.119, 0.5]
    >>> float(target.loss(logits, tf.constant([[1, 0, 1]]))[0]) > 0
    True
    >>> TARGETS["regression"].outputs(tf.constant([[0.5]]), TargetScale(3.0, 2.0)).numpy()
    array([4.], dtype=float32)
    >>> TARGETS["single_label"].record({"probabilities": [[0.2, 0.8]], "label_id": [1],
    ...                                 "label": [b"positive"]}, 0)
    {'label': 'positive', 'label_id': 1, 'probability': 0.8, 'probabilities': [0.2, 0.8]}
"""

import dataclasses

import numpy as np

from sst2.run import metrics
from sst2.run.errors import UserError

_TINY = 1e-7  # keeps an averaged probability's logarithm finite


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
        explains_each_label: word attributions toward each label (`explained`), else
            toward the one answer.
        export_outputs: the serving signature's outputs, in order.
        thresholded: a tuned threshold per output (`--threshold`); calibrated: a
            temperature over its probabilities (`--calibrate`); softmax: one softmax
            over its outputs (what `--rdrop_alpha` compares).
        standardized: the head learns the number standardized (`TargetScale`).
        has_classes: whether `label_names` name its outputs; inferred: what `--task=auto`
            picks for labels spelled as its are (one kind per spelling).
        tag: the model card's pipeline tag; verb: what the model does to a text;
            description_of_names: what the log calls its label names.

    A kind also computes (the methods below that raise here): `loss`, `outputs`,
    `from_mean`, `export_answer`, `explained`, `record` and `score`.
    """

    name = description = labels = default_metric = tag = ""
    metrics: tuple = ()
    counts_correct = thresholded = calibrated = standardized = softmax = False
    explains_each_label = False
    has_classes = inferred = True
    answer = "probabilities"
    export_outputs: tuple = ()
    verb, description_of_names = "classifies", "classes"

    def __repr__(self) -> str:
        return f"Target({self.name!r})"

    def loss(self, logits, labels, class_weights=None, scale=None):
        """The per-example training loss of `logits` `[batch, units]` against `labels`."""
        raise NotImplementedError

    def outputs(self, logits, scale=None):
        """What a model answers for `logits`: probabilities, or scores on the training
        scale (`scale`: a `TargetScale`)."""
        raise NotImplementedError

    def from_mean(self, mean):
        """Logits whose `outputs` are `mean`, a mean of outputs (an ensemble's)."""
        raise NotImplementedError

    def served(self, outputs, temperature: float | None):
        """A batch of outputs as served: a calibrated kind's probabilities taken to
        `temperature` (`softmax(log p / T)`, `sst2.fit.calibration`), others unchanged."""
        if temperature is None or not self.calibrated:
            return outputs
        import tensorflow as tf

        return tf.nn.softmax(tf.math.log(tf.maximum(outputs, 1e-12)) / temperature)

    def export_answer(self, outputs, label_names: tuple, separator: str, thresholds) -> dict:
        """The serving signature's outputs (`export_outputs`, batch first) for `outputs`."""
        raise NotImplementedError

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

    def explained(self, outputs, answers: dict):
        """What word attributions explain (`sst2.serve.explaining`): `[n, E]` values of
        `outputs` (`n` texts' outputs, anywhere on a path to the input) toward the answers
        the texts got (`export_answer`'s, at the input), one column per explained
        quantity; `explained_columns(answers)` says which columns each text explains."""
        raise NotImplementedError

    def explained_columns(self, answers: dict):
        """Which of `explained`'s columns are explained per text (bool `[n, E]`): all,
        but for a multi-label answer only its predicted labels'."""
        import tensorflow as tf

        return tf.ones([tf.shape(answers[self.export_outputs[0]])[0], 1], tf.bool)

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

    def mean_of_heads(self, logits):
        """Logits `[batch, outputs]` whose answer is the mean of the answers of the heads
        whose logits `logits` stacks (`[heads, batch, outputs]`)."""
        import tensorflow as tf

        return self.from_mean(tf.reduce_mean(self.outputs(logits), 0))

    def class_weights(self, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """`--class_weights=balanced`: examples / (classes x the class's examples); 0 for a
        class without examples."""
        counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
        return np.divide(len(labels), num_classes * counts, out=np.zeros_like(counts),
                         where=counts > 0)


class SingleLabel(Target):
    name, labels, tag = "single_label", "classes", "text-classification"
    description = "one class per text (softmax)"
    default_metric, counts_correct, calibrated, softmax = "accuracy", True, True, True
    metrics = ("loss", "accuracy", "macro_f1", "f1", "mcc")
    export_outputs = ("probabilities", "label_id", "label")

    def loss(self, logits, labels, class_weights=None, scale=None):
        import keras

        return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)

    def outputs(self, logits, scale=None):
        import tensorflow as tf

        return tf.nn.softmax(logits, axis=-1)

    def from_mean(self, mean):
        """Logits whose outputs are `mean`, a mean of outputs: softmax(log p) = p."""
        import tensorflow as tf

        return tf.math.log(tf.maximum(mean, _TINY))

    def export_answer(self, probabilities, label_names: tuple, separator: str, thresholds):
        """The serving signature's outputs: `probabilities` float32 [None, classes],
        `label_id` int32, `label` string."""
        import tensorflow as tf

        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {"probabilities": probabilities, "label_id": label_id,
                "label": tf.gather(tf.constant(label_names), label_id)}

    def name_answers(self, answers: dict, label_names, separator: str) -> dict:
        return {**answers, "label": np.asarray(label_names, object)[answers["label_id"]]}

    def explained(self, outputs, answers: dict):
        """The probability of the class the text got."""
        import tensorflow as tf

        return tf.gather(outputs, answers["label_id"], batch_dims=1)[:, None]

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
    metrics = ("loss", "macro_f1", "micro_f1", "macro_f1_at_half", "subset_accuracy")
    export_outputs = ("probabilities", "predicted", "labels")
    description_of_names = "labels (multi-label)"

    def loss(self, logits, labels, class_weights=None, scale=None):
        """Binary cross-entropy per label, averaged over the labels; with `class_weights`
        (a positive weight per label), each label's positive examples weigh that much."""
        import tensorflow as tf

        labels = tf.cast(labels, tf.float32)
        per_label = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
        if class_weights is not None:
            per_label *= 1.0 + labels * (class_weights - 1.0)
        return tf.reduce_mean(per_label, axis=-1)

    def outputs(self, logits, scale=None):
        import tensorflow as tf

        return tf.sigmoid(logits)

    def from_mean(self, mean):
        """sigmoid(logit(p)) = p."""
        import tensorflow as tf

        p = tf.clip_by_value(mean, _TINY, 1 - _TINY)
        return tf.math.log(p) - tf.math.log1p(-p)

    def export_answer(self, probabilities, label_names: tuple, separator: str, thresholds):
        """`probabilities` float32 [None, labels], `predicted` bool [None, labels] (at the
        head's tuned thresholds), `labels` string: the predicted names joined by the
        separator (none above its threshold: empty)."""
        import tensorflow as tf

        predicted = probabilities >= thresholds
        names = tf.ragged.boolean_mask(
            tf.broadcast_to(tf.constant(label_names), tf.shape(probabilities)), predicted)
        return {"probabilities": probabilities, "predicted": predicted,
                "labels": tf.strings.reduce_join(names, axis=-1, separator=separator)}

    def name_answers(self, answers: dict, label_names, separator: str) -> dict:
        names = [separator.join(n for n, chosen in zip(label_names, row) if chosen)
                 for row in answers["predicted"]]
        return {**answers, "labels": np.asarray(names, object)}

    def agrees(self, answers: dict, reference: dict) -> np.ndarray:
        return (answers["predicted"] == reference["predicted"]).all(axis=-1)

    def explained(self, outputs, answers: dict):
        """Each label's probability; `explained_columns`: the labels the text got."""
        return outputs

    def explained_columns(self, answers: dict):
        return answers["predicted"]

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
    metrics = ("loss", "pearson", "spearman", "mse")
    answer, export_outputs, verb = "score", ("score",), "scores"

    def units(self, num_labels: int) -> int:
        return 1

    def loss(self, logits, labels, class_weights=None, scale=None):
        import tensorflow as tf

        scale = scale or TargetScale()
        standardized = (tf.cast(labels, tf.float32) - scale.mean) / scale.std
        return tf.square(logits[:, 0] - standardized)

    def outputs(self, logits, scale=None):
        scale = scale or TargetScale()
        return logits[:, 0] * scale.std + scale.mean

    def mean_of_heads(self, logits):
        """The mean score is the score of the mean logit (the scale is linear)."""
        import tensorflow as tf

        return tf.reduce_mean(logits, 0)

    def describe_labels(self, num_classes: int, scale: dict | None) -> str:
        return f"a number to predict (mean {scale['mean']:.3g}, std {scale['std']:.3g})"

    def export_answer(self, scores, label_names: tuple, separator: str, thresholds):
        """`score` float32 [None], on the training scale."""
        return {"score": scores}

    def explained(self, outputs, answers: dict):
        """The score."""
        return outputs[:, None]

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
