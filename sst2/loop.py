"""The training loop: XLA-compiled train and eval steps under a tf.distribute strategy.

The loop is ours (no `model.fit`), and small. It feeds on a
`sst2.sources.BatchSource`, so a resumed run starts at any batch.
Checkpointing, summaries and the metrics file are injected as callbacks
(`sst2.callbacks`), as in TF Model Garden's orbit.

Example:
    >>> import numpy as np
    >>> from sst2 import features, sources
    >>> from sst2.head import ClassifierHead
    >>> head = ClassifierHead(hidden_units=0)
    >>> trainer = Trainer(head, keras.optimizers.Adam(1e-2), batch_size=4)
    >>> trainer.build(feature_shape=(1, 8))
    >>> labels = np.arange(8, dtype=np.int32) % 2
    >>> cached = features.FeatureSet(np.eye(8, dtype=np.float16)[:, None], labels, np.arange(8))
    >>> source = sources.CachedFeatureSource(cached, batch_size=4, seed=0)
    >>> records = fit(trainer, source, source, epochs=2, show_progress=False,
    ...               log=lambda message: None)
    >>> [(r["epoch"], r["step"]) for r in records]
    [(1, 2), (2, 4)]
"""

import contextlib
import dataclasses
import time
from typing import Callable, Iterable

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from sst2 import averaging, metrics
from sst2.head import example_features
from sst2.sources import Batch, BatchSource


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
    """

    def __init__(self, head: keras.Model, optimizer: keras.optimizers.Optimizer,
                 batch_size: int, strategy: tf.distribute.Strategy | None = None,
                 jit_compile: bool = True,
                 weight_average: averaging.ExponentialMovingAverage | None = None,
                 rdrop_alpha: float = 0.0, class_weights=None):
        self.head = head
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

        # One trace serves every bucket shape; XLA compiles each concrete shape once.
        self._train_step = tf.function(lambda *args: self.strategy.run(train_replica_step, args),
                                       reduce_retracing=True)
        self._eval_step = tf.function(lambda *args: self.strategy.run(eval_replica_step, args),
                                      reduce_retracing=True)
        # Many steps per call: a graph loop draws batches from a (distributed) tf.data
        # iterator and runs the step on every replica, adding the sums on the device.
        self._train_loop = tf.function(self._loop_of(train_replica_step))
        self._eval_loop = tf.function(self._loop_of(eval_replica_step))

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
        replicas = self.strategy.num_replicas_in_sync
        if replicas == 1:
            return iter(source.dataset(epoch, start))
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

            return source.dataset(epoch, start).flat_map(shares)

        return iter(self.strategy.distribute_datasets_from_function(dataset_fn))

    def train_steps(self, iterator, steps: int, sums: "MetricSums") -> None:
        """Runs `steps` train steps on batches from `iterator` in one call; adds to `sums`."""
        sums.set(self._train_loop(iterator, tf.constant(steps, tf.int64), sums.tensors()))

    def eval_steps(self, iterator, steps: int, sums: "MetricSums") -> None:
        """`steps` eval steps in one call, as `train_steps`."""
        sums.set(self._eval_loop(iterator, tf.constant(steps, tf.int64), sums.tensors()))

    def build(self, feature_shape: tuple) -> None:
        """Creates the head's and the optimizer's variables (needed before a restore).

        `feature_shape` is one example's; `None` marks a token axis.
        """
        with self.strategy.scope():
            self.head(example_features(feature_shape))
            self.optimizer.build(self.head.trainable_variables)
            if self.weight_average is not None:
                self.weight_average.build(self.head.trainable_variables)

    def _sums(self, logits, labels, weights):
        per_example = keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
        return per_example, {
            "loss": tf.reduce_sum(per_example * weights),
            "correct": tf.reduce_sum(correct * weights),
            "count": tf.reduce_sum(weights),
        }

    def _replica_gradients(self, features, labels, weights):
        features = _as_float32(features)
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
            if self.class_weights is not None:
                weights = weights * tf.gather(self.class_weights, labels)
            loss = tf.nn.compute_average_loss(per_example * weights, global_batch_size=self.batch_size)
        return tape.gradient(loss, self.head.trainable_variables), sums

    def _train_replica_step(self, features, labels, weights):
        grads, sums = self._gradients(features, labels, weights)
        self.optimizer.apply_gradients(zip(grads, self.head.trainable_variables))
        if self.weight_average is not None:
            self.weight_average.update(self.head.trainable_variables)
        return sums

    def _eval_replica_step(self, features, labels, weights):
        logits = self.head(_as_float32(features), training=False)
        predictions = tf.argmax(logits, -1, output_type=tf.int32)
        return {**self._sums(logits, labels, weights)[1],
                "confusion": metrics.confusion_matrix(labels, predictions, weights,
                                                      self.num_classes)}

    def _distribute(self, batch: Batch):
        values = (batch.features, batch.labels, batch.weights)
        replicas = self.strategy.num_replicas_in_sync
        if replicas == 1:
            return tf.nest.map_structure(tf.constant, values)
        per_replica = self.batch_size // replicas

        def value_fn(context):
            start = context.replica_id_in_sync_group * per_replica
            return tf.nest.map_structure(lambda v: tf.constant(v[start:start + per_replica]),
                                         values)

        return self.strategy.experimental_distribute_values_from_function(value_fn)

    def _run(self, step, batch: Batch) -> dict:
        sums = step(*self._distribute(batch))
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in sums.items()}

    def train_step(self, batch: Batch) -> dict:
        return self._run(self._train_step, batch)

    def eval_step(self, batch: Batch) -> dict:
        return self._run(self._eval_step, batch)

    def evaluate(self, source: BatchSource, description: str = "eval",
                 show_progress: bool = True) -> dict:
        """Loss, accuracy, macro-F1 and MCC over a whole source (in its fixed order), with
        averaged weights when the trainer averages them."""
        totals = MetricSums(confusion=np.zeros((self.num_classes, self.num_classes)))
        averaged = (contextlib.nullcontext() if self.weight_average is None
                    else self.weight_average.swapped_in(self.head.trainable_variables))
        num_batches = source.num_batches(0)
        with averaged, tqdm(total=num_batches, desc=description, leave=False,
                            disable=not show_progress) as bar:
            if hasattr(source, "dataset"):
                self.eval_steps(self.iterator(source, 0), num_batches, totals)
                bar.update(num_batches)
            else:
                for i in range(num_batches):
                    totals.add(self.eval_step(source.batch(0, i)))
                    bar.update(1)
        return totals.result()


def _as_float32(features):
    # Cached features arrive as stored (float16, half the bytes to read and move); the
    # cast is exact and compiled into the step.
    return tf.nest.map_structure(
        lambda x: tf.cast(x, tf.float32) if x.dtype == tf.float16 else x, features)


def rdrop_loss(logits: tf.Tensor, logits_again: tf.Tensor, labels: tf.Tensor,
               alpha: float) -> tf.Tensor:
    """R-Drop's per-example loss (Liang et al., 2021, "R-Drop: Regularized Dropout").

    `logits` and `logits_again` are two training-mode passes over the same
    batch, with different dropout masks. The loss is their mean cross-entropy
    plus `alpha` times the mean of the two KL divergences between their
    predictions, which pulls the dropout sub-networks toward one answer.

    Example:
        >>> same = tf.constant([[2.0, 0.0]])
        >>> rdrop_loss(same, same, tf.constant([0]), alpha=1.0)  # no divergence: cross-entropy
        <tf.Tensor: shape=(1,), dtype=float32, numpy=array([0.12692805], dtype=float32)>
    """
    cross_entropy = 0.5 * (
        keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        + keras.losses.sparse_categorical_crossentropy(labels, logits_again, from_logits=True))
    log_p, log_q = tf.nn.log_softmax(logits), tf.nn.log_softmax(logits_again)
    # KL(p||q) + KL(q||p) = sum((p - q) * (log p - log q)).
    symmetric_kl = tf.reduce_sum((tf.exp(log_p) - tf.exp(log_q)) * (log_p - log_q), axis=-1)
    return cross_entropy + alpha * 0.5 * symmetric_kl


class MetricSums:
    """Accumulates the sums that steps return, in float64; with `confusion` (a
    `[classes, classes]` array, for evaluation), a confusion matrix too."""

    NAMES = ("loss", "correct", "count")

    def __init__(self, loss: float = 0.0, correct: float = 0.0, count: float = 0.0,
                 confusion: np.ndarray | None = None):
        self.loss, self.correct, self.count = loss, correct, count
        self.confusion = confusion

    def add(self, sums: dict) -> None:
        self.loss += float(sums["loss"])
        self.correct += float(sums["correct"])
        self.count += float(sums["count"])
        if self.confusion is not None:
            self.confusion = self.confusion + np.asarray(sums["confusion"], np.float64)

    def tensors(self) -> dict:
        """The sums as float64 tensors, for a loop that continues them on the device."""
        names = self.NAMES + (("confusion",) if self.confusion is not None else ())
        return {name: tf.constant(getattr(self, name), tf.float64) for name in names}

    def set(self, totals: dict) -> None:
        """Takes the totals such a loop returns."""
        self.loss, self.correct, self.count = (float(totals[name]) for name in self.NAMES)
        if self.confusion is not None:
            self.confusion = totals["confusion"].numpy()

    def result(self) -> dict:
        count = max(self.count, 1.0)
        result = {"loss": self.loss / count, "accuracy": self.correct / count,
                  "examples": int(self.count)}
        if self.confusion is not None:
            scores = metrics.from_confusion(self.confusion)
            result.update(macro_f1=scores["macro_f1"], mcc=scores["mcc"])
        return result

    def state(self) -> list[float]:
        return [self.loss, self.correct, self.count]

    def __repr__(self) -> str:
        return f"MetricSums(loss={self.loss}, correct={self.correct}, count={self.count})"


@dataclasses.dataclass
class Position:
    """Where training is: the next batch to run is `batch` of `epoch`."""

    epoch: int = 0
    batch: int = 0
    step: int = 0


class Callback:
    """Hooks the loop calls; checkpointing, summaries and metrics files implement them."""

    def on_step_end(self, position: Position, epoch_sums: MetricSums) -> None: ...

    def steps_until_due(self, position: Position) -> int | None:
        """Steps from `position` to the next step whose end this callback must see
        (with many steps per call, calls stop there); None: any call's end will do."""
        return None

    def on_epoch_end(self, position: Position, record: dict) -> None: ...


