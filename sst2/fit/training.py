"""One training run, assembled: data -> tokens -> (cached) features -> head -> loop -> export.

`run(config)` trains, or resumes, the run in `config.run.model_dir` and
returns its metrics. Every piece it wires is its own module: `inputs` (batch
sources), `head`, `optimization`, `loop` (the steps and the epoch loop),
`callbacks` (checkpoints, summaries); what follows training (the export) is
handed in as actions.

Example:
    >>> from sst2.run.config import DataConfig, ModelConfig, OptimizationConfig, RunConfig
    >>> config = TrainConfig(
    ...     data=DataConfig(data_dir=data_dir),
    ...     model=ModelConfig(preset=preset, sequence_length=16, pooling="mean"),
    ...     optimization=OptimizationConfig(epochs=1, batch_size=16),
    ...     run=RunConfig(model_dir=tmp_dir, progress=False, export=False))
    >>> result = run(config)
    >>> [record["epoch"] for record in result["epochs"]], result["test"]["examples"]
    ([1], 64)
"""

import contextlib
import os
import time

import keras
import tensorflow as tf
from absl import logging

from sst2.fit import averaging, distribute
from sst2.fit.callbacks import CheckpointCallback, Interrupted, SummaryCallback
from sst2.fit.checkpoint import RunCheckpoint
from sst2.fit.frozen_model import load_model
from sst2.fit.inputs import RunInputs, run_sources
from sst2.fit.loop import fit
from sst2.fit.optimization import make_optimizer
from sst2.fit.resume import check_same_dataset, resolve_from_data, start_or_check_resume
from sst2.fit.steps import Trainer
from sst2.model import hardware
from sst2.model.assembly import head_for
from sst2.model.assets import check_assets
from sst2.model.backbone import FeatureSpec
from sst2.run import log_lines, targets
from sst2.run.config import TrainConfig
from sst2.run.config_file import save_config, to_dict
from sst2.run.errors import UserError
from sst2.run.files import load_json
from sst2.run.metrics import METRICS
from sst2.run.run_folder import RunFolder, check_writable, no_trace_unless_started
from sst2.run.runlock import RunLock
from sst2.run.worker import WorkerInfo, remove_write_dir, write_dir
from sst2.text.dataset_info import DatasetInfo
from sst2.text.datasets import open_dataset
from sst2.text.glue_tasks import OFFICIAL_METRICS


def run(config: TrainConfig, build_trainer=None, actions=()) -> dict:
    """Trains (or resumes) the run in `config.run.model_dir`; returns the final metrics.

    Returns `{"epochs": [one record per epoch], "test": final validation metrics}`.
    `build_trainer` (default: one head, `_build_trainer`'s arguments) builds the
    trainer: the head search passes one of many heads trained together. `actions`
    run on the chief after the last evaluation, each as `action(config, record)`
    (`record(**fields)` adds to metrics.json): `sst2.train` hands in the export's
    (`sst2.serve.publish`).
    """
    started = time.time()
    config = with_absolute_paths(config)
    # First: a multi-worker strategy must exist before the TensorFlow runtime starts.
    strategy = distribute.make_strategy(config.run.strategy, config.run.tpu)
    worker = distribute.worker_info(strategy)
    check_assets(config.model.preset)
    keras.utils.set_random_seed(config.optimization.seed)
    tf.config.experimental.enable_op_determinism()
    model_dir = config.run.model_dir
    with contextlib.ExitStack() as cleanup:
        if not worker.is_chief:
            cleanup.enter_context(log_lines.quiet())  # the chief speaks for the cluster
        out_dir = _hold_run_folder(config, worker, cleanup)
        # The data before the model: a bad file is reported in seconds.
        dataset = open_dataset(config.data)
        check_same_dataset(config, dataset.info)
        config = resolve_from_data(config, dataset.info, targets.best_metric(
            config.optimization.best_metric, dataset.info.task,
            OFFICIAL_METRICS.get(dataset.info.glue_task), dataset.info.num_classes))
        precisions, preprocessor, backbone, encoding = load_model(config, strategy, dataset, worker)
        # The head starts from the seed alone, however many backbones loading took (a
        # precision trial loads two): the same seed gives the same run, bit for bit.
        keras.utils.set_random_seed(config.optimization.seed)
        global_batch = config.optimization.batch_size * strategy.num_replicas_in_sync
        inputs = run_sources(config, dataset, preprocessor, encoding, backbone, global_batch,
                             worker, precisions)
        trainer = (build_trainer or _build_trainer)(config, strategy, backbone, inputs)
        checkpoint = RunCheckpoint(out_dir, trainer.head, trainer.optimizer,
                                   keep=config.run.keep_checkpoints, read_dir=model_dir,
                                   weight_average=trainer.weight_average)
        head_started = time.time()
        final, summaries, history = _train(config, trainer, checkpoint, inputs, out_dir,
                                           worker)
        summaries.write(test={"split": config.data.eval_split, **final},
                        head_seconds=time.time() - head_started,
                        wall_seconds=time.time() - started)
        if worker.is_chief:
            for action in actions:
                action(config, summaries.write)
        return {"epochs": history, "test": final}


