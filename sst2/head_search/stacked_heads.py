"""K heads of one shape as one: their weights stacked on a leading axis, one Adam for all.

Heads that differ only in learning rate, dropout rate and seed have the same
variables' shapes. `StackedHeads` holds each weight of the K heads as one
`[K, ...]` variable and computes all K with batched matrix products (on a
CPU, 2.6x faster per head than K separate heads in one step, which spend
their time in many small products: docs/measurements.md). Each head keeps
its own dropout layers (the same masks as alone) and thresholds.
`StackedAdam` is Keras' Adam, step for step, with a learning rate (and
schedule) per head. `unstack()` writes the trained weights back into the K
`ClassifierHead`s, which export as any head.

Supported: heads without transformer blocks whose pooling, if learned, has a
stacked form (`StackedHeads.supports`); others train as a `head_group.HeadGroup`.

Example:
    >>> from sst2.model.head import ClassifierHead
    >>> heads = [ClassifierHead(hidden_units=4, pooling="attention", seed=s) for s in (0, 1)]
    >>> features = {"tokens": tf.random.normal([3, 5, 8]), "mask": tf.ones([3, 5], tf.int32)}
    >>> _ = [head(features) for head in heads]
    >>> stacked = StackedHeads(heads)
    >>> np.allclose(stacked(features)[1], heads[1](features), atol=1e-6)
    True
"""

import keras
import numpy as np
import tensorflow as tf

from sst2.model.head import cosine
from sst2.model.pooling import POOLING_MATH

# Every replica computes the same update from all-reduced gradients: each keeps its own.
_EVERY_REPLICA_ALIKE = tf.VariableAggregation.ONLY_FIRST_REPLICA


class StackedHeads(keras.Model):
    """`heads` (built `ClassifierHead`s of one shape) computed as one; `call` returns their
    logits, `[K, batch, outputs]`, as `HeadGroup` does."""

    def __init__(self, heads: list, **kwargs):
        super().__init__(**kwargs)
        self.heads = list(heads)
        for i, head in enumerate(self.heads):  # dropout RNG states and thresholds
            setattr(self, f"head_{i}", head)
        first = self.heads[0]
        self.num_classes, self.pair = first.num_classes, first.pair
        self.pooling = POOLING_MATH[first.pooling]
        self.weight_names = self._layers_of(first)
        self.stacked = [tf.Variable(np.stack([w.numpy() for w in weights]),
                                    name=f"stacked_{name}", aggregation=_EVERY_REPLICA_ALIKE)
                        for name, weights in zip(self.weight_names, zip(
                            *[self._weights_of(head) for head in self.heads]))]
        for name, variable in zip(self.weight_names, self.stacked):
            setattr(self, f"stacked_{name}", variable)

    @staticmethod
    def shape_of(head) -> tuple:
        """What heads stacked together share."""
        return (head.hidden_units, head.pooling, head.num_classes, head.pair)

    @staticmethod
    def supports(heads: list) -> bool:
        """Heads without transformer blocks (of any shapes: `HeadStacks` stacks each),
        whose learned pooling, if any, has a stacked form."""
        poolings = [POOLING_MATH[h.pooling] for h in heads]
        return all(not h.sequence_layers and h.average_layers == 0
                   and (not pooling.make_layer or pooling.pool_stacked)
                   for h, pooling in zip(heads, poolings))

    def _layers_of(self, head) -> list[str]:
        names = ([f"score_{w.name}" for w in getattr(head, self.pooling.layer_name).weights]
                 if self.pooling.make_layer else [])
        names += ["hidden_kernel", "hidden_bias"] if head.hidden is not None else []
        return names + ["logits_kernel", "logits_bias"]

    def _weights_of(self, head) -> list:
        weights = []
        if self.pooling.make_layer:
            weights += getattr(head, self.pooling.layer_name).weights
        if head.hidden is not None:
            weights += head.hidden.weights
        return weights + head.logits.weights

    @property
    def trainable_variables(self):
        return list(self.stacked)

    def _weight(self, name: str):
        return self.stacked[self.weight_names.index(name)]

    def _vector(self, features):
        """`[K, batch, width]`: each head's pooled vector."""
        if not isinstance(features, dict):  # pooled features: the same for every head
            flat = tf.reshape(features, [tf.shape(features)[0], -1])
            return tf.broadcast_to(flat[None], [len(self.heads)] + tf.unstack(tf.shape(flat)))
        learned = [self._weight(name) for name in self.weight_names if name.startswith("score_")]
        return self.pooling.pool_stacked(tf.cast(features["tokens"], tf.float32),
                                         features["mask"], learned)

    def _per_head(self, layer_name: str, x, training):
        return tf.stack([getattr(head, layer_name)(x[k], training=training)
                         for k, head in enumerate(self.heads)])

    def call(self, features, training=False):
        if self.pair:
            u, v = (self._vector(features[side]) for side in ("first", "second"))
            x = tf.concat([u, v, tf.abs(u - v), u * v, cosine(u, v)], axis=-1)
        else:
            x = self._vector(features)
        x = self._per_head("input_dropout", x, training)
        if "hidden_kernel" in self.weight_names:
            x = keras.activations.gelu(tf.einsum("kbf,kfh->kbh", x, self._weight("hidden_kernel"))
                                       + self._weight("hidden_bias")[:, None])
            x = self._per_head("hidden_dropout", x, training)
        return (tf.einsum("kbh,khc->kbc", x, self._weight("logits_kernel"))
                + self._weight("logits_bias")[:, None])

    def unstack(self) -> list:
        """The heads, holding the trained weights (what is exported and saved alone)."""
        for k, head in enumerate(self.heads):
            for weight, stacked in zip(self._weights_of(head), self.stacked):
                weight.assign(stacked[k])
        return self.heads


