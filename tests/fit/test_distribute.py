"""tf.distribute: MirroredStrategy over 2 logical CPUs equals one device."""

import contextlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sst2.run.errors import UserError
from tests.helpers import REPO

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from sst2.run.config import TrainConfig
from tests.helpers import train as run
strategy, batch, trainable_layers = sys.argv[2], int(sys.argv[3]), int(sys.argv[7])
ema_decay = float(sys.argv[8])
rates = {"backbone_learning_rate": 0.001} if trainable_layers else {}
results = []
for steps_per_call in map(int, sys.argv[9].split(",")):  # one run each, in one process
    model_dir = os.path.join(sys.argv[4], str(steps_per_call))
    config = TrainConfig.from_options(
        model_dir=model_dir, preset=sys.argv[5], data_dir=sys.argv[6], epochs=2,
        batch_size=batch, learning_rate=0.01, sequence_length=16, head_hidden=8,
        trainable_layers=trainable_layers, ema_decay=ema_decay, pooling="mean",
        dropout=0.0,  # dropout masks are drawn per replica
        # Each replica encodes its own rows: bfloat16 would round them otherwise than one
        # device does, and this compares the distribution, not the rounding.
        precision="float32",
        strategy=strategy, progress=False, export=False, checkpoint_every_steps=0,
        steps_per_call=steps_per_call, **rates)
    result = run(config)
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    weights = {k: reader.get_tensor(k).tolist() for k in reader.get_variable_to_shape_map()
               if k.startswith(("head/", "weight_average/")) and "OPTIMIZER_SLOT" not in k}
    results.append({"weights": weights, "epochs": result["epochs"]})
