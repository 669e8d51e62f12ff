"""Heads: the seed head, token-level heads, partial unfreezing, and their exports."""


import numpy as np
import pytest
import tensorflow as tf

from sst2.model import presets
from sst2.model.backbone import FeatureSpec, hidden_states, pool_features
from sst2.model.head import build_head
from sst2.run.config import TrainConfig
from sst2.run.errors import UserError
from sst2.serve.trained import restore
from tests.helpers import TINY_SEQUENCE_LENGTH, tolerance
from tests.helpers import train as run

# precision: CI runs these again with SST2_AUTO_PRECISION=bfloat16.
pytestmark = pytest.mark.precision


def _config(tmp_path, preset, data_dir, **overrides):
    fields = dict(model_dir=str(tmp_path / "run"), preset=preset, data_dir=data_dir, epochs=1,
                  batch_size=8, learning_rate=0.01, sequence_length=TINY_SEQUENCE_LENGTH,
                  progress=False, export=False, checkpoint_every_steps=0)
    if overrides.get("trainable_layers"):
        fields["backbone_learning_rate"] = 0.01
    fields.update(overrides)
    return TrainConfig.from_options(**fields)


def _build_head(config, backbone, copy_unfrozen=False):
    return build_head(config.model, backbone, config.optimization.seed, copy_unfrozen)


def test_seed_head_is_a_dense_layer_on_the_last_cls(tiny_preset, tmp_path):
    backbone = presets.load_backbone(tiny_preset)
    head = _build_head(_config(tmp_path, tiny_preset, None, pooling="cls", layers="last",
                              head_hidden=0, dropout=0.0), backbone)
    assert [tuple(w.shape) for w in head.trainable_weights] == [(16, 2), (2,)]
    preprocessor = presets.load_preprocessor(tiny_preset, TINY_SEQUENCE_LENGTH)
    x = preprocessor(["good film", "dull plot"])
    cls = backbone(x)[:, 0]
    kernel, bias = (w.numpy() for w in head.trainable_weights)
    features = pool_features(backbone, x["token_ids"], x["padding_mask"],
                                   FeatureSpec("cls", "last"))
    np.testing.assert_allclose(head(features).numpy(), cls.numpy() @ kernel + bias, atol=1e-5)


def test_token_level_specs_and_errors():
    assert FeatureSpec("attention").token_level
    assert FeatureSpec("cls", head_layers=1).token_level
    assert FeatureSpec("mean", trainable_layers=2).frozen_layers(6) == 4
    assert not FeatureSpec("cls_mean", "all").token_level
    assert FeatureSpec("attention", "all").token_level
    assert FeatureSpec("cls", "all", trainable_layers=1).averages_unfrozen_layers
    with pytest.raises(UserError, match="exceeds"):
        FeatureSpec("cls", trainable_layers=7).frozen_layers(6)


def test_token_features_of_all_layers_are_their_average(tiny_preset):
    backbone = presets.load_backbone(tiny_preset, "float32")
    x = presets.load_preprocessor(tiny_preset, TINY_SEQUENCE_LENGTH)(["good film", "a dull plot"])
    states = hidden_states(backbone, x["token_ids"], x["padding_mask"])
    spec = FeatureSpec("attention", "all")
    features = pool_features(backbone, x["token_ids"], x["padding_mask"], spec)
    assert features.shape == states[-1].shape and spec.feature_shape(backbone) == (None, 16)
    # The embeddings' output is not a layer: the average is over the 2 transformer layers.
    np.testing.assert_allclose(features.numpy(), (states[1] + states[2]).numpy() / 2, atol=1e-6)
    assert spec.cache_fields(2) != FeatureSpec("attention", "last").cache_fields(2)


