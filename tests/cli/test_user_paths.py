"""Issue 35 (hostile round 3): the paths users really take. Relative run folders, messy
numbers in label columns, tiny validation sets. Each test reproduces its case on the code
before the fix."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from sst2.run.errors import UserError
from tests.helpers import tiny_head_and_optimizer


def test_a_relative_run_folder_keeps_its_best_checkpoint(said, tmp_path, monkeypatch):
    """Case 1: the default `--model_dir` is relative; its checkpoint indexes were set aside
    as 'outside the folder' on every start, so the best checkpoint was never found."""
    from sst2.fit.checkpoint import RunCheckpoint
    from sst2.fit.loop import Position

    monkeypatch.chdir(tmp_path)
    head, optimizer = tiny_head_and_optimizer()
    first = RunCheckpoint("runs/rel", head, optimizer, keep=3)
    first.save_if_best(Position(epoch=1, step=10), 0.9)   # the best: epoch 1
    first.save(Position(epoch=1, step=10))
    first.save_if_best(Position(epoch=2, step=20), 0.5)   # not better
    first.save(Position(epoch=2, step=20))

    said.clear()
    again = RunCheckpoint("runs/rel", head, optimizer, keep=3)
    assert said == []
    assert sorted(os.listdir("runs/rel/best")) == [
        "best-10.data-00000-of-00001", "best-10.index", "checkpoint"]
    assert os.path.basename(again.restore_best()) == "best-10"
    assert again.restore_latest()[0] == Position(epoch=2, batch=0, step=20)


def test_a_best_checkpoint_whose_index_was_set_aside_is_still_found(tmp_path):
    """Runs damaged by case 1 before the fix: `best/checkpoint` renamed away."""
    from sst2.fit.checkpoint import RunCheckpoint
    from sst2.fit.loop import Position

    head, optimizer = tiny_head_and_optimizer()
    run = str(tmp_path / "run")
    checkpoint = RunCheckpoint(run, head, optimizer, keep=3)
    checkpoint.save_if_best(Position(epoch=1, step=10), 0.9)
    checkpoint.save(Position(epoch=2, step=20))
    os.replace(os.path.join(run, "best", "checkpoint"),
               os.path.join(run, "best", "checkpoint.unreadable"))
    again = RunCheckpoint(run, head, optimizer, keep=3)
    assert os.path.basename(again.restore_best()) == "best-10"


# --- Messy numbers in a label column (cases 3-7, 16, 17) ----------------------------


def _scores_file(tmp_path, scores, name="train.csv"):
    """A CSV of texts and `scores` (strings as a user's file holds them)."""
    path = tmp_path / name
    path.write_text("text,score\n" + "".join(
        f"sentence {i},\"{score}\"\n" for i, score in enumerate(scores)), encoding="utf-8")
    return str(path)


def _open(train_file, eval_file=None, **options):
    from sst2.run.config import DataConfig
    from sst2.text.datasets import open_dataset

    return open_dataset(DataConfig(train_file=train_file, eval_file=eval_file,
                                   label_column="score", **options))


DECIMALS = [f"{0.1 * i + 0.05:.2f}" for i in range(60)]


@pytest.mark.parametrize("bad", ["nan", "inf", "-Infinity", "1e400", "n/a"])
def test_one_bad_value_never_turns_a_score_column_into_classes(tmp_path, bad):
    """Case 3: one `nan` made 60 decimal scores a 61-class classifier."""
    scores = DECIMALS[:40] + [bad] + DECIMALS[40:]
    with pytest.raises(UserError, match=r"train\.csv: line 42: the label .* finite number.*"
                                        r"decimal numbers \(line 2"):
        _open(_scores_file(tmp_path, scores))
    with pytest.raises(UserError, match=r"line 42: .*not a finite number"):
        _open(_scores_file(tmp_path, scores), task="regression")


def test_a_nan_among_integer_class_ids_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"line 4: the label 'nan' is not a finite number"):
        _open(_scores_file(tmp_path, ["0", "1", "nan", "1", "0"]))


@pytest.mark.parametrize("huge,why", [("1e39", "beyond 1e\\+18"), ("-3e30", "beyond 1e\\+18")])
def test_scores_beyond_float32s_squares_are_refused_by_line(tmp_path, huge, why):
    """Cases 4 and 5: 1e39 overflowed float32 (a NaN model, exit 0); 1e30 overflowed the
    MSE summary after epoch 1 (a traceback)."""
    scores = DECIMALS[:5] + [huge] + DECIMALS[5:]
    for task in ("auto", "regression"):
        with pytest.raises(UserError, match=rf"line 7: the label '{huge}' is {why}.*rescale"):
            _open(_scores_file(tmp_path, scores), task=task)


