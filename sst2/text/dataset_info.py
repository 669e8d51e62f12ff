"""What a run knows of its data (`DatasetInfo`), and what every dataset offers
(`TextDataset`): the pieces `sst2.text.datasets`' datasets share.

Example:
    >>> SST2_INFO.label_names, SST2_INFO.num_outputs, SST2_INFO.target.description
    (('negative', 'positive'), 2, 'one class per text (softmax)')
"""

import dataclasses

import tensorflow as tf

from sst2.run.config_file import config_path, saved_fields
from sst2.run.errors import UserError
from sst2.run.targets import TARGETS, SingleLabel, Target
from sst2.text import glue

DEFAULT_DATASET = glue.DATASET_NAME


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a trained model knows of its data; recorded in the run's `config.json`.

    Attributes:
        name: the tfds name, or `files`.
        label_names: the classes, in class-id order.
        text_features: the one (or two, for pairs) text columns or features.
        identity: what must not change under a resumed run or a cached feature
            set: the dataset and version, or the training file's SHA-256.
        glue_task: the GLUE task name (its submission file) for GLUE datasets.
        task: the kind of target, a name in `sst2.run.targets.TARGETS` (`target`);
            `label_names` are the classes, the labels, or empty (a number).
        label_separator: joins a multi-label prediction's names (and splits a
            file's labels).
        target_scale: a regression target's training `mean` and `std`.
    """

    name: str
    label_names: tuple
    text_features: tuple
    identity: dict
    glue_task: str | None = None
    task: str = SingleLabel.name
    label_separator: str = ","
    target_scale: dict | None = None

    def __post_init__(self):
        if self.task not in TARGETS:
            raise ValueError(f"unknown task {self.task!r} (this sst2 knows "
                             f"{', '.join(TARGETS)})")

    @property
    def target(self) -> Target:
        """What the run predicts (`sst2.run.targets`)."""
        return TARGETS[self.task]

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def num_outputs(self) -> int:
        """The head's outputs: a logit per class or label, one for a number."""
        return self.target.units(len(self.label_names))

    @property
    def is_pair(self) -> bool:
        return len(self.text_features) == 2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> "DatasetInfo":
        fields = dict(fields)
        fields["label_names"] = tuple(fields["label_names"])
        fields["text_features"] = tuple(fields["text_features"])
        return cls(**fields)


# Runs from before datasets were recorded trained on this.
SST2_INFO = DatasetInfo(DEFAULT_DATASET, glue.LABEL_NAMES, ("sentence",),
                        {"dataset": DEFAULT_DATASET}, glue_task="SST-2")


def text_columns(value: str | None) -> tuple | None:
    """`--text_column`'s names: one text column, or two (a pair); None when unset."""
    if value is None:
        return None
    columns = tuple(c.strip() for c in value.split(","))
    if not 1 <= len(columns) <= 2 or not all(columns):
        raise UserError(f"--text_column={value!r}: name one text column, or two separated by "
                        "a comma for sentence pairs.")
    return columns


def example(idx, label, texts) -> dict:
    """One example as every split yields it: `idx`, `label` (an int64 class id, a 0/1
    vector or a float32 number), `text` and, for a pair, `text_pair`."""
    label = tf.cast(label, tf.float32 if label.dtype.is_floating else tf.int64)
    element = {"idx": tf.cast(idx, tf.int32), "label": label, "text": texts[0]}
    if len(texts) == 2:
        element["text_pair"] = texts[1]
    return element


class TextDataset:
    """A dataset's `info` and its splits as tf.data pipelines (see the module)."""

    info: DatasetInfo

    def load(self, split: str) -> tf.data.Dataset:
        raise NotImplementedError

    def size(self, split: str) -> int:
        """The number of examples in `split`."""
        raise NotImplementedError


def load_dataset_info(model_dir: str):
    """The `DatasetInfo` a run in `model_dir` trained on (GLUE SST-2 for runs
    from before it was recorded)."""
    saved = (saved_fields(model_dir) or {}).get("dataset")
    if not saved:
        return SST2_INFO
    try:
        return DatasetInfo.from_dict(saved)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UserError(f"{config_path(model_dir)} is damaged: its dataset record is "
                        f"unreadable ({type(e).__name__}: {e}). Restore it from a copy, or "
                        "use --restart to start the run over.") from e
