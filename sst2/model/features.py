"""The encode pass: run the frozen backbone once per example and cache the result.

A frozen backbone in inference mode is a fixed function, so its features for a
sentence never change. `encode` computes them once, in length-sorted batches
(little padding), and stores them on disk keyed by everything that changes
them; every epoch, every resumed run and every later run with the same key
reads them back. A killed encode pass resumes at its last finished shard.

The pieces: `plan_shards` (which batches, in which shards), `encode` (runs the
missing shards into a `feature_store.FeatureCache`; under multi-worker
training, each worker its share) and `to_split_order`.

Example:
    >>> from sst2.model import presets
    >>> from sst2.model.backbone import FeatureSpec
    >>> backbone = presets.load_backbone(preset)
    >>> encoder = FeatureEncoder.for_backbone(backbone, FeatureSpec("cls", "last"),
    ...                                       jit_compile=False)
    >>> tokens = {"token_ids": np.array([[2, 7, 3, 0], [2, 8, 9, 3]], np.int32),
    ...           "padding_mask": np.array([[1, 1, 1, 0], [1, 1, 1, 1]], np.int32),
    ...           "length": np.array([3, 4], np.int32), "label": np.array([0, 1]),
    ...           "idx": np.array([0, 1])}
    >>> cached = encode(encoder, tokens, cache_dir=tmp_dir, key_fields={"split": "demo"},
    ...                 show_progress=False)
    >>> cached.features.shape, cached.features.dtype
    ((2, 1, 16), dtype('float16'))
    >>> encode(None, tokens, tmp_dir, {"split": "demo"}).labels   # from the cache
    array([0, 1], dtype=int32)
"""

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from sst2.model.encoder import FeatureEncoder
from sst2.model.feature_store import STORAGE_DTYPE, CorruptCache, FeatureCache, FeatureSet
from sst2.run.errors import UserError
from sst2.run.worker import WorkerInfo
from sst2.text import data


def plan_shards(lengths: np.ndarray, batch_size: int, boundaries: tuple[int, ...],
                shard_batches: int) -> list[list[tuple[np.ndarray, int]]]:
    """Length-sorted batches `(indices, padded_length)`, grouped `shard_batches` to a shard."""
    plan = data.plan_batches(lengths, batch_size, boundaries)
    return [plan[i:i + shard_batches] for i in range(0, len(plan), shard_batches)]


