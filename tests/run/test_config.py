"""The config module: one source of truth per option, validation, flags, config.json formats."""

import dataclasses
import json
import os
import re

import pytest
from absl import flags

from sst2 import cli
from sst2.model.backbone import FeatureSpec
from sst2.run import config as config_lib
from sst2.run import config_file
from sst2.run.command_config import EvaluateConfig
from sst2.run.config import ModelConfig, OptimizationConfig, TrainConfig
from sst2.run.config_file import from_dict, load_config, to_dict
from sst2.run.errors import UserError
from sst2.run.options import options


def test_defaults_are_explicit_values():
    config = TrainConfig()
    assert config.optimization.learning_rate == 1e-3
    assert config.optimization.backbone_learning_rate == 2e-4
    assert config.model.pooling == "auto" and config.model.layers == "auto"
    # auto: attention over every layer, or for pairs encoded apart the last layer's mean.
    spec = FeatureSpec.of(config.model)
    assert (spec.pooling, spec.layers) == ("attention", "all")
    spec = FeatureSpec.of(config.replace(model={"pair_encoding": "separate"}).model)
    assert (spec.pooling, spec.layers) == ("mean", "last")
    for group in config_lib.GROUPS.values():
        for field, spec, kind in options(group):
            assert spec.help, field.name
            # Only options that may be unset (paths, the TPU address) default to None.
            assert field.default is not None or field.type != kind, field.name


@pytest.mark.parametrize("options,message", [
    ({"learning_rate": 0}, "--learning_rate=0 is out of range: it must be above 0."),
    ({"learning_rate": -0.001}, "--learning_rate=-0.001 is out of range"),
    ({"batch_size": 0}, "--batch_size=0 is out of range: it must be at least 1."),
    ({"batch_size": -5}, "--batch_size=-5 is out of range"),
    ({"epochs": 0}, "--epochs=0 is out of range: it must be at least 1."),
    ({"encode_batch_size": 0}, "--encode_batch_size=0 is out of range"),
    ({"dropout": 1.5}, "--dropout=1.5 is out of range: it must be at least 0 and below 1."),
    ({"ema_decay": 1.5}, "--ema_decay=1.5 is out of range: it must be at least 0 and below 1."),
    ({"trainable_layers": -1}, "--trainable_layers=-1 is out of range: it must be at least 0."),
    ({"head_layers": -1}, "--head_layers=-1 is out of range"),
    ({"head_hidden": -1}, "--head_hidden=-1 is out of range"),
    ({"rdrop_alpha": -1.0}, "--rdrop_alpha=-1.0 is out of range: it must be at least 0."),
    ({"sequence_length": 0}, "--sequence_length=0 is out of range: it must be at least 3 and "
                             "at most 512."),
    ({"sequence_length": 10000}, "--sequence_length=10000 is out of range"),
    ({"pooling": "max"}, "--pooling='max' is not allowed: it must be one of auto, cls, "
                         "mean, cls_mean, attention."),
    ({"lr_schedule": "cosine"}, "--lr_schedule='cosine' is not allowed"),
    ({"epochs": "3"}, "--epochs='3' is not a int."),
    ({"backbone_learning_rate": 1e-4}, "use it with --trainable_layers"),
    ({"rdrop_alpha": 1.0, "dropout": 0.0}, "equal with --dropout=0"),
])
def test_bad_values_are_refused_on_construction_naming_the_flag(options, message):
    with pytest.raises(UserError) as raised:
        TrainConfig.from_options(**options)
    assert message in str(raised.value)


def test_a_backbone_rate_with_unfrozen_layers_and_rdrop_with_dropout_are_accepted():
    config = TrainConfig.from_options(trainable_layers=2, backbone_learning_rate=1e-4,
                                      rdrop_alpha=1.0)
    assert config.optimization.backbone_learning_rate == 1e-4
    with pytest.raises(TypeError, match="not an option"):
        TrainConfig.from_options(learning_rat=1e-3)


def test_flags_are_generated_from_the_config_with_help_choices_and_defaults():
    flag_values = flags.FlagValues()
    cli.define_flags(TrainConfig, flag_values)
    names = {field.name for group in config_lib.GROUPS.values()
             for field in dataclasses.fields(group)}
    assert all(name in flag_values for name in names)
    pooling = flag_values["pooling"]
    assert pooling.default == "auto" and "learned attention" in pooling.help
    assert pooling.parser.enum_values == ["auto", "cls", "mean", "cls_mean", "attention"]
    assert "(above 0.)" in flag_values["learning_rate"].help
    flag_values(["prog", "--epochs=1", "--pooling=mean", "--noexport", "--learning_rate=5e-3"])
    config = cli.config_from_flags(TrainConfig, flag_values)
    assert config == TrainConfig.from_options(epochs=1, pooling="mean", export=False,
                                              learning_rate=5e-3)


