"""The serving SavedModel, sst2.export, sst2.predict and sst2.evaluate on a tiny run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from sst2.run.runlock import RunLock
from tests.helpers import (
    REPO,
    error_lines,
    read_output,
    run_module,
    start_paused,
)

# The tests whose numbers or graph depend on the backbone's precision run again in bfloat16.
pytestmark = pytest.mark.slow

BAD_INPUTS = ["", "   \t ", "good " * 20000, "😀 电影很好 👍", "great fun"]
INVALID_UTF8 = b"\xff\xfe bad \xc3\x28 film"


@pytest.fixture(scope="module")
def trained_run(tiny_preset, tiny_data_dir, tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("export_run"))
    # float32: the export's outputs are compared with keras-hub's layers within 1e-4.
    result = run_module("sst2.train", "--epochs=2", "--batch_size=8", "--sequence_length=16",
                        "--learning_rate=0.01", "--pooling=cls_mean", "--head_hidden=8",
                        "--precision=float32",
                        f"--preset={tiny_preset}", f"--data_dir={tiny_data_dir}",
                        f"--model_dir={model_dir}", "--noprogress")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "as a SavedModel" in result.stdout
    return model_dir


def _export_dir(model_dir):
    from sst2.serve.versions import latest_export

    path = latest_export(os.path.join(model_dir, "export"))
    assert path and os.path.exists(os.path.join(path, "saved_model.pb"))
    return path


LOADER = r"""
import json, sys

class Forbid:  # as in TF Serving: the graph must not need keras-hub, keras-nlp or sst2
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras_hub", "keras_nlp", "sst2"):
            raise ImportError(f"the export tried to import {name}")

sys.meta_path.insert(0, Forbid())
import tensorflow as tf
import tensorflow_text  # noqa: F401
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
texts = json.loads(sys.stdin.read())
texts = [t.encode("latin-1") if isinstance(t, str) and t.startswith("RAW:") else t for t in texts]
texts = [t[4:] if isinstance(t, bytes) else t for t in texts]
out = {k: v.numpy() for k, v in serve(text=tf.constant(texts, tf.string)).items()}
empty = serve(text=tf.constant([], tf.string))
forbidden = sorted(m for m in sys.modules if m.split(".")[0] in ("keras_hub", "keras_nlp", "sst2"))
print(json.dumps({
    "probabilities": out["probabilities"].tolist(), "label_id": out["label_id"].tolist(),
    "label": [l.decode() for l in out["label"]], "dtype": str(out["probabilities"].dtype),
    "empty_shape": list(empty["probabilities"].shape), "forbidden": forbidden}))
