"""The epoch loop: when steps run, from any position, with callbacks injected.

The loop is ours (no `model.fit`), and small. It feeds a `sst2.fit.steps.Trainer`
from a `sst2.fit.sources.BatchSource`, so a resumed run starts at any batch.
Checkpointing, summaries and the metrics file are injected as callbacks
(`sst2.fit.callbacks`), as in TF Model Garden's orbit.

Example:
    >>> import keras
    >>> import numpy as np
    >>> from sst2.fit import sources
    >>> from sst2.model import feature_store
    >>> from sst2.model.head import ClassifierHead
    >>> from sst2.fit.steps import Trainer
    >>> head = ClassifierHead(hidden_units=0)
    >>> trainer = Trainer(head, keras.optimizers.Adam(1e-2), batch_size=4)
    >>> trainer.build(feature_shape=(1, 8))
    >>> labels = np.arange(8, dtype=np.int32) % 2
    >>> cached = feature_store.FeatureSet(np.eye(8, dtype=np.float16)[:, None], labels,
    ...                                   np.arange(8))
    >>> source = sources.CachedFeatureSource(cached, batch_size=4, seed=0)
    >>> records = fit(trainer, source, source, epochs=2, show_progress=False)
    >>> [(r["epoch"], r["step"]) for r in records]
    [(1, 2), (2, 4)]
"""

import dataclasses
import math
import time
from typing import Iterable

from absl import logging
from tqdm.auto import tqdm

from sst2.fit.sources import BatchSource
from sst2.fit.steps import Trainer
from sst2.run.errors import UserError
from sst2.run.metrics import METRICS, MetricSums


class NonFiniteError(UserError):
    """The loss or a metric stopped being a finite number: the run stops before any
    checkpoint holds those weights, and nothing is exported."""


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

    def on_epoch_end(self, position: Position, record: dict,
                     evaluation: dict | None = None) -> None:
        """After an epoch: its `record` (what `metrics.json` keeps) and the evaluator's
        whole result (`evaluation`: its metrics, and every output where it kept them),
        or None when the run has no evaluation split."""


def fit(trainer: Trainer, train_source: BatchSource, eval_source: BatchSource | None,
        epochs: int, start: Position | None = None, epoch_sums: MetricSums | None = None,
        callbacks: Iterable[Callback] = (), show_progress: bool = True,
        steps_per_call: int = 1) -> list[dict]:
    """Trains from `start` to the end of `epochs`, evaluating after each epoch.

    One compiled call runs up to `steps_per_call` steps, stopping early at an
    epoch's end and wherever a callback is due (`Callback.steps_until_due`), so
    checkpoints land on the same steps; callbacks run at call ends.

    Where the trainer `stops_on_non_finite`, a training loss or an epoch's metric
    that is not a finite number raises `NonFiniteError` before any callback sees it
    (so no checkpoint holds those weights).

    Args:
        trainer: the compiled steps (`sst2.fit.steps.Trainer`) and their evaluator.
        train_source, eval_source: the batches (`sst2.fit.sources`); no evaluation
            without an `eval_source`.
        epochs: the epoch to train to the end of.
        start, epoch_sums: where a resumed run continues, and its epoch's sums so far.
        callbacks: what runs at call ends and epoch ends (`Callback`).
        show_progress: progress bars.
        steps_per_call: train steps in one compiled call, at most.

    Returns:
        One record per epoch finished in this call: `epoch` (1-based), `step`,
        `train_<metric>` and `val_<metric>` for every metric the sums allow
        (`metrics.METRICS`), `seconds` (training) and `eval_seconds`.
    """
    position = start or Position()
    callbacks = list(callbacks)
    records = []
    while position.epoch < epochs:
        started = time.time()
        sums = _train_epoch(trainer, train_source, position, trainer.sums(epoch_sums),
                            epochs, callbacks, show_progress, steps_per_call)
        epoch_sums = None
        record = {"epoch": position.epoch + 1, "step": position.step,
                  **_named("train", sums.result()), "seconds": time.time() - started}
        if eval_source is not None:
            eval_started = time.time()
            evaluation = trainer.evaluator.evaluate(eval_source, show_progress=show_progress,
                                                    with_outputs=True)
            record.update(_named("val", evaluation), eval_seconds=time.time() - eval_started)
        else:
            evaluation = None
        if trainer.stops_on_non_finite:
            _check_finite(record)
        logging.info(f"Epoch {record['epoch']}/{epochs}: " + describe(record))
        position.epoch += 1
        position.batch = 0
        for callback in callbacks:
            callback.on_epoch_end(position, record, evaluation)
        records.append(record)
    return records


def _train_epoch(trainer, source, position, sums, epochs, callbacks, show_progress,
                 steps_per_call) -> MetricSums:
    """Runs the rest of `position`'s epoch; returns its sums."""
    num_batches = source.num_batches(position.epoch)
    bar = tqdm(total=num_batches, initial=position.batch, unit="batch",
               desc=f"epoch {position.epoch + 1}/{epochs}", disable=not show_progress)
    iterator = trainer.iterator(source, position.epoch, position.batch)
    while position.batch < num_batches:
        due = [c.steps_until_due(position) for c in callbacks]
        steps = min([max(steps_per_call, 1), num_batches - position.batch] + [d for d in due if d])
        trainer.train_steps(iterator, steps, sums)
        if trainer.stops_on_non_finite and not math.isfinite(sums.loss):
            bar.close()
            raise NonFiniteError(
                f"The training loss became {sums.loss} by step {position.step + steps} (epoch "
                f"{position.epoch + 1}); the run stopped before saving those weights, keeps "
                "its checkpoints from before, and exports nothing. Lower --learning_rate, or "
                "check the targets' scale.")
        position.batch += steps
        position.step += steps
        bar.update(steps)
        if position.step % 50 < steps or position.batch == num_batches:
            current = sums.result()
            bar.set_postfix({"loss": f"{current['loss']:.4f}", **(
                {"acc": f"{current['accuracy']:.4f}"} if "accuracy" in current else {})})
        for callback in callbacks:
            callback.on_step_end(position, sums)
    bar.close()
    return sums


def _check_finite(record: dict) -> None:
    """Raises `NonFiniteError` for an epoch record's metric that is NaN or infinite."""
    for key, value in record.items():
        if key.split("_", 1)[-1] in METRICS and isinstance(value, float) and not math.isfinite(
                value):
            raise NonFiniteError(
                f"Epoch {record['epoch']}: {key} is {value}; the run stopped before saving "
                "this epoch, keeps its checkpoints from before, and exports nothing. Lower "
                "--learning_rate, or check the targets' scale.")


# Results a record keeps beside the metrics: per label (multi-label targets), per head
# (a search's heads trained together, `sst2.head_search.head_group`).
BESIDE_METRICS = ("per_label_f1", "thresholds", "heads", "best_head", "confusion")


def _named(split: str, result: dict) -> dict:
    return {f"{split}_{name}": value for name, value in result.items()
            if name in METRICS or name in BESIDE_METRICS}


def describe(record: dict) -> str:
    """An epoch record's metrics as a log line, every metric it holds, by name."""
    return ", ".join(f"{split} {metric.label} {record[f'{split}_{name}']:.4f}"
                     for split in ("train", "val") for name, metric in METRICS.items()
                     if f"{split}_{name}" in record)
