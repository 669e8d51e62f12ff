"""Batch sources: deterministic functions from `(epoch, batch index)` to a batch.

A resumed run can start at any batch and see exactly the batches an
uninterrupted run would have seen, because every epoch's plan is a pure
function of `(seed, epoch)`. Batches have a fixed number of rows (padded rows
weigh 0) and, for token features, a length from a small fixed set of buckets,
so compiled steps see few shapes.

Example:
    >>> from sst2.model import feature_store
    >>> cached = feature_store.FeatureSet(np.ones((10, 1, 4), np.float16), np.ones(10, np.int32),
    ...                              np.arange(10, dtype=np.int32))
    >>> source = CachedFeatureSource(cached, batch_size=4, seed=0)
    >>> source.num_batches(epoch=0)
    3
    >>> last = source.batch(epoch=0, index=2)
    >>> last.features.shape, last.weights.tolist()
    ((4, 1, 4), [1.0, 1.0, 0.0, 0.0])
"""

import dataclasses
from typing import Protocol

import numpy as np
import tensorflow as tf

from sst2.text import data


@dataclasses.dataclass
class Batch:
    """A global batch, padded to a fixed size; padded rows have weight 0.

    `features` is an array of pooled features, or a dict of `tokens`
    `[batch, length, hidden]` and `mask` `[batch, length]`; cached features come
    as stored (float16), and the compiled steps cast them.
    """

    features: np.ndarray | dict
    labels: np.ndarray
    weights: np.ndarray


class BatchSource(Protocol):
    def num_batches(self, epoch: int) -> int: ...

    def batch(self, epoch: int, index: int) -> Batch: ...

    def dataset(self, epoch: int, start: int = 0) -> tf.data.Dataset: ...


def _pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    if len(array) == rows:
        return array
    pad = np.zeros((rows - len(array),) + array.shape[1:], array.dtype)
    return np.concatenate([array, pad])


def _token_batch(features, examples: np.ndarray, padded: int, rows: int) -> dict:
    """`examples`' cached token features padded to `padded` tokens and `rows` rows, and
    their mask; each example's rows read straight into its row of the batch."""
    lengths = features.lengths[examples]
    tokens = _pad_rows(features.read_padded(features.offsets[examples], lengths, padded), rows)
    mask = (np.arange(padded) < _pad_rows(lengths, rows)[:, None]).astype(np.int32)
    return {"tokens": tokens, "mask": mask}


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    # One generator per (seed, epoch): any epoch's order is known without replaying earlier ones.
    return np.random.default_rng([seed, epoch])


