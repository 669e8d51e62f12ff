"""The compiled train and eval steps of a head under a tf.distribute strategy (`Trainer`).

What a step computes lives here; when steps run (epochs, callbacks, resume) is
`sst2.fit.loop`'s, as orbit keeps its StandardTrainer apart from its Controller.
Every step runs in a graph loop that draws batches from a tf.data iterator,
any number per compiled call.

Example:
    >>> import numpy as np
    >>> from sst2.model.head import ClassifierHead
    >>> from sst2.fit.sources import Batch
    >>> trainer = Trainer(ClassifierHead(hidden_units=0), keras.optimizers.Adam(1e-2),
    ...                   batch_size=4)
    >>> trainer.build(feature_shape=(1, 8))
    >>> batch = Batch(np.eye(4, 8, dtype=np.float32)[:, None], np.array([0, 1, 0, 1], np.int32),
    ...               np.ones(4, np.float32))
    >>> sorted(trainer.eval_step(batch))
    ['confusion', 'correct', 'count', 'loss']
"""

import contextlib

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from sst2.fit import averaging
from sst2.fit.rdrop import rdrop_loss
from sst2.fit.sources import Batch, BatchSource
from sst2.model import target_math
from sst2.model.head import example_features
from sst2.run import targets
from sst2.run.metrics import MetricSums


