"""A trained run scored as it is served: its metrics on labelled data, GLUE's submission
files, and `predictions.jsonl` for a local test file.

Everything goes through the served computation (`predict_split`, which
calls `sst2.serve.graph.serving.make_predict_fn`), so what is reported is what the
export answers.

Example:
    >>> import os
    >>> from sst2.serve.trained import restore
    >>> trained = restore(trained_dir, "best")
    >>> result = evaluate(trained, submission_path=os.path.join(tmp_dir, "SST-2.tsv"))
    >>> result["examples"], open(result["submission"]).readline()
    (64, 'index\\tprediction\\n')
"""

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf
from absl import logging
from tqdm.auto import tqdm

from sst2.fit.inputs import unlabelled_rows
from sst2.run import log_lines, metrics
from sst2.run.command_config import ReadingConfig
from sst2.run.config import DataConfig
from sst2.run.errors import UserError
from sst2.run.files import write_atomically
from sst2.run.run_folder import RunFolder
from sst2.serve.trained import TrainedModel
from sst2.text.dataset_info import DatasetInfo
from sst2.text.datasets import open_dataset
from sst2.text.glue_tasks import task_of


def write_glue_submission(path: str, idx: np.ndarray, predictions) -> None:
    """GLUE's submission format, `index<TAB>prediction` sorted by index, written atomically."""
    def write(f):
        f.write("index\tprediction\n")
        for i in np.argsort(idx):
            f.write(f"{int(idx[i])}\t{predictions[i]}\n")

    write_atomically(path, write)


def write_predictions(path: str, scored: dict, dataset: DatasetInfo) -> None:
    """One JSON object per example, in the file's order: `line` (where the example
    starts in its file) and the export's answer for it (its target's `record`); written
    atomically."""
    def write(f):
        for i, line in enumerate(scored["idx"]):
            record = {"line": int(line),
                      **dataset.target.record(scored, i, dataset.label_names)}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

    write_atomically(path, write, encoding="utf-8")


def _check_same_data(trained: TrainedModel, found: DatasetInfo) -> None:
    info = trained.dataset
    if found.identity != info.identity:  # e.g. a training file changed since
        changed = sorted(k for k in set(info.identity) | set(found.identity)
                         if info.identity.get(k) != found.identity.get(k))
        raise UserError(f"The data is not what {trained.config.run.model_dir} was trained on "
                        f"({', '.join(changed)} changed: the run's "
                        f"{[info.identity.get(k) for k in changed]}, now "
                        f"{[found.identity.get(k) for k in changed]}).")
    if found.label_names != info.label_names:
        raise UserError(f"The data's classes ({', '.join(found.label_names)}) are not "
                        f"the model's ({', '.join(info.label_names)}).")


def served_function(trained: TrainedModel, reading: ReadingConfig = ReadingConfig()):
    """The export's `serving_default` computation of `trained`, as a `tf.function` of one
    string tensor per text feature (what `predict_split` and `served_answer` call)."""
    from sst2.serve.graph.serving import make_predict_fn

    return tf.function(
        make_predict_fn(trained.preprocessor, trained.backbone, trained.head, trained.spec,
                        reading, trained.dataset, trained.temperature),
        input_signature=[tf.TensorSpec([None], tf.string)] * len(trained.dataset.text_features))


def served_answer(trained: TrainedModel, reading: ReadingConfig = ReadingConfig()):
    """`answer(texts, second_texts=None)`: the export's answers (numpy) to lists of
    strings, computed in process, as `sst2.serve.client.loading.load_export`'s are."""
    predict = served_function(trained, reading)

    def answer(texts, second_texts=None):
        inputs = [tf.constant(texts, tf.string)] + (
            [tf.constant(second_texts, tf.string)] if second_texts is not None else [])
        return {name: value.numpy() for name, value in predict(*inputs).items()}

    return answer


