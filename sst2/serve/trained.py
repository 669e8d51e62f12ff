"""A trained run, restored: evaluate it, write GLUE's submission file, export it.

Example:
    >>> import os
    >>> trained = restore(trained_dir, "best", log=lambda message: None)
    >>> type(trained.head).__name__, os.path.basename(trained.checkpoint_path)
    ('ClassifierHead', 'best-...')
    >>> result = evaluate(trained, submission_path=os.path.join(tmp_dir, "SST-2.tsv"),
    ...                   log=lambda message: None)
    >>> result["examples"], open(result["submission"]).readline()
    (64, 'index\\tprediction\\n')
"""

import dataclasses
import json

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from sst2.fit import averaging, metrics

from sst2.model import precision, presets
from sst2.model.backbone import FeatureSpec
from sst2.fit.checkpoint import RunCheckpoint
from sst2.run.config import DataConfig, ReadingConfig, TrainConfig
from sst2.run.config_file import load_config, load_dataset_info, load_precisions
from sst2.text.datasets import SST2_INFO, DatasetInfo, open_dataset
from sst2.run.errors import UserError
from sst2.run.files import write_atomically
from sst2.model.head import ClassifierHead, build_head
from sst2.fit.optimization import make_optimizer
from sst2.run.run_folder import RunFolder


@dataclasses.dataclass
class TrainedModel:
    """A restored run: everything needed to predict, evaluate or export."""

    config: TrainConfig
    preprocessor: keras.layers.Layer
    backbone: keras.Model
    head: ClassifierHead
    spec: FeatureSpec
    checkpoint_path: str
    dataset: DatasetInfo = SST2_INFO

    def export(self, export_root: str | None = None,
               reading: ReadingConfig = ReadingConfig()) -> str:
        """Writes the serving SavedModel (see `sst2.serve.serving`); returns its folder."""
        from sst2.serve import serving

        return serving.export_saved_model(
            self.preprocessor, self.backbone, self.head, self.spec,
            export_root or RunFolder(self.config.run.model_dir).export, reading=reading,
            dataset=self.dataset)


def restore(model_dir: str, which: str = "best", config: TrainConfig | None = None,
            log=print) -> TrainedModel:
    """Rebuilds a trained model from `model_dir`'s `best` or `latest` checkpoint, or a path.

    With a weight average (`--ema_decay`), the head holds the average: what was
    evaluated is what is served.
    """
    # The run folder is the one given: a moved or copied run reads and writes there.
    config = (config or load_config(model_dir)).replace(run={"model_dir": model_dir})
    dataset = load_dataset_info(model_dir)
    model_config = config.model
    preprocessor = presets.load_preprocessor(model_config.preset, model_config.sequence_length)
    # As the run computed: its recorded precisions (runs from before: resolved here).
    precisions = precision.for_run(model_config.precision,
                                   presets.layer_shape(model_config.preset),
                                   model_config.trainable_layers, load_precisions(model_dir))
    backbone = presets.load_backbone(model_config.preset, dtype=precisions["encode"])
    head = build_head(model_config, backbone, seed=config.optimization.seed,
                      num_classes=dataset.num_classes, unfrozen_precision=precisions["train"])
    # The optimizer's variables must line up with the checkpoint's (a schedule
    # replaces the learning-rate variable; groups add optimizers): build the same kind.
    optimizer = make_optimizer(config.optimization, head, total_steps=1)
    optimizer.build(head.trainable_variables)  # its slots take the checkpoint's values
    weight_average = averaging.from_decay(config.optimization.ema_decay)
    if weight_average is not None:
        weight_average.build(head.trainable_variables)
    ckpt = RunCheckpoint(model_dir, head, optimizer, log=log, weight_average=weight_average)
    try:
        if which == "best":
            path = ckpt.restore_best()
        elif which == "latest":
            if ckpt.restore_latest() is None:
                raise FileNotFoundError
            path = ckpt.restored_path
        else:
            ckpt.checkpoint.read(which).expect_partial()
            path = which
    except (FileNotFoundError, tf.errors.OpError, ValueError) as e:
        raise UserError(f"No usable checkpoint ({which}) in {model_dir}: "
                        f"{e or 'none saved yet'}") from e
    if weight_average is not None:
        weight_average.copy_to(head.trainable_variables)  # serve what was evaluated
    return TrainedModel(config, preprocessor, backbone, head, FeatureSpec.of(model_config), path,
                        dataset)


# GLUE tasks whose submission files hold class names, not ids.
GLUE_NAMED_LABELS = {"QNLI", "RTE"}


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


def write_glue_submission(path: str, idx: np.ndarray, predictions: np.ndarray) -> None:
    """GLUE's submission format, `index<TAB>prediction` sorted by index, written atomically."""
    def write(f):
        f.write("index\tprediction\n")
        for i in np.argsort(idx):
            f.write(f"{int(idx[i])}\t{predictions[i]}\n")

    write_atomically(path, write)


def write_predictions(path: str, scored: dict, label_names: tuple) -> None:
    """One JSON object per example, in the file's order: `line` (where the example
    starts in its file), `label`, `label_id`, `probabilities`; written atomically."""
    def write(f):
        for line, probabilities in zip(scored["idx"], scored["probabilities"]):
            label_id = int(probabilities.argmax())
            f.write(json.dumps({"line": int(line), "label": label_names[label_id],
                                "label_id": label_id,
                                "probabilities": [round(float(p), 6) for p in probabilities]},
                               ensure_ascii=False) + "\n")

    write_atomically(path, write, encoding="utf-8")


