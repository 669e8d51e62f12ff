"""Whether a run folder may be continued with this configuration, and `--restart`.

A saved run continues only with the options that made it (those that change
the trained model), on the data it started with, and with `--epochs` changed
only where the longer run is exactly the same run.

Example:
    >>> from sst2.run.config import TrainConfig
    >>> from sst2.run.worker import WorkerInfo
    >>> config = TrainConfig.from_options(model_dir=tmp_dir, epochs=1)
    >>> start_or_check_resume(config, WorkerInfo())   # a new folder: nothing to check
"""

import dataclasses
import os

from absl import logging

from sst2.model.backbone import FeatureSpec
from sst2.run.config import TrainConfig
from sst2.run.config_file import config_path, load_config
from sst2.run.errors import UserError
from sst2.run.files import load_json, remove_entry
from sst2.run.run_folder import RunFolder
from sst2.run.worker import WorkerInfo
from sst2.text.dataset_info import DatasetInfo, load_dataset_info


def _epochs_done(model_dir: str) -> int:
    path = RunFolder(model_dir).metrics
    return len(load_json(path).get("epochs", [])) if os.path.exists(path) else 0


def start_or_check_resume(config: TrainConfig, worker: WorkerInfo) -> None:
    """`--restart` clears the run's outputs; otherwise a saved config must match this one.

    Another `--epochs` continues the same run only where that is exact: more
    epochs at a constant rate. A linear schedule decays to 0 at the last step of
    the epochs it was started with, so changing them would change every step.
    """
    model_dir = config.run.model_dir
    if config.run.restart:
        if worker.is_chief:
            for name in RunFolder.RESTART_REMOVES:
                remove_entry(getattr(RunFolder(model_dir), name))
        return
    if not os.path.exists(config_path(model_dir)):
        return
    saved = load_config(model_dir)
    diffs = config.differences(saved)
    if diffs:
        raise UserError(
            f"{model_dir} holds a run with another configuration:\n  " + "\n  ".join(diffs)
            + "\nUse the same flags to resume, another --model_dir, or --restart to start "
            "over.")
    epochs, saved_epochs = config.optimization.epochs, saved.optimization.epochs
    if epochs == saved_epochs:
        return
    done = _epochs_done(model_dir)
    if epochs < done:
        raise UserError(f"{model_dir} has already trained {done} epochs, more than "
                        f"--epochs={epochs}; its files are left as they are. Evaluate it with "
                        f"sst2.evaluate, or use --restart to train {epochs} epochs from scratch.")
    if config.optimization.lr_schedule != "constant":
        raise UserError(
            f"{model_dir} was started with --epochs={saved_epochs}, and its "
            f"--lr_schedule={config.optimization.lr_schedule} decays to 0 at the last step of "
            f"those epochs: continuing with --epochs={epochs} could not be the same run. Use "
            f"--epochs={saved_epochs} to resume, or --restart (with --lr_schedule=constant, a "
            "run can later be extended).")
    logging.info(f"Extending the run from {saved_epochs} to {epochs} epochs "
                 "(constant learning rate).")


def resolve_from_data(config: TrainConfig, info: DatasetInfo, best_metric: str) -> TrainConfig:
    """`config` with its `auto` options that depend on the data made definite (see
    `config.RESOLVED_FROM_DATA`): the task, `best_metric` (resolved by the caller),
    the pair encoding (`separate`, measured better on regression and classification
    pairs alike, docs/measurements.md) and with it `auto` pooling and layers. A
    resumed run keeps what it resolved to when it started."""
    saved = (None if config.run.restart or not os.path.exists(config_path(config.run.model_dir))
             else load_config(config.run.model_dir))
    pair_encoding = config.model.pair_encoding
    if pair_encoding == "auto":
        pair_encoding = (saved.model.pair_encoding if saved and saved.model.pair_encoding
                         != "auto" else "separate" if info.is_pair else "joint")
    if config.optimization.best_metric == "auto" and saved and (
            saved.optimization.best_metric != "auto"):
        best_metric = saved.optimization.best_metric
    model = config.model
    if saved:  # what the run resolved when it started (runs from before: their values)
        model = dataclasses.replace(model, **{
            name: getattr(saved.model, name) for name in ("pooling", "layers")
            if getattr(model, name) == "auto"})
    spec = FeatureSpec.of(dataclasses.replace(model, pair_encoding=pair_encoding))
    return config.replace(data={"task": info.task},
                          model={"pair_encoding": pair_encoding, "pooling": spec.pooling,
                                 "layers": spec.layers},
                          optimization={"best_metric": best_metric})


def check_same_dataset(config: TrainConfig, info: DatasetInfo) -> None:
    """A resumed run must read the data it started with (a changed training file is a
    new run)."""
    model_dir = config.run.model_dir
    if config.run.restart or not os.path.exists(config_path(model_dir)):
        return
    saved = load_dataset_info(model_dir)
    if saved.identity != info.identity:
        changed = sorted(k for k in set(saved.identity) | set(info.identity)
                         if saved.identity.get(k) != info.identity.get(k))
        raise UserError(f"{model_dir} holds a run trained on other data ({', '.join(changed)} "
                        f"changed: checkpoint {[saved.identity.get(k) for k in changed]}, now "
                        f"{[info.identity.get(k) for k in changed]}). Use another --model_dir, "
                        "or --restart to train on this data from scratch.")
