"""Weight averaging: an exponential moving average (EMA) of the trained variables.

Training updates the raw weights; after every step the average moves toward
them. Evaluation, the best checkpoint's export and `sst2.evaluate` use the
average. A checkpoint holds both, so a resumed run continues exactly.

Example:
    >>> weights = [tf.Variable([0.0, 0.0])]
    >>> average = ExponentialMovingAverage(decay=0.999)
    >>> average.build(weights)
    >>> _ = weights[0].assign([1.0, 2.0])             # an optimizer step
    >>> average.update(weights)                        # right after it
    >>> with average.swapped_in(weights):              # evaluate with the average
    ...     weights[0].numpy()
    array([0.9, 1.8], dtype=float32)
    >>> weights[0].numpy()                             # the raw weights, back
    array([1., 2.], dtype=float32)
"""

import contextlib
from typing import Sequence

import tensorflow as tf


class ExponentialMovingAverage(tf.Module):
    """`average ← d·average + (1 − d)·variable` after each step, `d = min(decay, (1+n)/(10+n))`.

    The ramp of `d` over the first updates (as in `tf.train.ExponentialMovingAverage`
    with `num_updates`) keeps the starting weights from dominating early
    evaluations. Methods take the variables explicitly, always in the order
    `build` saw them (e.g. `head.trainable_variables`).
    """

    def __init__(self, decay: float):
        super().__init__(name="weight_average")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.averages = []
        self.updates = None

    def build(self, variables: Sequence) -> None:
        """Creates one average per variable, starting at its value (under a strategy's scope)."""
        # Every replica computes the same update; ONLY_FIRST_REPLICA lets a
        # replica-context assign write it (as an optimizer's slots do).
        first = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.averages = [tf.Variable(tf.convert_to_tensor(v), trainable=False, aggregation=first,
                                     name=f"average_{i}") for i, v in enumerate(variables)]
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, aggregation=first,
                                   name="updates")

    def _check(self, variables: Sequence) -> None:
        if len(variables) != len(self.averages):
            raise ValueError(f"built for {len(self.averages)} variables, got {len(variables)}")

    def update(self, variables: Sequence) -> None:
        """One averaging step (inside a train step, after the optimizer's)."""
        self._check(variables)
        n = tf.cast(self.updates, tf.float32)
        decay = tf.minimum(tf.constant(self.decay, tf.float32), (1.0 + n) / (10.0 + n))
        for average, variable in zip(self.averages, variables):
            average.assign_sub((1.0 - decay) * (average - tf.convert_to_tensor(variable)))
        self.updates.assign_add(1)

    def swap(self, variables: Sequence) -> None:
        """Exchanges the variables' values with their averages (call outside a replica context)."""
        self._check(variables)
        for average, variable in zip(self.averages, variables):
            raw = tf.convert_to_tensor(variable)
            variable.assign(tf.convert_to_tensor(average))
            average.assign(raw)

    @contextlib.contextmanager
    def swapped_in(self, variables: Sequence):
        """The averages in the variables for the `with` block; the raw weights back after it."""
        self.swap(variables)
        try:
            yield
        finally:
            self.swap(variables)

    def copy_to(self, variables: Sequence) -> None:
        """Overwrites the variables with the averages (a restored model for inference)."""
        self._check(variables)
        for average, variable in zip(self.averages, variables):
            variable.assign(tf.convert_to_tensor(average))


def from_decay(decay: float) -> ExponentialMovingAverage | None:
    """The average for `--ema_decay` (None when 0: off)."""
    return ExponentialMovingAverage(decay) if decay else None