def test_unfrozen_copies_complete_the_average_of_all_layers(tiny_preset, tmp_path):
    # Before training, unfrozen copies compute what the backbone's layers do, so a head
    # that completes the average with them sees what the fully frozen average gives,
    # up to every layer unfrozen (the tiny backbone has 2).
    backbone = presets.load_backbone(tiny_preset, "float32")
    x = presets.load_preprocessor(tiny_preset, TINY_SEQUENCE_LENGTH)(["good film", "a dull plot"])
    heads, outputs = [], []
    for trainable_layers in (0, 1, 2):
        config = _config(tmp_path, tiny_preset, None, pooling="attention", layers="all",
                         head_hidden=0, trainable_layers=trainable_layers)
        spec = FeatureSpec.of(config.model)
        features = pool_features(backbone, x["token_ids"], x["padding_mask"], spec)
        assert features.shape[2:] == ((2, 16) if trainable_layers else (16,))
        heads.append(_build_head(config, backbone, copy_unfrozen=True))
        for name in ("attention_score", "logits"):
            getattr(heads[-1], name).set_weights(getattr(heads[0], name).get_weights())
        outputs.append(heads[-1]({"tokens": features, "mask": x["padding_mask"]}))
    assert [head.average_layers for head in heads] == [0, 2, 2]
    np.testing.assert_allclose(outputs[1].numpy(), outputs[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(outputs[2].numpy(), outputs[0].numpy(), atol=1e-5)


def test_unfrozen_copies_start_from_float32_weights(tiny_preset, tmp_path):
    config = _config(tmp_path, tiny_preset, None, layers="last", trainable_layers=1)
    head = _build_head(config, presets.load_backbone(tiny_preset, "bfloat16"), copy_unfrozen=True)
    top = presets.load_backbone(tiny_preset, "float32").transformer_layers[-1]
    for ours, theirs in zip(head.sequence_layers[0].weights, top.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.slow
def test_unfrozen_copies_compute_in_bfloat16_with_float32_weights(tiny_preset, tmp_path):
    """At bfloat16 precision the unfrozen copies compute in bfloat16; their variables
    and the optimizer's stay float32 (so checkpoints are the same either way), the
    added blocks stay float32, and the output is the float32 head's within bfloat16's
    rounding."""
    import keras

    from sst2.fit.sources import Batch
    from sst2.fit.steps import Trainer

    config = _config(tmp_path, tiny_preset, None, trainable_layers=1, head_layers=1)
    heads = [_build_head(config, presets.load_backbone(tiny_preset, precision),
                         copy_unfrozen=True) for precision in ("float32", "bfloat16")]
    assert [h.sequence_layers[0].compute_dtype for h in heads] == ["float32", "bfloat16"]
    assert heads[1].sequence_layers[1].compute_dtype == "float32"  # the new block
    assert {v.dtype for v in heads[1].trainable_variables} == {"float32"}
    for a, b in zip(heads[0].sequence_layers[0].weights, heads[1].sequence_layers[0].weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # copies of the same layer
    heads[1].set_weights(heads[0].get_weights())  # the new blocks too
    rng = np.random.default_rng(0)
    features = {"tokens": tf.constant(rng.normal(size=(4, 8, 2, 16)), tf.float32),
                "mask": tf.ones((4, 8), tf.int32)}
    full, mixed = (h(features).numpy() for h in heads)
    assert not np.array_equal(full, mixed)
    np.testing.assert_allclose(mixed, full, atol=0.05)
    batch = Batch(features, np.array([0, 1, 1, 0], np.int32), np.ones(4, np.float32))
    losses = []
    for _ in range(2):  # the same seed gives the same bfloat16 training, bit for bit
        keras.utils.set_random_seed(0)  # as a run does, for the blocks' dropout
        head = _build_head(config, presets.load_backbone(tiny_preset, "bfloat16"),
                           copy_unfrozen=True)
        head.set_weights(heads[0].get_weights())
        trainer = Trainer(head, keras.optimizers.Adam(1e-3), 4, jit_compile=False)
        trainer.build((None, 2, 16))
        losses.append([float(trainer.train_step(batch)["loss"]) for _ in range(3)])
        assert {v.dtype for v in trainer.optimizer.variables} <= {"float32", "int64"}
    assert losses[0] == losses[1]


@pytest.mark.slow
def test_trainable_layers_change_exactly_the_top_layers(tiny_preset, tiny_data_dir, tmp_path):
    config = _config(tmp_path, tiny_preset, tiny_data_dir, layers="last", trainable_layers=1,
                     epochs=2, precision="float32")
    run(config)
    trained = restore(config.run.model_dir, "latest")
    backbone = presets.load_backbone(tiny_preset)
    # The frozen part is the preset's, untouched (features are recomputed from it).
    assert all(np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(trained.backbone.weights, backbone.weights))
    # The head holds one transformer block, initialized from the backbone's top layer...
    assert len(trained.head.sequence_layers) == 1
    top = backbone.transformer_layers[-1]
    copy = trained.head.sequence_layers[0]
    assert [w.shape for w in copy.weights] == [w.shape for w in top.weights]
    # ...and training changed every one of its weights.
    changed = [not np.allclose(a.numpy(), b.numpy()) for a, b in zip(copy.weights, top.weights)]
    assert all(changed), changed
    # The layer below the trainable one is the cache's last layer: same outputs.
    preprocessor = presets.load_preprocessor(tiny_preset, TINY_SEQUENCE_LENGTH)
    x = preprocessor(["good film"])
    frozen = pool_features(backbone, x["token_ids"], x["padding_mask"], trained.spec)
    expected = hidden_states(backbone, x["token_ids"], x["padding_mask"])[1]
    np.testing.assert_allclose(frozen.numpy(), expected.numpy(), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    {"pooling": "attention", "layers": "last", "head_hidden": 8, "dropout": 0.1},
    {"pooling": "cls", "layers": "all", "head_layers": 1},
    {"pooling": "mean", "layers": "last", "trainable_layers": 1},
    {"pooling": "attention", "layers": "all", "trainable_layers": 2},  # every layer unfrozen
    {"pooling": "cls_mean", "layers": "all"},
])
def test_every_head_trains_exports_and_predicts(options, tiny_preset, tiny_data_dir, tmp_path):
    # In-process (the command line is tested end to end elsewhere): train, then export.
    model_dir = tmp_path / "run"
    run(TrainConfig.from_options(epochs=1, batch_size=8, sequence_length=16, preset=tiny_preset,
                                 data_dir=tiny_data_dir, model_dir=str(model_dir),
                                 progress=False, **options))
    import tensorflow_text  # noqa: F401  (the export's tokenizer ops)

    from sst2.serve.graph.serving import make_predict_fn
    from sst2.serve.versions import latest_export

    texts = tf.constant(["great fun", ""])
    serve = tf.saved_model.load(latest_export(str(model_dir / "export")))
    served = serve.signatures["serving_default"](text=texts)["probabilities"].numpy()
    np.testing.assert_allclose(served.sum(-1), 1.0, atol=1e-5)
    trained = restore(str(model_dir), "best")
    in_process = make_predict_fn(trained.preprocessor, trained.backbone, trained.head,
                                 trained.spec,
                                 temperature=trained.temperature)(texts)["probabilities"]
    np.testing.assert_allclose(served, in_process.numpy(), atol=tolerance(str(model_dir)))
