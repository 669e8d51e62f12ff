"""A run's frozen features, cached: what they depend on, where they live, and what the
encode pass that computes them costs.

`cached_features` returns a split's features, encoding only what the cache
(`sst2.model.features`, `sst2.model.feature_store`) lacks; `feature_key` is
everything that changes them; `encode_work` counts the pass's tokens and its
linear layers' arithmetic, so a run records its rate against the matmuls'
(`scripts/benchmark_encode.py` measures those alone).

Example:
    >>> from sst2.run.config import TrainConfig
    >>> tokens = {"token_ids": np.array([[2, 7, 3]], np.int32), "label": np.array([1]),
    ...           "idx": np.array([0]), "length": np.array([3])}
    >>> len(content_hash(tokens)), cache_dir(TrainConfig.from_options(model_dir="runs/a"))
    (64, 'runs/a/feature_cache')
"""

import dataclasses
import hashlib

import numpy as np

from sst2.model import presets
from sst2.model.backbone import FeatureSpec
from sst2.model.encoder import FeatureEncoder
from sst2.model.feature_store import FeatureCache, FeatureSet
from sst2.model.features import encode
from sst2.model.inference import linear_flops_per_token
from sst2.run.config import TrainConfig
from sst2.run.run_folder import RunFolder
from sst2.run.worker import WorkerInfo


def content_hash(tokens: dict) -> str:
    """A SHA-256 of the token ids, labels and dataset indices (about 0.1 s for SST-2)."""
    digest = hashlib.sha256()
    for name in ("token_ids", "label", "idx"):
        digest.update(np.ascontiguousarray(tokens[name]).tobytes())
    return digest.hexdigest()


def cache_dir(config: TrainConfig) -> str:
    return config.run.cache_dir or RunFolder(config.run.model_dir).feature_cache


@dataclasses.dataclass(frozen=True)
class Encoding:
    """How a run turns token ids into frozen features.

    Attributes:
        encoder: the backbone's compiled `FeatureEncoder`.
        precision: the precision it computes in (part of the cache key).
        backbone_layers: the backbone's depth (what `FeatureSpec` reads of it).
    """

    encoder: FeatureEncoder
    precision: str
    backbone_layers: int


def feature_key(config: TrainConfig, tokens: dict, encoding: Encoding, dataset=None) -> dict:
    """What the cached features of `tokens` depend on: the weights, sequence length,
    precision and features, the examples themselves (a changed dataset is re-encoded),
    and for datasets other than SST-2 (whose keys predate it) where they came from."""
    key = {**presets.preset_fingerprint(config.model.preset),
           "sequence_length": config.model.sequence_length, "precision": encoding.precision,
           **FeatureSpec.of(config.model).cache_fields(encoding.backbone_layers),
           "examples": content_hash(tokens)}
    if dataset is not None and dataset.name != "glue/sst2":
        key["dataset"] = dataset.identity
    return key


def encoded(tokens: dict) -> dict:
    """What the encode pass encodes of a split's tokens: its texts, or for pairs encoded
    apart, each distinct sentence."""
    return tokens["sentences"] if "sentences" in tokens else tokens


def encode_work(config: TrainConfig, backbone, token_sets: list, keys: list) -> dict:
    """What this run's encode pass computes: `encode_tokens` (the real tokens of every
    text it encodes: of the sets the feature cache lacks), `encode_linear_gflop` (their
    linear layers' arithmetic), and whether the cache already held every set under `keys`
    (`feature_key`, one per token set: `features_cached`)."""
    per_token = linear_flops_per_token(backbone.hidden_dim, backbone.intermediate_dim,
                                       backbone.num_layers)
    caches = [FeatureCache(cache_dir(config), key) for key in keys] if config.run.cache_features \
        else []
    complete = [cache.is_complete() for cache in caches] or [False] * len(token_sets)
    tokens = int(sum(int(encoded(t)["length"].sum())
                     for t, cached in zip(token_sets, complete) if not cached))
    return {"encode_tokens": tokens, "encode_linear_gflop": per_token * tokens / 1e9,
            "features_cached": bool(caches) and all(complete),
            # A resumed pass encodes only what its shards lack: its rate would count the rest.
            "features_resumed": any(not c.is_complete() and c.has_shards() for c in caches)}


def cached_features(config: TrainConfig, split: str, tokens: dict, encoding: Encoding,
                    worker: WorkerInfo = WorkerInfo(), dataset=None,
                    key: dict | None = None) -> FeatureSet:
    """The cached frozen features of `split` (computed on first use); `dataset` (a
    `datasets.DatasetInfo`) adds the dataset's identity to the key; `key`: the
    `feature_key`, where the caller has it already (it hashes every example)."""
    return encode(encoding.encoder, tokens, cache_dir(config),
                  key or feature_key(config, tokens, encoding, dataset),
                  batch_size=config.run.encode_batch_size,
                  batch_tokens=config.run.encode_batch_tokens, description=f"encode {split}",
                  show_progress=config.run.progress and worker.is_chief, worker=worker)


def encode_rate(work: dict, encode_seconds: float) -> str:
    """Where the encode pass ran whole (not read from the cache, not resumed from a killed
    pass's shards): records its linear layers' GFLOP/s in `work` and returns it for the
    log line."""
    if work["features_cached"]:
        return ""
    if work["features_resumed"]:
        return "; resumed, so no rate is recorded for it"
    rate = work["encode_linear_gflops_per_second"] = (work["encode_linear_gflop"]
                                                      / max(encode_seconds, 1e-9))
    return f"; {work['encode_tokens']:,} tokens, {rate:.0f} GFLOP/s of linear layers"
