"""Small file helpers shared by the library: atomic writes, and reads that explain.

Example:
    >>> path = os.path.join(tmp_dir, "a.json")
    >>> save_json(path, {"epochs": []})
    >>> load_json(path)
    {'epochs': []}
    >>> _ = open(path, "w").write('{"epochs": [')          # a damaged file
    >>> load_json(path)
    Traceback (most recent call last):
    ...
    sst2.run.errors.UserError: ...a.json is not valid JSON (...). Restore it from a copy, or ...
"""

import hashlib
import json
import os
import shutil

from sst2.run.errors import UserError


def open_for_writing(path: str, mode: str = "w", **kwargs):
    """`open(path, mode)` for writing that never writes through a symbolic link.

    A link already at `path` is removed (the link, not its target), then the file
    is created with `O_NOFOLLOW`: a run writes only inside its folders, whatever
    links someone left there. `mode` is `w`, `wb`, `a+` or `ab+` (kept, not truncated).
    """
    keep = mode.startswith("a")
    if not keep and os.path.islink(path):
        os.unlink(path)
    flags = os.O_CREAT | os.O_NOFOLLOW | (os.O_RDWR | os.O_APPEND if keep
                                          else os.O_WRONLY | os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if os.path.islink(path):
            raise UserError(f"{path} is a symbolic link; sst2 does not write through links. "
                            "Remove it.") from e
        raise
    return os.fdopen(fd, mode, **kwargs)


def write_atomically(path: str, write, mode: str = "w", tmp: str | None = None,
                     **kwargs) -> None:
    """Calls `write(file)` on `tmp` (default `<path>.tmp`; never through a link), then
    renames it to `path`: a reader sees the old file or the new one, never half."""
    tmp = tmp or f"{path}.tmp"
    try:
        with open_for_writing(tmp, mode, **kwargs) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp) and not os.path.islink(tmp):
            os.remove(tmp)
        raise


def remove_entry(path: str) -> None:
    """Removes what is at `path`, a file, a folder or a link, never following a link
    (a link's target is left alone). Nothing there is fine."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (to tell an abandoned temporary
    file from one being written)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def save_json(path: str, obj) -> None:
    """Writes JSON atomically (`write_atomically`)."""
    write_atomically(path, lambda f: json.dump(obj, f, indent=2, sort_keys=True))


def load_json(path: str, what_to_do: str = "use --restart to start the run over"):
    """Reads a JSON file; a damaged one is a `UserError` naming it and `what_to_do`."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}). Restore it from a copy, or "
                        f"{what_to_do}.") from e


def sha256_of_file(path: str) -> str:
    """The SHA-256 of a file's bytes, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
