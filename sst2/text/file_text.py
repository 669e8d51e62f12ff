r"""A data file's bytes as text: its format from its name, its encoding checked, the whole
file decoded before anything splits it into lines (UTF-16 has 0x0A bytes inside
characters), and every line with bytes the encoding does not allow named.

Example:
    >>> path = os.path.join(tmp_dir, "notes.csv")
    >>> with open(path, "wb") as f:
    ...     _ = f.write("text,label\nfine,good\n".encode("utf-16"))
    >>> file_format(path), decode(path, "utf-16").splitlines()
    ('csv', ['text,label', 'fine,good'])
"""

import codecs
import os

from sst2.run.errors import UserError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_MAX_LISTED = 5  # bad lines named in one message


def file_format(path: str, fmt: str = "auto") -> str:
    """`csv`, `tsv` or `jsonl`: `fmt`, or with `auto` the file's extension.

    >>> file_format("data/train.tsv"), file_format("x.txt", "csv")
    ('tsv', 'csv')
    """
    if fmt != "auto":
        return fmt
    found = FORMATS.get(os.path.splitext(path)[1].lower())
    if found is None:
        raise UserError(f"{path}: cannot tell the format from its extension; name the file "
                        ".csv, .tsv or .jsonl, or pass --file_format=csv, tsv or jsonl.")
    return found


def codec(encoding: str) -> str:
    """The codec that reads a file in `encoding`: for UTF-8, one that drops a leading
    byte-order mark (not part of the first column's name, nor of the first line). A
    UserError for an encoding Python does not know.

    >>> codec("UTF8"), codec("latin-1")
    ('utf-8-sig', 'latin-1')
    """
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise UserError(f"--encoding={encoding!r} is not an encoding Python knows; use e.g. "
                        "utf-8, utf-16, latin-1 or cp1252.") from None
    return "utf-8-sig" if name == "utf-8" else encoding


def decode(path: str, encoding: str) -> str:
    """The file's text; a UserError listing every line with bytes invalid in `encoding`."""
    codec(encoding)
    if os.path.isdir(path):
        raise UserError(f"{path} is a folder; name a CSV, TSV or JSONL file in it.")
    if os.path.exists(path) and not os.path.isfile(path):
        raise UserError(f"{path} is not a regular file (a pipe or a device): sst2 reads a "
                        "data file more than once (to fingerprint and to read it), so save "
                        "it to a file first.")
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file.")
    with open(path, "rb") as f:
        return decode_bytes(path, f.read(), encoding)


def decode_bytes(path: str, data: bytes, encoding: str) -> str:
    """`data`, the bytes of the file `path`, as text (see `decode`)."""
    reading = codec(encoding)
    try:
        return data.decode(reading)
    except UnicodeDecodeError:
        pass
    bad = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        try:
            line.decode(reading)
        except UnicodeDecodeError as e:
            bad.append(f"line {number}, byte {e.start + 1} (0x{line[e.start]:02x})")
    listed = "; ".join(bad[:_MAX_LISTED]) + (f"; and {len(bad) - _MAX_LISTED} more lines"
                                             if len(bad) > _MAX_LISTED else "")
    raise UserError(f"{path}: {len(bad)} line(s) hold bytes that are not valid {encoding}: "
                    f"{listed}. Pass the encoding the file is written in, e.g. "
                    "--encoding=latin-1 (ISO-8859-1) or --encoding=cp1252; no line is skipped.")
