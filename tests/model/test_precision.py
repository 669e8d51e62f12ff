"""`--precision=auto`: forced by SST2_AUTO_PRECISION, else measured once per machine."""

import json
import os

import pytest
import tensorflow as tf

from sst2.model import precision
from sst2.run.errors import UserError

SHAPE = precision.LayerShape(16, 2, 32)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SST2_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(precision.FORCE, raising=False)
    return tmp_path


def _fake_measure(monkeypatch, float32, bfloat16):
    calls = []

    def measure(shape, kind):
        calls.append((shape, kind))
        return {"float32": float32, "bfloat16": bfloat16}

    monkeypatch.setattr(precision, "measure", measure)
    return calls


def test_an_explicit_precision_is_kept(cache, monkeypatch):
    calls = _fake_measure(monkeypatch, 1.0, 0.1)
    assert precision.resolve("float32", SHAPE) == "float32"
    assert precision.resolve("bfloat16", SHAPE) == "bfloat16"
    assert calls == []


@pytest.mark.parametrize("forced", ["float32", "bfloat16"])
def test_the_environment_forces_what_auto_means(forced, cache, monkeypatch):
    calls = _fake_measure(monkeypatch, 1.0, 2.0)
    monkeypatch.setenv(precision.FORCE, forced)
    assert precision.resolve("auto", SHAPE) == forced
    assert precision.resolve("float32", SHAPE) == "float32"  # an explicit flag still wins
    assert calls == []


def test_a_bad_forced_value_is_a_user_error(cache, monkeypatch):
    monkeypatch.setenv(precision.FORCE, "fp16")
    with pytest.raises(UserError, match="SST2_AUTO_PRECISION='fp16'"):
        precision.resolve("auto", SHAPE)


@pytest.mark.parametrize("float32,bfloat16,expected", [
    (1.0, 0.5, "bfloat16"), (1.0, 0.9, "bfloat16"), (1.0, 0.95, "float32"), (1.0, 2.0, "float32")])
def test_auto_picks_bfloat16_only_when_clearly_faster(float32, bfloat16, expected, cache,
                                                      monkeypatch):
    _fake_measure(monkeypatch, float32, bfloat16)
    assert precision.resolve("auto", SHAPE) == expected


def test_the_verdict_is_measured_once_per_machine_shape_and_kind(said, cache, monkeypatch):
    calls = _fake_measure(monkeypatch, 1.0, 0.5)
    said.clear()
    messages = said
    for _ in range(3):
        assert precision.resolve("auto", SHAPE, "encode") == "bfloat16"
    assert len(calls) == 1 and len(messages) == 1
    assert "float32 1000.0 ms, bfloat16 500.0 ms per step: bfloat16" in messages[0]
    precision.resolve("auto", SHAPE, "train")
    precision.resolve("auto", precision.LayerShape(32, 2, 64), "encode")
    assert len(calls) == 3
    records = os.listdir(cache / "precision")
    assert len(records) == 3
    # A damaged record is measured again, and replaced.
    for name in records:
        (cache / "precision" / name).write_text("{not json")
    precision.resolve("auto", SHAPE, "encode")
    assert len(calls) == 4


def test_a_run_keeps_the_precisions_it_recorded(cache, monkeypatch):
    calls = _fake_measure(monkeypatch, 1.0, 0.5)
    recorded = {"encode": "float32", "train": "float32"}
    assert precision.for_run("auto", SHAPE, 2, recorded) == recorded
    assert calls == []
    assert precision.for_run("auto", SHAPE, 0) == {"encode": "bfloat16", "train": "bfloat16"}
    assert [kind for _, kind in calls] == ["encode"]  # no unfrozen layers: no train verdict
    precision.for_run("auto", SHAPE, 1)
    assert [kind for _, kind in calls] == ["encode", "train"]


