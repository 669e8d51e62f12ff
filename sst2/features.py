"""The encode pass: run the frozen backbone once per example and cache the result.

A frozen backbone in inference mode is a fixed function, so its features for a
sentence never change. `encode` computes them once, in length-sorted batches
(little padding), and stores them on disk keyed by everything that changes
them; every epoch, every resumed run and every later run with the same key
reads them back. A killed encode pass resumes at its last finished shard.

Example:
    >>> tokens = data.to_numpy(data.tokenize(data.load_split("validation"), preprocessor))
    >>> feats = encode(backbone, tokens, FeatureSpec("cls", "last"),
    ...                cache_dir="/tmp/sst2-cache", key_fields={"split": "validation"})
    >>> feats.features.shape
    (872, 1, 768)
"""

import dataclasses
import glob
import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from sst2 import data
from sst2.files import save_json
from sst2.inference import FastEncoder
from sst2.model import FeatureSpec, frozen_features, pool_features

CACHE_FORMAT = 2  # 2: token-level caches in split order
# Hidden states are stored in float16: half the memory of float32 and, unlike
# bfloat16, a numpy dtype; its 3 significant digits exceed the backbone's own
# bfloat16 precision.
STORAGE_DTYPE = np.float16


@dataclasses.dataclass
class FeatureSet:
    """Cached frozen features of one split.

    Pooled features are one `[num_layers, width]` block per example. Token
    features are ragged: example `i` owns rows `offsets[i]:offsets[i + 1]` of
    `features` (`[total_tokens, hidden]`, or `[total_tokens, 2, hidden]`, see
    `model.frozen_features`), one per real token.
    """

    features: np.ndarray  # [N, num_layers, width] or [total_tokens, ...], float16
    labels: np.ndarray  # [N], int32 (-1 where unlabelled)
    idx: np.ndarray  # [N], the tfds `idx` of each example
    offsets: np.ndarray | None = None  # [N + 1] for token features

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def tokens(self, i: int) -> np.ndarray:
        return self.features[self.offsets[i]:self.offsets[i + 1]]


