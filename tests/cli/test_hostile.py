"""Issue 25's hostile cases: nothing written or deleted outside the run folder, nothing
silently wrong. Each test reproduces its case on the code before the fix."""

import os

import numpy as np
import pytest

from sst2.run.errors import UserError
from sst2.run.files import save_json, write_atomically
from sst2.run.runlock import RunLock
from tests.helpers import tiny_head_and_optimizer


@pytest.fixture
def outside(tmp_path):
    """A file outside the run folder that nothing may touch."""
    folder = tmp_path / "outside"
    folder.mkdir()
    target = folder / "precious.txt"
    target.write_text("keep me")
    return target


def test_a_link_at_a_temporary_name_is_never_written_through(tmp_path, outside):
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(outside, run / "metrics.json.tmp")
    save_json(str(run / "metrics.json"), {"epochs": []})
    os.symlink(outside, run / "SST-2.tsv.tmp")
    write_atomically(str(run / "SST-2.tsv"), lambda f: f.write("index\tprediction\n"))
    assert outside.read_text() == "keep me"
    assert (run / "SST-2.tsv").read_text() == "index\tprediction\n"
    assert not os.path.lexists(run / "SST-2.tsv.tmp")


def test_a_lock_file_that_is_a_link_is_refused(tmp_path, outside):
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(outside, run / ".lock")
    with pytest.raises(UserError, match="symbolic link"):
        with RunLock(str(run)):
            pass
    assert outside.read_text() == "keep me"


def test_a_checkpoint_index_listing_files_outside_is_set_aside(said, tmp_path, outside):
    from sst2.fit.checkpoint import RunCheckpoint
    from sst2.fit.loop import Position

    for suffix in (".index", ".data-00000-of-00001"):
        (outside.parent / f"ckpt-1{suffix}").write_text("not mine")
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "checkpoint").write_text(
        f'model_checkpoint_path: "{outside.parent}/ckpt-1"\n'
        f'all_model_checkpoint_paths: "{outside.parent}/ckpt-1"\n')
    head, optimizer = tiny_head_and_optimizer()
    said.clear()
    messages = said
    checkpoint = RunCheckpoint(str(tmp_path / "run"), head, optimizer, keep=1)
    for step in (1, 2, 3):
        checkpoint.save(Position(epoch=0, batch=step, step=step))
    assert sorted(os.listdir(outside.parent)) == [
        "ckpt-1.data-00000-of-00001", "ckpt-1.index", "precious.txt"]
    assert any("outside" in m for m in messages), messages


def test_an_export_never_writes_through_a_link_at_its_temporary_name(trained_tiny_run,
                                                                     tmp_path, outside):
    from sst2.serve.graph.serving import export_saved_model
    from sst2.serve.trained import restore

    trained = restore(trained_tiny_run)
    export_root = tmp_path / "export"
    export_root.mkdir()
    os.symlink(outside.parent, export_root / ".7.partial")
    path = export_saved_model(trained.preprocessor, trained.backbone, trained.head, trained.spec,
                              str(export_root), version=7)
    assert os.listdir(outside.parent) == ["precious.txt"]
    assert os.path.exists(os.path.join(path, "saved_model.pb"))
    assert not os.path.lexists(export_root / ".7.partial")
    np.testing.assert_equal(outside.read_text(), "keep me")


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


@pytest.mark.parametrize("flag,message", [
    ("--epoch=1", "error: Unknown command line flag 'epoch'. Did you mean: epochs ?"),
    ("--learning_rate=abc", "error: flag --learning_rate=abc: could not convert"),
])
def test_a_flag_that_does_not_parse_is_one_error_line(flag, message):
    from tests.helpers import run_module

    # Issue 25, case 18: absl's "FATAL Flags parsing error" and exit status 1.
    result = run_module("sst2.train", flag, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_collective_timeout_that_is_not_a_number_is_a_user_error(monkeypatch):
    from sst2.fit import distribute

    # Issue 25, case 19: a ValueError traceback.
    monkeypatch.setenv("SST2_COLLECTIVE_TIMEOUT", "abc")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}, '
                                    '"task": {"type": "worker", "index": 0}}')
    with pytest.raises(UserError, match="SST2_COLLECTIVE_TIMEOUT='abc' is not a number"):
        distribute.make_strategy("multi_worker", None)


def test_a_failed_checkpoint_save_leaves_no_partial_files(tmp_path):
    # Issue 25, case 14: a full disk mid-save left best/*_temp behind.
    import errno

    from sst2.fit.checkpoint import RunCheckpoint
    from sst2.fit.loop import Position

    head, optimizer = tiny_head_and_optimizer()
    checkpoint = RunCheckpoint(str(tmp_path), head, optimizer)
    real_save = checkpoint.best_manager.save

    def full_disk(checkpoint_number):
        os.makedirs(tmp_path / "best" / f"best-{checkpoint_number}_temp")
        raise OSError(errno.ENOSPC, "No space left on device")

    checkpoint.best_manager.save = full_disk
    with pytest.raises(OSError):
        checkpoint.save_if_best(Position(epoch=0, batch=1, step=1), 0.5)
    assert os.listdir(tmp_path / "best") == []
    checkpoint.best_manager.save = real_save
    os.makedirs(tmp_path / "checkpoints" / "ckpt-9_temp")  # as a SIGKILL mid-save leaves it
    RunCheckpoint(str(tmp_path), head, optimizer)
    assert os.listdir(tmp_path / "checkpoints") == []


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


def test_evaluate_never_prepares_data_where_only_config_json_points(trained_tiny_run,
                                                                    tmp_path):
    # Issue 25, case 5: a crafted config.json data_dir made evaluate build a dataset there.
    import json
    import shutil

    from sst2.serve.evaluation import evaluate
    from sst2.serve.trained import restore

    run = tmp_path / "run"
    shutil.copytree(trained_tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    config["data"]["data_dir"] = str(tmp_path / "elsewhere")
    (run / "config.json").write_text(json.dumps(config))
    trained = restore(str(run))
    with pytest.raises(UserError, match="is not prepared in .*elsewhere.* Pass --data_dir"):
        evaluate(trained)
    assert not (tmp_path / "elsewhere").exists()
