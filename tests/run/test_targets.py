"""Every kind of target, by its pieces: labels read from files (a separated column, a JSON
list, 0/1 columns, names from a file), the task inferred, thresholds, metrics, losses,
and pairs encoded apart. (End to end: tests/cli/test_targets_e2e.py.)"""

import os

import numpy as np
import pytest

from sst2.run import metrics, targets
from sst2.run.config import DataConfig
from sst2.run.errors import UserError
from sst2.text.datasets import open_dataset
from tests.helpers import REPO

DATA = os.path.join(REPO, "tests", "data")


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)


def test_goemotions_slice_is_multi_label_with_names_from_labels_txt():
    dataset = open_dataset(DataConfig(
        train_file=os.path.join(DATA, "goemotions", "train.tsv"),
        eval_file=os.path.join(DATA, "goemotions", "dev.tsv"),
        label_names_file=os.path.join(DATA, "goemotions", "labels.txt")))
    info = dataset.info
    assert info.task == "multi_label" and info.num_classes == 28 and info.num_outputs == 28
    assert info.label_names[0] == "admiration" and info.label_names[27] == "neutral"
    arrays = dataset.arrays("train")
    assert arrays["label"].shape == (300, 28)
    # Line 2 of train.tsv is labelled "27" (neutral); rows with "a,b" get both.
    assert arrays["label"][0].tolist() == [0] * 27 + [1]
    with open(os.path.join(DATA, "goemotions", "train.tsv"), encoding="utf-8") as f:
        raw = [line.rstrip("\n").split("\t")[1] for line in f][1:]
    for row, ids in zip(arrays["label"], raw):
        assert sorted(np.flatnonzero(row).tolist()) == sorted(int(i) for i in ids.split(","))


def test_the_three_multi_label_layouts_give_the_same_targets(tmp_path):
    separated = write(tmp_path / "a.csv", 'text,label\nx,"joy,love"\ny,anger\nz,love\n')
    listed = write(tmp_path / "b.jsonl", '{"text": "x", "label": ["joy", "love"]}\n'
                   '{"text": "y", "label": ["anger"]}\n{"text": "z", "label": ["love"]}\n')
    columns = write(tmp_path / "c.tsv", "text\tanger\tjoy\tlove\nx\t0\t1\t1\ny\t1\t0\t0\n"
                    "z\t0\t0\t1\n")
    found = []
    for path, column in ((separated, None), (listed, None), (columns, "anger,joy,love")):
        dataset = open_dataset(DataConfig(train_file=path, label_column=column))
        assert dataset.info.task == "multi_label"
        assert dataset.info.label_names == ("anger", "joy", "love")
        found.append(dataset.arrays("train")["label"].tolist())
    assert found[0] == found[1] == found[2] == [[0, 1, 1], [1, 0, 0], [0, 0, 1]]


def test_the_task_is_inferred_and_said_and_can_be_forced(said, tmp_path):
    scores = write(tmp_path / "s.csv", "text,label\na,3.8\nb,0.5\nc,5\n")
    dataset = open_dataset(DataConfig(train_file=scores))
    assert dataset.info.task == "regression" and dataset.info.label_names == ()
    assert dataset.arrays("train")["label"].dtype == np.float32
    assert any("regression (inferred" in line and "--task" in line for line in said)
    stars = write(tmp_path / "stars.csv", "text,label\na,1\nb,5\nc,3\n")
    assert open_dataset(DataConfig(train_file=stars)).info.task == (
        "single_label")
    forced = open_dataset(DataConfig(train_file=stars, task="regression"))
    assert forced.arrays("train")["label"].tolist() == [1.0, 5.0, 3.0]


@pytest.mark.parametrize("text, task, message", [
    ("text,label\na,3.8\nb,high\n", "regression", "line 3: the label 'high' is not a finite"),
    ("text,label\na,inf\nb,2\n", "regression", "is not a finite number"),
    ("text,label\na,joy\nb,love\n", "multi_label", None),
    ("text,label\na,\"joy,sad\"\nb,love\n", "single_label", None),
])
def test_labels_a_task_cannot_read_are_one_clear_error(tmp_path, text, task, message):
    path = write(tmp_path / "t.csv", text)
    if message is None:  # readable: a single label is a one-label set; "joy,sad" one class
        open_dataset(DataConfig(train_file=path, task=task))
        return
    with pytest.raises(UserError, match=message):
        open_dataset(DataConfig(train_file=path, task=task))


