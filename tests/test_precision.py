"""`--precision=auto`: forced by SST2_AUTO_PRECISION, else measured once per machine."""

import os

import pytest

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


def test_the_verdict_is_measured_once_per_machine_shape_and_kind(cache, monkeypatch):
    calls = _fake_measure(monkeypatch, 1.0, 0.5)
    messages = []
    for _ in range(3):
        assert precision.resolve("auto", SHAPE, "encode", log=messages.append) == "bfloat16"
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
def test_the_measurement_times_both_precisions(kind):
    seconds = precision.measure(SHAPE, kind)
    assert set(seconds) == {"float32", "bfloat16"} and all(s > 0 for s in seconds.values())