"""


@pytest.mark.precision
def test_export_loads_with_only_tensorflow_and_matches_in_process(trained_run):
    from sst2.serve.graph.serving import make_predict_fn
    from sst2.serve.trained import restore

    export_dir = _export_dir(trained_run)
    texts = BAD_INPUTS + ["RAW:" + INVALID_UTF8.decode("latin-1")]
    process = subprocess.run([sys.executable, "-c", LOADER, export_dir], input=json.dumps(texts),
                             capture_output=True, text=True, timeout=300,
                             env=dict(os.environ, PYTHONPATH=""), cwd="/")
    assert process.returncode == 0, process.stderr[-3000:]
    served = json.loads(process.stdout.strip().splitlines()[-1])
    assert served["forbidden"] == []
    assert served["dtype"] == "float32" and served["empty_shape"] == [0, 2]
    probabilities = np.array(served["probabilities"])
    assert probabilities.shape == (len(texts), 2) and np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    assert served["label"] == [["negative", "positive"][i] for i in served["label_id"]]

    trained = restore(trained_run, "best")
    predict = make_predict_fn(trained.preprocessor, trained.backbone, trained.head, trained.spec,
                              temperature=trained.temperature)  # the export is calibrated
    raw = BAD_INPUTS + [INVALID_UTF8]
    expected = predict(tf.constant(raw, tf.string))["probabilities"].numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


@pytest.mark.precision
def test_the_export_holds_only_ops_stock_tf_serving_has(trained_run):
    from sst2.serve.graph.serving_audit import op_types, unservable_ops

    export_dir = _export_dir(trained_run)
    assert unservable_ops(export_dir) == []
    used = op_types(export_dir)
    assert "FastWordpieceTokenizeWithOffsets" in used and "TensorListSetItem" in used
    assert not any("RoundRobin" in op for op in used)
    # LayerNorm in separate ops: in the form oneDNN fuses, TF 2.12.1's kernel aborts the
    # server on a batch of 300 short texts (sst2.serve.graph.serving).
    assert not any(op.startswith("FusedBatchNorm") for op in used), sorted(used)


@pytest.mark.precision
def test_the_export_computes_what_keras_hubs_layers_compute(trained_run):
    """For texts that fit one window, packing to the longest text and the fused encoder
    change nothing but rounding (longer texts: tests/serve/test_serving.py)."""
    import tensorflow_text  # noqa: F401

    from sst2.model.backbone import pool_features
    from sst2.serve.trained import restore

    trained = restore(trained_run, "best")
    texts = ["great fun", "a dull , boring and flat film that is very weak", "", "good " * 14]
    inputs = trained.preprocessor(tf.constant(texts))  # keras-hub's packing, full length
    features = pool_features(trained.backbone, inputs["token_ids"], inputs["padding_mask"],
                             trained.spec)
    # The export is calibrated: softmax(log p / T) of the head's probabilities p.
    expected = tf.nn.softmax(tf.nn.log_softmax(trained.head(features)) / trained.temperature
                             ).numpy()
    serve = tf.saved_model.load(_export_dir(trained_run)).signatures["serving_default"]
    served = serve(text=tf.constant(texts))["probabilities"].numpy()
    np.testing.assert_allclose(served, expected, atol=1e-4)


def test_saved_model_cli_lists_the_signature(trained_run):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run([cli, "show", "--all", "--dir", _export_dir(trained_run)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "signature_def['serving_default']" in out
    for name in ("inputs['text']", "outputs['probabilities']", "outputs['label_id']",
                 "outputs['label']"):
        assert name in out


@pytest.mark.precision
def test_export_cli_from_latest_checkpoint_with_its_reading_options(trained_run, tmp_path):
    import tensorflow_text  # noqa: F401

    from sst2.run.command_config import ReadingConfig
    from sst2.serve.graph.serving import make_predict_fn
    from sst2.serve.trained import restore

    # Without calibration: a temperature would shrink the difference the reading makes.
    result = run_module("sst2.export", f"--model_dir={trained_run}", "--checkpoint=latest",
                        f"--export_root={tmp_path}", "--max_windows=2", "--window_overlap=0.25",
                        "--nocalibrate")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "checkpoints/ckpt-" in result.stdout
    (version,) = [v for v in os.listdir(tmp_path) if v.isdigit()]
    serve = tf.saved_model.load(os.path.join(tmp_path, version)).signatures["serving_default"]
    long_text = tf.constant([" ".join(["great", "dull", "film", "weak", "warm", "a"] * 12)])
    served = serve(text=long_text)["probabilities"].numpy()
    trained = restore(trained_run, "latest")
    for reading, same in ((ReadingConfig(max_windows=2, window_overlap=0.25), True),
                          (ReadingConfig(), False)):
        expected = make_predict_fn(trained.preprocessor, trained.backbone, trained.head,
                                   trained.spec, reading, temperature=trained.temperature)(
            long_text)["probabilities"].numpy()
        assert np.allclose(served, expected, atol=1e-5) == same


@pytest.mark.precision
def test_predict_cli_args_stdin_and_json(trained_run):
    from sst2.serve.graph.serving import make_predict_fn
    from sst2.serve.trained import restore

    texts = ["great fun", "dull film"]
    result = run_module("sst2.predict", f"--export_dir={trained_run}", *texts)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    # The printed label and probability are the model's, as computed in this process.
    trained = restore(trained_run, "best")
    probabilities = make_predict_fn(trained.preprocessor, trained.backbone, trained.head,
                                    trained.spec, temperature=trained.temperature)(
        tf.constant(texts))["probabilities"].numpy()
    for line, text, expected in zip(lines, texts, probabilities):
        label, probability, echoed = line.split("\t")
        assert label == ["negative", "positive"][int(expected.argmax())]
        assert float(probability) == pytest.approx(expected.max(), abs=1e-4)
        assert echoed == text
    full = subprocess.run([sys.executable, "-m", "sst2.predict", f"--export_dir={trained_run}",
                           "--json"], input="great fun\n\nawful and boring\n", text=True,
                          capture_output=True, env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
    assert full.returncode == 0, full.stderr[-3000:]
    records = [json.loads(line) for line in full.stdout.strip().splitlines()]
    assert [r["text"] for r in records] == ["great fun", "", "awful and boring"]
    assert all(abs(sum(r["probabilities"]) - 1) < 1e-5 for r in records)


def test_predict_cli_on_empty_input_is_a_clear_error(trained_run):
    empty = subprocess.run([sys.executable, "-m", "sst2.predict", f"--export_dir={trained_run}"],
                           input="", text=True, capture_output=True,
                           env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
    assert empty.returncode == 2 and empty.stderr.startswith("error: No input")


def test_predict_cli_without_export_is_a_clear_error(tmp_path):
    result = run_module("sst2.predict", f"--export_dir={tmp_path}", "text")
    assert result.returncode == 2
    assert "No SavedModel" in result.stderr and "Traceback" not in result.stderr


def test_evaluate_cli_writes_glue_submission(trained_run, tiny_data_dir):
    result = run_module("sst2.evaluate", f"--model_dir={trained_run}", "--max_windows=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "validation: loss" in result.stdout
    with open(os.path.join(trained_run, "SST-2.tsv")) as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    assert rows[0] == ["index", "prediction"]
    assert [int(r[0]) for r in rows[1:]] == list(range(32))
    # Each row is the export's answer for that test sentence.
    from sst2.serve.graph.serving import make_predict_fn
    from sst2.serve.trained import restore
    from sst2.text.glue import load_split

    test = list(load_split("test", tiny_data_dir).as_numpy_iterator())
    trained = restore(trained_run, "best")
    served = make_predict_fn(trained.preprocessor, trained.backbone, trained.head, trained.spec,
                             temperature=trained.temperature)(
        tf.constant([t["sentence"] for t in test]))["label_id"].numpy()
    expected = {int(t["idx"]): str(label) for t, label in zip(test, served)}
    assert {int(r[0]): r[1] for r in rows[1:]} == expected
    with open(os.path.join(trained_run, "metrics.json")) as f:
        best = max(e["val_accuracy"] for e in json.load(f)["epochs"])
    reported = float(result.stdout.split("accuracy ")[1].split(",")[0])
    assert reported == pytest.approx(best, abs=1e-4)


def test_evaluate_without_a_run_is_a_clear_error(tmp_path):
    result = run_module("sst2.evaluate", f"--model_dir={tmp_path}")
    assert result.returncode == 2
    assert "no trained run" in result.stderr and "Traceback" not in result.stderr


def _copy_run(trained_run, tmp_path):
    """A copy of the trained run, so a test may damage its exports."""
    import shutil

    copy = str(tmp_path / "run")
    shutil.copytree(trained_run, copy, ignore=shutil.ignore_patterns(".lock"))
    return copy


def test_exports_never_collide_and_never_leave_partials(trained_run, tmp_path):
    # Issue 25, cases 15 (SIGKILL leaves .partial forever), 16 (two exports in one second
    # collide) and 23 (a refused export leaves an empty export folder).
    import signal

    run = _copy_run(trained_run, tmp_path)
    root = os.path.join(run, "export")
    os.makedirs(os.path.join(root, ".17.999999999.partial"))  # a killed export's, old and new
    os.makedirs(os.path.join(root, ".18.partial"))
    first = run_module("sst2.export", f"--model_dir={run}")
    second = run_module("sst2.export", f"--model_dir={run}")
    assert first.returncode == second.returncode == 0, second.stderr[-2000:]
    versions = sorted(int(v) for v in os.listdir(root))
    assert len(versions) == len(set(versions)) and versions[-1] - versions[-2] >= 1
    assert not [n for n in os.listdir(root) if n.endswith(".partial")]
    refused = run_module("sst2.export", f"--model_dir={run}", "--export_root=" + str(
        tmp_path / "nowhere"), "--window_tokens=127")
    assert refused.returncode == 2 and "--window_tokens=127" in refused.stderr
    assert not os.path.exists(tmp_path / "nowhere")
    # SIGTERM mid-export (paused once the SavedModel is written to its temporary folder,
    # before it is named: synchronised on the process, no race): one error line, exit 2,
    # nothing half-written.
    output = tmp_path / "terminated"
    output.mkdir()
    process, paused = start_paused("sst2.serve.versions:write_export_facts", 1, "sst2.export",
                                   f"--model_dir={run}", output_dir=str(output))
    assert paused, read_output(str(output))[1][-2000:]
    assert [n for n in os.listdir(root) if n.endswith(".partial")]
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
    err = read_output(str(output))[1]
    assert process.returncode == 2, err[-2000:]
    # The error line, whatever TensorFlow's C++ runtime logs around it.
    assert error_lines(err) == [
        "error: Interrupted. Run the same command again to continue where it stopped."], err
    assert "Traceback" not in err
    assert not [n for n in os.listdir(root) if n.endswith(".partial")]


def test_a_full_disk_during_export_is_one_error_line_and_leaves_nothing(trained_run, tmp_path):
    # Issue 25, case 14: an OutOfRangeError traceback, and files left behind.
    run = _copy_run(trained_run, tmp_path)
    before = sorted(os.listdir(os.path.join(run, "export")))
    result = subprocess.run(["bash", "-c", f"ulimit -f 64; exec {sys.executable} -m sst2.export "
                             f"--model_dir={run}"], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(error_lines(result.stderr)) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "file-size limit" in result.stderr or "disk may be full" in result.stderr
    assert sorted(os.listdir(os.path.join(run, "export"))) == before


def test_evaluate_and_export_wait_for_no_training_run(trained_run, tmp_path):
    # Issue 25, case 17: evaluate scored a mid-run checkpoint without a word.

    run = _copy_run(trained_run, tmp_path)
    with RunLock(run):  # as a training run holds it
        for module in ("sst2.evaluate", "sst2.export"):
            result = run_module(module, f"--model_dir={run}")
            assert result.returncode == 2 and "is in use by another run" in result.stderr


def test_predict_skips_a_broken_newest_version_and_names_it(trained_run, tmp_path):
    # Issue 25, case 22: "No SavedModel" beside an intact older version.
    run = _copy_run(trained_run, tmp_path)
    root = os.path.join(run, "export")
    intact = max(int(v) for v in os.listdir(root))
    os.makedirs(os.path.join(root, str(intact + 100), "variables"))
    result = run_module("sst2.predict", f"--export_dir={run}", "great fun")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{intact + 100} holds no saved_model.pb" in result.stderr
    assert f"using {os.path.join(root, str(intact))}" in result.stderr


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
def test_a_failed_export_leaves_nothing_half_written(trained_tiny_run, tmp_path, monkeypatch):
    from sst2.serve.trained import restore

    trained = restore(trained_tiny_run)

    def full_disk(root, folder, *args, **kwargs):  # the disk fills up half-way through
        os.makedirs(os.path.join(folder, "variables"))
        raise OSError(28, "No space left on device", folder)

    monkeypatch.setattr(tf.saved_model, "save", full_disk)
    with pytest.raises(OSError):
        trained.export(str(tmp_path / "export"))
    assert os.listdir(tmp_path / "export") == []
