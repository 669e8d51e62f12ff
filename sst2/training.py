"""One training run, assembled: data -> tokens -> (cached) features -> head -> loop -> export.

`run(config)` trains, or resumes, the run in `config.run.model_dir` and
returns its metrics. Every piece it wires is its own module: `inputs` (batch
sources), `head`, `optimization`, `loop` (the steps and the epoch loop),
`callbacks` (checkpoints, summaries), `trained` (restore and export).

Example:
    >>> from sst2.config import DataConfig, ModelConfig, OptimizationConfig, RunConfig
    >>> config = TrainConfig(
    ...     data=DataConfig(data_dir=data_dir),
    ...     model=ModelConfig(preset=preset, sequence_length=16, pooling="mean"),
    ...     optimization=OptimizationConfig(epochs=1, batch_size=16),
    ...     run=RunConfig(model_dir=tmp_dir, progress=False, export=False))
    >>> result = run(config, log=lambda message: None)
    >>> [record["epoch"] for record in result["epochs"]], result["test"]["examples"]
    ([1], 64)
"""

import contextlib
import os
import time

import keras
import numpy as np
import tensorflow as tf

from sst2 import averaging, distribute, hardware, precision, presets
from sst2.assets import check_assets
from sst2.backbone import FeatureSpec
from sst2.callbacks import CheckpointCallback, Interrupted, SummaryCallback
from sst2.checkpoint import RunCheckpoint
from sst2.config import TrainConfig
from sst2.config_file import (config_path, load_config, load_dataset_info, load_precisions,
                              load_train_buckets, save_config, to_dict)
from sst2.datasets import DatasetInfo, TextDataset, open_dataset
from sst2.encoder import FeatureEncoder
from sst2.errors import UserError
from sst2.files import load_json, open_for_writing, remove_entry
from sst2.head import build_head
from sst2.inputs import Encoding, cache_dir, split_source, tokenize_split
from sst2.loop import fit
from sst2.steps import Trainer
from sst2.optimization import make_optimizer
from sst2.runlock import RunLock
from sst2.run_folder import RunFolder
from sst2.trained import restore



def run(config: TrainConfig, log=print) -> dict:
    """Trains (or resumes) the run in `config.run.model_dir`; returns the final metrics.

    Returns `{"epochs": [one record per epoch], "test": final validation metrics}`.
    """
    started = time.time()
    config = with_absolute_paths(config)
    # First: a multi-worker strategy must exist before the TensorFlow runtime starts.
    strategy = distribute.make_strategy(config.run.strategy, config.run.tpu)
    worker = distribute.worker_info(strategy)
    if not worker.is_chief:
        log = _silent  # the chief speaks for the cluster
    check_assets(config.model.preset)
    keras.utils.set_random_seed(config.optimization.seed)
    tf.config.experimental.enable_op_determinism()
    model_dir = config.run.model_dir
    existed = os.path.exists(model_dir)
    os.makedirs(model_dir, exist_ok=True)
    with contextlib.ExitStack() as cleanup:
        if worker.is_chief:
            cleanup.enter_context(_no_trace_unless_started(model_dir, existed))
        _check_writable(model_dir)
        out_dir = distribute.write_dir(model_dir, worker)
        cleanup.callback(distribute.remove_write_dir, out_dir, model_dir)
        if worker.is_chief:  # the chief holds the run folder; others write to temporary ones
            cleanup.enter_context(RunLock(model_dir))
        _start_or_check_resume(config, worker, log)
        # The data before the model: a bad file is reported in seconds.
        dataset = open_dataset(config.data, log=log)
        _check_same_dataset(config, dataset.info)
        precisions = precision.for_run(
            config.model.precision, presets.layer_shape(config.model.preset),
            config.model.trainable_layers,
            recorded=None if config.run.restart else load_precisions(model_dir), log=log)
        spec = FeatureSpec.of(config.model)
        preprocessor = presets.load_preprocessor(config.model.preset,
                                                 config.model.sequence_length)
        backbone = presets.load_backbone(config.model.preset, dtype=precisions["encode"])
        _check_sequence_length(config.model.sequence_length, backbone)
        # The encode pass runs on every local replica's device.
        encoder = FeatureEncoder.for_backbone(
            backbone, spec, hardware.backbone_jit(config.run.jit_compile),
            devices=list(strategy.extended.worker_devices))
        encoding = Encoding(encoder, precisions["encode"], backbone.num_layers)
        global_batch = config.optimization.batch_size * strategy.num_replicas_in_sync

        train_source, eval_source, facts = _sources(config, dataset, preprocessor, encoding,
                                                    backbone, global_batch, worker, precisions,
                                                    log)
        with strategy.scope():
            head = build_head(config.model, backbone, config.optimization.seed,
                              copy_unfrozen=True, num_classes=dataset.info.num_classes,
                              unfrozen_precision=precisions["train"])
            total_steps = sum(train_source.num_batches(e)
                              for e in range(config.optimization.epochs))
            optimizer = make_optimizer(config.optimization, head, total_steps)
        weight_average = averaging.from_decay(config.optimization.ema_decay)
        trainer = Trainer(head, optimizer, global_batch, strategy=strategy,
                          jit_compile=hardware.head_jit(config.run.jit_compile,
                                                        spec.has_transformer_blocks),
                          weight_average=weight_average,
                          rdrop_alpha=config.optimization.rdrop_alpha,
                          class_weights=facts["class_weights"])
        trainer.build(spec.feature_shape(backbone))

        checkpoint = RunCheckpoint(out_dir, head, optimizer, keep=config.run.keep_checkpoints,
                                   log=log, read_dir=model_dir, weight_average=weight_average)
        head_started = time.time()
        final, summaries, history = _train(config, dataset.info, trainer, checkpoint,
                                           train_source, eval_source, out_dir, worker, facts,
                                           log)
        summaries.write(test={"split": config.data.eval_split, **final},
                        head_seconds=time.time() - head_started,
                        wall_seconds=time.time() - started)
        if config.run.export and worker.is_chief:
            trained = restore(model_dir, "best", config=config, log=log)
            path = trained.export()
            log(f"Exported the best checkpoint ({os.path.basename(trained.checkpoint_path)}) "
                f"as a SavedModel: {path}")
            summaries.write(export_dir=path)
        return {"epochs": history, "test": final}