def cache_key(key_fields: dict) -> str:
    """A short stable hash of everything that changes the features."""
    blob = json.dumps({"format": CACHE_FORMAT, **key_fields}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make_feature_fn(backbone, spec: FeatureSpec, jit_compile: bool,
                    devices: list[str] | None = None) -> Callable:
    """The backbone's pooled features as one compiled function of padded token ids.

    With `jit_compile` (GPU, TPU) XLA compiles the keras-hub layers whole, once
    per shape: batches are padded to multiples of 8 tokens and to full rows.
    Without it (CPU) `FastEncoder` runs oneDNN's fused kernels on any shape, so
    each length-sorted batch is padded only to its own longest sentence.

    With several local `devices` (a mirrored strategy's replicas), the returned
    function carries `replicas`: one copy per device, which `encode` runs on
    concurrent batches.
    """
    if devices and len(devices) > 1 and not jit_compile:
        replicas = []
        for device in devices:
            with tf.device(device):  # the copy's weights live on its device
                replicas.append(make_feature_fn(backbone, spec, jit_compile))
        features_fn = replicas[0]
        features_fn.replicas = replicas
        return features_fn
    if jit_compile:
        @tf.function(jit_compile=True, reduce_retracing=True)
        def features_fn(token_ids, padding_mask):
            return pool_features(backbone, token_ids, padding_mask, spec)

        features_fn.static_shapes = True
    else:
        encoder = FastEncoder(backbone)
        frozen = spec.frozen_layers(backbone.num_layers) if spec.token_level else None
        signature = [tf.TensorSpec([None, None], tf.int32)] * 2

        @tf.function(input_signature=signature)
        def features_fn(token_ids, padding_mask):
            states = encoder(token_ids, padding_mask, num_layers=frozen)
            return frozen_features(states, padding_mask, spec)

        features_fn.static_shapes = False
    features_fn.token_level = spec.token_level
    return features_fn


def encode(
    features_fn: Callable,
    tokens: dict,
    cache_dir: str,
    key_fields: dict,
    batch_size: int = 128,
    boundaries: tuple[int, ...] | None = None,
    shard_batches: int = 32,
    description: str = "encode",
    show_progress: bool = True,
    worker=None,
    wait_seconds: float = 3600,
) -> FeatureSet:
    """Returns the features of `tokens`, computing only what the cache lacks.

    Args:
        features_fn: maps `(token_ids, padding_mask)` to `[batch, layers, width]`.
        tokens: numpy arrays from `data.to_numpy(data.tokenize(...))`.
        cache_dir: root of the feature cache; this split goes in a subfolder
            named by `cache_key(key_fields)`.
        key_fields: everything that changes the features (weights, sequence
            length, precision, pooling, split...).
        batch_size: sentences per backbone call.
        boundaries: padded lengths. Default: for a `features_fn` with
            `static_shapes` (XLA), the multiples of 8, and short batches are
            padded with empty rows, so XLA compiles once per length; else
            every length (no padding beyond the batch's longest sentence).
        shard_batches: batches per shard on disk; a killed pass loses at most one.
        worker: a `distribute.WorkerInfo`. Workers sharing `cache_dir` split the
            shards between them (worker i starts at shard i and takes every
            count-th one, skipping shards already on disk); the chief then
            assembles the cache, and the others wait for it.
    """
    folder = os.path.join(cache_dir, cache_key(key_fields))
    final = os.path.join(folder, "features.npy")
    token_level = getattr(features_fn, "token_level", False)
    if os.path.exists(os.path.join(folder, "complete.json")):
        offsets_path = os.path.join(folder, "offsets.npy")
        return FeatureSet(np.load(final), np.load(os.path.join(folder, "labels.npy")),
                          np.load(os.path.join(folder, "idx.npy")),
                          np.load(offsets_path) if os.path.exists(offsets_path) else None)
    os.makedirs(folder, exist_ok=True)
    save_json(os.path.join(folder, "key.json"), key_fields)

    lengths = tokens["length"]
    seq_len = tokens["token_ids"].shape[1]
    static_shapes = getattr(features_fn, "static_shapes", True)
    if boundaries is None:
        step = 8 if static_shapes else 1
        boundaries = tuple(range(step, seq_len, step)) + (seq_len,)
    plan = data.plan_batches(lengths, batch_size, boundaries)
    shards = [plan[i:i + shard_batches] for i in range(0, len(plan), shard_batches)]

    index, count = (worker.index, worker.count) if worker is not None else (0, 1)
    mine = [i for i in range(len(shards)) if i % count == index]
    others = [i for i in range(len(shards)) if i % count != index]

    def shard_path(i):
        return os.path.join(folder, f"shard-{i:05d}.npy")

    progress = tqdm(total=len(lengths), desc=description, unit="sent", disable=not show_progress,
                    initial=sum(len(ix) for i in range(len(shards)) if os.path.exists(shard_path(i))
                                for ix, _ in shards[i]))
    def run_batch(fn, indices, padded) -> np.ndarray:
        num_rows = batch_size if static_shapes else len(indices)
        rows = np.zeros(num_rows, np.int64)
        rows[:len(indices)] = indices
        valid = np.arange(num_rows) < len(indices)
        out = fn(tf.constant(tokens["token_ids"][rows, :padded] * valid[:, None]),
                 tf.constant(tokens["padding_mask"][rows, :padded] * valid[:, None]))
        out = out.numpy()[:len(indices)].astype(STORAGE_DTYPE)
        if token_level:  # keep the real tokens only, example after example
            out = np.concatenate([out[i, :lengths[e]] for i, e in enumerate(indices)])
        progress.update(len(indices))
        return out

    replicas = getattr(features_fn, "replicas", None) or [features_fn]
    pool = ThreadPoolExecutor(len(replicas)) if len(replicas) > 1 else None
    for shard_id in mine + others:
        if os.path.exists(shard_path(shard_id)):
            continue
        if shard_id in others and count > 1:
            break  # another worker's shard: wait for it below
        batches = shards[shard_id]
        if pool is None:
            outputs = [run_batch(features_fn, ix, padded) for ix, padded in batches]
        else:  # one batch per device at a time; map keeps the order
            outputs = list(pool.map(lambda item: run_batch(replicas[item[0] % len(replicas)],
                                                           *item[1]), enumerate(batches)))
        tmp = os.path.join(folder, f"shard-{shard_id:05d}.tmp{index}.npy")
        np.save(tmp, np.concatenate(outputs))
        os.replace(tmp, shard_path(shard_id))
    progress.close()
    if pool is not None:
        pool.shutdown()
    if count > 1:
        done_marker = os.path.join(folder, "complete.json")
        if index != 0:  # the chief assembles the cache; wait for it
            _wait_for(lambda: os.path.exists(done_marker), wait_seconds, folder)
            return encode(features_fn, tokens, cache_dir, key_fields, batch_size, boundaries,
                          shard_batches, description, False)
        _wait_for(lambda: all(os.path.exists(shard_path(i)) for i in range(len(shards))),
                  wait_seconds, folder)

    order = np.concatenate([ix for ix, _ in plan]) if plan else np.zeros([0], np.int64)
    parts = [np.load(os.path.join(folder, f"shard-{i:05d}.npy")) for i in range(len(shards))]
    stacked = np.concatenate(parts) if parts else np.zeros([0, 1, 1], STORAGE_DTYPE)
    labels, idx = tokens["label"].astype(np.int32), tokens["idx"].astype(np.int32)
    if token_level:
        # Ragged rows back to the split's own order, so that every source sees
        # the same examples in the same order, cached or not.
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        encoded_offsets = np.concatenate([[0], np.cumsum(lengths[order])])
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        shift = encoded_offsets[position] - offsets[:-1]
        features = stacked[np.repeat(shift, lengths) + np.arange(offsets[-1])]
        np.save(os.path.join(folder, "offsets.npy"), offsets)
    else:
        offsets = None
        features = np.empty_like(stacked)
        features[order] = stacked  # back to the split's own order
    np.save(os.path.join(folder, "labels.npy"), labels)
    np.save(os.path.join(folder, "idx.npy"), idx)
    tmp = os.path.join(folder, "features.tmp.npy")
    np.save(tmp, features)
    os.replace(tmp, final)
    save_json(os.path.join(folder, "complete.json"), {"examples": int(len(labels))})
    for path in glob.glob(os.path.join(folder, "shard-*.npy")):
        os.remove(path)
    return FeatureSet(features, labels, idx, offsets)


def _wait_for(condition, seconds: float, folder: str) -> None:
    import time

    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            raise TimeoutError(f"waited {seconds:.0f}s for other workers' shards in {folder}")
        time.sleep(0.5)


def clear(cache_dir: str) -> None:
    shutil.rmtree(cache_dir, ignore_errors=True)
