"""From a request's token ids to the backbone's batches, with core TensorFlow ops only.

`pack` and `pack_pair` add `[CLS]`/`[SEP]` as keras-hub's packer does (which
uses an op the stock TF Serving runtime lacks), `split_windows` cuts a long
text into overlapping windows, and `encode_by_length` runs the backbone on
length-sorted sub-batches, each padded only to its own longest. `sst2.serve.graph.serving`
puts them in the exported graph.

Example:
    >>> ids = tf.ragged.constant([[7, 8, 9], [5]])
    >>> pack(ids, sequence_length=4, start_id=2, end_id=3, pad_id=0)[0].numpy().tolist()
    [[2, 7, 8, 3], [2, 5, 3, 0]]
    >>> window_size(128), window_stride(126, 0.5)
    (126, 63)
"""

import tensorflow as tf

from sst2.run.errors import UserError


def as_ragged(token_ids) -> tf.RaggedTensor:
    """A tokenizer's output as a ragged tensor (keras-hub gives lists in eager mode)."""
    if isinstance(token_ids, tf.RaggedTensor):
        return token_ids
    return tf.ragged.constant(token_ids, dtype=tf.int32, ragged_rank=1)


def pack(token_ids: tf.RaggedTensor, sequence_length: int, start_id: int, end_id: int,
         pad_id: int, multiple: int = 8) -> tuple[tf.Tensor, tf.Tensor]:
    """`[CLS] tokens [SEP]` per row, truncated to `sequence_length`, with core ops only.

    The same token ids as keras-hub's packer (for one segment its round-robin
    trim is a plain cut), but padded only to the batch's longest row, rounded
    up to `multiple`. Returns `token_ids` and `padding_mask` (int32).
    """
    token_ids = tf.cast(as_ragged(token_ids), tf.int32)[:, :sequence_length - 2]
    rows = token_ids.nrows(out_type=tf.int32)
    ends = [tf.RaggedTensor.from_tensor(tf.fill([rows, 1], value)) for value in (start_id, end_id)]
    return _pad(tf.concat([ends[0], token_ids, ends[1]], axis=1), sequence_length, pad_id,
                multiple)