def _silent(message: str) -> None:
    pass


@contextlib.contextmanager
def _no_trace_unless_started(model_dir: str, existed: bool):
    """A run that fails before it has saved its config (bad data, no model) removes what
    it made: the lock, the empty checkpoints folder, and the run folder if it made that
    and it is empty. A partial feature cache stays: the next run resumes it."""
    try:
        yield
    except BaseException:
        if not os.path.exists(config_path(model_dir)):
            for name in ("lock", "checkpoints"):
                path = getattr(RunFolder(model_dir), name)
                if os.path.isfile(path) or (os.path.isdir(path) and not os.listdir(path)):
                    remove_entry(path)
            if not existed and os.path.isdir(model_dir) and not os.listdir(model_dir):
                os.rmdir(model_dir)
        raise


def with_absolute_paths(config: TrainConfig) -> TrainConfig:
    """Local paths made absolute, so that a run folder works from any working directory.

    (The run folder itself is whatever `--model_dir` a later command is given: a moved
    or copied run keeps working.)
    """
    def absolute(path):
        return os.path.abspath(os.path.expanduser(path)) if path else path

    preset = config.model.preset
    if os.path.isdir(os.path.expanduser(preset)):
        preset = absolute(preset)
    files = {name: absolute(getattr(config.data, name))
             for name in ("train_file", "eval_file", "test_file")}
    return config.replace(model={"preset": preset},
                          data={"data_dir": absolute(config.data.data_dir), **files},
                          run={"cache_dir": absolute(config.run.cache_dir)})


def _check_writable(model_dir: str) -> None:
    """Writes and removes a file named as long as the longest a run writes, so that a
    read-only folder or a path too long fails now, not at the first checkpoint."""
    os.makedirs(RunFolder(model_dir).checkpoints, exist_ok=True)
    probe = RunFolder(model_dir).checkpoint_probe(os.getpid())
    with open_for_writing(probe):
        pass
    os.remove(probe)


def _epochs_done(model_dir: str) -> int:
    path = RunFolder(model_dir).metrics
    return len(load_json(path).get("epochs", [])) if os.path.exists(path) else 0