@pytest.mark.parametrize("kind", ["encode", "train"])
def test_the_measurement_times_both_precisions(kind, monkeypatch):
    """Each precision's own layer runs, once to warm up and then in alternating timed
    rounds; the result is each one's median round (here on a clock that each layer
    advances by a known amount)."""
    import types

    import tensorflow as tf

    now, ran = [0.0], []
    cost = {"float32": 1.0, "bfloat16": 3.0}
    built = precision._step

    def timed_step(shape, which, kind):
        step = built(shape, which, kind)

        def run():
            outputs = step()
            ran.append((which, tf.nest.flatten(outputs)[0].shape))
            now[0] += cost[which]
            return outputs
        return run

    monkeypatch.setattr(precision, "_step", timed_step)
    monkeypatch.setattr(precision, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    monkeypatch.setattr(precision, "MEASURE_SECONDS", 0.0)
    assert precision.measure(SHAPE, kind) == cost
    assert [which for which, _ in ran[:2]] == list(precision.PRECISIONS)  # the warm-up
    assert len(ran) >= 2 + 3 * len(precision.PRECISIONS)


def test_auto_precision_is_decided_on_the_runs_own_batches_once_per_machine(said,
        tiny_preset, tiny_data_dir, tmp_path, monkeypatch):
    """Issue 36: a verdict measured once on one small layer (under load, it was wrong for
    good) is a first guess; the run's own batches decide, and later runs read that."""
    from sst2.fit import frozen_model
    from sst2.model import precision, precision_trial, presets
    from sst2.run.config import TrainConfig
    from sst2.text.datasets import open_dataset

    monkeypatch.setenv("SST2_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(precision.FORCE, raising=False)
    shape = presets.layer_shape(tiny_preset)
    # A first guess that the real work contradicts, as a busy machine once cached it.
    monkeypatch.setattr(precision, "measure", lambda shape, kind="encode": {
        "float32": 1.0, "bfloat16": 2.0})
    assert precision.verdict(shape, "encode")["precision"] == "float32"
    trials = []

    def timed(encoders, tokens, batch_size, batch_tokens):
        trials.append((sorted(encoders), tokens["token_ids"].shape, batch_size, batch_tokens))
        return {"precision": "bfloat16", "seconds": {"float32": 2.0, "bfloat16": 1.0},
                "batches": 4, "tokens": int(tokens["length"].sum()), "rounds": 3}

    monkeypatch.setattr(precision_trial, "confirm", timed)
    config = TrainConfig.from_options(preset=tiny_preset, data_dir=tiny_data_dir,
                                      model_dir=str(tmp_path / "run"), sequence_length=16,
                                      encode_batch_size=32)
    dataset = open_dataset(config.data)
    precisions, _, backbone, encoding = frozen_model.load_model(
        config, tf.distribute.OneDeviceStrategy("/cpu:0"), dataset)
    # The tiny training split's 256 sentences (up to TRIAL_SENTENCES), tokenized as the
    # encode pass tokenizes them, batched as it batches them.
    assert trials == [(["bfloat16", "float32"], (256, 16), 32, 8192)]
    assert precisions == {"encode": "bfloat16", "train": "bfloat16"}
    assert encoding.precision == "bfloat16" and backbone.dtype_policy.compute_dtype == "bfloat16"
    assert any("cached verdict for this machine (float32) is replaced" in m for m in said), said
    record = precision.cached(shape, "encode")
    assert record["precision"] == "bfloat16" and record["real_work"]["batches"] == 4
    # The next run on this machine reads the decision: no trial, the same precision.
    said.clear()
    again, *_ = frozen_model.load_model(config, tf.distribute.OneDeviceStrategy("/cpu:0"),
                                        dataset)
    assert again == precisions and len(trials) == 1
    assert any("as timed on a run's own batches" in m for m in said), said
    # A decision flipped by hand (its own times say otherwise) is tried again.
    import json

    path = precision._record_path(precision.machine_key(shape, "encode"))
    flipped = dict(record, precision="float32")
    with open(path, "w") as f:
        json.dump(flipped, f)
    frozen_model.load_model(config, tf.distribute.OneDeviceStrategy("/cpu:0"), dataset)
    assert len(trials) == 2 and precision.cached(shape, "encode")["precision"] == "bfloat16"


@pytest.mark.slow
def test_a_run_that_decided_the_precision_equals_one_that_read_the_decision(said,
        tiny_preset, tiny_data_dir, tmp_path, monkeypatch):
    """The trial loads a second backbone; the head must not start from another random
    state for it (it did: val accuracy 0.4062 against 0.5312 for the same command)."""
    from sst2.run.config import TrainConfig
    from tests.helpers import train as run

    monkeypatch.setenv("SST2_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(precision.FORCE, raising=False)
    epochs = []
    for name in ("decides", "reads"):
        run(TrainConfig.from_options(
            preset=tiny_preset, data_dir=tiny_data_dir, model_dir=str(tmp_path / name),
            sequence_length=16, epochs=1, progress=False, export=False, compile_cache=False))
        epochs.append([{k: v for k, v in r.items() if "seconds" not in k}
                       for r in json.load(open(tmp_path / name / "metrics.json"))["epochs"]])
    assert any("timed on 1 of this run's batches" in m for m in said)  # 256 short ones
    assert any("as timed on a run's own batches on this machine before" in m for m in said)
    assert epochs[0] == epochs[1]


@pytest.mark.parametrize("damage", ["[1,2]", "\"bfloat16\"", "null", "folder"])
def test_a_precision_record_that_is_not_an_object_is_measured_again(tmp_path, monkeypatch,
                                                                     damage):
    """Case 11: `[1,2]` gave a traceback, a folder in its place IsADirectoryError."""
    import hashlib
    import json

    from sst2.model import precision

    monkeypatch.setenv("SST2_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(precision.FORCE, raising=False)
    monkeypatch.setattr(precision, "measure", lambda shape, kind="encode": {
        "float32": 2.0, "bfloat16": 1.0})
    shape = precision.LayerShape(16, 2, 32)
    key = precision.machine_key(shape, "encode")
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = tmp_path / "precision" / f"encode-{name}.json"
    path.parent.mkdir()
    if damage == "folder":
        path.mkdir()
    else:
        path.write_text(damage)
    assert precision.verdict(shape, "encode")["precision"] == "bfloat16"