def fit(trainer: Trainer, train_source: BatchSource, eval_source: BatchSource | None,
        epochs: int, start: Position | None = None, epoch_sums: MetricSums | None = None,
        callbacks: Iterable[Callback] = (), show_progress: bool = True,
        log: Callable[[str], None] = print, steps_per_call: int = 1) -> list[dict]:
    """Trains from `start` to the end of `epochs`, evaluating after each epoch.

    With `steps_per_call` > 1 (and a source with a tf.data `dataset`),
    one compiled call runs up to that many steps, stopping early at an epoch's
    end and wherever a callback is due (`Callback.steps_until_due`), so
    checkpoints land on the same steps; callbacks run at call ends.

    Returns one record per epoch finished in this call, with `epoch`
    (1-based), `step`, `train_loss`, `train_accuracy`, `val_loss`,
    `val_accuracy`, `val_macro_f1`, `val_mcc`, `seconds` (training) and `eval_seconds`.
    """
    position = start or Position()
    callbacks = list(callbacks)
    records = []
    while position.epoch < epochs:
        sums = epoch_sums or MetricSums()
        epoch_sums = None
        num_batches = train_source.num_batches(position.epoch)
        started = time.time()
        bar = tqdm(total=num_batches, initial=position.batch, unit="batch",
                   desc=f"epoch {position.epoch + 1}/{epochs}", disable=not show_progress)
        many = steps_per_call > 1 and hasattr(train_source, "dataset")
        iterator = trainer.iterator(train_source, position.epoch, position.batch) if many else None
        while position.batch < num_batches:
            if many:
                due = [c.steps_until_due(position) for c in callbacks]
                steps = min([steps_per_call, num_batches - position.batch]
                            + [d for d in due if d])
                trainer.train_steps(iterator, steps, sums)
            else:
                steps = 1
                sums.add(trainer.train_step(train_source.batch(position.epoch, position.batch)))
            position.batch += steps
            position.step += steps
            bar.update(steps)
            if position.step % 50 < steps or position.batch == num_batches:
                current = sums.result()
                bar.set_postfix(loss=f"{current['loss']:.4f}", acc=f"{current['accuracy']:.4f}")
            for callback in callbacks:
                callback.on_step_end(position, sums)
        bar.close()
        train = sums.result()
        record = {"epoch": position.epoch + 1, "step": position.step,
                  "train_loss": train["loss"], "train_accuracy": train["accuracy"],
                  "seconds": time.time() - started}
        if eval_source is not None:
            eval_started = time.time()
            val = trainer.evaluate(eval_source, show_progress=show_progress)
            record.update(val_loss=val["loss"], val_accuracy=val["accuracy"],
                          val_macro_f1=val["macro_f1"], val_mcc=val["mcc"],
                          eval_seconds=time.time() - eval_started)
        log(f"Epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f}, "
            f"train accuracy {record['train_accuracy']:.4f}"
            + (f", val loss {record['val_loss']:.4f}, val accuracy {record['val_accuracy']:.4f}, "
               f"macro-F1 {record['val_macro_f1']:.4f}, MCC {record['val_mcc']:.4f}"
               if eval_source is not None else ""))
        position.epoch += 1
        position.batch = 0
        for callback in callbacks:
            callback.on_epoch_end(position, record)
        records.append(record)
    return records
