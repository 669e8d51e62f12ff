"""The optimizer: Adam, a learning-rate schedule, and a rate per group of variables.

A head over frozen features is one group of new, randomly initialized
variables. With `--trainable_layers` there is a second group, the copies of
pretrained backbone layers, already trained, which get a smaller rate than
the new layers (docs/measurements.md). `GroupedOptimizer` gives each group
its own Keras optimizer; they step together, so their step counts (and
schedules) stay equal, and a checkpoint holds every group's slots.

Example:
    >>> first, second = keras.layers.Dense(3), keras.layers.Dense(2)
    >>> net = keras.Sequential([first, second])
    >>> _ = net(tf.zeros([1, 4]))
    >>> optimizer = GroupedOptimizer(
    ...     [keras.optimizers.Adam(learning_rate(1e-3, "linear", total_steps=100)),
    ...      keras.optimizers.Adam(learning_rate(2e-4, "linear", total_steps=100))],
    ...     [first.trainable_weights, second.trainable_weights])
    >>> with tf.GradientTape() as tape:
    ...     loss = tf.reduce_sum(net(tf.ones([2, 4])) ** 2)
    >>> grads = tape.gradient(loss, net.trainable_variables)
    >>> optimizer.apply_gradients(zip(grads, net.trainable_variables))
    >>> [int(o.iterations.numpy()) for o in optimizer.optimizers]
    [1, 1]
"""

from typing import Iterable, Sequence

import keras
import tensorflow as tf

SCHEDULES = ("constant", "linear")


def learning_rate(rate: float, schedule: str, total_steps: int):
    """`rate` held constant, or for `linear` decayed to 0 at step `total_steps`.

    A schedule is a function of the optimizer's step count, which checkpoints
    hold, so a resumed run continues it.
    """
    if schedule == "constant":
        return rate
    if schedule == "linear":
        return keras.optimizers.schedules.PolynomialDecay(
            rate, decay_steps=max(total_steps, 1), end_learning_rate=0.0)
    raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")


class GroupedOptimizer(tf.Module):
    """Several optimizers, each updating its own group of variables.

    Has the part of the Keras optimizer interface the training loop uses:
    `build(variables)` and `apply_gradients(pairs)`. Every variable must be in
    exactly one group; groups are matched by identity, so pass the very
    variable objects the loop will update (e.g. `layer.trainable_weights`).
    """

    def __init__(self, optimizers: Sequence[keras.optimizers.Optimizer],
                 variable_groups: Sequence[Iterable]):
        super().__init__(name="grouped_optimizer")
        if len(optimizers) != len(variable_groups):
            raise ValueError("one variable group per optimizer")
        self.optimizers = list(optimizers)
        self._group_of = {}
        for index, variables in enumerate(variable_groups):
            for variable in variables:
                if id(variable) in self._group_of:
                    raise ValueError(f"{variable.path} is in two groups")
                self._group_of[id(variable)] = index

    def _split(self, items: list, variable_of) -> list[list]:
        groups = [[] for _ in self.optimizers]
        for item in items:
            variable = variable_of(item)
            if id(variable) not in self._group_of:
                raise ValueError(f"{variable.path} is in no optimizer group")
            groups[self._group_of[id(variable)]].append(item)
        return groups

    def build(self, variables: Sequence) -> None:
        for optimizer, group in zip(self.optimizers, self._split(list(variables), lambda v: v)):
            optimizer.build(group)

    def apply_gradients(self, grads_and_vars: Iterable) -> None:
        groups = self._split(list(grads_and_vars), lambda pair: pair[1])
        for optimizer, pairs in zip(self.optimizers, groups):
            if pairs:
                optimizer.apply_gradients(pairs)


def make_optimizer(optimization_config, head, total_steps: int):
    """Adam for a built `head`, per `config.OptimizationConfig`.

    The head's unfrozen backbone copies get `backbone_learning_rate` (a
    second Adam) when it differs from `learning_rate`; both follow
    `lr_schedule` over `total_steps`.
    """
    def adam(rate):
        return keras.optimizers.Adam(
            learning_rate(rate, optimization_config.lr_schedule, total_steps))

    head_rate = optimization_config.learning_rate
    backbone_rate = optimization_config.backbone_learning_rate
    if not head.backbone_copies or backbone_rate == head_rate:
        return adam(head_rate)
    copies = {id(v) for layer in head.backbone_copies for v in layer.trainable_weights}
    return GroupedOptimizer(
        [adam(head_rate), adam(backbone_rate)],
        [[v for v in head.trainable_variables if id(v) not in copies],
         [v for v in head.trainable_variables if id(v) in copies]])
