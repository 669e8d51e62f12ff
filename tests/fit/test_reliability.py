"""Nothing lost, nothing stale, no traceback: each case of issue 16, as small as it can be.

Unit-level cases run in the fast tier; those that need a command line are `slow`.
"""

import glob
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from sst2 import cli
from sst2.fit import cached_features, inputs
from sst2.fit.checkpoint import RunCheckpoint
from sst2.fit.loop import Position
from sst2.model import features
from sst2.model.encoder import FeatureEncoder
from sst2.model.head import ClassifierHead
from sst2.run.config import TrainConfig
from sst2.run.errors import UserError
from sst2.run.metrics import MetricSums
from sst2.run.runlock import RunLock
from sst2.text import glue
from sst2.text.datasets import open_dataset
from tests.helpers import REPO, TINY_SEQUENCE_LENGTH, write_tiny_glue

# 1. The cache key covers the data's content.

def _tokens(n=6, offset=0):
    rng = np.random.default_rng(offset)
    return {"token_ids": rng.integers(5, 20, (n, 8)).astype(np.int32),
            "padding_mask": np.ones((n, 8), np.int32), "length": np.full(n, 8, np.int32),
            "label": (np.arange(n) % 2).astype(np.int32), "idx": np.arange(n, dtype=np.int32)}


def test_a_changed_dataset_gets_another_cache_entry(tiny_preset, tmp_path):
    same, changed = _tokens(), _tokens()
    changed["label"] = 1 - changed["label"]  # same sentences, other labels
    assert cached_features.content_hash(same) == cached_features.content_hash(_tokens())
    assert cached_features.content_hash(changed) != cached_features.content_hash(same)
    config = TrainConfig.from_options(preset=tiny_preset, pooling="mean",
                                      cache_dir=str(tmp_path), progress=False)
    calls = []
    encoder = FeatureEncoder((lambda ids, mask: calls.append(1) or tf.ones([len(ids), 1, 4]),),
                             static_shapes=False, token_level=False)
    encoding = cached_features.Encoding(encoder, "float32", backbone_layers=2)
    first = cached_features.cached_features(config, "train", same, encoding)
    second = cached_features.cached_features(config, "train", changed, encoding)
    assert len(os.listdir(tmp_path)) == 2 and calls  # encoded again, not served stale
    assert (first.labels != second.labels).all()


# 2. A run lock.

def test_a_second_holder_of_a_run_folder_is_refused_naming_the_first(tmp_path):
    with RunLock(str(tmp_path)):
        with pytest.raises(UserError, match=rf"in use by another run \(pid {os.getpid()} on "):
            with RunLock(str(tmp_path)):
                pass
    with RunLock(str(tmp_path)):  # released: free again
        pass


@pytest.mark.slow
def test_a_lock_file_left_by_a_killed_run_never_blocks(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); "
         "from sst2.run.runlock import RunLock; l = RunLock(sys.argv[2]).__enter__(); "
         "print('held', flush=True); time.sleep(60)", REPO, str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"pid {holder.pid}"):
            RunLock(str(tmp_path)).__enter__()
    finally:  # a failed assertion must not leave the holder running
        holder.kill()
        holder.wait()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == holder.pid  # file stays
    with RunLock(str(tmp_path)):
        pass


# 5. A corrupt cache entry is detected, discarded and rebuilt.

def test_a_truncated_cache_file_is_reported_discarded_and_rebuilt(said, tmp_path):
    tokens = _tokens(20)
    calls = []

    def fn(ids, mask):
        calls.append(1)
        return tf.cast(ids[:, :1, None], tf.float32)

    encoder = FeatureEncoder((fn,), static_shapes=False, token_level=False)
    fresh = features.encode(encoder, tokens, str(tmp_path), {"k": 1}, show_progress=False)
    fresh_features = np.array(fresh.features)  # a copy: the cache is memory-mapped
    (folder,) = glob.glob(str(tmp_path / "*"))
    with open(os.path.join(folder, "features.npy"), "r+b") as f:
        f.truncate(100)
    said.clear()
    calls.clear()
    rebuilt = features.encode(encoder, tokens, str(tmp_path), {"k": 1}, show_progress=False)
    assert calls and "is damaged" in said[0] and "re-encoding" in said[0]
    np.testing.assert_array_equal(rebuilt.features, fresh_features)