def predict_split(trained: TrainedModel, split: str, data_config: DataConfig | None = None,
                  reading: ReadingConfig = ReadingConfig(), batch_size: int = 256,
                  show_progress: bool = True, same_data: bool = True,
                  with_text: bool = False) -> dict[str, np.ndarray]:
    """The export's answers for every example of a split, in its order, with each
    example's true label (`gold`) and `idx`: computed as the export computes them
    (`sst2.serve.graph.serving`), from the raw text, long texts read in windows.

    Args:
        trained: the restored run.
        split: the split's name in the run's data (or in `data_config`'s).
        data_config: other data to read (default: the run's).
        reading: how long texts are read (`--window_tokens` and kin).
        batch_size: texts per call of the computation.
        show_progress: a progress bar.
        same_data: refuse data whose classes differ from the run's (False: another
            dataset, as GLUE's AX).
        with_text: each example's `text` (and `text_pair`) too.
    """
    info = trained.dataset
    predict = served_function(trained, reading)
    with log_lines.quiet():  # the run's data again: its log said what it is
        dataset = open_dataset(data_config or trained.config.data)
        if same_data:
            _check_same_data(trained, dataset.info)
        batches = dataset.load(split).batch(batch_size)
    text_columns = (("text", "text_pair") if info.is_pair else ("text",)) if with_text else ()
    parts = {name: [] for name in info.target.export_outputs + ("gold", "idx") + text_columns}
    total = -(-dataset.size(split) // batch_size)
    for batch in tqdm(batches, total=total, desc=split,
                      leave=False, disable=not show_progress):
        texts = [batch["text"]] + ([batch["text_pair"]] if "text_pair" in batch else [])
        answers = predict(*texts)
        for name in info.target.export_outputs:
            parts[name].append(answers[name].numpy())
        parts["gold"].append(batch["label"].numpy())
        for name in text_columns:
            parts[name].append(batch[name].numpy())
        parts["idx"].append(batch["idx"].numpy())
    if not parts["idx"]:
        raise UserError(f"The split {split!r} is empty.")
    return {name: np.concatenate(values) for name, values in parts.items()}


def score_split(trained: TrainedModel, split: str, data_config: DataConfig,
                reading: ReadingConfig, show_progress: bool) -> dict:
    """Every metric of the run's task on a labelled split, as the export answers it
    (multi-label: at the thresholds the export holds)."""
    scored = predict_split(trained, split, data_config, reading, show_progress=show_progress)
    missing = int(unlabelled_rows(scored["gold"]).sum())
    if missing:
        raise UserError(f"--eval_split={split!r} has {missing} unlabelled examples (GLUE's test "
                        "split has no labels): evaluate on a labelled split, e.g. validation.")
    target = trained.dataset.target
    thresholds = trained.head.thresholds.numpy() if target.thresholded else None
    return target.score(scored[target.answer], scored["gold"], thresholds)


def _data_config(trained: TrainedModel, data_dir, eval_file, test_file) -> DataConfig:
    changes = {"data_dir": data_dir} if data_dir else {}
    if eval_file:
        changes["eval_file"] = eval_file
    if test_file:
        changes["test_file"] = test_file
    data_config = dataclasses.replace(trained.config.data, **changes)
    if not data_dir and not data_config.train_file:
        _check_recorded_data_dir(data_config)
    return data_config


def _check_recorded_data_dir(data_config: DataConfig) -> None:
    """Evaluation reads the data dir config.json names, and writes nothing there: a
    dataset missing from it (the folder moved, or a config edited) is not downloaded
    or prepared in a place the command line did not name."""
    import tensorflow_datasets as tfds

    if data_config.data_dir and not tfds.builder(
            data_config.dataset, data_dir=data_config.data_dir).is_prepared():
        raise UserError(f"{data_config.dataset} is not prepared in {data_config.data_dir}, the "
                        "data dir this run was trained with. Pass --data_dir=... to evaluate "
                        "with a tfds data dir of yours (sst2 prepares the dataset there).")


def _describe(result: dict) -> str:
    return ", ".join(f"{metric.label} {result[name]:.4f}"
                     for name, metric in metrics.METRICS.items() if name in result)


def evaluate(trained: TrainedModel, data_dir: str | None = None, eval_split: str = "validation",
             test_split: str = "test", submission_path: str | None = None,
             reading: ReadingConfig = ReadingConfig(), eval_file: str | None = None,
             test_file: str | None = None) -> dict:
    """The task's metrics on `eval_split` (or `eval_file`); for GLUE datasets, the
    submission files for their test splits (e.g. `SST-2.tsv`); for local files with a
    `--test_file`, `predictions.jsonl` (`write_predictions`).

    Args:
        trained: the restored run.
        data_dir: the tfds data dir (default: the run's).
        eval_split, test_split: the splits scored and predicted.
        submission_path: where the GLUE submission file goes (default: the run folder).
        reading: how long texts are read.
        eval_file, test_file: local files in place of the run's.

    Returns:
        `{"split", <metric>: value..., "examples", "submission"}`; for a GLUE task
        scored on several splits (MNLI), each other split's metrics under its name.
    """
    data_config = _data_config(trained, data_dir, eval_file, test_file)
    show_progress = trained.config.run.progress
    result = score_split(trained, eval_split, data_config, reading, show_progress)
    logging.info(f"{eval_file or eval_split}: {_describe(result)} ({result['examples']} examples, "
                 f"checkpoint {trained.checkpoint_path})")
    result = {"split": eval_split, **result, "submission": None}
    glue_task = task_of(data_config.dataset) if not data_config.train_file else None
    if glue_task and eval_split == "validation":
        for split in glue_task.validation[1:]:  # MNLI's mismatched
            result[split] = score_split(trained, split, data_config, reading, show_progress)
            logging.info(f"{split}: {_describe(result[split])} "
                         f"({result[split]['examples']} examples)")
    return {**result, **_write_test_outputs(trained, data_config, test_split, reading,
                                             submission_path, show_progress)}


def _write_test_outputs(trained: TrainedModel, data_config: DataConfig, test_split: str,
                        reading: ReadingConfig, submission_path: str | None,
                        show_progress: bool) -> dict:
    """GLUE's submission files for a GLUE dataset; `predictions.jsonl` for a local
    `--test_file`; nothing otherwise."""
    glue_task = task_of(data_config.dataset) if not data_config.train_file else None
    if glue_task is None and not data_config.test_file:
        return {}
    if glue_task is None:
        test = predict_split(trained, test_split, data_config, reading,
                             show_progress=show_progress)
        path = RunFolder(trained.config.run.model_dir).predictions
        write_predictions(path, test, trained.dataset)
        logging.info(f"Wrote predictions for the {len(test['idx'])} examples of "
                     f"{data_config.test_file} to {path}")
        return {"predictions": path}
    written = []
    for i, submission in enumerate(glue_task.tests):
        path = (submission_path if i == 0 and submission_path else
                os.path.join(os.path.dirname(submission_path), f"{submission.file}.tsv")
                if submission_path else RunFolder(trained.config.run.model_dir).submission(
                    submission.file))
        other = submission.dataset != data_config.dataset
        config = (dataclasses.replace(data_config, dataset=submission.dataset,
                                      text_column=",".join(glue_task.texts)) if other
                  else data_config)
        split = test_split if i == 0 else submission.split
        test = predict_split(trained, split, config, reading, show_progress=show_progress,
                             same_data=not other)
        write_glue_submission(path, test["idx"], trained.dataset.target.submitted(
            test, glue_task.named_labels))
        logging.info(f"Wrote GLUE predictions for {len(test['idx'])} {split} examples to {path}")
        written.append(path)
    return {"submission": written[0], "submissions": written}