class _PlannedSource:
    """A deterministic batch plan per epoch, as a tf.data pipeline: what makes every source
    resumable, and what every source feeds the steps through."""

    parallel_reads = 2  # batches assembled at a time

    def __init__(self, lengths: np.ndarray, batch_size: int,
                 boundaries: tuple[int, ...] | None, seed: int, shuffle: bool):
        self.lengths = lengths
        self.batch_size = batch_size
        self.boundaries = boundaries
        self.seed = seed
        self.shuffle = shuffle
        self._plans = {}

    def _plan(self, epoch: int) -> list:
        key = epoch if self.shuffle else 0
        if key not in self._plans:  # keep only the current epoch's plan
            rng = _epoch_rng(self.seed, epoch) if self.shuffle else None
            self._plans = {key: data.plan_batches(self.lengths, self.batch_size,
                                                  self.boundaries, rng)}
        return self._plans[key]

    def num_batches(self, epoch: int) -> int:
        return len(self._plan(epoch))

    def batch_indices(self, epoch: int, index: int) -> np.ndarray:
        """Which examples batch `index` of `epoch` holds (its first rows, in order)."""
        return self._plan(epoch)[index][0]

    def _labels_and_weights_spec(self) -> tuple:
        labels = self._all_labels()
        return (tf.TensorSpec([self.batch_size] + list(labels.shape[1:]),
                              tf.as_dtype(labels.dtype)),
                tf.TensorSpec([self.batch_size], tf.float32))

    def _all_labels(self) -> np.ndarray:
        """Every example's label (class ids, 0/1 rows, or numbers)."""
        raise NotImplementedError

    def _labels_and_weights(self, labels: np.ndarray) -> dict:
        return {"labels": _pad_rows(labels, self.batch_size),
                "weights": _pad_rows(np.ones(len(labels), np.float32), self.batch_size)}

    def element_spec(self):
        """The `tf.TypeSpec`s of `(features, labels, weights)`: a batch as a tf.data element."""
        raise NotImplementedError

    def dataset(self, epoch: int, start: int = 0, prefetch: int = 4) -> tf.data.Dataset:
        """Batches `start`, `start + 1`, ... of `epoch` as a tf.data pipeline, assembled
        ahead of the steps that consume them (`prefetch` batches; two at a time).

        Each element is `(features, labels, weights)`: exactly `batch(epoch, i)`.
        """
        spec = self.element_spec()
        flat_spec = tf.nest.flatten(spec)

        def assemble(index):
            batch = self.batch(epoch, int(index))
            return tf.nest.flatten((batch.features, batch.labels, batch.weights))

        def load(index):
            flat = tf.numpy_function(assemble, [index], [s.dtype for s in flat_spec],
                                     stateful=False)
            flat = [tf.ensure_shape(x, s.shape) for x, s in zip(flat, flat_spec)]
            return tf.nest.pack_sequence_as(spec, flat)

        return (tf.data.Dataset.range(start, self.num_batches(epoch))
                .map(load, num_parallel_calls=self.parallel_reads, deterministic=True)
                .prefetch(prefetch))


class _CachedSource(_PlannedSource):
    """A source over a `feature_store.FeatureSet`."""

    def __init__(self, features, lengths: np.ndarray, batch_size: int,
                 boundaries: tuple[int, ...] | None, seed: int, shuffle: bool):
        super().__init__(lengths, batch_size, boundaries, seed, shuffle)
        self.features = features

    @property
    def idx(self) -> np.ndarray:
        """The dataset's `idx` of each example, in source order."""
        return self.features.idx

    def _all_labels(self) -> np.ndarray:
        return self.features.labels

class CachedFeatureSource(_CachedSource):
    """Batches of cached pooled features, reshuffled every epoch when `shuffle`."""

    def __init__(self, features, batch_size: int, seed: int = 0, shuffle: bool = True):
        super().__init__(features, np.zeros(len(features), np.int32), batch_size, None, seed,
                         shuffle)

    def element_spec(self):
        shape = (self.batch_size,) + self.features.row_shape
        return ((tf.TensorSpec(shape, self.features.dtype),)
                + self._labels_and_weights_spec())

    def batch(self, epoch: int, index: int) -> Batch:
        indices, _ = self._plan(epoch)[index]
        return Batch(
            features=_pad_rows(self.features.read_rows(indices, np.ones_like(indices)),
                               self.batch_size),
            **self._labels_and_weights(self.features.labels[indices]))


class CachedTokenSource(_CachedSource):
    """Batches of cached token-level features, length-bucketed (static shapes for XLA)."""

    def __init__(self, features, batch_size: int, boundaries: tuple[int, ...], seed: int = 0,
                 shuffle: bool = True):
        super().__init__(features, features.lengths, batch_size, boundaries, seed, shuffle)

    def element_spec(self):
        per_token = self.features.row_shape
        return ({"tokens": tf.TensorSpec((self.batch_size, None) + per_token,
                                         self.features.dtype),
                 "mask": tf.TensorSpec((self.batch_size, None), tf.int32)},
                ) + self._labels_and_weights_spec()

    def batch(self, epoch: int, index: int) -> Batch:
        indices, padded = self._plan(epoch)[index]
        return Batch(features=_token_batch(self.features, indices, padded, self.batch_size),
                     **self._labels_and_weights(self.features.labels[indices]))


