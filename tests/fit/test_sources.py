"""Batch sources: every example once per epoch, padded rows weigh nothing."""

import numpy as np

from sst2.fit.sources import CachedFeatureSource, CachedTokenSource
from sst2.model import feature_store


def test_cached_source_pads_last_batch_with_zero_weights():
    feats = feature_store.FeatureSet(np.ones((10, 1, 4), np.float16), np.ones(10, np.int32),
                                np.arange(10, dtype=np.int32))
    source = CachedFeatureSource(feats, batch_size=4, seed=0)
    assert source.num_batches(0) == 3
    last = source.batch(0, 2)
    assert last.features.shape == (4, 1, 4) and last.weights.tolist() == [1, 1, 0, 0]
    seen = np.concatenate([source.batch_indices(0, i) for i in range(3)])
    assert sorted(seen) == list(range(10))


def _token_set(n=40, width=6, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 30, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return feature_store.FeatureSet(rng.normal(size=(offsets[-1], width)).astype(np.float16),
                               rng.integers(0, 2, n).astype(np.int32), np.arange(n), offsets)


def test_token_batches_hold_each_example_s_tokens_padded_to_its_bucket():
    cached = _token_set()
    source = CachedTokenSource(cached, batch_size=8, boundaries=(8, 16, 32), seed=1)
    for index in range(source.num_batches(0)):
        batch = source.batch(0, index)
        indices = source.batch_indices(0, index)
        tokens, mask = batch.features["tokens"], batch.features["mask"]
        assert tokens.dtype == np.float16 and tokens.shape[1] in (8, 16, 32)  # as stored
        for row in range(8):  # written plainly, row by row
            expected = np.zeros(tokens.shape[1:], np.float32)
            expected_mask = np.zeros(tokens.shape[1], np.int32)
            if row < len(indices):
                real = cached.tokens(indices[row]).astype(np.float32)
                expected[:len(real)], expected_mask[:len(real)] = real, 1
            np.testing.assert_array_equal(tokens[row], expected)
            np.testing.assert_array_equal(mask[row], expected_mask)


def test_the_tf_data_pipeline_yields_exactly_the_batches_from_any_start():
    cached = _token_set()
    source = CachedTokenSource(cached, batch_size=8, boundaries=(8, 16, 32), seed=1)
    for epoch, start in ((0, 0), (1, 3)):
        elements = list(source.dataset(epoch, start).as_numpy_iterator())
        assert len(elements) == source.num_batches(epoch) - start
        for index, (feats, labels, weights) in enumerate(elements, start):
            batch = source.batch(epoch, index)
            np.testing.assert_array_equal(feats["tokens"], batch.features["tokens"])
            np.testing.assert_array_equal(feats["mask"], batch.features["mask"])
            np.testing.assert_array_equal(labels, batch.labels)
            np.testing.assert_array_equal(weights, batch.weights)


def test_a_joined_feature_set_gives_the_batches_of_one_set_holding_both():
    """Rows added to a split are cached apart and read after its own
    (`JoinedFeatureSet`): every batch is the one a single set of both would give, and
    the added rows are read from the added set's file."""
    first, second = _token_set(n=30, seed=1), _token_set(n=11, seed=2)
    whole = feature_store.FeatureSet(
        np.concatenate([first.features, second.features]),
        np.concatenate([first.labels, second.labels]), np.concatenate([first.idx, second.idx]),
        np.concatenate([first.offsets, second.offsets[1:] + first.offsets[-1]]))
    joined = feature_store.JoinedFeatureSet(first, second)
    assert len(joined) == 41 and (joined.lengths == whole.lengths).all()
    sources = [CachedTokenSource(s, batch_size=8, boundaries=(8, 16, 32), seed=3)
               for s in (whole, joined)]
    for index in range(sources[0].num_batches(0)):
        ours, theirs = (s.batch(0, index) for s in sources)
        np.testing.assert_array_equal(ours.features["tokens"], theirs.features["tokens"])
        np.testing.assert_array_equal(ours.labels, theirs.labels)
    pooled = [feature_store.FeatureSet(np.full((n, 1, 2), v, np.float16), np.zeros(n, np.int32),
                                       np.arange(n)) for n, v in ((3, 0), (2, 1))]
    rows = feature_store.JoinedFeatureSet(*pooled).read_rows(np.array([4, 0, 3, 1]),
                                                              np.ones(4, int))
    assert rows[:, 0, 0].tolist() == [1, 0, 1, 0]
