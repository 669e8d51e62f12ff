"""Issue 16's cases that need the command lines: runs that move, bad bytes, other epochs,
a busy run folder, paths that cannot work, quiet output."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from sst2.run.config import TrainConfig
from tests.helpers import REPO, run_module

pytestmark = pytest.mark.slow


def _train_args(preset, data_dir, model_dir, *extra):
    return ["--epochs=1", "--batch_size=16", "--sequence_length=16", "--pooling=mean",
            "--head_hidden=0", f"--preset={preset}", f"--data_dir={data_dir}",
            f"--model_dir={model_dir}", "--noprogress", *extra]


@pytest.fixture(scope="module")
def relative_run(tiny_preset, tiny_data_dir, tmp_path_factory):
    """A run trained from a working directory with relative --preset and --model_dir."""
    home = tmp_path_factory.mktemp("home")
    shutil.copytree(tiny_preset, home / "my-preset")
    result = run_module("sst2.train", *_train_args("my-preset", tiny_data_dir, "runs/a"),
                        cwd=str(home))
    assert result.returncode == 0, result.stderr[-3000:]
    return home


def test_a_moved_run_evaluates_and_exports_in_its_new_folder(relative_run, tmp_path):
    moved = tmp_path / "moved"
    shutil.move(str(relative_run / "runs" / "a"), moved)
    evaluated = run_module("sst2.evaluate", f"--model_dir={moved}", cwd="/")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    exported = run_module("sst2.export", f"--model_dir={moved}", cwd="/")
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert (moved / "SST-2.tsv").exists() and len(os.listdir(moved / "export")) == 2
    assert not (relative_run / "runs" / "a").exists()  # nothing recreated where it was
    # The relative preset was resolved at training time.
    with open(moved / "config.json") as f:
        assert json.load(f)["model"]["preset"] == str(relative_run / "my-preset")


@pytest.fixture(scope="module")
def exported_run(tiny_preset, tiny_data_dir, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("exported")
    result = run_module("sst2.train", *_train_args(tiny_preset, tiny_data_dir, model_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir


def test_predict_answers_every_line_whatever_its_bytes(exported_run):
    env = dict(os.environ, PYTHONPATH=REPO)
    piped = subprocess.run([sys.executable, "-m", "sst2.predict", f"--export_dir={exported_run}",
                            "--json"], input=b"a truly great film\nthe caf\xe9 scene\nboring\n",
                           capture_output=True, env=env, timeout=300)
    assert piped.returncode == 0, piped.stderr[-3000:]
    records = [json.loads(line) for line in piped.stdout.decode().splitlines()]
    assert [r["text"] for r in records] == ["a truly great film", "the caf\ufffd scene", "boring"]
    argv = subprocess.run([sys.executable, "-m", "sst2.predict", f"--export_dir={exported_run}",
                           b"caf\xe9", "fun"], capture_output=True, env=env, timeout=300)
    assert argv.returncode == 0, argv.stderr[-3000:]
    assert len(argv.stdout.splitlines()) == 2 and b"Traceback" not in argv.stderr


def test_noise_a_user_cannot_act_on_is_not_printed(exported_run, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # a user's
    result = subprocess.run([sys.executable, "-m", "sst2.export", f"--model_dir={exported_run}",
                             "--checkpoint=latest", f"--export_root={tmp_path}"],
                            capture_output=True, text=True, timeout=300,
                            env=dict(env, PYTHONPATH=REPO))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "could not be found" not in result.stderr
    assert "cuInit" not in result.stderr and "absl::InitializeLog" not in result.stderr


def test_a_busy_run_folder_stops_a_second_run_at_once(exported_run, tiny_preset, tiny_data_dir):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); "
         "from sst2.run.runlock import RunLock; l = RunLock(sys.argv[2]).__enter__(); "
         "print('held', flush=True); time.sleep(120)", REPO, str(exported_run)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = run_module("sst2.train", *_train_args(tiny_preset, tiny_data_dir, exported_run,
                                                       "--seed=1", "--restart"))
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"is in use by another run (pid {holder.pid} on " in result.stderr
    assert (exported_run / "config.json").exists()  # --restart did not touch the first run


def test_a_model_dir_that_is_a_file_is_one_error_line(tiny_preset, tiny_data_dir, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    result = run_module("sst2.train", *_train_args(tiny_preset, tiny_data_dir,
                                                   tmp_path / "file" / "run"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: Not a directory" in result.stderr or "error: File exists" in result.stderr


def _config(model_dir, preset, data_dir, **options):
    return TrainConfig.from_options(
        model_dir=str(model_dir), preset=preset, data_dir=data_dir, batch_size=16,
        sequence_length=16, pooling="mean", head_hidden=0, progress=False, export=False,
        **options)


def test_a_path_too_long_for_checkpoints_fails_before_any_work(tiny_preset, tiny_data_dir,
                                                               tmp_path):
    deep = tmp_path
    while len(str(deep)) < 4000:  # PATH_MAX is 4096; checkpoint files add ~70 characters
        deep = deep / ("d" * 200)
    result = run_module("sst2.train", *_train_args(tiny_preset, tiny_data_dir, deep))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: File name too long" in result.stderr and "use a shorter path" in result.stderr
    assert "Tokenizing" not in result.stdout  # stopped before the work


def test_a_damaged_saved_model_is_one_error_line(exported_run, tmp_path):
    from sst2.serve.versions import latest_export

    damaged = tmp_path / "1"
    shutil.copytree(latest_export(str(exported_run / "export")), damaged)
    with open(damaged / "saved_model.pb", "r+b") as f:
        f.truncate(100)
    result = run_module("sst2.predict", f"--export_dir={damaged}", "great fun")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "holds no loadable SavedModel" in result.stderr