def _hold_run_folder(config: TrainConfig, worker, cleanup: contextlib.ExitStack) -> str:
    """Makes and locks the run folder (the chief), checks a resume; returns where this
    process writes (the run folder, or a worker's temporary one)."""
    model_dir = config.run.model_dir
    existed = os.path.exists(model_dir)
    os.makedirs(model_dir, exist_ok=True)
    if worker.is_chief:
        cleanup.enter_context(no_trace_unless_started(model_dir, existed))
    check_writable(model_dir)
    out_dir = write_dir(model_dir, worker)
    cleanup.callback(remove_write_dir, out_dir, model_dir)
    if worker.is_chief:  # the chief holds the run folder; others write to temporary ones
        cleanup.enter_context(RunLock(model_dir))
    start_or_check_resume(config, worker)
    return out_dir


def _build_trainer(config: TrainConfig, strategy, backbone, inputs: RunInputs) -> Trainer:
    """The head, its optimizer and weight average, and the compiled steps, built."""
    spec = FeatureSpec.of(config.model)
    with strategy.scope():
        head = head_for(config, backbone, inputs.info, inputs.precisions, copy_unfrozen=True)
        total_steps = sum(inputs.train.num_batches(e)
                          for e in range(config.optimization.epochs))
        optimizer = make_optimizer(config.optimization, head, total_steps)
    trainer = Trainer(head, optimizer, inputs.global_batch,
                      weight_average=averaging.from_decay(config.optimization.ema_decay),
                      rdrop_alpha=config.optimization.rdrop_alpha,
                      **trainer_options(config, strategy, inputs))
    trainer.build(spec.feature_shape(backbone))
    return trainer


def trainer_options(config: TrainConfig, strategy, inputs: RunInputs) -> dict:
    """What every trainer of a run takes from its config and data: the strategy, XLA,
    class weights, its target (and a number's scale) and a fixed threshold."""
    spec = FeatureSpec.of(config.model)
    info = inputs.info
    return {"strategy": strategy,
            "jit_compile": hardware.head_jit(config.run.jit_compile, spec.has_transformer_blocks),
            "class_weights": inputs.class_weights, "target": info.target,
            "target_scale": targets.TargetScale.from_record(info.target_scale),
            "threshold": config.model.threshold}


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
             for name in ("train_file", "eval_file", "test_file", "label_names_file")}
    return config.replace(model={"preset": preset},
                          data={"data_dir": absolute(config.data.data_dir), **files},
                          run={"cache_dir": absolute(config.run.cache_dir)})


def _train(config: TrainConfig, trainer: Trainer, checkpoint: RunCheckpoint, inputs: RunInputs,
           out_dir: str, worker: WorkerInfo) -> tuple:
    """Resumes from the latest checkpoint, runs the epochs, evaluates; returns
    `(final metrics, the summary callback, every epoch's record)`."""
    model_dir = config.run.model_dir
    restored = checkpoint.restore_latest()
    start, epoch_sums = restored if restored is not None else (None, None)
    if start is not None:
        logging.info(f"Resuming from step {start.step} (epoch {start.epoch + 1}, "
                     f"batch {start.batch}) in {checkpoint.manager.directory}.")
    if worker.is_chief:
        save_config(model_dir, config, inputs.info, inputs.train.boundaries, inputs.precisions)
    metrics_path = RunFolder(model_dir).metrics
    history = (load_json(metrics_path).get("epochs", [])
               if restored and os.path.exists(metrics_path) else [])
    summaries = SummaryCallback(out_dir, history, {
        "config": to_dict(config), **inputs.facts,
        "replicas": trainer.strategy.num_replicas_in_sync, "workers": worker.count})
    checkpoints = CheckpointCallback(checkpoint=checkpoint,
                                     every_steps=config.run.checkpoint_every_steps,
                                     best_metric=config.optimization.best_metric)
    try:
        with checkpoints.saving_on_signals():
            fit(trainer, inputs.train, inputs.eval, config.optimization.epochs, start=start,
                epoch_sums=epoch_sums, callbacks=[checkpoints, summaries],
                show_progress=config.run.progress,
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

    final = trainer.evaluator.evaluate(inputs.eval, show_progress=False)
    _log_test(config, inputs.info, final)
    return final, summaries, history


def _log_test(config: TrainConfig, info: DatasetInfo, final: dict) -> None:
    """The final evaluation's lines: `Test Loss`, `Test Accuracy` and the rest."""
    logging.info(f"Test Loss: {final['loss']:.4f}")
    if "accuracy" in final:
        logging.info(f"Test Accuracy: {final['accuracy']:.4f}")
    logging.info("Test " + ", ".join(f"{metric.label}: {final[name]:.4f}" for name, metric in
                                     METRICS.items() if name not in ("loss", "accuracy")
                                     and name in final))
    if info.glue_task:
        logging.info(f"(GLUE's {info.glue_task} test split has no labels, so the test metrics "
                     f"above are computed on {config.data.eval_split!r}.)")
