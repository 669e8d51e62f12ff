"""Local files: every format read alike, and every bad file one clear message naming
its file and line."""

import json
import os

import pytest

from sst2.run.errors import UserError
from sst2.text import file_text, labels, text_files
from tests.helpers import senteval_dir


def write(tmp_path, name, content, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(content.encode(encoding) if isinstance(content, str) else content)
    return str(path)


ROWS = [("a warm, funny film", "good"), ('he said "no"', "bad"), ("two\nlines", "good")]


@pytest.mark.parametrize("name", ["x.csv", "x.tsv", "x.jsonl"])
def test_every_format_reads_the_same_examples(tmp_path, name):
    if name.endswith(".csv"):
        content = 'text,label\n"a warm, funny film",good\n"he said ""no""",bad\n"two\nlines",good\n'
    elif name.endswith(".tsv"):
        # GLUE's TSV: no quoting, so quotes are plain characters (no line breaks in a field).
        content = 'text\tlabel\na warm, funny film\tgood\nhe said "no"\tbad\ntwo lines\tgood\n'
    else:
        content = "".join(json.dumps({"label": label, "text": text}) + "\n"
                          for text, label in ROWS)
    table = text_files.read_table(write(tmp_path, name, content), ("text",), "label")
    expected = [t if not name.endswith(".tsv") else t.replace("\n", " ") for t, _ in ROWS]
    assert [t for (t,) in table.texts] == expected
    assert table.labels == ["good", "bad", "good"]
    names = labels.label_vocabulary(table)
    assert names == ("bad", "good")
    assert labels.label_ids(table, names).tolist() == [1, 0, 1]


def test_quoted_field_spanning_lines_keeps_line_numbers(tmp_path):
    path = write(tmp_path, "x.csv", 'text,label\n"one\ntwo\nthree",1\nfour,0\n"five",\n')
    with pytest.raises(UserError, match=r"x.csv: line 6 has no label"):
        text_files.read_table(path, ("text",), "label")
    table = text_files.read_table(write(tmp_path, "y.csv", 'text,label\n"one\ntwo",1\nthree,0\n'),
                                  ("text",), "label")
    assert table.lines == [2, 4] and table.texts[0] == ("one\ntwo",)


@pytest.mark.parametrize("name, content, message", [
    ("x.csv", 'text,label\nfine,1\n"never closed,0\nmore,1\n',
     r"x.csv: line 3: .*quoted field opened here never closes"),
    ("x.csv", "text,label\nfine,1\ntoo,many,fields\n", r"x.csv: line 3 has 3 fields, the header 2"),
    ("x.csv", "sentence,label\nfine,1\n", r"x.csv: the header \(line 1\) has no column 'text'; "
     r"its columns are 'sentence', 'label'. Name the right one with --text_column"),
    ("x.tsv", "text\tstars\nfine\t1\n", r"no column 'label'.*--label_column"),
    ("x.csv", "", r"x.csv is empty"),
    ("x.csv", "text,label\n\n", r"x.csv holds no examples \(only a header\)"),
    ("x.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": 0\n', r"x.jsonl: line 2 is "
     r"not valid JSON"),
    ("x.jsonl", '{"text": "a", "label": 1}\n{"txt": "b", "label": 0}\n',
     r"x.jsonl: line 2 has no column 'text'"),
    ("x.jsonl", '{"text": 3, "label": 1}\n', r"line 1: 'text' must be a string"),
    ("x.txt", "text,label\n", r"cannot tell the format.*--file_format"),
])
def test_bad_files_name_file_line_and_fix(tmp_path, name, content, message):
    with pytest.raises(UserError, match=message):
        text_files.read_table(write(tmp_path, name, content), ("text",), "label")


def test_invalid_bytes_are_listed_never_dropped(tmp_path):
    path = write(tmp_path, "x.csv", b"text,label\ncaf\xe9,1\nfine,0\nna\xefve \xff,1\n")
    with pytest.raises(UserError) as error:
        text_files.read_table(path, ("text",), "label")
    message = str(error.value)
    assert "2 line(s)" in message and "line 2, byte 4 (0xe9)" in message
    assert "line 4, byte 3 (0xef)" in message and "--encoding=latin-1" in message
    table = text_files.read_table(path, ("text",), "label", encoding="latin-1")
    assert [t for (t,) in table.texts] == ["café", "fine", "naïve ÿ"]
    with pytest.raises(UserError, match="not an encoding Python knows"):
        text_files.read_table(path, ("text",), "label", encoding="klingon")


def test_trec_training_file_is_latin1_as_distributed():
    """The real case: TREC's train.txt has a Latin-1 byte on line 66."""
    path = os.path.join(senteval_dir(), "TREC", "train.txt")
    with open(path, "rb") as f:
        raw = f.read()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    with pytest.raises(UserError, match=r"1 line\(s\) hold bytes that are not valid utf-8: "
                                        r"line 66, byte 53 \(0xf0\)"):
        file_text.decode(path, "utf-8")
    assert "sister\u00f0city" in file_text.decode(path, "latin-1")


def test_label_vocabulary_integers_names_and_given(tmp_path):
    integers = text_files.TextTable("t", [("a",)] * 3, ["0", "3", "1"], [2, 3, 4])
    assert labels.label_vocabulary(integers) == ("0", "1", "2", "3")
    given = ("neg", "neutral", "pos", "other")
    assert labels.label_ids(integers, given).tolist() == [0, 3, 1]
    names = text_files.TextTable("t", [("a",)] * 3, ["pos", "neg", "pos"], [2, 3, 4])
    assert labels.label_ids(names, given).tolist() == [2, 0, 2]
    negative = text_files.TextTable("t", [("a",)] * 2, ["-1", "0"], [7, 8])
    with pytest.raises(UserError, match="t: line 7: label -1 is negative"):
        labels.label_vocabulary(negative)
    unseen = text_files.TextTable("eval.csv", [("a",)] * 2, ["neg", "meh"], [2, 9])
    with pytest.raises(UserError, match=r"eval.csv: line 9: label 'meh' is not one of the 2 "
                       r"classes the training file has \(neg, pos\)"):
        labels.label_ids(unseen, ("neg", "pos"))
    assert labels.label_ids(text_files.TextTable("t", [("a",)], None, [2]),
                                ("neg", "pos")).tolist() == [-1]


def test_test_file_without_labels(tmp_path):
    table = text_files.read_table(write(tmp_path, "test.tsv", "text\nfirst\nsecond\n"),
                                  ("text",), "label", require_labels=False)
    assert table.labels is None and len(table) == 2
    with pytest.raises(UserError, match="no column 'label'"):
        text_files.read_table(write(tmp_path, "t.tsv", "text\nfirst\n"), ("text",), "label")


def test_pairs_read_two_columns(tmp_path):
    path = write(tmp_path, "pairs.tsv", "question\tsentence\tlabel\nwho?\tme.\tyes\n")
    table = text_files.read_table(path, ("question", "sentence"), "label")
    assert table.texts == [("who?", "me.")]


@pytest.mark.parametrize("raw_labels,message", [
    (["1", "1", "1"],
     r"every example has the label '1' \(one class only\): a classifier needs .* two classes"),
    (["1", "0", "1.0"], r"spelled more than one way: '1' \(line 2\), '1.0' \(line 4\)"),
    (["Pos", "neg", "pos"], r"spelled more than one way: 'Pos' \(line 2\), 'pos' \(line 4\)"),
    (["0", "1", "2023"], r"the largest, '2023' \(line 4\), would make 2,024 classes of which "
                         r"2,021 never occur"),
    (["0", "1", "30000000000"], r"would make 30,000,000,001 classes"),
])
def test_labels_that_would_make_wrong_classes_are_refused(raw_labels, message):
    # Issue 25, cases 3, 4 and 7: each trained a model with wrong classes, or filled memory.
    table = text_files.TextTable("train.csv", [("a",)] * len(raw_labels), raw_labels,
                                 list(range(2, 2 + len(raw_labels))))
    with pytest.raises(UserError, match="train.csv: .*" + message):
        labels.label_vocabulary(table)


def test_a_superscript_digit_is_a_label_name_not_an_id():
    # Issue 25, case 11: "²".isdigit() is true, and int("²") raised a ValueError traceback.
    table = text_files.TextTable("t", [("a",)] * 2, ["\u00b2", "1"], [2, 3])
    assert labels.label_vocabulary(table) == ("1", "\u00b2")


def test_integer_ids_with_a_few_unused_classes_are_kept():
    table = text_files.TextTable("t", [("a",)] * 3, ["1", "3", "5"], [2, 3, 4])  # 1-5 stars
    assert labels.label_vocabulary(table) == ("0", "1", "2", "3", "4", "5")


@pytest.mark.parametrize("names", ["neg,pos,", "neg,,pos", "neg,pos,neg"])
def test_label_names_must_be_distinct_and_not_empty(names):
    from sst2.run.config import DataConfig

    # Issue 25, case 20: a trailing comma made an empty third class.
    with pytest.raises(UserError, match="every class needs a name of its own"):
        DataConfig(label_names=names)


def test_a_doubled_column_name_is_refused(tmp_path):
    # Issue 25, case 8: the first of two "text" columns was read without a word.
    path = write(tmp_path, "d.csv", "text,text,label\na,b,0\nc,d,1\n")
    with pytest.raises(UserError, match="names the column 'text' 2 times"):
        text_files.read_table(path, ("text",), "label")


def test_a_field_of_a_megabyte_is_read(tmp_path):
    # Issue 25, case 9: the csv module's field limit gave a wrong hint about quoting.
    long_text = "word " * 200_000
    path = write(tmp_path, "long.csv", f'text,label\n"{long_text}",1\nshort,0\n')
    table = text_files.read_table(path, ("text",), "label")
    assert table.texts[0] == (long_text,) and table.lines == [2, 3]


def test_jsonl_strings_may_hold_line_separators(tmp_path):
    # Issue 25, case 10: U+2028 and U+0085 are valid raw inside JSON strings.
    path = write(tmp_path, "s.jsonl", '{"text": "a\u2028b", "label": 1}\n'
                                      '{"text": "c\u0085d", "label": 0}\r\n')
    table = text_files.read_table(path, ("text",), "label")
    assert table.texts == [("a\u2028b",), ("c\u0085d",)] and table.lines == [1, 2]


def test_a_folder_or_a_pipe_is_named_as_such(tmp_path):
    # Issue 25, case 21: both were "no such file".
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(UserError, match="folder.csv is a folder"):
        text_files.read_table(str(tmp_path / "folder.csv"), ("text",), "label")
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(UserError, match="pipe.csv is not a regular file"):
        text_files.read_table(str(tmp_path / "pipe.csv"), ("text",), "label")
