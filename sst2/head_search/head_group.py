"""Many heads over the same features, trained together in one compiled step.

The backbone is frozen and its features cached, so a head's step is small.
A `GroupTrainer` runs K heads that read the same features in one compiled
train step on the same batches, each updated at its own learning rate, and
evaluates all K in one pass. The heads are a `HeadGroup` (any heads: each its
own width, dropout and seed, its own Adam in a `GroupedOptimizer`) or, for
heads of one shape, `sst2.head_search.stacked_heads.StackedHeads` (faster).
`MeanOfHeads` is the ensemble a search exports.

Example:
    >>> import keras
    >>> from sst2.model.head import ClassifierHead
    >>> from sst2.fit.optimization import GroupedOptimizer
    >>> from sst2.fit.sources import Batch
    >>> heads = [ClassifierHead(hidden_units=h, seed=s) for h, s in ((0, 0), (4, 1))]
    >>> _ = [head(tf.zeros([1, 1, 8])) for head in heads]
    >>> optimizer = GroupedOptimizer([keras.optimizers.Adam(r) for r in (1e-2, 1e-3)],
    ...                              [head.trainable_variables for head in heads])
    >>> trainer = GroupTrainer(HeadGroup(heads), optimizer, batch_size=4, best_metric="accuracy")
    >>> trainer.build(feature_shape=(1, 8))
    >>> batch = Batch(np.eye(4, 8, dtype=np.float32)[:, None], np.array([0, 1, 0, 1], np.int32),
    ...               np.ones(4, np.float32))
    >>> sorted(trainer.train_step(batch))
    ['correct', 'count', 'loss']
    >>> from sst2.run.targets import SingleLabel
    >>> MeanOfHeads(heads, SingleLabel.name)(tf.zeros([2, 1, 8])).shape
    TensorShape([2, 2])
"""

import keras
import numpy as np
import tensorflow as tf

from sst2.fit.evaluator import Evaluator, as_float32
from sst2.fit.steps import Trainer
from sst2.model import target_math
from sst2.run import metrics, targets


@keras.saving.register_keras_serializable(package="sst2")
class HeadGroup(keras.Model):
    """K heads over the same features; `call` stacks their logits, `[K, batch, outputs]`."""

    def __init__(self, heads: list, **kwargs):
        super().__init__(**kwargs)
        self.heads = list(heads)
        # One attribute each: tf.train.Checkpoint does not see into Keras' tracked lists.
        for i, head in enumerate(self.heads):
            setattr(self, f"head_{i}", head)

    @property
    def num_classes(self) -> int:
        return self.heads[0].num_classes

    @property
    def pair(self) -> bool:
        return self.heads[0].pair

    def call(self, features, training=False):
        return tf.stack([head(features, training=training) for head in self.heads])


