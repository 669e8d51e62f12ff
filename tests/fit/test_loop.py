"""The train and eval steps, and the epoch loop."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from sst2.fit.loop import fit
from sst2.fit.rdrop import rdrop_loss
from sst2.fit.sources import Batch, TokenSource
from sst2.fit.steps import Trainer
from sst2.model import presets
from sst2.model.backbone import FeatureSpec
from sst2.model.encoder import FeatureEncoder
from sst2.model.head import ClassifierHead
from sst2.run.errors import UserError
from sst2.text import data
from sst2.text.datasets import TfdsDataset
from tests.helpers import TINY_SEQUENCE_LENGTH


def _tokens(tiny_preset, tiny_data_dir, split="train"):
    preprocessor = presets.load_preprocessor(tiny_preset, TINY_SEQUENCE_LENGTH)
    return data.to_numpy(data.tokenize(TfdsDataset("glue/sst2", tiny_data_dir).load(split),
                                       preprocessor))


def _trainer(width=16, batch_size=8, lr=1e-2, weight_average=None, rdrop_alpha=0.0,
             jit_compile=True, feature_shape=None, class_weights=None, **head):
    keras.utils.set_random_seed(0)
    trainer = Trainer(ClassifierHead(**head), keras.optimizers.Adam(lr), batch_size,
                      weight_average=weight_average, rdrop_alpha=rdrop_alpha,
                      jit_compile=jit_compile, class_weights=class_weights)
    trainer.build(feature_shape or (1, width))
    return trainer


def test_train_step_lowers_loss_on_a_fixed_batch():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 8).astype(np.int32)
    feats = (rng.normal(size=(8, 1, 16)) + labels[:, None, None]).astype(np.float32)
    batch = Batch(feats, labels, np.ones(8, np.float32))
    trainer = _trainer()
    first = float(trainer.evaluator.eval_step(batch)["loss"])
    for _ in range(20):
        trainer.train_step(batch)
    assert float(trainer.evaluator.eval_step(batch)["loss"]) < 0.5 * first


def test_eval_step_accuracy_matches_hand_count():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(8, 1, 16)).astype(np.float32)
    labels = rng.integers(0, 2, 8).astype(np.int32)
    weights = np.array([1, 1, 1, 1, 1, 1, 0, 0], np.float32)  # two padded rows
    trainer = _trainer()
    logits = trainer.head(feats).numpy()
    sums = trainer.evaluator.eval_step(Batch(feats, labels, weights))
    hand = int(((logits.argmax(-1) == labels) * weights).sum())
    assert int(sums["correct"]) == hand and int(sums["count"]) == 6
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    hand_loss = -(log_probs[np.arange(8), labels] * weights).sum()
    np.testing.assert_allclose(float(sums["loss"]), hand_loss, rtol=1e-5)


def test_class_weights_scale_each_examples_loss():
    """Weights [1, 0]: a step moves the head exactly as a step on the class-0 rows alone
    (the class-1 rows weighted 0), while the reported sums still count every row."""
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(8, 1, 16)).astype(np.float32)
    labels = np.array([0, 1, 1, 0, 1, 0, 0, 1], np.int32)
    weighted = _trainer(class_weights=[1.0, 0.0])
    sums = weighted.train_step(Batch(feats, labels, np.ones(8, np.float32)))
    alone = _trainer()
    alone.train_step(Batch(feats, labels, (labels == 0).astype(np.float32)))
    for a, b in zip(weighted.head.trainable_variables, alone.head.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    assert int(sums["count"]) == 8
    unweighted = _trainer()
    unweighted.train_step(Batch(feats, labels, np.ones(8, np.float32)))
    assert not np.allclose(unweighted.head.trainable_variables[0].numpy(),
                           alone.head.trainable_variables[0].numpy())


def test_evaluate_reports_macro_f1_and_mcc_of_its_confusion_matrix():
    from sst2.fit import sources
    from sst2.model import feature_store
    from sst2.run import metrics

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 40).astype(np.int32)
    cached = feature_store.FeatureSet(rng.normal(size=(40, 1, 16)).astype(np.float16), labels,
                                 np.arange(40))
    trainer = _trainer(num_classes=3)
    source = sources.CachedFeatureSource(cached, batch_size=8, seed=0)
    result = trainer.evaluator.evaluate(source, show_progress=False)
    predictions = trainer.head(cached.features.astype(np.float32)).numpy().argmax(-1)
    confusion = np.zeros((3, 3))
    np.add.at(confusion, (labels, predictions), 1)
    expected = metrics.from_confusion(confusion)
    assert result["accuracy"] == pytest.approx(expected["accuracy"])
    assert result["macro_f1"] == pytest.approx(expected["macro_f1"])
    assert result["mcc"] == pytest.approx(expected["mcc"])


@pytest.mark.slow
def test_uncached_training_changes_head_not_backbone(tiny_preset, tiny_data_dir):
    backbone = presets.load_backbone(tiny_preset)
    spec = FeatureSpec("cls", "last")
    encoder = FeatureEncoder.for_backbone(backbone, spec, jit_compile=False)
    source = TokenSource(_tokens(tiny_preset, tiny_data_dir), encoder, 16,
                         data.bucket_lengths(TINY_SEQUENCE_LENGTH), seed=0)
    trainer = _trainer(batch_size=16)
    backbone_before = [w.numpy().copy() for w in backbone.weights]
    head_before = [w.numpy().copy() for w in trainer.head.weights]
    fit(trainer, source, None, epochs=1, show_progress=False)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(backbone_before, backbone.weights))
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(head_before, trainer.head.weights))


class _OneBatch:
    def __init__(self, batch):
        self._batch = batch

    def num_batches(self, epoch):
        return 1

    def batch(self, epoch, index):
        return self._batch

    def dataset(self, epoch, start=0):
        b = self._batch
        return tf.data.Dataset.from_tensors((b.features, b.labels, b.weights))


def test_trainer_updates_the_average_in_its_step_and_evaluates_with_it():
    from sst2.fit.averaging import ExponentialMovingAverage

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 8).astype(np.int32)
    batch = Batch(rng.normal(size=(8, 1, 16)).astype(np.float32), labels,
                  np.ones(8, np.float32))
    averaged = _trainer(lr=0.1, weight_average=ExponentialMovingAverage(decay=0.99))
    plain = _trainer(lr=0.1)
    for _ in range(5):
        averaged.train_step(batch)
        plain.train_step(batch)
    # Training runs on the raw weights: the same as without an average.
    for a, b in zip(averaged.head.trainable_variables, plain.head.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    average = averaged.weight_average
    assert int(average.updates.numpy()) == 5
    raw = [v.numpy() for v in averaged.head.trainable_variables]
    result = averaged.evaluator.evaluate(_OneBatch(batch), show_progress=False)
    # Evaluation saw the averaged weights, and left the raw ones in place.
    for v, r in zip(averaged.head.trainable_variables, raw):
        np.testing.assert_array_equal(v.numpy(), r)
    average.copy_to(plain.head.trainable_variables)
    expected = plain.evaluator.evaluate(_OneBatch(batch), show_progress=False)
    assert result == expected
    assert not np.allclose(average.averages[0].numpy(), raw[0])


def test_rdrop_loss_is_the_mean_cross_entropy_plus_alpha_times_the_mean_kl():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 5, 2)).astype(np.float32)
    labels = rng.integers(0, 2, 5).astype(np.int32)
    p = np.exp(a) / np.exp(a).sum(-1, keepdims=True)
    q = np.exp(b) / np.exp(b).sum(-1, keepdims=True)
    cross_entropy = -(np.log(p[np.arange(5), labels]) + np.log(q[np.arange(5), labels])) / 2
    kl = ((p * np.log(p / q)).sum(-1) + (q * np.log(q / p)).sum(-1)) / 2
    assert (kl > 0).all()
    np.testing.assert_allclose(rdrop_loss(a, b, labels, 0.5).numpy(), cross_entropy + 0.5 * kl,
                               rtol=1e-5)
    np.testing.assert_allclose(rdrop_loss(a, a, labels, 3.0).numpy(),
                               -np.log(p[np.arange(5), labels]), rtol=1e-5)


def test_rdrop_step_runs_the_head_twice_and_equals_the_plain_step_without_dropout():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 8).astype(np.int32)
    batch = Batch(rng.normal(size=(8, 1, 16)).astype(np.float32), labels,
                  np.array([1, 1, 1, 1, 1, 1, 1, 0], np.float32))

    def train(rdrop_alpha, dropout):
        # Without XLA: this checks the loss's arithmetic, not the compiler (4 compiles).
        trainer = _trainer(lr=0.1, rdrop_alpha=rdrop_alpha, hidden_units=8, dropout=dropout,
                           seed=0, jit_compile=False)
        batch_sizes = []
        call = trainer.head.call
        trainer.head.call = lambda x, training=False: (
            batch_sizes.append((x.shape[0], training)), call(x, training=training))[1]
        sums = [trainer.train_step(batch) for _ in range(5)]
        return trainer.head.trainable_variables, sums, batch_sizes

    plain, plain_sums, plain_calls = train(0.0, 0.0)
    twice, twice_sums, twice_calls = train(1.0, 0.0)
    assert plain_calls == [(8, True)] and twice_calls == [(16, True)]  # traced once
    # Without dropout both passes are the same network: R-Drop adds nothing.
    for a, b in zip(plain, twice):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(plain_sums, twice_sums):
        assert float(a["count"]) == float(b["count"]) == 7
        np.testing.assert_allclose(float(a["loss"]), float(b["loss"]), rtol=1e-5)
    # With dropout the passes differ: the same masks (same seed) with another weight on
    # their divergence train to other weights.
    once, _, _ = train(1.0, 0.5)
    double, _, _ = train(2.0, 0.5)
    assert any(not np.allclose(a.numpy(), b.numpy()) for a, b in zip(once, double))


class _Recorder:
    """A callback due every `every` steps that records the steps whose end it saw."""

    def __init__(self, every):
        self.every, self.seen = every, []

    def on_step_end(self, position, epoch_sums):
        if position.step % self.every == 0:
            self.seen.append((position.step, epoch_sums.state()))

    def on_epoch_end(self, position, record, evaluation=None):
        pass

    def steps_until_due(self, position):
        return self.every - position.step % self.every


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_many_steps_per_call_equal_one_step_per_call_bit_for_bit(pooling):
    from sst2.fit.sources import CachedFeatureSource, CachedTokenSource
    from sst2.model.feature_store import FeatureSet

    rng = np.random.default_rng(0)
    n = 75  # 10 batches of 8, the last partial
    labels = rng.integers(0, 2, n).astype(np.int32)
    if pooling == "mean":
        cached = FeatureSet(rng.normal(size=(n, 1, 16)).astype(np.float16), labels, np.arange(n))
        make_source = lambda: CachedFeatureSource(cached, batch_size=8, seed=3)  # noqa: E731
    else:
        lengths = rng.integers(1, 20, n)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        cached = FeatureSet(rng.normal(size=(offsets[-1], 16)).astype(np.float16), labels,
                            np.arange(n), offsets)
        make_source = lambda: CachedTokenSource(cached, 8, (8, 16, 24), seed=3)  # noqa: E731
    results = []
    for steps_per_call in (1, 4):
        trainer = _trainer(pooling=pooling, hidden_units=8,
                           feature_shape=(None, 16) if pooling == "attention" else (1, 16))
        recorder = _Recorder(every=3)
        records = fit(trainer, make_source(), make_source(), epochs=2, show_progress=False,
                      callbacks=[recorder], steps_per_call=steps_per_call)
        for record in records:
            record.pop("seconds"), record.pop("eval_seconds")
        results.append((records, recorder.seen,
                        [v.numpy() for v in trainer.head.trainable_variables]))
    (records, seen, weights), (records_k, seen_k, weights_k) = results
    assert records_k == records  # every float, including the summed losses, is equal
    assert seen_k == seen and [s for s, _ in seen] == [3, 6, 9, 12, 15, 18]
    for a, b in zip(weights, weights_k):
        np.testing.assert_array_equal(a, b)


def test_a_non_finite_loss_stops_the_run_before_any_checkpoint_holds_it(tmp_path):
    """Case 4: NaN weights were saved, counted as best (Pearson 0.0) and exported."""
    from sst2.fit import sources
    from sst2.fit.callbacks import CheckpointCallback
    from sst2.fit.checkpoint import RunCheckpoint
    from sst2.fit.loop import NonFiniteError, fit
    from sst2.fit.steps import Trainer
    from sst2.model import feature_store
    from sst2.model.head import ClassifierHead

    head = ClassifierHead(hidden_units=0)
    trainer = Trainer(head, keras.optimizers.Adam(1e-2), batch_size=4)
    trainer.build(feature_shape=(1, 8))
    features = np.eye(8, dtype=np.float16)[:, None].repeat(2, axis=0)
    features[12] = np.inf          # the fourth batch of the first epoch (no shuffle)
    cached = feature_store.FeatureSet(features, np.arange(16, dtype=np.int32) % 2,
                                      np.arange(16))
    source = sources.CachedFeatureSource(cached, batch_size=4, seed=0, shuffle=False)
    checkpoint = RunCheckpoint(str(tmp_path), head, trainer.optimizer, keep=10)
    saving = CheckpointCallback(checkpoint=checkpoint, every_steps=1)
    with pytest.raises(NonFiniteError, match=r"training loss became nan by step 4 \(epoch 1\)"):
        fit(trainer, source, source, epochs=2, callbacks=[saving], show_progress=False)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == sorted(
        ["checkpoint"] + [f"ckpt-{s}.{x}" for s in (1, 2, 3)
                          for x in ("index", "data-00000-of-00001")])
    assert not os.path.exists(tmp_path / "best")
    assert isinstance(NonFiniteError("x"), UserError)  # one error line, exit status 2
