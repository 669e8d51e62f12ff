"""A file's labels, as each kind of target spells them: classes, sets of labels, numbers.

Class labels are names or integer class ids. The training file fixes the
classes (`label_vocabulary`), refusing labels that would silently make wrong
ones (`check_labels`); every file's labels then map to ids (`label_ids`). A
set of labels is a list or a cell split at a separator; a number is a finite
decimal. `READERS[target.labels]` reads a kind's labels (`sst2.run.targets`),
and `infer_task` picks the kind the training labels imply.

Example:
    >>> from sst2.text.text_files import TextTable
    >>> table = TextTable("train.csv", [("a",)] * 3, ["pos", "neg", "pos"], [2, 3, 4])
    >>> names = label_vocabulary(table)
    >>> names, label_ids(table, names).tolist()
    (('neg', 'pos'), [1, 0, 1])
"""

import dataclasses
import re
from typing import Callable

import numpy as np
from absl import logging

from sst2.run.errors import UserError
from sst2.run.targets import INFERRED
from sst2.text.number_labels import bad_number, decimal_comma_hint, is_number_like, number, numbers
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


def _id_of(label: str, index: dict, names: tuple, table: TextTable, line: int,
           what: str, fix: str) -> int:
    """`label`'s id: a name in `index`, or an integer id below `len(names)`; else a
    `UserError` naming the line."""
    found = index.get(label)
    if found is None and _is_integer(label) and 0 <= int(label) < len(names):
        found = int(label)
    if found is None:
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        raise UserError(f"{table.path}: line {line}: label {label!r} is not one of the "
                        f"{len(names)} {what} ({shown}). {fix}")
    return found


def label_ids(table: TextTable, names: tuple) -> np.ndarray:
    """Each example's class id in `names` (a label is a name in it or an integer id);
    -1 for every example of a file without labels."""
    if table.labels is None:
        return np.full(len(table), -1, np.int64)
    index = {name: i for i, name in enumerate(names)}
    ids = np.empty(len(table), np.int64)
    for i, label in enumerate(table.labels):
        ids[i] = _id_of(label, index, names, table, table.lines[i],
                        "classes the training file has",
                        "Fix the label, or name every class with --label_names=a,b,...")
    return ids


# --- Other targets: several labels per text, or a number ---------------------------

def infer_task(table: TextTable, separator: str = ",") -> str:
    """The kind of target (`sst2.run.targets.INFERRED`) the training labels imply: sets of
    labels when an example holds a list of labels or a label column holds `separator`;
    numbers when every label is a number and some are not integers; else classes. The
    log says why.

    A decimal number never becomes a class: beside decimal labels, a label that is not a
    finite number (`nan`, `inf`, `n/a`, `1e400`) is refused with its line, and so is a
    `nan` or `inf` among integer class ids.

    >>> from sst2.text.text_files import TextTable
    >>> from sst2.run.targets import TARGETS
    >>> TARGETS[infer_task(TextTable("t.csv", [("a",)] * 2, ["3.8", "0.5"], [2, 3]))].labels
    'numbers'
    >>> TARGETS[infer_task(TextTable("t.csv", [("a",)] * 2, ["joy,love", "b"], [2, 3]))].labels
    'label_sets'
    """
    if table.labels is None:
        raise UserError(f"{table.path} has no label column; the training file must.")
    for i, label in enumerate(table.labels):
        if isinstance(label, list) or separator in label:
            what = "a list of labels" if isinstance(label, list) else f"the separator {separator!r}"
            logging.info(f"Task: {INFERRED['label_sets']} (inferred from {table.path}: line "
                         f"{table.lines[i]}'s label {label!r} holds {what}; --task sets it)."
                         + decimal_comma_hint(label))
            return INFERRED["label_sets"]
    decimals = [i for i, label in enumerate(table.labels)
                if is_number_like(label) and not _is_integer(label)]
    if decimals:
        bad = next((i for i in range(len(table)) if number(table.labels[i]) is None), None)
        if bad is not None:
            first = next((i for i in decimals if number(table.labels[i]) is not None), None)
            if first is None:
                raise bad_number(table, bad, "a label is a class name, an integer class id "
                                 "or a finite number, and this one reads as none of them")
            raise UserError(str(bad_number(table, bad)) + (
                f" Other labels are decimal numbers (line {table.lines[first]}: "
                f"{table.labels[first]!r}), so this file reads as a regression target; if "
                f"its labels are class names, pass --task={INFERRED['classes']}."))
        first = decimals[0]
        logging.info(f"Task: {INFERRED['numbers']} (inferred from {table.path}: every label is "
                     f"a number, and line {table.lines[first]}'s {table.labels[first]!r} is not an "
                     "integer; --task sets it).")
        return INFERRED["numbers"]
    logging.info(f"Task: {INFERRED['classes']} (inferred from {table.path}: one label per example; "
                 "--task sets it).")
    return INFERRED["classes"]


