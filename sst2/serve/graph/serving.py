"""A SavedModel that takes raw strings: tokenizer, backbone and head in one graph.

The `serving_default` signature takes `text` (`tf.string`, `[None]`; and
`text_pair` for a model of sentence pairs) and returns, for one class per
text, `probabilities` (`float32`, `[None, N]`, in the order of the dataset's
class names: for SST-2 negative, positive), `label_id` (`int32`, `[None]`)
and `label` (`string`, `[None]`, the class name); for multi-label and
regression models, the target's `export_outputs` say what. Loading it needs only
`tensorflow` and `tensorflow_text` (for the WordPiece ops), as TF Serving does.

The graph holds only ops, and op attributes, of TensorFlow 2.12.1 and
TensorFlow Text 2.12.1, the runtime of the stock TF Serving 2.12 image
(`sst2.serve.graph.serving_audit` checks it): keras-hub packs `[CLS] ... [SEP]` with TF
Text's `RoundRobinTrim`, which that TF Text lacks, so `pack` does it with core
ragged ops, giving the same token ids. A request is padded only to its longest
text (rounded up to a multiple of 8), and on CPU the backbone runs as
`FastEncoder`, as the training encode pass does. A text longer than one
window is read as overlapping windows (`split_windows`), all of a request's
windows in one batch, and its probabilities are the mean of its windows'.

Example:
    >>> from sst2.serve.trained import restore
    >>> trained = restore(trained_dir)
    >>> path = export_saved_model(trained.preprocessor, trained.backbone, trained.head,
    ...                           trained.spec, os.path.join(tmp_dir, "export"))
    >>> import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)
    >>> serve = tf.saved_model.load(path).signatures["serving_default"]
    >>> output = serve(text=tf.constant(["a gripping film", ""]))
    >>> output["probabilities"].shape, output["label"].dtype
    (TensorShape([2, 2]), tf.string)
"""

import os

import tensorflow as tf

from sst2.model import hardware, target_math
from sst2.model.backbone import FeatureSpec, frozen_features, pool_features
from sst2.model.inference import FastEncoder
from sst2.run import targets
from sst2.run.command_config import ExplainConfig, ReadingConfig
from sst2.serve.graph import answers
from sst2.serve.graph.explaining import make_explain_fn
from sst2.serve.graph.packing import (
    as_ragged,
    encode_by_length,
    pack,
    pack_pair,
    split_windows,
    window_size,
    window_stride,
)
from sst2.serve.versions import write_export_facts, write_version
from sst2.text.dataset_info import SST2_INFO, DatasetInfo


def make_window_logits_fn(preprocessor, backbone, head, spec: FeatureSpec,
                          reading: ReadingConfig = ReadingConfig(),
                          encoder: FastEncoder | None = None):
    """A function of a batch of strings returning `(logits, text_index)`: the head's
    logits for every window of every text (`split_windows`, set by `reading`),
    all windows encoded as one batch, and the text each window belongs to.

    Given a second batch of strings, it reads sentence pairs instead: each pair
    packed as `[CLS] text [SEP] text_pair [SEP]` (`pack_pair`), one window each;
    or, for a head of pairs encoded apart (`FeatureSpec.separate_pairs`), each
    text packed alone (truncated to the sequence length), as training read them.
    On CPU the backbone runs as `encoder` (`FastEncoder`; by default one of its own).
    """
    tokenizer, sequence_length = preprocessor.tokenizer, preprocessor.sequence_length
    window = window_size(sequence_length, reading.window_tokens)
    stride = window_stride(window, reading.window_overlap)
    # On CPU the fused forward pass on free shapes; elsewhere keras-hub's layers.
    encoder = encoder or (None if hardware.has_accelerator() else FastEncoder(backbone))
    frozen = spec.frozen_layers(backbone.num_layers) if spec.token_level else None

    def encode(ids, mask):
        return frozen_features(encoder(ids, mask, num_layers=frozen), mask, spec)

    def tokenize(text):
        # Invalid UTF-8 would make the tokenizer raise; replace bad bytes with U+FFFD.
        return as_ragged(tokenizer(tf.strings.unicode_transcode(
            text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)))

    special = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)

    def features_of(token_ids, padding_mask):
        if encoder is not None:
            features = encode_by_length(encode, token_ids, padding_mask,
                                        spec.feature_shape(backbone))
        else:
            features = pool_features(backbone, token_ids, padding_mask, spec)
        if spec.token_level:
            features = {"tokens": features, "mask": tf.cast(padding_mask, tf.int32)}
        return features

    def window_logits(text, text_pair=None):
        if text_pair is None:
            windows, text_index = split_windows(tokenize(text), window, stride,
                                                reading.max_windows)
            features = features_of(*pack(windows, sequence_length, *special))
        elif spec.separate_pairs:  # both texts alone, in one batch; then split
            features = features_of(*pack(tokenize(tf.concat([text, text_pair], 0)),
                                         sequence_length, *special))
            text_index = tf.range(tf.shape(text)[0])
            first, second = (tf.nest.map_structure(lambda x: x[part], features)
                             for part in (slice(None, tf.shape(text)[0]),
                                          slice(tf.shape(text)[0], None)))
            features = {"first": first, "second": second}
        else:
            features = features_of(*pack_pair(tokenize(text), tokenize(text_pair),
                                              sequence_length, *special))
            text_index = tf.range(tf.shape(text)[0])
        return tf.cast(head(features, training=False), tf.float32), text_index

    return window_logits


