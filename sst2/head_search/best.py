"""A search's result: the best head as a run of its own, and the export (it, or an ensemble).

`export_best` restores the winning group's best checkpoint, writes the best
head as `best_run/` (its `config.json`, `metrics.json` and `best`
checkpoint: `sst2.evaluate` and `sst2.export` take it as any run), and
exports the best head, or the mean of the top `ensemble` heads of that group
at that epoch (`head_group.MeanOfHeads`, the backbone run once). The
export's own validation metrics, computed as it answers, are logged and
returned.

Example:
    >>> _describe({"learning_rate": 0.003, "pooling": "mean"})
    'learning_rate 0.003, pooling mean'
"""

import os

from absl import logging

from sst2.fit.checkpoint import RunCheckpoint
from sst2.fit.loop import Position
from sst2.fit.optimization import make_optimizer
from sst2.head_search.groups import heads_together, members_of
from sst2.head_search.head_group import MeanOfHeads
from sst2.model.assembly import head_for, load_frozen
from sst2.model.backbone import FeatureSpec
from sst2.run import metrics
from sst2.run.config_file import load_config, load_precisions, save_config, to_dict
from sst2.run.files import load_json, save_json
from sst2.run.run_folder import RunFolder
from sst2.serve import temperature as calibration
from sst2.serve.calibrated import calibrate_run
from sst2.serve.evaluation import predict_split
from sst2.serve.publish import check_behaviour
from sst2.serve.trained import TrainedModel
from sst2.text.data import load_train_buckets
from sst2.text.dataset_info import load_dataset_info


def _restore_group(group_dir: str, members: list):
    """The group's heads, optimizers and model, at its best checkpoint."""
    config = load_config(group_dir).replace(run={"model_dir": group_dir})
    info = load_dataset_info(group_dir)
    precisions, preprocessor, backbone = load_frozen(config.model, load_precisions(group_dir))
    heads, member_configs = [], []
    for member in members_of(config, members):
        heads.append(head_for(member, backbone, info, precisions))
        member_configs.append(member)
    group, optimizer = heads_together(heads, member_configs, total_steps=1)
    optimizer.build(group.trainable_variables)
    path = RunCheckpoint(group_dir, group, optimizer).restore_best()
    if hasattr(group, "unstack"):
        group.unstack()
    optimizers = [make_optimizer(m.optimization, h, total_steps=1)
                  for h, m in zip(heads, member_configs)]
    for head, head_optimizer in zip(heads, optimizers):
        head_optimizer.build(head.trainable_variables)
    return config, info, preprocessor, backbone, heads, optimizers, member_configs, path


def _write_best_run(search_dir: str, best: dict, record: dict, config, head, optimizer,
                    group_dir: str, info) -> str:
    """The best head as a run folder of its own."""
    folder = RunFolder(search_dir).best_run
    os.makedirs(folder, exist_ok=True)
    config = config.replace(run={"model_dir": folder, "export": False})
    save_config(folder, config, info, load_train_buckets(group_dir), load_precisions(group_dir))
    sign = 1 if metrics.BEST_METRICS[best["metric"]] else -1
    RunCheckpoint(folder, head, optimizer).save_if_best(
        Position(epoch=best["best_epoch"], step=record["step"]), sign * best["best"])
    save_json(RunFolder(folder).metrics, {
        "config": to_dict(config), "search": search_dir, "search_rank": 1,
        "epochs": [{"epoch": e["epoch"], **{f"val_{k}": v for k, v in e.items() if k != "epoch"},
                    **({"best": True} if e["epoch"] == best["best_epoch"] else {})}
                   for e in best["epochs"]]})
    return folder


def export_best(search_dir: str, rows: list, configurations: list, groups: list, base,
                ensemble: int, export: bool) -> tuple[dict, str | None]:
    """Writes `best_run/` and (with `export`) the export; returns the best row (with the
    export's validation metrics under `export_validation`) and the export's folder."""
    best = rows[0]
    group_dir = RunFolder(search_dir).group(best["group"])
    run = load_json(RunFolder(group_dir).metrics)
    record = next(r for r in run["epochs"] if r["epoch"] == best["best_epoch"])
    (config, info, preprocessor, backbone, heads, optimizers, members,
     checkpoint) = _restore_group(group_dir, [configurations[i] for i in groups[best["group"]]])
    k = best["head"]
    best_run = _write_best_run(search_dir, best, record, members[k], heads[k], optimizers[k],
                               group_dir, info)
    logging.info(f"Best: configuration {best['configuration']} ({_describe(best['config'])}), "
                 f"epoch {best['best_epoch']}: {best['metric']} {best['best']:.4f}; saved as "
                 f"{best_run}.")
    if not export:
        return best, None
    sign = 1 if metrics.BEST_METRICS[best["metric"]] else -1
    ranked = sorted(range(len(heads)), key=lambda h: -sign * record["val_heads"][h][best["metric"]])
    chosen = ranked[:ensemble]
    head = heads[k] if ensemble == 1 else MeanOfHeads([heads[h] for h in chosen], info.task)
    target = info.target
    spec = FeatureSpec.of(config.model)
    # The best head's run folder describes the export (its model card reads it).
    winner = members[k].replace(run={"model_dir": best_run})
    trained = TrainedModel(winner, preprocessor, backbone, head, spec, checkpoint, info)
    scored = predict_split(trained, config.data.eval_split, show_progress=config.run.progress,
                           with_text=base.run.behaviour)
    outputs = scored[target.answer]
    if target.thresholded and ensemble > 1:  # the ensemble's own thresholds
        head.thresholds.assign(metrics.tune_thresholds(outputs, scored["gold"]))
    thresholds = head.thresholds.numpy() if target.thresholded else None
    if target.calibrated and base.run.calibrate:  # as sst2.train's export
        trained = calibrate_run(trained, scored=scored, record=False)
        outputs = calibration.scaled(outputs, trained.temperature)
    best["export_validation"] = target.score(outputs, scored["gold"], thresholds)
    if base.run.behaviour:  # as sst2.train's: before the export, whose card carries it
        check_behaviour(trained, scored)
    path = trained.export(RunFolder(search_dir).export)
    what = "the best head" if ensemble == 1 else f"the mean of the top {len(chosen)} heads"
    logging.info(f"Exported {what} ({path}); as it answers, validation {best['metric']} "
                 f"{best['export_validation'][best['metric']]:.4f}.")
    best["export_heads"] = [int(h) for h in chosen]
    return best, path


def _describe(values: dict) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in values.items())

