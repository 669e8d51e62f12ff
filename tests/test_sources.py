"""Batch sources: every example once per epoch, padded rows weigh nothing."""

import numpy as np

from sst2 import features
from sst2.sources import CachedFeatureSource


def test_cached_source_pads_last_batch_with_zero_weights():
    feats = features.FeatureSet(np.ones((10, 1, 4), np.float16), np.ones(10, np.int32),
                                np.arange(10, dtype=np.int32))
    source = CachedFeatureSource(feats, batch_size=4, seed=0)
    assert source.num_batches(0) == 3
    last = source.batch(0, 2)
    assert last.features.shape == (4, 1, 4) and last.weights.tolist() == [1, 1, 0, 0]
    seen = np.concatenate([source.batch_indices(0, i) for i in range(3)])
    assert sorted(seen) == list(range(10))