def _start_or_check_resume(config: TrainConfig, worker: distribute.WorkerInfo, log) -> None:
    """`--restart` clears the run's outputs; otherwise a saved config must match this one.

    Another `--epochs` continues the same run only where that is exact: more
    epochs at a constant rate. A linear schedule decays to 0 at the last step of
    the epochs it was started with, so changing them would change every step.
    """
    model_dir = config.run.model_dir
    if config.run.restart:
        if worker.is_chief:
            for name in RunFolder.RESTART_REMOVES:
                remove_entry(getattr(RunFolder(model_dir), name))
        return
    if not os.path.exists(config_path(model_dir)):
        return
    saved = load_config(model_dir)
    diffs = config.differences(saved)
    if diffs:
        raise UserError(
            f"{model_dir} holds a run with another configuration:\n  " + "\n  ".join(diffs)
            + "\nUse the same flags to resume, another --model_dir, or --restart to start "
            "over.")
    epochs, saved_epochs = config.optimization.epochs, saved.optimization.epochs
    if epochs == saved_epochs:
        return
    done = _epochs_done(model_dir)
    if epochs < done:
        raise UserError(f"{model_dir} has already trained {done} epochs, more than "
                        f"--epochs={epochs}; its files are left as they are. Evaluate it with "
                        f"sst2.evaluate, or use --restart to train {epochs} epochs from scratch.")
    if config.optimization.lr_schedule != "constant":
        raise UserError(
            f"{model_dir} was started with --epochs={saved_epochs}, and its "
            f"--lr_schedule={config.optimization.lr_schedule} decays to 0 at the last step of "
            f"those epochs: continuing with --epochs={epochs} could not be the same run. Use "
            f"--epochs={saved_epochs} to resume, or --restart (with --lr_schedule=constant, a "
            "run can later be extended).")
    log(f"Extending the run from {saved_epochs} to {epochs} epochs (constant learning rate).")


def _check_same_dataset(config: TrainConfig, info: DatasetInfo) -> None:
    """A resumed run must read the data it started with (a changed training file is a
    new run)."""
    model_dir = config.run.model_dir
    if config.run.restart or not os.path.exists(config_path(model_dir)):
        return
    saved = load_dataset_info(model_dir)
    if saved.identity != info.identity:
        changed = sorted(k for k in set(saved.identity) | set(info.identity)
                         if saved.identity.get(k) != info.identity.get(k))
        raise UserError(f"{model_dir} holds a run trained on other data ({', '.join(changed)} "
                        f"changed: checkpoint {[saved.identity.get(k) for k in changed]}, now "
                        f"{[info.identity.get(k) for k in changed]}). Use another --model_dir, "
                        "or --restart to train on this data from scratch.")


def class_weights(labels, num_classes: int):
    """`balanced` class weights: examples / (classes x the class's examples); 0 for a class
    without examples.

    >>> class_weights(np.array([0, 0, 0, 1]), 2).tolist()
    [0.6666666666666666, 2.0]
    """
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return np.divide(len(labels), num_classes * counts, out=np.zeros_like(counts),
                     where=counts > 0)


def _check_sequence_length(sequence_length: int, backbone) -> None:
    limit = backbone.max_sequence_length
    if sequence_length > limit:
        raise UserError(f"--sequence_length={sequence_length} is out of range: this preset's "
                        f"position embeddings cover at most {limit} tokens.")


def _sources(config: TrainConfig, dataset: TextDataset, preprocessor, encoding: Encoding,
             backbone, global_batch: int, worker: distribute.WorkerInfo, precisions: dict,
             log) -> tuple:
    """The train and eval batch sources, and the facts about them `metrics.json` records."""
    data_config, optimization, info = config.data, config.optimization, dataset.info
    log(f"Tokenizing {data_config.train_split} and {data_config.eval_split} of "
        f"{data_config.train_file or info.name} "
        f"(sequence length {config.model.sequence_length})...")
    tokenize_started = time.time()
    train_tokens = tokenize_split(dataset, data_config.train_split, preprocessor,
                                  labelled="--train_split")
    eval_tokens = tokenize_split(dataset, data_config.eval_split, preprocessor,
                                 labelled="--eval_split")
    log(f"{len(train_tokens['label'])} training and {len(eval_tokens['label'])} "
        f"evaluation {'pairs' if info.is_pair else 'sentences'}, {info.num_classes} classes; "
        f"backbone {backbone.num_layers} layers x {backbone.hidden_dim}, "
        f"precision {encoding.precision}.")
    log(f"Head: {FeatureSpec.of(config.model).describe()}; {_describe_optimization(config)}.")

    tokenize_seconds = time.time() - tokenize_started
    encode_started = time.time()
    # A resumed run keeps the buckets it started with: the same batches.
    train_source = split_source(config, data_config.train_split, train_tokens, encoding,
                                shuffle=True, batch_size=global_batch, worker=worker,
                                dataset=info,
                                boundaries=load_train_buckets(config.run.model_dir))
    eval_source = split_source(config, data_config.eval_split, eval_tokens, encoding,
                               batch_size=global_batch, worker=worker, dataset=info)
    encode_seconds = None
    if config.run.cache_features:
        encode_seconds = time.time() - encode_started
        log(f"Features ready in {encode_seconds:.1f}s (cache: {cache_dir(config)}).")
    buckets = {"train": train_source.boundaries, "eval": eval_source.boundaries}
    if buckets["train"]:
        log(f"Length buckets (one compiled shape each): training {buckets['train']}, "
            f"evaluation {buckets['eval']}.")
    facts = {"precision": encoding.precision, "precisions": precisions,
             "length_buckets": buckets if buckets["train"] else None,
             "learning_rate": optimization.learning_rate,
             "backbone_learning_rate": (optimization.backbone_learning_rate
                                        if config.model.trainable_layers else None),
             "train_examples": len(train_tokens["label"]),
             "eval_examples": len(eval_tokens["label"]),
             "tokenize_seconds": tokenize_seconds, "encode_seconds": encode_seconds,
             "dataset": info.to_dict(),
             "class_weights": (class_weights(train_tokens["label"], info.num_classes).tolist()
                               if optimization.class_weights == "balanced" else None)}
    return train_source, eval_source, facts


