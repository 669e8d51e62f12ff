"""sst2's log: lines through `absl.logging`, shown by the entry points as users read them.

Modules log a line of progress with `logging.info(...)` and a warning with
`logging.warning(...)` (`from absl import logging`); nothing is passed down
through calls. `show()` (every entry point, through `sst2.cli`) prints sst2's
own lines on stdout as they are, a warning as `warning: ...`, and leaves other
libraries' records (tfds and tf.train log every file they touch) to absl's
handler from WARNING on, their deprecation notices apart. Without `show()`, as
a library, sst2 logs only its warnings, in absl's format. `quiet()` holds
sst2's lines back for a block: a worker other than the chief (the chief speaks
for the cluster), or a helper that reads the data again.

Example:
    >>> import io
    >>> from sst2.text.labels import infer_task
    >>> from sst2.text.text_files import TextTable
    >>> stream = io.StringIO()
    >>> show(stream)                       # what every entry point does first
    >>> _ = infer_task(TextTable("t.csv", [("a",)] * 2, ["3.8", "0.5"], [2, 3]))
    >>> with quiet():                      # e.g. a worker other than the chief
    ...     _ = infer_task(TextTable("t.csv", [("a",)] * 2, ["1", "2"], [2, 3]))
    >>> print(stream.getvalue(), end="")  # doctest: +ELLIPSIS
    Task: ... (inferred from t.csv: every label is a number, and line 2's '3.8' is not ...
    >>> hide()
"""

import contextlib
import logging as python_logging
import os
import sys

from absl import logging

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _from_sst2(record) -> bool:
    return record.pathname.startswith(_PACKAGE)


class _Lines(python_logging.Handler):
    """sst2's records as plain lines on a stream (stdout unless given)."""

    def __init__(self, stream=None):
        super().__init__()
        self.stream = stream
        self.quiet = 0
        self.addFilter(_from_sst2)

    def emit(self, record) -> None:
        if record.levelno < python_logging.WARNING and self.quiet:
            return
        prefix = "warning: " if record.levelno == python_logging.WARNING else (
            "error: " if record.levelno >= python_logging.ERROR else "")
        stream = self.stream or sys.stdout
        stream.write(prefix + record.getMessage() + "\n")
        stream.flush()


_lines: _Lines | None = None


def _others_from_warning_on(record) -> bool:
    """Another library's warnings and errors, but not its deprecation notices: those
    speak to the code that calls it (tfds's `FeatureConnector.dtype is deprecated` on
    every read of a dataset), which a user cannot act on."""
    return (not _from_sst2(record) and record.levelno >= python_logging.WARNING
            and not (record.levelno == python_logging.WARNING
                     and " is deprecated" in record.getMessage()))


def show(stream=None) -> None:
    """Prints sst2's log lines on `stream` (default: stdout) from now on, as above."""
    _install(_Lines(stream))


def _install(lines: "_Lines") -> None:
    global _lines
    hide()
    _lines = lines
    absl_logger, absl_handler = logging.get_absl_logger(), logging.get_absl_handler()
    absl_handler.addFilter(_others_from_warning_on)
    absl_logger.addHandler(lines)
    absl_logger.addHandler(absl_handler)
    # Not through the root logger: a handler another library put there (OpenVINO's
    # tools call basicConfig) would print each line a second time.
    absl_logger.propagate = False
    logging.set_verbosity(logging.INFO)


@contextlib.contextmanager
def kept():
    """Whatever shows sst2's lines before the block shows them after it (an entry point
    run as a function inside a program, or a test, that shows them its own way)."""
    saved = _lines
    try:
        yield
    finally:
        if saved is None:
            hide()
        else:
            _install(saved)


def hide() -> None:
    """Undoes `show()`: back to absl's own handling, from WARNING on."""
    global _lines
    absl_logger, absl_handler = logging.get_absl_logger(), logging.get_absl_handler()
    if _lines is not None:
        absl_logger.removeHandler(_lines)
        _lines = None
    absl_logger.removeHandler(absl_handler)
    absl_handler.removeFilter(_others_from_warning_on)
    absl_logger.propagate = True
    logging.set_verbosity(logging.WARNING)


@contextlib.contextmanager
def quiet():
    """sst2's INFO lines are held back inside the block (warnings still show)."""
    if _lines is None:
        yield
        return
    _lines.quiet += 1
    try:
        yield
    finally:
        _lines.quiet -= 1
