"""XLA's persistent compile cache: compiled train and eval steps kept for later runs.

A head's compiled step depends only on the head and the batch's shape, so a
run that repeats a configuration (another seed, a rerun) would compile the
same programs again (seconds per batch shape on 2 CPU cores). With the
cache, XLA writes each program to `$SST2_CACHE_DIR/xla` (default
`~/.cache/sst2/xla`) and a later process that traces the same functions in
the same order loads it (a run that encodes traces the encoder first, so it
does not load what a run on a warm feature cache saved, and the reverse).
XLA loads a program only when its computation matches the saved one
exactly, and writes entries under a temporary name before renaming them, so
a loaded program is the one that would have been compiled: the results are
the same, bit for bit.

XLA reads its flags once, when TensorFlow first initializes its devices:
`enable` must run before that (the entry points call it right after parsing
their flags; in a Python program, before TensorFlow's first use).

Example:
    >>> enable("/proc/not-writable")  # nowhere to keep programs: no cache
    False
"""

import os

from sst2.model.standin import cache_root

FLAG = "--tf_xla_persistent_cache_directory"


def default_folder() -> str:
    return os.path.join(cache_root(), "xla")


def enable(folder: str | None = None) -> bool:
    """Points XLA's persistent cache at `folder` (default `default_folder()`) through
    `TF_XLA_FLAGS`. Returns False, changing nothing, when `TF_XLA_FLAGS` already
    names a cache or `folder` is not writable."""
    folder = folder or default_folder()
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if FLAG in flags:
        return False
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".probe-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError:
        return False
    os.environ["TF_XLA_FLAGS"] = f"{flags} {FLAG}={folder}".strip()
    return True
