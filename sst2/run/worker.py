"""This process's place among a run's workers, and where it writes.

Only the chief writes checkpoints, summaries, metrics, the feature-cache index
and the export. Other workers take part in every collective but write into a
temporary folder that they remove, as TF Model Garden does
(`sst2.fit.distribute` finds a strategy's workers).

Example:
    >>> write_dir("runs/a", WorkerInfo(index=0, count=2))     # the chief writes in place
    'runs/a'
    >>> WorkerInfo(index=1, count=2).is_chief
    False
"""

import dataclasses
import os
import shutil
import tempfile


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """This process's place in the cluster."""

    index: int = 0
    count: int = 1

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def write_dir(model_dir: str, worker: WorkerInfo) -> str:
    """Where this worker writes: the model dir for the chief, a temporary folder otherwise."""
    if worker.is_chief:
        return model_dir
    return tempfile.mkdtemp(prefix=f"sst2-worker{worker.index}-")


def remove_write_dir(path: str, model_dir: str) -> None:
    """Removes a worker's temporary folder (never the run folder itself)."""
    if os.path.abspath(path) != os.path.abspath(model_dir):
        shutil.rmtree(path, ignore_errors=True)
