"""A run's model from its config: the frozen parts and the head, as every command builds them.

`load_frozen(model_config, recorded)` loads the preprocessor and the backbone
in the precisions the run recorded (runs from before they were recorded:
resolved here); `head_for(config, backbone, dataset, precisions)` builds the
head its config and its data describe (outputs and thresholds from its
target). Training builds its frozen parts apart (`sst2.fit.frozen_model`: it
may time both precisions first); restoring a run, a search's group and the
head search build theirs here.

Example:
    >>> from sst2.run.config import TrainConfig
    >>> from sst2.text.dataset_info import SST2_INFO
    >>> config = TrainConfig.from_options(preset=preset, sequence_length=16, pooling="mean")
    >>> precisions, preprocessor, backbone = load_frozen(config.model, None)
    >>> precisions["encode"] in ("float32", "bfloat16")
    True
    >>> head_for(config, backbone, SST2_INFO, precisions).num_classes
    2
"""

from sst2.model import precision, presets
from sst2.model.head import ClassifierHead, build_head


def load_frozen(model_config, recorded: dict | None) -> tuple:
    """`(precisions, preprocessor, backbone)` of a run whose `config.ModelConfig` is
    `model_config` and whose recorded precisions are `recorded` (None: resolved)."""
    precisions = precision.for_run(model_config.precision,
                                   presets.layer_shape(model_config.preset),
                                   model_config.trainable_layers, recorded)
    preprocessor = presets.load_preprocessor(model_config.preset, model_config.sequence_length)
    backbone = presets.load_backbone(model_config.preset, dtype=precisions["encode"])
    return precisions, preprocessor, backbone


def head_for(config, backbone, dataset, precisions: dict,
             copy_unfrozen: bool = False) -> ClassifierHead:
    """The head of a `config.TrainConfig` over `backbone`, for `dataset` (a
    `DatasetInfo`: its outputs, and a threshold per output if its target has them);
    `copy_unfrozen`: a new run's unfrozen layers start from the preset's."""
    return build_head(config.model, backbone, config.optimization.seed,
                      copy_unfrozen=copy_unfrozen, num_classes=dataset.num_outputs,
                      unfrozen_precision=precisions["train"],
                      thresholded=dataset.target.thresholded)
