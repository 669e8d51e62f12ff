"""A file's labels as classes: the vocabulary the training file fixes, and each label's id.

Labels are names or integer class ids. The training file fixes the classes
(`label_vocabulary`), refusing labels that would silently make wrong ones
(`check_labels`); every file's labels then map to ids (`label_ids`).

Example:
    >>> from sst2.text.text_files import TextTable
    >>> table = TextTable("train.csv", [("a",)] * 3, ["pos", "neg", "pos"], [2, 3, 4])
    >>> names = label_vocabulary(table)
    >>> names, label_ids(table, names).tolist()
    (('neg', 'pos'), [1, 0, 1])
"""

import re

import numpy as np

from sst2.run.errors import UserError
from sst2.text.text_files import TextTable


# Integer labels are class ids 0..max: a stray large one would make that many classes.
MAX_CLASSES = 100_000


def _is_integer(label: str) -> bool:
    return re.fullmatch(r"-?[0-9]+", label) is not None  # ASCII digits only ("²" is not)


def _spelling_key(label: str):
    """What two spellings of one label share: its number (`1`, `1.0`), else its case-folded
    text (`Pos`, `pos`)."""
    try:
        return float(label)
    except ValueError:
        return label.strip().casefold()


def _first_lines(table: TextTable, labels) -> str:
    first = {}
    for label, line in zip(table.labels, table.lines):
        first.setdefault(label, line)
    return ", ".join(f"{label!r} (line {first[label]})" for label in labels)


def check_labels(table: TextTable) -> None:
    """Refuses training labels that would silently make a wrong set of classes: one class
    only, two spellings of one label, or an integer id far beyond the others."""
    distinct = sorted(set(table.labels))
    if len(distinct) < 2:
        raise UserError(f"{table.path}: every example has the label {distinct[0]!r} "
                        "(one class only): a "
                        "classifier needs examples of at least two classes.")
    groups = {}
    for label in distinct:
        groups.setdefault(_spelling_key(label), []).append(label)
    doubles = [spellings for spellings in groups.values() if len(spellings) > 1]
    if doubles:
        raise UserError(f"{table.path}: the same label is spelled more than one way: "
                        + "; ".join(_first_lines(table, d) for d in doubles)
                        + ". Spell each label one way, or each would be a class of its own.")
    if all(_is_integer(label) for label in distinct):
        values = sorted(int(label) for label in distinct)
        unused = values[-1] + 1 - len(values)
        if values[-1] >= MAX_CLASSES or (values[-1] >= 16 and unused > len(values)):
            raise UserError(
                f"{table.path}: integer labels are class ids 0..max, and the largest, "
                f"{_first_lines(table, [str(values[-1])])}, would make {values[-1] + 1:,} "
                f"classes of which {unused:,} never occur. Fix the label, or name the classes "
                "(labels that are names, or --label_names=a,b,...).")


def label_vocabulary(table: TextTable, names: tuple | None = None) -> tuple:
    """The classes, fixed by the training file: `names` if given, else `0..max` when
    every label is an integer, else the sorted distinct label names (so the same
    file always gives the same class ids)."""
    if table.labels is None:
        raise UserError(f"{table.path} has no label column; the training file must.")
    check_labels(table)
    if names:
        return tuple(names)
    if all(_is_integer(label) for label in table.labels):
        values = [int(label) for label in table.labels]
        if min(values) < 0:
            line = table.lines[values.index(min(values))]
            raise UserError(f"{table.path}: line {line}: label {min(values)} is negative; "
                            "integer labels are class ids 0, 1, ...")
        return tuple(str(i) for i in range(max(values) + 1))
    return tuple(sorted(set(table.labels)))


def label_ids(table: TextTable, names: tuple) -> np.ndarray:
    """Each example's class id in `names` (a label is a name in it or an integer id);
    -1 for every example of a file without labels."""
    if table.labels is None:
        return np.full(len(table), -1, np.int64)
    index = {name: i for i, name in enumerate(names)}
    ids = np.empty(len(table), np.int64)
    for i, label in enumerate(table.labels):
        found = index.get(label)
        if found is None and _is_integer(label) and 0 <= int(label) < len(names):
            found = int(label)
        if found is None:
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise UserError(f"{table.path}: line {table.lines[i]}: label {label!r} is not one "
                            f"of the {len(names)} classes the training file has ({shown}). "
                            "Fix the label, or name every class with --label_names=a,b,...")
        ids[i] = found
    return ids
