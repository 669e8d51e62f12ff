"""A run's frozen model: its precisions, its preprocessor, its backbone and the encoder
built on it, with `--precision=auto` decided on the run's own batches.

A run that resumes computes as it started (`config.json` records its
precisions). A new run with `--precision=auto` on a CPU takes the precision a
trial on real work chose on this machine before (so that two runs of one
command compute alike, bit for bit); the first such run, or the first after
the cached verdict came only from `sst2.model.precision`'s one-layer
measurement, loads the backbone in both precisions and times them on batches
of its own training sentences (`sst2.model.precision_trial`), keeps the faster
and replaces the cached verdict with it. Runs started together decide once.
Elsewhere (a forced or fixed precision, an accelerator, several workers, which
must agree, or XLA's static shapes) the precision is resolved as
`sst2.model.precision.for_run` says.

Example:
    >>> import tensorflow as tf
    >>> from sst2.run.config import TrainConfig
    >>> from sst2.text.datasets import open_dataset
    >>> config = TrainConfig.from_options(preset=preset, data_dir=data_dir, model_dir=tmp_dir,
    ...                                   sequence_length=16, precision="float32")
    >>> strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    >>> precisions, preprocessor, backbone, encoding = load_model(
    ...     config, strategy, open_dataset(config.data))
    >>> precisions, encoding.precision
    ({'encode': 'float32', 'train': 'float32'}, 'float32')
"""

import dataclasses

from absl import logging

from sst2.fit.cached_features import Encoding
from sst2.fit.inputs import tokenize_pairs_apart
from sst2.model import hardware, precision, precision_trial, presets
from sst2.model.backbone import FeatureSpec
from sst2.model.encoder import FeatureEncoder
from sst2.run.config import TrainConfig
from sst2.run.config_file import load_precisions
from sst2.run.errors import UserError
from sst2.run.worker import WorkerInfo
from sst2.text import data


@dataclasses.dataclass(frozen=True)
class _Choice:
    precisions: dict
    backbone: object


def load_model(config: TrainConfig, strategy, dataset,
               worker: WorkerInfo = WorkerInfo()) -> tuple:
    """`(precisions, preprocessor, backbone, encoding)`: the frozen model and how it
    encodes, on every local replica's device (see the module)."""
    shape = presets.layer_shape(config.model.preset)
    recorded = None if config.run.restart else load_precisions(config.run.model_dir)
    preprocessor = presets.load_preprocessor(config.model.preset, config.model.sequence_length)
    jit = hardware.backbone_jit(config.run.jit_compile)
    if (not recorded and worker.count == 1 and not jit
            and precision.measured_on_real_work(config.model.precision)):
        choice = _decide_on_real_work(config, dataset, preprocessor, shape)
    else:
        precisions = precision.for_run(config.model.precision, shape,
                                       config.model.trainable_layers, recorded=recorded)
        choice = _Choice(precisions, presets.load_backbone(config.model.preset,
                                                           dtype=precisions["encode"]))
    backbone = choice.backbone
    check_sequence_length(config.model.sequence_length, backbone)
    encoder = FeatureEncoder.for_backbone(backbone, FeatureSpec.of(config.model), jit,
                                          devices=list(strategy.extended.worker_devices))
    return (choice.precisions, preprocessor, backbone,
            Encoding(encoder, choice.precisions["encode"], backbone.num_layers))


def _decide_on_real_work(config: TrainConfig, dataset, preprocessor, shape) -> _Choice:
    """The precision a trial on real work chose on this machine before (so that runs of
    one command compute alike), else a trial now: both backbones timed on the run's
    batches, the faster kept and remembered."""
    train = (precision.resolve(config.model.precision, shape, "train")
             if config.model.trainable_layers else None)
    with precision.deciding(shape, "encode"):
        record = precision.cached(shape, "encode")
        if record is not None and _consistent(record):
            encode = record["precision"]
            logging.info(f"Precision of the encode pass: {encode}, as timed on a run's own batches "
                         "on this machine before (SST2_AUTO_PRECISION or --precision overrides).")
            return _Choice({"encode": encode, "train": train or encode},
                           presets.load_backbone(config.model.preset, dtype=encode))
        return _trial(config, dataset, preprocessor, shape, train)


def _consistent(record: dict) -> bool:
    """Whether a cached verdict came from a trial on real work and still says what that
    trial's own times say (a verdict edited by hand or damaged is tried again)."""
    trial = record.get("real_work")
    if not isinstance(trial, dict) or not isinstance(trial.get("seconds"), dict):
        return False
    try:
        faster = precision.faster_of(trial["seconds"])
    except (KeyError, TypeError):
        return False
    return record["precision"] == trial.get("precision") == faster


def _trial(config: TrainConfig, dataset, preprocessor, shape, train) -> _Choice:
    backbones = {p: presets.load_backbone(config.model.preset, dtype=p)
                 for p in precision.PRECISIONS}
    check_sequence_length(config.model.sequence_length, backbones["float32"])
    spec = FeatureSpec.of(config.model)
    encoders = {p: FeatureEncoder.for_backbone(b, spec, jit_compile=False)
                for p, b in backbones.items()}
    tokens = _sample_tokens(config, dataset, preprocessor, precision_trial.TRIAL_SENTENCES)
    trial = precision_trial.confirm(encoders, tokens, config.run.encode_batch_size,
                                    config.run.encode_batch_tokens)
    precision.remember(shape, "encode", trial)
    encode = trial["precision"]
    return _Choice({"encode": encode, "train": train or encode}, backbones[encode])


def _sample_tokens(config: TrainConfig, dataset, preprocessor, count: int) -> dict:
    """The first `count` examples of the training split, tokenized as the encode pass
    tokenizes them: the sentences it encodes (for pairs apart, each distinct one)."""
    sample = dataset.load(config.data.train_split).take(count)
    if FeatureSpec.of(config.model).separate_pairs and dataset.info.is_pair:
        return tokenize_pairs_apart(sample, preprocessor)["sentences"]
    return data.to_numpy(data.tokenize(sample, preprocessor))


def check_sequence_length(sequence_length: int, backbone) -> None:
    """Refuses a `--sequence_length` the backbone's position embeddings do not cover."""
    limit = backbone.max_sequence_length
    if sequence_length > limit:
        raise UserError(f"--sequence_length={sequence_length} is out of range: this preset's "
                        f"position embeddings cover at most {limit} tokens.")