@keras.saving.register_keras_serializable(package="sst2")
class MeanOfHeads(keras.Model):
    """An ensemble as one head: logits whose answer (`target_math.outputs`) is the mean of
    the heads' answers: their probabilities, or their scores (`target_math.mean_of_heads`)."""

    def __init__(self, heads: list, task: str, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.task = list(heads), task
        self.target = targets.TARGETS[task]
        for i, head in enumerate(self.heads):
            setattr(self, f"head_{i}", head)
        self.num_classes = self.heads[0].num_classes
        self.pair = self.heads[0].pair
        if self.target.thresholded:
            self.thresholds = tf.Variable(tf.fill([self.num_classes], 0.5), trainable=False,
                                          name="thresholds")

    def call(self, features, training=False):
        logits = tf.stack([tf.cast(h(features, training=training), tf.float32)
                           for h in self.heads])
        return target_math.mean_of_heads(self.target, logits)


class GroupEvaluator(Evaluator):
    """Scores every head of a `HeadGroup`: returns the best head's metrics by the
    trainer's `best_metric` (what picks the group's best checkpoint) with `heads` (every
    head's metrics) and `best_head`; multi-label heads keep their own tuned thresholds."""

    batch_axis = 1  # outputs are [heads, batch, ...]

    def outputs_and_loss(self, features, labels):
        trainer = self.trainer
        logits = trainer.head(as_float32(features), training=False)
        return (per_head(lambda head_logits: target_math.outputs(
                    trainer.target, head_logits, scale=trainer.target_scale), logits),
                per_head(lambda head_logits: target_math.loss(
                    trainer.target, head_logits, labels, scale=trainer.target_scale), logits))

    def evaluate(self, source, description: str = "eval", show_progress: bool = True,
                 thresholds=None, with_outputs: bool = False) -> dict:
        from tqdm.auto import tqdm

        trainer = self.trainer
        with tqdm(total=source.num_batches(0), desc=description, leave=False,
                  disable=not show_progress) as bar:
            outputs, labels, losses = self.collect(source, bar)
        results = []
        for k, head in enumerate(trainer.head.heads):
            fixed = (None if trainer.threshold is None
                     else np.full(labels.shape[1], trainer.threshold))
            result = trainer.target.score(outputs[k], labels, fixed,
                                          loss=float(losses[k]) / max(len(labels), 1))
            if "thresholds" in result:
                head.thresholds.assign(result["thresholds"])
            results.append(result)
        higher = metrics.BEST_METRICS[trainer.best_metric]
        values = [r[trainer.best_metric] * (1 if higher else -1) for r in results]
        best = int(np.argmax(values))
        return {**results[best], "best_head": best,
                "heads": [{name: r[name] for name in metrics.METRICS if name in r}
                          for r in results]}


class GroupTrainer(Trainer):
    """`Trainer`'s steps for a `HeadGroup`: one compiled step trains every head.

    Each head's loss is its own average over the global batch and the step
    minimizes their sum, so each head's gradient is the one it would get alone;
    each head has its own learning rate (`optimizer`: a `GroupedOptimizer` of an
    Adam per head, or a `StackedAdam`). The
    reported training loss and accuracy are the heads' mean; its evaluator is a
    `GroupEvaluator`.
    """

    # One diverging head of a search loses the search; the others train on.
    stops_on_non_finite = False
    evaluator_class = GroupEvaluator

    def __init__(self, group, optimizer, batch_size: int, best_metric: str, **kwargs):
        super().__init__(group, optimizer, batch_size, **kwargs)
        self.best_metric = best_metric

    def sums_of(self, logits, labels, weights):
        per_example = per_head(
            lambda head_logits: target_math.loss(self.target, head_logits, labels,
                                                 scale=self.target_scale), logits)
        if self.target.counts_correct:
            correct = tf.reduce_mean(tf.cast(tf.equal(
                tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32), 0)
        else:
            correct = tf.zeros_like(weights)
        heads = tf.cast(tf.shape(logits)[0], tf.float32)
        return per_example, {"loss": tf.reduce_sum(per_example * weights) / heads,
                             "correct": tf.reduce_sum(correct * weights),
                             "count": tf.reduce_sum(weights)}

    def _replica_gradients(self, features, labels, weights):
        if self.class_weights is not None and not self.target.counts_correct:
            features = as_float32(features)
            with tf.GradientTape() as tape:  # multi-label: a positive weight per label
                logits = self.head(features, training=True)
                _, sums = self.sums_of(logits, labels, weights)
                per_example = per_head(
                    lambda head_logits: target_math.loss(self.target, head_logits, labels,
                                                         self.class_weights), logits)
                loss = tf.nn.compute_average_loss(per_example * weights,
                                                  global_batch_size=self.batch_size)
            return tape.gradient(loss, self.head.trainable_variables), sums
        return super()._replica_gradients(features, labels, weights)


def per_head(fn, logits, *args):
    """`fn` of each head's logits (`logits` stacks them first), stacked again."""
    return tf.stack([fn(head_logits, *args) for head_logits in tf.unstack(logits)])