def test_an_unknown_label_in_the_eval_file_names_its_line(tmp_path):
    train = write(tmp_path / "t.csv", 'text,label\na,"joy,love"\nb,anger\n')
    dev = write(tmp_path / "d.csv", 'text,label\na,joy\nb,"anger,fear"\n')
    dataset = open_dataset(DataConfig(train_file=train, eval_file=dev))
    with pytest.raises(UserError, match=r"line 3: label 'fear' is not one of the 3 labels"):
        dataset.arrays("validation")


def test_several_label_columns_hold_zeros_and_ones(tmp_path):
    path = write(tmp_path / "t.csv", "text,a,b\nx,1,yes\n")
    with pytest.raises(UserError, match="column 'b' holds 'yes'"):
        open_dataset(DataConfig(train_file=path, label_column="a,b"))


def test_tuned_thresholds_maximize_each_labels_f1_and_none_is_a_possible_answer():
    rng = np.random.default_rng(0)
    labels = (rng.random((400, 3)) < [0.05, 0.3, 0.6]).astype(np.int32)
    probabilities = np.clip(labels * 0.3 + rng.random((400, 3)) * 0.6, 0, 1)
    tuned = metrics.tune_thresholds(probabilities, labels)
    for j in range(3):  # no other threshold gives that label a higher F1
        def f1(t):
            p = probabilities[:, j] >= t
            tp = (p & (labels[:, j] == 1)).sum()
            return 2 * tp / (p.sum() + labels[:, j].sum())
        assert f1(tuned[j]) >= max(f1(t) for t in np.unique(probabilities[:, j])) - 1e-12
    scores = metrics.multi_label_scores(probabilities, labels)
    assert scores["macro_f1"] >= scores["macro_f1_at_half"]
    # A text with no probability above its thresholds gets no label, not a fallback.
    strict = metrics.multi_label_scores(probabilities, labels, np.full(3, 0.99))
    assert strict["micro_f1"] == 0.0


def test_regression_metrics_match_their_definitions():
    rng = np.random.default_rng(1)
    labels = rng.random(50) * 5
    scores = labels + rng.normal(0, 1, 50)
    scores[:5] = scores[5]  # ties share their rank
    found = metrics.regression_scores(scores, labels)
    assert found["pearson"] == pytest.approx(np.corrcoef(scores, labels)[0, 1], abs=1e-12)
    assert found["mse"] == pytest.approx(np.mean((scores - labels) ** 2))
    # Spearman: the Pearson correlation of the ranks (average ranks for ties).
    order = np.argsort(np.argsort(labels))
    assert found["spearman"] == pytest.approx(
        np.corrcoef(metrics._ranks(scores), order + 1)[0, 1], abs=1e-12)
    assert metrics._ranks(np.array([3.0, 1.0, 3.0])).tolist() == [2.5, 1.0, 2.5]


def test_losses_and_outputs_of_each_target():
    import tensorflow as tf

    from sst2.model import target_math

    logits = tf.constant([[1.0, -1.0], [0.0, 2.0]])
    bce = target_math.loss(targets.TARGETS["multi_label"], logits, tf.constant([[1, 0], [0, 1]]))
    expected = np.mean(np.log1p(np.exp(-np.array([[1.0, 1.0], [0.0, 2.0]]))), axis=1)
    np.testing.assert_allclose(bce.numpy(), expected, rtol=1e-6)
    weighted = target_math.loss(targets.TARGETS["multi_label"], logits,
                                tf.constant([[1, 0], [0, 1]]), tf.constant([3.0, 1.0]))
    assert weighted.numpy()[0] > bce.numpy()[0] and weighted.numpy()[1] == bce.numpy()[1]
    scale = targets.TargetScale(mean=2.0, std=0.5)
    mse = target_math.loss(targets.TARGETS["regression"], tf.constant([[0.0], [2.0]]),
                           tf.constant([2.0, 2.5]), scale=scale)
    np.testing.assert_allclose(mse.numpy(), [0.0, 1.0])
    score = target_math.outputs(targets.TARGETS["regression"], tf.constant([[2.0]]), scale)
    assert score.numpy().tolist() == [3.0]
    multi_label = targets.TARGETS["multi_label"]
    assert multi_label.class_weights(np.array([[1, 0], [0, 0]]), 2).tolist() == [1.0, 1.0]