def test_flags_are_validated_like_python_values():
    flag_values = flags.FlagValues()
    cli.define_flags(TrainConfig, flag_values)
    flag_values(["prog", "--learning_rate=0"])
    with pytest.raises(UserError, match="--learning_rate=0.0 is out of range"):
        cli.config_from_flags(TrainConfig, flag_values)


def test_entry_point_configs_have_required_options():
    flag_values = flags.FlagValues()
    cli.define_flags(EvaluateConfig, flag_values)
    flag_values(["prog"])
    with pytest.raises(UserError, match="--model_dir is required"):
        cli.config_from_flags(EvaluateConfig, flag_values)
    flag_values(["prog", "--model_dir=runs/a", "--checkpoint=latest"])
    assert cli.config_from_flags(EvaluateConfig, flag_values) == EvaluateConfig(
        model_dir="runs/a", checkpoint="latest")


def test_config_json_round_trips_with_its_format():
    config = TrainConfig.from_options(epochs=2, pooling="mean", trainable_layers=1,
                                      backbone_learning_rate=1e-4, model_dir="runs/x")
    saved = to_dict(config)
    assert saved["format"] == config_file.FORMAT
    assert saved["model"]["pooling"] == "mean" and saved["run"]["model_dir"] == "runs/x"
    assert from_dict(json.loads(json.dumps(saved))) == config
    with pytest.raises(UserError, match="newer than this sst2 reads"):
        from_dict({**saved, "format": config_file.FORMAT + 1})


# config.json as written by sst2 before option groups (format 1): flat, None for defaults.
FORMAT_1 = {"model_dir": "runs/old", "preset": "p", "data_dir": None, "train_split": "train",
            "eval_split": "validation", "epochs": 3, "batch_size": 32, "learning_rate": None,
            "backbone_learning_rate": None, "lr_schedule": "linear", "ema_decay": 0.0,
            "rdrop_alpha": 0.0, "seed": 0, "sequence_length": 128, "precision": "auto",
            "pooling": "attention", "layers": "all", "head_hidden": 256, "head_layers": 0,
            "trainable_layers": 0, "dropout": 0.1, "cache_features": True, "cache_dir": None,
            "encode_batch_size": 128, "jit_compile": True, "strategy": "auto", "tpu": None,
            "checkpoint_every_steps": 500, "keep_checkpoints": 3, "restart": False,
            "download": True, "export": True, "show_progress": False}


def test_format_1_reads_as_the_same_run_with_explicit_defaults():
    config = from_dict(FORMAT_1)
    assert config == TrainConfig.from_options(model_dir="runs/old", preset="p", progress=False,
                                              pooling="attention", layers="all",
                                              augment_identity=False)
    assert config.optimization.learning_rate == 1e-3


def test_format_1_runs_from_before_per_group_rates_and_schedules():
    # Before per-group rates, unfrozen runs trained everything at one rate (2e-4 by default).
    old = {k: v for k, v in FORMAT_1.items() if k != "backbone_learning_rate"}
    config = from_dict({**old, "trainable_layers": 2})
    assert config.optimization.learning_rate == config.optimization.backbone_learning_rate == 2e-4
    config = from_dict({**old, "trainable_layers": 2, "learning_rate": 1e-4})
    assert config.optimization.backbone_learning_rate == 1e-4
    # Before --lr_schedule, the rate was constant.
    assert from_dict({k: v for k, v in FORMAT_1.items()
                      if k != "lr_schedule"}).optimization.lr_schedule == "constant"


def test_format_2_runs_trained_on_their_split_alone():
    """Identity-term variants are trained on by default since format 3: a run from before
    resumes as it was trained, without them (else its batches would change)."""
    saved = to_dict(TrainConfig.from_options(model_dir="runs/f2"))
    del saved["data"]["augment_identity"]
    assert from_dict({**saved, "format": 2}).data.augment_identity is False
    assert from_dict(to_dict(TrainConfig.from_options())).data.augment_identity is True


def test_load_config_reads_a_run_folder(tmp_path):
    with pytest.raises(UserError, match="no trained run"):
        load_config(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(FORMAT_1))
    assert load_config(str(tmp_path)).run.model_dir == "runs/old"


def test_resume_compares_identity_options_only():
    config = TrainConfig.from_options(trainable_layers=2, pooling="attention")
    assert config.differences(config.replace(run={"model_dir": "elsewhere", "export": False},
                                             optimization={"epochs": 5})) == []
    # An option resolved from the data at the start: `auto` resumes whatever it became.
    assert config.replace(model={"pooling": "auto"}).differences(
        config.replace(model={"pooling": "mean"})) == []
    other = config.replace(optimization={"backbone_learning_rate": 1e-4},
                           model={"pooling": "mean"})
    assert config.differences(other) == [
        "pooling: checkpoint has 'mean', this run has 'attention'",
        "backbone_learning_rate: checkpoint has 0.0001, this run has 0.0002"]
    identity = {field.name for group in (ModelConfig, OptimizationConfig)
                for field, spec, _ in options(group) if spec.identity}
    assert identity == {f.name for f in dataclasses.fields(ModelConfig)} | {
        f.name for f in dataclasses.fields(OptimizationConfig)} - {"epochs"}


