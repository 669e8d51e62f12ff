"""What every entry point shares: flags generated from `sst2.run.config`, quiet logs, and
errors without tracebacks.

An entry point is `main(config)` plus `cli.run(main, ConfigClass)`: the flags
are defined from the config class's fields, parsed into an instance (which
validates it), and `main` gets that instance. What a user can act on ends the
process with one `error:` line and exit status 2, never a traceback: a
`UserError`, an operating-system error (full or read-only disk, a path that is
a file, too long or not permitted) and an interrupt (Ctrl-C).
"""

import dataclasses
import os
import signal
import sys
from typing import Callable

# Before TensorFlow is imported: hide its C++ start-up chatter (CUDA probing on machines
# without a GPU, oneDNN notes). Errors that matter reach Python as exceptions.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from sst2.run.options import options  # noqa: E402


def _groups(config_class) -> dict:
    """`{group: class}` for a grouped config (`TrainConfig`), `{None: class}` for a flat one."""
    nested = {f.name: f.type for f in dataclasses.fields(config_class)
              if dataclasses.is_dataclass(f.type)}
    return nested or {None: config_class}


# The flags `define_flags` put in absl's global FLAGS: an entry point run again in the
# same process (the tests run them as functions) defines its own afresh.
_DEFINED: set = set()


def define_flags(config_class, flag_values=None) -> None:
    """Defines one absl flag per option of `config_class` (flags are named as the fields)."""
    from absl import flags

    flag_values = flags.FLAGS if flag_values is None else flag_values
    lists = getattr(config_class, "LISTS", ())
    for group_class in _groups(config_class).values():
        for field, spec, kind in options(group_class):
            name, default = field.name, field.default
            if flag_values is flags.FLAGS:
                _DEFINED.add(name)
            text = spec.help + (f" ({spec.rule()}.)" if spec.rule() else "")
            if name in lists:  # several values, comma-separated: a search's space
                flags.DEFINE_string(name, str(default), text + " Comma-separated values to "
                                    "search.", flag_values=flag_values)
            elif spec.choices is not None:
                flags.DEFINE_enum(name, default, list(spec.choices), text, flag_values=flag_values)
            elif kind is bool:
                flags.DEFINE_boolean(name, default, text, flag_values=flag_values)
            elif kind is int:
                flags.DEFINE_integer(name, default, text, flag_values=flag_values)
            elif kind is float:
                flags.DEFINE_float(name, default, text, flag_values=flag_values)
            else:
                flags.DEFINE_string(name, default, text, flag_values=flag_values)


def config_from_flags(config_class, flag_values=None):
    """An instance of `config_class` from parsed flags; validation raises `UserError`."""
    from absl import flags

    flag_values = flags.FLAGS if flag_values is None else flag_values
    groups = _groups(config_class)
    lists = getattr(config_class, "LISTS", ())
    built, space = {}, {}
    for group, group_class in groups.items():
        values = {field.name: flag_values[field.name].value
                  for field, _, _ in options(group_class)}
        kinds = {field.name: kind for field, _, kind in options(group_class)}
        for name in lists:
            # A list flag given on the command line is searched (one value: that value
            # only); its first value trains the base configuration.
            if name in values and flag_values[name].present:
                from sst2.run.search_config import parse_space

                space.update(parse_space({name: values[name]}))
                values[name] = space[name][0]
            elif name in values:
                values[name] = kinds[name](values[name])
        built[group] = group_class(**values)
    if lists:
        built["space"] = space
    return built[None] if None in built else config_class(**built)


