"""One training run, assembled: data → tokens → (cached) features → head → loop.

`TrainConfig` is everything a run depends on; `run(config)` does the run. The
absl entry point `sst2.train` only turns flags into a `TrainConfig`.

Example:
    >>> config = TrainConfig(preset="assets/minilm-distilbert", data_dir="/tmp/tfds",
    ...                      model_dir="/tmp/run", epochs=3)
    >>> result = run(config)
    >>> result["test"]["accuracy"]
"""

import dataclasses
import os
import signal
import time

import keras
import numpy as np
import tensorflow as tf

from sst2 import averaging, data, distribute, features, model, optimization
from sst2.checkpoint import RunCheckpoint
from sst2.errors import UserError
from sst2.files import load_json, save_json
from sst2.loop import (CachedFeatureSource, CachedTokenSource, Callback, Position,
                       TokenSource, Trainer, example_features, fit)


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on. See `sst2.train --help` for each field."""

    model_dir: str = "runs/sst2"
    preset: str = model.DEFAULT_PRESET
    data_dir: str | None = None
    train_split: str = "train"
    eval_split: str = "validation"
    epochs: int = 3
    batch_size: int = 32
    # None: the measured defaults of `optimizer_settings`.
    learning_rate: float | None = None
    backbone_learning_rate: float | None = None
    lr_schedule: str = "linear"
    # Exponential moving average of the trained weights, for evaluation and export (0: off).
    ema_decay: float = 0.0
    # R-Drop's weight on the divergence between two dropout passes (0: off).
    rdrop_alpha: float = 0.0
    seed: int = 0
    sequence_length: int = 128
    precision: str = "auto"
    # The default head, chosen by measurement (README, "Heads"): attention pooling
    # over the average of every layer's cached token features, a 256-unit GELU
    # layer, dropout.
    pooling: str = "attention"
    layers: str = "all"
    head_hidden: int = 256
    head_layers: int = 0
    trainable_layers: int = 0
    dropout: float = 0.1
    cache_features: bool = True
    cache_dir: str | None = None
    encode_batch_size: int = 128
    jit_compile: bool = True
    strategy: str = "auto"
    tpu: str | None = None
    checkpoint_every_steps: int = 500
    keep_checkpoints: int = 3
    restart: bool = False
    download: bool = True
    export: bool = True
    show_progress: bool = True

    # Fields that define the trained model: resuming with other values would mix two runs.
    MODEL_FIELDS = ("preset", "sequence_length", "precision", "pooling", "layers",
                    "head_hidden", "head_layers", "trainable_layers", "dropout", "train_split",
                    "batch_size", "seed", "ema_decay", "rdrop_alpha")

    def feature_spec(self) -> model.FeatureSpec:
        return model.FeatureSpec(pooling=self.pooling, layers=self.layers,
                                 head_layers=self.head_layers,
                                 trainable_layers=self.trainable_layers)


def resolve_precision(precision: str) -> str:
    """`auto` → the fastest backbone precision measured for this kind of device.

    Measured on a 2-core AVX512-BF16 CPU (see README): bfloat16 matmuls run at
    ~2× float32 through oneDNN, so bfloat16 wins there; GPUs and TPUs with
    bfloat16 units win too. Elsewhere float32 is the safe choice.
    """
    if precision != "auto":
        if precision not in ("float32", "bfloat16"):
            raise UserError(f"--precision must be auto, float32 or bfloat16, not {precision!r}")
        return precision
    if tf.config.list_logical_devices("TPU") or tf.config.list_logical_devices("GPU"):
        return "bfloat16"
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return "float32"
    return "bfloat16" if (" avx512_bf16" in flags or " amx_bf16" in flags) else "float32"


def optimizer_settings(config: TrainConfig) -> tuple[float, float | None, str]:
    """The head's learning rate, the unfrozen layers' (None without any), and the schedule.

    Defaults measured on the stand-in, 3 epochs (README, "Heads"): 1e-3 for
    the head's new layers, with or without unfrozen layers; 2e-4 for the
    unfrozen copies of pretrained layers (0.877 against 0.870 with 2e-4 for
    everything, and 0.869 with 1e-4 for the copies). A linear decay beat a
    constant rate: the same mean over 3 seeds with half the spread.
    """
    if config.lr_schedule not in optimization.SCHEDULES:
        raise UserError(f"--lr_schedule must be constant or linear, not {config.lr_schedule!r}")
    head_rate = config.learning_rate or 1e-3
    backbone_rate = None
    if config.trainable_layers:
        backbone_rate = config.backbone_learning_rate or 2e-4
    return head_rate, backbone_rate, config.lr_schedule


def make_optimizer(config: TrainConfig, head: model.ClassifierHead, total_steps: int):
    """Adam for `head` (built), with the unfrozen layers' own rate when it differs."""
    head_rate, backbone_rate, schedule = optimizer_settings(config)
    if backbone_rate is None or backbone_rate == head_rate:
        return keras.optimizers.Adam(optimization.learning_rate(head_rate, schedule, total_steps))
    copies = {id(v) for layer in head.backbone_copies for v in layer.trainable_weights}
    return optimization.GroupedOptimizer(
        [keras.optimizers.Adam(optimization.learning_rate(rate, schedule, total_steps))
         for rate in (head_rate, backbone_rate)],
        [[v for v in head.trainable_variables if id(v) not in copies],
         [v for v in head.trainable_variables if id(v) in copies]])


