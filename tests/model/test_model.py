
import numpy as np
import pytest
import tensorflow as tf

from sst2.model import backbone as backbone_lib
from sst2.model import presets
from sst2.model.backbone import FeatureSpec
from sst2.model.head import ClassifierHead
from sst2.run.errors import UserError
from tests.helpers import TINY_SEQUENCE_LENGTH


def test_pool_features_shapes(tiny_preset):
    backbone = presets.load_backbone(tiny_preset)
    preprocessor = presets.load_preprocessor(tiny_preset, TINY_SEQUENCE_LENGTH)
    x = preprocessor(["good film", "the plot is very dull and flat"])
    for pooling, width in (("cls", 16), ("mean", 16), ("cls_mean", 32)):
        for layers, n in (("last", 1), ("all", 2)):
            out = backbone_lib.pool_features(backbone, x["token_ids"], x["padding_mask"],
                                      FeatureSpec(pooling, layers))
            assert out.shape == (2, n, width) and out.dtype == tf.float32


def test_mean_pooling_ignores_padding(tiny_preset):
    backbone = presets.load_backbone(tiny_preset)
    preprocessor = presets.load_preprocessor(tiny_preset, TINY_SEQUENCE_LENGTH)
    x = preprocessor(["good film"])
    spec = FeatureSpec("mean", "last")
    short = backbone_lib.pool_features(backbone, x["token_ids"][:, :4],
                                       x["padding_mask"][:, :4], spec)
    long = backbone_lib.pool_features(backbone, x["token_ids"], x["padding_mask"], spec)
    np.testing.assert_allclose(short.numpy(), long.numpy(), atol=1e-5)


def test_backbone_is_frozen(tiny_preset):
    backbone = presets.load_backbone(tiny_preset)
    assert not backbone.trainable and not backbone.trainable_weights


def test_seed_head_is_one_dense_layer():
    head = ClassifierHead(hidden_units=0)
    assert head(tf.zeros([3, 1, 8])).shape == (3, 2)
    assert [tuple(w.shape) for w in head.trainable_weights] == [(8, 2), (2,)]
    restored = ClassifierHead.from_config(ClassifierHead(hidden_units=4,
                                                dropout=0.1).get_config())
    assert restored.hidden_units == 4 and restored.dropout == 0.1


def test_unknown_preset_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="Unknown preset"):
        presets.describe_preset("distil_bert_huge")
    with pytest.raises(UserError, match="No model folder"):
        presets.describe_preset(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="holds no config.json"):
        presets.describe_preset(str(tmp_path))
    assert presets.describe_preset("distil_bert_base_en_uncased") == "builtin"
    assert presets.describe_preset("hf://distilbert/distilbert-base-uncased") == "hf"


def test_a_sequence_length_beyond_the_presets_positions_is_refused(tiny_preset):
    from sst2.fit.frozen_model import check_sequence_length
    from sst2.model import presets

    backbone = presets.load_backbone(tiny_preset)
    check_sequence_length(64, backbone)
    with pytest.raises(UserError, match="--sequence_length=65 is out of range: this preset's "
                                        "position embeddings cover at most 64 tokens"):
        check_sequence_length(65, backbone)