def _describe_optimization(config: TrainConfig) -> str:
    optimization = config.optimization
    text = f"learning rate {optimization.learning_rate:g}"
    if config.model.trainable_layers:
        text += f" (unfrozen layers {optimization.backbone_learning_rate:g})"
    text += f", {optimization.lr_schedule}"
    if optimization.rdrop_alpha:
        text += f"; R-Drop (alpha {optimization.rdrop_alpha:g})"
    if optimization.ema_decay:
        text += f"; evaluated with a weight average (EMA decay {optimization.ema_decay:g})"
    return text


def _train(config: TrainConfig, info: DatasetInfo, trainer: Trainer, checkpoint: RunCheckpoint,
           train_source, eval_source, out_dir: str, worker: distribute.WorkerInfo, facts: dict,
           log) -> tuple:
    """Resumes from the latest checkpoint, runs the epochs, evaluates; returns
    `(final metrics, the summary callback, every epoch's record)`."""
    model_dir = config.run.model_dir
    restored = checkpoint.restore_latest()
    start, epoch_sums = restored if restored is not None else (None, None)
    if start is not None:
        log(f"Resuming from step {start.step} (epoch {start.epoch + 1}, batch {start.batch}) "
            f"in {checkpoint.manager.directory}.")
    if worker.is_chief:
        save_config(model_dir, config, info, train_source.boundaries, facts["precisions"])
    metrics_path = RunFolder(model_dir).metrics
    history = (load_json(metrics_path).get("epochs", [])
               if restored and os.path.exists(metrics_path) else [])
    summaries = SummaryCallback(out_dir, history, {
        "config": to_dict(config), **facts,
        "replicas": trainer.strategy.num_replicas_in_sync, "workers": worker.count})
    checkpoints = CheckpointCallback(checkpoint=checkpoint,
                                     every_steps=config.run.checkpoint_every_steps,
                                     best_metric=config.optimization.best_metric)
    try:
        with checkpoints.saving_on_signals():
            fit(trainer, train_source, eval_source, config.optimization.epochs, start=start,
                epoch_sums=epoch_sums, callbacks=[checkpoints, summaries],
                show_progress=config.run.progress, log=log,
                steps_per_call=config.run.steps_per_call)
    except Interrupted as e:
        raise UserError(f"Stopped by {e}; checkpoint saved in {checkpoint.manager.directory}. "
                        "Run the same command again to resume.") from None
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
            tf.errors.CancelledError, tf.errors.InternalError) as e:
        if worker.count == 1:
            raise
        reason = str(e).strip().splitlines()[0][:200]
        raise UserError(f"Worker {worker.index}: another worker stopped responding ({reason}). "
                        f"Checkpoints are in {model_dir}/checkpoints; restart every "
                        "worker with the same command to resume.") from None

    final = trainer.evaluate(eval_source, show_progress=False)
    log(f"Test Loss: {final['loss']:.4f}")
    log(f"Test Accuracy: {final['accuracy']:.4f}")
    log(f"Test Macro-F1: {final['macro_f1']:.4f}, MCC: {final['mcc']:.4f}")
    if info.glue_task:
        log(f"(GLUE's {info.glue_task} test split has no labels, so the test metrics above are "
            f"computed on {config.data.eval_split!r}.)")
    return final, summaries, history
