"""A tfds dataset as a `TextDataset`: its text features and label found and checked, and
`glue/sst2` prepared offline from local files when it cannot be downloaded.

Example (`data_dir` holds glue/sst2, see `sst2.text.data`):
    >>> dataset = TfdsDataset("glue/sst2", data_dir)
    >>> dataset.info.text_features, dataset.size("validation")
    (('sentence',), 64)
"""

import urllib.parse

import tensorflow as tf

from sst2.run.errors import UserError
from sst2.run.targets import INFERRED, TARGETS
from sst2.text import glue
from sst2.text.dataset_info import DEFAULT_DATASET, DatasetInfo, TextDataset, example
from sst2.text.glue_tasks import task_of


class TfdsDataset(TextDataset):
    """A tfds dataset; `glue/sst2` is prepared offline from local files when needed."""

    def __init__(self, name: str, data_dir: str | None = None, download: bool = True,
                 text_features: tuple | None = None, label_feature: str | None = None,
                 task_option: str = "auto"):
        self.name, self.data_dir, self.download = name, data_dir, download
        if name == DEFAULT_DATASET:
            glue.ensure_prepared(data_dir, download)
        builder = self._builder()
        features = builder.info.features
        tfds = glue._tfds()
        texts = [k for k, v in features.items() if isinstance(v, tfds.features.Text)]
        labels = [k for k, v in features.items() if isinstance(v, tfds.features.ClassLabel)]
        # A float scalar feature is a number to predict (GLUE's STS-B).
        numbers = [k for k, v in features.items() if isinstance(v, tfds.features.Tensor)
                   and v.dtype.is_floating and not v.shape]
        glue_task = task_of(name)
        text_features = text_features or (glue_task.texts if glue_task else None)
        self.split_name = glue_task.split if glue_task else (lambda split: split)
        if not text_features and len(texts) != 1:
            raise UserError(f"{name} has text features {', '.join(texts) or 'none'}: name the "
                            "one to classify (or two, for pairs) with --text_column=...")
        text_features = text_features or tuple(texts)
        if not label_feature and len(labels) + (0 if labels else len(numbers)) != 1:
            raise UserError(f"{name} has class label features {', '.join(labels) or 'none'}: "
                            "name the one to predict with --label_column=...")
        label_feature = label_feature or (labels or numbers)[0]
        for wanted, kind, flag in ([(t, "text", "--text_column") for t in text_features]
                                   + [(label_feature, "label", "--label_column")]):
            have = texts if kind == "text" else labels + numbers
            if wanted not in have:
                raise UserError(f"{name} has no {kind} feature {wanted!r}; its {kind} features "
                                f"are {', '.join(have) or 'none'}. Name one with {flag}=...")
        task = INFERRED["numbers" if label_feature in numbers else "classes"]
        if task_option not in ("auto", task):
            raise UserError(f"{name}'s {label_feature!r} makes it a {task} task, not "
                            f"--task={task_option}.")
        self.text_features, self.label_feature = tuple(text_features), label_feature
        self.has_idx = "idx" in features
        self.info = DatasetInfo(
            name, tuple(features[label_feature].names) if TARGETS[task].has_classes else (),
            self.text_features,
            {"dataset": name} if name == DEFAULT_DATASET else
            {"dataset": name, "version": str(builder.info.version),
             "text_features": list(self.text_features), "label_feature": label_feature},
            glue_task=glue_task.name if glue_task else None, task=task)

    def _builder(self):
        tfds = glue._tfds()
        try:
            builder = tfds.builder(self.name, data_dir=self.data_dir)
        except ValueError as e:  # DatasetNotFoundError and a malformed name: one message
            raise UserError(f"--dataset={self.name!r}: tfds has no such dataset "
                            f"({str(e).splitlines()[0][:200]}).") from None
        if not builder.is_prepared():
            glue_task = task_of(self.name)
            offline = (f" To build it from GLUE's files: python -m sst2.prepare_data "
                       f"--dataset={self.name} --glue=FOLDER"
                       + (f" --data_dir={self.data_dir}" if self.data_dir else "")
                       + " (FOLDER holds the task's train.tsv, dev.tsv and test.tsv)."
                       if glue_task else "")
            if not self.download:
                raise UserError(f"{self.name} is not prepared in "
                                f"{self.data_dir or 'tfds data dir'} and --nodownload is "
                                "set." + offline)
            # GLUE's configs name their file: no network fails in seconds, not minutes.
            url = getattr(builder.builder_config, "data_url", None) or ""
            if url and not glue.can_reach(url):
                raise UserError(f"{self.name} is not prepared in "
                                f"{self.data_dir or 'the tfds data dir'} and "
                                f"{urllib.parse.urlparse(url).hostname} cannot be reached to "
                                "download it." + (offline or " Prepare it on a machine with "
                                                  "network access and pass its --data_dir."))
            try:
                builder.download_and_prepare()
            except Exception as e:
                raise UserError(
                    f"tfds could not download and prepare {self.name} "
                    f"({str(e).splitlines()[0][:200]}). Prepare it on a machine with network "
                    "access and pass its --data_dir, or train on local files with "
                    "--train_file and --eval_file.") from None
        return builder

    def load(self, split: str) -> tf.data.Dataset:
        split = self.split_name(split)
        if self.name == DEFAULT_DATASET:
            dataset = glue.load_split(split, self.data_dir, self.download)
        else:
            try:
                dataset = glue._tfds().load(self.name, split=split, data_dir=self.data_dir,
                                            shuffle_files=False)
            except (ValueError, AssertionError, KeyError) as e:
                raise UserError(f"Bad split {split!r} for {self.name}: {e}") from None
        features, label = self.text_features, self.label_feature
        if not self.info.target.has_classes:  # GLUE marks a missing score -1: no label
            dataset = dataset.map(lambda x: {**x, label: tf.where(
                x[label] < 0, tf.constant(float("nan"), x[label].dtype), x[label])})
        if self.has_idx:
            return dataset.map(lambda x: example(x["idx"], x[label],
                                                  [x[f] for f in features]))
        return dataset.enumerate().map(lambda i, x: example(i, x[label],
                                                             [x[f] for f in features]))

    def size(self, split: str) -> int:
        return self._builder().info.splits[self.split_name(split)].num_examples
