"""What `sst2.train` does once the epochs are done: actions it hands to the loop.

`sst2.fit.training.run(config, actions=...)` calls each action with the run's
config, a `record(**fields)` that adds fields to `metrics.json`, and the log,
on the chief only, after the last evaluation (as orbit's `Controller` runs the
actions it is given). `actions(config)` is what the entry point hands in:
`publish` unless `--noexport`.

`publish` restores the best checkpoint, calibrates it, exports it and writes
the report; one scored pass over the validation split serves both the
calibration and the report.

Example:
    >>> from sst2.run.config import RunConfig, TrainConfig
    >>> actions(TrainConfig()) == (publish,), actions(TrainConfig(run=RunConfig(export=False)))
    (True, ())
"""

import os

from absl import logging

from sst2.run.config import TrainConfig
from sst2.serve.calibrated import calibrate_run
from sst2.serve.report import scored_split, write_report
from sst2.serve.trained import restore


def actions(config: TrainConfig) -> tuple:
    """The actions `sst2.train` runs after training: `(publish,)`, or none without export."""
    return (publish,) if config.run.export else ()


def publish(config: TrainConfig, record) -> None:
    """Restores the best checkpoint; calibrates it (`--calibrate`), exports it, and
    writes the report (`--report`); `record` keeps the calibration and export folder."""
    trained = restore(config.run.model_dir, "best", config=config)
    scored = scored_split(trained) if config.run.calibrate or config.run.report else None
    if config.run.calibrate:
        trained = calibrate_run(trained, scored=scored)
        record(calibration=trained.calibration)
    path = trained.export()
    logging.info(f"Exported the best checkpoint ({os.path.basename(trained.checkpoint_path)}) "
                 f"as a SavedModel: {path}")
    record(export_dir=path)
    if config.run.report:
        logging.info(f"Report: {write_report(trained, scored=scored)}")