def make_weight_average(config: TrainConfig) -> averaging.ExponentialMovingAverage | None:
    """The average of the trained weights that evaluation and export use (None: off)."""
    if not config.ema_decay:
        return None
    return averaging.ExponentialMovingAverage(config.ema_decay)


def check_flags(config: TrainConfig) -> None:
    """Refuses settings that cannot work or would be ignored, before any work starts."""
    if config.backbone_learning_rate is not None and not config.trainable_layers:
        raise UserError("--backbone_learning_rate is the rate of unfrozen backbone layers; "
                        "use it with --trainable_layers=N, or leave it out.")
    for name in ("trainable_layers", "head_layers", "head_hidden"):
        if getattr(config, name) < 0:
            raise UserError(f"--{name} must be 0 or more, not {getattr(config, name)}")
    if config.ema_decay and not 0.0 < config.ema_decay < 1.0:
        raise UserError(f"--ema_decay must be 0 (off) or between 0 and 1, not {config.ema_decay}")
    if config.rdrop_alpha < 0:
        raise UserError(f"--rdrop_alpha must be 0 (off) or more, not {config.rdrop_alpha}")
    if config.rdrop_alpha and not config.dropout:
        raise UserError("--rdrop_alpha compares two dropout passes, which are equal with "
                        "--dropout=0; set --dropout above 0, or leave --rdrop_alpha out.")


def _has_accelerator() -> bool:
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def backbone_jit(jit_compile: bool) -> bool:
    """XLA for the backbone only on accelerators: on CPU it is slower than oneDNN."""
    return jit_compile and _has_accelerator()


def head_jit(jit_compile: bool, spec: model.FeatureSpec) -> bool:
    """XLA for the head's steps, except transformer blocks on CPU.

    Measured on this project's 2-core CPU: a head of two unfrozen layers trains
    at 386 s per epoch with XLA and ~240 s without (XLA's CPU matmuls are
    slower than oneDNN's); small heads gain from XLA's fusion.
    """
    has_blocks = spec.head_layers + spec.trainable_layers > 0
    return jit_compile and (_has_accelerator() or not has_blocks)