def test_a_constant_score_is_refused(tmp_path):
    """Case 6: every score 2.5 trained (std 1e-06) and exported."""
    with pytest.raises(UserError, match=r"every example's target is 2\.5 \(one value only\)"):
        _open(_scores_file(tmp_path, ["2.5"] * 20))


def test_decimal_commas_are_named_where_they_are(said, tmp_path):
    """Case 7: `3,5` scores were inferred multi-label without a word, then the eval file
    was blamed."""
    train = _scores_file(tmp_path, ["3,5", "2,0", "4,5", "1,0", "5,0", "0,5"] * 3)
    dev = _scores_file(tmp_path, ["2,75", "3,5"], name="dev.csv")
    dataset = _open(train, dev)
    assert dataset.info.task == "multi_label"
    assert any(f"inferred from {train}: line 2's label '3,5'" in m and "decimal comma" in m
               for m in said), said
    with pytest.raises(UserError, match=rf"dev\.csv: line 2: .*inferred from the labels of "
                                        rf"{train}.*decimal comma"):
        dataset.arrays("validation")
    # Sparse ids (up to 75 of which most never occur) are refused at the training file.
    sparse = _scores_file(tmp_path, ["3,5", "2,75", "4,25", "1,0", "3,45"] * 3, "sparse.csv")
    with pytest.raises(UserError, match=r"sparse\.csv: .*largest, 75 \(line 3\).*decimal comma"):
        _open(sparse)


def test_a_cell_of_separators_alone_is_refused_as_an_empty_one(tmp_path):
    """Case 16."""
    path = tmp_path / "train.csv"
    path.write_text('text,score\na,"joy,anger"\nb,joy\nc,","\nd,anger\n')
    with pytest.raises(UserError, match=r"line 4: the label cell ',' names no label"):
        _open(str(path))


def test_a_label_names_file_with_the_separator_in_a_name_is_refused(tmp_path):
    """Case 17."""
    path = tmp_path / "train.csv"
    path.write_text('text,score\na,"joy,anger"\nb,joy\nd,anger\n')
    names = tmp_path / "labels.txt"
    names.write_text("joy\nanger,rage\n")
    with pytest.raises(UserError, match=r"'anger,rage' holds the label separator ','"):
        _open(str(path), label_names_file=str(names))


# --- A loss or metric that is not finite (case 4), undefined correlations (15), a run
# stopped inside epoch 1 (14) -----------------------------------------------------------


def test_a_non_finite_loss_stops_the_run_before_any_checkpoint_holds_it(tmp_path):
    """Case 4: NaN weights were saved, counted as best (Pearson 0.0) and exported."""
    from sst2.fit import sources
    from sst2.fit.callbacks import CheckpointCallback
    from sst2.fit.checkpoint import RunCheckpoint
    from sst2.fit.loop import NonFiniteError, fit
    from sst2.fit.steps import Trainer
    from sst2.model import feature_store
    from sst2.model.head import ClassifierHead

    head = ClassifierHead(hidden_units=0)
    trainer = Trainer(head, keras.optimizers.Adam(1e-2), batch_size=4)
    trainer.build(feature_shape=(1, 8))
    features = np.eye(8, dtype=np.float16)[:, None].repeat(2, axis=0)
    features[12] = np.inf          # the fourth batch of the first epoch (no shuffle)
    cached = feature_store.FeatureSet(features, np.arange(16, dtype=np.int32) % 2,
                                      np.arange(16))
    source = sources.CachedFeatureSource(cached, batch_size=4, seed=0, shuffle=False)
    checkpoint = RunCheckpoint(str(tmp_path), head, trainer.optimizer, keep=10)
    saving = CheckpointCallback(checkpoint=checkpoint, every_steps=1)
    with pytest.raises(NonFiniteError, match=r"training loss became nan by step 4 \(epoch 1\)"):
        fit(trainer, source, source, epochs=2, callbacks=[saving], show_progress=False)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == sorted(
        ["checkpoint"] + [f"ckpt-{s}.{x}" for s in (1, 2, 3)
                          for x in ("index", "data-00000-of-00001")])
    assert not os.path.exists(tmp_path / "best")
    assert isinstance(NonFiniteError("x"), UserError)  # one error line, exit status 2


def test_an_undefined_correlation_is_undefined_not_zero():
    """Case 15: one validation example (or constant predictions) scored Pearson 0.0000."""
    from sst2.run import metrics, targets

    for scores, labels in (([1.0], [2.0]), ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])):
        found = metrics.regression_scores(np.array(scores), np.array(labels))
        assert found["pearson"] is None and found["spearman"] is None
        assert "pearson" not in targets.TARGETS["regression"].score(np.array(scores),
                                                                  np.array(labels))
    assert np.isnan(metrics.regression_scores(np.array([np.nan, 1.0]),
                                              np.array([1.0, 2.0]))["pearson"])


