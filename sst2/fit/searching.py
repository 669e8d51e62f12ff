"""A head search: every configuration trained, scored each epoch, the best exported.

`run_search(config)` splits the configurations into groups that read the
same features (the same pooling and layers) and trains each group as one
run whose heads train together in one compiled step (`head_group`), one
group after another, each in its own run folder (`groups/<n>`) that resumes
as any run does. The leaderboard (`leaderboard`) ranks every (configuration,
epoch) by `--best_metric`; the best head becomes a run of its own
(`best_run/`, for `sst2.evaluate`), and the export is it, or the mean of the
top `--ensemble` heads of its group at its best epoch.

Example:
    >>> from sst2.run.search_config import SearchConfig
    >>> config = SearchConfig(
    ...     data=DataConfig(data_dir=data_dir),
    ...     model=ModelConfig(preset=preset, sequence_length=16, pooling="mean"),
    ...     optimization=OptimizationConfig(epochs=1, batch_size=16),
    ...     run=RunConfig(model_dir=tmp_dir, progress=False, export=False),
    ...     space={"learning_rate": [1e-3, 1e-2], "seed": [0, 1]})
    >>> result = run_search(config, log=lambda message: None)
    >>> len(result["leaderboard"]), sorted(result["best"]["config"])
    (4, ['dropout', 'head_hidden', 'layers', 'learning_rate', 'pooling', 'seed'])
"""

import os
import random
import time

from sst2.fit import training
from sst2.fit.leaderboard import leaderboard, write_leaderboard
from sst2.model.backbone import FeatureSpec
from sst2.run.config import (DataConfig, ModelConfig, OptimizationConfig,  # noqa: F401
                             RunConfig, TrainConfig)
from sst2.run.errors import UserError
from sst2.run.files import load_json, remove_entry, save_json
from sst2.run.run_folder import RunFolder
from sst2.run.runlock import RunLock
from sst2.run.search_config import SearchConfig, combinations

# What each searched option sets in a head's configuration (the group shares the rest).
_GROUP_OF = {"learning_rate": "optimization", "seed": "optimization", "dropout": "model",
             "head_hidden": "model", "pooling": "model", "layers": "model"}
SEARCH_REMOVES = ("search", "groups", "best_run", "leaderboard", "leaderboard_csv",
                  "hparams")


def configured(base: TrainConfig, values: dict) -> TrainConfig:
    """`base` with one configuration's values (validated as any run's options)."""
    changes = {"model": {}, "optimization": {}}
    for name, value in values.items():
        changes[_GROUP_OF[name]][name] = value
    return base.replace(**changes)


def grouped(configurations: list[dict], base: TrainConfig) -> list[list[int]]:
    """Which configurations read the same features (trained together), in order."""
    groups = {}
    for index, values in enumerate(configurations):
        spec = FeatureSpec.of(configured(base, values).model)
        groups.setdefault((spec.pooling, spec.layers), []).append(index)
    return list(groups.values())


def _start(config: SearchConfig, configurations: list, groups: list, log) -> None:
    """Checks a resumed search is the same search (or clears it with `--restart`)."""
    folder = RunFolder(config.run.model_dir)
    plan = {"configurations": configurations, "groups": groups}
    if config.run.restart:
        for name in SEARCH_REMOVES:
            remove_entry(getattr(folder, name))
    elif os.path.exists(folder.search):
        saved = load_json(folder.search)
        if {k: saved.get(k) for k in plan} != plan:
            raise UserError(f"{config.run.model_dir} holds another search (other "
                            "configurations). Use the same flags to resume, another "
                            "--model_dir, or --restart to start over.")
        log(f"Resuming the search in {config.run.model_dir}.")
    save_json(folder.search, plan)


def run_search(config: SearchConfig, log=print) -> dict:
    """Trains every configuration of `config`'s space (see the module); returns
    `{"leaderboard": rows, "best": the best row, "export_dir": ...}`."""
    base = training.with_absolute_paths(config.train_config)
    search_dir = base.run.model_dir
    base = base.replace(run={"cache_dir": base.run.cache_dir
                             or RunFolder(search_dir).feature_cache})
    space = config.searched_space()
    configurations = combinations(space)
    for values in configurations:
        configured(base, values)  # every configuration's values are valid options
    groups = grouped(configurations, base)
    os.makedirs(search_dir, exist_ok=True)
    with RunLock(search_dir):
        _start(config, configurations, groups, log)
        log(f"Searching {len(configurations)} configurations in {len(groups)} group(s) of "
            "heads trained together; the space: " + "; ".join(
                f"{name} {', '.join(map(str, values))}" for name, values in space.items()) + ".")
        for number, members in enumerate(groups):
            started = time.time()
            group_dir = os.path.join(RunFolder(search_dir).groups, str(number))
            group_config = configured(base, configurations[members[0]]).replace(
                run={"model_dir": group_dir, "export": False})
            log(f"Group {number + 1}/{len(groups)}: {len(members)} heads.")
            training.run(group_config, log=log, build_trainer=_group_builder(
                [configurations[i] for i in members]))
            log(f"Group {number + 1} done in {time.time() - started:.1f}s.")
        rows = leaderboard(search_dir, configurations, groups)
        write_leaderboard(search_dir, rows, log)
        from sst2.fit.search_export import export_best

        best, export_dir = export_best(search_dir, rows, configurations, groups,
                                       base, config.search.ensemble, base.run.export, log)
    return {"leaderboard": rows, "best": best, "export_dir": export_dir}


