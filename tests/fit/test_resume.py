"""Checkpoints and exact resume (weights, optimizer, weight average), on the tiny model through
the real CLI."""

import glob
import json
import os
import shutil
import signal

import numpy as np
import pytest
import tensorflow as tf

from sst2.run.config import TrainConfig
from sst2.run.errors import UserError
from tests.helpers import read_output, run_module, start_paused
from tests.helpers import train as run

# Exact resume is checked again in bfloat16; the other checks do not depend on it.
pytestmark = pytest.mark.slow


def _args(preset, data_dir, model_dir, *extra):
    return ["--epochs=3", "--batch_size=4", "--dropout=0.2", "--head_hidden=8",
            "--learning_rate=0.01", "--lr_schedule=linear", "--checkpoint_every_steps=1",
            "--keep_checkpoints=2", "--ema_decay=0.9", "--rdrop_alpha=1",
            f"--preset={preset}", f"--data_dir={data_dir}", f"--model_dir={model_dir}",
            "--sequence_length=16", "--noprogress", "--noexport", *extra]


def _head_weights(model_dir):
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith(("head/", "weight_average/")) and "OPTIMIZER_SLOT" not in name}


def _epochs(model_dir):
    with open(os.path.join(model_dir, "metrics.json")) as f:
        return [{k: v for k, v in r.items()
                if k not in ("seconds", "eval_seconds")} for r in json.load(f)["epochs"]]


def _latest_step(model_dir):
    state = os.path.join(model_dir, "checkpoints", "checkpoint")
    if not os.path.exists(state):
        return -1
    with open(state) as f:
        first = f.readline()
    return int(first.rsplit("-", 1)[1].strip().strip('"'))


