"""FastEncoder computes what the keras-hub DistilBERT layers compute."""

import numpy as np
import pytest
import tensorflow as tf

from sst2.model import presets
from sst2.model.backbone import hidden_states
from sst2.model.inference import FastEncoder
from tests.helpers import TINY_SEQUENCE_LENGTH

SENTENCES = ["good film", "the plot is very dull and flat and boring", "", "a charming story"]

# precision: CI runs these again with SST2_AUTO_PRECISION=bfloat16.
pytestmark = pytest.mark.precision


def _inputs(preset):
    x = presets.load_preprocessor(preset, TINY_SEQUENCE_LENGTH)(SENTENCES)
    return x["token_ids"], x["padding_mask"]


def test_float32_matches_keras_hub_every_layer(tiny_preset):
    token_ids, mask = _inputs(tiny_preset)
    backbone = presets.load_backbone(tiny_preset, "float32")
    reference = hidden_states(backbone, token_ids, mask)
    ours = FastEncoder(backbone)(token_ids, mask)
    real = mask.numpy().astype(bool)
    assert len(ours) == len(reference) == 3  # embeddings, then each layer
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(a.numpy()[real], b.numpy()[real], atol=2e-5)


def test_bfloat16_is_as_close_to_float32_as_keras_hub_bfloat16(tiny_preset):
    token_ids, mask = _inputs(tiny_preset)
    real = mask.numpy().astype(bool)
    exact = hidden_states(presets.load_backbone(tiny_preset, "float32"), token_ids, mask)[-1]
    bf16 = presets.load_backbone(tiny_preset, "bfloat16")
    keras_error = np.abs((tf.cast(hidden_states(bf16, token_ids, mask)[-1], tf.float32)
                          - exact).numpy())[real].mean()
    fast_error = np.abs((FastEncoder(bf16)(token_ids, mask)[-1] - exact).numpy())[real].mean()
    assert fast_error <= 1.5 * keras_error + 1e-4, (fast_error, keras_error)


def test_padding_does_not_change_real_positions(tiny_preset):
    token_ids, mask = _inputs(tiny_preset)
    encoder = FastEncoder(presets.load_backbone(tiny_preset, "float32"))
    short = encoder(token_ids[:, :12], mask[:, :12])[-1].numpy()
    full = encoder(token_ids, mask)[-1].numpy()
    real = mask.numpy()[:, :12].astype(bool)
    np.testing.assert_allclose(short[real], full[:, :12][real], atol=2e-5)
