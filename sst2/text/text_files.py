"""Labelled text from local CSV, TSV or JSONL files, checked line by line.

`read_table` reads one file into a `TextTable`: its text column (or two, for
sentence pairs), its raw labels and the line each example starts on (which
`sst2.text.labels` turns into classes). Every problem a user can
have with a file ends in a `UserError` that names the file, the line and
what to do: a missing column, a row with too few fields, a quoted field
that never closes, bytes that are not valid in the stated encoding (all such
lines are listed; no row is ever dropped), an empty file, a label the
training file never had.

Formats: CSV (RFC 4180: quoted fields may hold commas, quotes and line
breaks), TSV (GLUE's: tab-separated, no quoting) and JSONL (one JSON object
per line). The first line of a CSV or TSV file names its columns.

Example:
    >>> import os
    >>> path = os.path.join(tmp_dir, "reviews.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write('text,label\\n"a warm, funny film",good\\nflat and dull,bad\\n')
    >>> table = read_table(path, ("text",), "label")
    >>> table.texts, table.labels, table.lines
    ([('a warm, funny film',), ('flat and dull',)], ['good', 'bad'], [2, 3])
"""

import csv
import dataclasses
import io
import json

from sst2.run.errors import UserError
from sst2.text.file_text import decode, decode_bytes, file_format


@dataclasses.dataclass
class TextTable:
    """One file's examples: `texts[i]` (one string per text column), `labels[i]` (the
    raw label as text, or a multi-label example's list of label names; None when
    the file has no label column) and `lines[i]`, the 1-based line example i
    starts on."""

    path: str
    texts: list
    labels: list | None
    lines: list

    def __len__(self) -> int:
        return len(self.texts)


def rows(path: str, text: str, fmt: str):
    """Yields `(line, fields)` per row, the header row first (for JSONL, `fields` is the
    object); a row that does not parse is yielded as `(line, UserError)` and reading goes
    on with the next (a quoted field that never closes takes the rest of the file)."""
    if fmt == "jsonl":
        # Lines end at "\n" only: JSON strings may hold U+2028 or U+0085 raw, which
        # str.splitlines would split at.
        for number, line in enumerate(text.split("\n"), start=1):
            line = line.removesuffix("\r")
            if line.strip():
                yield number, _json_object(path, number, line)
        return
    # A long review may hold more than the csv module's 128 KiB per field by default.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    reader = csv.reader(io.StringIO(text, newline=""), strict=True,
                        **({"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv"
                           else {}))
    line = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            hint = (" (a quoted field opened here never closes: add its closing quote)"
                    if "end of data" in str(e) else
                    " (a field holding a quote must be quoted as a whole, the quote doubled)")
            fields = UserError(f"{path}: line {line}: the CSV does not parse: {e}{hint}.")
        if fields:  # blank lines hold no example
            yield line, fields
        line = reader.line_num + 1


