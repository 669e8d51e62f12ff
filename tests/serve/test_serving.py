"""The serving graph's pieces: packing with core ops, and encoding by length."""

import math
import random

import keras
import numpy as np
import pytest
import tensorflow as tf

from sst2.model import presets
from sst2.model.backbone import FeatureSpec, frozen_features
from sst2.model.inference import FastEncoder
from sst2.serve.graph import packing, serving
from tests.helpers import NEGATIVE, NEUTRAL, POSITIVE, TINY_SEQUENCE_LENGTH

TEXTS = ["good film", "", "   ", "good " * 40, "caf\xe9 \U0001F600 \u7535\u5f71", "a dull plot",
         "Superb!", "the movie is very very very charming and warm and clever"]

# precision: CI runs these again with SST2_AUTO_PRECISION=bfloat16.
pytestmark = pytest.mark.precision


def test_pack_gives_keras_hubs_token_ids_padded_to_the_longest(tiny_preset):
    preprocessor = presets.load_preprocessor(tiny_preset, TINY_SEQUENCE_LENGTH)
    tokenizer = preprocessor.tokenizer
    ids, mask = packing.pack(tokenizer(tf.constant(TEXTS)), TINY_SEQUENCE_LENGTH,
                             tokenizer.cls_token_id, tokenizer.sep_token_id, 0)
    expected = preprocessor(tf.constant(TEXTS))
    width = ids.shape[1]
    assert width % 8 == 0 and width <= TINY_SEQUENCE_LENGTH
    np.testing.assert_array_equal(ids.numpy(), expected["token_ids"].numpy()[:, :width])
    assert (expected["token_ids"].numpy()[:, width:] == 0).all()
    np.testing.assert_array_equal(mask.numpy().astype(bool),
                                  expected["padding_mask"].numpy()[:, :width])
    empty, empty_mask = packing.pack(tokenizer(tf.constant([], tf.string)), 16, 2, 3, 0)
    assert empty.shape == (0, 8) and empty_mask.shape == (0, 8)


@pytest.mark.parametrize("spec", [FeatureSpec("cls", "all"), FeatureSpec("attention", "all"),
                                  FeatureSpec("attention", "all", trainable_layers=1)])
def test_encoding_by_length_equals_one_call_on_the_whole_request(tiny_preset, spec):
    backbone = presets.load_backbone(tiny_preset, "float32")
    tokenizer = presets.load_preprocessor(tiny_preset, 64).tokenizer
    ids, mask = packing.pack(tokenizer(tf.constant(TEXTS * 3)), 64, 2, 3, 0)
    encoder = FastEncoder(backbone)
    frozen = spec.frozen_layers(backbone.num_layers) if spec.token_level else None

    def encode(token_ids, padding_mask):
        return frozen_features(encoder(token_ids, padding_mask, num_layers=frozen),
                               padding_mask, spec)

    whole = encode(ids, mask).numpy()
    by_length = packing.encode_by_length(encode, ids, mask, spec.feature_shape(backbone),
                                         chunk=4).numpy()
    assert by_length.shape == whole.shape
    if spec.token_level:  # padded positions differ (the head masks them); real ones not
        real = mask.numpy().astype(bool)
        np.testing.assert_allclose(by_length[real], whole[real], atol=1e-5)
    else:
        np.testing.assert_allclose(by_length, whole, atol=1e-5)
    none = packing.encode_by_length(encode, ids[:0], mask[:0], spec.feature_shape(backbone))
    assert none.shape[0] == 0


