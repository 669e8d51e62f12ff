"""The encode pass and its cache: features equal the backbone's, in split order, resumable."""

import errno
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from sst2.model import feature_store, features, npy_rows, presets
from sst2.model.backbone import FeatureSpec
from sst2.model.encoder import FeatureEncoder
from sst2.text import data
from sst2.text.datasets import TfdsDataset
from tests.helpers import TINY_SEQUENCE_LENGTH

# precision: CI runs these again with SST2_AUTO_PRECISION=bfloat16.
pytestmark = pytest.mark.precision


def _plain(fn) -> FeatureEncoder:
    """An encoder around one Python function (pooled features, free shapes)."""
    return FeatureEncoder((fn,), static_shapes=False, token_level=False)


def _tokens(tiny_preset, tiny_data_dir, split="train"):
    preprocessor = presets.load_preprocessor(tiny_preset, TINY_SEQUENCE_LENGTH)
    return data.to_numpy(data.tokenize(TfdsDataset("glue/sst2", tiny_data_dir).load(split),
                                       preprocessor))


def test_cached_and_uncached_features_agree(tiny_preset, tiny_data_dir, tmp_path):
    backbone = presets.load_backbone(tiny_preset)
    spec = FeatureSpec("mean", "all")
    encoder = FeatureEncoder.for_backbone(backbone, spec, jit_compile=False)
    tokens = _tokens(tiny_preset, tiny_data_dir, "validation")
    cached = features.encode(encoder, tokens, str(tmp_path), {"split": "validation"}, batch_size=7,
                             show_progress=False)
    direct = encoder(tf.constant(tokens["token_ids"]), tf.constant(tokens["padding_mask"])).numpy()
    np.testing.assert_allclose(cached.features.astype(np.float32), direct, atol=2e-3, rtol=2e-3)
    assert np.array_equal(cached.labels, tokens["label"])
    again = features.encode(_plain(lambda *a: 1 / 0), tokens, str(tmp_path),
                            {"split": "validation"}, show_progress=False)
    # (served from the cache: the backbone is never called)
    assert np.array_equal(again.features, cached.features)


