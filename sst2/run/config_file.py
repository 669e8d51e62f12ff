"""A run folder's `config.json`: the `TrainConfig` it was trained with, versioned.

`to_dict` writes the current format (`FORMAT`); `from_dict` reads it and every
older one, each through its migration to the next format, so a run trained
with an older sst2 still resumes, evaluates and exports.

Example:
    >>> config = TrainConfig.from_options(epochs=1, pooling="mean")
    >>> saved = to_dict(config)
    >>> saved["format"], saved["model"]["pooling"]
    (3, 'mean')
    >>> from_dict(saved) == config
    True
    >>> from_dict({"pooling": "mean", "learning_rate": None}).optimization.learning_rate
    0.001
"""

import dataclasses
import os

from sst2.run.config import GROUPS, OptimizationConfig, TrainConfig
from sst2.run.errors import UserError
from sst2.run.files import load_json, save_json
from sst2.run.run_folder import RunFolder

FORMAT = 3


def to_dict(config: TrainConfig) -> dict:
    return {"format": FORMAT, **dataclasses.asdict(config)}


def _from_flat_format_1(fields: dict) -> dict:
    """Format 1 (before groups): one flat dict; `None` stood for a measured default."""
    fields = dict(fields)
    fields.setdefault("lr_schedule", "constant")  # runs from before the option: constant
    if "backbone_learning_rate" not in fields and fields.get("trainable_layers"):
        # Runs from before per-group rates trained everything at one rate, 2e-4 by default.
        rate = fields.get("learning_rate") or 2e-4
        fields.update(learning_rate=rate, backbone_learning_rate=rate)
    for name in ("learning_rate", "backbone_learning_rate"):
        if fields.get(name) is None:
            fields[name] = getattr(OptimizationConfig, name)
    if "show_progress" in fields:
        fields["progress"] = fields.pop("show_progress")
    grouped = {"format": 2}
    for group, config_class in GROUPS.items():
        names = {f.name for f in dataclasses.fields(config_class)}
        grouped[group] = {k: v for k, v in fields.items() if k in names}
    return grouped


def _from_format_2(fields: dict) -> dict:
    """Format 2 (before --augment_identity and --augment_typos): runs trained on their
    split alone."""
    data = {"augment_identity": False, "augment_typos": 0.0, **fields.get("data", {})}
    return {**fields, "format": 3, "data": data}


MIGRATIONS = {1: _from_flat_format_1, 2: _from_format_2}  # format N -> format N + 1


def from_dict(fields: dict) -> TrainConfig:
    """A `TrainConfig` from `to_dict` output of this or any earlier format. Anything else
    (a damaged or hand-edited file) is a `UserError` saying what is wrong."""
    if not isinstance(fields, dict):
        raise UserError(f"the config is a JSON {type(fields).__name__}, not an object")
    version = fields.get("format", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version:
        raise UserError(f"the config's format is {version!r}, not a version number")
    if version > FORMAT:
        raise UserError(f"This config is format {version}, newer than this sst2 reads "
                        f"({FORMAT}); upgrade sst2.")
    while version < FORMAT:
        fields = MIGRATIONS[version](fields)
        version = fields["format"]
    groups = {}
    for group, config_class in GROUPS.items():
        values = fields.get(group, {})
        if not isinstance(values, dict):
            raise UserError(f"the config's {group!r} is a JSON {type(values).__name__}, not "
                            "an object")
        known = {f.name for f in dataclasses.fields(config_class)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"the config's {group!r} has options this sst2 does not know: "
                            f"{', '.join(unknown)}")
        groups[group] = config_class(**values)  # each option is validated as a flag is
    return TrainConfig(**groups)


def config_path(model_dir: str) -> str:
    return RunFolder(model_dir).config


def save_config(model_dir: str, config: TrainConfig, dataset=None,
                train_buckets: tuple[int, ...] | None = None,
                precisions: dict | None = None) -> None:
    """Writes `config.json`; `dataset` (a `datasets.DatasetInfo`) goes under `"dataset"`,
    the training split's length buckets under `"train_buckets"`, what `--precision`
    resolved to (`precision.for_run`) under `"precisions"`."""
    fields = to_dict(config)
    if dataset is not None:
        fields["dataset"] = dataset.to_dict()
    if train_buckets:
        fields["train_buckets"] = list(train_buckets)
    if precisions:
        fields["precisions"] = dict(precisions)
    save_json(config_path(model_dir), fields)


def load_precisions(model_dir: str) -> dict | None:
    """The precisions a saved run computes in (`precision.for_run`), or None (no saved
    run, or one from before they were recorded: resolved again)."""
    saved = (saved_fields(model_dir) or {}).get("precisions")
    valid = isinstance(saved, dict) and set(saved) == {"encode", "train"} and all(
        value in ("float32", "bfloat16") for value in saved.values())
    return dict(saved) if valid else None


def saved_fields(model_dir: str) -> dict | None:
    """config.json's fields, checked as `load_config` checks them; None without one."""
    if not os.path.exists(config_path(model_dir)):
        return None
    load_config(model_dir)
    return load_json(config_path(model_dir))


def load_config(model_dir: str) -> TrainConfig:
    """The `TrainConfig` a run in `model_dir` was trained with."""
    path = config_path(model_dir)
    if not os.path.exists(path):
        raise UserError(f"{model_dir} holds no trained run (no config.json). "
                        "Train one with: python -m sst2.train --model_dir=...")
    try:
        return from_dict(load_json(path))
    except (UserError, TypeError, ValueError) as e:
        if "newer than this sst2" in str(e):
            raise
        raise UserError(f"{path} is damaged: {e}. Restore it from a copy, or use --restart "
                        "to start the run over.") from e
