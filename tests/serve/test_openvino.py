"""The OpenVINO artifact (`sst2.export --format=openvino`): its tokenizer gives keras-hub's
ids, it answers as the SavedModel does, `sst2.predict` reads it, it loads without
TensorFlow, and what it cannot do ends in one error line."""

import csv
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import REPO, TINY_SEQUENCE_LENGTH, error_lines, run_module, tolerance

DATA = os.path.join(REPO, "tests", "data")
HOSTILE = ["", "   ", "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ！", "naïve café Ǆ ß İstanbul", "…wow…",
           "한국어 텍스트", "日本語のテキスト", "x" * 150, "ﬁne", "a\u200bb", "emoji 😀👍🏽 ok ♥️",
           "tab\there\nnewline", "dead™️", "One \ufe0fig", "[CLS] [SEP] ##s", "a-b--c...d!!?"]


def corpus() -> list:
    """Every text of tests/data, and the hostile ones."""
    texts = list(HOSTILE)
    for path in glob.glob(os.path.join(DATA, "**", "*.tsv"), recursive=True):
        with open(path, encoding="utf-8") as f:
            for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                texts += [cell for cell in row if len(cell) > 3 and not cell.isdigit()]
    for path in glob.glob(os.path.join(DATA, "senteval", "*", "*.txt")):
        with open(path, encoding="utf-8", errors="replace") as f:
            texts += [line.rstrip("\n").split(" ", 1)[-1] for line in f]
    return texts


@pytest.fixture(scope="module")
def standin_tokenizer():
    import keras_hub

    from sst2.model import standin

    return keras_hub.tokenizers.DistilBertTokenizer(
        vocabulary=os.path.join(standin.find_minilm_dir(), "vocab.txt"), lowercase=True)


@pytest.mark.parametrize("sequence_length", [128, 9])
def test_the_tokenizer_graph_gives_keras_hub_ids(standin_tokenizer, sequence_length):
    import openvino as ov
    import tensorflow as tf

    from sst2.serve.graph.packing import as_ragged, pack, pack_pair
    from sst2.serve.openvino.tokenizer import tokenizer_model

    tok = standin_tokenizer
    special = {"cls": tok.cls_token_id, "sep": tok.sep_token_id, "pad": tok.pad_token_id}
    texts = corpus()
    assert len(texts) > 1000
    ids = as_ragged(tok(tf.constant(texts)))
    for inputs, expected in (
            (("text",), pack(ids, sequence_length, *special.values())),
            (("text", "text_pair"), pack_pair(ids, ids[::-1], sequence_length,
                                              *special.values()))):
        model = ov.Core().compile_model(
            tokenizer_model(tok.get_vocabulary(), sequence_length, special, inputs), "CPU")
        columns = [texts, texts[::-1]][:len(inputs)]
        got = model([ov.Tensor(np.array(column, dtype=np.str_)) for column in columns])
        token_ids, mask = got["token_ids"], got["padding_mask"]
        want_ids, want_mask = (x.numpy() for x in expected)
        assert (mask.sum(1) == want_mask.sum(1)).all()
        width = min(token_ids.shape[1], want_ids.shape[1])
        differ = np.flatnonzero((token_ids[:, :width] * mask[:, :width]
                                 != want_ids[:, :width] * want_mask[:, :width]).any(1))
        assert not len(differ), [texts[i] for i in differ[:5]]


@pytest.fixture(scope="module")
def float32_run(tiny_preset, tiny_data_dir, tmp_path_factory):
    """A finished tiny run in float32 with its SavedModel, so that the artifact's float32
    answers can be held to float32's tolerance."""
    from sst2.run.config import TrainConfig
    from tests.helpers import train

    model_dir = str(tmp_path_factory.mktemp("openvino") / "run")
    train(TrainConfig.from_options(
        model_dir=model_dir, preset=tiny_preset, data_dir=tiny_data_dir, epochs=1,
        batch_size=8, sequence_length=TINY_SEQUENCE_LENGTH, learning_rate=0.01,
        pooling="attention", head_hidden=8, progress=False, precision="float32"))
    return model_dir


TEXTS = ["a gripping , moving film", "dull and tedious", "", "the plot is very weak but fun",
         "great " * 40]  # the last is cut to the sequence length