class HeadStacks(keras.Model):
    """Heads of several shapes: a `StackedHeads` per shape, in one step; `call` returns
    every head's logits in the order of `heads`, as `HeadGroup` does."""

    def __init__(self, heads: list, **kwargs):
        super().__init__(**kwargs)
        self.heads = list(heads)
        shapes = {}
        for index, head in enumerate(self.heads):
            shapes.setdefault(StackedHeads.shape_of(head), []).append(index)
        self.members = list(shapes.values())
        self.stacks = [StackedHeads([self.heads[i] for i in m]) for m in self.members]
        for i, stack in enumerate(self.stacks):
            setattr(self, f"stack_{i}", stack)
        self.order = np.argsort(np.concatenate(self.members)).tolist()
        self.num_classes, self.pair = self.heads[0].num_classes, self.heads[0].pair

    @property
    def trainable_variables(self):
        return [v for stack in self.stacks for v in stack.trainable_variables]

    def call(self, features, training=False):
        logits = tf.concat([stack(features, training=training) for stack in self.stacks], 0)
        return logits if len(self.stacks) == 1 else tf.gather(logits, self.order)

    def unstack(self) -> list:
        for stack in self.stacks:
            stack.unstack()
        return self.heads


class StackedAdam(tf.Module):
    """Keras' Adam (the same update, epsilon and bias correction) on stacked variables,
    each head `k` at its own learning rate: `rates[k]`, constant or decayed linearly to 0
    over `total_steps` (`schedules[k]`), as `sst2.fit.optimization.learning_rate`."""

    def __init__(self, rates: list, schedules: list, total_steps: int, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7):
        super().__init__(name="stacked_adam")
        self.rates = tf.constant(rates, tf.float32)
        self.linear = tf.constant([s == "linear" for s in schedules])
        self.total_steps = float(max(total_steps, 1))
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations",
                                      aggregation=_EVERY_REPLICA_ALIKE)
        self.momentums, self.velocities = [], []

    def build(self, variables) -> None:
        for i, variable in enumerate(variables):
            self.momentums.append(tf.Variable(tf.zeros_like(variable), trainable=False,
                                              name=f"m_{i}", aggregation=_EVERY_REPLICA_ALIKE))
            self.velocities.append(tf.Variable(tf.zeros_like(variable), trainable=False,
                                               name=f"v_{i}", aggregation=_EVERY_REPLICA_ALIKE))

    def _learning_rates(self):
        step = tf.cast(self.iterations, tf.float32)
        decayed = self.rates * (1.0 - tf.minimum(step, self.total_steps) / self.total_steps)
        return tf.where(self.linear, decayed, self.rates)

    def apply_gradients(self, grads_and_vars) -> None:
        """One Adam step; on several replicas, on the gradients summed across them (as
        Keras' optimizers do), every replica then applying the same update."""
        grads_and_vars = list(grads_and_vars)
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            summed = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                        [g for g, _ in grads_and_vars])
            grads_and_vars = list(zip(summed, [v for _, v in grads_and_vars]))
        rates = self._learning_rates()
        local_step = tf.cast(self.iterations + 1, tf.float32)
        correction = (tf.sqrt(1 - tf.pow(self.beta_2, local_step))
                      / (1 - tf.pow(self.beta_1, local_step)))
        for (gradient, variable), m, v in zip(grads_and_vars, self.momentums, self.velocities):
            alpha = tf.reshape(rates * correction, [-1] + [1] * (variable.shape.rank - 1))
            m.assign_add((gradient - m) * (1 - self.beta_1))
            v.assign_add((tf.square(gradient) - v) * (1 - self.beta_2))
            variable.assign_sub(m * alpha / (tf.sqrt(v) + self.epsilon))
        self.iterations.assign_add(1)
