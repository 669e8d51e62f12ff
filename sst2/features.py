"""The encode pass: run the frozen backbone once per example and cache the result.

A frozen backbone in inference mode is a fixed function, so its features for a
sentence never change. `encode` computes them once, in length-sorted batches
(little padding), and stores them on disk keyed by everything that changes
them; every epoch, every resumed run and every later run with the same key
reads them back. A killed encode pass resumes at its last finished shard.

The pieces: `FeatureCache` (one split's folder on disk), `plan_shards` (which
batches, in which shards), `encode` (runs the missing shards; under
multi-worker training, each worker its share) and `to_split_order`.

Example:
    >>> from sst2 import presets
    >>> from sst2.backbone import FeatureSpec
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

import dataclasses
import glob
import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from sst2 import data
from sst2.distribute import WorkerInfo
from sst2.encoder import FeatureEncoder
from sst2.errors import UserError
from sst2.files import load_json, save_json, write_atomically

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
    `backbone.frozen_features`), one per real token.
    """

    features: np.ndarray  # [N, num_layers, width] or [total_tokens, ...], float16
    labels: np.ndarray  # [N], int32 (-1 where unlabelled)
    idx: np.ndarray  # [N], the tfds `idx` of each example
    offsets: np.ndarray | None = None  # [N + 1] for token features
    # The cache file `features` maps, when it was loaded from a cache: `read_rows` reads it.
    file: "MappedNpy | None" = dataclasses.field(default=None, repr=False, compare=False)

    def read_rows(self, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Rows `starts[i]:starts[i] + counts[i]` of `features` for each i, concatenated.

        From a cache file they are read with one `pread` per range, into this
        process's memory only for as long as the caller keeps them: touching
        the memory map instead would keep every page read (the OS maps whole
        folios) and the process would grow to the file's size over an epoch.
        """
        if self.file is not None:
            return self.file.read_rows(starts, counts)
        return np.asarray(self.features[np.repeat(starts, counts) + positions_within(counts)])

    def read_padded(self, starts: np.ndarray, counts: np.ndarray, length: int) -> np.ndarray:
        """`[len(starts), length, ...]`: range i's rows first in row i, then zeros, in
        `features`' dtype (as `read_rows`, read straight into place)."""
        if self.file is not None:
            return self.file.read_padded(starts, counts, length)
        out = np.zeros((len(starts), length) + self.features.shape[1:], self.features.dtype)
        for i, (start, count) in enumerate(zip(starts.tolist(), counts.tolist())):
            out[i, :count] = self.features[start:start + count]
        return out

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def tokens(self, i: int) -> np.ndarray:
        return self.features[self.offsets[i]:self.offsets[i + 1]]


def positions_within(counts: np.ndarray) -> np.ndarray:
    """Each item's position within its run, for consecutive runs of `counts` items.

    >>> positions_within(np.array([2, 0, 3])).tolist()
    [0, 1, 0, 1, 2]
    """
    return np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)


