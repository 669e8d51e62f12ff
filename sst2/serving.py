"""A SavedModel that takes raw strings: tokenizer, backbone and head in one graph.

The `serving_default` signature takes `text` (`tf.string`, `[None]`; and
`text_pair` for a model of sentence pairs) and returns `probabilities`
(`float32`, `[None, N]`, in the order of the dataset's class names: for SST-2
negative, positive), `label_id` (`int32`, `[None]`) and `label` (`string`,
`[None]`, the class name). Loading it needs only
`tensorflow` and `tensorflow_text` (for the WordPiece ops), as TF Serving does.

The graph holds only ops, and op attributes, of TensorFlow 2.12.1 and
TensorFlow Text 2.12.1, the runtime of the stock TF Serving 2.12 image
(`sst2.serving_audit` checks it): keras-hub packs `[CLS] ... [SEP]` with TF
Text's `RoundRobinTrim`, which that TF Text lacks, so `pack` does it with core
ragged ops, giving the same token ids. A request is padded only to its longest
text (rounded up to a multiple of 8), and on CPU the backbone runs as
`FastEncoder`, as the training encode pass does. A text longer than one
window is read as overlapping windows (`split_windows`), all of a request's
windows in one batch, and its probabilities are the mean of its windows'.

Example:
    >>> from sst2.trained import restore
    >>> trained = restore(trained_dir, log=lambda message: None)
    >>> path = export_saved_model(trained.preprocessor, trained.backbone, trained.head,
    ...                           trained.spec, os.path.join(tmp_dir, "export"))
    >>> import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)
    >>> serve = tf.saved_model.load(path).signatures["serving_default"]
    >>> output = serve(text=tf.constant(["a gripping film", ""]))
    >>> output["probabilities"].shape, output["label"].dtype
    (TensorShape([2, 2]), tf.string)
"""

import os
import re
import time

import keras
import tensorflow as tf

from sst2 import hardware
from sst2.backbone import FeatureSpec, frozen_features, pool_features
from sst2.config import ReadingConfig
from sst2.datasets import SST2_INFO, DatasetInfo
from sst2.errors import UserError
from sst2.files import process_alive, remove_entry
from sst2.inference import FastEncoder

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
    lengths = tf.cast(token_ids.row_lengths(), tf.int32)
    beyond = tf.maximum(lengths - window, 0)  # tokens past the first window
    counts = 1 + tf.minimum((beyond + stride - 1) // stride, max_windows - 1)
    text_index = tf.repeat(tf.range(tf.size(counts)), counts)
    number = tf.ragged.range(counts).flat_values  # each window's number within its text
    count, beyond = tf.gather(counts, text_index), tf.gather(beyond, text_index)
    start = number * beyond // tf.maximum(count - 1, 1)
    start += tf.gather(tf.cast(token_ids.row_starts(), tf.int32), text_index)
    size = tf.minimum(tf.gather(lengths, text_index), window)
    positions = tf.ragged.range(start, start + size)
    return tf.gather(token_ids.flat_values, positions), text_index


def make_window_logits_fn(preprocessor, backbone, head, spec: FeatureSpec,
                          reading: ReadingConfig = ReadingConfig()):
    """A function of a batch of strings returning `(logits, text_index)`: the head's
    logits for every window of every text (`split_windows`, set by `reading`),
    all windows encoded as one batch, and the text each window belongs to.

    Given a second batch of strings, it reads sentence pairs instead: each pair
    packed as `[CLS] text [SEP] text_pair [SEP]` (`pack_pair`), one window each.
    """
    tokenizer, sequence_length = preprocessor.tokenizer, preprocessor.sequence_length
    window = window_size(sequence_length, reading.window_tokens)
    stride = window_stride(window, reading.window_overlap)
    # On CPU the fused forward pass on free shapes; elsewhere keras-hub's layers.
    encoder = None if hardware.has_accelerator() else FastEncoder(backbone)
    frozen = spec.frozen_layers(backbone.num_layers) if spec.token_level else None

    def encode(ids, mask):
        return frozen_features(encoder(ids, mask, num_layers=frozen), mask, spec)

    def tokenize(text):
        # Invalid UTF-8 would make the tokenizer raise; replace bad bytes with U+FFFD.
        return as_ragged(tokenizer(tf.strings.unicode_transcode(
            text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)))

    special = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)

    def window_logits(text, text_pair=None):
        if text_pair is None:
            windows, text_index = split_windows(tokenize(text), window, stride,
                                                reading.max_windows)
            token_ids, padding_mask = pack(windows, sequence_length, *special)
        else:
            token_ids, padding_mask = pack_pair(tokenize(text), tokenize(text_pair),
                                                sequence_length, *special)
            text_index = tf.range(tf.shape(text)[0])
        if encoder is not None:
            features = encode_by_length(encode, token_ids, padding_mask,
                                        spec.feature_shape(backbone))
        else:
            features = pool_features(backbone, token_ids, padding_mask, spec)
        if spec.token_level:
            features = {"tokens": features, "mask": tf.cast(padding_mask, tf.int32)}
        return tf.cast(head(features, training=False), tf.float32), text_index

    return window_logits