def test_best_metric_must_be_one_the_task_reports():
    assert targets.best_metric("auto", "multi_label") == "macro_f1"
    assert targets.best_metric("spearman", "regression") == "spearman"
    with pytest.raises(UserError, match="a regression run reports loss, pearson"):
        targets.best_metric("accuracy", "regression")
    with pytest.raises(UserError, match="f1"):
        targets.best_metric("f1", "single_label", num_classes=5)


def test_pairs_encoded_apart_share_each_distinct_sentence(tiny_preset):
    import tensorflow as tf

    from sst2.fit.inputs import tokenize_pairs_apart
    from sst2.model import presets

    pairs = tf.data.Dataset.from_tensor_slices({
        "idx": [0, 1, 2], "label": [1.0, 2.0, 3.0],
        "text": ["a cat", "a dog", "a cat"], "text_pair": ["a dog", "a cat", "a bird"]})
    tokens = tokenize_pairs_apart(pairs, presets.load_preprocessor(tiny_preset, 16))
    assert len(tokens["sentences"]["token_ids"]) == 3  # cat, dog, bird: once each
    assert tokens["first"].tolist() == [0, 1, 0] and tokens["second"].tolist() == [1, 0, 2]
    lengths = tokens["sentences"]["length"]
    assert tokens["length"].tolist() == [max(lengths[a], lengths[b]) for a, b in
                                         zip(tokens["first"], tokens["second"])]
    assert tokens["label"].dtype == np.float32


def test_a_pair_source_feeds_both_sides_in_the_same_rows():
    from sst2.fit.sources import CachedPairSource
    from sst2.model.feature_store import FeatureSet

    sentences = FeatureSet(np.arange(4, dtype=np.float16)[:, None, None] * np.ones((4, 1, 3),
                                                                                    np.float16),
                           np.zeros(4, np.int32), np.arange(4, dtype=np.int32))
    pairs = {"first": np.array([0, 2, 3]), "second": np.array([1, 1, 0]),
             "label": np.array([0, 1, 1], np.int32), "idx": np.arange(3, dtype=np.int32),
             "length": np.ones(3, np.int32)}
    source = CachedPairSource(sentences, pairs, batch_size=4, boundaries=None, shuffle=False)
    batch = source.batch(0, 0)
    assert batch.features["first"][:3, 0, 0].tolist() == [0, 2, 3]
    assert batch.features["second"][:3, 0, 0].tolist() == [1, 1, 0]
    assert batch.weights.tolist() == [1, 1, 1, 0]
    element = next(iter(source.dataset(0)))
    assert element[0]["first"].shape == (4, 1, 3)


def test_label_names_file_and_label_names_are_one_or_the_other(tmp_path):
    names = write(tmp_path / "labels.txt", "a\nb\n\n")
    with pytest.raises(UserError, match="give one of them"):
        DataConfig(label_names="a,b", label_names_file=names)
    bad = write(tmp_path / "bad.txt", "a\na\n")
    train = write(tmp_path / "t.csv", "text,label\nx,0\ny,1\n")
    with pytest.raises(UserError, match="each once"):
        open_dataset(DataConfig(train_file=train, label_names_file=bad))
    named = open_dataset(DataConfig(train_file=train, label_names_file=names))
    assert named.info.label_names == ("a", "b")


