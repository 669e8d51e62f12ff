"""The records of a file to score: every line or row one record, a bad one its own error.

`read_records(path, data, reading)` turns one file's bytes into records
`{"id", "texts"}`, or `{"id", "error"}` for a record that cannot be read: a
CSV row with too many fields, a JSONL line that is not JSON or holds a number
for its text, bytes not valid in the encoding. The other records of that file
are read as usual; only a file that holds nothing to read (empty, or no
column named) is one error record under the file's name.

The whole file is decoded first, then split, so a line break is found in the
text, not in its bytes (UTF-16 writes `\\n` as two bytes, one of them 0x0A).
Formats, by extension or `RecordReading.file_format`: CSV, TSV and JSONL read
by column (`text_column`, a second one for pairs, an optional `id_column`);
any other file is plain text, a record per line (a pair: its two texts
separated by a tab), invalid bytes replaced by U+FFFD as the export itself
replaces them. A record's id is its `id_column` value, or `<file>:<line>`
when there is none or it is empty.

Example:
    >>> reading = RecordReading(text_column="review", id_column="rid")
    >>> data = 'rid,review\\nr1,"great, fun"\\nr2,dull,extra\\n,moving\\n'.encode()
    >>> for record in read_records("in/a.csv", data, reading):
    ...     print(record["id"], record.get("texts") or record["error"][:41])
    r1 ['great, fun']
    in/a.csv:3 in/a.csv: line 3 has 3 fields, the header
    in/a.csv:4 ['moving']
    >>> [r["texts"] for r in read_records("b.txt", "fine\\nawful\\n".encode("utf-16"),
    ...                                   RecordReading(encoding="utf-16"))]
    [['fine'], ['awful']]
"""

import codecs
import dataclasses
import os
import re
from typing import Iterator

from sst2.run.errors import UserError
from sst2.text import file_text, text_files

# What a line without a tab gets from a model of pairs (`sst2.predict`, `sst2.score`).
NO_TAB = ("no tab: this model {verb} sentence pairs, each given as its two texts separated "
          "by a tab")

# Bytes the decoder could not read, kept as lone surrogates U+DC80..U+DCFF
# ("surrogateescape"), which no valid text holds.
_ESCAPED = re.compile("[\udc80-\udcff]")


@dataclasses.dataclass(frozen=True)
class RecordReading:
    """How input files are read into records (see the module)."""

    text_column: str = "text"  # "a,b" for pairs
    id_column: str | None = None
    file_format: str = "auto"  # csv, tsv, jsonl, text
    encoding: str = "utf-8"
    num_shards: int = 0  # 0: the runner's choice
    batch_size: int = 256

    @property
    def columns(self) -> tuple:
        return tuple(c.strip() for c in self.text_column.split(","))

    @property
    def named_columns(self) -> tuple:
        """The text columns, then the id column if one is named."""
        return self.columns + ((self.id_column,) if self.id_column else ())

    def check_encoding(self) -> None:
        """Raises UserError for an encoding Python does not know."""
        file_text.codec(self.encoding)


def record_format(path: str, reading: RecordReading) -> str:
    """`csv`, `tsv`, `jsonl`, or `text` (a record per line) for a file."""
    if reading.file_format != "auto":
        return reading.file_format
    return file_text.FORMATS.get(os.path.splitext(path)[1].lower(), "text")


def decode(data: bytes, encoding: str) -> str:
    """The whole of `data` as text; bytes invalid in `encoding` kept as lone surrogates
    (`_ESCAPED`) for the record that holds them to say so. A UTF-8 or UTF-16 byte-order
    mark is not text.

    >>> decode(b"\\xef\\xbb\\xbfok \\xff", "utf-8")
    'ok \\udcff'
    """
    codec = file_text.codec(encoding)
    try:
        return data.decode(codec, "surrogateescape")
    except UnicodeDecodeError:  # a codec that escapes no bytes below 0x80 (UTF-16's odd end)
        return data.decode(codec, "replace")


def _invalid_bytes(path: str, number: int, texts, encoding: str) -> str | None:
    """The error of a record holding bytes invalid in `encoding`, or None."""
    for text in texts:
        found = _ESCAPED.search(text)
        if found:
            return (f"{path}: line {number}: byte 0x{ord(found.group()) - 0xDC00:02x} is not "
                    f"valid {encoding}; pass the encoding the file is written in, e.g. "
                    "--encoding=latin-1 or cp1252.")
    return None


def read_records(path: str, data: bytes, reading: RecordReading,
                 pair_verb: str | None = None) -> Iterator[dict]:
    """One file's records (see the module); `pair_verb`: a model of pairs, what it does
    to them (each plain-text line is then two texts separated by a tab)."""
    if not data.strip():
        yield {"id": path, "error": "the file is empty"}
        return
    text = decode(data, reading.encoding)
    fmt = record_format(path, reading)
    if fmt == "text":
        yield from _lines(path, text, pair_verb)
        return
    parsed = text_files.rows(path, text, fmt)
    try:
        header = None if fmt == "jsonl" else text_files.read_header(
            path, parsed, reading.named_columns, fmt, id_column=reading.id_column)
    except UserError as e:
        yield {"id": path, "error": str(e)}
        return
    columns = reading.named_columns
    width = len(reading.columns)
    for number, row in parsed:
        fallback = f"{path}:{number}"
        try:
            values = text_files.row_texts(path, number, row, header, columns, fmt,
                                          any_json=columns[width:])
        except UserError as e:
            yield {"id": _row_id(row, header, reading.id_column) or fallback, "error": str(e)}
            continue
        record_id = (values[width] if reading.id_column else "") or fallback
        error = _invalid_bytes(path, number, values, reading.encoding)
        yield ({"id": record_id, "error": error} if error else
               {"id": record_id, "texts": list(values[:width])})


def _lines(path: str, text: str, pair_verb: str | None) -> Iterator[dict]:
    """A plain-text file's records, a line each (ended by "\\n", a "\\r" before it dropped)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the end of the last line
    for number, line in enumerate(lines, start=1):
        line = _ESCAPED.sub("\ufffd", line.removesuffix("\r"))
        parts = line.split("\t", 1) if pair_verb else [line]
        if len(parts) != (2 if pair_verb else 1):
            yield {"id": f"{path}:{number}", "error": NO_TAB.format(verb=pair_verb)}
        else:
            yield {"id": f"{path}:{number}", "texts": parts}


def _row_id(row, header, id_column) -> str:
    """A bad row's id where it can still be read, else ""."""
    if not id_column or isinstance(row, UserError):
        return ""
    if header is None:
        value = row.get(id_column)
        return value if isinstance(value, str) else "" if value is None else str(value)
    if id_column in header and len(row) == len(header):
        return row[header.index(id_column)]
    return ""


def check_head(path: str, head: bytes, reading: RecordReading) -> None:
    """Raises UserError if the start of a CSV, TSV or JSONL file (`head`, its first bytes)
    shows it lacks a column named: checked for every file before any is scored, so a
    wrong `--text_column` is one error line, not a file of error records."""
    fmt = record_format(path, reading)
    if fmt == "text":
        return
    text = codecs.getincrementaldecoder(file_text.codec(reading.encoding))("replace").decode(
        head)
    first_line = text.split("\n", 1)[0] if "\n" in text else None
    if first_line is None or not first_line.strip():
        return  # no whole first line in the head, or a blank one: read with the file
    row = next(text_files.rows(path, first_line, fmt), (1, None))[1]
    if isinstance(row, (UserError, type(None))):
        return  # the row is that record's error
    text_files.check_columns(path, list(row), reading.named_columns,
                             id_column=reading.id_column)