def check_assets(config: TrainConfig) -> None:
    """Fails fast, with one message naming every missing asset and the offline options."""
    problems = []
    try:
        data.ensure_prepared(config.data_dir, download=False)
    except UserError:
        if not (config.download and data.can_reach(data.SST2_URL)):
            problems.append(data.missing_data_message(config.data_dir))
    try:
        kind = model.describe_preset(config.preset)
    except UserError as e:
        problems.append(str(e))
    else:
        host = {"builtin": "https://www.kaggle.com", "kaggle": "https://www.kaggle.com",
                "hf": "https://huggingface.co"}.get(kind)
        if host and not data.can_reach(host):
            problems.append(f"The model preset {config.preset!r} must be downloaded from "
                            f"{host}, which cannot be reached.\n{model.OFFLINE_MODEL_HELP}")
    if problems:
        raise UserError("\n\n".join(problems))


class _Interrupted(Exception):
    pass


class CheckpointCallback(Callback):
    """Saves every N steps and at epoch ends; keeps the best; saves on SIGTERM/SIGINT."""

    def __init__(self, ckpt: RunCheckpoint, every_steps: int, log=print):
        self.ckpt = ckpt
        self.every_steps = every_steps
        self.log = log
        self.signal_received = None

    def on_step_end(self, position, epoch_sums):
        if self.signal_received is not None:
            self.ckpt.save(position, epoch_sums)
            raise _Interrupted(self.signal_received)
        if self.every_steps and position.step % self.every_steps == 0:
            self.ckpt.save(position, epoch_sums)

    def on_epoch_end(self, position, record):
        self.ckpt.save(position, None)
        if "val_accuracy" in record and self.ckpt.save_if_best(position, record["val_accuracy"]):
            record["best"] = True


class SummaryCallback(Callback):
    """TensorBoard scalars (per 50 steps and per epoch) and `metrics.json`."""

    def __init__(self, model_dir: str, history: list, extra: dict):
        self.train_writer = tf.summary.create_file_writer(os.path.join(model_dir, "train"))
        self.eval_writer = tf.summary.create_file_writer(os.path.join(model_dir, "eval"))
        self.path = os.path.join(model_dir, "metrics.json")
        self.history = history
        self.extra = extra

    def on_step_end(self, position, epoch_sums):
        if position.step % 50 == 0:
            current = epoch_sums.result()
            with self.train_writer.as_default(step=position.step):
                tf.summary.scalar("running_loss", current["loss"])
                tf.summary.scalar("running_accuracy", current["accuracy"])

    def on_epoch_end(self, position, record):
        with self.train_writer.as_default(step=record["step"]):
            tf.summary.scalar("epoch_loss", record["train_loss"])
            tf.summary.scalar("epoch_accuracy", record["train_accuracy"])
        if "val_loss" in record:
            with self.eval_writer.as_default(step=record["step"]):
                tf.summary.scalar("loss", record["val_loss"])
                tf.summary.scalar("accuracy", record["val_accuracy"])
        self.train_writer.flush()
        self.eval_writer.flush()
        self.history[:] = [r for r in self.history if r["epoch"] != record["epoch"]] + [record]
        self.write()

    def write(self, **more):
        self.extra.update(more)
        save_json(self.path, {**self.extra, "epochs": self.history})


def _check_compatible(config: TrainConfig, saved: TrainConfig) -> None:
    diffs = [f"{k}: checkpoint has {getattr(saved, k)!r}, this run has {getattr(config, k)!r}"
             for k in TrainConfig.MODEL_FIELDS if getattr(saved, k) != getattr(config, k)]
    # Learning rates compare as resolved: an unset rate and its default are the same run.
    names = ("learning_rate", "backbone_learning_rate", "lr_schedule")
    diffs += [f"{name}: checkpoint has {theirs!r}, this run has {ours!r}"
              for name, theirs, ours in zip(names, optimizer_settings(saved),
                                            optimizer_settings(config)) if theirs != ours]
    if diffs:
        raise UserError(
            f"{config.model_dir} holds a run with another configuration:\n  "
            + "\n  ".join(diffs)
            + "\nUse the same flags to resume, another --model_dir, or --restart to start over.")


