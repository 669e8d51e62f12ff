"""One run at a time per run folder (or per output): an advisory lock held while it works.

`RunLock(model_dir)` is `flock` on `<model_dir>/.lock`; `FileLock(path, what)`
the same on any lock file (`sst2.score` holds one per output prefix, and
removes it when done). The operating system releases the lock when the process
ends, however it ends: a lock file left by a killed run never blocks the next
one. The file names the holder (pid, host, start time) for the message a
second run gets. (`flock` is per machine: on a network filesystem shared by
several machines it may not exclude a run elsewhere.)

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


class FileLock:
    """`with FileLock(path, what, advice):` holds the lock file `path`, or raises
    `UserError`: "`what` is in use by another run (holder). `advice`". With `remove`,
    the file is removed on release (while still held, so that no other run can hold a
    file no longer there)."""

    def __init__(self, path: str, what: str, advice: str, remove: bool = False):
        self.path, self.what, self.advice, self.remove = path, what, advice, remove
        self._file = None

    def __enter__(self) -> "FileLock":
        while True:
            file = open_for_writing(self.path, "a+")  # never through a link someone left
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.seek(0)
                holder = _describe(file.read())
                file.close()
                raise UserError(f"{self.what} is in use by another run ({holder}). "
                                f"{self.advice}") from None
            if not self.remove or _same_file(file, self.path):
                break
            file.close()  # locked after its holder removed it: lock the new one
        file.seek(0)
        file.truncate()
        file.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                               "started": datetime.datetime.now().isoformat(timespec="seconds")}))
        file.flush()
        self._file = file
        return self

    def __exit__(self, *exc) -> None:
        if self.remove and _same_file(self._file, self.path):
            os.unlink(self.path)
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None


def _same_file(file, path: str) -> bool:
    try:
        return os.path.samestat(os.fstat(file.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


class RunLock(FileLock):
    """`with RunLock(model_dir):` holds the run folder, or raises `UserError` naming the holder."""

    def __init__(self, model_dir: str, create: bool = True):
        """`create=False` (evaluating, exporting): the folder must already hold a run."""
        super().__init__(RunFolder(model_dir).lock, model_dir, "Wait for it to finish or "
                         "stop it, or use another --model_dir.")
        self.model_dir = model_dir
        self.create = create

    def __enter__(self) -> "RunLock":
        if not self.create and not os.path.isdir(self.model_dir):
            raise UserError(f"{self.model_dir} holds no trained run (no such folder). Train "
                            "one with: python -m sst2.train --model_dir=...")
        os.makedirs(self.model_dir, exist_ok=True)
        return super().__enter__()


def _describe(content: str) -> str:
    try:
        holder = json.loads(content)
        return f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"