def trim_pair(first: tf.RaggedTensor, second: tf.RaggedTensor,
              budget: int) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
    """Cuts two segments to `budget` tokens together, as TF Text's `RoundRobinTrimmer`
    (keras-hub's packer) does, with core ops: tokens are taken one from each in turn,
    so a short segment stays whole and two long ones share the budget, the first
    taking the odd token.

    >>> a, b = trim_pair(tf.ragged.constant([[1, 2, 3, 4], [1]]),
    ...                  tf.ragged.constant([[5, 6, 7], [5, 6, 7, 8]]), budget=5)
    >>> a.to_list(), b.to_list()
    ([[1, 2, 3], [1]], [[5, 6], [5, 6, 7, 8]])
    """
    length_a = tf.cast(first.row_lengths(), tf.int32)
    length_b = tf.cast(second.row_lengths(), tf.int32)
    keep_a = tf.minimum(length_a, tf.maximum((budget + 1) // 2, budget - length_b))
    keep_b = tf.minimum(length_b, tf.maximum(budget // 2, budget - length_a))
    keep = [tf.ragged.range(n) for n in (keep_a, keep_b)]
    return (tf.gather(first, keep[0], batch_dims=1), tf.gather(second, keep[1], batch_dims=1))


def pack_pair(first, second, sequence_length: int, start_id: int, end_id: int, pad_id: int,
              multiple: int = 8) -> tuple[tf.Tensor, tf.Tensor]:
    """`[CLS] first [SEP] second [SEP]` per row (the pair trimmed by `trim_pair`), with
    core ops only, padded as `pack` pads: keras-hub's packing of a sentence pair.
    """
    first, second = (tf.cast(as_ragged(x), tf.int32) for x in (first, second))
    first, second = trim_pair(first, second, sequence_length - 3)
    rows = first.nrows(out_type=tf.int32)
    start, end = (tf.RaggedTensor.from_tensor(tf.fill([rows, 1], value))
                  for value in (start_id, end_id))
    return _pad(tf.concat([start, first, end, second, end], axis=1), sequence_length, pad_id,
                multiple)


def _pad(packed: tf.RaggedTensor, sequence_length: int, pad_id: int,
         multiple: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Packed rows padded to the longest, rounded up to `multiple`; and their mask."""
    rows = packed.nrows(out_type=tf.int32)
    lengths = tf.cast(packed.row_lengths(), tf.int32)
    longest = tf.reduce_max(tf.concat([lengths, [1]], axis=0))
    width = tf.minimum((longest + multiple - 1) // multiple * multiple, sequence_length)
    dense = packed.to_tensor(default_value=pad_id, shape=tf.stack([rows, width]))
    return dense, tf.sequence_mask(lengths, width, dtype=tf.int32)


def encode_by_length(encode, token_ids: tf.Tensor, padding_mask: tf.Tensor,
                     feature_shape: tuple, chunk: int = 32, multiple: int = 8) -> tf.Tensor:
    """`encode(token_ids, padding_mask)` on length-sorted sub-batches of `chunk` texts,
    each padded only to its own longest (rounded up to `multiple`).

    A request mixes short and long texts; padding all of them to the longest
    wastes most of the arithmetic. The result is in the request's order, with
    one example's `feature_shape` (`FeatureSpec.feature_shape`; for token
    features, the token axis is padded back to the request's width with zeros);
    only the rounding differs from one call on the whole batch.
    """
    token_level = feature_shape[0] is None
    rows, width = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
    lengths = tf.reduce_sum(padding_mask, axis=1)
    order = tf.argsort(lengths, stable=True)
    ids, mask, lengths = (tf.gather(x, order) for x in (token_ids, padding_mask, lengths))

    def sub_batch(i, parts):
        start = i * chunk
        end = tf.minimum(start + chunk, rows)
        own = tf.minimum((tf.reduce_max(lengths[start:end]) + multiple - 1) // multiple
                         * multiple, width)
        out = tf.cast(encode(ids[start:end, :own], mask[start:end, :own]), tf.float32)
        if token_level:
            out = tf.pad(out, [[0, 0], [0, width - own]] + [[0, 0]] * (out.shape.rank - 2))
        return i + 1, parts.write(i, out)

    # Sized up front: a growing list (dynamic_size) writes an attribute that TF 2.12's
    # runtime, the stock TF Serving image's, drops, and every request then fails.
    parts = tf.TensorArray(tf.float32, size=(rows + chunk - 1) // chunk, infer_shape=False)
    _, parts = tf.while_loop(lambda i, _: i * chunk < rows, sub_batch, [0, parts])
    # An empty request has no sub-batch: encode its empty batch directly.
    encoded = tf.cond(rows > 0, parts.concat,
                      lambda: tf.cast(encode(token_ids, padding_mask), tf.float32))
    encoded = tf.ensure_shape(encoded, (None,) + tuple(feature_shape))
    return tf.gather(encoded, tf.math.invert_permutation(order))


def window_size(sequence_length: int, window_tokens: int = 0) -> int:
    """Tokens per window: `window_tokens`, or with 0 all that `sequence_length` holds
    besides `[CLS]` and `[SEP]`.

    >>> window_size(128), window_size(128, 32)
    (126, 32)
    """
    if window_tokens > sequence_length - 2:
        raise UserError(f"--window_tokens={window_tokens} does not fit the model's sequence "
                        f"length {sequence_length} with [CLS] and [SEP]: use at most "
                        f"{sequence_length - 2}, or 0 for that.")
    return window_tokens or sequence_length - 2


def window_stride(window: int, overlap: float) -> int:
    """Tokens from one window's start to the next's: `window * (1 - overlap)`, at least 1.

    >>> window_stride(126, 0.5), window_stride(126, 0.0), window_stride(14, 0.99)
    (63, 126, 1)
    """
    return max(1, round(window * (1 - overlap)))


def split_windows(token_ids: tf.RaggedTensor, window: int, stride: int,
                  max_windows: int) -> tuple[tf.RaggedTensor, tf.Tensor]:
    """Each text's tokens as overlapping windows of `window` tokens.

    A text of `n <= window` tokens is one window, itself. A longer one gets
    `k = min(max_windows, 1 + ceil((n - window) / stride))` windows of exactly
    `window` tokens, spread evenly from its start to its end: consecutive
    windows start at most `stride` apart, the first is the text's start and
    the last its end. Past `max_windows`, the gaps between windows go unread.
    Returns the windows (ragged, text after text) and each window's text index.

    >>> windows, text_index = split_windows(tf.ragged.constant([[1, 2, 3, 4, 5, 6], [7]]),
    ...                                     window=4, stride=2, max_windows=8)
    >>> windows.to_list(), text_index.numpy().tolist()
    ([[1, 2, 3, 4], [3, 4, 5, 6], [7]], [0, 0, 1])
    """
    token_ids = tf.cast(token_ids, tf.int32)
    positions, text_index = window_positions(token_ids, window, stride, max_windows)
    return tf.gather(token_ids.flat_values, positions), text_index


def window_positions(token_ids: tf.RaggedTensor, window: int, stride: int,
                     max_windows: int) -> tuple[tf.RaggedTensor, tf.Tensor]:
    """`split_windows`'s windows as positions in `token_ids.flat_values`, and each
    window's text index: where each window's tokens come from.

    >>> positions, _ = window_positions(tf.ragged.constant([[1, 2, 3, 4, 5, 6], [7]]),
    ...                                 window=4, stride=2, max_windows=8)
    >>> positions.to_list()
    [[0, 1, 2, 3], [2, 3, 4, 5], [6]]
    """
    lengths = tf.cast(token_ids.row_lengths(), tf.int32)
    beyond = tf.maximum(lengths - window, 0)  # tokens past the first window
    counts = 1 + tf.minimum((beyond + stride - 1) // stride, max_windows - 1)
    text_index = tf.repeat(tf.range(tf.size(counts)), counts)
    number = tf.ragged.range(counts).flat_values  # each window's number within its text
    count, beyond = tf.gather(counts, text_index), tf.gather(beyond, text_index)
    start = number * beyond // tf.maximum(count - 1, 1)
    start += tf.gather(tf.cast(token_ids.row_starts(), tf.int32), text_index)
    size = tf.minimum(tf.gather(lengths, text_index), window)
    return tf.ragged.range(start, start + size), text_index