def build_head(config: TrainConfig, backbone,
               copy_unfrozen: bool = False) -> model.ClassifierHead:
    """The head for `config`, built.

    With `copy_unfrozen` (a new run), the unfrozen layers start as copies of
    the backbone's top layers, read in float32 from the preset: a bfloat16
    backbone's weights are rounded to 8 bits of mantissa. (A restored run
    reads them from its checkpoint instead.)
    """
    spec = config.feature_spec()
    head = model.ClassifierHead(
        hidden_units=config.head_hidden, dropout=config.dropout, seed=config.seed,
        pooling=config.pooling, sequence_layers=config.trainable_layers + config.head_layers,
        num_heads=backbone.num_heads, intermediate_dim=backbone.intermediate_dim,
        average_layers=backbone.num_layers if spec.averages_unfrozen_layers else 0,
        unfrozen_layers=config.trainable_layers)
    head(example_features(spec.feature_shape(backbone)))
    if config.trainable_layers and copy_unfrozen:
        if backbone.dtype_policy.variable_dtype != "float32":
            backbone = model.load_backbone(config.preset, dtype="float32")
        # The unfrozen copies come right after the frozen layers; new blocks go on top.
        head.copy_layers(backbone.transformer_layers[spec.frozen_layers(backbone.num_layers):])
    return head


def load_config(model_dir: str) -> TrainConfig:
    """The `TrainConfig` a run in `model_dir` was trained with."""
    path = os.path.join(model_dir, "config.json")
    if not os.path.exists(path):
        raise UserError(f"{model_dir} holds no trained run (no config.json). "
                        "Train one with: python -m sst2.train --model_dir=...")
    fields = load_json(path)
    fields.setdefault("lr_schedule", "constant")  # runs from before the option used a constant rate
    if "backbone_learning_rate" not in fields and fields.get("trainable_layers"):
        # Runs from before per-group rates trained everything at one rate, 2e-4 by default.
        rate = fields.get("learning_rate") or 2e-4
        fields.update(learning_rate=rate, backbone_learning_rate=rate)
    return TrainConfig(**{k: v for k, v in fields.items() if k in TrainConfig.__dataclass_fields__})


@dataclasses.dataclass
class TrainedModel:
    """A restored run: everything needed to predict, evaluate or export."""

    config: TrainConfig
    preprocessor: keras.layers.Layer
    backbone: keras.Model
    head: model.ClassifierHead
    spec: model.FeatureSpec
    checkpoint_path: str

    def export(self, export_root: str | None = None) -> str:
        from sst2 import serving

        return serving.export_saved_model(
            self.preprocessor, self.backbone, self.head, self.spec,
            export_root or os.path.join(self.config.model_dir, "export"))


def restore(model_dir: str, which: str = "best", config: TrainConfig | None = None,
            log=print) -> TrainedModel:
    """Rebuilds a trained model from `model_dir`'s `best` or `latest` checkpoint, or a path."""
    config = config or load_config(model_dir)
    precision = resolve_precision(config.precision)
    spec = config.feature_spec()
    preprocessor = model.load_preprocessor(config.preset, config.sequence_length)
    backbone = model.load_backbone(config.preset, dtype=precision)
    head = build_head(config, backbone)
    # The optimizer's variables must line up with the checkpoint's (a schedule
    # replaces the learning-rate variable; groups add optimizers): build the same kind.
    optimizer = make_optimizer(config, head, total_steps=1)
    weight_average = make_weight_average(config)
    if weight_average is not None:
        weight_average.build(head.trainable_variables)
    ckpt = RunCheckpoint(model_dir, head, optimizer, log=log, weight_average=weight_average)
    try:
        if which == "best":
            path = ckpt.restore_best()
        elif which == "latest":
            restored = ckpt.restore_latest()
            if restored is None:
                raise FileNotFoundError
            path = ckpt.manager.latest_checkpoint
        else:
            ckpt.checkpoint.read(which).expect_partial()
            path = which
    except (FileNotFoundError, tf.errors.OpError, ValueError) as e:
        raise UserError(f"No usable checkpoint ({which}) in {model_dir}: "
                        f"{e or 'none saved yet'}") from e
    if weight_average is not None:
        weight_average.copy_to(head.trainable_variables)  # serve what was evaluated
    return TrainedModel(config, preprocessor, backbone, head, spec, path)