def _group_builder(configurations: list[dict]):
    """A `training.run` trainer factory: the group's heads, trained together."""
    def build(config, strategy, backbone, info, train_source, global_batch, precisions, facts):
        from sst2.fit.head_group import GroupTrainer
        from sst2.fit.targets import MULTI_LABEL, TARGETS, TargetScale
        from sst2.model import hardware
        from sst2.model.head import build_head

        spec = FeatureSpec.of(config.model)
        total_steps = sum(train_source.num_batches(e) for e in range(config.optimization.epochs))
        heads = []
        members = [configured(config, {k: v for k, v in values.items()
                                       if k not in ("pooling", "layers")})
                   for values in configurations]
        states = _initial_random_states(config, {m.optimization.seed for m in members},
                                        precisions["encode"])
        with strategy.scope():
            for member in members:
                random.setstate(states[member.optimization.seed])
                head = build_head(member.model, backbone, member.optimization.seed,
                                  copy_unfrozen=True, num_classes=info.num_outputs,
                                  unfrozen_precision=precisions["train"],
                                  multi_label=info.task == MULTI_LABEL)
                heads.append(head)
            group, optimizer = heads_together(heads, members, total_steps)
        random.setstate(states["after"])
        trainer = GroupTrainer(
            group, optimizer, global_batch, best_metric=config.optimization.best_metric,
            strategy=strategy, jit_compile=hardware.head_jit(config.run.jit_compile,
                                                             spec.has_transformer_blocks),
            class_weights=facts["class_weights"], target=TARGETS[info.task],
            target_scale=TargetScale(**info.target_scale) if info.target_scale else None,
            threshold=config.model.threshold)
        trainer.build(spec.feature_shape(backbone))
        return trainer

    return build


def heads_together(heads: list, members: list, total_steps: int) -> tuple:
    """The built `heads` (of the configurations `members`) as one model, and the
    optimizer that gives each its own learning rate: stacked by shape (`HeadStacks`, a
    `StackedAdam` per stack), or for heads with transformer blocks a `HeadGroup` and
    an Adam per head."""
    from sst2.fit.head_group import HeadGroup
    from sst2.fit.optimization import GroupedOptimizer, make_optimizer
    from sst2.fit.stacked_heads import HeadStacks, StackedAdam, StackedHeads

    if StackedHeads.supports(heads):
        stacks = HeadStacks(heads)
        return stacks, GroupedOptimizer([StackedAdam(
            [members[i].optimization.learning_rate for i in indices],
            [members[i].optimization.lr_schedule for i in indices], total_steps)
            for indices in stacks.members], [s.trainable_variables for s in stacks.stacks])
    optimizers = [make_optimizer(m.optimization, h, total_steps) for h, m in zip(heads, members)]
    return HeadGroup(heads), GroupedOptimizer(optimizers,
                                              [h.trainable_variables for h in heads])


def _initial_random_states(config, seeds: set, precision: str) -> dict:
    """Python's random state at which `sst2.train --seed=S` builds its head, for each seed
    S (Keras draws initializer seeds from it), so that each head of a group starts
    from the weights it would start from alone: the run's own state for its seed, and
    for another seed the state after seeding and loading the model as a run does."""
    import keras

    from sst2.model import presets

    base = config.optimization.seed
    states = {base: random.getstate()}
    for seed in sorted(seeds - {base}):
        keras.utils.set_random_seed(seed)
        presets.load_preprocessor(config.model.preset, config.model.sequence_length)
        presets.load_backbone(config.model.preset, dtype=precision)
        states[seed] = random.getstate()
    if len(states) > 1:
        keras.utils.set_random_seed(base)  # numpy's and TensorFlow's seeds as the run set them
    states["after"] = states[base]
    return states