def to_split_order(encoded: np.ndarray, order: np.ndarray, lengths: np.ndarray,
                   token_level: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Features in encode order (`order[k]` is the k-th encoded example) -> split order.

    Returns the features and, for ragged token features, their offsets, so that
    every source sees the same examples in the same order, cached or not.
    """
    if not token_level:
        features = np.empty_like(encoded)
        features[order] = encoded
        return features, None
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    encoded_offsets = np.concatenate([[0], np.cumsum(lengths[order])])
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    shift = encoded_offsets[position] - offsets[:-1]
    return encoded[np.repeat(shift, lengths) + np.arange(offsets[-1])], offsets


def _encode_batch(fn, tokens: dict, indices: np.ndarray, padded: int, rows: int | None,
                  token_level: bool) -> np.ndarray:
    """One backbone call on `indices` padded to `padded` tokens (and to `rows` rows if set)."""
    num_rows = rows or len(indices)
    picked = np.zeros(num_rows, np.int64)
    picked[:len(indices)] = indices
    valid = (np.arange(num_rows) < len(indices))[:, None]
    out = fn(tf.constant(tokens["token_ids"][picked, :padded] * valid),
             tf.constant(tokens["padding_mask"][picked, :padded] * valid))
    out = out.numpy()[:len(indices)].astype(STORAGE_DTYPE)
    if token_level:  # keep the real tokens only, example after example
        lengths = tokens["length"]
        out = np.concatenate([out[i, :lengths[e]] for i, e in enumerate(indices)])
    return out


def _wait_for(condition, seconds: float, folder: str) -> None:
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            raise TimeoutError(f"waited {seconds:.0f}s for other workers' shards in {folder}")
        time.sleep(0.5)


def encode(
    encoder: FeatureEncoder,
    tokens: dict,
    cache_dir: str,
    key_fields: dict,
    batch_size: int = 128,
    boundaries: tuple[int, ...] | None = None,
    shard_batches: int = 32,
    description: str = "encode",
    show_progress: bool = True,
    worker: WorkerInfo = WorkerInfo(),
    wait_seconds: float = 3600,
    log=print,
) -> FeatureSet:
    """Returns the features of `tokens`, computing only what the cache lacks.

    Args:
        encoder: the backbone's `FeatureEncoder`.
        tokens: numpy arrays from `data.to_numpy(data.tokenize(...))`.
        cache_dir: root of the feature cache (see `FeatureCache`).
        key_fields: everything that changes the features (weights, sequence
            length, precision, pooling, split...).
        batch_size: sentences per backbone call.
        boundaries: padded lengths (default: `encoder.padded_lengths`). With
            `encoder.static_shapes`, short batches are also padded with empty
            rows, so XLA compiles once per length.
        shard_batches: batches per shard on disk; a killed pass loses at most one.
        worker: this process's place among workers sharing `cache_dir`: worker
            i encodes every count-th shard from shard i (skipping shards on
            disk); the chief then assembles the cache and the others wait for it.

    A damaged cache entry (unreadable, or sizes that disagree) is reported,
    discarded and encoded again.
    """
    cache = FeatureCache(cache_dir, key_fields)
    for attempt in (1, 2):
        try:
            return _encode_once(cache, encoder, tokens, batch_size, boundaries, shard_batches,
                                description, show_progress, worker, wait_seconds, log)
        except CorruptCache as e:
            if attempt == 2 or worker.count > 1:
                raise UserError(f"The feature cache {cache.folder} is unreadable ({e}); "
                                "check the disk, then delete the folder.") from e
            log(f"The feature cache {cache.folder} is damaged ({e}); discarding and "
                "re-encoding it.")
            cache.discard()


def _encode_once(cache: FeatureCache, encoder: FeatureEncoder, tokens: dict, batch_size: int,
                 boundaries, shard_batches: int, description: str, show_progress: bool,
                 worker: WorkerInfo, wait_seconds: float, log=print) -> FeatureSet:
    if cache.is_complete():
        return cache.load()
    cache.start()
    lengths = tokens["length"]
    boundaries = boundaries or encoder.padded_lengths(tokens["token_ids"].shape[1])
    plan = cache.shard_plan({"batch_size": batch_size, "boundaries": list(boundaries),
                             "shard_batches": shard_batches}, log)
    batch_size, shard_batches = plan["batch_size"], plan["shard_batches"]
    shards = plan_shards(lengths, batch_size, tuple(plan["boundaries"]), shard_batches)
    mine = [i for i in range(len(shards)) if i % worker.count == worker.index]

    done = sum(len(ix) for i in range(len(shards)) if cache.has_shard(i) for ix, _ in shards[i])
    progress = tqdm(total=len(lengths), desc=description, unit="sent", initial=done,
                    disable=not show_progress)
    replicas = encoder.replicas
    rows = batch_size if encoder.static_shapes else None

    def run(item):
        position, (indices, padded) = item
        out = _encode_batch(replicas[position % len(replicas)], tokens, indices, padded, rows,
                            encoder.token_level)
        progress.update(len(indices))
        return out

    with ThreadPoolExecutor(len(replicas)) as pool:  # one batch per device at a time
        for shard_id in mine:
            if not cache.has_shard(shard_id):
                outputs = list(pool.map(run, enumerate(shards[shard_id])))  # keeps the order
                cache.write_shard(shard_id, np.concatenate(outputs), writer=worker.index)
    progress.close()

    if worker.count > 1:
        if not worker.is_chief:  # the chief assembles the cache; wait for it
            _wait_for(cache.is_complete, wait_seconds, cache.folder)
            return cache.load()
        _wait_for(lambda: all(cache.has_shard(i) for i in range(len(shards))), wait_seconds,
                  cache.folder)

    order = (np.concatenate([ix for shard in shards for ix, _ in shard]) if shards
             else np.zeros([0], np.int64))
    parts = cache.read_shards([
        sum(int(lengths[ix].sum()) if encoder.token_level else len(ix) for ix, _ in shard)
        for shard in shards])
    encoded = np.concatenate(parts) if parts else np.zeros([0, 1, 1], STORAGE_DTYPE)
    features, offsets = to_split_order(encoded, order, lengths, encoder.token_level)
    labels = tokens["label"]
    result = FeatureSet(features, labels if labels.dtype.kind == "f" else labels.astype(np.int32),
                        tokens["idx"].astype(np.int32), offsets)
    cache.write(result)
    del result, features, encoded, parts  # read back from disk pages instead (`load`)
    return cache.load()
