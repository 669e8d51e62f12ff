"""Every name in a run folder (`--model_dir`), in one place.

Modules ask a `RunFolder` where a file goes and never join names themselves,
so renaming or adding a file of a run is one line here.

Example:
    >>> folder = RunFolder("runs/sst2")
    >>> folder.metrics, folder.checkpoints, folder.submission("SST-2")
    ('runs/sst2/metrics.json', 'runs/sst2/checkpoints', 'runs/sst2/SST-2.tsv')
    >>> "feature_cache" in RunFolder.RESTART_REMOVES, "export" in RunFolder.RESTART_REMOVES
    (False, True)
"""

import contextlib
import os

from sst2.run.files import open_for_writing, remove_entry


class RunFolder:
    """The paths of a run's files and folders under `root`."""

    NAMES = {
        "config": "config.json",          # the options, dataset, buckets, precisions
        "metrics": "metrics.json",        # per-epoch records and the run's facts
        "checkpoints": "checkpoints",     # rolling checkpoints, for resume
        "best": "best",                   # the best epoch's checkpoint, for export
        "train_events": "train",          # TensorBoard
        "eval_events": "eval",
        "feature_cache": "feature_cache",  # the frozen backbone's features (default place)
        "export": "export",               # SavedModel versions
        "export_openvino": "export_openvino",  # OpenVINO artifact versions (sst2.export)
        "predictions": "predictions.jsonl",  # sst2.evaluate --test_file
        "lock": ".lock",                  # one process at a time
        "calibration": "calibration.json",  # the temperature the export folds in
        "report": "report",               # sst2.report: report/index.html
        "behaviour": "behaviour.json",    # sst2.behaviour: the export's behaviour tests
        # sst2.search
        "search": "search.json",          # the space searched and its groups
        "groups": "groups",               # one run folder per group of heads trained together
        "best_run": "best_run",           # the best head as a run of its own (sst2.evaluate)
        "leaderboard": "leaderboard.json",
        "leaderboard_csv": "leaderboard.csv",
        "hparams": "hparams",             # TensorBoard's HParams dashboard
    }
    # What --restart removes: everything of the run before, its exports too (a model that
    # is gone must not be served from its folder); the feature cache stays (it depends on
    # the data, not the run).
    RESTART_REMOVES = ("checkpoints", "best", "metrics", "train_events", "eval_events", "config",
                       "export", "export_openvino", "calibration", "report", "predictions",
                       "behaviour")

    def __init__(self, root: str):
        self.root = root

    def __getattr__(self, name: str) -> str:
        try:
            return os.path.join(self.root, RunFolder.NAMES[name])
        except KeyError:
            raise AttributeError(name) from None

    def group(self, number: int) -> str:
        """A head search's run folder of group `number` (trained together)."""
        return os.path.join(self.groups, str(number))

    def submission(self, task: str) -> str:
        """GLUE's submission file of `task` (e.g. `SST-2.tsv`)."""
        return os.path.join(self.root, f"{task}.tsv")

    def checkpoint_probe(self, pid: int) -> str:
        """A file named as long as the longest a checkpoint writes (the writability probe);
        the process id in it, as the workers of a multi-worker run probe one folder."""
        return os.path.join(self.checkpoints,
                            f"ckpt-9999999999.data-00000-of-00001.tempstate{pid:017d}")


def check_writable(model_dir: str) -> None:
    """Writes and removes a file named as long as the longest a run writes, so that a
    read-only folder or a path too long fails now, not at the first checkpoint."""
    os.makedirs(RunFolder(model_dir).checkpoints, exist_ok=True)
    probe = RunFolder(model_dir).checkpoint_probe(os.getpid())
    with open_for_writing(probe):
        pass
    os.remove(probe)


@contextlib.contextmanager
def no_trace_unless_started(model_dir: str, existed: bool):
    """A run that fails before it has saved its config (bad data, no model) removes what
    it made: the lock, the empty checkpoints folder, and the run folder if it made that
    and it is empty. A partial feature cache stays: the next run resumes it."""
    try:
        yield
    except BaseException:
        if not os.path.exists(RunFolder(model_dir).config):
            for name in ("lock", "checkpoints"):
                path = getattr(RunFolder(model_dir), name)
                if os.path.isfile(path) or (os.path.isdir(path) and not os.listdir(path)):
                    remove_entry(path)
            if not existed and os.path.isdir(model_dir) and not os.listdir(model_dir):
                os.rmdir(model_dir)
        raise
