"""Training on one's own files, end to end, as a user would: SST-5 and TREC slices
converted to CSV, TSV and JSONL (TREC's Latin-1 training file kept Latin-1), N classes
through metrics, export, sst2.predict and sst2.evaluate; sentence pairs; a changed
training file never resumed."""

import json
import os

import numpy as np
import pytest

from tests.helpers import convert_senteval, error_lines, run_module, senteval_dir

pytestmark = pytest.mark.slow

SST5_NAMES = ["very negative", "negative", "neutral", "positive", "very positive"]
TREC_NAMES = ["description", "entity", "abbreviation", "human", "location", "numeric"]


def load_json(path):
    with open(path) as f:
        return json.load(f)


def test_sst5_csv_trains_exports_predicts_and_evaluates_five_classes(said, standin_preset,
                                                                     tmp_path):
    """SST-5 (400 train, 150 dev sentences) as CSV with class names, trained 10 epochs
    through the CLI, the best checkpoint chosen by macro-F1."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from sst2.serve.evaluation import evaluate
    from sst2.serve.trained import restore

    for split, name in (("train", "train.csv"), ("dev", "dev.csv")):
        convert_senteval(os.path.join(senteval_dir(), "SST-5", f"{split}.txt"),
                         str(tmp_path / name), label_names=SST5_NAMES)
    model_dir = tmp_path / "run"
    result = run_module("sst2.train", f"--train_file={tmp_path / 'train.csv'}",
                        f"--eval_file={tmp_path / 'dev.csv'}", f"--preset={standin_preset}",
                        "--sequence_length=64", "--epochs=10", "--best_metric=macro_f1",
                        f"--model_dir={model_dir}", "--noprogress")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "400 training and 150 evaluation sentences, 5 classes" in result.stdout
    assert "Test macro-F1: " in result.stdout and "GLUE" not in result.stdout
    metrics = load_json(model_dir / "metrics.json")
    epochs = metrics["epochs"]
    for record in epochs:
        assert {"val_accuracy", "val_macro_f1", "val_mcc"} <= set(record)
    # The best checkpoint is the best macro-F1, and it is what is exported.
    best = max(epochs, key=lambda r: r["val_macro_f1"])
    assert [r["epoch"] for r in epochs if r.get("best")][-1] == best["epoch"]
    # Better than the majority class (neutral-ish SST-5 heads sit near 0.2-0.25).
    assert best["val_accuracy"] > 0.3 and best["val_mcc"] > 0.1, epochs
    dataset = load_json(model_dir / "config.json")["dataset"]
    order = sorted(SST5_NAMES)  # label names, sorted: a stable vocabulary
    assert dataset["label_names"] == order
    assert len(dataset["identity"]["train_file_sha256"]) == 64
    assert not os.path.exists(model_dir / "SST-2.tsv")

    serve = tf.saved_model.load(metrics["export_dir"]).signatures["serving_default"]
    out = serve(text=tf.constant(["a masterpiece", "a waste of time", ""]))
    assert out["probabilities"].shape == (3, 5)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1, atol=1e-5)
    labels = [label.decode() for label in out["label"].numpy()]
    # Each label is the name of its most probable class, in the run's class order.
    assert labels == [order[i] for i in out["probabilities"].numpy().argmax(-1)]
    # The probabilities' columns follow the class order.
    positive = [order.index("positive"), order.index("very positive")]
    negative = [order.index("negative"), order.index("very negative")]
    probabilities = out["probabilities"].numpy()
    assert probabilities[0, positive].sum() > probabilities[0, negative].sum()
    assert probabilities[1, negative].sum() > probabilities[1, positive].sum()
    result = run_module("sst2.predict", f"--export_dir={model_dir}", "--json",
                        "a masterpiece", "a waste of time")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["label"] for line in lines] == labels[:2]
    assert all(len(line["probabilities"]) == 5 for line in lines)

    scored = evaluate(restore(str(model_dir)),
                      eval_file=str(tmp_path / "dev.csv"))
    assert said[-1].startswith(f"{tmp_path / 'dev.csv'}: loss")
    # Served in float32 from the text; trained on float16 cached features.
    assert scored["macro_f1"] == pytest.approx(best["val_macro_f1"], abs=0.02)
    assert scored["submission"] is None


def _run_in_process(**options) -> dict:
    from sst2.run.config import TrainConfig
    from tests.helpers import train as run

    return run(TrainConfig.from_options(progress=False, **options))


def test_trec_latin1_file_class_weights(standin_preset, tmp_path):
    trec = os.path.join(senteval_dir(), "TREC")
    convert_senteval(os.path.join(trec, "train.txt"), str(tmp_path / "train.tsv"),
                     encoding="latin-1")
    convert_senteval(os.path.join(trec, "test.txt"), str(tmp_path / "test.jsonl"))
    result = run_module("sst2.train", f"--train_file={tmp_path / 'train.tsv'}",
                        f"--eval_file={tmp_path / 'test.jsonl'}", f"--preset={standin_preset}",
                        f"--model_dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "train.tsv: 1 line(s) hold bytes that are not valid utf-8: line 67" in result.stderr
    assert "--encoding=latin-1" in result.stderr

    _run_in_process(train_file=str(tmp_path / "train.tsv"),
                    eval_file=str(tmp_path / "test.jsonl"), encoding="latin-1",
                    preset=standin_preset, sequence_length=32, epochs=3,
                    class_weights="balanced", label_names=",".join(TREC_NAMES),
                    model_dir=str(tmp_path / "run"), export=False)
    metrics = load_json(tmp_path / "run" / "metrics.json")
    weights = metrics["class_weights"]
    with open(os.path.join(trec, "train.txt"), encoding="latin-1") as f:
        counts = np.bincount([int(line.split(" ")[0]) for line in f], minlength=6)
    np.testing.assert_allclose(weights, counts.sum() / (6 * counts))
    assert metrics["epochs"][-1]["val_accuracy"] > 0.5, metrics["epochs"]
    # A test file without labels: evaluate predicts it into predictions.jsonl, through
    # the served computation, with the class names.
    from sst2.serve.evaluation import evaluate
    from sst2.serve.trained import restore

    with open(tmp_path / "questions.csv", "w", encoding="latin-1") as f:
        f.write("text\nWho wrote Hamlet ?\nWhere is Lima ?\n")
    result = evaluate(restore(str(tmp_path / "run")),
                      test_file=str(tmp_path / "questions.csv"))
    assert result["accuracy"] == pytest.approx(max(e["val_accuracy"]
                                                   for e in metrics["epochs"]), abs=0.02)
    with open(result["predictions"]) as f:
        predictions = [json.loads(line) for line in f]
    assert [p["line"] for p in predictions] == [2, 3]
    assert [p["label"] for p in predictions] == ["human", "location"]
    assert all(len(p["probabilities"]) == 6 for p in predictions)


def test_a_changed_training_file_is_never_resumed(tiny_preset, tmp_path):
    from sst2.run.errors import UserError

    train = tmp_path / "train.csv"
    rows = [("good film", "pos"), ("bad film", "neg")] * 16
    train.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows))
    options = dict(train_file=str(train), eval_file=str(train), preset=tiny_preset,
                   sequence_length=16, epochs=1, export=False, model_dir=str(tmp_path / "run"))
    _run_in_process(**options)
    train.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows[::-1]))
    with pytest.raises(UserError, match=r"holds a run trained on other data "
                       r"\(train_file_sha256 changed.*--restart"):
        _run_in_process(**options)
    _run_in_process(**options, restart=True)  # as the message says


def test_sentence_pairs_train_export_and_predict(tiny_preset, tmp_path):
    """Pairs: label "same" when both texts have the same sentiment word."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from sst2.predict import predict_lines
    from sst2.run.command_config import ReadingConfig
    from sst2.serve.evaluation import predict_split
    from sst2.serve.trained import restore

    rng = np.random.default_rng(0)
    words = {0: ["bad", "dull", "awful"], 1: ["good", "great", "superb"]}
    lines = ["premise\thypothesis\tlabel"]
    for i in range(160):
        a, b = rng.integers(0, 2, 2)
        lines.append(f"the film is {rng.choice(words[a])}\tthe story is very "
                     f"{rng.choice(words[b])}\t{'same' if a == b else 'different'}")
    (tmp_path / "train.tsv").write_text("\n".join(lines[:129]) + "\n")
    (tmp_path / "dev.tsv").write_text("\n".join([lines[0]] + lines[129:]) + "\n")
    model_dir = tmp_path / "run"
    _run_in_process(train_file=str(tmp_path / "train.tsv"), eval_file=str(tmp_path / "dev.tsv"),
                    text_column="premise,hypothesis", preset=tiny_preset, sequence_length=16,
                    epochs=2, pooling="mean", model_dir=str(model_dir))
    metrics = load_json(model_dir / "metrics.json")
    assert (metrics["train_examples"], metrics["eval_examples"]) == (128, 32)
    assert metrics["dataset"]["text_features"] == ["premise", "hypothesis"]
    export_dir = metrics["export_dir"]
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    assert sorted(serve.structured_input_signature[1]) == ["text", "text_pair"]
    dev = [line.split("\t") for line in lines[129:]]
    served = serve(text=tf.constant([d[0] for d in dev]),
                   text_pair=tf.constant([d[1] for d in dev]))
    assert served["probabilities"].shape == (32, 2)
    trained = restore(str(model_dir))
    in_process = predict_split(trained, "validation", reading=ReadingConfig(),
                               show_progress=False)
    np.testing.assert_allclose(served["probabilities"].numpy(), in_process["probabilities"],
                               atol=1e-5)
    result = run_module("sst2.predict", f"--export_dir={export_dir}", "--json",
                        "a good film\tit is great", "a good film\tit is dull")
    assert result.returncode == 0, result.stderr[-2000:]
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    # What predict prints is what the export answers for these pairs.
    pairs = serve(text=tf.constant(["a good film", "a good film"]),
                  text_pair=tf.constant(["it is great", "it is dull"]))
    assert [a["label"] for a in answers] == [y.decode() for y in pairs["label"].numpy()]
    np.testing.assert_allclose([a["probabilities"] for a in answers],
                               pairs["probabilities"].numpy(), atol=1e-6)
    # Every line is answered; a line without a tab gets an error of its own (issue 25, 26).
    answered = list(predict_lines(export_dir, ["a\tb", "no tab here", "c\td"]))
    assert [("label" in a, "error" in a) for a in answered] == [(1, 0), (0, 1), (1, 0)]
    result = run_module("sst2.predict", f"--export_dir={export_dir}", "a\tb", "no tab", "c\td")
    assert result.returncode == 2 and len(result.stdout.splitlines()) == 2
    assert "error: argument 2: no tab: this model classifies sentence pairs" in result.stderr
    assert any("1 of 3 arguments were not answered" in line
               for line in error_lines(result.stderr)), result.stderr[-2000:]