def _json_object(path: str, number: int, line: str):
    """One JSONL line's object, or the UserError saying why it is none."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        return UserError(f"{path}: line {number} is not valid JSON ({e.msg}, column "
                         f"{e.colno}); JSONL holds one JSON object per line.")
    if not isinstance(row, dict):
        return UserError(f"{path}: line {number} is a JSON {type(row).__name__}, not an "
                         "object of column names and values.")
    return row


def row_texts(path: str, number: int, row, header: list | None, columns: tuple, fmt: str,
              any_json: tuple = ()) -> tuple:
    """The values of `columns` in one parsed row (`rows`), as text; a UserError for a row
    that cannot give them. `header`: a CSV or TSV file's column names (None for JSONL,
    whose columns are each object's); `any_json`: JSONL columns that may hold any JSON
    value, given as its JSON text (an id).

    >>> row_texts("x.jsonl", 3, {"text": "fine", "id": 7}, None, ("text", "id"), "jsonl",
    ...           any_json=("id",))
    ('fine', '7')
    """
    if isinstance(row, UserError):
        raise row
    if header is None:
        if any(c not in row for c in columns):  # the message names the flag to fix
            check_columns(path, list(row), columns, line=number,
                          id_column=(any_json or [None])[0])
        values = [row[c] for c in columns]
        bad = [c for c, v in zip(columns, values) if not isinstance(v, str) and c not in any_json]
        if bad:
            raise UserError(f"{path}: line {number}: {bad[0]!r} must be a string, not "
                            f"{json.dumps(row[bad[0]])}.")
        return tuple(v if isinstance(v, str) else json.dumps(v) for v in values)
    if len(row) != len(header):
        raise UserError(
            f"{path}: line {number} has {len(row)} fields, the header {len(header)}"
            + (" (is a field holding the delimiter unquoted?)" if fmt == "csv" else
               " (a tab inside a sentence, or a missing field?)") + ".")
    return tuple(row[header.index(c)] for c in columns)


def read_table(path: str, text_columns: tuple, label_column: str | tuple | None,
               encoding: str = "utf-8", fmt: str = "auto",
               require_labels: bool = True) -> TextTable:
    """Reads `path`'s text column(s) and label column(s) (see the module's docstring).

    A label is a name or an integer, as text; a JSON list in JSONL, or several
    label columns of 0/1 (`label_column=("a", "b")`), give a list of label names
    instead (a multi-label example). With `require_labels=False` (a test file),
    missing label columns give `labels=None`; empty label fields are an error
    either way.
    """
    fmt = file_format(path, fmt)
    return parse_table(path, decode(path, encoding), text_columns, label_column, fmt,
                       require_labels)


def read_columns(path: str, data: bytes, columns: tuple, encoding: str = "utf-8",
                 fmt: str = "auto") -> list:
    """`(line, values)` per row of a file given as bytes: the values of `columns`, text;
    in JSONL, a column after the first may hold any JSON value (an id), given as JSON.

    >>> read_columns("x.jsonl", b'{"text": "fine", "id": 7}\\n', ("text", "id"))
    [(1, ('fine', '7'))]
    """
    fmt = file_format(path, fmt)
    table = parse_table(path, decode_bytes(path, data, encoding), columns, None, fmt,
                        require_labels=False, any_json=columns[1:])
    return list(zip(table.lines, table.texts))


def parse_table(path: str, text: str, text_columns: tuple, label_column, fmt: str,
                require_labels: bool = True, any_json: tuple = ()) -> TextTable:
    """`read_table` of a file's decoded `text`; `any_json`: JSONL columns that may hold
    any JSON value, kept as their JSON text. The first bad row raises its UserError."""
    parsed = rows(path, text, fmt)
    label_columns = ((label_column,) if isinstance(label_column, str)
                     else tuple(label_column or ()))
    texts, labels, lines = [], [], []
    header = None if fmt == "jsonl" else read_header(path, parsed, text_columns, fmt,
                                                     label_columns, require_labels)
    has_label = bool(label_columns) and (header is None or
                                         all(c in header for c in label_columns))
    for number, row in parsed:
        if isinstance(row, UserError):
            raise row
        if header is None:
            check_columns(path, list(row), text_columns, label_columns, require_labels,
                          line=number)
            has_label = has_label and all(c in row for c in label_columns)
            raw = [row.get(c) for c in label_columns]
        else:
            raw = [row[header.index(c)] for c in label_columns] if has_label else []
        texts.append(row_texts(path, number, row, header, text_columns, fmt, any_json))
        labels.append(_label(path, number, raw, label_columns) if has_label else None)
        lines.append(number)
    if not texts:
        raise UserError(f"{path} holds no examples (only "
                        f"{'a header' if header is not None else 'blank lines'}).")
    return TextTable(path, texts, labels if has_label else None, lines)


def read_header(path: str, parsed, text_columns: tuple, fmt: str, label_columns: tuple = (),
                require_labels: bool = False, id_column: str | None = None) -> list:
    """A CSV or TSV file's column names, its first row of `parsed` (`rows`), checked to
    hold the columns named (`check_columns`)."""
    first = next(parsed, None)
    if first is None:
        raise UserError(f"{path} is empty: it needs a first line naming its columns, e.g. "
                        f"{_example_header(text_columns, label_columns, fmt)}, then one "
                        "example per line.")
    if isinstance(first[1], UserError):
        raise first[1]
    check_columns(path, first[1], text_columns, label_columns, require_labels, line=1,
                  id_column=id_column)
    return first[1]


_INDICATOR = {"0": False, "1": True, "false": False, "true": True}


def _label(path: str, number: int, raw: list, label_columns: tuple):
    """One example's label: a name (text), or the list of its label names."""
    where = f"{path}: line {number}"
    if len(label_columns) > 1:  # one 0/1 column per label
        names = []
        for column, value in zip(label_columns, raw):
            flag = _INDICATOR.get(str(value).strip().lower())
            if flag is None:
                raise UserError(f"{where}: column {column!r} holds {value!r}; with several "
                                "label columns each holds 0 or 1 (true or false).")
            if flag:
                names.append(column)
        return names
    (label,) = raw
    if isinstance(label, list):  # JSONL: the example's labels
        if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in label):
            raise UserError(f"{where}: a list of labels holds names or integers, not "
                            f"{json.dumps(label)}.")
        return [str(v).strip() for v in label]
    if isinstance(label, bool) or not isinstance(label, (str, int, float, type(None))):
        raise UserError(f"{where}: the label must be a name, a number or a list of labels, "
                        f"not {json.dumps(label)}.")
    label = str(label).strip() if label is not None else ""
    if not label:
        raise UserError(f"{where} has no label in column {label_columns[0]!r}; every example "
                        "needs one.")
    return label


def _example_header(text_columns, label_columns, fmt) -> str:
    return ("," if fmt == "csv" else "\t").join(list(text_columns)
                                               + list(label_columns or ("label",)))


def check_columns(path, header, text_columns, label_columns=(), require_labels=False,
                  line=1, id_column=None) -> None:
    """Raises UserError if `header` (a row's column names) lacks a column named, or names
    one twice; the message names the flag that chose it."""
    needed = list(text_columns) + (list(label_columns) if require_labels else [])
    doubled = [c for c in dict.fromkeys(needed) if list(header).count(c) > 1]
    if doubled:
        raise UserError(f"{path}: the header (line 1) names the column {doubled[0]!r} "
                        f"{list(header).count(doubled[0])} times; rename all but one, so that "
                        "it is clear which one to read.")
    missing = [c for c in needed if c not in header]
    if missing:
        flag = ("--id_column" if missing[0] == id_column else
                "--label_column" if missing[0] in label_columns else "--text_column")
        where = "the header (line 1)" if line == 1 else f"line {line}"
        raise UserError(f"{path}: {where} has no column {missing[0]!r}; its columns are "
                        f"{', '.join(map(repr, header)) or 'none'}. Name the right one with "
                        f"{flag}=...")
