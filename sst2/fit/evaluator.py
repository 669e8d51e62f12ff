"""Scoring a head over a whole source (`Evaluator`), beside the trainer's steps.

As orbit keeps its StandardEvaluator apart from its StandardTrainer, what an
evaluation computes lives here and what a training step computes in
`sst2.fit.steps`; they share the trainer's head, its distribution and what a
step adds up (`Trainer.sums_of`). A single-label head is scored by compiled
eval steps that sum a confusion matrix on the device; a target whose metrics
need every output at once (thresholds, correlations) collects them
(`collect`) and scores them (`target.score`).

Example:
    >>> import keras
    >>> import numpy as np
    >>> from sst2.fit.sources import Batch
    >>> from sst2.fit.steps import Trainer
    >>> from sst2.model.head import ClassifierHead
    >>> trainer = Trainer(ClassifierHead(hidden_units=0), keras.optimizers.Adam(1e-2),
    ...                   batch_size=4)
    >>> trainer.build(feature_shape=(1, 8))
    >>> batch = Batch(np.eye(4, 8, dtype=np.float32)[:, None], np.array([0, 1, 0, 1], np.int32),
    ...               np.ones(4, np.float32))
    >>> sorted(trainer.evaluator.eval_step(batch))
    ['confusion', 'correct', 'count', 'loss']
"""

import contextlib

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from sst2.fit.sources import Batch, BatchSource
from sst2.model import target_math
from sst2.run.metrics import MetricSums


class Evaluator:
    """Every metric of a trainer's head over a source (see the module), with its weight
    average swapped in when it has one."""

    # The batch axis of `outputs_and_loss`'s results (a group of heads stacks them first).
    batch_axis = 0

    def __init__(self, trainer):
        self.trainer = trainer
        eval_jit = tf.function(self._eval_replica_step, jit_compile=trainer.jit_compile)

        def eval_replica_step(*args):
            # Called through a Python function, the compiled step is traced per
            # replica, with that replica's copies of the variables.
            return eval_jit(*args)

        self._eval_loop = tf.function(trainer.loop_of(eval_replica_step))
        self._outputs_step = tf.function(self.outputs_and_loss,
                                         jit_compile=trainer.jit_compile)

    def eval_steps(self, iterator, steps: int, sums: MetricSums) -> None:
        """`steps` eval steps in one call, as `Trainer.train_steps`."""
        sums.set(self._eval_loop(iterator, tf.constant(steps, tf.int64), on_device(sums)))

    def outputs_and_loss(self, features, labels):
        """A batch's outputs (`target_math.outputs`) and per-example losses."""
        trainer = self.trainer
        logits = trainer.head(as_float32(features), training=False)
        return (target_math.outputs(trainer.target, logits, scale=trainer.target_scale),
                target_math.loss(trainer.target, logits, labels, scale=trainer.target_scale))

    def _eval_replica_step(self, features, labels, weights):
        trainer = self.trainer
        logits = trainer.head(as_float32(features), training=False)
        predictions = tf.argmax(logits, -1, output_type=tf.int32)
        return {**trainer.sums_of(logits, labels, weights)[1],
                "confusion": confusion_matrix(labels, predictions, weights,
                                              trainer.num_classes)}

    def eval_step(self, batch: Batch) -> dict:
        """One eval step on one batch; its sums, by name, with the confusion matrix."""
        classes = self.trainer.num_classes
        sums = MetricSums(confusion=np.zeros((classes, classes)))
        self.eval_steps(self.trainer.one_batch(batch), 1, sums)
        return {"loss": sums.loss, "correct": sums.correct, "count": sums.count,
                "confusion": sums.confusion}

    def evaluate(self, source: BatchSource, description: str = "eval",
                 show_progress: bool = True, thresholds=None,
                 with_outputs: bool = False) -> dict:
        """Every metric of the target over a whole source (in its fixed order), with
        averaged weights when the trainer averages them. Multi-label: at `thresholds`
        (default: the trainer's `threshold` for every label, else each label's tuned on
        the source), which the head keeps (`head.thresholds`) and the result returns.
        Single-label: the result also holds the `confusion` matrix, and with
        `with_outputs` every example's `outputs` (probabilities) and `labels` (for
        TensorBoard's precision-recall curves)."""
        trainer = self.trainer
        averaged = (contextlib.nullcontext() if trainer.weight_average is None
                    else trainer.weight_average.swapped_in(trainer.head.trainable_variables))
        num_batches = source.num_batches(0)
        with averaged, tqdm(total=num_batches, desc=description, leave=False,
                            disable=not show_progress) as bar:
            if trainer.target.collects_outputs:
                return self._evaluate_outputs(source, bar, thresholds)
            classes = trainer.num_classes
            totals = MetricSums(confusion=np.zeros((classes, classes)))
            self.eval_steps(trainer.iterator(source, 0), num_batches, totals)
            bar.update(num_batches)
            result = {**totals.result(), "confusion": totals.confusion.astype(int).tolist()}
            if with_outputs:
                outputs, labels, _ = self.collect(source)
                result.update(outputs=outputs, labels=labels)
        return result

    def collect(self, source: BatchSource, bar=None) -> tuple:
        """`(outputs, labels, loss_sum)` over a whole source, padded rows dropped: every
        example's outputs (`target_math.outputs`), its label, and the float64 sum of the
        per-example losses (per head, for a group)."""
        outputs, labels, loss = [], [], 0.0
        axis = self.batch_axis
        for features, batch_labels, weights in source.dataset(0):
            batch_outputs, per_example = self._outputs_step(features, batch_labels)
            keep = weights.numpy() > 0
            outputs.append(np.compress(keep, batch_outputs.numpy(), axis=axis))
            labels.append(batch_labels.numpy()[keep])
            loss = loss + np.sum(np.compress(keep, per_example.numpy(), axis=axis), axis=axis,
                                 dtype=np.float64)
            if bar is not None:
                bar.update(1)
        return np.concatenate(outputs, axis=axis), np.concatenate(labels), loss

    def _evaluate_outputs(self, source: BatchSource, bar, thresholds) -> dict:
        """Every output of `source`, then its metrics (`target.score`)."""
        trainer = self.trainer
        outputs, labels, loss = self.collect(source, bar)
        if thresholds is None and trainer.threshold is not None:
            thresholds = np.full(labels.shape[1], trainer.threshold)
        result = trainer.target.score(outputs, labels, thresholds,
                                      loss=float(loss) / max(len(labels), 1))
        if "thresholds" in result:
            trainer.head.thresholds.assign(result["thresholds"])
        return result


def as_float32(features):
    """Cached features as stored (float16, half the bytes to read and move) in float32:
    the cast is exact and compiled into the step."""
    return tf.nest.map_structure(
        lambda x: tf.cast(x, tf.float32) if x.dtype == tf.float16 else x, features)


def on_device(sums: MetricSums) -> dict:
    """`sums`' totals as float64 tensors, for a loop that continues them on the device."""
    return {name: tf.constant(value, tf.float64) for name, value in sums.totals().items()}


def confusion_matrix(labels, predictions, weights, num_classes: int):
    """`[num_classes, num_classes]` float32 counts: row = true class, column = predicted;
    rows with weight 0 (padding) count for nothing."""
    index = labels * num_classes + predictions
    return tf.reshape(tf.math.unsorted_segment_sum(weights, index, num_classes * num_classes),
                      [num_classes, num_classes])
