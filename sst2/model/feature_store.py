"""The feature cache on disk: one split's frozen features, written once, read by rows.

`FeatureCache` is one split's folder (keyed by everything that changes the
features); `FeatureSet` the assembled split, its features memory-mapped
(`sst2.model.npy_rows`) and read a row at a time, so memory does not grow with the
dataset. The encode pass that fills it is `sst2.model.features`.

Example:
    >>> cache = FeatureCache(tmp_dir, {"split": "demo"})
    >>> cache.start()
    >>> cache.write(FeatureSet(np.ones((3, 1, 4), np.float16), np.array([0, 1, 0], np.int32),
    ...                        np.arange(3, dtype=np.int32)))
    >>> cache.is_complete(), cache.load().read_rows(np.array([1]), np.array([1])).shape
    (True, (1, 1, 4))
"""

import dataclasses
import glob
import hashlib
import json
import os
import shutil

import numpy as np
from absl import logging

from sst2.model.npy_rows import MappedNpy, SplitOrderWriter, positions_within
from sst2.run.errors import UserError
from sst2.run.files import load_json, save_json, write_atomically

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
    labels: np.ndarray  # [N] int32 class ids, [N, labels] int32 0/1, or [N] float32
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

    @property
    def row_shape(self) -> tuple:
        """The shape of one row of `features`: `[num_layers, width]` or a token's."""
        return self.features.shape[1:]

    @property
    def dtype(self) -> np.dtype:
        return self.features.dtype

    @property
    def rows(self) -> int:
        return len(self.features)


class JoinedFeatureSet:
    """Two feature sets read as one, `first`'s examples then `second`'s: a split and
    rows added to it for training (`sst2.fit.augmented`), each cached on its own, so
    adding rows encodes only them. It reads as `FeatureSet` does (`labels`, `idx`,
    `offsets`, `read_rows`, `read_padded`); an example's rows are all in one set.

    Example:
        >>> one = FeatureSet(np.zeros((2, 1, 4), np.float16), np.array([0, 1]), np.arange(2))
        >>> two = FeatureSet(np.ones((1, 1, 4), np.float16), np.array([1]), np.array([7]))
        >>> both = JoinedFeatureSet(one, two)
        >>> len(both), both.idx.tolist(), both.read_rows(np.array([2, 0]), np.ones(2, int))[:, 0, 0]
        (3, [0, 1, 7], array([1., 0.], dtype=float16))
    """

    def __init__(self, first: FeatureSet, second: FeatureSet):
        if first.row_shape != second.row_shape or (first.offsets is None) != (
                second.offsets is None):
            raise ValueError("joined feature sets must hold features of one shape")
        self.first, self.second, self.boundary = first, second, first.rows
        self.labels = np.concatenate([first.labels, second.labels])
        self.idx = np.concatenate([first.idx, second.idx])
        self.offsets = (None if first.offsets is None else np.concatenate(
            [first.offsets, second.offsets[1:] + first.offsets[-1]]))
        self.row_shape, self.dtype = first.row_shape, first.dtype
        self.rows = first.rows + second.rows

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def read_rows(self, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
        in_first = starts < self.boundary
        out = np.empty((int(counts.sum()),) + self.row_shape, self.dtype)
        row_in_first = np.repeat(in_first, counts)
        out[row_in_first] = self.first.read_rows(starts[in_first], counts[in_first])
        out[~row_in_first] = self.second.read_rows(starts[~in_first] - self.boundary,
                                                   counts[~in_first])
        return out

    def read_padded(self, starts: np.ndarray, counts: np.ndarray, length: int) -> np.ndarray:
        in_first = starts < self.boundary
        out = np.empty((len(starts), length) + self.row_shape, self.dtype)
        out[in_first] = self.first.read_padded(starts[in_first], counts[in_first], length)
        out[~in_first] = self.second.read_padded(starts[~in_first] - self.boundary,
                                                 counts[~in_first], length)
        return out


class CorruptCache(Exception):
    """A cache folder whose files cannot be read back as written."""


def cache_key(key_fields: dict) -> str:
    """A short stable hash of everything that changes the features."""
    blob = json.dumps({"format": CACHE_FORMAT, **key_fields}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class FeatureCache:
    """One split's features on disk, in `<cache_dir>/<cache_key(key_fields)>/`.

    While encoding, finished shards are `shard-NNNNN.npy` (what a killed pass
    resumes from, and how workers share the pass); the split's `features.npy`
    is filled in split order as shards finish (`features_writer`), then
    `finish` adds `labels.npy`, `idx.npy` (+ `offsets.npy` for tokens) and
    `complete.json`, which marks the folder complete. Every file is written
    under a temporary name and renamed.
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

    def shard_plan(self, plan: dict) -> dict:
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
            logging.info(f"Discarding shards without a recorded plan in {self.folder}.")
            for shard in glob.glob(self._path("shard-*.npy")):
                os.remove(shard)
        if recorded is not None and recorded != plan:
            logging.info(f"Continuing the partial encode pass in {self.folder} with the batches it "
                         f"started with ({recorded}).")
            return recorded
        save_json(path, plan)
        return plan

    def has_shards(self) -> bool:
        """Whether a pass started here left finished shards (a killed pass resumes from
        them)."""
        return os.path.isdir(self.folder) and any(
            name.startswith("shard-") and name.endswith(".npy") and ".tmp" not in name
            for name in os.listdir(self.folder))

    def has_shard(self, shard_id: int) -> bool:
        return os.path.exists(self._path(f"shard-{shard_id:05d}.npy"))

    def write_shard(self, shard_id: int, array: np.ndarray, writer: int = 0) -> None:
        write_atomically(self._path(f"shard-{shard_id:05d}.npy"), lambda f: np.save(f, array),
                         "wb", tmp=self._path(f"shard-{shard_id:05d}.tmp{writer}.npy"))

    def read_shard(self, shard_id: int, rows: int) -> np.ndarray:
        """A finished shard, checked to hold the `rows` feature rows its plan says."""
        try:
            part = np.load(self._path(f"shard-{shard_id:05d}.npy"))
        except (OSError, ValueError, EOFError) as e:
            raise CorruptCache(f"{type(e).__name__}: {e}") from e
        if len(part) != rows:
            raise CorruptCache(f"shard {shard_id} holds {len(part)} rows, its plan {rows}")
        return part

    def features_writer(self, rows: int) -> SplitOrderWriter:
        """The writer of this split's `features.npy` (`rows` rows), for `finish`."""
        return SplitOrderWriter(self._path("features.npy"), rows)

    def finish(self, labels: np.ndarray, idx: np.ndarray, offsets: np.ndarray | None) -> None:
        """With `features.npy` written: stores the rest, marks the folder complete,
        removes the shards."""
        arrays = {"labels.npy": labels, "idx.npy": idx}
        if offsets is not None:
            arrays["offsets.npy"] = offsets
        for name, array in arrays.items():
            write_atomically(self._path(name), lambda f, a=array: np.save(f, a), "wb")
        save_json(self._path("complete.json"), {"examples": int(len(labels))})
        for path in glob.glob(self._path("shard-*.npy")):
            os.remove(path)

    def write(self, features: FeatureSet) -> None:
        """Stores a whole split at once (`features_writer` + `finish`)."""
        writer = self.features_writer(len(features.features))
        writer.put(np.zeros(1, np.int64), np.array([len(features.features)]), features.features)
        writer.close()
        self.finish(features.labels, features.idx, features.offsets)
