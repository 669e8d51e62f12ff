"""Every name in a run folder (`--model_dir`), in one place.

Modules ask a `RunFolder` where a file goes and never join names themselves,
so renaming or adding a file of a run is one line here.

Example:
    >>> folder = RunFolder("runs/sst2")
    >>> folder.metrics, folder.checkpoints, folder.submission("SST-2")
    ('runs/sst2/metrics.json', 'runs/sst2/checkpoints', 'runs/sst2/SST-2.tsv')
    >>> sorted(RunFolder.RESTART_REMOVES)
    ['best', 'checkpoints', 'config', 'eval_events', 'metrics', 'train_events']
"""

import os


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
        "predictions": "predictions.jsonl",  # sst2.evaluate --test_file
        "lock": ".lock",                  # one process at a time
    }
    # What --restart removes; the feature cache stays (it depends on the data, not the run).
    RESTART_REMOVES = ("checkpoints", "best", "metrics", "train_events", "eval_events", "config")

    def __init__(self, root: str):
        self.root = root

    def __getattr__(self, name: str) -> str:
        try:
            return os.path.join(self.root, RunFolder.NAMES[name])
        except KeyError:
            raise AttributeError(name) from None

    def submission(self, task: str) -> str:
        """GLUE's submission file of `task` (e.g. `SST-2.tsv`)."""
        return os.path.join(self.root, f"{task}.tsv")

    def checkpoint_probe(self, pid: int) -> str:
        """A file named as long as the longest a checkpoint writes (the writability probe);
        the process id in it, as the workers of a multi-worker run probe one folder."""
        return os.path.join(self.checkpoints,
                            f"ckpt-9999999999.data-00000-of-00001.tempstate{pid:017d}")
