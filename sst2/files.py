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
    sst2.errors.UserError: ...a.json is not valid JSON (...). Restore it from a copy, or ...
"""

import hashlib
import json
import os

from sst2.errors import UserError


def save_json(path: str, obj) -> None:
    """Writes JSON atomically: a reader sees the old file or the new one, never half."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


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