# 6. Flags and data that cannot work are refused before the work.

def test_unlabelled_splits_are_refused_for_training_and_validation(tiny_preset, tiny_data_dir):
    from sst2.model import presets

    preprocessor = presets.load_preprocessor(tiny_preset, TINY_SEQUENCE_LENGTH)
    config = TrainConfig.from_options(data_dir=tiny_data_dir)
    with pytest.raises(UserError, match="--eval_split='test' has 32 unlabelled examples"):
        inputs.tokenize_split(open_dataset(config.data), "test", preprocessor,
                              labelled="--eval_split")
    test_split = inputs.tokenize_split(open_dataset(config.data), "test", preprocessor)
    assert len(test_split["label"]) == 32


def test_a_sequence_length_beyond_the_presets_positions_is_refused(tiny_preset):
    from sst2.fit.frozen_model import check_sequence_length
    from sst2.model import presets

    backbone = presets.load_backbone(tiny_preset)
    check_sequence_length(64, backbone)
    with pytest.raises(UserError, match="--sequence_length=65 is out of range: this preset's "
                                        "position embeddings cover at most 64 tokens"):
        check_sequence_length(65, backbone)


def test_glue_files_without_their_label_column_are_refused(tmp_path):
    files = write_tiny_glue(str(tmp_path / "SST-2"), sizes=(8, 4, 2))
    rows = open(os.path.join(files, "train.tsv")).read().splitlines()
    with open(os.path.join(files, "train.tsv"), "w") as f:
        f.write("\n".join(r.split("\t")[0] for r in rows) + "\n")
    with pytest.raises(UserError, match="train.tsv: line 1 must name the columns sentence and "
                                        "label .*without label"):
        glue.prepare_glue_sst2(files, str(tmp_path / "tfds"))


# 8. Checkpoints: fallbacks that say what they do.

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


# 9. OS errors and interrupts: one line, exit 2, nothing half-written.

def test_os_errors_read_as_one_line_with_advice():
    import errno

    full = OSError(errno.ENOSPC, "No space left on device", "/data/run/ckpt-5")
    assert cli.describe_os_error(full) == (
        "No space left on device: /data/run/ckpt-5 (free some space there, or point the run "
        "elsewhere).")
    assert "use a shorter path" in cli.describe_os_error(
        OSError(errno.ENAMETOOLONG, "File name too long", "/x" * 3000))


@pytest.mark.slow
def test_an_interrupt_exits_2_without_a_traceback(tmp_path):
    program = ("import sys; sys.path.insert(0, sys.argv[1]); from sst2 import cli; "
               "from sst2.run.command_config import PredictConfig\n"
               "def main(config, argv): raise KeyboardInterrupt\n"
               "cli.run(main, PredictConfig)")
    result = subprocess.run([sys.executable, "-c", program, REPO, "--export_dir=x"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: Interrupted." in result.stderr


@pytest.mark.slow
def test_a_failed_export_leaves_nothing_half_written(trained_tiny_run, tmp_path, monkeypatch):
    from sst2.serve.trained import restore

    trained = restore(trained_tiny_run)

    def full_disk(archive, folder, *args, **kwargs):  # the disk fills up half-way through
        os.makedirs(os.path.join(folder, "variables"))
        raise OSError(28, "No space left on device", folder)

    # keras.export.ExportArchive() builds the backend's own subclass: patch that one.
    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", full_disk)
    with pytest.raises(OSError):
        trained.export(str(tmp_path / "export"))
    assert os.listdir(tmp_path / "export") == []


def test_a_damaged_config_or_metrics_file_is_one_message(tmp_path):
    from sst2.run.config_file import load_config

    (tmp_path / "config.json").write_text('{"format": 2, "model": {')
    with pytest.raises(UserError, match="config.json is not valid JSON .*--restart"):
        load_config(str(tmp_path))
