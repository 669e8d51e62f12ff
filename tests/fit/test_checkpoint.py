"""Checkpoints found where a user left them: a relative run folder, a best checkpoint whose
index was set aside."""

import glob
import os

import keras
import pytest
import tensorflow as tf

from sst2.fit.checkpoint import RunCheckpoint
from sst2.fit.loop import Position
from sst2.model.head import ClassifierHead
from sst2.run.errors import UserError
from sst2.run.metrics import MetricSums
from tests.helpers import tiny_head_and_optimizer


def test_a_relative_run_folder_keeps_its_best_checkpoint(said, tmp_path, monkeypatch):
    """Case 1: the default `--model_dir` is relative; its checkpoint indexes were set aside
    as 'outside the folder' on every start, so the best checkpoint was never found."""
    from sst2.fit.checkpoint import RunCheckpoint
    from sst2.fit.loop import Position

    monkeypatch.chdir(tmp_path)
    head, optimizer = tiny_head_and_optimizer()
    first = RunCheckpoint("runs/rel", head, optimizer, keep=3)
    first.save_if_best(Position(epoch=1, step=10), 0.9)   # the best: epoch 1
    first.save(Position(epoch=1, step=10))
    first.save_if_best(Position(epoch=2, step=20), 0.5)   # not better
    first.save(Position(epoch=2, step=20))

    said.clear()
    again = RunCheckpoint("runs/rel", head, optimizer, keep=3)
    assert said == []
    assert sorted(os.listdir("runs/rel/best")) == [
        "best-10.data-00000-of-00001", "best-10.index", "checkpoint"]
    assert os.path.basename(again.restore_best()) == "best-10"
    assert again.restore_latest()[0] == Position(epoch=2, batch=0, step=20)


def test_a_best_checkpoint_whose_index_was_set_aside_is_still_found(tmp_path):
    """Runs damaged by case 1 before the fix: `best/checkpoint` renamed away."""
    from sst2.fit.checkpoint import RunCheckpoint
    from sst2.fit.loop import Position

    head, optimizer = tiny_head_and_optimizer()
    run = str(tmp_path / "run")
    checkpoint = RunCheckpoint(run, head, optimizer, keep=3)
    checkpoint.save_if_best(Position(epoch=1, step=10), 0.9)
    checkpoint.save(Position(epoch=2, step=20))
    os.replace(os.path.join(run, "best", "checkpoint"),
               os.path.join(run, "best", "checkpoint.unreadable"))
    again = RunCheckpoint(run, head, optimizer, keep=3)
    assert os.path.basename(again.restore_best()) == "best-10"


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


def _checkpoint(model_dir):
    head = ClassifierHead(hidden_units=0)
    head(tf.zeros([1, 1, 4]))
    optimizer = keras.optimizers.Adam()
    optimizer.build(head.trainable_variables)
    return RunCheckpoint(str(model_dir), head, optimizer, keep=3)


def _saved_run(tmp_path):
    checkpoint = _checkpoint(tmp_path)
    for step in (1, 2, 3):
        checkpoint.save(Position(0, step, step), MetricSums(1.0, 1.0, float(step)))
    checkpoint.save_if_best(Position(0, 3, 3), 0.5)
    return checkpoint


@pytest.mark.parametrize("metric, values, best", [
    ("accuracy", [0.5, 0.7, 0.6], 2), ("loss", [0.9, 0.4, 0.6], 2), ("mcc", [-0.2, -0.1, -0.3], 2),
    ("macro_f1", [0.3, 0.3, 0.2], 1)])
def test_best_metric_picks_the_best_checkpoint(tmp_path, metric, values, best):
    from sst2.fit.callbacks import CheckpointCallback

    callback = CheckpointCallback(checkpoint=_checkpoint(tmp_path), every_steps=0,
                                  best_metric=metric)
    records = [{"val_accuracy": 0.0, f"val_{metric}": value} for value in values]
    for epoch, record in enumerate(records, start=1):
        evaluation = {"accuracy": 0.0, metric: record[f"val_{metric}"]}
        callback.on_epoch_end(Position(epoch, 0, epoch), record, evaluation)
    assert [epoch for epoch, r in enumerate(records, start=1) if r.get("best")][-1] == best
    assert os.path.basename(callback.checkpoint.best_manager.latest_checkpoint) == f"best-{best}"


def test_no_readable_checkpoint_stops_instead_of_starting_over(tmp_path):
    _saved_run(tmp_path)
    for path in glob.glob(str(tmp_path / "checkpoints" / "ckpt-*.data-*")):
        with open(path, "r+b") as f:
            f.truncate(3)
    with pytest.raises(UserError, match="None of the 3 checkpoints .* is readable. Use "
                                        "--restart"):
        _checkpoint(tmp_path).restore_latest()


@pytest.mark.parametrize("garbage", [b"not a checkpoint index {{{", b"\xff\xfe\x00garbage"])
def test_an_unreadable_index_file_falls_back_to_the_checkpoint_files(said, tmp_path, garbage):
    _saved_run(tmp_path)
    said.clear()
    (tmp_path / "checkpoints" / "checkpoint").write_bytes(garbage)
    position, sums = _checkpoint(tmp_path).restore_latest()
    assert position == Position(0, 3, 3) and sums.count == 3.0
    assert any("unreadable" in s for s in said)


def test_an_unreadable_best_checkpoint_falls_back_to_the_latest(said, tmp_path):
    _saved_run(tmp_path)
    said.clear()
    for path in glob.glob(str(tmp_path / "best" / "best-*.data-*")):
        with open(path, "r+b") as f:
            f.truncate(3)
    path = _checkpoint(tmp_path).restore_best()
    assert path.endswith("ckpt-3") and "using the latest readable one" in said[0]