def _windows_by_the_rule(n, window, stride, max_windows):
    """The documented windows of an `n`-token text, as (start, end) pairs, written plainly."""
    if n <= window:
        return [(0, n)]
    count = min(max_windows, 1 + math.ceil((n - window) / stride))
    starts = [j * (n - window) // (count - 1) for j in range(count)]
    return [(start, start + window) for start in starts]


@pytest.mark.parametrize("window,stride,max_windows",
                         [(4, 2, 8), (5, 5, 3), (14, 7, 2), (3, 1, 64)])
def test_split_windows_follows_the_documented_rule(window, stride, max_windows):
    lengths = [0, 1, window - 1, window, window + 1, 2 * window, 3 * window + 1, 50]
    texts = [list(range(100 * i, 100 * i + n)) for i, n in enumerate(lengths)]
    windows, text_index = packing.split_windows(tf.ragged.constant(texts, dtype=tf.int32),
                                                window, stride, max_windows)
    expected, expected_index = [], []
    for i, (text, n) in enumerate(zip(texts, lengths)):
        spans = _windows_by_the_rule(n, window, stride, max_windows)
        expected += [text[start:end] for start, end in spans]
        expected_index += [i] * len(spans)
        starts = [start for start, _ in spans]
        assert spans[-1][1] == n and starts[0] == 0  # a text's start and end are both read
        if len(spans) < max_windows:  # uncapped: consecutive windows at most a stride apart
            assert all(b - a <= stride for a, b in zip(starts, starts[1:]))
    assert windows.to_list() == expected
    assert text_index.numpy().tolist() == expected_index
    none, none_index = packing.split_windows(tf.ragged.constant([], dtype=tf.int32, ragged_rank=1),
                                             window, stride, max_windows)
    assert none.nrows() == 0 and none_index.shape == (0,)


def _tiny_model(tiny_preset, **model_options):
    from sst2.model.head import build_head
    from sst2.run.config import ModelConfig

    backbone = presets.load_backbone(tiny_preset, "float32")
    preprocessor = presets.load_preprocessor(tiny_preset, TINY_SEQUENCE_LENGTH)
    config = ModelConfig(preset=tiny_preset, sequence_length=TINY_SEQUENCE_LENGTH,
                         head_hidden=8, precision="float32", **model_options)
    keras.utils.set_random_seed(3)  # the same head whatever ran before in this process
    head = build_head(config, backbone, seed=3)
    return preprocessor, backbone, head, FeatureSpec.of(config)


def _keras_hub_probabilities(preprocessor, backbone, head, spec, token_rows):
    """Softmax of the head over keras-hub's own layers, one `[CLS] row [SEP]` at a time."""
    from sst2.model.backbone import pool_features

    tokenizer, length = preprocessor.tokenizer, preprocessor.sequence_length
    out = []
    for row in token_rows:
        ids = [tokenizer.cls_token_id] + list(row) + [tokenizer.sep_token_id]
        mask = [1] * len(ids) + [0] * (length - len(ids))
        ids = tf.constant([ids + [tokenizer.pad_token_id] * (length - len(ids))])
        mask = tf.constant([mask])
        features = pool_features(backbone, ids, mask, spec)
        if spec.token_level:
            features = {"tokens": features, "mask": mask}
        out.append(tf.nn.softmax(head(features, training=False))[0].numpy())
    return np.array(out)


@pytest.mark.parametrize("model_options", [{"pooling": "cls_mean"}, {"pooling": "attention"}])
def test_a_long_text_is_the_mean_of_its_windows_and_a_short_one_is_unchanged(tiny_preset,
                                                                             model_options):
    from sst2.run.command_config import ReadingConfig

    preprocessor, backbone, head, spec = _tiny_model(tiny_preset, **model_options)
    reading = ReadingConfig(window_overlap=0.5, max_windows=4)
    # window_tokens=10 and an overlap of 0.25: a 25-token text in 3 windows too.
    shorter = ReadingConfig(window_tokens=10, window_overlap=0.25, max_windows=4)
    predict = serving.make_predict_fn(preprocessor, backbone, head, spec, reading)
    words = random.Random(0).choices(POSITIVE + NEGATIVE + NEUTRAL, k=200)
    texts = ["good film", "the movie is very very very charming and warm and clever",
             " ".join(words[:25]),  # 25 tokens: 3 windows
             " ".join(words)]  # 200 tokens, past 4 windows: 4 spread over it
    served = predict(tf.constant(texts))["probabilities"].numpy()

    tokenizer = preprocessor.tokenizer
    for options, expected_counts in ((reading, [1, 1, 3, 4]), (shorter, [1, 2, 3, 4])):
        window = packing.window_size(TINY_SEQUENCE_LENGTH, options.window_tokens)
        stride = packing.window_stride(window, options.window_overlap)
        outputs = serving.make_predict_fn(preprocessor, backbone, head, spec, options)(
            tf.constant(texts))["probabilities"].numpy()
        counts = []
        for text, probabilities in zip(texts, outputs):
            tokens = packing.as_ragged(tokenizer(tf.constant([text]))).to_list()[0]
            spans = _windows_by_the_rule(len(tokens), window, stride, options.max_windows)
            one_by_one = _keras_hub_probabilities(preprocessor, backbone, head, spec,
                                                  [tokens[start:end] for start, end in spans])
            np.testing.assert_allclose(probabilities, one_by_one.mean(axis=0), atol=1e-5)
            counts.append(len(spans))
            if len(spans) > 1:  # the windows disagree, so their combination is tested
                assert np.ptp(one_by_one[:, 1]) > 1e-3
        assert counts == expected_counts

    # A text that fits one window: today's (keras-hub's full-length packing) output.
    inputs = preprocessor(tf.constant(texts[:2]))
    from sst2.model.backbone import pool_features
    features = pool_features(backbone, inputs["token_ids"], inputs["padding_mask"], spec)
    if spec.token_level:
        features = {"tokens": features, "mask": inputs["padding_mask"]}
    np.testing.assert_allclose(served[:2], tf.nn.softmax(head(features)).numpy(), atol=1e-4)


def test_a_window_longer_than_the_model_reads_is_refused():
    from sst2.run.errors import UserError

    assert packing.window_size(16) == 14 and packing.window_size(16, 14) == 14
    with pytest.raises(UserError, match="--window_tokens=15 does not fit"):
        packing.window_size(16, 15)
