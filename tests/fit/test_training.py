"""A whole training run, in-process, on the tiny model."""

import os

import pytest

from sst2.run.config import TrainConfig
from sst2.run.errors import UserError
from tests.helpers import TINY_SEQUENCE_LENGTH
from tests.helpers import train as run

# precision: CI runs these again with SST2_AUTO_PRECISION=bfloat16.
pytestmark = [pytest.mark.slow, pytest.mark.precision]


def test_cached_and_uncached_paths_agree(tiny_preset, tiny_data_dir, tmp_path):
    """--cache_features=false runs the backbone every step: the same batches, and up to
    the cache's float16 rounding the same losses."""
    results = {}
    for cache in (True, False):
        config = TrainConfig.from_options(
            model_dir=str(tmp_path / str(cache)), preset=tiny_preset, data_dir=tiny_data_dir,
            epochs=2, batch_size=8, learning_rate=0.01, sequence_length=TINY_SEQUENCE_LENGTH,
            precision="float32", cache_features=cache, progress=False, export=False)
        results[cache] = run(config)["epochs"]
    for cached, uncached in zip(results[True], results[False]):
        assert cached["step"] == uncached["step"]
        assert cached["train_loss"] == pytest.approx(uncached["train_loss"], rel=1e-3)
        assert cached["val_loss"] == pytest.approx(uncached["val_loss"], rel=1e-3)
        assert abs(cached["val_accuracy"] - uncached["val_accuracy"]) <= 1 / 64


@pytest.mark.slow
def test_data_paths_are_kept_absolute_and_a_changed_training_file_is_refused(
        tiny_preset, tmp_path, monkeypatch):
    # Issue 25, case 2: a run trained on relative paths, evaluated from another folder
    # holding its own train.csv and dev.csv, scored those files without a word.
    from sst2.run.config import TrainConfig
    from sst2.serve.evaluation import evaluate
    from sst2.serve.trained import restore
    from tests.helpers import NEGATIVE, POSITIVE
    from tests.helpers import train as run

    def write_files(folder, words):
        folder.mkdir()
        for name in ("train.csv", "dev.csv"):
            rows = [f"{w} film,{i % 2}" for i, w in enumerate(words * 4)]
            (folder / name).write_text("text,label\n" + "\n".join(rows) + "\n")

    write_files(tmp_path / "a", [p for pair in zip(NEGATIVE, POSITIVE) for p in pair])
    write_files(tmp_path / "b", [p for pair in zip(POSITIVE, NEGATIVE) for p in pair])
    monkeypatch.chdir(tmp_path / "a")
    model_dir = str(tmp_path / "run")
    run(TrainConfig.from_options(
        model_dir=model_dir, preset=tiny_preset, train_file="train.csv", eval_file="dev.csv",
        epochs=1, batch_size=8, sequence_length=16, pooling="mean", head_hidden=0,
        progress=False, export=False))
    with open(os.path.join(model_dir, "config.json")) as f:
        assert '"train_file": "' + str(tmp_path / "a" / "train.csv") + '"' in f.read()
    monkeypatch.chdir(tmp_path / "b")
    trained = restore(model_dir)
    scored = evaluate(trained)  # the run's own files, from anywhere
    assert scored["examples"] == 64
    (tmp_path / "a" / "train.csv").write_text(
        (tmp_path / "a" / "train.csv").read_text() + "another good film,1\n")
    with pytest.raises(UserError, match="not what .* was trained on"):
        evaluate(trained)


@pytest.mark.slow
def test_a_failed_first_run_leaves_nothing_but_its_feature_cache(tiny_preset, tmp_path):
    # Issue 25, cases 24 and 25: .lock and checkpoints/ were left, and the message said
    # "Checkpoints already saved are intact" where no run had started.
    from tests.helpers import run_module

    (tmp_path / "train.csv").write_text("text,label\ngood,1\nbad,1\n")  # one class only
    model_dir = tmp_path / "run"
    result = run_module("sst2.train", f"--preset={tiny_preset}", f"--model_dir={model_dir}",
                        f"--train_file={tmp_path / 'train.csv'}", "--sequence_length=16")
    assert result.returncode == 2 and "one class only" in result.stderr
    assert "intact" not in result.stderr
    assert not model_dir.exists()
