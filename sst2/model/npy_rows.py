"""An `.npy` file read and written by ranges of rows, never whole: what lets the feature
cache (`sst2.model.feature_store`) hold a split larger than memory.

`MappedNpy` reads ranges of rows with `pread`; `SplitOrderWriter` writes them with
`pwrite`, in any order, into a file of a known number of rows.
"""

import os

import numpy as np


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


class SplitOrderWriter:
    """`features.npy` of a split, filled part by part in any order: each run of a
    part's rows is written straight to its place with `pwrite`, so the process holds
    no copy of the split and memory does not grow with it (as `MappedNpy` reads);
    under a temporary name until `close`.

    >>> writer = SplitOrderWriter(os.path.join(tmp_dir, "f.npy"), rows=4)
    >>> writer.put(np.array([3, 0]), np.array([1, 2]), np.array([[3], [0], [1]], np.float16))
    >>> writer.put(np.array([2]), np.array([1]), np.array([[2]], np.float16))
    >>> writer.close()
    >>> np.load(os.path.join(tmp_dir, "f.npy")).ravel().tolist()
    [0.0, 1.0, 2.0, 3.0]
    """

    def __init__(self, path: str, rows: int):
        self.path, self.tmp, self.rows, self.fd = path, f"{path}.tmp", rows, None

    def _create(self, shape: tuple, dtype) -> None:
        if os.path.lexists(self.tmp):  # a killed pass's, or a link: never written through
            os.unlink(self.tmp)
        header = np.lib.format.open_memmap(self.tmp, "w+", dtype, shape)  # header + holes
        self.header, self.row_bytes = header.offset, int(np.prod(shape[1:])) * header.itemsize
        del header
        self.fd = os.open(self.tmp, os.O_WRONLY | os.O_NOFOLLOW)
        if hasattr(os, "posix_fallocate"):  # a full disk: an error now, not at writeback
            try:
                os.posix_fallocate(self.fd, 0, os.fstat(self.fd).st_size)
            except OSError as e:
                os.close(self.fd)
                self.fd = None
                os.unlink(self.tmp)  # nothing left holding the space it got
                raise OSError(e.errno, e.strerror, self.tmp) from e

    def put(self, starts: np.ndarray, counts: np.ndarray, part: np.ndarray) -> None:
        """Writes `part`'s rows, run after run: run i's `counts[i]` rows to rows
        `starts[i]:starts[i] + counts[i]` of the file."""
        if self.fd is None:
            self._create((self.rows,) + part.shape[1:], part.dtype)
        data = memoryview(np.ascontiguousarray(part)).cast("B")
        sources = (np.cumsum(counts) - counts).tolist()
        for start, count, source in zip(starts.tolist(), counts.tolist(), sources):
            block = data[source * self.row_bytes:(source + count) * self.row_bytes]
            if os.pwrite(self.fd, block, self.header + start * self.row_bytes) != len(block):
                raise OSError(f"{self.tmp}: a short write (rows {start}..{start + count})")

    def close(self, empty_shape: tuple = (1, 1), dtype=np.float16) -> None:
        """Renames the file into place (with no part put: `[0, *empty_shape]`)."""
        if self.fd is None:
            self._create((self.rows,) + empty_shape, dtype)
        os.close(self.fd)
        self.fd = None
        os.replace(self.tmp, self.path)
