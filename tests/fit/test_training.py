"""A whole training run, in-process, on the tiny model."""

import pytest

from sst2.run.config import TrainConfig
from tests.helpers import TINY_SEQUENCE_LENGTH
from tests.helpers import train as run

# precision: CI runs these again with SST2_AUTO_PRECISION=bfloat16.
pytestmark = [pytest.mark.slow, pytest.mark.precision]


def test_cached_and_uncached_paths_agree(tiny_preset, tiny_data_dir, tmp_path):
    """--cache_features=false runs the backbone every step: the same batches, and up to
    the cache's float16 rounding the same losses."""
    results = {}
    for cache in (True, False):
        config = TrainConfig.from_options(
            model_dir=str(tmp_path / str(cache)), preset=tiny_preset, data_dir=tiny_data_dir,
            epochs=2, batch_size=8, learning_rate=0.01, sequence_length=TINY_SEQUENCE_LENGTH,
            precision="float32", cache_features=cache, progress=False, export=False)
        results[cache] = run(config)["epochs"]
    for cached, uncached in zip(results[True], results[False]):
        assert cached["step"] == uncached["step"]
        assert cached["train_loss"] == pytest.approx(uncached["train_loss"], rel=1e-3)
        assert cached["val_loss"] == pytest.approx(uncached["val_loss"], rel=1e-3)
        assert abs(cached["val_accuracy"] - uncached["val_accuracy"]) <= 1 / 64
