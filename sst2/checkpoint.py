"""Checkpoints of a training run: rolling ones for resume, and the best one apart.

What a checkpoint holds is everything that determines the rest of the run:
the head, the optimizer (slots included), the weight average if any, the
loop position (epoch, batch, global step), the running sums of the current
epoch's metrics, and the head's dropout RNG state (a variable inside the
head). The data order is a pure function of (seed, epoch), so it needs no
state.

Example:
    >>> import keras
    >>> from sst2.head import ClassifierHead
    >>> head = ClassifierHead(hidden_units=0)
    >>> _ = head(tf.zeros([1, 1, 8]))
    >>> optimizer = keras.optimizers.Adam()
    >>> optimizer.build(head.trainable_variables)
    >>> checkpoint = RunCheckpoint(tmp_dir, head, optimizer, keep=3)
    >>> checkpoint.restore_latest() is None               # a fresh run
    True
    >>> os.path.basename(checkpoint.save(Position(epoch=0, batch=5, step=5),
    ...                                  MetricSums(2.0, 4.0, 5.0)))
    'ckpt-5'
    >>> checkpoint.restore_latest()
    (Position(epoch=0, batch=5, step=5), MetricSums(loss=2.0, correct=4.0, count=5.0))
"""

import os

import numpy as np
import tensorflow as tf

from sst2.loop import MetricSums, Position
from sst2.head import rng_state_variables


class RunCheckpoint:
    """Rolling checkpoints in `<model_dir>/checkpoints`, the best in `<model_dir>/best`."""

    def __init__(self, model_dir: str, head, optimizer, keep: int = 3, log=print,
                 read_dir: str | None = None, weight_average=None):
        """Writes under `model_dir`; restores from `read_dir` (default: the same).

        Under multi-worker training, non-chief workers write to a temporary
        `model_dir` (saving is collective) but restore the chief's checkpoints.
        """
        self.log = log
        self.read_dir = os.path.join(read_dir or model_dir, "checkpoints")
        self._position = tf.Variable(np.zeros(3, np.int64), trainable=False, name="position")
        self._sums = tf.Variable(np.zeros(3, np.float64), trainable=False, name="epoch_sums")
        self._best_accuracy = tf.Variable(-1.0, dtype=tf.float64, trainable=False,
                                          name="best_val_accuracy")
        tracked = {} if weight_average is None else {"weight_average": weight_average}
        self.checkpoint = tf.train.Checkpoint(
            head=head, optimizer=optimizer, head_rng=rng_state_variables(head),
            position=self._position,
            epoch_sums=self._sums, best_val_accuracy=self._best_accuracy, **tracked)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(model_dir, "checkpoints"), max_to_keep=max(keep, 1),
            checkpoint_name="ckpt")
        self.best_manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(model_dir, "best"), max_to_keep=1,
            checkpoint_name="best")

    @property
    def best_val_accuracy(self) -> float:
        return float(self._best_accuracy.numpy())

    def _store(self, position: Position, sums: MetricSums | None) -> None:
        self._position.assign([position.epoch, position.batch, position.step])
        self._sums.assign(sums.state() if sums is not None else [0.0, 0.0, 0.0])

    def save(self, position: Position, sums: MetricSums | None = None) -> str:
        """Writes a rolling checkpoint at `position` and returns its path."""
        self._store(position, sums)
        return self.manager.save(checkpoint_number=position.step)

    def save_if_best(self, position: Position, val_accuracy: float) -> bool:
        """Keeps this state as the best checkpoint if `val_accuracy` beats the best so far."""
        if val_accuracy <= self.best_val_accuracy:
            return False
        self._best_accuracy.assign(val_accuracy)
        self._store(position, None)
        self.best_manager.save(checkpoint_number=position.step)
        return True

    def restore_latest(self) -> tuple[Position, MetricSums] | None:
        """Restores the newest readable checkpoint; reports and skips corrupt ones.

        Returns the position and epoch sums to continue from, or None if there
        is no usable checkpoint.
        """
        state = tf.train.get_checkpoint_state(self.read_dir)
        paths = list(state.all_model_checkpoint_paths) if state else []
        for path in reversed(paths):
            try:
                self.checkpoint.read(path).assert_existing_objects_matched()
            except Exception as e:  # truncated files raise IndexError, others OpError...
                self.log(f"Checkpoint {path} is unreadable ({type(e).__name__}); "
                         "trying the one before it.")
                continue
            epoch, batch, step = (int(v) for v in self._position.numpy())
            return Position(epoch, batch, step), MetricSums(*self._sums.numpy().tolist())
        return None

    def restore_best(self) -> str:
        """Restores the best checkpoint (or the latest if no best was kept); returns its path."""
        path = self.best_manager.latest_checkpoint or self.manager.latest_checkpoint
        if path is None:
            raise FileNotFoundError("no checkpoint")
        self.checkpoint.read(path).expect_partial()
        return path