def _info(task):
    from sst2.text.dataset_info import DatasetInfo

    return DatasetInfo("files", ("a", "b", "c") if task != "regression" else (), ("text",), {},
                       task=task)


def test_the_model_card_shows_undefined_metrics_and_runs_that_finished_no_epoch():
    """Cases 14 and 15: `| epoch |  |` for a run stopped in epoch 1; Pearson 0.0 recorded
    where it is undefined."""
    from sst2.serve.model_card import _evaluation_table

    lines = _evaluation_table({"epochs": [{"epoch": 1, "best": True, "val_loss": 0.5,
                                           "val_mse": 0.25}]}, _info("regression"))
    assert lines[0] == "| epoch | loss | pearson | spearman | mse |"
    assert lines[2] == "| 1 (kept) | 0.5000 | undefined | undefined | 0.2500 |"
    stopped = _evaluation_table({"epochs": []}, _info("multi_label"))
    assert len(stopped) == 1 and "No epoch finished" in stopped[0]
    assert "thresholds are not tuned" in stopped[0]


# --- Calibration on small validation sets (case 8) -------------------------------------


def _overconfident(n, temperature=2.5, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, 2))
    true = np.exp(logits / temperature)
    true /= true.sum(1, keepdims=True)
    labels = np.array([rng.choice(2, p=p) for p in true])
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True), labels


def test_a_temperature_is_folded_in_only_where_it_can_be_trusted():
    """Case 8: one validation example gave T = 0.02 (a neutral text at p = 0.99987)."""
    from sst2.serve import temperature as calibration

    one = calibration.calibrate(np.array([[0.6, 0.4]]), np.array([0]))
    assert one["temperature"] == 1.0 and not one["applied"]
    assert "1 validation examples, fewer than the 100" in one["reason"]
    assert one["fitted_temperature"] < 0.1           # what would have been folded in
    assert one["ece_after"] == one["ece_before"]
    # Enough examples of a model overconfident by 2.5: cross-fitting confirms it.
    probabilities, labels = _overconfident(400)
    found = calibration.calibrate(probabilities, labels)
    assert found["applied"] and found["temperature"] == pytest.approx(2.5, rel=0.25)
    assert found["cross_fitted_nll"] < found["nll_before"]
    # A calibrated model: a temperature fitted on 150 examples does not help held-out ones.
    probabilities, labels = _overconfident(150, temperature=1.0, seed=3)
    kept = calibration.calibrate(probabilities, labels)
    assert kept["temperature"] == 1.0 and not kept["applied"], kept
    assert "within twice its standard error" in kept["reason"]


# --- A search's space as the flags give it (case 9) ------------------------------------


def _search_config(*argv):
    from absl import flags

    from sst2 import cli
    from sst2.run.search_config import SearchConfig

    flag_values = flags.FlagValues()
    cli.define_flags(SearchConfig, flag_values)
    flag_values(["sst2.search", *argv])
    return cli.config_from_flags(SearchConfig, flag_values)


def test_a_searchable_flag_given_once_is_its_only_value():
    """Case 9: `--learning_rate=3e-3 --dropout=0.3` searched the default 16."""
    from sst2.run.search_config import DEFAULT_SPACE

    config = _search_config("--learning_rate=3e-3", "--dropout=0.3")
    assert config.searched_space() == {"learning_rate": [0.003], "dropout": [0.3]}
    assert config.optimization.learning_rate == 0.003
    assert _search_config("--learning_rate=1e-3,4e-3").searched_space() == {
        "learning_rate": [0.001, 0.004]}
    assert _search_config().searched_space() == DEFAULT_SPACE
    with pytest.raises(UserError, match=r"--learning_rate=1e-3,,: an empty value"):
        _search_config("--learning_rate=1e-3,,")
    with pytest.raises(UserError, match=r"every value must be an int"):
        _search_config("--seed=1,x")


# --- GLUE tasks without network (case 10) ------------------------------------------------