@pytest.fixture(scope="module")
def uninterrupted(tiny_preset, tiny_data_dir, tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("uninterrupted"))
    result = run_module("sst2.train", *_args(tiny_preset, tiny_data_dir, model_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir


@pytest.mark.precision
def test_sigkill_mid_epoch_then_resume_is_exact(tiny_preset, tiny_data_dir, uninterrupted,
                                                tmp_path):
    # 64 steps an epoch, a checkpoint every step: killed in the middle of the second epoch,
    # right after its 100th save (the process pauses there and says so: no race).
    model_dir = str(tmp_path / "killed")
    process, paused = start_paused("sst2.fit.checkpoint:RunCheckpoint.save", 100,
                                   "sst2.train", *_args(tiny_preset, tiny_data_dir, model_dir),
                                   output_dir=str(tmp_path))
    assert paused, read_output(str(tmp_path))[1][-3000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_at = _latest_step(model_dir)
    assert 64 < killed_at < 192

    result = run_module("sst2.train", *_args(tiny_preset, tiny_data_dir, model_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming from step" in result.stdout
    # The runs keep their compiled steps in one compile cache; whatever the resumed run
    # loaded from it, its results are the uninterrupted run's.
    from sst2.fit.compile_cache import default_folder

    assert os.listdir(default_folder())
    assert _epochs(model_dir) == _epochs(uninterrupted)
    expected, actual = _head_weights(uninterrupted), _head_weights(model_dir)
    assert expected.keys() == actual.keys() and expected
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


def test_sigterm_saves_and_exits_nonzero(tiny_preset, tiny_data_dir, tmp_path):
    model_dir = str(tmp_path / "terminated")
    # Paused after the step-10 checkpoint, saved inside the loop, where the signal
    # handlers are installed.
    process, paused = start_paused(
        "sst2.fit.checkpoint:RunCheckpoint.save", 1, "sst2.train",
        *_args(tiny_preset, tiny_data_dir, model_dir, "--checkpoint_every_steps=10",
               "--epochs=200"), output_dir=str(tmp_path))
    assert paused and _latest_step(model_dir) == 10, read_output(str(tmp_path))[1][-2000:]
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    err = read_output(str(tmp_path))[1]
    assert process.returncode == 2, err[-2000:]
    assert "Stopped by SIGTERM; checkpoint saved" in err and "Traceback" not in err
    assert _latest_step(model_dir) > 10  # saved at the step the signal interrupted


def test_resume_with_another_configuration_is_refused(tiny_preset, tiny_data_dir, uninterrupted):
    result = run_module("sst2.train", *_args(tiny_preset, tiny_data_dir, uninterrupted,
                                             "--pooling=mean", "--head_hidden=0"))
    assert result.returncode == 2
    assert "another configuration" in result.stderr
    assert "pooling: checkpoint has 'attention', this run has 'mean'" in result.stderr
    assert "head_hidden" in result.stderr and "Traceback" not in result.stderr


def test_corrupt_latest_checkpoint_falls_back_to_previous(tiny_preset, tiny_data_dir, uninterrupted,
                                                         tmp_path):

    model_dir = str(tmp_path / "corrupt")
    shutil.copytree(uninterrupted, model_dir)
    state = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
    latest, previous = state.model_checkpoint_path, state.all_model_checkpoint_paths[-2]
    for path in glob.glob(latest + ".data-*"):
        with open(path, "r+b") as f:
            f.truncate(10)
    result = run_module("sst2.train", *_args(tiny_preset, tiny_data_dir, model_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Checkpoint {latest} is unreadable" in result.stdout
    assert f"Resuming from step {previous.rsplit('-', 1)[1]}" in result.stdout


def test_restart_starts_fresh(tiny_preset, tiny_data_dir, uninterrupted, tmp_path):

    model_dir = str(tmp_path / "restart")
    shutil.copytree(uninterrupted, model_dir)
    # The run before had exports: none may be served as this run's (issue 47, case 18).
    for version in ("export/1700000000/saved_model.pb", "export_openvino/1700000000/model.xml"):
        os.makedirs(os.path.dirname(os.path.join(model_dir, version)))
        open(os.path.join(model_dir, version), "w").close()
    result = run_module("sst2.train", *_args(tiny_preset, tiny_data_dir, model_dir, "--restart"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming" not in result.stdout
    assert not os.path.exists(os.path.join(model_dir, "export_openvino"))
    assert not os.path.exists(os.path.join(model_dir, "export"))  # --noexport
    assert _epochs(model_dir) == _epochs(uninterrupted)


def _config(model_dir, preset, data_dir, **options):
    return TrainConfig.from_options(
        model_dir=str(model_dir), preset=preset, data_dir=data_dir, batch_size=16,
        sequence_length=16, pooling="mean", head_hidden=0, progress=False, export=False,
        **options)


def test_other_epochs_continue_only_where_that_is_exact(said, tiny_preset, tiny_data_dir, tmp_path):
    linear = tmp_path / "linear"
    run(_config(linear, tiny_preset, tiny_data_dir, epochs=2))
    saved = (linear / "config.json").read_text()
    with pytest.raises(UserError, match="decays to 0 at the last step of those epochs"):
        run(_config(linear, tiny_preset, tiny_data_dir, epochs=3))
    with pytest.raises(UserError, match="already trained 2 epochs, more than --epochs=1"):
        run(_config(linear, tiny_preset, tiny_data_dir, epochs=1))
    assert (linear / "config.json").read_text() == saved  # left as it was

    constant = tmp_path / "constant"
    two = run(_config(constant, tiny_preset, tiny_data_dir, epochs=2,
                      lr_schedule="constant"))["epochs"]
    three = run(_config(constant, tiny_preset, tiny_data_dir, epochs=3,
                        lr_schedule="constant"))["epochs"]
    assert "Extending the run from 2 to 3 epochs" in " ".join(said)
    uninterrupted = run(_config(tmp_path / "three", tiny_preset, tiny_data_dir, epochs=3,
                                lr_schedule="constant"))["epochs"]

    def strip(records):
        return [{k: v for k, v in r.items()
                if k not in ("seconds", "eval_seconds")} for r in records]

    assert strip(three[:2]) == strip(two)
    assert strip(three) == strip(uninterrupted)  # the same run as if asked for 3 at once
