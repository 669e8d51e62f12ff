"""Runs an entry point that pauses at a known point, so a test can signal it there: no
race with the process, no sleeps.

    python -m tests.pause MODULE:FUNCTION N READY_FD sst2.export --model_dir=...

runs `python -m sst2.export --model_dir=...` with `FUNCTION` (a function or a method,
`Class.method`, of the module `MODULE`) wrapped: when its `N`th call has returned, the
process writes `paused` to the file descriptor `READY_FD` and waits for a signal (a
SIGKILL ends it there; a handler that raises does so there; one that only takes note
lets the process go on). `MODULE` is patched
when the entry point first imports it, so nothing is imported earlier than it would be
(an entry point sets TensorFlow's environment before importing it).
"""

import importlib.abc
import importlib.util
import os
import runpy
import signal
import sys


def _wrap(module, qualname: str, calls: int, ready_fd: int) -> None:
    *path, name = qualname.split(".")
    owner = module
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    count = [0]

    def paused(*args, **kwargs):
        result = original(*args, **kwargs)
        count[0] += 1
        if count[0] == calls:
            # Python's signal handler writes to a wakeup pipe whichever thread the signal
            # lands on; set before saying so, so a signal sent the moment the test reads
            # `paused` is not lost. The Python handler then runs here (one that raises
            # does so here).
            wake_read, wake_write = os.pipe()
            os.set_blocking(wake_write, False)
            previous = signal.set_wakeup_fd(wake_write)
            os.write(ready_fd, b"paused\n")
            try:
                os.read(wake_read, 1)
            finally:
                signal.set_wakeup_fd(previous)
        return result

    setattr(owner, name, paused)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def __init__(self, module_name: str, patch):
        self.module_name, self.patch = module_name, patch

    def find_spec(self, name, path, target=None):
        if name != self.module_name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            self.patch(module)

        spec.loader.exec_module = exec_module
        return spec


def main() -> None:
    target, calls, ready_fd, entry_point, *args = sys.argv[1:]
    module_name, qualname = target.split(":")
    sys.meta_path.insert(0, _PatchOnImport(
        module_name, lambda module: _wrap(module, qualname, int(calls), int(ready_fd))))
    sys.argv = [entry_point, *args]
    runpy.run_module(entry_point, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