@pytest.mark.parametrize("task", ["glue/cola", "glue/stsb"])
def test_a_glue_task_without_network_fails_at_once_naming_prepare_data(tmp_path, monkeypatch,
                                                                        task):
    """Case 10: 3 min 24 s of tfds retries, then advice the README does not give."""
    from sst2.text import glue
    from sst2.text.datasets import TfdsDataset

    asked = []
    monkeypatch.setattr(glue, "can_reach", lambda url, timeout=3.0: asked.append(url) or False)
    with pytest.raises(UserError, match=rf"{task} is not prepared in {tmp_path} and "
                                        r"dl\.fbaipublicfiles\.com cannot be reached.*"
                                        rf"python -m sst2\.prepare_data --dataset={task} "
                                        rf"--glue=FOLDER --data_dir={tmp_path}"):
        TfdsDataset(task, data_dir=str(tmp_path))
    assert asked and asked[0].endswith(".zip")
    assert os.listdir(tmp_path) == []          # nothing downloaded or left behind


# --- A damaged precision cache (case 11) -------------------------------------------------


@pytest.mark.parametrize("damage", ["[1,2]", "\"bfloat16\"", "null", "folder"])
def test_a_precision_record_that_is_not_an_object_is_measured_again(tmp_path, monkeypatch,
                                                                     damage):
    """Case 11: `[1,2]` gave a traceback, a folder in its place IsADirectoryError."""
    import hashlib
    import json

    from sst2.model import precision

    monkeypatch.setenv("SST2_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(precision.FORCE, raising=False)
    monkeypatch.setattr(precision, "measure", lambda shape, kind="encode": {
        "float32": 2.0, "bfloat16": 1.0})
    shape = precision.LayerShape(16, 2, 32)
    key = precision.machine_key(shape, "encode")
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = tmp_path / "precision" / f"encode-{name}.json"
    path.parent.mkdir()
    if damage == "folder":
        path.mkdir()
    else:
        path.write_text(damage)
    assert precision.verdict(shape, "encode")["precision"] == "bfloat16"


# --- prepare_data on GLUE files with the wrong columns (case 12), a folder that is not
# there (case 20) ------------------------------------------------------------------------


def _stsb_folder(folder, header):
    folder.mkdir()
    rows = ["0\tA plane is taking off.\tAn air plane is taking off.\t5.0",
            "1\tA man plays a flute.\tA man plays a guitar.\t1.5"]
    for name in ("train.tsv", "dev.tsv"):
        (folder / name).write_text("\n".join([header] + rows) + "\n")
    (folder / "test.tsv").write_text("index\tsentence1\tsentence2\n0\ta\tb\n")
    return folder


def test_prepare_data_names_the_missing_column_and_leaves_nothing(tmp_path):
    """Case 12: a bare KeyError "'sentence1'", and glue/stsb, glue/.config and
    downloads/extracted left behind."""
    from sst2.text.glue_local import prepare_glue_task

    data_dir = tmp_path / "tfds"
    wrong = _stsb_folder(tmp_path / "wrong", "index\ttext_a\ttext_b\tscore")
    with pytest.raises(UserError, match=r"wrong/train\.tsv: its first line has no column "
                                        r"'sentence1' .*glue/stsb reads sentence1, "
                                        r"sentence2, score"):
        prepare_glue_task("glue/stsb", str(wrong), str(data_dir))
    assert not data_dir.exists()
    # A failure tfds finds itself (a score that is not a number) leaves nothing either,
    # in a data dir that holds something already.
    data_dir.mkdir()
    (data_dir / "keep.txt").write_text("mine")
    bad = _stsb_folder(tmp_path / "bad", "index\tsentence1\tsentence2\tscore")
    (bad / "train.tsv").write_text("index\tsentence1\tsentence2\tscore\n0\ta\tb\thigh\n")
    with pytest.raises(UserError, match="tfds could not build glue/stsb"):
        prepare_glue_task("glue/stsb", str(bad), str(data_dir))
    assert os.listdir(data_dir) == ["keep.txt"]
    with pytest.raises(UserError, match=r"--glue=/nonexistent: no such folder"):
        prepare_glue_task("glue/stsb", "/nonexistent", str(data_dir))


def test_the_report_cuts_a_long_text_with_an_ellipsis():
    """Case 18: a 100 KB line filled thousands of pixels of the report."""
    import re

    from sst2.serve.report import TEXT_SHOWN, shaded

    def visible(page):
        return re.sub(r"<[^>]+>", "", page)

    long_line = "word " * 20_000
    shown = visible(shaded(long_line.split(), [0.1] * 20_000))
    assert shown.endswith("…") and len(shown) <= TEXT_SHOWN + 1
    assert long_line.startswith(shown[:-1])
    assert visible(shaded(["x" * 1000], [0.0])) == "x" * TEXT_SHOWN + "…"  # no space to cut at
    assert visible(shaded(["fits", "whole"], [0.1, 0.2])) == "fits whole"


# --- The README's command as a user runs it: a relative run folder (cases 1, 8) ----------


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