def test_encode_resumes_after_a_crash(tiny_preset, tiny_data_dir, tmp_path):
    backbone = presets.load_backbone(tiny_preset)
    encoder = FeatureEncoder.for_backbone(backbone, FeatureSpec("cls", "last"), jit_compile=False)
    tokens = _tokens(tiny_preset, tiny_data_dir)
    calls = {"n": 0}

    def crashing(*args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return encoder(*args)

    key = {"split": "train"}
    try:
        features.encode(_plain(crashing), tokens, str(tmp_path), key, batch_size=16,
                        shard_batches=2, show_progress=False)
    except KeyboardInterrupt:
        pass
    resumed_calls = {"n": 0}

    def counting(*args):
        resumed_calls["n"] += 1
        return encoder(*args)

    resumed = features.encode(_plain(counting), tokens, str(tmp_path), key, batch_size=16,
                              shard_batches=2, show_progress=False)
    boundaries = _plain(encoder).padded_lengths(TINY_SEQUENCE_LENGTH)
    total_batches = len(data.plan_batches(tokens["length"], 16, boundaries))
    assert resumed_calls["n"] == total_batches - 4  # two finished shards of 2 batches kept
    fresh = features.encode(encoder, tokens, str(tmp_path / "fresh"), key, batch_size=16,
                            show_progress=False)
    np.testing.assert_array_equal(resumed.features, fresh.features)


def test_batches_of_tokens_give_the_features_of_batches_of_sentences(tiny_preset,
                                                                    tiny_data_dir, tmp_path):
    backbone = presets.load_backbone(tiny_preset)
    encoder = FeatureEncoder.for_backbone(backbone, FeatureSpec("mean", "all"), jit_compile=False)
    tokens = _tokens(tiny_preset, tiny_data_dir)
    by_sentences = features.encode(encoder, tokens, str(tmp_path / "sentences"), {"k": 1},
                                   batch_size=16, show_progress=False)
    calls = []
    counted = _plain(lambda ids, mask: calls.append(ids.shape) or encoder(ids, mask))
    by_tokens = features.encode(counted, tokens, str(tmp_path / "tokens"), {"k": 1},
                                batch_size=16, batch_tokens=300, show_progress=False)
    assert all(rows * length <= 300 for rows, length in calls), calls
    assert sum(rows for rows, _ in calls) == len(tokens["length"])
    assert len(calls) < len(data.plan_batches(tokens["length"], 16, tuple(range(1, 17))))
    np.testing.assert_allclose(by_tokens.features.astype(np.float32),
                               by_sentences.features.astype(np.float32), atol=2e-3, rtol=2e-3)


def test_token_cache_is_in_split_order(tiny_preset, tiny_data_dir, tmp_path):
    backbone = presets.load_backbone(tiny_preset)
    encoder = FeatureEncoder.for_backbone(backbone, FeatureSpec("attention"), jit_compile=False)
    tokens = _tokens(tiny_preset, tiny_data_dir, "validation")
    cached = features.encode(encoder, tokens, str(tmp_path), {"split": "validation"}, batch_size=7,
                             show_progress=False)
    assert np.array_equal(cached.lengths, tokens["length"])
    assert np.array_equal(cached.idx, tokens["idx"])
    for i in (0, 5, 63):
        direct = encoder(tf.constant(tokens["token_ids"][i:i + 1]),
                    tf.constant(tokens["padding_mask"][i:i + 1])).numpy()[0, :tokens["length"][i]]
        np.testing.assert_allclose(cached.tokens(i).astype(np.float32), direct, atol=2e-2)


def test_a_resumed_encode_pass_with_another_batch_size_continues_its_plan(said, tiny_preset,
                                                                          tiny_data_dir, tmp_path):
    # Issue 25, case 1: a killed pass resumed with another --encode_batch_size stored other
    # examples' features in a shard's places (or failed with an IndexError).
    backbone = presets.load_backbone(tiny_preset)
    encoder = FeatureEncoder.for_backbone(backbone, FeatureSpec("cls", "last"), jit_compile=False)
    tokens = _tokens(tiny_preset, tiny_data_dir)
    clean = features.encode(encoder, tokens, str(tmp_path / "clean"), {"split": "train"},
                            batch_size=16, shard_batches=2, show_progress=False)
    calls = {"n": 0}

    def crashing(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return encoder(*args)

    # Killed with batches of sentences or of tokens; resumed with other sizes of either.
    cases = [({"batch_size": 16}, {"batch_size": 8}), ({"batch_size": 16}, {"batch_size": 128}),
             ({"batch_size": 16}, {"batch_tokens": 64}),
             ({"batch_tokens": 100}, {"batch_tokens": 300}),
             ({"batch_tokens": 100}, {"batch_size": 16})]
    for number, (killed, resumed_with) in enumerate(cases):
        folder = str(tmp_path / f"killed-{number}")
        said.clear()
        try:
            features.encode(_plain(crashing), tokens, folder, {"split": "train"},
                            shard_batches=2, show_progress=False, **killed)
        except KeyboardInterrupt:
            calls["n"] = 0
        resumed = features.encode(encoder, tokens, folder, {"split": "train"},
                                  show_progress=False, **resumed_with)
        assert any("batches it started with" in m for m in said), (killed, said)
        if "batch_size" in killed:  # the same batches as the clean pass: the same bits
            np.testing.assert_array_equal(resumed.features, clean.features)
        np.testing.assert_allclose(resumed.features.astype(np.float32),
                                   clean.features.astype(np.float32), atol=2e-3, rtol=2e-3)


def test_a_shard_of_the_wrong_size_is_discarded_and_encoded_again(said, tiny_preset, tiny_data_dir,
                                                                 tmp_path):
    backbone = presets.load_backbone(tiny_preset)
    encoder = FeatureEncoder.for_backbone(backbone, FeatureSpec("cls", "last"), jit_compile=False)
    tokens = _tokens(tiny_preset, tiny_data_dir)
    cache = feature_store.FeatureCache(str(tmp_path), {"split": "train"})
    cache.start()
    cache.shard_plan({"batch_size": 16, "boundaries": [16], "shard_batches": 2})
    cache.write_shard(0, np.zeros([5, 16], np.float16))  # 5 rows where the plan has 32
    said.clear()
    messages = said
    result = features.encode(encoder, tokens, str(tmp_path), {"split": "train"}, batch_size=16,
                             shard_batches=2, show_progress=False)
    assert any("damaged" in m for m in messages), messages
    assert len(result.features) == len(tokens["label"]) and result.features.any()


def test_a_full_disk_names_the_features_file_and_leaves_no_partial(tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    writer = npy_rows.SplitOrderWriter(str(tmp_path / "features.npy"), rows=10)
    with pytest.raises(OSError) as raised:
        writer.put(np.array([0]), np.array([1]), np.zeros([1, 4], np.float16))
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.filename == str(tmp_path / "features.npy.tmp")
    assert os.listdir(tmp_path) == []


def test_the_split_order_writer_never_writes_through_a_link(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    os.symlink(target, tmp_path / "features.npy.tmp")
    writer = npy_rows.SplitOrderWriter(str(tmp_path / "features.npy"), rows=2)
    writer.put(np.array([1, 0]), np.array([1, 1]), np.array([[1.0], [0.0]], np.float16))
    writer.close()
    assert target.read_text() == "keep"
    assert np.load(tmp_path / "features.npy").ravel().tolist() == [0.0, 1.0]


def test_a_truncated_cache_file_is_reported_discarded_and_rebuilt(said, tmp_path):
    tokens = _random_tokens(20)
    calls = []

    def fn(ids, mask):
        calls.append(1)
        return tf.cast(ids[:, :1, None], tf.float32)

    encoder = FeatureEncoder((fn,), static_shapes=False, token_level=False)
    fresh = features.encode(encoder, tokens, str(tmp_path), {"k": 1}, show_progress=False)
    fresh_features = np.array(fresh.features)  # a copy: the cache is memory-mapped
    (folder,) = glob.glob(str(tmp_path / "*"))
    with open(os.path.join(folder, "features.npy"), "r+b") as f:
        f.truncate(100)
    said.clear()
    calls.clear()
    rebuilt = features.encode(encoder, tokens, str(tmp_path), {"k": 1}, show_progress=False)
    assert calls and "is damaged" in said[0] and "re-encoding" in said[0]
    np.testing.assert_array_equal(rebuilt.features, fresh_features)


def _random_tokens(n=6, offset=0):
    rng = np.random.default_rng(offset)
    return {"token_ids": rng.integers(5, 20, (n, 8)).astype(np.int32),
            "padding_mask": np.ones((n, 8), np.int32), "length": np.full(n, 8, np.int32),
            "label": (np.arange(n) % 2).astype(np.int32), "idx": np.arange(n, dtype=np.int32)}
