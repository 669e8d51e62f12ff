"""Labels that are numbers (a regression target): finite, within float32's reach once
squared, and a decimal comma named where one is the likely mistake.

Example:
    >>> from sst2.text.text_files import TextTable
    >>> numbers(TextTable("scores.csv", [("a",)] * 2, ["3.5", "-1"], [2, 3])).tolist()
    [3.5, -1.0]
    >>> number("nan"), number("1e400"), decimal_comma_hint("3,5") != ""
    (None, None, True)
"""

import re

import numpy as np

from sst2.run.errors import UserError
from sst2.text.text_files import TextTable

# The largest regression target: its squared error must stay finite in float32 (3.4e38),
# or the loss, the MSE and their summaries overflow.
MAX_SCORE = 1e18


def number(label) -> float | None:
    """`label` as a finite number within `MAX_SCORE`, else None."""
    if isinstance(label, list):
        return None
    try:
        value = float(label)
    except ValueError:
        return None
    return value if np.isfinite(value) and abs(value) <= MAX_SCORE else None


def is_number_like(label) -> bool:
    """Whether `label` parses as a float at all (`nan`, `inf` and `1e400` included)."""
    try:
        float(label)
        return not isinstance(label, list)
    except (TypeError, ValueError):
        return False


def decimal_comma_hint(label) -> str:
    """A sentence for a label like `3,5`: a number written with a decimal comma."""
    if isinstance(label, str) and re.fullmatch(r"\s*-?[0-9]+,[0-9]+\s*", label):
        return (f" If {label!r} is a number written with a decimal comma, write it with a "
                "point (3.5).")
    return ""


def bad_number(table: TextTable, i: int,
               rule: str = "a regression target is one finite number per example") -> UserError:
    """The error for example `i`'s label, which is not a number a run can learn."""
    label = table.labels[i]
    if is_number_like(label) and np.isfinite(float(label)):
        why = (f"is beyond {MAX_SCORE:g} (its squared error would overflow float32); "
               "rescale the column")
    else:
        why = "is not a finite number"
    return UserError(f"{table.path}: line {table.lines[i]}: the label {label!r} {why}; "
                     f"{rule}." + decimal_comma_hint(label))


def numbers(table: TextTable) -> np.ndarray:
    """Each example's number, float32; NaN for every example of a file without labels.
    A label that is not a finite number within `MAX_SCORE` is refused with its line."""
    if table.labels is None:
        return np.full(len(table), np.nan, np.float32)
    values = np.empty(len(table), np.float32)
    for i, label in enumerate(table.labels):
        value = number(label)
        if value is None:
            raise bad_number(table, i)
        values[i] = value
    return values
