"""A trained run, restored from a checkpoint: what evaluate, export and predict start from.

(`sst2.serve.evaluation` scores it and writes its predictions.)

Example:
    >>> import os
    >>> trained = restore(trained_dir, "best")
    >>> type(trained.head).__name__, os.path.basename(trained.checkpoint_path)
    ('ClassifierHead', 'best-...')
"""

import dataclasses
import os

import keras
import tensorflow as tf
from absl import logging

from sst2.fit import averaging
from sst2.fit.checkpoint import RunCheckpoint
from sst2.fit.optimization import make_optimizer
from sst2.model.assembly import head_for, load_frozen
from sst2.model.backbone import FeatureSpec
from sst2.model.head import ClassifierHead
from sst2.run.command_config import ExplainConfig, ReadingConfig
from sst2.run.config import TrainConfig
from sst2.run.config_file import load_config, load_precisions
from sst2.run.errors import UserError
from sst2.run.run_folder import RunFolder
from sst2.text.dataset_info import SST2_INFO, DatasetInfo, load_dataset_info


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A restored run: everything needed to predict, evaluate or export. Frozen: another
    temperature is another `TrainedModel` (`dataclasses.replace`), sharing the layers."""

    config: TrainConfig
    preprocessor: keras.layers.Layer
    backbone: keras.Model
    head: ClassifierHead
    spec: FeatureSpec
    checkpoint_path: str
    dataset: DatasetInfo = SST2_INFO
    temperature: float | None = None  # the calibration the export folds in, if any
    calibration: dict | None = None  # how it was fitted (`sst2.serve.calibrated`)

    def export(self, export_root: str | None = None,
               reading: ReadingConfig = ReadingConfig(), model_card: bool = True,
               explaining: ExplainConfig = ExplainConfig()) -> str:
        """Writes the serving SavedModel (see `sst2.serve.graph.serving`), with its
        `MODEL_CARD.md` (`sst2.serve.model_card`); returns its folder."""
        from sst2.serve import model_card as card
        from sst2.serve.graph import serving

        return serving.export_saved_model(
            self.preprocessor, self.backbone, self.head, self.spec,
            export_root or RunFolder(self.config.run.model_dir).export, reading=reading,
            dataset=self.dataset, temperature=self.temperature,
            model_card=card.render(self, reading) if model_card else None,
            explaining=explaining, checkpoint=os.path.basename(self.checkpoint_path))


def restore(model_dir: str, which: str = "best", config: TrainConfig | None = None) -> TrainedModel:
    """Rebuilds a trained model from `model_dir`'s `best` or `latest` checkpoint, or a path.

    With a weight average (`--ema_decay`), the head holds the average: what was
    evaluated is what is served.
    """
    # The run folder is the one given: a moved or copied run reads and writes there.
    config = (config or load_config(model_dir)).replace(run={"model_dir": model_dir})
    dataset = load_dataset_info(model_dir)
    model_config = config.model
    # As the run computed: its recorded precisions (runs from before: resolved here).
    precisions, preprocessor, backbone = load_frozen(model_config, load_precisions(model_dir))
    head = head_for(config, backbone, dataset, precisions)
    # The optimizer's variables must line up with the checkpoint's (a schedule
    # replaces the learning-rate variable; groups add optimizers): build the same kind.
    optimizer = make_optimizer(config.optimization, head, total_steps=1)
    optimizer.build(head.trainable_variables)  # its slots take the checkpoint's values
    weight_average = averaging.from_decay(config.optimization.ema_decay)
    if weight_average is not None:
        weight_average.build(head.trainable_variables)
    ckpt = RunCheckpoint(model_dir, head, optimizer, weight_average=weight_average)
    try:
        if which == "best":
            path = ckpt.restore_best()
        elif which == "latest":
            if ckpt.restore_latest() is None:
                raise FileNotFoundError
            path = ckpt.restored_path
        else:
            ckpt.checkpoint.read(which).expect_partial()
            path = which
    except (FileNotFoundError, tf.errors.OpError, ValueError) as e:
        raise UserError(f"No usable checkpoint ({which}) in {model_dir}: "
                        f"{e or 'none saved yet'}") from e
    if ckpt.position.epoch == 0:
        logging.warning(f"no epoch of this run finished: {os.path.basename(path)} was saved "
                        f"at step {ckpt.position.step}, inside epoch 1, and never validated"
                        + ("; its thresholds are not tuned" if dataset.target.thresholded
                           else "") + ". The model card says so.")
    if weight_average is not None:
        weight_average.copy_to(head.trainable_variables)  # serve what was evaluated
    if dataset.target.thresholded and model_config.threshold is not None:
        head.thresholds.assign(tf.fill([dataset.num_outputs], model_config.threshold))
    return TrainedModel(config, preprocessor, backbone, head, FeatureSpec.of(model_config), path,
                        dataset, *_calibration(model_dir, path))


def _calibration(model_dir: str, checkpoint_path: str) -> tuple:
    """`(temperature, calibration)` as `calibration.json` holds them for this checkpoint;
    `(None, None)` for a checkpoint it does not describe."""
    from sst2.run.files import load_json

    path = RunFolder(model_dir).calibration
    if not os.path.isfile(path):
        return None, None
    saved = load_json(path)
    if os.path.basename(saved.get("checkpoint", "")) != os.path.basename(checkpoint_path):
        return None, None
    return float(saved["temperature"]), saved
