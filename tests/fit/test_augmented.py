"""`--augment_identity`: training texts that name an identity term are trained on again
with each other term of its category, encoded apart from the split and recorded."""

import os

import numpy as np
import pytest

from sst2.fit.augmented import identity_variants, typo_variants
from sst2.run.config import TrainConfig
from sst2.run.files import load_json
from sst2.text.word_swaps import identity_counterfactuals, identity_groups, load_words
from tests.helpers import TINY_SEQUENCE_LENGTH, train

TEXTS = ["a french farce that never lands", "a warm gay romance", "the plot is thin",
         "a sharp , funny script", "the chinese cast shines", "dull and long"]


def test_each_variant_keeps_its_row_s_label_and_idx():
    rows = {"text": np.array([t.encode() for t in TEXTS]), "label": np.array([0, 1, 0, 1, 1, 0]),
            "idx": np.arange(10, 16)}
    added = identity_variants(rows)
    groups = identity_groups(load_words())
    expected = [(text, label, idx) for text, label, idx in zip(TEXTS, rows["label"], rows["idx"])
                for _ in identity_counterfactuals(text, groups)]
    assert len(added["text"]) == len(expected) > 0
    assert [(int(label), int(idx)) for label, idx in zip(added["label"], added["idx"])] == [
        (int(label), int(idx)) for _, label, idx in expected]
    assert {int(i) for i in added["idx"]} == {10, 11, 14}


def _write(path, rows: int) -> str:
    with open(path, "w") as f:
        f.write("text\tlabel\n")
        for i in range(rows):
            f.write(f"{TEXTS[i % len(TEXTS)]} {i}\t{['negative', 'positive'][i % 2]}\n")
    return str(path)


@pytest.mark.slow
def test_a_run_trains_on_the_variants_encoded_apart(tiny_preset, tmp_path):
    cache = str(tmp_path / "cache")
    options = dict(preset=tiny_preset, train_file=_write(tmp_path / "train.tsv", 24),
                   eval_file=_write(tmp_path / "dev.tsv", 8), epochs=1, batch_size=8,
                   sequence_length=TINY_SEQUENCE_LENGTH, pooling="attention", progress=False,
                   export=False, cache_dir=cache)
    train(TrainConfig.from_options(model_dir=str(tmp_path / "plain"), augment_identity=False,
                                   **options))
    assert len(os.listdir(cache)) == 2
    train(TrainConfig.from_options(model_dir=str(tmp_path / "aug"), augment_identity=True,
                                   augment_typos=0.25, **options))
    metrics = load_json(str(tmp_path / "aug" / "metrics.json"))
    groups = identity_groups(load_words())
    rows = [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(24)]
    assert metrics["added_examples"] == sum(len(identity_counterfactuals(t, groups))
                                            for t in rows) + 6  # and 24 / 4 with a typo
    # The split's own features came from the cache; only the variants were encoded.
    assert len(os.listdir(cache)) == 3
    steps = metrics["epochs"][-1]["step"]
    assert steps == -(-(24 + metrics["added_examples"]) // 8)
    # Without the cache, the backbone runs on every batch of the same rows.
    train(TrainConfig.from_options(model_dir=str(tmp_path / "uncached"), augment_typos=0.25,
                                   **{**options, "cache_features": False}))
    uncached = load_json(str(tmp_path / "uncached" / "metrics.json"))
    assert uncached["added_examples"] == metrics["added_examples"]
    assert uncached["epochs"][-1]["step"] == steps


def test_typo_variants_are_the_same_texts_every_run_each_with_one_typo():
    rows = {"text": np.array([f"a gripping thriller number {i}".encode() for i in range(50)]),
            "label": np.arange(50) % 2, "idx": np.arange(100, 150)}
    added = identity_variants(rows)
    assert len(added["text"]) == 0
    first, again = typo_variants(rows, 0.2), typo_variants(rows, 0.2)
    assert len(first["text"]) == 10 and first["text"].tolist() == again["text"].tolist()
    for text, label, idx in zip(first["text"], first["label"], first["idx"]):
        original = rows["text"][idx - 100].decode()
        assert text != original and sorted(text) == sorted(original)  # two letters swapped
        assert label == rows["label"][idx - 100]
    assert len(typo_variants(rows, 0.0)["text"]) == 0


def test_sentence_pairs_are_trained_on_as_they_are():
    import types

    from sst2.fit.augmented import added_tokens

    pairs = types.SimpleNamespace(info=types.SimpleNamespace(is_pair=True))
    config = TrainConfig.from_options(augment_typos=0.1)
    assert added_tokens(config, pairs, "train", preprocessor=None) is None
