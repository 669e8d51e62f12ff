"""A trained run's temperature, fitted where it is used: on the export's own answers.

`calibrate_run(trained)` scores the run's validation split through the
export's computation (uncalibrated), fits the temperature
(`sst2.serve.temperature`), records it with the ECE and NLL before and after
in `calibration.json` (for the run's best checkpoint, the one exported by
default; another checkpoint's stays in memory, never overwriting it), and
sets it on `trained`, so
that its export answers calibrated probabilities. Single-label runs only:
multi-label thresholds are tuned instead, and a number needs none.

Example:
    >>> from sst2.serve.trained import restore
    >>> trained = restore(trained_dir)
    >>> calibrated = calibrate_run(trained)
    >>> result = calibrated.calibration
    >>> result["accuracy_after"] == result["accuracy_before"], calibrated.temperature > 0
    (True, True)
"""

import dataclasses
import os

from absl import logging

from sst2.run.files import save_json
from sst2.run.run_folder import RunFolder
from sst2.serve import temperature as calibration
from sst2.serve.evaluation import predict_split


def calibrate_run(trained, split: str | None = None,
                  scored: dict | None = None, record: bool = True):
    """`trained` at the temperature fitted on its checkpoint's answers (see the module),
    with `calibration` what `calibration.json` holds; `trained` itself for a target
    without a temperature.

    Args:
        trained: a `TrainedModel`.
        split: where to fit it (default: the run's validation split).
        scored: the split's uncalibrated answers, if the caller has them already.
        record: write `calibration.json` (False: in memory only, for a search's
            ensemble, which no run folder holds).
    """
    if not trained.dataset.target.calibrated:
        return trained
    split = split or trained.config.data.eval_split
    if scored is None:
        raw = dataclasses.replace(trained, temperature=None)
        scored = predict_split(raw, split, show_progress=trained.config.run.progress)
    result = calibration.calibrate(scored["probabilities"], scored["gold"])
    checkpoint = os.path.basename(trained.checkpoint_path)
    result.update(split=split, checkpoint=checkpoint)
    if record and checkpoint.startswith("best-"):
        save_json(RunFolder(trained.config.run.model_dir).calibration, result)
    calibrated = dataclasses.replace(trained, temperature=result["temperature"],
                                     calibration=result)
    if result["applied"]:
        logging.info(f"Calibration on {split}: temperature {result['temperature']:.3f} "
                     f"({result['reason']}), expected calibration error "
                     f"{result['ece_before']:.4f} -> {result['ece_after']:.4f} (labels unchanged).")
    else:
        logging.info(f"Calibration on {split}: temperature kept at 1 ({result['reason']}; "
                     f"fitted {result['fitted_temperature']:.3f} would not be trusted); expected "
                     f"calibration error {result['ece_before']:.4f}.")
    return calibrated