def make_predict_fn(preprocessor, backbone, head, spec: FeatureSpec,
                    reading: ReadingConfig = ReadingConfig(), dataset: DatasetInfo = SST2_INFO,
                    temperature: float | None = None, encoder: FastEncoder | None = None):
    """The serving computation as a Python function of a batch of strings (two, for a
    `dataset` of sentence pairs); its outputs are `sst2.serve.graph.answers.answer`'s.

    A text's answer is the mean of its windows' (`make_window_logits_fn`):
    probabilities, or scores; an ensemble of views of one text, which leaves a
    one-window text's output as it was; docs/measurements.md compares it with
    other combinations. A single-label model's probabilities are then taken to
    `temperature` (`sst2.serve.temperature`: `softmax(log p / T)`), which never
    changes a label.

    Args:
        preprocessor, backbone, head: the run's model.
        spec: its features (`FeatureSpec`).
        reading: how long texts are read (windows).
        dataset: what the run learned (its target, labels, pairs).
        temperature: the calibration to fold in, if any.
        encoder: the fused forward pass (default: the backbone's own layers).
    """
    window_logits = make_window_logits_fn(preprocessor, backbone, head, spec, reading, encoder)
    target = dataset.target
    scale = targets.TargetScale.from_record(dataset.target_scale)

    def predict(text, text_pair=None):
        text = tf.reshape(tf.convert_to_tensor(text, tf.string), [-1])
        if text_pair is not None:
            text_pair = tf.reshape(tf.convert_to_tensor(text_pair, tf.string), [-1])
            tf.debugging.assert_equal(tf.shape(text), tf.shape(text_pair), message=(
                "text and text_pair must hold as many strings"))
        logits, text_index = window_logits(text, text_pair)
        outputs = tf.math.unsorted_segment_mean(target_math.outputs(target, logits, scale),
                                                text_index, tf.shape(text)[0])
        return answers.answer(dataset, outputs, temperature, getattr(head, "thresholds", None))

    return predict


def export_saved_model(preprocessor, backbone, head, spec: FeatureSpec, export_root: str,
                       version: int | None = None,
                       reading: ReadingConfig = ReadingConfig(),
                       dataset: DatasetInfo = SST2_INFO, temperature: float | None = None,
                       model_card: str | None = None,
                       explaining: ExplainConfig = ExplainConfig(),
                       checkpoint: str | None = None) -> str:
    """Writes `<export_root>/<version>/` (`write_version`) and returns it: the signatures
    `serving_default` and `explain` (`sst2.serve.graph.explaining`).

    Args:
        preprocessor, backbone, head, spec: the run's model and its features.
        export_root: the folder of versions.
        version: the version's number (default: the Unix time).
        reading: how long texts are read (windows).
        dataset: what the run learned.
        temperature: the calibration to fold in, if any.
        model_card: Markdown, written beside `saved_model.pb` as `MODEL_CARD.md`.
        explaining: the `explain` signature's steps.
        checkpoint: the checkpoint's name, for the export's facts (what it serves).
    """
    # One copy of the weights for both signatures: the encoder's constants are shared.
    encoder = FastEncoder(backbone)
    predict = make_predict_fn(preprocessor, backbone, head, spec, reading, dataset,
                              temperature, None if hardware.has_accelerator() else encoder)
    explain = make_explain_fn(preprocessor, backbone, head, spec, reading, dataset,
                              temperature, explaining, encoder)
    inputs = ("text", "text_pair") if dataset.is_pair else ("text",)
    predict(*[tf.constant(["build"])] * len(inputs))  # builds every layer, as export requires
    signature = [tf.TensorSpec([None], tf.string, name=name) for name in inputs]
    # Each signature traced once, here: a `tf.function` handed to the save would be traced
    # again inside it (its cache is keyed on the save), the explain graph's seconds twice.
    signatures = {name: tf.function(fn, input_signature=signature, autograph=False)
                  .get_concrete_function() for name, fn in (("serving_default", predict),
                                                             ("explain", explain))}
    # What the graphs read: the tokenizer's vocabulary and the head's weights; FastEncoder
    # holds the backbone's weights as constants, so the backbone is kept only where its own
    # layers run.
    root = tf.Module()
    root.layers = [preprocessor.tokenizer, head] + (
        [backbone] if hardware.has_accelerator() else [])
    root.weights = [v.value for layer in root.layers for v in layer.variables]
    root.serving_default, root.explain = signatures["serving_default"], signatures["explain"]

    def write(folder):
        tf.saved_model.save(root, folder, signatures=signatures)
        write_export_facts(folder, dataset, temperature, checkpoint=checkpoint,
                           explain={"method": "integrated_gradients",
                                    "steps": explaining.explain_steps, "baseline": "[PAD]"})
        if model_card is not None:
            with open(os.path.join(folder, "MODEL_CARD.md"), "w", encoding="utf-8") as f:
                f.write(model_card)

    return write_version(export_root, write, version)
