"""Issue 35 (hostile round 3): the paths users really take. Relative run folders, messy
numbers in label columns, tiny validation sets. Each test reproduces its case on the code
before the fix."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from sst2.run.errors import UserError


def _tiny_head_and_optimizer():
    from sst2.model.head import ClassifierHead

    head = ClassifierHead(hidden_units=0)
    head(tf.zeros([1, 1, 8]))
    optimizer = keras.optimizers.Adam()
    optimizer.build(head.trainable_variables)
    return head, optimizer


def test_a_relative_run_folder_keeps_its_best_checkpoint(tmp_path, monkeypatch):
    """Case 1: the default `--model_dir` is relative; its checkpoint indexes were set aside
    as 'outside the folder' on every start, so the best checkpoint was never found."""
    from sst2.fit.checkpoint import RunCheckpoint
    from sst2.fit.loop import Position

    monkeypatch.chdir(tmp_path)
    head, optimizer = _tiny_head_and_optimizer()
    first = RunCheckpoint("runs/rel", head, optimizer, keep=3)
    first.save_if_best(Position(epoch=1, step=10), 0.9)   # the best: epoch 1
    first.save(Position(epoch=1, step=10))
    first.save_if_best(Position(epoch=2, step=20), 0.5)   # not better
    first.save(Position(epoch=2, step=20))

    messages = []
    again = RunCheckpoint("runs/rel", head, optimizer, keep=3, log=messages.append)
    assert messages == []
    assert sorted(os.listdir("runs/rel/best")) == [
        "best-10.data-00000-of-00001", "best-10.index", "checkpoint"]
    assert os.path.basename(again.restore_best()) == "best-10"
    assert again.restore_latest()[0] == Position(epoch=2, batch=0, step=20)


def test_a_best_checkpoint_whose_index_was_set_aside_is_still_found(tmp_path):
    """Runs damaged by case 1 before the fix: `best/checkpoint` renamed away."""
    from sst2.fit.checkpoint import RunCheckpoint
    from sst2.fit.loop import Position

    head, optimizer = _tiny_head_and_optimizer()
    run = str(tmp_path / "run")
    checkpoint = RunCheckpoint(run, head, optimizer, keep=3)
    checkpoint.save_if_best(Position(epoch=1, step=10), 0.9)
    checkpoint.save(Position(epoch=2, step=20))
    os.replace(os.path.join(run, "best", "checkpoint"),
               os.path.join(run, "best", "checkpoint.unreadable"))
    again = RunCheckpoint(run, head, optimizer, keep=3)
    assert os.path.basename(again.restore_best()) == "best-10"