def label_sets(table: TextTable, separator: str = ",") -> list[list[str]]:
    """Each example's labels: its list, or its label split at `separator`. A cell of
    separators alone is refused, as an empty one is."""
    sets = []
    for label, line in zip(table.labels, table.lines):
        if isinstance(label, list):
            sets.append(label)
            continue
        parts = [part.strip() for part in label.split(separator) if part.strip()]
        if not parts:
            raise UserError(f"{table.path}: line {line}: the label cell {label!r} names no "
                            "label; every example needs at least one (as an empty cell would).")
        sets.append(parts)
    return sets


def multi_label_vocabulary(table: TextTable, separator: str = ",",
                           names: tuple | None = None) -> tuple:
    """The labels of a multi-label training file: `names` if given, else `0..max` when
    every label is an integer id, else the sorted distinct names."""
    if table.labels is None:
        raise UserError(f"{table.path} has no label column; the training file must.")
    if names:
        return tuple(names)
    distinct = sorted({label for labels in label_sets(table, separator) for label in labels})
    if len(distinct) < 2:
        raise UserError(f"{table.path}: the examples hold {len(distinct)} distinct label(s); "
                        "multi-label training needs at least two.")
    if all(_is_integer(label) for label in distinct):
        values = sorted(int(label) for label in distinct)
        if values[0] < 0 or values[-1] >= MAX_CLASSES:
            raise UserError(f"{table.path}: integer labels are label ids 0..max; "
                            f"{values[0] if values[0] < 0 else values[-1]} is not one.")
        unused = values[-1] + 1 - len(values)
        if values[-1] >= 16 and unused > len(values):
            line = next(line for label, line in zip(table.labels, table.lines)
                        if str(values[-1]) in (label if isinstance(label, list) else
                                               [p.strip() for p in label.split(separator)]))
            raise UserError(
                f"{table.path}: read as several labels per example (multi-label), its integer "
                f"labels are label ids 0..max, and the largest, {values[-1]} (line {line}), "
                f"would make {values[-1] + 1} labels of which {unused} never occur. If the "
                f"labels are numbers written with a decimal comma (3,5), write them with a "
                "point (3.5); else name the labels (--label_names_file).")
        return tuple(str(i) for i in range(values[-1] + 1))
    return tuple(distinct)


def multi_label_targets(table: TextTable, names: tuple, separator: str = ",") -> np.ndarray:
    """`[examples, labels]` int32: 1 where the example has the label (a name in `names`, or
    an integer id); every entry -1 for a file without labels."""
    if table.labels is None:
        return np.full((len(table), len(names)), -1, np.int32)
    index = {name: i for i, name in enumerate(names)}
    targets = np.zeros((len(table), len(names)), np.int32)
    for row, labels in enumerate(label_sets(table, separator)):
        for label in labels:
            targets[row, _id_of(label, index, names, table, table.lines[row], "labels",
                                "Fix it, or name every label with --label_names or "
                                "--label_names_file.")] = 1
    return targets


@dataclasses.dataclass(frozen=True)
class LabelReader:
    """How files spell one kind's labels: `vocabulary(table, separator, names)` is the
    names the training file fixes (`names`: given ones, or None); `read(table, names,
    separator)` is every example's label as an array."""

    vocabulary: Callable
    read: Callable


READERS = {
    "classes": LabelReader(lambda table, separator, names: label_vocabulary(table, names),
                           lambda table, names, separator: label_ids(table, names)),
    "label_sets": LabelReader(
        lambda table, separator, names: multi_label_vocabulary(table, separator, names),
        lambda table, names, separator: multi_label_targets(table, names,
                                                            separator).astype(np.int64)),
    "numbers": LabelReader(lambda table, separator, names: (),
                           lambda table, names, separator: numbers(table)),
}
