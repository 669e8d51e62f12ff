"""Which labelled text a run reads: tfds `glue/sst2` (the default), any tfds dataset
with text features and a `ClassLabel`, or local CSV/TSV/JSONL files.

`open_dataset(data_config)` returns a `TextDataset`: its `info` (class names,
text features, identity) and `load(split)`, a tf.data pipeline whose
elements all have one shape, whatever the source:
`{"idx": int32, "label", "text": string}` plus `"text_pair"` for sentence
pairs. `label` is the task's (`DatasetInfo.task`): an int64 class id
(single-label), an int64 0/1 vector over the labels (multi-label) or a
float32 number (regression); -1 (NaN for a number) when unlabelled. The
tokenizer, the feature cache, the heads and the export only ever see that.

Split names: tfds split strings (`train[:4096]`) for tfds datasets; for
files, `train`, `validation` and `test` name `--train_file`, `--eval_file`
and `--test_file`, with the same `[start:end]` slices.

Example (`data_dir` holds glue/sst2, see `sst2.text.data`):
    >>> from sst2.run.config import DataConfig
    >>> dataset = open_dataset(DataConfig(data_dir=data_dir))
    >>> dataset.info.label_names, dataset.info.text_features
    (('negative', 'positive'), ('sentence',))
    >>> sorted(next(iter(dataset.load("validation[:2]"))))
    ['idx', 'label', 'text']
"""

import dataclasses
import re

import numpy as np
import tensorflow as tf

from sst2.run.errors import UserError
from sst2.run.files import sha256_of_file
from sst2.run.targets import TARGETS
from sst2.text import file_text, labels, text_files
from sst2.text.dataset_info import (
    DatasetInfo,
    TextDataset,
    text_columns,
)
from sst2.text.tfds_dataset import TfdsDataset

_SLICE = re.compile(r"^(\w+)(?:\[(-?\d*):(-?\d*)\])?$")


class FileDataset(TextDataset):
    """Local files: the training file fixes the task and the classes (`labels`).

    Args:
        train_file, eval_file, test_file: the splits' files (`train`, `validation`,
            `test`).
        text_columns: one text column, or two for sentence pairs.
        label_column: the label's column, or one 0/1 column per label.
        encoding, fmt: how the files are written (`--encoding`, `--file_format`).
        label_names: the labels' names, in order (default: from the training file).
        task: a kind of target, or `auto` (inferred from the training labels).
        label_separator: what separates a set of labels in one cell.
    """

    def __init__(self, train_file: str, eval_file: str | None = None,
                 test_file: str | None = None, text_columns: tuple = ("text",),
                 label_column: str | tuple = "label", encoding: str = "utf-8",
                 fmt: str = "auto", label_names: tuple | None = None, task: str = "auto",
                 label_separator: str = ","):
        self.files = {"train": train_file, "validation": eval_file, "test": test_file}
        self.text_columns, self.label_column = text_columns, label_column
        self.encoding, self.fmt, self.separator = encoding, fmt, label_separator
        self._tables = {}
        train = self._table("train")
        if isinstance(label_column, tuple) and len(label_column) > 1:
            if task != "auto" and TARGETS[task].labels != "label_sets":
                raise UserError(f"Several label columns ({', '.join(label_column)}) are one "
                                f"0/1 column per label: a multi-label task, not --task={task}.")
            label_names = label_names or label_column
        self.inferred_from = train_file if task == "auto" else None
        if task == "auto":
            task = labels.infer_task(train, label_separator)
        self.task, spelling = task, TARGETS[task].labels
        names = labels.READERS[spelling].vocabulary(train, label_separator, label_names)
        if spelling == "classes" and len(names) < 2:
            raise UserError(f"{train_file} has one class only ({names[0]!r}); a classifier "
                            "needs at least two.")
        identity = {"train_file_sha256": sha256_of_file(train_file),
                    "text_columns": list(text_columns),
                    "label_column": (list(label_column) if isinstance(label_column, tuple)
                                     else label_column), "label_names": list(names)}
        if spelling != "classes":  # (single-label identities predate the task)
            identity.update(task=task, label_separator=label_separator)
        self.info = DatasetInfo("files", names, tuple(text_columns), identity, task=task,
                                label_separator=label_separator)
        targets = self._labels(train)  # every training label readable, before any work
        if spelling == "numbers" and np.ptp(targets) == 0:
            raise UserError(f"{train_file}: every example's target is {targets[0]:g} (one "
                            "value only): a regression needs at least two distinct values.")

    def _table(self, name: str) -> text_files.TextTable:
        if name not in self._tables:
            path = self.files.get(name)
            if path is None:
                flag = {"train": "--train_file", "validation": "--eval_file",
                        "test": "--test_file"}.get(name)
                raise UserError(f"No file for the split {name!r}: pass {flag}=PATH."
                                if flag else f"Unknown split {name!r} for local files: use "
                                "train, validation or test.")
            self._tables[name] = text_files.read_table(
                path, self.text_columns, self.label_column, self.encoding, self.fmt,
                require_labels=name != "test")
        return self._tables[name]

    def _parse(self, split: str) -> tuple[str, slice]:
        match = _SLICE.match(split.replace(" ", ""))
        if match is None:
            raise UserError(f"Bad split {split!r}: use train, validation or test, optionally "
                            "sliced as train[:1000].")
        name, start, end = match.groups()
        return name, slice(int(start) if start else None, int(end) if end else None)

    def arrays(self, split: str) -> dict:
        """`split` as numpy arrays: `idx` (the example's line), `label`, `text` (and
        `text_pair`), after checking every label."""
        name, part = self._parse(split)
        table = self._table(name)
        columns = list(zip(*table.texts))
        arrays = {"idx": np.asarray(table.lines, np.int32)[part],
                  "label": self._labels(table)[part],
                  "text": np.asarray(columns[0], object)[part]}
        if len(columns) == 2:
            arrays["text_pair"] = np.asarray(columns[1], object)[part]
        if not len(arrays["idx"]):
            raise UserError(f"The split {split!r} ({table.path}) holds no examples.")
        return arrays

    def _labels(self, table: text_files.TextTable) -> np.ndarray:
        spelling = self.info.target.labels
        try:
            return labels.READERS[spelling].read(table, self.info.label_names, self.separator)
        except UserError as e:
            if (spelling != "label_sets" or self.inferred_from is None
                    or table.path == self.inferred_from):
                raise
            raise UserError(f"{e} ({self.task} was inferred from the labels of "
                            f"{self.inferred_from}, which hold {self.separator!r}; if they "
                            "are numbers with a decimal comma (3,5), write them with a "
                            "point, or pass --task.)") from None

    def load(self, split: str) -> tf.data.Dataset:
        arrays = self.arrays(split)
        return tf.data.Dataset.from_tensor_slices(
            {k: tf.constant(v.tolist(), tf.string) if v.dtype == object else v
             for k, v in arrays.items()})

    def size(self, split: str) -> int:
        return len(self.arrays(split)["idx"])


