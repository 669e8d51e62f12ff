"""What `sst2.train` does once the epochs are done: actions it hands to the loop.

`sst2.fit.training.run(config, actions=...)` calls each action with the run's
config, a `record(**fields)` that adds fields to `metrics.json`, and the log,
on the chief only, after the last evaluation (as orbit's `Controller` runs the
actions it is given). `actions(config)` is what the entry point hands in:
`publish` unless `--noexport`.

`publish` restores the best checkpoint, calibrates it, checks its behaviour,
exports it and writes the report; one scored pass over the validation split
serves the calibration, the behaviour tests' texts and the report.

Example:
    >>> from sst2.run.config import RunConfig, TrainConfig
    >>> actions(TrainConfig()) == (publish,), actions(TrainConfig(run=RunConfig(export=False)))
    (True, ())
"""

import os

from absl import logging

from sst2.run.config import TrainConfig
from sst2.run.files import save_json
from sst2.run.run_folder import RunFolder
from sst2.serve.behaviour.export_check import check_answers
from sst2.serve.calibrated import calibrate_run
from sst2.serve.evaluation import served_answer
from sst2.serve.report import scored_split, write_report
from sst2.serve.trained import restore


def actions(config: TrainConfig) -> tuple:
    """The actions `sst2.train` runs after training: `(publish,)`, or none without export."""
    return (publish,) if config.run.export else ()


def publish(config: TrainConfig, record) -> None:
    """Restores the best checkpoint; calibrates it (`--calibrate`), checks its behaviour
    (`--behaviour`), exports it, and writes the report (`--report`); `record` keeps the
    calibration, the behaviour's failure rates and the export folder."""
    trained = restore(config.run.model_dir, "best", config=config)
    needs_scores = config.run.calibrate or config.run.report or config.run.behaviour
    scored = scored_split(trained) if needs_scores else None
    if config.run.calibrate:
        trained = calibrate_run(trained, scored=scored)
        record(calibration=trained.calibration)
    if config.run.behaviour:  # before the export: its model card carries the results
        found = check_behaviour(trained, scored)
        record(behaviour={"mean_failure_rate": found["mean_failure_rate"],
                          "capabilities": {name: c["failure_rate"]
                                           for name, c in found["capabilities"].items()}})
    path = trained.export()
    logging.info(f"Exported the best checkpoint ({os.path.basename(trained.checkpoint_path)}) "
                 f"as a SavedModel: {path}")
    record(export_dir=path)
    if config.run.report:
        logging.info(f"Report: {write_report(trained, scored=scored)}")


def check_behaviour(trained, scored: dict) -> dict:
    """The behaviour suite (`sst2.serve.behaviour`) on what the export will answer, its
    validation texts perturbed; written to `<model_dir>/behaviour.json` with the
    checkpoint and temperature it describes (what the report and model card read)."""
    texts = [t.decode("utf-8", "replace") for t in scored["text"]]
    if "text_pair" in scored:
        texts = list(zip(texts, (t.decode("utf-8", "replace") for t in scored["text_pair"])))
    found = check_answers(served_answer(trained), trained.dataset.is_pair,
                          trained.dataset.task, list(trained.dataset.label_names), texts,
                          show_progress=trained.config.run.progress)
    found = {**found, "checkpoint": os.path.basename(trained.checkpoint_path),
             "temperature": trained.temperature}
    save_json(RunFolder(trained.config.run.model_dir).behaviour, found)
    mean = found["mean_failure_rate"]
    logging.info(f"Behaviour: {'n/a' if mean is None else f'{100 * mean:.1f} %'} of the "
                 f"behaviour tests' cases failed, on average over "
                 f"{sum(t['cases'] > 0 for t in found['tests'])} tests "
                 f"({RunFolder(trained.config.run.model_dir).behaviour}).")
    return found