def split_features(config: TrainConfig, split: str, tokens: dict, features_fn,
                   precision: str, backbone_layers: int,
                   worker: "distribute.WorkerInfo | None" = None) -> features.FeatureSet:
    """The cached frozen features of `split` (computed on first use)."""
    spec = config.feature_spec()
    key = {**model.preset_fingerprint(config.preset), "sequence_length": config.sequence_length,
           "precision": precision, **spec.cache_fields(backbone_layers),
           "data_dir": os.path.abspath(config.data_dir) if config.data_dir else None,
           "split": split}
    return features.encode(features_fn, tokens, cache_dir_of(config), key,
                           batch_size=config.encode_batch_size, description=f"encode {split}",
                           show_progress=config.show_progress and (worker is None or worker.is_chief),
                           worker=worker)


def cache_dir_of(config: TrainConfig) -> str:
    return config.cache_dir or os.path.join(config.model_dir, "feature_cache")


def tokenize_split(config: TrainConfig, split: str, preprocessor) -> dict:
    tokenized = data.tokenize(data.load_split(split, config.data_dir, config.download),
                              preprocessor)
    tokens = data.to_numpy(tokenized)
    if not tokens:
        raise UserError(f"The split {split!r} is empty.")
    return tokens


def _source(config: TrainConfig, feature_set, shuffle: bool):
    if config.feature_spec().token_level:
        return CachedTokenSource(feature_set, config.batch_size,
                                 data.bucket_lengths(config.sequence_length), config.seed, shuffle)
    return CachedFeatureSource(feature_set, config.batch_size, config.seed, shuffle)


def evaluate(trained: TrainedModel, data_dir: str | None = None, eval_split: str = "validation",
             test_split: str = "test", submission_path: str | None = None, log=print) -> dict:
    """Validation loss/accuracy, and GLUE's `SST-2.tsv` (`index<TAB>prediction`) for `test_split`."""
    config = dataclasses.replace(trained.config, data_dir=data_dir or trained.config.data_dir)
    precision = resolve_precision(config.precision)
    features_fn = features.make_feature_fn(trained.backbone, trained.spec,
                                           backbone_jit(config.jit_compile))
    trainer = Trainer(trained.head, keras.optimizers.Adam(), config.batch_size,
                      jit_compile=head_jit(config.jit_compile, trained.spec))
    val = split_features(config, eval_split, tokenize_split(config, eval_split,
                                                            trained.preprocessor),
                         features_fn, precision, trained.backbone.num_layers)
    result = trainer.evaluate(_source(config, val, shuffle=False),
                              show_progress=config.show_progress)
    log(f"{eval_split}: loss {result['loss']:.4f}, accuracy {result['accuracy']:.4f} "
        f"({result['examples']} sentences, checkpoint {trained.checkpoint_path})")
    test = split_features(config, test_split, tokenize_split(config, test_split,
                                                             trained.preprocessor),
                          features_fn, precision, trained.backbone.num_layers)
    test_source = _source(config, test, shuffle=False)
    predictions = np.zeros(len(test), np.int64)
    for i in range(test_source.num_batches(0)):
        batch, indices = test_source.batch(0, i), test_source.batch_indices(0, i)
        logits = trained.head(tf.nest.map_structure(tf.constant, batch.features))
        predictions[indices] = np.argmax(logits.numpy(), axis=-1)[:len(indices)]
    submission_path = submission_path or os.path.join(config.model_dir, "SST-2.tsv")
    order = np.argsort(test.idx)
    tmp = submission_path + ".tmp"
    with open(tmp, "w") as f:
        f.write("index\tprediction\n")
        for i in order:
            f.write(f"{int(test.idx[i])}\t{int(predictions[i])}\n")
    os.replace(tmp, submission_path)
    log(f"Wrote GLUE predictions for {len(order)} {test_split} sentences to {submission_path}")
    return {"split": eval_split, **result, "submission": submission_path}