print(json.dumps(results))
"""


def _run(strategy, batch, tmp_path, preset, data_dir, trainable_layers=0, ema_decay=0.0,
         steps_per_call=(50,)):
    """One run per `steps_per_call`, in one process; their weights and epoch records."""
    out = subprocess.run([sys.executable, "-c", SCRIPT, REPO, strategy, str(batch),
                          str(tmp_path / strategy), preset, data_dir, str(trainable_layers),
                          str(ema_decay), ",".join(map(str, steps_per_call))],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# With an unfrozen layer, two optimizers (head and copies) each all-reduce their gradients;
# the weight average is updated on each replica, from the same weights.
@pytest.mark.parametrize("trainable_layers,ema_decay", [(0, 0.0), (1, 0.9)])
def test_mirrored_over_two_cpus_matches_one_device(trainable_layers, ema_decay, tiny_preset,
                                                   tiny_data_dir, tmp_path):
    one, = _run("one_device", 16, tmp_path, tiny_preset, tiny_data_dir, trainable_layers,
                ema_decay)
    # Without unfrozen layers, also a step per call on two replicas (see below).
    mirrored, *stepwise = _run("mirrored", 8, tmp_path, tiny_preset, tiny_data_dir,
                               trainable_layers, ema_decay,
                               (50,) if trainable_layers else (50, 1))  # 2 x 8 = 16
    assert one["weights"].keys() == mirrored["weights"].keys() and one["weights"]
    for name in one["weights"]:
        np.testing.assert_allclose(mirrored["weights"][name], one["weights"][name], atol=1e-5,
                                   err_msg=name)
    for a, b in zip(one["epochs"], mirrored["epochs"]):
        assert a["step"] == b["step"]  # the same global batches
        assert a["val_accuracy"] == pytest.approx(b["val_accuracy"], abs=1e-6)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    for other in stepwise:
        # Many steps per call on two replicas: what a step per call gives, bit for bit.
        assert other["weights"] == mirrored["weights"]
        assert [{k: v for k, v in e.items() if "seconds" not in k} for e in other["epochs"]] \
            == [{k: v for k, v in e.items() if "seconds" not in k} for e in mirrored["epochs"]]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _workers(args, model_dir, env_extra=None):
    """Two `sst2.train` worker processes of one cluster; killed on exit if still running
    (a failed assertion must not leave a worker behind)."""
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    processes = []
    for index in range(2):
        env = dict(os.environ, PYTHONPATH=REPO, **(env_extra or {}),
                   TF_CONFIG=json.dumps({"cluster": cluster,
                                         "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "sst2.train", "--strategy=multi_worker",
             f"--model_dir={model_dir}", *args], env=env, cwd=REPO, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()


def _serve(export_dir, texts):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the export's tokenizer ops)

    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    return serve(text=tf.constant(texts))["probabilities"].numpy()


def test_two_worker_processes_on_loopback_match_one_process(tiny_preset, tiny_data_dir,
                                                            tmp_path):
    from sst2.serve.versions import latest_export

    common = ["--epochs=2", "--sequence_length=16", f"--preset={tiny_preset}",
              f"--data_dir={tiny_data_dir}", "--noprogress", "--learning_rate=0.05",
              "--pooling=mean", "--head_hidden=0", "--dropout=0",  # dropout masks are per replica
              "--precision=float32"]  # each worker encodes its own shard: no rounding apart
    worker_tmp = tmp_path / "worker_tmp"
    worker_tmp.mkdir()
    with _workers([*common, "--batch_size=16"], tmp_path / "multi",
                  {"TMPDIR": str(worker_tmp)}) as processes:
        outputs = [p.communicate(timeout=600) for p in processes]
    for p, (out, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-3000:]
    assert "Test Accuracy" in outputs[0][0]  # the chief reports
    single = subprocess.run([sys.executable, "-m", "sst2.train", "--strategy=one_device",
                             f"--model_dir={tmp_path / 'single'}", *common, "--batch_size=32"],
                            capture_output=True, text=True, cwd=REPO, timeout=600,
                            env=dict(os.environ, PYTHONPATH=REPO))
    assert single.returncode == 0, single.stderr[-3000:]
    texts = ["a great and charming film", "dull and boring", "it is the plot", ""]
    multi_export = latest_export(str(tmp_path / "multi" / "export"))
    assert multi_export is not None  # the chief exported
    np.testing.assert_allclose(_serve(multi_export, texts),
                               _serve(latest_export(str(tmp_path / "single" / "export")), texts),
                               atol=1e-4)
    with open(tmp_path / "multi" / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["workers"] == 2 and metrics["replicas"] == 2
    # The other worker wrote only to a temporary folder, and removed it.
    assert not [d for d in os.listdir(worker_tmp) if d.startswith("sst2-worker")]


def test_killing_a_worker_stops_the_other_clearly_and_rerun_resumes(tiny_preset, tiny_data_dir,
                                                                    tmp_path):
    import signal
    import time

    args = ["--epochs=3", "--batch_size=4", "--sequence_length=16", f"--preset={tiny_preset}",
            f"--data_dir={tiny_data_dir}", "--noprogress", "--checkpoint_every_steps=5",
            "--noexport"]
    model_dir = tmp_path / "run"
    with _workers(args, model_dir, {"SST2_COLLECTIVE_TIMEOUT": "20"}) as processes:
        state = model_dir / "checkpoints" / "checkpoint"
        deadline = time.time() + 300
        while not state.exists() and time.time() < deadline and processes[0].poll() is None:
            time.sleep(0.05)
        assert state.exists(), processes[0].communicate()[1][-3000:]
        processes[1].send_signal(signal.SIGKILL)
        # Stops within the collective timeout (20 s) and its shutdown, not the 600 s default.
        out, err = processes[0].communicate(timeout=180)
        processes[1].communicate()
    assert processes[0].returncode != 0
    assert "another worker stopped responding" in err, err[-3000:]
    assert "Traceback" not in err

    with _workers(args, model_dir) as processes:
        outputs = [p.communicate(timeout=600) for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs[0][1][-3000:] + outputs[1][1][-3000:]
    assert "Resuming from step" in outputs[0][0]


ENCODE_SCRIPT = r"""
import sys, tempfile
sys.path.insert(0, sys.argv[1])
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from sst2.model import features, presets
from sst2.text import data
from sst2.model.backbone import FeatureSpec
from sst2.text.datasets import TfdsDataset
from sst2.model.encoder import FeatureEncoder
preset, data_dir = sys.argv[2], sys.argv[3]
backbone = presets.load_backbone(preset)
spec = FeatureSpec("mean", "all")
tokens = data.to_numpy(data.tokenize(TfdsDataset("glue/sst2", data_dir).load("train"),
                                     presets.load_preprocessor(preset, 16)))
devices = [d.name for d in tf.config.list_logical_devices("CPU")]
replicated = FeatureEncoder.for_backbone(backbone, spec, False, devices=devices)
assert len(replicated.replicas) == 2
single = FeatureEncoder.for_backbone(backbone, spec, False)
a = features.encode(replicated, tokens, tempfile.mkdtemp(), {"k": 1}, batch_size=8,
                    show_progress=False)
b = features.encode(single, tokens, tempfile.mkdtemp(), {"k": 1}, batch_size=8,
                    show_progress=False)
np.testing.assert_array_equal(a.features, b.features)
print("ok", len(a))
"""


def test_encode_pass_runs_on_every_local_replica(tiny_preset, tiny_data_dir):
    out = subprocess.run([sys.executable, "-c", ENCODE_SCRIPT, REPO, tiny_preset, tiny_data_dir],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "ok 256"


def test_a_collective_timeout_that_is_not_a_number_is_a_user_error(monkeypatch):
    from sst2.fit import distribute

    # Issue 25, case 19: a ValueError traceback.
    monkeypatch.setenv("SST2_COLLECTIVE_TIMEOUT", "abc")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}, '
                                    '"task": {"type": "worker", "index": 0}}')
    with pytest.raises(UserError, match="SST2_COLLECTIVE_TIMEOUT='abc' is not a number"):
        distribute.make_strategy("multi_worker", None)