def make_predict_fn(preprocessor, backbone, head, spec: FeatureSpec,
                    reading: ReadingConfig = ReadingConfig(), dataset: DatasetInfo = SST2_INFO):
    """The serving computation as a Python function of a batch of strings (two, for a
    `dataset` of sentence pairs); `label` is named from `dataset.label_names`.

    A text's probabilities are the mean of its windows' (`make_window_logits_fn`):
    an ensemble of views of one text, which leaves a one-window text's output
    as it was; docs/measurements.md compares it with other combinations.
    """
    label_names = tf.constant(dataset.label_names)
    window_logits = make_window_logits_fn(preprocessor, backbone, head, spec, reading)

    def predict(text, text_pair=None):
        text = tf.reshape(tf.convert_to_tensor(text, tf.string), [-1])
        if text_pair is not None:
            text_pair = tf.reshape(tf.convert_to_tensor(text_pair, tf.string), [-1])
            tf.debugging.assert_equal(tf.shape(text), tf.shape(text_pair), message=(
                "text and text_pair must hold as many strings"))
        logits, text_index = window_logits(text, text_pair)
        probabilities = tf.math.unsorted_segment_mean(
            tf.nn.softmax(logits, axis=-1), text_index, tf.shape(text)[0])
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {"probabilities": probabilities, "label_id": label_id,
                "label": tf.gather(label_names, label_id)}

    return predict


def export_saved_model(preprocessor, backbone, head, spec: FeatureSpec, export_root: str,
                       version: int | None = None,
                       reading: ReadingConfig = ReadingConfig(),
                       dataset: DatasetInfo = SST2_INFO) -> str:
    """Writes `<export_root>/<version>/` and returns it. The default version is the Unix
    time, or one more than the newest version there (two exports in one second).

    The folder is written under a temporary name (`.<version>.<pid>.partial`) and
    renamed when complete, so a crash never leaves a half-written version for a
    server to pick up; one left by a killed export is removed by the next.
    """
    predict = make_predict_fn(preprocessor, backbone, head, spec, reading, dataset)
    inputs = ("text", "text_pair") if dataset.is_pair else ("text",)
    predict(*[tf.constant(["build"])] * len(inputs))  # builds every layer, as export requires
    archive = keras.export.ExportArchive()
    # The tokenizer's vocabulary; FastEncoder holds the backbone's weights as constants,
    # so the backbone is tracked only where its own layers run.
    for layer in (preprocessor.tokenizer, head) if not hardware.has_accelerator() else (
            preprocessor.tokenizer, backbone, head):
        archive.track(layer)
    archive.add_endpoint(
        "serving_default", predict,
        input_signature=[tf.TensorSpec([None], tf.string, name=name) for name in inputs])

    os.makedirs(export_root, exist_ok=True)  # only now: a refused export leaves nothing
    _remove_abandoned_partials(export_root)
    if version is None:
        newest = max(_versions(export_root), default=0)
        version = max(int(time.time()), newest + 1)
    path = os.path.join(export_root, str(version))
    tmp = os.path.join(export_root, f".{version}.{os.getpid()}.partial")
    remove_entry(tmp)  # a link there is removed, never written through
    try:
        archive.write_out(tmp, verbose=False)
        remove_entry(path)
        os.replace(tmp, path)
    except BaseException:  # a full disk, an interrupt: leave nothing half-written
        remove_entry(tmp)
        raise
    return path


def _versions(export_root: str) -> list[int]:
    return [int(v) for v in os.listdir(export_root) if v.isdigit()]


def _remove_abandoned_partials(export_root: str) -> None:
    """Removes temporary export folders whose process is gone (a killed export)."""
    for name in os.listdir(export_root):
        match = re.fullmatch(r"\.\d+(?:\.(\d+))?\.partial", name)
        if match and not (match.group(1) and process_alive(int(match.group(1)))):
            remove_entry(os.path.join(export_root, name))



def latest_export(export_root: str) -> str | None:
    """The newest complete version under `export_root` (one holding `saved_model.pb`)."""
    if not os.path.isdir(export_root):
        return None
    complete = [v for v in _versions(export_root)
                if os.path.exists(os.path.join(export_root, str(v), "saved_model.pb"))]
    return os.path.join(export_root, str(max(complete))) if complete else None


def incomplete_versions(export_root: str) -> list[str]:
    """Numbered versions under `export_root` newer than `latest_export` and without
    `saved_model.pb`: what a model server would fail to load."""
    if not os.path.isdir(export_root):
        return []
    latest = latest_export(export_root)
    newest_complete = int(os.path.basename(latest)) if latest else -1
    return [os.path.join(export_root, str(v)) for v in sorted(_versions(export_root))
            if v > newest_complete]
