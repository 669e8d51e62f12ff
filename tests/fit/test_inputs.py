"""Which length buckets a run's batches use."""

import os

import numpy as np
import pytest
import tensorflow as tf

from sst2.fit import cached_features, inputs
from sst2.fit.inputs import BUCKET_COST_IN_TOKEN_ROWS, bucket_boundaries
from sst2.model.encoder import FeatureEncoder
from sst2.run.config import TrainConfig
from sst2.run.errors import UserError
from sst2.text import data
from sst2.text.datasets import open_dataset
from tests.helpers import TINY_SEQUENCE_LENGTH


def test_the_default_head_trades_padding_for_fewer_compiled_shapes():
    lengths = np.random.default_rng(0).geometric(0.08, size=20_000) + 2
    lengths = np.minimum(lengths, 128)
    frozen = bucket_boundaries(TrainConfig.from_options(), lengths, 32)
    assert frozen == data.choose_buckets(lengths, 32, data.bucket_lengths(128),
                                         BUCKET_COST_IN_TOKEN_ROWS)
    # Unfrozen layers or new blocks: each padded token runs attention layers.
    for options in ({"trainable_layers": 2}, {"head_layers": 1}):
        blocks = bucket_boundaries(TrainConfig.from_options(**options), lengths, 32)
        assert blocks == data.choose_buckets(lengths, 32, data.bucket_lengths(128), 0)
        assert len(blocks) > len(frozen)


def test_a_resumed_run_keeps_the_buckets_it_started_with(tmp_path):
    from sst2.run.config_file import config_path, save_config
    from sst2.run.files import load_json, save_json
    from sst2.text.data import load_train_buckets

    config = TrainConfig.from_options(model_dir=str(tmp_path), sequence_length=64)
    assert load_train_buckets(str(tmp_path)) is None  # a new run chooses its own
    save_config(str(tmp_path), config, train_buckets=(16, 32, 64))
    assert load_train_buckets(str(tmp_path)) == (16, 32, 64)
    # A run saved before buckets were chosen per split used every candidate.
    fields = load_json(config_path(str(tmp_path)))
    del fields["train_buckets"]
    save_json(config_path(str(tmp_path)), fields)
    assert load_train_buckets(str(tmp_path)) == data.bucket_lengths(64)


def test_a_resumed_encode_pass_records_no_rate(tmp_path):
    """Issue 47, case 12: a pass resumed from a killed pass's shards encodes only what they
    lack, so a rate of all its tokens over its time would be too high: none is recorded."""
    import types

    from sst2.fit.cached_features import encode_rate, encode_work
    from sst2.model.feature_store import FeatureCache, FeatureSet

    config = TrainConfig.from_options(model_dir=str(tmp_path))
    backbone = types.SimpleNamespace(hidden_dim=16, intermediate_dim=32, num_layers=2)
    tokens = {"length": np.array([5, 7, 9])}
    keys = [{"split": "train"}, {"split": "validation"}]
    whole = encode_work(config, backbone, [tokens, tokens], keys)
    assert not whole["features_resumed"]
    assert "GFLOP/s" in encode_rate(whole, 2.0) and whole["encode_linear_gflops_per_second"]

    cache = FeatureCache(str(tmp_path / "feature_cache"), keys[0])
    cache.start()
    cache.write_shard(0, np.zeros([2, 16], np.float32))
    resumed = encode_work(config, backbone, [tokens, tokens], keys)
    assert resumed["features_resumed"] and resumed["encode_tokens"] == 42
    assert encode_rate(resumed, 1.0) == "; resumed, so no rate is recorded for it"
    assert "encode_linear_gflops_per_second" not in resumed
    # A set the cache holds whole is not encoded: its tokens are not counted.
    done = FeatureCache(str(tmp_path / "feature_cache"), keys[1])
    done.start()
    done.write(FeatureSet(np.zeros((3, 1, 4), np.float16), np.zeros(3, np.int32), np.arange(3)))
    partly = encode_work(config, backbone, [tokens, tokens], keys)
    assert partly["encode_tokens"] == 21 and not partly["features_cached"]


def _tokens(n=6, offset=0):
    rng = np.random.default_rng(offset)
    return {"token_ids": rng.integers(5, 20, (n, 8)).astype(np.int32),
            "padding_mask": np.ones((n, 8), np.int32), "length": np.full(n, 8, np.int32),
            "label": (np.arange(n) % 2).astype(np.int32), "idx": np.arange(n, dtype=np.int32)}


def test_a_changed_dataset_gets_another_cache_entry(tiny_preset, tmp_path):
    same, changed = _tokens(), _tokens()
    changed["label"] = 1 - changed["label"]  # same sentences, other labels
    assert cached_features.content_hash(same) == cached_features.content_hash(_tokens())
    assert cached_features.content_hash(changed) != cached_features.content_hash(same)
    config = TrainConfig.from_options(preset=tiny_preset, pooling="mean",
                                      cache_dir=str(tmp_path), progress=False)
    calls = []
    encoder = FeatureEncoder((lambda ids, mask: calls.append(1) or tf.ones([len(ids), 1, 4]),),
                             static_shapes=False, token_level=False)
    encoding = cached_features.Encoding(encoder, "float32", backbone_layers=2)
    first = cached_features.cached_features(config, "train", same, encoding)
    second = cached_features.cached_features(config, "train", changed, encoding)
    assert len(os.listdir(tmp_path)) == 2 and calls  # encoded again, not served stale
    assert (first.labels != second.labels).all()


def test_unlabelled_splits_are_refused_for_training_and_validation(tiny_preset, tiny_data_dir):
    from sst2.model import presets

    preprocessor = presets.load_preprocessor(tiny_preset, TINY_SEQUENCE_LENGTH)
    config = TrainConfig.from_options(data_dir=tiny_data_dir)
    with pytest.raises(UserError, match="--eval_split='test' has 32 unlabelled examples"):
        inputs.tokenize_split(open_dataset(config.data), "test", preprocessor,
                              labelled="--eval_split")
    test_split = inputs.tokenize_split(open_dataset(config.data), "test", preprocessor)
    assert len(test_split["label"]) == 32
