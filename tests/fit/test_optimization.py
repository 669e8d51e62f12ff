"""Learning rates: schedules and a rate per group of variables."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sst2.fit.optimization import GroupedOptimizer, learning_rate, make_optimizer
from sst2.model.head import ClassifierHead
from sst2.run.config import OptimizationConfig


def test_linear_schedule_decays_to_zero_at_the_last_step():
    schedule = learning_rate(0.1, "linear", 100)
    assert [float(schedule(step)) for step in (0, 50, 100)] == pytest.approx([0.1, 0.05, 0.0])
    assert learning_rate(0.1, "constant", 100) == 0.1
    with pytest.raises(ValueError, match="cosine"):
        learning_rate(0.1, "cosine", 100)






def _two_layer_model():
    first, second = keras.layers.Dense(3, name="first"), keras.layers.Dense(2, name="second")
    net = keras.Sequential([first, second])
    net(np.zeros((1, 4), np.float32))
    return net, first, second


def _step(net, optimizer, x):
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(net(x) ** 2)
    optimizer.apply_gradients(zip(tape.gradient(loss, net.trainable_variables),
                                  net.trainable_variables))


def test_each_group_moves_at_its_own_rate():
    keras.utils.set_random_seed(0)
    net, first, second = _two_layer_model()
    optimizer = GroupedOptimizer([keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-4)],
                                 [first.trainable_weights, second.trainable_weights])
    optimizer.build(net.trainable_variables)
    before = [v.numpy() for v in net.trainable_variables]
    _step(net, optimizer, tf.ones((2, 4)))
    # Adam's first step moves every weight by its learning rate (times the gradient's sign).
    moved = [np.abs(v.numpy() - b) for v, b in zip(net.trainable_variables, before)]
    np.testing.assert_allclose(np.concatenate([m.ravel() for m in moved[:2]]), 1e-2, rtol=2e-2)
    np.testing.assert_allclose(np.concatenate([m.ravel() for m in moved[2:]]), 1e-4, rtol=2e-2)
    assert [int(o.iterations.numpy()) for o in optimizer.optimizers] == [1, 1]


def test_every_variable_needs_exactly_one_group():
    net, first, second = _two_layer_model()
    with pytest.raises(ValueError, match="no optimizer group"):
        GroupedOptimizer([keras.optimizers.Adam()], [first.trainable_weights]).build(
            net.trainable_variables)
    with pytest.raises(ValueError, match="two groups"):
        GroupedOptimizer([keras.optimizers.Adam(), keras.optimizers.Adam()],
                         [net.trainable_variables, second.trainable_weights])


def test_grouped_optimizer_resumes_exactly_from_a_checkpoint(tmp_path):
    def make():
        keras.utils.set_random_seed(0)
        net, first, second = _two_layer_model()
        optimizer = GroupedOptimizer(
            [keras.optimizers.Adam(learning_rate(1e-2, "linear", 6)),
             keras.optimizers.Adam(learning_rate(1e-3, "linear", 6))],
            [first.trainable_weights, second.trainable_weights])
        optimizer.build(net.trainable_variables)
        return net, optimizer

    x = tf.random.stateless_normal((8, 4), seed=(1, 2))
    net, optimizer = make()
    for _ in range(6):
        _step(net, optimizer, x)

    interrupted, interrupted_optimizer = make()
    checkpoint = tf.train.Checkpoint(net=interrupted, optimizer=interrupted_optimizer)
    for _ in range(3):
        _step(interrupted, interrupted_optimizer, x)
    path = checkpoint.write(str(tmp_path / "ckpt"))
    resumed, resumed_optimizer = make()
    tf.train.Checkpoint(net=resumed, optimizer=resumed_optimizer).read(path).assert_consumed()
    for _ in range(3):
        _step(resumed, resumed_optimizer, x)
    for expected, actual in zip(net.trainable_variables, resumed.trainable_variables):
        np.testing.assert_array_equal(actual.numpy(), expected.numpy())


def test_unfrozen_copies_get_the_backbone_rate():
    head = ClassifierHead(hidden_units=4, pooling="attention", sequence_layers=2, num_heads=2,
                          intermediate_dim=8, unfrozen_layers=1)
    head({"tokens": tf.zeros((1, 3, 8)), "mask": tf.ones((1, 3), tf.int32)})
    optimizer = make_optimizer(OptimizationConfig(), head, total_steps=10)
    new, copies = optimizer.optimizers
    optimizer.build(head.trainable_variables)
    copy_ids = {id(v) for v in head.sequence_layers[0].trainable_weights}
    assert float(copies.learning_rate) == pytest.approx(2e-4)
    assert float(new.learning_rate) == pytest.approx(1e-3)
    # The second sequence layer is a new block: it trains with the head.
    assert {id(v) for v in copies._trainable_variables} == copy_ids
    assert len(new._trainable_variables) == len(head.trainable_variables) - len(copy_ids)
    # One rate for both: a plain Adam, the same update.
    same = make_optimizer(OptimizationConfig(backbone_learning_rate=1e-3), head, 10)
    assert isinstance(same, keras.optimizers.Adam)
