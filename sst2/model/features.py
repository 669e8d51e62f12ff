"""The encode pass: run the frozen backbone once per example and cache the result.

A frozen backbone in inference mode is a fixed function, so its features for a
sentence never change. `encode` computes them once, in length-sorted batches
(little padding), and stores them on disk keyed by everything that changes
them; every epoch, every resumed run and every later run with the same key
reads them back. A killed encode pass resumes at its last finished shard.

The pieces: `plan_shards` (which batches, in which shards), `encode` (runs the
missing shards into a `feature_store.FeatureCache`; under multi-worker
training, each worker its share) and `destinations` (where a shard's rows go in
split order).

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
from absl import logging
from tqdm.auto import tqdm

from sst2.model.encoder import FeatureEncoder
from sst2.model.feature_store import STORAGE_DTYPE, CorruptCache, FeatureCache, FeatureSet
from sst2.run.errors import UserError
from sst2.run.worker import WorkerInfo
from sst2.text import data

# A shard of a token plan holds about this many tokens (as 32 batches of 128 SST-2
# sentences do): what a killed pass can lose, and the unit workers share.
SHARD_TOKENS = 65536


def batch_plan(encoder: FeatureEncoder, sequence_length: int, batch_size: int,
               batch_tokens: int | None, boundaries: tuple[int, ...] | None = None,
               shard_batches: int | None = None) -> dict:
    """How the encode pass batches (`data.planned_batches`) and shards: by padded
    tokens where any shape runs, else `batch_size` sentences padded to `boundaries`
    (default: the encoder's own lengths, e.g. XLA's fixed shapes)."""
    if batch_tokens and not encoder.static_shapes and boundaries is None:
        return {"batch_tokens": batch_tokens,
                "shard_batches": shard_batches or max(1, SHARD_TOKENS // batch_tokens)}
    return {"batch_size": batch_size,
            "boundaries": list(boundaries or encoder.padded_lengths(sequence_length)),
            "shard_batches": shard_batches or 32}


def plan_shards(lengths: np.ndarray, plan: dict) -> list[list[tuple[np.ndarray, int]]]:
    """A `batch_plan`'s length-sorted batches `(indices, padded_length)`, grouped into
    shards of its `shard_batches`."""
    batches, size = data.planned_batches(lengths, plan), plan["shard_batches"]
    return [batches[i:i + size] for i in range(0, len(batches), size)]


def destinations(shard: list[tuple[np.ndarray, int]], lengths: np.ndarray,
                 offsets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Where a shard's rows (its examples in encode order; for tokens, each example's
    real tokens) go in the split-order features: `(starts, counts)`, a run of rows
    per example.

    >>> lengths = np.array([2, 1, 3])
    >>> [x.tolist() for x in destinations([(np.array([2, 0]), 3)], lengths, None)]
    [[2, 0], [1, 1]]
    >>> [x.tolist() for x in destinations([(np.array([2, 0]), 3)], lengths,
    ...                                   np.array([0, 2, 3, 6]))]
    [[3, 0], [3, 2]]
    """
    indices = np.concatenate([ix for ix, _ in shard])
    if offsets is None:
        return indices, np.ones_like(indices)
    return offsets[indices], lengths[indices].astype(np.int64)