def run(config: TrainConfig, log=print) -> dict:
    """Trains (or resumes) the run in `config.model_dir`; returns the final metrics."""
    started = time.time()
    check_flags(config)
    # First: a multi-worker strategy must exist before the TensorFlow runtime starts.
    strategy = distribute.make_strategy(config.strategy, config.tpu)
    worker = distribute.worker_info(strategy)
    if not worker.is_chief:
        log = lambda message: None  # noqa: E731  (the chief speaks for the cluster)
    check_assets(config)
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    precision = resolve_precision(config.precision)
    spec = config.feature_spec()
    os.makedirs(config.model_dir, exist_ok=True)
    out_dir = distribute.write_dir(config.model_dir, worker)
    try:
        return _run(config, strategy, worker, out_dir, precision, spec, started, log)
    finally:
        distribute.remove_write_dir(out_dir, config.model_dir)


def _run(config, strategy, worker, out_dir, precision, spec, started, log) -> dict:
    config_path = os.path.join(config.model_dir, "config.json")
    if config.restart and worker.is_chief:
        for name in ("checkpoints", "best", "metrics.json", "train", "eval", "config.json"):
            path = os.path.join(config.model_dir, name)
            if os.path.isdir(path):
                tf.io.gfile.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    elif os.path.exists(config_path) and not config.restart:
        _check_compatible(config, load_config(config.model_dir))

    preprocessor = model.load_preprocessor(config.preset, config.sequence_length)
    backbone = model.load_backbone(config.preset, dtype=precision)
    # The encode pass runs on every local replica's device.
    features_fn = features.make_feature_fn(backbone, spec, backbone_jit(config.jit_compile),
                                           devices=list(strategy.extended.worker_devices))

    log(f"Tokenizing {config.train_split} and {config.eval_split} "
        f"(sequence length {config.sequence_length})...")
    train_tokens = tokenize_split(config, config.train_split, preprocessor)
    eval_tokens = tokenize_split(config, config.eval_split, preprocessor)
    log(f"{len(train_tokens['label'])} training and {len(eval_tokens['label'])} "
        f"evaluation sentences; backbone {backbone.num_layers} layers x {backbone.hidden_dim}, "
        f"precision {precision}.")
    head_rate, backbone_rate, schedule = optimizer_settings(config)
    rates = f"learning rate {head_rate:g}" + (
        f" (unfrozen layers {backbone_rate:g})" if backbone_rate else "")
    average = (f"; evaluated with a weight average (EMA decay {config.ema_decay:g})"
               if config.ema_decay else "")
    rdrop = f"; R-Drop (alpha {config.rdrop_alpha:g})" if config.rdrop_alpha else ""
    log(f"Head: {spec.describe()}; {rates}, {schedule}{rdrop}{average}.")

    boundaries = data.bucket_lengths(config.sequence_length)
    batch_size = config.batch_size * strategy.num_replicas_in_sync  # the global batch
    config = dataclasses.replace(config, batch_size=batch_size)
    if config.cache_features:
        encode_started = time.time()
        train_features = split_features(config, config.train_split, train_tokens, features_fn,
                                        precision, backbone.num_layers, worker)
        eval_features = split_features(config, config.eval_split, eval_tokens, features_fn,
                                       precision, backbone.num_layers, worker)
        if spec.token_level:
            train_source = CachedTokenSource(train_features, config.batch_size, boundaries,
                                             config.seed)
            eval_source = CachedTokenSource(eval_features, config.batch_size, boundaries,
                                            shuffle=False)
        else:
            train_source = CachedFeatureSource(train_features, config.batch_size, config.seed)
            eval_source = CachedFeatureSource(eval_features, config.batch_size, shuffle=False)
        encode_seconds = time.time() - encode_started
        log(f"Features ready in {encode_seconds:.1f}s (cache: {cache_dir_of(config)}).")
    else:
        encode_seconds = None
        train_source = TokenSource(train_tokens, features_fn, config.batch_size, boundaries,
                                   config.seed)
        eval_source = TokenSource(eval_tokens, features_fn, config.batch_size, boundaries,
                                  shuffle=False)

    with strategy.scope():
        head = build_head(config, backbone, copy_unfrozen=True)
        total_steps = sum(train_source.num_batches(e) for e in range(config.epochs))
        optimizer = make_optimizer(config, head, total_steps)
    weight_average = make_weight_average(config)
    trainer = Trainer(head, optimizer, config.batch_size, strategy=strategy,
                      jit_compile=head_jit(config.jit_compile, spec),
                      weight_average=weight_average, rdrop_alpha=config.rdrop_alpha)
    trainer.build(spec.feature_shape(backbone))

    ckpt = RunCheckpoint(out_dir, head, optimizer, keep=config.keep_checkpoints, log=log,
                         read_dir=config.model_dir, weight_average=weight_average)
    start, epoch_sums = Position(), None
    restored = ckpt.restore_latest()
    if restored is not None:
        start, epoch_sums = restored
        log(f"Resuming from step {start.step} (epoch {start.epoch + 1}, batch {start.batch}) "
            f"in {ckpt.manager.directory}.")
    user_config = dataclasses.replace(config, batch_size=config.batch_size
                                      // strategy.num_replicas_in_sync)
    if worker.is_chief:
        save_json(config_path, dataclasses.asdict(user_config))

    metrics_path = os.path.join(config.model_dir, "metrics.json")
    history = load_json(metrics_path).get("epochs", []) if restored and os.path.exists(
        metrics_path) else []
    summaries = SummaryCallback(out_dir, history, {
        "config": dataclasses.asdict(user_config), "precision": precision,
        # The learning rates that the config's defaults (None) resolved to.
        "learning_rate": head_rate, "backbone_learning_rate": backbone_rate,
        "replicas": strategy.num_replicas_in_sync, "workers": worker.count,
        "train_examples": len(train_tokens["label"]),
        "eval_examples": len(eval_tokens["label"]),
        "encode_seconds": encode_seconds})
    checkpoints = CheckpointCallback(ckpt, config.checkpoint_every_steps, log=log)

    def on_signal(signum, frame):
        checkpoints.signal_received = signal.Signals(signum).name

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        fit(trainer, train_source, eval_source, config.epochs, start=start,
            epoch_sums=epoch_sums, callbacks=[checkpoints, summaries],
            show_progress=config.show_progress, log=log)
    except _Interrupted as e:
        raise UserError(f"Stopped by {e}; checkpoint saved in {ckpt.manager.directory}. "
                        "Run the same command again to resume.") from None
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
            tf.errors.CancelledError, tf.errors.InternalError) as e:
        if worker.count == 1:
            raise
        reason = str(e).strip().splitlines()[0][:200]
        raise UserError(f"Worker {worker.index}: another worker stopped responding ({reason}). "
                        f"Checkpoints are in {config.model_dir}/checkpoints; restart every "
                        "worker with the same command to resume.") from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

    final = trainer.evaluate(eval_source, show_progress=False)
    log(f"Test Loss: {final['loss']:.4f}")
    log(f"Test Accuracy: {final['accuracy']:.4f}")
    log(f"(GLUE's SST-2 test split has no labels, so the test metrics above are computed "
        f"on {config.eval_split!r}.)")
    summaries.write(test={"split": config.eval_split, **final},
                    wall_seconds=time.time() - started)
    if config.export and worker.is_chief:
        trained = restore(config.model_dir, "best", config=user_config, log=log)
        path = trained.export()
        log(f"Exported the best checkpoint ({os.path.basename(trained.checkpoint_path)}) "
            f"as a SavedModel: {path}")
        summaries.write(export_dir=path)
    return {"epochs": history, "test": final}
