"""tf.distribute: MirroredStrategy over 2 logical CPUs equals one device."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

SCRIPT = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from sst2.experiment import TrainConfig, run
strategy, batch = sys.argv[2], int(sys.argv[3])
config = TrainConfig(model_dir=sys.argv[4], preset=sys.argv[5], data_dir=sys.argv[6], epochs=2,
                     batch_size=batch, learning_rate=0.01, sequence_length=16, head_hidden=8,
                     strategy=strategy, show_progress=False, export=False,
                     checkpoint_every_steps=0)
result = run(config, log=lambda s: None)
reader = tf.train.load_checkpoint(os.path.join(sys.argv[4], "checkpoints"))
weights = {k: reader.get_tensor(k).tolist() for k in reader.get_variable_to_shape_map()
           if k.startswith("head/") and "OPTIMIZER_SLOT" not in k}
print(json.dumps({"weights": weights, "epochs": result["epochs"]}))
"""


def _run(strategy, batch, tmp_path, preset, data_dir):
    out = subprocess.run([sys.executable, "-c", SCRIPT, REPO, strategy, str(batch),
                          str(tmp_path / strategy), preset, data_dir],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_mirrored_over_two_cpus_matches_one_device(tiny_preset, tiny_data_dir, tmp_path):
    one = _run("one_device", 16, tmp_path, tiny_preset, tiny_data_dir)
    mirrored = _run("mirrored", 8, tmp_path, tiny_preset, tiny_data_dir)  # 2 x 8 = 16
    assert one["weights"].keys() == mirrored["weights"].keys() and one["weights"]
    for name in one["weights"]:
        np.testing.assert_allclose(mirrored["weights"][name], one["weights"][name], atol=1e-5,
                                   err_msg=name)
    for a, b in zip(one["epochs"], mirrored["epochs"]):
        assert a["step"] == b["step"]  # the same global batches
        assert a["val_accuracy"] == pytest.approx(b["val_accuracy"], abs=1e-6)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
