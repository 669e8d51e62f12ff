"""A search's leaderboard: every configuration's validation metrics per epoch, ranked.

`leaderboard(search_dir, configurations, groups)` reads each group's
`metrics.json` (whose epoch records hold every head's metrics) and ranks the
configurations by their best epoch's `--best_metric`. `write_leaderboard`
prints it as a table and writes `leaderboard.json`, `leaderboard.csv` and
TensorBoard's HParams dashboard (`hparams/`).

Example:
    >>> rows = [{"rank": 1, "config": {"learning_rate": 0.003}, "metric": "accuracy",
    ...          "best": 0.87, "best_epoch": 2, "seconds": 1.5, "epochs": []}]
    >>> print(table(rows))
    rank  learning_rate  accuracy  epoch  seconds
       1          0.003    0.8700      2      1.5
"""

import csv
import io
import os

from absl import logging

from sst2.run.config_file import load_config
from sst2.run.files import load_json, remove_entry, save_json, write_atomically
from sst2.run.metrics import BEST_METRICS, METRICS
from sst2.run.run_folder import RunFolder
from sst2.run.search_config import SEARCHABLE


def _resolved(group_dir: str, values: dict) -> dict:
    """A configuration's value of every searchable option, `auto` as the run resolved it."""
    config = load_config(group_dir)
    found = {name: getattr(getattr(config, group), name) for group in ("model", "optimization")
             for name in SEARCHABLE if hasattr(getattr(config, group), name)}
    found.update({k: v for k, v in values.items() if k not in ("pooling", "layers")})
    return {name: found[name] for name in SEARCHABLE}


def leaderboard(search_dir: str, configurations: list, groups: list) -> list[dict]:
    """One row per configuration, best first (ties: the earlier configuration)."""
    rows = []
    for number, members in enumerate(groups):
        group_dir = RunFolder(search_dir).group(number)
        run = load_json(RunFolder(group_dir).metrics)
        metric = run["config"]["optimization"]["best_metric"]
        # The group's training and evaluation time, over every invocation (resumes too).
        seconds = sum(r.get("seconds", 0.0) + r.get("eval_seconds", 0.0) for r in run["epochs"])
        sign = 1 if BEST_METRICS[metric] else -1
        for k, index in enumerate(members):
            epochs = [{"epoch": r["epoch"], **r["val_heads"][k]} for r in run["epochs"]]
            best = max(epochs, key=lambda e: (sign * e[metric], -e["epoch"]))
            rows.append({"configuration": index, "group": number, "head": k,
                         "config": _resolved(group_dir, configurations[index]),
                         "metric": metric, "best": best[metric], "best_epoch": best["epoch"],
                         "seconds": seconds / len(members), "group_seconds": seconds,
                         "epochs": epochs})
    sign = 1 if BEST_METRICS[rows[0]["metric"]] else -1
    rows.sort(key=lambda r: (-sign * r["best"], r["configuration"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def table(rows: list[dict]) -> str:
    """The leaderboard as an aligned text table."""
    names = list(rows[0]["config"])
    header = ["rank"] + names + [rows[0]["metric"], "epoch", "seconds"]
    lines = [[str(r["rank"])] + [f"{r['config'][n]:g}" if isinstance(r["config"][n], float)
                                 else str(r["config"][n]) for n in names]
             + [f"{r['best']:.4f}", str(r["best_epoch"]), f"{r['seconds']:.1f}"]
             for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(line, widths))
                     for line in [header] + lines)


def write_leaderboard(search_dir: str, rows: list[dict]) -> None:
    """Logs the table; writes `leaderboard.json`, `leaderboard.csv` and HParams."""
    folder = RunFolder(search_dir)
    logging.info("Leaderboard (validation):\n" + table(rows))
    save_json(folder.leaderboard, rows)
    metrics = [m for m in METRICS if m in rows[0]["epochs"][0]] if rows[0]["epochs"] else []
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    names = list(rows[0]["config"])
    epochs = max(len(r["epochs"]) for r in rows)
    writer.writerow(["rank"] + names + ["best", "best_epoch", "seconds"]
                    + [f"epoch{e + 1}_{m}" for e in range(epochs) for m in metrics])
    for r in rows:
        writer.writerow([r["rank"]] + [r["config"][n] for n in names]
                        + [r["best"], r["best_epoch"], round(r["seconds"], 3)]
                        + [e.get(m) for e in r["epochs"] for m in metrics])
    write_atomically(folder.leaderboard_csv, lambda f: f.write(buffer.getvalue()))
    _write_hparams(folder.hparams, rows, metrics)


def _write_hparams(folder: str, rows: list[dict], metrics: list) -> None:
    """TensorBoard's HParams dashboard: one run per configuration, its validation
    metrics per epoch."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    remove_entry(folder)  # written whole each time (a resumed search rewrites it)
    for row in rows:
        writer = tf.summary.create_file_writer(os.path.join(folder,
                                                            f"config-{row['configuration']}"))
        with writer.as_default():
            hp.hparams({name: value for name, value in row["config"].items()},
                       trial_id=f"config-{row['configuration']}")
            for epoch in row["epochs"]:
                for metric in metrics:
                    tf.summary.scalar(f"val_{metric}", epoch[metric], step=epoch["epoch"])
        writer.close()