@pytest.mark.slow
def test_an_openvino_artifact_answers_as_the_saved_model(float32_run):
    from sst2.serve.client.openvino_runtime import OpenVINOModel
    from sst2.serve.versions import latest_export

    home = os.path.join(float32_run, "home")  # nothing written outside the run (telemetry)
    os.makedirs(home, exist_ok=True)
    result = run_module("sst2.export", f"--model_dir={float32_run}", "--format=openvino",
                        "--quantize=none", env={"HOME": home}, process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "note: the artifact reads the first 14 tokens of a text" in result.stdout
    folder = latest_export(os.path.join(float32_run, "export_openvino"), "model.xml")
    assert sorted(os.listdir(folder)) == ["MODEL_CARD.md", "assets.extra", "model.bin",
                                          "model.xml"]
    facts = json.load(open(os.path.join(folder, "assets.extra", "sst2.json")))
    assert facts["quantize"] == "none" and facts["runtime"] == "openvino"
    assert facts["agreement"]["examples"] == 64 and 0.9 <= facts["agreement"][
        "answers_equal"] <= 1.0
    card = open(os.path.join(folder, "MODEL_CARD.md"), encoding="utf-8").read()
    assert "## This artifact" in card and "openvino_tokenizers" in card
    assert "tensorflow/serving" not in card

    saved_model = latest_export(os.path.join(float32_run, "export"))
    served = serve_saved_model(saved_model, TEXTS[:-1])
    artifact = OpenVINOModel(folder, inference_precision="f32")(TEXTS[:-1])
    np.testing.assert_allclose(artifact["probabilities"], served["probabilities"],
                               atol=tolerance(float32_run))
    assert artifact["label"].tolist() == served["label"]
    assert artifact["label_id"].tolist() == served["label_id"]

    # sst2.predict reads it, from its folder or root, without loading TensorFlow.
    for where in (folder, os.path.dirname(folder)):
        out = run_module("sst2.predict", f"--export_dir={where}", "--json", *TEXTS,
                         env={"HOME": home}, process=True)
        assert out.returncode == 0, out.stderr[-3000:]
        lines = [json.loads(line) for line in out.stdout.splitlines()]
        default = OpenVINOModel(folder)(TEXTS)
        assert [line["label"] for line in lines] == default["label"].tolist()
        assert [line["text"] for line in lines] == TEXTS
        assert [line.get("cut", False) for line in lines] == [False] * 4 + [True]
        assert ("note: 1 of 5 arguments were longer than the OpenVINO artifact reads and "
                "were cut to its sequence length") in out.stderr

    assert "intel" not in os.listdir(home), os.listdir(home)  # OpenVINO's telemetry id

    # int8 weights: a smaller model.
    result = run_module("sst2.export", f"--model_dir={float32_run}", "--format=openvino",
                        "--quantize=int8_weights")
    assert result.returncode == 0, result.stderr[-3000:]
    int8 = latest_export(os.path.join(float32_run, "export_openvino"), "model.xml")
    assert int8 != folder
    facts = json.load(open(os.path.join(int8, "assets.extra", "sst2.json")))
    assert facts["quantize"] == "int8_weights"
    assert os.path.getsize(os.path.join(int8, "model.bin")) < os.path.getsize(
        os.path.join(folder, "model.bin"))


@pytest.mark.slow
def test_auto_keeps_the_fastest_setting_that_agrees_as_measured_on_this_machine(float32_run,
                                                                              tmp_path):
    """Issue 50: `--quantize=auto` (the default) times every quantization under each hint
    against the SavedModel's computation here, keeps the fastest whose labels agree, and
    records what it measured, on this CPU; clients compile with the kept setting."""
    from sst2.run import machine
    from sst2.run.command_config import QUANTIZATIONS
    from sst2.serve.client.openvino_runtime import OpenVINOModel
    from sst2.serve.openvino import settings

    result = run_module("sst2.export", f"--model_dir={float32_run}", "--format=openvino",
                        f"--export_root={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    folder = glob.glob(str(tmp_path / "*"))[0]
    facts = json.load(open(os.path.join(folder, "assets.extra", "sst2.json")))
    speed = facts["speed"]
    assert speed["cpu"] == machine.cpu_name() and speed["texts"] == 64
    tried = speed["settings"]
    assert sorted((s["quantize"], s["hint"]) for s in tried) == sorted(
        (q, h) for q in QUANTIZATIONS for h in settings.HINTS)
    # Measured, not a constant: every rate its own, each ratio its rate over the SavedModel's.
    assert len({s["rate"] for s in tried}) == len(tried) and speed["saved_model_rate"] > 0
    for s in tried:
        assert s["ratio"] == pytest.approx(s["rate"] / speed["saved_model_rate"], rel=1e-2)
    agreeing = [s for s in tried if (s["answers_equal"] or 0) >= settings.AGREEMENT_BOUND]
    kept = max(agreeing or tried, key=lambda s: s["rate"] if agreeing else s["answers_equal"])
    assert (facts["quantize"], speed["hint"]) == (kept["quantize"], kept["hint"])
    assert speed["ratio"] == kept["ratio"]
    faster = [s for s in tried if s["rate"] > kept["rate"]]
    assert all(s["answers_equal"] is not None and s["answers_equal"] < settings.AGREEMENT_BOUND
               for s in faster)  # each faster one measured, and refused
    assert facts["agreement"]["answers_equal"] == kept["answers_equal"]
    assert facts["openvino_config"] == settings.compile_config(kept["hint"])
    card = open(os.path.join(folder, "MODEL_CARD.md"), encoding="utf-8").read()
    assert f"measured where it was exported ({machine.cpu_name()})" in card
    assert f"**{speed['ratio']:.2f}x**" in card
    compiled = OpenVINOModel(folder).compiled
    assert str(compiled.get_property("PERFORMANCE_HINT")).endswith(kept["hint"])


SERVE = """
import json, sys
import tensorflow as tf, tensorflow_text
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out = serve(text=tf.constant(json.loads(sys.argv[2])))
print(json.dumps({k: [x.decode() if isinstance(x, bytes) else x for x in v.numpy().tolist()]
                  for k, v in out.items()}))
"""


def serve_saved_model(export_dir: str, texts: list) -> dict:
    result = subprocess.run([sys.executable, "-c", SERVE, export_dir, json.dumps(texts)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


# `python -m sst2.predict ARGS` where TensorFlow and Keras cannot load.
PREDICT_WITHOUT_TENSORFLOW = """
import runpy, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "keras_hub", "tf_keras",
                                  "tensorflow_text"):
            raise ImportError("refused: " + name)
sys.meta_path.insert(0, Refuse())
sys.argv = ["sst2.predict", *sys.argv[1:]]
runpy.run_module("sst2.predict", run_name="__main__")
"""


# The model card's snippet, in a process where TensorFlow, Keras and sst2 cannot load.
WITHOUT_TENSORFLOW = """
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "keras_hub", "sst2", "tf_keras"):
            raise ImportError("refused: " + name)
sys.meta_path.insert(0, Refuse())
import json, os
import numpy as np, openvino as ov, openvino_tokenizers
model = ov.Core().compile_model(os.path.join(sys.argv[1], "model.xml"))
answers = model([ov.Tensor(np.array(json.loads(sys.argv[2])))])
names = json.load(open(os.path.join(sys.argv[1], "assets.extra", "sst2.json")))["label_names"]
print(json.dumps([names[i] for i in answers["label_id"].tolist()]))
"""


@pytest.mark.slow
def test_the_artifact_answers_without_tensorflow(float32_run):
    from sst2.serve.client.openvino_runtime import OpenVINOModel
    from sst2.serve.versions import latest_export

    folder = latest_export(os.path.join(float32_run, "export_openvino"), "model.xml")
    if folder is None:
        result = run_module("sst2.export", f"--model_dir={float32_run}", "--format=openvino")
        assert result.returncode == 0, result.stderr[-3000:]
        folder = latest_export(os.path.join(float32_run, "export_openvino"), "model.xml")
    result = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, folder,
                             json.dumps(TEXTS)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == OpenVINOModel(folder)(TEXTS)[
        "label"].tolist()
    # sst2.predict with the artifact imports neither TensorFlow nor Keras (issue 47, case 13).
    result = subprocess.run([sys.executable, "-c", PREDICT_WITHOUT_TENSORFLOW,
                             f"--export_dir={folder}", "--json", *TEXTS[:2]],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [json.loads(line)["label"] for line in result.stdout.splitlines()] == OpenVINOModel(
        folder)(TEXTS[:2])["label"].tolist()


@pytest.mark.slow
def test_what_the_artifact_cannot_do_is_one_error_line(float32_run, tmp_path):
    refused = run_module("sst2.export", f"--model_dir={float32_run}", "--format=openvino",
                         "--window_tokens=8", f"--export_root={tmp_path / 'nowhere'}")
    assert refused.returncode == 2 and len(error_lines(refused.stderr)) == 1
    assert "--window_tokens" in refused.stderr and not (tmp_path / "nowhere").exists()
    # No runtime installed.
    missing = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['nncf'] = None; "
         "from sst2 import cli, export; from sst2.run.command_config import ExportConfig; "
         "sys.argv = ['sst2.export', '--model_dir=" + float32_run + "', '--format=openvino']; "
         "cli.run(export.main, ExportConfig)"], capture_output=True, text=True, cwd=REPO,
        timeout=300)
    assert missing.returncode == 2, missing.stderr[-2000:]
    assert error_lines(missing.stderr) == [
        "error: --format=openvino needs nncf: pip install 'sst2[openvino]'"]
    # A damaged artifact.
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "model.xml").write_text("<net", encoding="utf-8")
    (damaged / "assets.extra").mkdir()
    (damaged / "assets.extra" / "sst2.json").write_text('{"task": "single_label"}')
    out = run_module("sst2.predict", f"--export_dir={damaged}", "fine")
    assert out.returncode == 2 and len(error_lines(out.stderr)) == 1, out.stderr[-2000:]
    assert "holds no loadable OpenVINO artifact" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("task", ["multi_label", "regression"])
def test_every_kind_of_target_and_pairs_answer_as_the_saved_model(task, tiny_kind_run, tmp_path):
    import tensorflow as tf

    from sst2.serve.client.openvino_runtime import OpenVINOModel
    from sst2.serve.graph.serving import make_predict_fn
    from sst2.serve.openvino.export import export_openvino
    from sst2.serve.trained import restore

    model_dir = tiny_kind_run(task)
    trained = restore(model_dir)
    folder = export_openvino(trained, str(tmp_path / "openvino"), "none")
    first = ["the film is great fun", "dull and tedious", "", "a very weak plot " * 6]
    second = ["a great film", "the story is boring", "fun", "charming"]
    # A long single text is read in windows by the SavedModel, cut by the artifact.
    inputs = [first, second] if trained.dataset.is_pair else [first[:3]]
    predict = make_predict_fn(trained.preprocessor, trained.backbone, trained.head,
                              trained.spec, dataset=trained.dataset)
    expected = {k: v.numpy() for k, v in predict(*[tf.constant(x) for x in inputs]).items()}
    artifact = OpenVINOModel(folder, inference_precision="f32")
    assert artifact.pairs == trained.dataset.is_pair and artifact.task == task
    assert [i.get_any_name() for i in artifact.compiled.inputs] == (
        ["text", "text_pair"] if trained.dataset.is_pair else ["text"])
    got = artifact(*inputs)
    # The throughput hint splits a batch over its requests in flight, answers in order.
    split = OpenVINOModel(folder, inference_precision="f32",
                          config={"PERFORMANCE_HINT": "THROUGHPUT"})
    assert len(split.requests) > 1
    np.testing.assert_allclose(split(*inputs)[trained.dataset.target.answer],
                               got[trained.dataset.target.answer], atol=1e-6)
    assert set(got) == set(trained.dataset.target.export_outputs) | (
        set() if trained.dataset.is_pair else {"cut"})
    assert "cut" in got or trained.dataset.is_pair
    answer = trained.dataset.target.answer
    np.testing.assert_allclose(got[answer], expected[answer], atol=1e-5)
    for name in set(got) - {answer, "cut"}:
        values = [x.decode() if isinstance(x, bytes) else x for x in expected[name].tolist()]
        assert got[name].tolist() == values, name


@pytest.mark.slow
def test_int8_weights_need_no_training_file(tiny_preset, tmp_path):
    """Issue 47, case 11: the training file moved after the run: `int8_weights` (the
    default) exports without it; `int8`, which calibrates on its texts, says why it needs
    it and what needs none."""
    import shutil

    from sst2.run.config import TrainConfig
    from tests.helpers import train

    data = tmp_path / "data"
    shutil.copytree(os.path.join(REPO, "tests", "data", "goemotions"), data)
    model_dir = str(tmp_path / "run")
    train(TrainConfig.from_options(
        model_dir=model_dir, preset=tiny_preset, epochs=1, batch_size=8, train_split="train",
        sequence_length=TINY_SEQUENCE_LENGTH, head_hidden=8, progress=False,
        precision="float32", export=False, train_file=str(data / "train.tsv"),
        eval_file=str(data / "dev.tsv"), label_names_file=str(data / "labels.txt")))
    os.rename(data / "train.tsv", tmp_path / "moved.tsv")
    exported = run_module("sst2.export", f"--model_dir={model_dir}", "--format=openvino")
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert (f"warning: not measuring the artifact against the SavedModel on the run's "
            f"validation data: {data / 'train.tsv'}: no such file.") in exported.stdout
    card = open(glob.glob(f"{model_dir}/export_openvino/*/MODEL_CARD.md")[0]).read()
    assert "Not measured against the SavedModel's answers: the run's data could not" in card
    refused = run_module("sst2.export", f"--model_dir={model_dir}", "--format=openvino",
                         "--quantize=int8")
    assert refused.returncode == 2 and error_lines(refused.stderr) == [
        f"error: {data / 'train.tsv'}: no such file. --quantize=int8 calibrates on the run's "
        "training texts: put the file back where the run read it, or use "
        "--quantize=int8_weights, which needs none."], refused.stderr[-2000:]
