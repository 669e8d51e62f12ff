"""The serving graph's pieces: packing with core ops, and encoding by length."""

import numpy as np
import pytest
import tensorflow as tf

from sst2 import presets, serving
from sst2.backbone import FeatureSpec, frozen_features
from sst2.inference import FastEncoder
from tests.helpers import TINY_SEQUENCE_LENGTH

TEXTS = ["good film", "", "   ", "good " * 40, "caf\xe9 \U0001F600 \u7535\u5f71", "a dull plot",
         "Superb!", "the movie is very very very charming and warm and clever"]


def test_pack_gives_keras_hubs_token_ids_padded_to_the_longest(tiny_preset):
    preprocessor = presets.load_preprocessor(tiny_preset, TINY_SEQUENCE_LENGTH)
    tokenizer = preprocessor.tokenizer
    ids, mask = serving.pack(tokenizer(tf.constant(TEXTS)), TINY_SEQUENCE_LENGTH,
                             tokenizer.cls_token_id, tokenizer.sep_token_id, 0)
    expected = preprocessor(tf.constant(TEXTS))
    width = ids.shape[1]
    assert width % 8 == 0 and width <= TINY_SEQUENCE_LENGTH
    np.testing.assert_array_equal(ids.numpy(), expected["token_ids"].numpy()[:, :width])
    assert (expected["token_ids"].numpy()[:, width:] == 0).all()
    np.testing.assert_array_equal(mask.numpy().astype(bool),
                                  expected["padding_mask"].numpy()[:, :width])
    empty, empty_mask = serving.pack(tokenizer(tf.constant([], tf.string)), 16, 2, 3, 0)
    assert empty.shape == (0, 8) and empty_mask.shape == (0, 8)


@pytest.mark.parametrize("spec", [FeatureSpec("cls", "all"), FeatureSpec("attention", "all"),
                                  FeatureSpec("attention", "all", trainable_layers=1)])
def test_encoding_by_length_equals_one_call_on_the_whole_request(tiny_preset, spec):
    backbone = presets.load_backbone(tiny_preset, "float32")
    tokenizer = presets.load_preprocessor(tiny_preset, 64).tokenizer
    ids, mask = serving.pack(tokenizer(tf.constant(TEXTS * 3)), 64, 2, 3, 0)
    encoder = FastEncoder(backbone)
    frozen = spec.frozen_layers(backbone.num_layers) if spec.token_level else None

    def encode(token_ids, padding_mask):
        return frozen_features(encoder(token_ids, padding_mask, num_layers=frozen),
                               padding_mask, spec)

    whole = encode(ids, mask).numpy()
    by_length = serving.encode_by_length(encode, ids, mask, spec.feature_shape(backbone),
                                         chunk=4).numpy()
    assert by_length.shape == whole.shape
    if spec.token_level:  # padded positions differ (the head masks them); real ones not
        real = mask.numpy().astype(bool)
        np.testing.assert_allclose(by_length[real], whole[real], atol=1e-5)
    else:
        np.testing.assert_allclose(by_length, whole, atol=1e-5)
    none = serving.encode_by_length(encode, ids[:0], mask[:0], spec.feature_shape(backbone))
    assert none.shape[0] == 0
