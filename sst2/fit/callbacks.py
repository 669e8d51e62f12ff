"""What the training loop is given to call: checkpoints, summaries, signals.

`CheckpointCallback` saves every N steps, at epoch ends and on SIGTERM/SIGINT
(then stops the loop with `Interrupted`); `SummaryCallback` writes TensorBoard
scalars and `metrics.json`. Both implement `sst2.fit.loop.Callback`.

Example:
    >>> from sst2.run.files import load_json
    >>> from sst2.fit.loop import Position
    >>> summaries = SummaryCallback(tmp_dir, history=[], extra={"precision": "float32"})
    >>> summaries.on_epoch_end(Position(epoch=1, step=10), {
    ...     "epoch": 1, "step": 10, "train_loss": 0.5, "train_accuracy": 0.75})
    >>> sorted(load_json(RunFolder(tmp_dir).metrics))
    ['epochs', 'precision']
"""

import contextlib
import signal

import tensorflow as tf

from sst2.fit import figures
from sst2.fit.checkpoint import RunCheckpoint
from sst2.fit.loop import Callback, Position
from sst2.run.files import save_json
from sst2.run.metrics import BEST_METRICS, METRICS, MetricSums
from sst2.run.run_folder import RunFolder

SUMMARY_EVERY_STEPS = 50


class Interrupted(Exception):
    """The run was stopped by a signal, after saving a checkpoint."""


class NewBestMetric:
    """The best-checkpoint action's condition, as orbit's `NewBestMetric`: whether an
    evaluation beats every earlier one by `metric` (`metrics.BEST_METRICS` says which
    way is better), saving it as the best when it does. The best score so far lives in
    the run's checkpoint, so a resumed run compares with it."""

    def __init__(self, metric: str, checkpoint: RunCheckpoint):
        self.metric, self.checkpoint = metric, checkpoint

    def __call__(self, position: Position, evaluation: dict) -> bool:
        value = evaluation.get(self.metric)
        if value is None:
            return False
        return self.checkpoint.save_if_best(
            position, value if BEST_METRICS[self.metric] else -value)


class CheckpointCallback(Callback):
    """Saves every `every_steps` steps and at epoch ends; keeps the best; saves on a signal."""

    def __init__(self, *, checkpoint: RunCheckpoint, every_steps: int,
                 best_metric: str = "accuracy"):
        """`best_metric`: the validation metric (`metrics.BEST_METRICS`) that picks the best."""
        self.checkpoint = checkpoint
        self.every_steps = every_steps
        self.new_best = NewBestMetric(best_metric, checkpoint)
        self.signal_received = None

    def on_step_end(self, position: Position, epoch_sums: MetricSums) -> None:
        if self.signal_received is not None:
            self.checkpoint.save(position, epoch_sums)
            raise Interrupted(self.signal_received)
        if self.every_steps and position.step % self.every_steps == 0:
            self.checkpoint.save(position, epoch_sums)

    def steps_until_due(self, position: Position) -> int | None:
        return self.every_steps - position.step % self.every_steps if self.every_steps else None

    def on_epoch_end(self, position: Position, record: dict,
                     evaluation: dict | None = None) -> None:
        # The best first: the rolling checkpoint must hold the best score, or a run
        # resumed from this epoch's end would not know this epoch's.
        if evaluation is not None and self.new_best(position, evaluation):
            record["best"] = True
        self.checkpoint.save(position, None)

    @contextlib.contextmanager
    def saving_on_signals(self):
        """SIGTERM and SIGINT inside the block: save at the next step's end, then stop."""
        def on_signal(signum, frame):
            self.signal_received = signal.Signals(signum).name

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


class SummaryCallback(Callback):
    """TensorBoard scalars (every 50 steps and per epoch) and `metrics.json`.

    `metrics.json` holds `extra` (facts about the run) and `epochs`, one record
    per finished epoch; `history` is the records of earlier epochs (a resume).
    """

    def __init__(self, model_dir: str, history: list, extra: dict):
        folder = RunFolder(model_dir)
        self.train_writer = tf.summary.create_file_writer(folder.train_events)
        self.eval_writer = tf.summary.create_file_writer(folder.eval_events)
        self.path = folder.metrics
        self.history = history
        self.extra = extra

    def steps_until_due(self, position: Position) -> int:
        return SUMMARY_EVERY_STEPS - position.step % SUMMARY_EVERY_STEPS

    def on_step_end(self, position: Position, epoch_sums: MetricSums) -> None:
        if position.step % SUMMARY_EVERY_STEPS == 0:
            current = epoch_sums.result()
            with self.train_writer.as_default(step=position.step):
                tf.summary.scalar("running_loss", current["loss"])
                if "accuracy" in current:
                    tf.summary.scalar("running_accuracy", current["accuracy"])

    def on_epoch_end(self, position: Position, record: dict,
                     evaluation: dict | None = None) -> None:
        outputs = ((evaluation["outputs"], evaluation["labels"])
                   if evaluation is not None and "outputs" in evaluation else None)
        if outputs is not None or "val_confusion" in record:
            with self.eval_writer.as_default(step=record["step"]):
                tensorboard_pictures(record.get("val_confusion"), outputs, record["step"])
        with self.train_writer.as_default(step=record["step"]):
            tf.summary.scalar("epoch_loss", record["train_loss"])
            if "train_accuracy" in record:
                tf.summary.scalar("epoch_accuracy", record["train_accuracy"])
        if "val_loss" in record:
            with self.eval_writer.as_default(step=record["step"]):
                for name in METRICS:
                    if f"val_{name}" in record:
                        tf.summary.scalar(name, record[f"val_{name}"])
        self.train_writer.flush()
        self.eval_writer.flush()
        self.history[:] = [r for r in self.history if r["epoch"] != record["epoch"]] + [record]
        self.write()

    def write(self, **more) -> None:
        """Rewrites `metrics.json`, adding `more` to its facts."""
        self.extra.update(more)
        save_json(self.path, {**self.extra, "epochs": self.history})


def tensorboard_pictures(confusion, outputs, step: int, thresholds: int = 51) -> None:
    """TensorBoard's confusion-matrix image (row-normalized) and a precision-recall curve
    per class (one against the rest), into the default summary writer."""
    import numpy as np
    from tensorboard.plugins.pr_curve import summary as pr_curve

    if confusion is not None:
        names = [str(i) for i in range(len(confusion))]
        png = figures.png(figures.confusion(np.asarray(confusion), names, True))
        tf.summary.image("confusion_matrix", tf.image.decode_png(png)[None], step=step)
    if outputs is None:
        return
    probabilities, labels = outputs
    for c in range(probabilities.shape[1]):
        cut = np.linspace(0, 1, thresholds)[:, None]
        predicted, positive = probabilities[None, :, c] >= cut, (labels == c)[None]
        tp = (predicted & positive).sum(1).astype(float)
        fp = (predicted & ~positive).sum(1).astype(float)
        fn = (~predicted & positive).sum(1).astype(float)
        tn = (~predicted & ~positive).sum(1).astype(float)
        precision = np.divide(tp, tp + fp, out=np.ones_like(tp), where=tp + fp > 0)
        recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=tp + fn > 0)
        proto = pr_curve.raw_data_pb(f"pr_curve/class_{c}", tp, fp, tn, fn, precision, recall,
                                     num_thresholds=thresholds)
        tf.summary.experimental.write_raw_pb(proto.SerializeToString(), step=step)
