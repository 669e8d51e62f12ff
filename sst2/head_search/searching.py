"""A head search: every configuration trained, scored each epoch, the best exported.

`run_search(config)` splits the configurations into groups that read the
same features (the same pooling and layers) and trains each group as one
run whose heads train together in one compiled step (`sst2.head_search.groups`), one
group after another, each in its own run folder (`groups/<n>`) that resumes
as any run does. The leaderboard (`leaderboard`) ranks every (configuration,
epoch) by `--best_metric`; the best head becomes a run of its own
(`best_run/`, for `sst2.evaluate`), and the export is it, or the mean of the
top `--ensemble` heads of its group at its best epoch.

Example:
    >>> from sst2.run.config import DataConfig, ModelConfig, OptimizationConfig, RunConfig
    >>> from sst2.run.search_config import SearchConfig
    >>> config = SearchConfig(
    ...     data=DataConfig(data_dir=data_dir),
    ...     model=ModelConfig(preset=preset, sequence_length=16, pooling="mean"),
    ...     optimization=OptimizationConfig(epochs=1, batch_size=16),
    ...     run=RunConfig(model_dir=tmp_dir, progress=False, export=False),
    ...     space={"learning_rate": [1e-3, 1e-2], "seed": [0, 1]})
    >>> result = run_search(config)
    >>> len(result["leaderboard"]), sorted(result["best"]["config"])
    (4, ['dropout', 'head_hidden', 'layers', 'learning_rate', 'pooling', 'seed'])
"""

import os
import time

from absl import logging

from sst2.fit import training
from sst2.head_search.best import export_best
from sst2.head_search.groups import configured, group_trainer, grouped
from sst2.head_search.leaderboard import leaderboard, write_leaderboard
from sst2.run.errors import UserError
from sst2.run.files import load_json, remove_entry, save_json
from sst2.run.run_folder import RunFolder
from sst2.run.runlock import RunLock
from sst2.run.search_config import SearchConfig, combinations

SEARCH_REMOVES = ("search", "groups", "best_run", "leaderboard", "leaderboard_csv",
                  "hparams")


def _start(config: SearchConfig, configurations: list, groups: list) -> None:
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
        logging.info(f"Resuming the search in {config.run.model_dir}.")
    save_json(folder.search, plan)


def run_search(config: SearchConfig) -> dict:
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
        _start(config, configurations, groups)
        described = "; ".join(f"{name} {', '.join(map(str, values))}"
                              for name, values in space.items())
        logging.info(f"Searching {len(configurations)} configurations in {len(groups)} group(s) "
                     f"of heads trained together; the space: {described}.")
        for number, members in enumerate(groups):
            started = time.time()
            group_dir = RunFolder(search_dir).group(number)
            group_config = configured(base, configurations[members[0]]).replace(
                run={"model_dir": group_dir, "export": False})
            logging.info(f"Group {number + 1}/{len(groups)}: {len(members)} heads.")
            training.run(group_config, build_trainer=group_trainer(
                [configurations[i] for i in members]))
            logging.info(f"Group {number + 1} done in {time.time() - started:.1f}s.")
        rows = leaderboard(search_dir, configurations, groups)
        write_leaderboard(search_dir, rows)
        best, export_dir = export_best(search_dir, rows, configurations, groups,
                                       base, config.search.ensemble, base.run.export)
    return {"leaderboard": rows, "best": best, "export_dir": export_dir}


