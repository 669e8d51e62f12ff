"""Every source yields the same element shape: tfds (glue/sst2 or any), and local files,
including sentence pairs; pairs pack as keras-hub packs them, in training and serving."""

import os

import numpy as np
import pytest
import tensorflow as tf

from sst2.model import presets
from sst2.run.config import DataConfig
from sst2.run.errors import UserError
from sst2.serve.graph import packing
from sst2.text import data, glue
from sst2.text.dataset_info import SST2_INFO
from sst2.text.datasets import FileDataset, TfdsDataset, open_dataset


def test_glue_sst2_is_the_default_and_unchanged(tiny_data_dir):
    dataset = open_dataset(DataConfig(data_dir=tiny_data_dir))
    assert dataset.info == SST2_INFO
    raw = list(glue.load_split("validation", tiny_data_dir).as_numpy_iterator())
    ours = list(dataset.load("validation").as_numpy_iterator())
    assert [(r["idx"], r["sentence"], r["label"]) for r in raw] == [
        (o["idx"], o["text"], o["label"]) for o in ours]
    named = open_dataset(DataConfig(data_dir=tiny_data_dir, text_column="sentence",
                                    label_column="label"))
    assert named.info == SST2_INFO and named.size("validation") == 64


def test_tfds_features_are_checked(tiny_data_dir):
    with pytest.raises(UserError, match=r"glue/sst2 has no text feature 'review'; its text "
                       r"features are sentence. Name one with --text_column"):
        TfdsDataset("glue/sst2", tiny_data_dir, text_features=("review",))
    with pytest.raises(UserError, match="no label feature 'stars'"):
        TfdsDataset("glue/sst2", tiny_data_dir, label_feature="stars")
    with pytest.raises(UserError, match="--dataset='no_such_dataset_xyz': tfds has no such"):
        TfdsDataset("no_such_dataset_xyz", tiny_data_dir)
    with pytest.raises(UserError, match="--label_names names 3 classes; glue/sst2 has 2"):
        open_dataset(DataConfig(data_dir=tiny_data_dir, label_names="a,b,c"))


def test_data_config_checks():
    with pytest.raises(UserError, match="--eval_file and --test_file go with --train_file"):
        DataConfig(eval_file="x.csv")
    with pytest.raises(UserError, match="give one of them"):
        DataConfig(dataset="imdb_reviews", train_file="x.csv")