class MappedNpy:
    """An `.npy` file as a read-only memory-mapped `array`, and row reads by `pread`.

    A damaged file (a header that does not parse, fewer bytes than it says)
    raises `ValueError` or `OSError` here.

    >>> np.save(os.path.join(tmp_dir, "a.npy"), np.arange(6, dtype=np.float16).reshape(3, 2))
    >>> mapped = MappedNpy(os.path.join(tmp_dir, "a.npy"))
    >>> mapped.array[1:].tolist(), mapped.array.flags.writeable
    ([[2.0, 3.0], [4.0, 5.0]], False)
    >>> mapped.read_rows(np.array([2, 0]), np.array([1, 2])).tolist()
    [[4.0, 5.0], [0.0, 1.0], [2.0, 3.0]]
    >>> mapped.read_padded(np.array([2, 0]), np.array([1, 2]), length=2).tolist()
    [[[4.0, 5.0], [0.0, 0.0]], [[0.0, 1.0], [2.0, 3.0]]]
    """

    def __init__(self, path: str):
        self.path, self.fd = path, None
        # numpy parses the header and checks the file's length; a memmap knows its offset.
        self.array = np.load(path, mmap_mode="r")
        self.shape, self.dtype = self.array.shape, self.array.dtype
        self.header = self.array.offset if isinstance(self.array, np.memmap) else 0
        self.row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        self.fd = os.open(path, os.O_RDONLY)

    def read_rows(self, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
        out = np.empty((int(np.sum(counts)),) + tuple(self.shape[1:]), self.dtype)
        self._read_into(out, starts, counts, np.cumsum(counts) - counts)
        return out

    def read_padded(self, starts: np.ndarray, counts: np.ndarray, length: int) -> np.ndarray:
        """As `FeatureSet.read_padded`: each range read into its own zero-padded row."""
        out = np.zeros((len(starts), length) + tuple(self.shape[1:]), self.dtype)
        self._read_into(out, starts, counts, np.arange(len(starts)) * length)
        return out

    def _read_into(self, out: np.ndarray, starts, counts, positions) -> None:
        """Reads rows `starts[i]:starts[i] + counts[i]` into `out`'s rows from `positions[i]`
        (`out` flattened to rows), one `pread` per range."""
        if not out.size:
            return
        buffer = memoryview(out).cast("B")
        for start, count, position in zip(starts.tolist(), counts.tolist(), positions.tolist()):
            size, offset = count * self.row_bytes, position * self.row_bytes
            if os.preadv(self.fd, [buffer[offset:offset + size]],
                         self.header + start * self.row_bytes) != size:
                raise OSError(f"{self.path} ended early (rows {start}..{start + count})")

    def __del__(self):
        if self.fd is not None:
            os.close(self.fd)


class CorruptCache(Exception):
    """A cache folder whose files cannot be read back as written."""


def cache_key(key_fields: dict) -> str:
    """A short stable hash of everything that changes the features."""
    blob = json.dumps({"format": CACHE_FORMAT, **key_fields}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class FeatureCache:
    """One split's features on disk, in `<cache_dir>/<cache_key(key_fields)>/`.

    While encoding, finished shards are `shard-NNNNN.npy`; when all are done,
    they are assembled into `features.npy` (+ `labels.npy`, `idx.npy`,
    `offsets.npy` for tokens) and `complete.json` marks the folder complete.
    Every file is written under a temporary name and renamed.
    """

    def __init__(self, cache_dir: str, key_fields: dict):
        self.key_fields = key_fields
        self.folder = os.path.join(cache_dir, cache_key(key_fields))

    def _path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def is_complete(self) -> bool:
        return os.path.exists(self._path("complete.json"))

    def load(self) -> FeatureSet:
        """The assembled split; its features are memory-mapped from `features.npy`.

        Raises:
            CorruptCache: when a file is unreadable or the files disagree in size.
        """
        offsets_path = self._path("offsets.npy")
        try:
            with open(self._path("complete.json")) as f:
                examples = json.load(f)["examples"]
            # Memory-mapped, and read by rows (`read_rows`), so memory does not grow
            # with the dataset.
            mapped = MappedNpy(self._path("features.npy"))
            result = FeatureSet(mapped.array, np.load(self._path("labels.npy")),
                                np.load(self._path("idx.npy")),
                                np.load(offsets_path) if os.path.exists(offsets_path) else None,
                                file=mapped)
        except (OSError, ValueError, KeyError, EOFError) as e:
            raise CorruptCache(f"{type(e).__name__}: {e}") from e
        rows = len(result.features)
        expected_rows = examples if result.offsets is None else int(result.offsets[-1])
        if len(result.labels) != examples or len(result.idx) != examples or rows != expected_rows:
            raise CorruptCache(f"{examples} examples recorded, files hold {len(result.labels)} "
                               f"labels and {rows} feature rows")
        return result

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def start(self) -> None:
        os.makedirs(self.folder, exist_ok=True)
        save_json(self._path("key.json"), self.key_fields)

    def shard_plan(self, plan: dict, log=print) -> dict:
        """The plan (batch size, buckets, batches per shard) this folder's shards follow.

        A killed pass resumed with other options must continue the plan its shards were
        written with, or a shard would hold other examples than its place says. Shards
        without a recorded plan (older versions) are discarded.
        """
        path = self._path("plan.json")
        try:
            recorded = load_json(path) if os.path.exists(path) else None
        except UserError as e:
            raise CorruptCache(str(e)) from e
        if recorded is None and glob.glob(self._path("shard-*.npy")):
            log(f"Discarding shards without a recorded plan in {self.folder}.")
            for shard in glob.glob(self._path("shard-*.npy")):
                os.remove(shard)
        if recorded is not None and recorded != plan:
            log(f"Continuing the partial encode pass in {self.folder} with the batches it "
                f"started with ({recorded}).")
            return recorded
        save_json(path, plan)
        return plan

    def has_shard(self, shard_id: int) -> bool:
        return os.path.exists(self._path(f"shard-{shard_id:05d}.npy"))

    def write_shard(self, shard_id: int, array: np.ndarray, writer: int = 0) -> None:
        write_atomically(self._path(f"shard-{shard_id:05d}.npy"), lambda f: np.save(f, array),
                         "wb", tmp=self._path(f"shard-{shard_id:05d}.tmp{writer}.npy"))

    def read_shards(self, rows: list[int]) -> list[np.ndarray]:
        """Every shard, each checked to hold the `rows[i]` feature rows its plan says."""
        try:
            parts = [np.load(self._path(f"shard-{i:05d}.npy")) for i in range(len(rows))]
        except (OSError, ValueError, EOFError) as e:
            raise CorruptCache(f"{type(e).__name__}: {e}") from e
        for i, (part, expected) in enumerate(zip(parts, rows)):
            if len(part) != expected:
                raise CorruptCache(f"shard {i} holds {len(part)} rows, its plan {expected}")
        return parts

    def write(self, features: FeatureSet) -> None:
        """Stores the assembled split, marks the folder complete, removes the shards."""
        arrays = {"labels.npy": features.labels, "idx.npy": features.idx,
                  "features.npy": features.features}
        if features.offsets is not None:
            arrays["offsets.npy"] = features.offsets
        for name, array in arrays.items():
            write_atomically(self._path(name), lambda f, a=array: np.save(f, a), "wb")
        save_json(self._path("complete.json"), {"examples": int(len(features.labels))})
        for path in glob.glob(self._path("shard-*.npy")):
            os.remove(path)


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
    result = FeatureSet(features, tokens["label"].astype(np.int32),
                        tokens["idx"].astype(np.int32), offsets)
    cache.write(result)
    del result, features, encoded, parts  # read back from disk pages instead (`load`)
    return cache.load()
