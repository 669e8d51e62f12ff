"""What the export answers: a batch of outputs as the serving signature's outputs, and
what word attributions explain of them.

A kind of target (`sst2.run.targets`) names how its answer is decided
(`decision`): the class with the highest probability, each label above its
tuned threshold, or the score itself. `DECISIONS` holds the computation of
each, in the graph the export serves.

Example:
    >>> import tensorflow as tf
    >>> from sst2.text.dataset_info import SST2_INFO
    >>> found = answer(SST2_INFO, tf.constant([[0.2, 0.8]]), temperature=None)
    >>> sorted(found), found["label"].numpy().tolist()
    (['label', 'label_id', 'probabilities'], [b'positive'])
"""

import dataclasses
from typing import Callable

import tensorflow as tf

from sst2.text.dataset_info import DatasetInfo


@dataclasses.dataclass(frozen=True)
class Decision:
    """`outputs(probabilities_or_scores, label_names, separator, thresholds)`: the
    signature's outputs (a kind's `export_outputs`, batch first). `explained(outputs,
    answers)`: `[n, E]` values of `n` texts' outputs toward the answers they got, one
    column per explained quantity; `explained_columns(answers)`: which columns each text
    explains (bool `[n, E]`)."""

    outputs: Callable
    explained: Callable
    explained_columns: Callable


def _every_text_one_column(answers, name):
    return tf.ones([tf.shape(answers[name])[0], 1], tf.bool)


def _argmax_outputs(probabilities, label_names, separator, thresholds):
    """`probabilities` float32 [None, classes], `label_id` int32, `label` string."""
    label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    return {"probabilities": probabilities, "label_id": label_id,
            "label": tf.gather(tf.constant(label_names), label_id)}


def _thresholds_outputs(probabilities, label_names, separator, thresholds):
    """`probabilities` float32 [None, labels], `predicted` bool [None, labels] (at the
    head's tuned thresholds), `labels` string: the predicted names joined by the
    separator (none above its threshold: empty)."""
    predicted = probabilities >= thresholds
    names = tf.ragged.boolean_mask(
        tf.broadcast_to(tf.constant(label_names), tf.shape(probabilities)), predicted)
    return {"probabilities": probabilities, "predicted": predicted,
            "labels": tf.strings.reduce_join(names, axis=-1, separator=separator)}


DECISIONS = {
    # The class with the highest probability; explained: that class's probability.
    "argmax": Decision(
        _argmax_outputs,
        lambda outputs, answers: tf.gather(outputs, answers["label_id"], batch_dims=1)[:, None],
        lambda answers: _every_text_one_column(answers, "label_id")),
    # Each label at or above its threshold; explained: each label the text got.
    "thresholds": Decision(_thresholds_outputs, lambda outputs, answers: outputs,
                           lambda answers: answers["predicted"]),
    # The score, on the training scale.
    "score": Decision(lambda scores, *_: {"score": scores},
                      lambda outputs, answers: outputs[:, None],
                      lambda answers: _every_text_one_column(answers, "score")),
}


def served(target, outputs, temperature: float | None):
    """A batch of outputs as served: a calibrated kind's probabilities taken to
    `temperature` (`softmax(log p / T)`, `sst2.serve.temperature`), which never changes a
    label; others unchanged."""
    if temperature is None or not target.calibrated:
        return outputs
    return tf.nn.softmax(tf.math.log(tf.maximum(outputs, 1e-12)) / temperature)


def decided(dataset: DatasetInfo, served_outputs, thresholds=None) -> dict:
    """The signature's outputs for a batch of outputs already `served`."""
    return DECISIONS[dataset.target.decision].outputs(
        served_outputs, dataset.label_names, dataset.label_separator, thresholds)


def answer(dataset: DatasetInfo, outputs, temperature: float | None, thresholds=None) -> dict:
    """The signature's outputs (`dataset.target.export_outputs`) for a batch of outputs
    (probabilities or scores): `served` at `temperature`, then decided (`thresholds`: a
    multi-label head's)."""
    return decided(dataset, served(dataset.target, outputs, temperature), thresholds)


def explained(target, outputs, answers: dict):
    """What word attributions explain (`sst2.serve.graph.explaining`) of `outputs`: `[n, E]`,
    one column per explained quantity, toward the `answers` the texts got."""
    return DECISIONS[target.decision].explained(outputs, answers)


def explained_columns(target, answers: dict):
    """Which of `explained`'s columns each text explains (bool `[n, E]`): all, but for a
    multi-label answer only its predicted labels'."""
    return DECISIONS[target.decision].explained_columns(answers)
