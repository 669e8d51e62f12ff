"""Text to batches: in-graph tokenizing, length buckets and each epoch's batch plan.

(GLUE SST-2 itself, through tfds, is `sst2.text.glue`.)

Example:
    >>> bucket_lengths(50)
    (8, 16, 24, 32, 40, 48, 50)
    >>> [len(ix) for ix, _ in plan_batches(np.array([3, 5, 12, 30]), 2, (8, 32))]
    [2, 2]
    >>> [(ix.tolist(), padded) for ix, padded in plan_token_batches(np.array([9, 3, 4, 5]), 12)]
    [([1, 2], 4), ([3], 5), ([0], 9)]
"""

import functools
from typing import Callable

import numpy as np
import tensorflow as tf

from sst2.run.config_file import load_config, saved_fields


def bucket_lengths(sequence_length: int) -> tuple[int, ...]:
    """A small fixed set of padded lengths up to `sequence_length`.

    SST-2 sentences average 13 tokens (95th percentile 33), so fine buckets at
    the short end save most of the compute; each bucket is one static shape
    for XLA.
    """
    candidates = (8, 16, 24, 32, 40, 48, 64, 80, 96, 128, 192, 256, 384, 512)
    return tuple(b for b in candidates if b < sequence_length) + (sequence_length,)


