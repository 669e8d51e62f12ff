"""What every entry point shares: flags generated from `sst2.config`, quiet logs, and
errors without tracebacks.

An entry point is `main(config)` plus `cli.run(main, ConfigClass)`: the flags
are defined from the config class's fields, parsed into an instance (which
validates it), and `main` gets that instance. A `UserError` anywhere ends the
process with one `error:` line and exit status 2.
"""

import dataclasses
import os
import sys
from typing import Callable

# Before TensorFlow is imported: hide its C++ start-up chatter (CUDA probing, oneDNN notes).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sst2 import config as config_lib  # noqa: E402


def _groups(config_class) -> dict:
    """`{group: class}` for a grouped config (`TrainConfig`), `{None: class}` for a flat one."""
    nested = {f.name: f.type for f in dataclasses.fields(config_class)
              if dataclasses.is_dataclass(f.type)}
    return nested or {None: config_class}


def define_flags(config_class, flag_values=None) -> None:
    """Defines one absl flag per option of `config_class` (flags are named as the fields)."""
    from absl import flags

    flag_values = flags.FLAGS if flag_values is None else flag_values
    for group_class in _groups(config_class).values():
        for field, spec, kind in config_lib.options(group_class):
            name, default = field.name, field.default
            text = spec.help + (f" ({spec.rule()}.)" if spec.rule() else "")
            if spec.choices is not None:
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
    built = {}
    for group, group_class in groups.items():
        values = {field.name: flag_values[field.name].value
                  for field, _, _ in config_lib.options(group_class)}
        built[group] = group_class(**values)
    return built[None] if None in built else config_class(**built)


def run(main: Callable, config_class) -> None:
    """Defines `config_class`'s flags, parses them, and calls `main(config, argv)`.

    Prints a `UserError` as one message with exit status 2.
    """
    from absl import app, logging

    from sst2.errors import UserError

    define_flags(config_class)

    def guarded(argv):
        try:
            main(config_from_flags(config_class), argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    logging.set_verbosity(logging.WARNING)  # tfds and tf.train log every file they touch
    app.run(guarded)
