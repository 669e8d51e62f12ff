"""Weight averaging: the update rule, swapping for evaluation, checkpoints, restore for serving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sst2.averaging import ExponentialMovingAverage
from sst2.loop import Batch, Trainer


def test_update_follows_the_ramped_decay():
    variable = tf.Variable([0.0, 0.0])
    average = ExponentialMovingAverage(decay=0.5)
    average.build([variable])
    expected = np.zeros(2)
    for n, value in enumerate([[1.0, 2.0], [3.0, -1.0], [5.0, 0.0], [7.0, 4.0]]):
        variable.assign(value)
        average.update([variable])
        decay = min(0.5, (1 + n) / (10 + n))  # 0.1, 0.18..., then 0.5
        expected = decay * expected + (1 - decay) * np.array(value)
        np.testing.assert_allclose(average.averages[0].numpy(), expected, rtol=1e-6)
    assert int(average.updates.numpy()) == 4
    with pytest.raises(ValueError, match="decay"):
        ExponentialMovingAverage(decay=1.0)


def test_swapped_in_shows_the_average_then_restores_the_raw_weights():
    variable = tf.Variable([1.0])
    average = ExponentialMovingAverage(decay=0.9)
    average.build([variable])
    variable.assign([11.0])
    average.update([variable])  # first update: decay 0.1 -> 0.1 * 1 + 0.9 * 11 = 10
    with average.swapped_in([variable]):
        np.testing.assert_allclose(variable.numpy(), [10.0], rtol=1e-6)
    np.testing.assert_allclose(variable.numpy(), [11.0])
    np.testing.assert_allclose(average.averages[0].numpy(), [10.0], rtol=1e-6)
    average.copy_to([variable])
    np.testing.assert_allclose(variable.numpy(), [10.0], rtol=1e-6)


def _trainer(weight_average):
    keras.utils.set_random_seed(0)
    head = keras.Sequential([keras.layers.Dense(2)])
    trainer = Trainer(head, keras.optimizers.Adam(0.1), batch_size=4, jit_compile=True,
                      weight_average=weight_average)
    trainer.build((3,))
    return trainer


class _OneBatch:
    def __init__(self, batch):
        self._batch = batch

    def num_batches(self, epoch):
        return 1

    def batch(self, epoch, index):
        return self._batch


def test_trainer_updates_the_average_in_its_step_and_evaluates_with_it():
    rng = np.random.default_rng(0)
    batch = Batch(features=rng.normal(size=(4, 3)).astype(np.float32),
                  labels=np.array([0, 1, 1, 0], np.int32), weights=np.ones(4, np.float32))
    averaged = _trainer(ExponentialMovingAverage(decay=0.99))
    plain = _trainer(None)
    for _ in range(5):
        averaged.train_step(batch)
        plain.train_step(batch)
    # Training runs on the raw weights: the same as without an average.
    for a, b in zip(averaged.head.trainable_variables, plain.head.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    average = averaged.weight_average
    assert int(average.updates.numpy()) == 5
    raw = [v.numpy() for v in averaged.head.trainable_variables]
    result = averaged.evaluate(_OneBatch(batch), show_progress=False)
    # Evaluation saw the averaged weights, and left the raw ones in place.
    for v, r in zip(averaged.head.trainable_variables, raw):
        np.testing.assert_array_equal(v.numpy(), r)
    average.copy_to(plain.head.trainable_variables)
    expected = plain.evaluate(_OneBatch(batch), show_progress=False)
    assert result == expected
    assert not np.allclose(average.averages[0].numpy(), raw[0])


def test_a_run_with_an_average_exports_the_average(tiny_preset, tiny_data_dir, tmp_path):
    from sst2.experiment import TrainConfig, restore, run

    config = TrainConfig(model_dir=str(tmp_path / "run"), preset=tiny_preset,
                         data_dir=tiny_data_dir, epochs=1, batch_size=8, sequence_length=16,
                         head_hidden=8, ema_decay=0.9, export=False, show_progress=False)
    result = run(config, log=lambda message: None)
    trained = restore(config.model_dir, "latest")
    reader = tf.train.load_checkpoint(trained.checkpoint_path)
    prefix = "weight_average/averages/"
    averages = {int(n[len(prefix):].split("/")[0]): reader.get_tensor(n)
                for n in reader.get_variable_to_shape_map() if n.startswith(prefix)}
    assert len(averages) == len(trained.head.trainable_variables) > 0
    for i, variable in enumerate(trained.head.trainable_variables):
        np.testing.assert_array_equal(variable.numpy(), averages[i])
    # The run's final evaluation is the restored (averaged) model's.
    from sst2.experiment import evaluate

    evaluated = evaluate(trained, log=lambda message: None)
    assert evaluated["accuracy"] == pytest.approx(result["test"]["accuracy"])
    assert evaluated["loss"] == pytest.approx(result["test"]["loss"], rel=1e-5)