class TokenSource(_PlannedSource):
    """Batches that run the frozen backbone on every step (`--cache_features=false`).

    `encoder` is a `sst2.model.encoder.FeatureEncoder`.

    Examples are grouped into length buckets (static shapes), shuffled per epoch:
    the same batches as `CachedTokenSource` would give.
    """

    def __init__(self, tokens: dict, encoder, batch_size: int,
                 boundaries: tuple[int, ...], seed: int = 0, shuffle: bool = True):
        super().__init__(tokens["length"], batch_size, boundaries, seed, shuffle)
        self.tokens = tokens
        self.encoder = encoder
        self._spec = None

    # The backbone runs inside the pipeline: one batch at a time.
    parallel_reads = 1

    @property
    def idx(self) -> np.ndarray:
        return self.tokens["idx"]

    def _all_labels(self) -> np.ndarray:
        return self.tokens["label"]

    def element_spec(self):
        """From the first batch's shapes: the token axis varies with the bucket."""
        if self._spec is None:
            probe = self.batch(0, 0)
            token_axis = 1 if self.encoder.token_level else None

            def spec(array):
                shape = [None if axis == token_axis else size
                         for axis, size in enumerate(array.shape)]
                return tf.TensorSpec(shape, tf.as_dtype(array.dtype))

            self._spec = (tf.nest.map_structure(spec, probe.features),
                          ) + self._labels_and_weights_spec()
        return self._spec

    def batch(self, epoch: int, index: int) -> Batch:
        indices, padded = self._plan(epoch)[index]
        mask = self.tokens["padding_mask"][indices, :padded]
        features = self.encoder(
            tf.constant(self.tokens["token_ids"][indices, :padded]), tf.constant(mask)).numpy()
        features = _pad_rows(features, self.batch_size)
        if self.encoder.token_level:
            features = {"tokens": features, "mask": _pad_rows(mask, self.batch_size)}
        return Batch(features=features, **self._labels_and_weights(self.tokens["label"][indices]))


class CachedPairSource(_PlannedSource):
    """Batches of sentence pairs whose sentences were encoded apart: `{"first": ...,
    "second": ...}`, each side as `CachedFeatureSource` or `CachedTokenSource` gives
    one sentence (`boundaries=None`: pooled features). A pair's length is its longer
    sentence's; both sides are padded to its bucket."""

    def __init__(self, sentences, pairs: dict, batch_size: int,
                 boundaries: tuple[int, ...] | None, seed: int = 0, shuffle: bool = True):
        token_level = boundaries is not None
        super().__init__(pairs["length"] if token_level else np.zeros(len(pairs["idx"]),
                                                                      np.int32),
                         batch_size, boundaries, seed, shuffle)
        self.features, self.pairs, self.token_level = sentences, pairs, token_level

    @property
    def idx(self) -> np.ndarray:
        return self.pairs["idx"]

    def _all_labels(self) -> np.ndarray:
        return self.pairs["label"]

    def element_spec(self):
        shape, dtype = self.features.row_shape, self.features.dtype
        if self.token_level:
            side = {"tokens": tf.TensorSpec((self.batch_size, None) + shape, dtype),
                    "mask": tf.TensorSpec((self.batch_size, None), tf.int32)}
        else:
            side = tf.TensorSpec((self.batch_size,) + shape, dtype)
        return ({"first": side, "second": side},) + self._labels_and_weights_spec()

    def _side(self, sentences: np.ndarray, padded: int):
        if not self.token_level:
            return _pad_rows(self.features.read_rows(sentences, np.ones_like(sentences)),
                             self.batch_size)
        return _token_batch(self.features, sentences, padded, self.batch_size)

    def batch(self, epoch: int, index: int) -> Batch:
        indices, padded = self._plan(epoch)[index]
        return Batch(features={side: self._side(self.pairs[side][indices], padded)
                               for side in ("first", "second")},
                     **self._labels_and_weights(self.pairs["label"][indices]))
