"""Small file helpers shared by the library: atomic writes."""

import json
import os


def save_json(path: str, obj) -> None:
    """Writes JSON atomically: a reader sees the old file or the new one, never half."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def load_json(path: str):
    with open(path) as f:
        return json.load(f)