class Trainer:
    """Train and eval steps for a head, written for `strategy.run`.

    Each step is a `tf.function(jit_compile=...)` that runs once per replica on
    its share of a global batch. The loss is averaged over the global batch
    (`tf.nn.compute_average_loss`), so gradients summed across replicas equal
    the one-device gradient. Steps return sums (loss, correct, count) reduced
    across replicas; callers divide; eval steps add a confusion matrix. With
    `class_weights` (one per class), each example's loss is weighted by its
    class's (the reported loss stays unweighted). With a `weight_average`, each train step
    also updates it, and `evaluate` runs with the averaged weights. With
    `rdrop_alpha` > 0 each train step runs the head twice (see `rdrop_loss`);
    the reported training loss stays the first pass's cross-entropy.

    `target` (`sst2.run.targets`) sets the loss and what logits become; a
    single-label target's evaluation sums a confusion matrix on the device,
    the others' collects every output (`evaluate`).
    """

    # A loss or metric that is not finite stops the run (`sst2.fit.loop.NonFiniteError`).
    stops_on_non_finite = True

    def __init__(self, head: keras.Model, optimizer: keras.optimizers.Optimizer,
                 batch_size: int, strategy: tf.distribute.Strategy | None = None,
                 jit_compile: bool = True,
                 weight_average: averaging.ExponentialMovingAverage | None = None,
                 rdrop_alpha: float = 0.0, class_weights=None,
                 target: targets.Target = targets.TARGETS[targets.SingleLabel.name],
                 target_scale: targets.TargetScale | None = None,
                 threshold: float | None = None):
        self.head = head
        self.target, self.target_scale, self.threshold = target, target_scale, threshold
        self.num_classes = head.num_classes
        self.class_weights = (None if class_weights is None
                              else tf.constant(class_weights, tf.float32))
        self.optimizer = optimizer
        self.weight_average = weight_average
        self.rdrop_alpha = rdrop_alpha
        self.batch_size = batch_size
        self.strategy = strategy or tf.distribute.get_strategy()
        self.jit_compile = jit_compile
        if self.strategy.num_replicas_in_sync == 1:
            # One replica: forward, backward and the Adam update in one XLA program.
            self._gradients = self._replica_gradients
            train_replica_step = tf.function(self._train_replica_step, jit_compile=jit_compile)
        else:
            # Several replicas: XLA compiles forward and backward; the gradients'
            # all-reduce and the update run in tf.distribute's runtime (XLA cannot
            # hold a cross-replica merge).
            self._gradients = tf.function(self._replica_gradients, jit_compile=jit_compile)
            train_replica_step = self._train_replica_step
        eval_jit = tf.function(self._eval_replica_step, jit_compile=jit_compile)

        def eval_replica_step(*args):
            # Called through a Python function, the compiled step is traced per
            # replica, with that replica's copies of the variables.
            return eval_jit(*args)

        # Many steps per call: a graph loop draws batches from a (distributed) tf.data
        # iterator and runs the step on every replica, adding the sums on the device.
        self._train_loop = tf.function(self._loop_of(train_replica_step))
        self._eval_loop = tf.function(self._loop_of(eval_replica_step))
        self._outputs_step = tf.function(self._outputs_and_loss, jit_compile=jit_compile)

    def _loop_of(self, replica_step):
        strategy = self.strategy

        def loop(iterator, steps, totals):
            for _ in tf.range(steps):
                sums = strategy.run(replica_step, next(iterator))
                # float64, as the host adds them: the totals are those of one step per call.
                totals = {name: total + tf.cast(strategy.reduce(
                    tf.distribute.ReduceOp.SUM, sums[name], axis=None), tf.float64)
                    for name, total in totals.items()}
            return totals

        return loop

    def iterator(self, source, epoch: int, start: int = 0):
        """Batches `start`, `start + 1`, ... of `epoch` from `source.dataset`, for
        `train_steps` and `eval_steps`. On several replicas each replica receives only
        its rows of each global batch, the same rows as a step at a time."""
        return self._distributed(lambda: source.dataset(epoch, start))

    def _distributed(self, make_dataset):
        replicas = self.strategy.num_replicas_in_sync
        if replicas == 1:
            return iter(make_dataset())
        per_replica = self.batch_size // replicas

        def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
            # One pipeline per worker; it hands its local replicas their shares in turn.
            local = replicas // context.num_input_pipelines
            first = context.input_pipeline_id * local

            def shares(*batch):
                def share(replica):
                    begin = (first + replica) * per_replica
                    return tf.nest.map_structure(
                        lambda v: tf.ensure_shape(v[begin:begin + per_replica],
                                                  [per_replica] + v.shape[1:]), batch)

                return tf.data.Dataset.range(local).map(share)

            return make_dataset().flat_map(shares)

        return iter(self.strategy.distribute_datasets_from_function(dataset_fn))

    def train_steps(self, iterator, steps: int, sums: MetricSums) -> None:
        """Runs `steps` train steps on batches from `iterator` in one call; adds to `sums`."""
        sums.set(self._train_loop(iterator, tf.constant(steps, tf.int64), _on_device(sums)))

    def eval_steps(self, iterator, steps: int, sums: MetricSums) -> None:
        """`steps` eval steps in one call, as `train_steps`."""
        sums.set(self._eval_loop(iterator, tf.constant(steps, tf.int64), _on_device(sums)))

    def build(self, feature_shape: tuple) -> None:
        """Creates the head's and the optimizer's variables (needed before a restore).

        `feature_shape` is one example's; `None` marks a token axis.
        """
        with self.strategy.scope():
            self.head(example_features(feature_shape, pair=self.head.pair))
            self.optimizer.build(self.head.trainable_variables)
            if self.weight_average is not None:
                self.weight_average.build(self.head.trainable_variables)

    def _sums(self, logits, labels, weights):
        per_example = target_math.loss(self.target, logits, labels, scale=self.target_scale)
        if self.target.counts_correct:
            correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels),
                              tf.float32)
        else:
            correct = tf.zeros_like(weights)
        return per_example, {
            "loss": tf.reduce_sum(per_example * weights),
            "correct": tf.reduce_sum(correct * weights),
            "count": tf.reduce_sum(weights),
        }

    def _replica_gradients(self, features, labels, weights):
        features = as_float32(features)
        with tf.GradientTape() as tape:
            if self.rdrop_alpha:
                # Both dropout passes in one call: the batch twice, each row its own masks.
                twice = tf.nest.map_structure(lambda x: tf.concat([x, x], 0), features)
                logits, logits_again = tf.split(self.head(twice, training=True), 2)
                _, sums = self._sums(logits, labels, weights)
                per_example = rdrop_loss(logits, logits_again, labels, self.rdrop_alpha)
            else:
                logits = self.head(features, training=True)
                per_example, sums = self._sums(logits, labels, weights)
            if self.class_weights is not None and self.target.counts_correct:
                weights = weights * tf.gather(self.class_weights, labels)
            elif self.class_weights is not None:  # a positive weight per label
                per_example = target_math.loss(self.target, logits, labels, self.class_weights)
            loss = tf.nn.compute_average_loss(per_example * weights,
                                              global_batch_size=self.batch_size)
        return tape.gradient(loss, self.head.trainable_variables), sums

    def _train_replica_step(self, features, labels, weights):
        grads, sums = self._gradients(features, labels, weights)
        self.optimizer.apply_gradients(zip(grads, self.head.trainable_variables))
        if self.weight_average is not None:
            self.weight_average.update(self.head.trainable_variables)
        return sums

    def _outputs_and_loss(self, features, labels):
        logits = self.head(as_float32(features), training=False)
        return (target_math.outputs(self.target, logits, scale=self.target_scale),
                target_math.loss(self.target, logits, labels, scale=self.target_scale))

    def _eval_replica_step(self, features, labels, weights):
        logits = self.head(as_float32(features), training=False)
        predictions = tf.argmax(logits, -1, output_type=tf.int32)
        return {**self._sums(logits, labels, weights)[1],
                "confusion": confusion_matrix(labels, predictions, weights,
                                                      self.num_classes)}

    def _one_batch(self, batch: Batch):
        """An iterator over one `Batch`, as `iterator` hands out a source's batches."""
        values = tf.nest.map_structure(tf.constant, (batch.features, batch.labels, batch.weights))
        return self._distributed(lambda: tf.data.Dataset.from_tensors(values))

    def train_step(self, batch: Batch) -> dict:
        """One train step on one batch (the same compiled loop); its sums, by name."""
        sums = MetricSums()
        self.train_steps(self._one_batch(batch), 1, sums)
        return {"loss": sums.loss, "correct": sums.correct, "count": sums.count}

    def eval_step(self, batch: Batch) -> dict:
        """One eval step on one batch; its sums, by name, with the confusion matrix."""
        sums = MetricSums(confusion=np.zeros((self.num_classes, self.num_classes)))
        self.eval_steps(self._one_batch(batch), 1, sums)
        return {"loss": sums.loss, "correct": sums.correct, "count": sums.count,
                "confusion": sums.confusion}

    def sums(self, state: MetricSums | None = None) -> MetricSums:
        """A training epoch's sums for this trainer's target (continuing `state`)."""
        state = state or MetricSums()
        state.counts_correct = self.target.counts_correct
        return state

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
        averaged = (contextlib.nullcontext() if self.weight_average is None
                    else self.weight_average.swapped_in(self.head.trainable_variables))
        num_batches = source.num_batches(0)
        with averaged, tqdm(total=num_batches, desc=description, leave=False,
                            disable=not show_progress) as bar:
            if self.target.collects_outputs:
                return self._evaluate_outputs(source, bar, thresholds)
            totals = MetricSums(confusion=np.zeros((self.num_classes, self.num_classes)))
            self.eval_steps(self.iterator(source, 0), num_batches, totals)
            bar.update(num_batches)
            result = {**totals.result(), "confusion": totals.confusion.astype(int).tolist()}
            if with_outputs:
                result.update(self._outputs_of(source))
        return result

    # The batch axis of `_outputs_step`'s results (a group of heads stacks them before it).
    batch_axis = 0

    def collect(self, source: BatchSource, bar=None) -> tuple:
        """`(outputs, labels, loss_sum)` over a whole source, padded rows dropped: every
        example's outputs (`target.outputs`), its label, and the float64 sum of the
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

    def _outputs_of(self, source: BatchSource) -> dict:
        outputs, labels, _ = self.collect(source)
        return {"outputs": outputs, "labels": labels}

    def _evaluate_outputs(self, source: BatchSource, bar, thresholds) -> dict:
        """Every output of `source`, then its metrics (`target.score`)."""
        outputs, labels, loss = self.collect(source, bar)
        if thresholds is None and self.threshold is not None:
            thresholds = np.full(labels.shape[1], self.threshold)
        result = self.target.score(outputs, labels, thresholds,
                                   loss=float(loss) / max(len(labels), 1))
        if "thresholds" in result:
            self.head.thresholds.assign(result["thresholds"])
        return result

def as_float32(features):
    # Cached features arrive as stored (float16, half the bytes to read and move); the
    # cast is exact and compiled into the step.
    return tf.nest.map_structure(
        lambda x: tf.cast(x, tf.float32) if x.dtype == tf.float16 else x, features)


def _on_device(sums: MetricSums) -> dict:
    """`sums`' totals as float64 tensors, for a loop that continues them on the device."""
    return {name: tf.constant(value, tf.float64) for name, value in sums.totals().items()}


def confusion_matrix(labels, predictions, weights, num_classes: int):
    """`[num_classes, num_classes]` float32 counts: row = true class, column = predicted;
    rows with weight 0 (padding) count for nothing."""
    index = labels * num_classes + predictions
    return tf.reshape(tf.math.unsorted_segment_sum(weights, index, num_classes * num_classes),
                      [num_classes, num_classes])
