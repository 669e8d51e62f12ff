"""The GLUE benchmark's tasks through tfds: texts, metric, splits and submission files.

`GLUE_TASKS["glue/<task>"]` says which text features a task reads (one
sentence or a pair), its official metric (the default `--best_metric`), the
validation splits it is scored on (MNLI: matched and mismatched) and the
submission files GLUE expects: `<file>.tsv` with `index<TAB>prediction`,
predictions as class ids, class names (MNLI, QNLI, RTE, and AX: MNLI's model
on the diagnostic set) or scores (STS-B).

Example:
    >>> task = GLUE_TASKS["glue/mnli"]
    >>> task.texts, task.metric, task.split("validation")
    (('premise', 'hypothesis'), 'accuracy', 'validation_matched')
    >>> [(t.file, t.split) for t in task.tests]
    [('MNLI-m', 'test_matched'), ('MNLI-mm', 'test_mismatched'), ('AX', 'test')]
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Submission:
    """One submission file: `<file>.tsv`, predicted from `split` of the tfds `dataset`."""

    file: str
    dataset: str
    split: str = "test"


@dataclasses.dataclass(frozen=True)
class GlueTask:
    """One GLUE task (see the module). `named_labels`: the submission holds class names."""

    name: str
    texts: tuple
    metric: str
    tests: tuple
    validation: tuple = ("validation",)
    named_labels: bool = False

    def split(self, split: str) -> str:
        """The tfds split a generic name means: `validation` is the first scored split."""
        if split == "validation":
            return self.validation[0]
        if split == "test":
            return self.tests[0].split
        return split


def _task(name: str, texts: tuple, metric: str = "accuracy", named: bool = False,
          **more) -> GlueTask:
    dataset = f"glue/{name.lower().replace('-', '')}"
    return GlueTask(name, texts, metric, more.pop("tests", (Submission(name, dataset),)),
                    named_labels=named, **more)


GLUE_TASKS = {f"glue/{task.name.lower().replace('-', '')}": task for task in (
    _task("CoLA", ("sentence",), "mcc"),
    _task("SST-2", ("sentence",)),
    _task("MRPC", ("sentence1", "sentence2"), "f1"),
    _task("QQP", ("question1", "question2"), "f1"),
    _task("STS-B", ("sentence1", "sentence2"), "pearson"),
    _task("MNLI", ("premise", "hypothesis"), named=True,
          validation=("validation_matched", "validation_mismatched"),
          tests=(Submission("MNLI-m", "glue/mnli", "test_matched"),
                 Submission("MNLI-mm", "glue/mnli", "test_mismatched"),
                 Submission("AX", "glue/ax"))),
    _task("QNLI", ("question", "sentence"), named=True),
    _task("RTE", ("sentence1", "sentence2"), named=True),
    _task("WNLI", ("sentence1", "sentence2")),
)}
# The metric `--best_metric=auto` picks for each GLUE task, by submission name.
OFFICIAL_METRICS = {task.name: task.metric for task in GLUE_TASKS.values()}


def task_of(dataset: str) -> GlueTask | None:
    """The GLUE task of a tfds dataset name (`glue/cola`), None for other datasets."""
    return GLUE_TASKS.get(dataset)