def test_compile_cache_sets_xla_flag_once_and_never_overrides(tmp_path, monkeypatch):
    from sst2.fit import compile_cache

    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_auto_jit=0")
    assert compile_cache.enable(str(tmp_path / "xla"))
    assert os.environ["TF_XLA_FLAGS"] == (
        f"--tf_xla_auto_jit=0 --tf_xla_persistent_cache_directory={tmp_path / 'xla'}")
    assert os.path.isdir(tmp_path / "xla") and not os.listdir(tmp_path / "xla")
    assert not compile_cache.enable(str(tmp_path / "other"))  # a cache is named
    monkeypatch.delenv("TF_XLA_FLAGS")
    (tmp_path / "file").write_text("")
    assert not compile_cache.enable(str(tmp_path / "file" / "xla"))  # not a folder
    assert "TF_XLA_FLAGS" not in os.environ


@pytest.mark.parametrize("edit,message", [
    (lambda f: {**f, "format": "2"}, "format is '2', not a version number"),
    (lambda f: {**f, "format": 0}, "format is 0, not a version number"),
    (lambda f: {**f, "model": {**f["model"], "poolng": "mean"}},
     "'model' has options this sst2 does not know: poolng"),
    (lambda f: [f], "is a JSON list, not an object"),
    (lambda f: {**f, "run": ["runs"]}, "'run' is a JSON list, not an object"),
    (lambda f: {**f, "optimization": {**f["optimization"], "epochs": -3}}, "--epochs=-3"),
])
def test_a_hand_damaged_config_is_one_clear_error(edit, message, tmp_path):
    # Issue 25, case 13: four kinds of traceback.
    from sst2.run.config_file import load_precisions, save_config
    from sst2.text.dataset_info import load_dataset_info

    save_config(str(tmp_path), TrainConfig.from_options(epochs=1))
    path = tmp_path / "config.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    for load in (load_config, load_dataset_info, load_precisions):
        with pytest.raises(UserError, match=f"config.json is damaged: .*{re.escape(message)}"):
            load(str(tmp_path))


def test_export_options_that_would_be_ignored_are_refused():
    """Issue 47, case 9: an option the chosen format does not use is one error, not a
    silently different export."""
    from sst2.run.command_config import ExportConfig

    ExportConfig(model_dir="runs/x", format="openvino", quantize="int8", calibration_texts=8)
    ExportConfig(model_dir="runs/x", format="openvino", calibration_texts=8)  # auto tries int8
    refused = {
        (("quantize", "int8"), ("calibration_texts", 8)): "--quantize and --calibration_texts "
                                                          "are for --format=openvino",
        (("format", "openvino"), ("explain_steps", 8)): "--explain_steps sets the SavedModel's",
        (("format", "openvino"), ("quantize", "int8_weights"), ("calibration_texts", 8)):
            "--quantize=int8_weights uses none",
    }
    for given, message in refused.items():
        with pytest.raises(UserError, match=re.escape(message)):
            ExportConfig(model_dir="runs/x", **dict(given))


def _search_config(*argv):
    from absl import flags

    from sst2 import cli
    from sst2.run.search_config import SearchConfig

    flag_values = flags.FlagValues()
    cli.define_flags(SearchConfig, flag_values)
    flag_values(["sst2.search", *argv])
    return cli.config_from_flags(SearchConfig, flag_values)


def test_a_searchable_flag_given_once_is_its_only_value():
    """Case 9: `--learning_rate=3e-3 --dropout=0.3` searched the default 16."""
    from sst2.run.search_config import DEFAULT_SPACE

    config = _search_config("--learning_rate=3e-3", "--dropout=0.3")
    assert config.searched_space() == {"learning_rate": [0.003], "dropout": [0.3]}
    assert config.optimization.learning_rate == 0.003
    assert _search_config("--learning_rate=1e-3,4e-3").searched_space() == {
        "learning_rate": [0.001, 0.004]}
    assert _search_config().searched_space() == DEFAULT_SPACE
    with pytest.raises(UserError, match=r"--learning_rate=1e-3,,: an empty value"):
        _search_config("--learning_rate=1e-3,,")
    with pytest.raises(UserError, match=r"every value must be an int"):
        _search_config("--seed=1,x")


def test_a_damaged_config_or_metrics_file_is_one_message(tmp_path):
    from sst2.run.config_file import load_config

    (tmp_path / "config.json").write_text('{"format": 2, "model": {')
    with pytest.raises(UserError, match="config.json is not valid JSON .*--restart"):
        load_config(str(tmp_path))
