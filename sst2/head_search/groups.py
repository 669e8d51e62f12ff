"""A head search's groups: configurations that read the same features, trained together.

`grouped` splits the configurations by the features they read (pooling and
layers); `group_trainer(configurations)` is the `sst2.fit.training.run`
trainer factory that trains a group's heads in one compiled step
(`sst2.head_search.head_group`, `sst2.head_search.stacked_heads`), each head starting from the
weights it would start from trained alone; `heads_together` builds them.

Example:
    >>> from sst2.run.config import TrainConfig
    >>> configured(TrainConfig(), {"dropout": 0.3, "learning_rate": 0.01}).model.dropout
    0.3
    >>> grouped([{"pooling": "mean"}, {"pooling": "cls"}, {"pooling": "mean"}], TrainConfig())
    [[0, 2], [1]]
"""

import random

import keras

from sst2.fit.optimization import GroupedOptimizer, make_optimizer
from sst2.fit.training import trainer_options
from sst2.head_search.head_group import GroupTrainer, HeadGroup
from sst2.head_search.stacked_heads import HeadStacks, StackedAdam, StackedHeads
from sst2.model.assembly import head_for
from sst2.model.backbone import FeatureSpec
from sst2.run.config import TrainConfig


def configured(base: TrainConfig, values: dict) -> TrainConfig:
    """`base` with one configuration's values (validated as any run's options)."""
    return base.with_options(**values)


def members_of(group_config: TrainConfig, configurations: list[dict]) -> list:
    """Each head's config in a group: the group's, with the configuration's own values
    (pooling and layers are the group's, shared)."""
    return [configured(group_config, {k: v for k, v in values.items()
                                      if k not in ("pooling", "layers")})
            for values in configurations]


def grouped(configurations: list[dict], base: TrainConfig) -> list[list[int]]:
    """Which configurations read the same features (trained together), in order."""
    groups = {}
    for index, values in enumerate(configurations):
        spec = FeatureSpec.of(configured(base, values).model)
        groups.setdefault((spec.pooling, spec.layers), []).append(index)
    return list(groups.values())


def group_trainer(configurations: list[dict]):
    """A `training.run` trainer factory: the group's heads, trained together."""
    def build(config, strategy, backbone, inputs):
        spec = FeatureSpec.of(config.model)
        total_steps = sum(inputs.train.num_batches(e) for e in range(config.optimization.epochs))
        heads = []
        members = members_of(config, configurations)
        states = _initial_random_states(config, {m.optimization.seed for m in members})
        with strategy.scope():
            for member in members:
                random.setstate(states[member.optimization.seed])
                heads.append(head_for(member, backbone, inputs.info, inputs.precisions,
                                      copy_unfrozen=True))
            group, optimizer = heads_together(heads, members, total_steps)
        random.setstate(states["after"])
        trainer = GroupTrainer(group, optimizer, inputs.global_batch,
                               best_metric=config.optimization.best_metric,
                               **trainer_options(config, strategy, inputs))
        trainer.build(spec.feature_shape(backbone))
        return trainer

    return build


def heads_together(heads: list, members: list, total_steps: int) -> tuple:
    """The built `heads` (of the configurations `members`) as one model, and the
    optimizer that gives each its own learning rate: stacked by shape (`HeadStacks`, a
    `StackedAdam` per stack), or for heads with transformer blocks a `HeadGroup` and
    an Adam per head."""
    if StackedHeads.supports(heads):
        stacks = HeadStacks(heads)
        return stacks, GroupedOptimizer([StackedAdam(
            [members[i].optimization.learning_rate for i in indices],
            [members[i].optimization.lr_schedule for i in indices], total_steps)
            for indices in stacks.members], [s.trainable_variables for s in stacks.stacks])
    optimizers = [make_optimizer(m.optimization, h, total_steps) for h, m in zip(heads, members)]
    return HeadGroup(heads), GroupedOptimizer(optimizers,
                                              [h.trainable_variables for h in heads])


def _initial_random_states(config, seeds: set) -> dict:
    """Python's random state at which `sst2.train --seed=S` builds its head, for each seed
    S (Keras draws initializer seeds from it), so that each head of a group starts
    from the weights it would start from alone: the run's own state for its seed, and
    for another seed the state right after seeding, as a run seeds itself again once
    its frozen model has loaded (`sst2.fit.training.run`)."""
    base = config.optimization.seed
    states = {base: random.getstate()}
    for seed in sorted(seeds - {base}):
        keras.utils.set_random_seed(seed)
        states[seed] = random.getstate()
    if len(states) > 1:
        keras.utils.set_random_seed(base)  # numpy's and TensorFlow's seeds as the run set them
    states["after"] = states[base]
    return states