def predict_split(trained: TrainedModel, split: str, data_config: DataConfig | None = None,
                  reading: ReadingConfig = ReadingConfig(), batch_size: int = 256,
                  show_progress: bool = True) -> dict[str, np.ndarray]:
    """`probabilities`, `label` and `idx` of every example of a split of the run's data
    (or `data_config`'s), in its order, computed as the export computes them
    (`sst2.serve.serving`): from the raw text, long texts read in windows."""
    from sst2.serve.serving import make_predict_fn

    info = trained.dataset
    predict = tf.function(
        make_predict_fn(trained.preprocessor, trained.backbone, trained.head, trained.spec,
                        reading, info),
        input_signature=[tf.TensorSpec([None], tf.string)] * len(info.text_features))
    dataset = open_dataset(data_config or trained.config.data, log=lambda message: None)
    if dataset.info.identity != info.identity:  # e.g. a training file changed since
        changed = sorted(k for k in set(info.identity) | set(dataset.info.identity)
                         if info.identity.get(k) != dataset.info.identity.get(k))
        raise UserError(f"The data is not what {trained.config.run.model_dir} was trained on "
                        f"({', '.join(changed)} changed: the run's "
                        f"{[info.identity.get(k) for k in changed]}, now "
                        f"{[dataset.info.identity.get(k) for k in changed]}).")
    if dataset.info.label_names != info.label_names:
        raise UserError(f"The data's classes ({', '.join(dataset.info.label_names)}) are not "
                        f"the model's ({', '.join(info.label_names)}).")
    parts = {"probabilities": [], "label": [], "idx": []}
    total = -(-dataset.size(split) // batch_size)
    for batch in tqdm(dataset.load(split).batch(batch_size), total=total, desc=split,
                      leave=False, disable=not show_progress):
        texts = [batch["text"]] + ([batch["text_pair"]] if "text_pair" in batch else [])
        parts["probabilities"].append(predict(*texts)["probabilities"].numpy())
        parts["label"].append(batch["label"].numpy())
        parts["idx"].append(batch["idx"].numpy())
    if not parts["idx"]:
        raise UserError(f"The split {split!r} is empty.")
    return {name: np.concatenate(values) for name, values in parts.items()}


def evaluate(trained: TrainedModel, data_dir: str | None = None, eval_split: str = "validation",
             test_split: str = "test", submission_path: str | None = None,
             reading: ReadingConfig = ReadingConfig(), eval_file: str | None = None,
             test_file: str | None = None, log=print) -> dict:
    """Loss, accuracy, macro-F1 and MCC on `eval_split` (or `eval_file`); for GLUE
    datasets, the submission file (e.g. `SST-2.tsv`) for `test_split`; for local files
    with a `--test_file`, `predictions.jsonl` (`write_predictions`).

    Both go through the served computation (`predict_split`), so what is
    reported is what the export answers. Returns `{"split", "loss",
    "accuracy", "macro_f1", "mcc", "examples", "submission"}`.
    """
    data_config = trained.config.data
    changes = {"data_dir": data_dir} if data_dir else {}
    if eval_file:
        changes["eval_file"] = eval_file
    if test_file:
        changes["test_file"] = test_file
    data_config = dataclasses.replace(data_config, **changes)
    if not data_dir and not data_config.train_file:
        _check_recorded_data_dir(data_config)
    show_progress = trained.config.run.progress
    scored = predict_split(trained, eval_split, data_config, reading,
                           show_progress=show_progress)
    labels = scored["label"]
    if (labels < 0).any():
        raise UserError(f"--eval_split={eval_split!r} has {int((labels < 0).sum())} unlabelled "
                        "examples (GLUE's test split has no labels): evaluate on a labelled "
                        "split, e.g. validation.")
    result = metrics.score(scored["probabilities"], labels)
    log(f"{eval_file or eval_split}: " + ", ".join(
        f"{metric.label} {result[name]:.4f}" for name, metric in metrics.METRICS.items())
        + f" ({result['examples']} examples, checkpoint {trained.checkpoint_path})")
    result = {"split": eval_split, **result, "submission": None}
    return {**result, **_write_test_outputs(trained, data_config, test_split, reading,
                                             submission_path, show_progress, log)}


def _write_test_outputs(trained: TrainedModel, data_config: DataConfig, test_split: str,
                        reading: ReadingConfig, submission_path: str | None,
                        show_progress: bool, log) -> dict:
    """GLUE's submission file for a GLUE dataset; `predictions.jsonl` for a local
    `--test_file`; nothing otherwise."""
    task = trained.dataset.glue_task
    if task is None and not data_config.test_file:
        return {}
    test = predict_split(trained, test_split, data_config, reading, show_progress=show_progress)
    if task is None:
        path = RunFolder(trained.config.run.model_dir).predictions
        write_predictions(path, test, trained.dataset.label_names)
        log(f"Wrote predictions for the {len(test['idx'])} examples of "
            f"{data_config.test_file} to {path}")
        return {"predictions": path}
    submission_path = submission_path or RunFolder(trained.config.run.model_dir).submission(
        task)
    predictions = test["probabilities"].argmax(-1)
    if task in GLUE_NAMED_LABELS:  # these tasks' submissions name the class
        predictions = np.asarray(trained.dataset.label_names)[predictions]
    write_glue_submission(submission_path, test["idx"], predictions)
    log(f"Wrote GLUE predictions for {len(test['idx'])} {test_split} examples to "
        f"{submission_path}")
    return {"submission": submission_path}