def choose_buckets(lengths: np.ndarray, batch_size: int, candidates: tuple[int, ...],
                   bucket_cost: float) -> tuple[int, ...]:
    """The buckets, out of `candidates`, that make an epoch cheapest to train.

    Each bucket is one more shape to compile (`bucket_cost`); fewer buckets pad
    more. The cost of an epoch is counted in padded token rows (each batch's
    `batch_size` x its bucket length); the result minimizes `bucket_cost` per
    bucket plus that, exactly (dynamic programming over the candidates, in
    order). `bucket_cost=0` gives the least padding (batches are padded to
    `batch_size` rows, so even then two small buckets may merge). `candidates`
    ascend and the last is at least every length.

    Example:
        >>> lengths = np.array([3, 5, 12, 30])
        >>> choose_buckets(lengths, 1, (8, 16, 32), bucket_cost=0)
        (8, 16, 32)
        >>> choose_buckets(lengths, 1, (8, 16, 32), bucket_cost=100)  # one shape is cheaper
        (32,)
        >>> choose_buckets(lengths, 1, (8, 16, 32), bucket_cost=20)
        (8, 32)
    """
    counts = np.bincount(np.searchsorted(candidates, lengths, side="left"),
                         minlength=len(candidates))
    # A bucket ends at a length some example has: ends are the non-empty candidates.
    ends = [c for c, n in zip(candidates, counts) if n]
    members = [int(n) for n in counts if n]
    # best[j]: the cheapest cover of the examples up to ends[j - 1]; last[j]: where
    # its last bucket starts.
    best, last = [0.0], [0]
    for j in range(1, len(ends) + 1):
        costs = [best[i] + bucket_cost + -(-sum(members[i:j]) // batch_size) * batch_size
                 * ends[j - 1] for i in range(j)]
        start = int(np.argmin(costs))
        best.append(costs[start])
        last.append(start)
    chosen, j = [], len(ends)
    while j:
        chosen.append(ends[j - 1])
        j = last[j]
    return tuple(reversed(chosen))


def tokenize(dataset: tf.data.Dataset, preprocessor: Callable,
             batch_size: int = 256) -> tf.data.Dataset:
    """Maps the keras-hub preprocessor over `dataset` in-graph.

    `dataset`'s elements are `sst2.text.datasets`': `idx`, `label`, `text` and, for
    sentence pairs, `text_pair` (packed as `[CLS] text [SEP] text_pair [SEP]`).
    Texts are tokenized a batch at a time (the WordPiece op is vectorized),
    in parallel, keeping the input order. Each output element holds `idx`,
    `label`, `token_ids` and `padding_mask` (padded to the preprocessor's
    `sequence_length`) and `length`, the number of real tokens.
    """

    packed = _traced_once(preprocessor)

    def encode(batch):
        texts = (batch["text"], batch["text_pair"]) if "text_pair" in batch else batch["text"]
        features = packed(texts)
        mask = tf.cast(features["padding_mask"], tf.int32)
        return {
            "idx": tf.cast(batch["idx"], tf.int32),
            "label": tf.cast(batch["label"], tf.float32 if batch["label"].dtype.is_floating
                             else tf.int32),
            "token_ids": tf.cast(features["token_ids"], tf.int32),
            "padding_mask": mask,
            "length": tf.reduce_sum(mask, axis=-1),
        }

    return (
        dataset.batch(batch_size)
        .map(encode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .unbatch()
    )


@functools.lru_cache(maxsize=8)
def _traced_once(preprocessor) -> Callable:
    """The preprocessor as a `tf.function`: each split's pipeline calls the one graph
    (tracing keras-hub's tokenizer takes seconds; a `map` would trace it per split)."""
    return tf.function(lambda texts: preprocessor(x=texts),  # a tuple as `x`: segments
                       autograph=False)


def plan_batches(
    lengths: np.ndarray,
    batch_size: int,
    boundaries: tuple[int, ...] | None,
    rng: np.random.Generator | None = None,
) -> list[tuple[np.ndarray, int]]:
    """Splits examples into batches of similar length, as `(indices, padded_length)`.

    Without `rng` the examples are sorted by length (the encode pass: least
    padding). With `rng` the order is a permutation drawn from it, examples are
    grouped by bucket in that order and the batches are shuffled: the same
    generator state gives the same plan, which is what makes resume exact.
    With `boundaries=None` all examples share one bucket (pooled features).
    Partial batches are kept, so every example appears exactly once.
    """
    n = len(lengths)
    if boundaries is None:
        order = rng.permutation(n) if rng is not None else np.arange(n)
        return [(order[i:i + batch_size], 0) for i in range(0, n, batch_size)]
    bounds = np.asarray(boundaries)
    if n and lengths.max() > bounds[-1]:
        raise ValueError(f"an example has {lengths.max()} tokens, above {bounds[-1]}")
    bucket = np.searchsorted(bounds, lengths, side="left")
    order = rng.permutation(n) if rng is not None else np.argsort(lengths, kind="stable")
    batches = []
    for b in np.unique(bucket):
        members = order[bucket[order] == b]
        batches += [(members[i:i + batch_size], int(bounds[b]))
                    for i in range(0, len(members), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def plan_token_batches(lengths: np.ndarray, max_tokens: int) -> list[tuple[np.ndarray, int]]:
    """Length-sorted batches `(indices, padded_length)` of at most `max_tokens` padded
    tokens each (at least one example): the encode pass where any shape runs. Each
    batch is padded to its own longest example, so a batch of short sentences holds
    many of them and every matmul gets thousands of rows whatever the lengths.
    """
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = np.maximum(lengths[order], 1)
    batches, start = [], 0
    while start < len(order):
        # Sorted, so a batch's padded size is its count times its last length (and it
        # holds at most `max_tokens` examples).
        window = sorted_lengths[start:start + max_tokens]
        fits = np.arange(1, len(window) + 1) * window <= max_tokens
        end = start + max(1, int(np.sum(fits)))
        batches.append((order[start:end], max(1, int(sorted_lengths[end - 1]))))
        start = end
    return batches


def planned_batches(lengths: np.ndarray, plan: dict) -> list[tuple[np.ndarray, int]]:
    """The encode pass's batches a recorded plan names: `{"batch_tokens": n}`
    (`plan_token_batches`) or `{"batch_size": n, "boundaries": [...]}` (`plan_batches`,
    sorted: the fixed shapes XLA compiles)."""
    if plan.get("batch_tokens"):
        return plan_token_batches(lengths, plan["batch_tokens"])
    return plan_batches(lengths, plan["batch_size"], tuple(plan["boundaries"]))


def to_numpy(dataset: tf.data.Dataset) -> dict[str, np.ndarray]:
    """Collects a tokenized split into numpy arrays (the whole of SST-2 is ~35 MB)."""
    batches = list(dataset.batch(4096).as_numpy_iterator())
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]} if batches else {}


def load_train_buckets(model_dir: str) -> tuple[int, ...] | None:
    """The length buckets a saved run's training batches use, so that a resumed run
    sees the same batches: the recorded ones, or for runs from before they were chosen
    per split, every candidate (`data.bucket_lengths`; also what runs on pooled cached
    features, which record none, get: their batches ignore buckets). None without a
    saved run."""
    fields = saved_fields(model_dir)
    if fields is None:
        return None
    if fields.get("train_buckets"):
        return tuple(fields["train_buckets"])
    return bucket_lengths(load_config(model_dir).model.sequence_length)
