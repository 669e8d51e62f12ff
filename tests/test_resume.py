"""Checkpoints and exact resume (weights, optimizer, weight average), on the tiny model through
the real CLI."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import REPO, run_module

# precision: CI runs these again with SST2_AUTO_PRECISION=bfloat16.
pytestmark = [pytest.mark.slow, pytest.mark.precision]


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


def test_sigkill_mid_epoch_then_resume_is_exact(tiny_preset, tiny_data_dir, uninterrupted,
                                                tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    # 64 steps an epoch: kill somewhere in the middle of the second epoch. The kill races
    # the run (a starved poller could see it finish first): a run that finished is tried
    # again in a fresh folder, and three finished runs are a failure.
    for attempt in range(3):
        model_dir = str(tmp_path / f"killed-{attempt}")
        process = subprocess.Popen(
            [sys.executable, "-m", "sst2.train", *_args(tiny_preset, tiny_data_dir, model_dir)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while _latest_step(model_dir) <= 64 and process.poll() is None and time.time() < deadline:
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
        process.wait()
        if process.returncode == -signal.SIGKILL and _latest_step(model_dir) < 192:
            break
    else:
        pytest.fail("training finished three times before it could be killed")
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
    # 200 epochs: minutes of training, so the signal always arrives mid-run.
    cmd = [sys.executable, "-m", "sst2.train",
           *_args(tiny_preset, tiny_data_dir, model_dir, "--checkpoint_every_steps=10",
                  "--epochs=200")]
    process = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=REPO),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    # The step-10 checkpoint is saved inside the loop, where the signal handlers are installed.
    while _latest_step(model_dir) < 10 and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert _latest_step(model_dir) >= 10, process.communicate()[1][-2000:]
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
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
    import shutil

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
    import shutil

    model_dir = str(tmp_path / "restart")
    shutil.copytree(uninterrupted, model_dir)
    result = run_module("sst2.train", *_args(tiny_preset, tiny_data_dir, model_dir, "--restart"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming" not in result.stdout
    assert _epochs(model_dir) == _epochs(uninterrupted)