def _label_names(data_config) -> tuple | None:
    """`--label_names`, or the lines of `--label_names_file`."""
    if data_config.label_names:
        return tuple(n.strip() for n in data_config.label_names.split(","))
    if not data_config.label_names_file:
        return None
    path = data_config.label_names_file
    names = tuple(line.strip() for line in file_text.decode(path, data_config.encoding)
                  .splitlines() if line.strip())
    if len(names) < 2 or len(set(names)) != len(names):
        raise UserError(f"--label_names_file={path}: it must name at least two classes, one "
                        "per line, each once.")
    separator = data_config.label_separator
    holding = [n for n in names if separator and separator in n]
    if holding and (data_config.task == "auto"
                    or TARGETS[data_config.task].labels != "classes"):
        raise UserError(f"--label_names_file={path}: the name {holding[0]!r} holds the label "
                        f"separator {separator!r}, so no label cell could name it; rename it "
                        "(or pass another --label_separator).")
    return names


def open_dataset(data_config) -> TextDataset:
    """The dataset a `config.DataConfig` names: local files with `--train_file`, else the
    tfds dataset `--dataset`."""
    label_names = _label_names(data_config)
    if data_config.train_file:
        label_columns = tuple(c.strip() for c in (data_config.label_column or "label")
                              .split(","))
        if not all(label_columns) or len(set(label_columns)) != len(label_columns):
            raise UserError(f"--label_column={data_config.label_column!r}: name one label "
                            "column, or several distinct ones (0/1 each) for multi-label.")
        return FileDataset(data_config.train_file, data_config.eval_file,
                           data_config.test_file,
                           text_columns(data_config.text_column) or ("text",),
                           label_columns if len(label_columns) > 1 else label_columns[0],
                           data_config.encoding, data_config.file_format, label_names,
                           data_config.task, data_config.label_separator)
    dataset = TfdsDataset(data_config.dataset, data_config.data_dir, data_config.download,
                          text_columns(data_config.text_column), data_config.label_column,
                          data_config.task)
    if label_names and len(label_names) != dataset.info.num_classes:
        raise UserError(f"--label_names names {len(label_names)} classes; "
                        f"{data_config.dataset} has {dataset.info.num_classes}.")
    if label_names:
        dataset.info = dataclasses.replace(dataset.info, label_names=label_names)
    return dataset