def write_files(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\ngood film,pos\nbad film,neg\nok,pos\n")
    (tmp_path / "dev.csv").write_text("text,label\nfine,pos\nweak,neg\n")
    (tmp_path / "test.csv").write_text("text\nwhat\n")
    return {name: str(tmp_path / f"{name}.csv") for name in ("train", "dev", "test")}


def test_files_fix_classes_and_identity(tmp_path):
    paths = write_files(tmp_path)
    config = DataConfig(train_file=paths["train"], eval_file=paths["dev"],
                        test_file=paths["test"])
    dataset = open_dataset(config)
    assert dataset.info.label_names == ("neg", "pos") and dataset.info.glue_task is None
    train = dataset.arrays("train")
    assert train["label"].tolist() == [1, 0, 1] and train["idx"].tolist() == [2, 3, 4]
    assert dataset.arrays("train[1:]")["text"].tolist() == ["bad film", "ok"]
    assert dataset.arrays("test")["label"].tolist() == [-1]
    element = next(iter(dataset.load("validation")))
    assert sorted(element) == ["idx", "label", "text"] and element["text"] == b"fine"
    before = dataset.info.identity
    (tmp_path / "train.csv").write_text("text,label\ngood film,pos\nbad film,neg\nok,neg\n")
    assert open_dataset(config).info.identity != before
    (tmp_path / "dev.csv").write_text("text,label\nfine,pos\nweak,meh\n")
    with pytest.raises(UserError, match=r"dev.csv: line 3: label 'meh' is not one of the 2"):
        open_dataset(config).load("validation")
    with pytest.raises(UserError, match="pass --eval_file"):
        open_dataset(DataConfig(train_file=paths["train"])).load("validation")
    (tmp_path / "one.csv").write_text("text,label\na,x\nb,x\n")
    with pytest.raises(UserError, match="one class only"):
        open_dataset(DataConfig(train_file=str(tmp_path / "one.csv")))


PAIRS = [("the film is good", "it is great"), ("bad", "the plot of the story is very dull " * 3),
         ("the story of the film is a very fun and charming plot " * 2, "weak"),
         ("the film " * 9, "the story " * 9), ("", "good")]


def test_pairs_pack_as_keras_hub_in_training_and_serving(tmp_path, tiny_preset):
    path = tmp_path / "pairs.tsv"
    path.write_text("first\tsecond\tlabel\n" + "".join(f"{a}\t{b}\t{i % 2}\n"
                                                      for i, (a, b) in enumerate(PAIRS)))
    dataset = FileDataset(str(path), text_columns=("first", "second"))
    assert dataset.info.is_pair and dataset.info.label_names == ("0", "1")
    preprocessor = presets.load_preprocessor(tiny_preset, 16)
    tokens = data.to_numpy(data.tokenize(dataset.load("train"), preprocessor))
    firsts, seconds = ([p[i].strip() for p in PAIRS] for i in (0, 1))
    expected = preprocessor(x=(tf.constant(firsts), tf.constant(seconds)))
    np.testing.assert_array_equal(tokens["token_ids"], expected["token_ids"])
    tokenizer = preprocessor.tokenizer
    for length in (16, 9, 6):
        ids, mask = packing.pack_pair(tokenizer(tf.constant(firsts)),
                                      tokenizer(tf.constant(seconds)), length,
                                      tokenizer.cls_token_id, tokenizer.sep_token_id,
                                      tokenizer.pad_token_id, multiple=1)
        reference = presets.load_preprocessor(tiny_preset, length)(
            x=(tf.constant(firsts), tf.constant(seconds)))
        width = ids.shape[1]
        np.testing.assert_array_equal(ids.numpy(), reference["token_ids"][:, :width])
        np.testing.assert_array_equal(mask.numpy(),
                                      np.asarray(reference["padding_mask"][:, :width], np.int32))


def _tiny_reviews_builder():
    """A tfds dataset built on the spot (no download): two text features, a 3-class
    ClassLabel, no `idx` feature."""
    import tensorflow_datasets as tfds

    class TinyReviews(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
                "title": tfds.features.Text(), "review": tfds.features.Text(),
                "stars": tfds.features.ClassLabel(names=["low", "mid", "high"])}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(0, 30),
                    "test": self._generate_examples(30, 42)}

        def _generate_examples(self, start, end):
            words = ["bad", "the film", "good"]
            for i in range(start, end):
                yield i, {"title": f"title {i}", "review": f"{words[i % 3]} {i}",
                          "stars": i % 3}

    return TinyReviews


def test_any_tfds_dataset_with_text_and_class_label(tmp_path):
    _tiny_reviews_builder()  # registers "tiny_reviews" with tfds
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(UserError, match=r"tiny_reviews has text features title, review: "
                       r"name the one to classify"):
        TfdsDataset("tiny_reviews", data_dir)
    with pytest.raises(UserError, match="not prepared .* --nodownload"):
        TfdsDataset("tiny_reviews", str(tmp_path / "other"), download=False,
                    text_features=("review",))
    dataset = open_dataset(DataConfig(dataset="tiny_reviews", data_dir=data_dir,
                                      text_column="review", eval_split="test"))
    info = dataset.info
    assert info.label_names == ("low", "mid", "high") and info.glue_task is None
    assert info.identity == {"dataset": "tiny_reviews", "version": "1.0.0",
                             "text_features": ["review"], "label_feature": "stars"}
    examples = list(dataset.load("test").as_numpy_iterator())
    assert dataset.size("test") == len(examples) == 12
    assert sorted(examples[0]) == ["idx", "label", "text"]
    # Positions within the split stand in for the missing idx; labels and texts line up.
    assert [e["idx"] for e in examples] == list(range(12))
    assert all(int(e["text"].decode().split()[-1]) % 3 == e["label"] for e in examples)
    pairs = open_dataset(DataConfig(dataset="tiny_reviews", data_dir=data_dir,
                                    text_column="title,review"))
    assert pairs.info.is_pair and "text_pair" in next(iter(pairs.load("train")))


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
