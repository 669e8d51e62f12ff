"""Checkpoints of a training run: rolling ones for resume, and the best one apart.

What a checkpoint holds is everything that determines the rest of the run:
the head, the optimizer (slots included), the weight average if any, the
loop position (epoch, batch, global step), the running sums of the current
epoch's metrics, and the head's dropout RNG state (a variable inside the
head). The data order is a pure function of (seed, epoch), so it needs no
state.

Example:
    >>> import keras
    >>> from sst2.model.head import ClassifierHead
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

import contextlib
import glob
import os

import numpy as np
import tensorflow as tf
from absl import logging
from google.protobuf import text_format

from sst2.fit.loop import Position
from sst2.model.head import rng_state_variables
from sst2.run.errors import UserError
from sst2.run.files import remove_entry
from sst2.run.metrics import MetricSums
from sst2.run.run_folder import RunFolder

# What reading a damaged checkpoint or index raises: TensorFlow's own errors, the index's
# text-format parser, non-UTF-8 bytes, a truncated file (IndexError, ValueError) and
# objects that do not match (AssertionError).
UNREADABLE = (tf.errors.OpError, text_format.Error, UnicodeDecodeError, ValueError, IndexError,
              AssertionError)


class RunCheckpoint:
    """Rolling checkpoints in `<model_dir>/checkpoints`, the best in `<model_dir>/best`."""

    def __init__(self, model_dir: str, head, optimizer, keep: int = 3,
                 read_dir: str | None = None, weight_average=None):
        """Writes under `model_dir`; restores from `read_dir` (default: the same).

        Under multi-worker training, non-chief workers write to a temporary
        `model_dir` (saving is collective) but restore the chief's checkpoints.
        """
        self._restored_path = None
        self.read_dir = RunFolder(read_dir or model_dir).checkpoints
        self._position = tf.Variable(np.zeros(3, np.int64), trainable=False, name="position")
        self._sums = tf.Variable(np.zeros(3, np.float64), trainable=False, name="epoch_sums")
        # The best validation score so far, higher is better (a loss is stored negated).
        # Its checkpoint name is from when the score was always the accuracy.
        self._best_score = tf.Variable(-np.inf, dtype=tf.float64, trainable=False,
                                       name="best_val_accuracy")
        tracked = {} if weight_average is None else {"weight_average": weight_average}
        self.checkpoint = tf.train.Checkpoint(
            head=head, optimizer=optimizer, head_rng=rng_state_variables(head),
            position=self._position,
            epoch_sums=self._sums, best_val_accuracy=self._best_score, **tracked)
        for folder in (RunFolder(model_dir).checkpoints, RunFolder(model_dir).best):
            _set_aside_unreadable_index(folder)
            _remove_partial_files(folder)  # left by a killed save
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, RunFolder(model_dir).checkpoints, max_to_keep=max(keep, 1),
            checkpoint_name="ckpt")
        self.best_manager = tf.train.CheckpointManager(
            self.checkpoint, RunFolder(model_dir).best, max_to_keep=1,
            checkpoint_name="best")

    @property
    def best_score(self) -> float:
        """The best `save_if_best` score so far (-inf before the first)."""
        return float(self._best_score.numpy())

    def _store(self, position: Position, sums: MetricSums | None) -> None:
        self._position.assign([position.epoch, position.batch, position.step])
        self._sums.assign(sums.state() if sums is not None else [0.0, 0.0, 0.0])

    def save(self, position: Position, sums: MetricSums | None = None) -> str:
        """Writes a rolling checkpoint at `position` and returns its path."""
        self._store(position, sums)
        with _no_partial_files(self.manager.directory):
            return self.manager.save(checkpoint_number=position.step)

    def save_if_best(self, position: Position, score: float) -> bool:
        """Keeps this state as the best checkpoint if `score` (higher is better) beats the
        best so far."""
        if score <= self.best_score:
            return False
        self._best_score.assign(score)
        self._store(position, None)
        with _no_partial_files(self.best_manager.directory):
            self.best_manager.save(checkpoint_number=position.step)
        return True

    def _rolling_paths(self) -> list[str]:
        """The rolling checkpoints, oldest first: from the `checkpoint` index file, or, if
        that is unreadable, from the checkpoint files themselves."""
        try:
            state = tf.train.get_checkpoint_state(self.read_dir)
            if state is not None:
                return list(state.all_model_checkpoint_paths)
        except UNREADABLE as e:  # garbage or non-UTF-8 bytes in the index file
            logging.info(f"The checkpoint index in {self.read_dir} is unreadable "
                         f"({type(e).__name__}); using the checkpoint files themselves.")
        return _saved_by_name(self.read_dir, "ckpt")

    def _read(self, path: str) -> bool:
        try:
            status = self.checkpoint.read(path)
            status.assert_existing_objects_matched()
            # Values with no object yet (the save counter) are expected, not worth a warning.
            status.expect_partial()
            return True
        except UNREADABLE as e:  # a truncated file, another run's objects, garbage
            logging.info(f"Checkpoint {path} is unreadable ({type(e).__name__}); "
                         "trying the one before it.")
            return False

    def restore_latest(self) -> tuple[Position, MetricSums] | None:
        """Restores the newest readable checkpoint; reports and skips corrupt ones.

        Returns the position and epoch sums to continue from, or None if there
        is no checkpoint at all.

        Raises:
            UserError: when there are checkpoints but none is readable (a fresh
                start would silently throw the run away).
        """
        paths = self._rolling_paths()
        for path in reversed(paths):
            if self._read(path):
                self._restored_path = path
                epoch, batch, step = (int(v) for v in self._position.numpy())
                return Position(epoch, batch, step), MetricSums(*self._sums.numpy().tolist())
        if paths:
            raise UserError(f"None of the {len(paths)} checkpoints in {self.read_dir} is "
                            "readable. Use --restart to start the run over (or move the "
                            "folder aside to keep it).")
        return None

    def restore_best(self) -> str:
        """Restores the best checkpoint, else the latest readable one; returns its path."""
        best = self.best_manager.latest_checkpoint
        if best is None:
            # An index set aside (or lost): each best save beat the one before, so the
            # newest `best-N` on disk is the best.
            best = next(iter(_saved_by_name(self.best_manager.directory, "best")[-1:]), None)
        if best is not None:
            try:
                self.checkpoint.read(best).expect_partial()
                return best
            except UNREADABLE as e:
                logging.info(f"The best checkpoint {best} is unreadable ({type(e).__name__}); "
                             "using the latest readable one instead.")
        if self.restore_latest() is None:
            raise FileNotFoundError("no checkpoint")
        return self.restored_path

    @property
    def position(self) -> Position:
        """The loop position the last restore (or save) holds."""
        return Position(*(int(v) for v in self._position.numpy()))

    @property
    def restored_path(self) -> str | None:
        """The checkpoint the last successful restore read."""
        return self._restored_path


def _saved_by_name(folder: str, name: str) -> list[str]:
    """The checkpoints `<folder>/<name>-<step>` found by their index files, oldest first."""
    steps = []
    for path in glob.glob(os.path.join(folder, f"{name}-*.index")):
        step = os.path.basename(path)[len(name) + 1:-len(".index")]
        if step.isdigit():
            steps.append(int(step))
    return [os.path.join(folder, f"{name}-{step}") for step in sorted(steps)]


_INDEX_FIELDS = ("model_checkpoint_path", "all_model_checkpoint_paths",
                 "all_model_checkpoint_timestamps", "last_preserved_timestamp")


def _remove_partial_files(folder: str) -> None:
    """Removes what an unfinished save leaves: TensorFlow writes `<name>_temp/` (and the
    index as `checkpoint.tmp<hex>`) and renames them only when complete."""
    for path in glob.glob(os.path.join(folder, "*_temp*")) + glob.glob(
            os.path.join(folder, "checkpoint.tmp*")):
        remove_entry(path)


@contextlib.contextmanager
def _no_partial_files(folder: str):
    """A failed save (a full disk, an interrupt) leaves no partial files behind."""
    try:
        yield
    except BaseException:
        _remove_partial_files(folder)
        raise


def _set_aside_unreadable_index(folder: str) -> None:
    """Renames a `checkpoint` index file TensorFlow cannot parse (its manager would raise).

    The checkpoints themselves are then found by their file names.
    """
    index = os.path.join(folder, "checkpoint")
    if not os.path.exists(index):
        return
    try:
        with open(index, encoding="utf-8") as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
        # The index is a text proto of a few known fields, one per line.
        if not lines or not all(line.split(":")[0] in _INDEX_FIELDS for line in lines):
            raise ValueError("not a checkpoint index")
        state = tf.train.get_checkpoint_state(folder)
        if state is None:
            raise ValueError("not a checkpoint index")
        # TensorFlow's manager deletes the checkpoints it lists: only ones in this folder.
        # `get_checkpoint_state` has already joined a relative entry to `folder` (itself
        # relative to the working directory when `--model_dir` is), so it is not joined again.
        here = os.path.realpath(folder)
        for listed in [state.model_checkpoint_path, *state.all_model_checkpoint_paths]:
            if os.path.dirname(os.path.realpath(listed)) != here:
                raise ValueError(f"it lists {listed}, outside {folder}")
    except UNREADABLE as e:
        logging.info(f"The checkpoint index {index} is unreadable ({type(e).__name__}: {e}); "
                     "set aside as checkpoint.unreadable.")
        os.replace(index, index + ".unreadable")