def _encode_batch(fn, tokens: dict, indices: np.ndarray, padded: int, rows: int | None,
                  token_level: bool) -> np.ndarray:
    """One backbone call on `indices` padded to `padded` tokens (and to `rows` rows if set)."""
    num_rows = rows or len(indices)
    picked = np.zeros(num_rows, np.int64)
    picked[:len(indices)] = indices
    valid = (np.arange(num_rows) < len(indices))[:, None]
    out = fn(tf.constant(tokens["token_ids"][picked, :padded] * valid),
             tf.constant(tokens["padding_mask"][picked, :padded] * valid))
    out = out.numpy()[:len(indices)]
    if token_level:  # keep the real tokens only, example after example
        out = out[np.arange(out.shape[1]) < tokens["length"][indices][:, None]]
    return out.astype(STORAGE_DTYPE)


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
    batch_tokens: int | None = None,
    shard_batches: int | None = None,
    description: str = "encode",
    show_progress: bool = True,
    worker: WorkerInfo = WorkerInfo(),
    wait_seconds: float = 3600,
) -> FeatureSet:
    """Returns the features of `tokens`, computing only what the cache lacks.

    Args:
        encoder: the backbone's `FeatureEncoder`.
        tokens: numpy arrays from `data.to_numpy(data.tokenize(...))`.
        cache_dir: root of the feature cache (see `FeatureCache`).
        key_fields: everything that changes the features (weights, sequence
            length, precision, pooling, split...).
        batch_size: sentences per backbone call (without `batch_tokens`).
        boundaries: padded lengths (default: `encoder.padded_lengths`). With
            `encoder.static_shapes`, short batches are also padded with empty
            rows, so XLA compiles once per length.
        batch_tokens: padded tokens per backbone call, where the encoder runs
            any shape and no `boundaries` are given (`batch_plan`).
        shard_batches: batches per shard on disk; a killed pass loses at most one
            (default: 32 batches of sentences, or `SHARD_TOKENS` tokens).
        worker: this process's place among workers sharing `cache_dir`: worker
            i encodes every count-th shard from shard i (skipping shards on
            disk); the chief then assembles the cache and the others wait for it.

    A damaged cache entry (unreadable, or sizes that disagree) is reported,
    discarded and encoded again.
    """
    cache = FeatureCache(cache_dir, key_fields)
    for attempt in (1, 2):
        try:
            plan = batch_plan(encoder, tokens["token_ids"].shape[1], batch_size, batch_tokens,
                              boundaries, shard_batches) if encoder else {}
            return _encode_once(cache, encoder, tokens, plan, description, show_progress,
                                worker, wait_seconds)
        except CorruptCache as e:
            if attempt == 2 or worker.count > 1:
                raise UserError(f"The feature cache {cache.folder} is unreadable ({e}); "
                                "check the disk, then delete the folder.") from e
            logging.info(f"The feature cache {cache.folder} is damaged ({e}); discarding and "
                         "re-encoding it.")
            cache.discard()


def _encode_once(cache: FeatureCache, encoder: FeatureEncoder, tokens: dict, plan: dict,
                 description: str, show_progress: bool, worker: WorkerInfo,
                 wait_seconds: float) -> FeatureSet:
    if cache.is_complete():
        return cache.load()
    cache.start()
    lengths = tokens["length"]
    plan = cache.shard_plan(plan)
    shards = plan_shards(lengths, plan)
    mine = [i for i in range(len(shards)) if i % worker.count == worker.index]

    done = sum(len(ix) for i in range(len(shards)) if cache.has_shard(i) for ix, _ in shards[i])
    progress = tqdm(total=len(lengths), desc=description, unit="sent", initial=done,
                    disable=not show_progress)
    replicas = encoder.replicas
    rows = plan.get("batch_size") if encoder.static_shapes else None

    def run(item):
        position, (indices, padded) = item
        out = _encode_batch(replicas[position % len(replicas)], tokens, indices, padded, rows,
                            encoder.token_level)
        progress.update(len(indices))
        return out

    offsets = (np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
               if encoder.token_level else None)
    writer = cache.features_writer(len(lengths) if offsets is None else int(offsets[-1]))
    placed, saved = set(), []
    with ThreadPoolExecutor(len(replicas)) as pool, ThreadPoolExecutor(1) as saver:
        for shard_id in mine:  # one batch per device at a time, in order
            if not cache.has_shard(shard_id):
                part = np.concatenate(list(pool.map(run, enumerate(shards[shard_id]))))
                # Its file (what a killed pass resumes from) is written while the next
                # shard encodes; the chief also puts it in place in the split's file.
                saved.append(saver.submit(cache.write_shard, shard_id, part, worker.index))
                if worker.is_chief:
                    writer.put(*destinations(shards[shard_id], lengths, offsets), part)
                    placed.add(shard_id)
    for future in saved:
        future.result()  # a failed write (a full disk) is raised here
    progress.close()

    if worker.count > 1:
        if not worker.is_chief:  # the chief assembles the cache; wait for it
            _wait_for(cache.is_complete, wait_seconds, cache.folder)
            return cache.load()
        _wait_for(lambda: all(cache.has_shard(i) for i in range(len(shards))), wait_seconds,
                  cache.folder)
    for shard_id, shard in enumerate(shards):  # an earlier pass's shards, other workers'
        if shard_id not in placed:
            starts, counts = destinations(shard, lengths, offsets)
            writer.put(starts, counts, cache.read_shard(shard_id, int(counts.sum())))
    writer.close()
    labels = tokens["label"]
    cache.finish(labels if labels.dtype.kind == "f" else labels.astype(np.int32),
                 tokens["idx"].astype(np.int32), offsets)
    return cache.load()