@pytest.mark.slow
@pytest.mark.parametrize("task", ["multi_label", "regression"])
def test_a_resumed_run_of_another_target_is_the_uninterrupted_run(tiny_preset, tmp_path, task):
    """Two epochs straight, and one epoch then a resume to two (a constant rate): the same
    records and the same thresholds, bit for bit."""
    from sst2.run.config import TrainConfig
    from tests.helpers import TINY_SEQUENCE_LENGTH
    from tests.helpers import train as run

    rng = np.random.default_rng(0)
    words = ["good", "bad", "film", "plot", "dull", "great", "actor", "slow"]
    rows = []
    for i in range(48):
        text = " ".join(rng.choice(words, 5))
        tags = sorted({w for w in text.split() if w in ("good", "bad", "dull")}) or ["none"]
        score = text.count("good") - text.count("bad") + 2.5
        label = f'"{",".join(tags)}"' if task == "multi_label" else f"{score:.2f}"
        rows.append(f"{text},{label}")
    train = write(tmp_path / "train.csv", "text,label\n" + "\n".join(rows[:36]) + "\n")
    dev = write(tmp_path / "dev.csv", "text,label\n" + "\n".join(rows[36:]) + "\n")

    def train_for(model_dir, epochs):
        return run(TrainConfig.from_options(
            train_file=train, eval_file=dev, preset=tiny_preset, model_dir=str(model_dir),
            sequence_length=TINY_SEQUENCE_LENGTH, epochs=epochs, batch_size=8,
            lr_schedule="constant", progress=False, export=False))

    straight = train_for(tmp_path / "straight", 2)
    train_for(tmp_path / "resumed", 1)
    resumed = train_for(tmp_path / "resumed", 2)

    def without_times(records):
        return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in records]

    assert without_times(straight["epochs"])[1] == without_times(resumed["epochs"])[-1]
    assert straight["test"] == resumed["test"]
    if task == "multi_label":
        assert "thresholds" in straight["test"] and "val_thresholds" in straight["epochs"][0]


@pytest.mark.parametrize("name", list(targets.TARGETS))
def test_every_kind_of_target_keeps_the_contract(name):
    """What every module asks of a target, on one batch: a new kind passes this too."""
    import tensorflow as tf

    from sst2.model import target_math
    from sst2.serve.graph import answers as answering

    target = targets.TARGETS[name]
    assert target.name == name and target.labels in targets.INFERRED
    assert (targets.INFERRED[target.labels] == name) == target.inferred
    assert sum(t.inferred for t in targets.TARGETS.values() if t.labels == target.labels) == 1
    assert target.default_metric in target.reported(2) and set(target.metrics) <= set(
        metrics.METRICS)
    names = ("a", "b", "c")
    units = target.units(len(names))
    logits = tf.constant(np.random.default_rng(0).normal(size=(4, units)), tf.float32)
    labels = ({"classes": np.array([0, 1, 2, 1]), "numbers": np.array([0.5, 1.0, 2.0, 3.0]),
               "label_sets": np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])}
              [target.labels])
    assert target_math.loss(target, logits, tf.constant(labels)).shape == (4,)
    outputs = target_math.outputs(target, logits)
    # One head's mean is itself: the ensemble's logits answer what the head answers.
    again = target_math.outputs(target, target_math.mean_of_heads(target, logits[None]))
    np.testing.assert_allclose(again.numpy(), outputs.numpy(), rtol=1e-5, atol=1e-6)
    thresholds = tf.fill([units], 0.5) if target.thresholded else None
    answer = answering.DECISIONS[target.decision].outputs(outputs, names, ",", thresholds)
    assert tuple(answer) == target.export_outputs
    answers = {key: value.numpy() for key, value in answer.items()}
    record = target.record(answers, 0, names)
    assert record and all(isinstance(key, str) for key in record)
    # An artifact without strings (OpenVINO) leaves the names to its client: the same ones.
    numbers = {key: value for key, value in answers.items() if value.dtype.kind not in "OSU"}
    named = target.name_answers(numbers, names, ",")
    assert set(named) == set(target.export_outputs)
    for key, value in named.items():
        assert [x.decode() if isinstance(x, bytes) else x for x in answers[key].tolist()] == (
            value.tolist()), key
    assert target.agrees(answers, answers).all()
    assert target.agreement(answers, answers)["answers_equal"] == 1.0
    # What word attributions explain: a column per explained quantity, chosen per text.
    explained = answering.explained(target, outputs, answer)
    columns = answering.explained_columns(target, answer)
    assert explained.shape == columns.shape and explained.shape[0] == 4
    assert columns.dtype == tf.bool and columns.shape[1] == (units if target.explains_each_label
                                                             else 1)
    scored = target.score(answers[target.answer], labels,
                          thresholds.numpy() if thresholds is not None else None)
    assert set(target.reported(len(names))) - {"loss"} <= set(scored) | {"pearson", "spearman"}
    assert scored["examples"] == 4
    assert target.describe_labels(len(names), {"mean": 0.0, "std": 1.0})
