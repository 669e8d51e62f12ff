"""An export root's numbered versions, written whole or not at all; an export's facts.

Both artifacts (`sst2.serve.graph.serving`'s SavedModel, `sst2.serve.openvino.export`'s
OpenVINO IR) are versions `<export_root>/<version>/`, as TF Serving and
OpenVINO Model Server read them, each with `assets.extra/sst2.json` saying how
to read its answers. Nothing here needs TensorFlow.

Example:
    >>> root = os.path.join(tmp_dir, "versions")
    >>> path = write_version(root, lambda folder: os.makedirs(os.path.join(folder, "x")), 7)
    >>> os.path.basename(path), latest_export(root, marker="x")
    ('7', '/...versions/7')
"""

import os
import re
import time

from sst2.run.errors import UserError
from sst2.run.files import load_json, process_alive, remove_entry, save_json


def write_version(export_root: str, write, version: int | None = None) -> str:
    """Calls `write(folder)` to fill `<export_root>/<version>/`, and returns that folder.
    The default version is the Unix time, or one more than the newest version there
    (two exports in one second).

    The folder is written under a temporary name (`.<version>.<pid>.partial`) and
    renamed when complete, so a crash never leaves a half-written version for a
    server to pick up; one left by a killed export is removed by the next.
    """
    os.makedirs(export_root, exist_ok=True)  # only now: a refused export leaves nothing
    _remove_abandoned_partials(export_root)
    if version is None:
        newest = max(_versions(export_root), default=0)
        version = max(int(time.time()), newest + 1)
    path = os.path.join(export_root, str(version))
    tmp = os.path.join(export_root, f".{version}.{os.getpid()}.partial")
    remove_entry(tmp)  # a link there is removed, never written through
    try:
        write(tmp)
        remove_entry(path)
        os.replace(tmp, path)
    except BaseException:  # a full disk, an interrupt: leave nothing half-written
        remove_entry(tmp)
        raise
    return path


# Beside the SavedModel, where TF Serving ignores it: what a client needs to read the answers.
EXPORT_FACTS = os.path.join("assets.extra", "sst2.json")


def export_facts(dataset, temperature: float | None = None, **more) -> dict:
    """What a client needs to read an export's answers: task, label names, separator,
    inputs, outputs, temperature (`more`: what an artifact of another runtime adds)."""
    return {"temperature": temperature, "task": dataset.task,
            "label_names": list(dataset.label_names),
            "label_separator": dataset.label_separator,
            "inputs": ["text", "text_pair"] if dataset.is_pair else ["text"],
            "outputs": list(dataset.target.export_outputs), **more}


def write_export_facts(export_dir: str, dataset, temperature: float | None = None,
                       **more) -> None:
    """Writes `assets.extra/sst2.json` (`export_facts`)."""
    os.makedirs(os.path.join(export_dir, "assets.extra"), exist_ok=True)
    save_json(os.path.join(export_dir, EXPORT_FACTS),
              export_facts(dataset, temperature, **more))


def read_export_facts(export_dir: str) -> dict:
    """The `assets.extra/sst2.json` of an export: its task, label names, separator,
    inputs and outputs (empty for exports from before it was written)."""
    path = os.path.join(export_dir, EXPORT_FACTS)
    try:
        return load_json(path) if os.path.isfile(path) else {}
    except (OSError, UserError):
        return {}


def _versions(export_root: str) -> list[int]:
    return [int(v) for v in os.listdir(export_root) if v.isdigit()]


def _remove_abandoned_partials(export_root: str) -> None:
    """Removes temporary export folders whose process is gone (a killed export)."""
    for name in os.listdir(export_root):
        match = re.fullmatch(r"\.\d+(?:\.(\d+))?\.partial", name)
        if match and not (match.group(1) and process_alive(int(match.group(1)))):
            remove_entry(os.path.join(export_root, name))



def latest_export(export_root: str, marker: str = "saved_model.pb") -> str | None:
    """The newest complete version under `export_root` (one holding `marker`)."""
    if not os.path.isdir(export_root):
        return None
    complete = [v for v in _versions(export_root)
                if os.path.exists(os.path.join(export_root, str(v), marker))]
    return os.path.join(export_root, str(max(complete))) if complete else None


def incomplete_versions(export_root: str, marker: str = "saved_model.pb") -> list[str]:
    """Numbered versions under `export_root` newer than `latest_export` and without
    `marker`: what a model server would fail to load."""
    if not os.path.isdir(export_root):
        return []
    latest = latest_export(export_root, marker)
    newest_complete = int(os.path.basename(latest)) if latest else -1
    return [os.path.join(export_root, str(v)) for v in sorted(_versions(export_root))
            if v > newest_complete]