def run(main: Callable, config_class, before_tensorflow: Callable | None = None,
        needs_tensorflow: Callable | None = None,
        after_file_error: Callable | None = None) -> None:
    """Defines `config_class`'s flags, parses them, and calls `main(config, argv)`.

    Prints a `UserError`, an operating-system error and TensorFlow's own file errors as
    one `error:` line with exit status 2.

    Args:
        main: the entry point, `main(config, argv)`.
        config_class: the options (`sst2.run.config`), one flag each.
        before_tensorflow: `before_tensorflow(config)` runs before TensorFlow is
            imported (what must be set in the environment before it starts).
        needs_tensorflow: `needs_tensorflow(config)` says whether to import it at all
            (an OpenVINO artifact answers without it).
        after_file_error: `after_file_error(config)`, a sentence the error line of a
            file error ends with (what is still safe), or "".
    """
    from absl import app, flags, logging

    from sst2.run import log_lines
    from sst2.run.errors import UserError

    for name in _DEFINED & set(flags.FLAGS):  # an earlier entry point's, in this process
        delattr(flags.FLAGS, name)
    flags.FLAGS.unparse_flags()
    define_flags(config_class)

    def guarded(argv):
        # SIGTERM (a scheduler, `kill`) as Ctrl-C: temporary files are removed and the
        # process says so, not exit status 143 and a half-written export.
        signal.signal(signal.SIGTERM, _interrupt)
        log_lines.show()  # sst2's lines on stdout, as users read them
        config = None

        def then() -> str:
            return after_file_error(config) if after_file_error and config else ""

        try:
            config = config_from_flags(config_class)
            if before_tensorflow is not None:
                before_tensorflow(config)
            if needs_tensorflow is None or needs_tensorflow(config):
                import_tensorflow_quietly()
            main(config, argv)
        except UserError as e:
            fail(str(e))
        except KeyboardInterrupt:
            fail("Interrupted. Run the same command again to continue where it stopped.")
        except OSError as e:
            fail(describe_os_error(e) + then())
        except Exception as e:
            message = describe_tensorflow_file_error(e)
            if message is None:
                raise  # a bug: the traceback is what a report needs
            fail(message + then())

    logging.set_verbosity(logging.WARNING)  # tfds and tf.train log every file they touch
    app.run(guarded, flags_parser=_parse)


def _parse(argv):
    """The flags in `argv`, or one `error:` line (absl's own parser says "FATAL Flags
    parsing error" and exits 1)."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(f"{e} (--helpfull lists every flag).")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and lists its devices with the process's stderr silenced.

    TensorFlow's C++ start-up writes lines no user can act on (CUDA probing on
    machines without a GPU) straight to file descriptor 2, whatever
    TF_CPP_MIN_LOG_LEVEL says. Python errors still raise as usual.
    """
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe; leaves the runtime unstarted
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def describe_tensorflow_file_error(error: Exception) -> str | None:
    """One line for TensorFlow's own file errors (checkpoints, summaries, SavedModels)."""
    if "tensorflow" not in sys.modules:
        return None
    import tensorflow as tf

    advice = {tf.errors.ResourceExhaustedError: "the disk may be full: free some space",
              tf.errors.OutOfRangeError: "the disk may be full, or a file-size limit "
                                         "reached: free some space",
              tf.errors.PermissionDeniedError: "point the run at a writable folder",
              tf.errors.NotFoundError: "check the path",
              tf.errors.FailedPreconditionError: "check the path and the disk"}
    for kind, what in advice.items():
        if isinstance(error, kind):
            first_line = (str(error.message).strip().splitlines() or [""])[0][:300]
            return f"{first_line} ({what})."
    return None


def describe_os_error(error: OSError) -> str:
    """One line for an operating-system error: what failed, on which path, what to do."""
    import errno

    path = error.filename or ""
    advice = {
        errno.ENOSPC: "free some space there, or point the run elsewhere",
        errno.EFBIG: "a file-size limit (ulimit -f) was reached: raise it or free space",
        errno.EROFS: "the filesystem is read-only: point the run at a writable folder",
        errno.EACCES: "you may not write there: point the run at a folder of yours",
        errno.EPERM: "you may not write there: point the run at a folder of yours",
        errno.ENAMETOOLONG: "use a shorter path",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EEXIST: "a file is in the way of a folder",
        errno.ENOENT: "check the path",
    }.get(error.errno, "check the path and the disk")
    what = error.strerror or str(error)
    return f"{what}: {path} ({advice})." if path else f"{what} ({advice})."
