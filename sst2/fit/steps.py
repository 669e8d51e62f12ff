"""The compiled train step of a head under a tf.distribute strategy (`Trainer`).

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
    >>> sorted(trainer.train_step(batch))
    ['correct', 'count', 'loss']
"""


import keras
import tensorflow as tf

from sst2.fit import averaging
from sst2.fit.evaluator import Evaluator, as_float32, on_device
from sst2.fit.rdrop import rdrop_loss
from sst2.fit.sources import Batch
from sst2.model import target_math
from sst2.model.head import example_features
from sst2.run import targets
from sst2.run.metrics import MetricSums


class Trainer:
    """The train step of a head, written for `strategy.run`, and its evaluator.

    Each step is a `tf.function(jit_compile=...)` that runs once per replica on
    its share of a global batch. The loss is averaged over the global batch
    (`tf.nn.compute_average_loss`), so gradients summed across replicas equal
    the one-device gradient. Steps return sums (loss, correct, count) reduced
    across replicas; callers divide; its `evaluator` (`sst2.fit.evaluator`) scores the
    head with the same sums and a confusion matrix. With
    `class_weights` (one per class), each example's loss is weighted by its
    class's (the reported loss stays unweighted). With a `weight_average`, each train step
    also updates it, and the evaluator runs with the averaged weights. With
    `rdrop_alpha` > 0 each train step runs the head twice (see `rdrop_loss`);
    the reported training loss stays the first pass's cross-entropy.

    Args:
        head: the model it trains (`ClassifierHead`, or a group of heads).
        optimizer: what applies the gradients.
        batch_size: the global batch, over every replica.
        strategy: the `tf.distribute` strategy (default: the current one).
        jit_compile: compile the steps with XLA.
        weight_average: an average of the weights the evaluator scores, if any.
        rdrop_alpha: R-Drop's weight (0: off).
        class_weights: one weight per class, or per label's positives.
        target: the kind of target (`sst2.run.targets`): the loss and what logits become.
        target_scale: a regression target's training scale.
        threshold: a fixed threshold for every label (None: tuned).
    """

    # A loss or metric that is not finite stops the run (`sst2.fit.loop.NonFiniteError`).
    stops_on_non_finite = True
    # What scores the head (`self.evaluator`): the same head, distribution and sums.
    evaluator_class = Evaluator

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
        # Many steps per call: a graph loop draws batches from a (distributed) tf.data
        # iterator and runs the step on every replica, adding the sums on the device.
        self._train_loop = tf.function(self.loop_of(train_replica_step))
        self.evaluator = self.evaluator_class(self)

    def loop_of(self, replica_step):
        """`replica_step` as a compiled loop of any number of steps per call."""
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
        sums.set(self._train_loop(iterator, tf.constant(steps, tf.int64), on_device(sums)))

    def build(self, feature_shape: tuple) -> None:
        """Creates the head's and the optimizer's variables (needed before a restore).

        `feature_shape` is one example's; `None` marks a token axis.
        """
        with self.strategy.scope():
            self.head(example_features(feature_shape, pair=self.head.pair))
            self.optimizer.build(self.head.trainable_variables)
            if self.weight_average is not None:
                self.weight_average.build(self.head.trainable_variables)

    def sums_of(self, logits, labels, weights):
        """A batch's per-example losses, and the sums a step adds up (`loss`, `correct`,
        `count`)."""
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
                _, sums = self.sums_of(logits, labels, weights)
                per_example = rdrop_loss(logits, logits_again, labels, self.rdrop_alpha)
            else:
                logits = self.head(features, training=True)
                per_example, sums = self.sums_of(logits, labels, weights)
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

    def one_batch(self, batch: Batch):
        """An iterator over one `Batch`, as `iterator` hands out a source's batches."""
        values = tf.nest.map_structure(tf.constant, (batch.features, batch.labels, batch.weights))
        return self._distributed(lambda: tf.data.Dataset.from_tensors(values))

    def train_step(self, batch: Batch) -> dict:
        """One train step on one batch (the same compiled loop); its sums, by name."""
        sums = MetricSums()
        self.train_steps(self.one_batch(batch), 1, sums)
        return {"loss": sums.loss, "correct": sums.correct, "count": sums.count}

    def sums(self, state: MetricSums | None = None) -> MetricSums:
        """A training epoch's sums for this trainer's target (continuing `state`)."""
        state = state or MetricSums()
        state.counts_correct = self.target.counts_correct
        return state

