"""One run at a time per run folder: an advisory lock held while a run trains.

The lock is `flock` on `<model_dir>/.lock`, which the operating system
releases when the process ends, however it ends: a lock file left by a killed
run never blocks the next one. The file names the holder (pid, host, start
time) for the message a second run gets. (`flock` is per machine: on a network
filesystem shared by several machines it may not exclude a run elsewhere.)

Example:
    >>> with RunLock(tmp_dir):
    ...     with RunLock(tmp_dir):
    ...         pass
    Traceback (most recent call last):
    ...
    sst2.run.errors.UserError: ... is in use by another run (pid ..., started ...). ...
"""

import datetime
import fcntl
import json
import os
import socket

from sst2.run.errors import UserError
from sst2.run.files import open_for_writing
from sst2.run.run_folder import RunFolder


class RunLock:
    """`with RunLock(model_dir):` holds the run folder, or raises `UserError` naming the holder."""

    def __init__(self, model_dir: str, create: bool = True):
        """`create=False` (evaluating, exporting): the folder must already hold a run."""
        self.model_dir = model_dir
        self.path = RunFolder(model_dir).lock
        self.create = create
        self._file = None

    def __enter__(self) -> "RunLock":
        if not self.create and not os.path.isdir(self.model_dir):
            raise UserError(f"{self.model_dir} holds no trained run (no such folder). Train "
                            "one with: python -m sst2.train --model_dir=...")
        os.makedirs(self.model_dir, exist_ok=True)
        file = open_for_writing(self.path, "a+")  # never through a link someone left
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = _describe(file.read())
            file.close()
            raise UserError(f"{self.model_dir} is in use by another run ({holder}). Wait for "
                            "it to finish or stop it, or use another --model_dir.") from None
        file.seek(0)
        file.truncate()
        file.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                               "started": datetime.datetime.now().isoformat(timespec="seconds")}))
        file.flush()
        self._file = file
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None


def _describe(content: str) -> str:
    try:
        holder = json.loads(content)
        return f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"
