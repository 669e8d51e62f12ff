"""What every entry point shares: quiet TensorFlow logs and errors without tracebacks."""

import os
import sys
from typing import Callable

# Before TensorFlow is imported: hide its C++ start-up chatter (CUDA probing, oneDNN notes).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run(main: Callable[[list[str]], None]) -> None:
    """`absl.app.run(main)`, printing a `UserError` as one message with exit status 2."""
    from absl import app

    from sst2.errors import UserError

    def guarded(argv):
        try:
            main(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    from absl import logging

    logging.set_verbosity(logging.WARNING)  # tfds and tf.train log every file they touch
    app.run(guarded)


def define_restore_flags(purpose: str) -> None:
    """`--model_dir` (required) and `--checkpoint`, for entry points that load a trained run."""
    from absl import flags

    flags.DEFINE_string("model_dir", None, f"The training run to {purpose}.")
    flags.DEFINE_string("checkpoint", "best", "best, latest, or a checkpoint path.")
    flags.mark_flag_as_required("model_dir")
