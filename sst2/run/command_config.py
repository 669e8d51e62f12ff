"""The options of the entry points other than training: evaluate, export, report, predict,
behaviour, score and prepare_data (training's, and the option machinery: `sst2.run.config`).

Example:
    >>> EvaluateConfig(model_dir="runs/sst2").max_windows
    8
    >>> ExportConfig()
    Traceback (most recent call last):
    ...
    sst2.run.errors.UserError: --model_dir is required.
"""

import dataclasses

from sst2.run.errors import UserError
from sst2.run.options import Options, option


@dataclasses.dataclass(frozen=True)
class RestoreConfig(Options):
    """Which trained run, and which of its checkpoints, to load."""

    model_dir: str | None = option(None, "The training run (its --model_dir).", required=True)
    checkpoint: str = option("best", "best, latest, or a checkpoint path.")


@dataclasses.dataclass(frozen=True)
class ReadingConfig(Options):
    """How the served model reads a text longer than one window (`sst2.serve.graph.serving`).

    A window is the sequence length less `[CLS]` and `[SEP]`; a longer text is
    read as overlapping windows, which export fixes and evaluate uses.
    """

    window_tokens: int = option(
        0, "Tokens per window, [CLS] and [SEP] not counted; 0 = the sequence length less "
        "2. Shorter windows read long texts in pieces nearer the training sentences' "
        "length.", minimum=0)
    window_overlap: float = option(
        0.5, "Fraction of a window that the next window of a long text reads again; the "
        "stride is window x (1 - overlap).", minimum=0, below=1)
    max_windows: int = option(
        8, "Windows per text at most; a longer text is read in that many windows spread "
        "evenly from its start to its end.", minimum=1, maximum=64)


@dataclasses.dataclass(frozen=True)
class ExplainConfig(Options):
    """How the export's `explain` signature attributes an answer to words
    (`sst2.serve.graph.explaining`)."""

    explain_steps: int = option(
        2, "Integrated-gradients steps of the export's explain signature: each costs about "
        "3 predictions; 1 is gradient x input, less faithful (docs/measurements.md).",
        minimum=1, maximum=64)


@dataclasses.dataclass(frozen=True)
class EvaluateConfig(ReadingConfig, RestoreConfig):
    data_dir: str | None = option(None, "tfds data dir (default: the run's own).")
    eval_split: str = option("validation", "Labelled split to score.")
    eval_file: str | None = option(None, "A labelled local file to score, in the training "
                                   "file's columns and encoding (default: the run's).")
    test_file: str | None = option(None, "A local file to predict into "
                                   "<model_dir>/predictions.jsonl (default: the run's).")
    output: str | None = option(None, "GLUE submission file, for GLUE datasets (default "
                                "<model_dir>/<task>.tsv).")
    report: bool = option(True, "Write <model_dir>/report/index.html (sst2.report).")


@dataclasses.dataclass(frozen=True)
class ReportConfig(RestoreConfig):
    eval_split: str | None = option(None, "The split the report scores (default: the run's "
                                    "validation split).")


# `sst2.export --format`'s artifacts, and `--quantize`'s choices for an OpenVINO one.
FORMATS = ("saved_model", "openvino")
QUANTIZATIONS = ("int8_weights", "int8", "none")


@dataclasses.dataclass(frozen=True)
class ExportConfig(ExplainConfig, ReadingConfig, RestoreConfig):
    export_root: str | None = option(None, "Where to write versions (default "
                                     "<model_dir>/export, or <model_dir>/export_openvino).")
    calibrate: bool = option(True, "Fold in the run's temperature (calibration.json; fitted "
                             "on the validation split if the run has none).")
    format: str = option("saved_model", "saved_model (TensorFlow, TF Serving) or openvino "
                         "(OpenVINO IR with its tokenizer: raw strings in, no TensorFlow "
                         "needed; pip install 'sst2[openvino]').", choices=FORMATS)
    quantize: str = option("auto", "For --format=openvino: auto (each timed against the "
                           "SavedModel on this machine, the fastest kept whose labels agree "
                           "on 99.5 % of the validation split), int8_weights (int8 weights, "
                           "float activations), int8 (weights and activations) or none "
                           "(float32).", choices=("auto",) + QUANTIZATIONS)
    calibration_texts: int = option(300, "For --format=openvino --quantize=int8 (or auto): "
                                    "training texts that int8 activations are calibrated "
                                    "on.", minimum=8)

    def __post_init__(self):
        super().__post_init__()
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        if self.format != "openvino" and (self.quantize != defaults["quantize"] or
                                          self.calibration_texts != defaults["calibration_texts"]):
            raise UserError("--quantize and --calibration_texts are for --format=openvino; a "
                            "SavedModel keeps the run's weights. Add --format=openvino, or "
                            "leave them out.")
        if self.format == "openvino" and self.explain_steps != defaults["explain_steps"]:
            raise UserError("--explain_steps sets the SavedModel's explain signature; the "
                            "OpenVINO artifact has none. Leave it out, or export a SavedModel.")
        if (self.quantize not in ("int8", "auto")
                and self.calibration_texts != defaults["calibration_texts"]):
            raise UserError("--calibration_texts calibrates int8 activations "
                            "(--quantize=int8); --quantize="
                            f"{self.quantize} uses none. Leave it out.")


@dataclasses.dataclass(frozen=True)
class PredictConfig(Options):
    export_dir: str | None = option(None, "A SavedModel version folder, export root or "
                                    "model_dir.", required=True)
    json: bool = option(False, "Print one JSON object per line.")
    explain: bool = option(False, "Also say how much each word moved the answer (the "
                           "SavedModel's explain signature: about 6x a prediction's time "
                           "at its default --explain_steps=2).")
    batch_size: int = option(256, "Lines per call of the export (fewer when no more "
                             "input has arrived).", minimum=1)


@dataclasses.dataclass(frozen=True)
class BehaviourConfig(Options):
    export_dir: str | None = option(None, "A run folder (its newest SavedModel, and its "
                                    "validation texts to perturb), an export root or a "
                                    "version folder.", required=True)
    texts_file: str | None = option(None, "More texts to perturb: CSV, TSV or JSONL with "
                                    "--text_column, or text, one per line.")
    text_column: str = option("text", "The text column of --texts_file.")
    output: str | None = option(None, "Where to write the results (default: "
                                "<run folder>/behaviour.json; needed when --export_dir is "
                                "not in a run folder).")
    sentiment: str = option("auto", "Run the sentiment tests: auto (when the classes are "
                            "named positive and negative), true or false.",
                            choices=("auto", "true", "false"))
    seed: int = option(0, "What the suite's words, texts and positions are drawn from.")
    max_cases: int = option(100, "Cases per test, at most.", minimum=1)
    batch_size: int = option(256, "Texts per call of the export.", minimum=1)
    progress: bool = option(True, "Show a progress bar.")


@dataclasses.dataclass(frozen=True)
class ScoreConfig(Options):
    export_dir: str | None = option(None, "A SavedModel or OpenVINO artifact: a version "
                                    "folder, export root or model_dir.", required=True)
    input: str | None = option(None, "Files to score: a path or glob (local, gs://, ...).",
                               required=True)
    output: str | None = option(None, "Output prefix: writes <prefix>-00000-of-0000N.jsonl, "
                                "all at once when the run has succeeded.", required=True)
    overwrite: bool = option(False, "Replace the shards an earlier run wrote under --output "
                             "(removed once this run has succeeded); without it they are "
                             "refused.")
    text_column: str = option("text", "The text column of CSV/TSV/JSONL inputs (two, "
                              "comma-separated, for a model of pairs).")
    id_column: str | None = option(None, "A column holding each record's id (default: "
                                   "<file>:<line>).")
    file_format: str = option("auto", "csv, tsv, jsonl or text (a record per line); auto: by "
                              "extension, plain text for any other.",
                              choices=("auto", "csv", "tsv", "jsonl", "text"))
    encoding: str = option("utf-8", "The inputs' encoding.")
    num_shards: int = option(0, "Output shards; 0: the runner's choice.", minimum=0)
    batch_size: int = option(256, "Records per call of the export, at most.", minimum=1)
    runner: str = option("DirectRunner", "Beam's runner; its other options follow a lone "
                         "--, e.g. -- --direct_num_workers=2 or -- --project=P --region=R.")


@dataclasses.dataclass(frozen=True)
class PrepareDataConfig(Options):
    dataset: str = option("glue/sst2", "The GLUE task to build, glue/<task>.")
    glue: str | None = option(None, "The official SST-2.zip, or a folder with GLUE's files "
                              "of the task (train/dev/test.tsv; default for SST-2: the copy "
                              "embedded in sst2).")
    data_dir: str | None = option(None, "tfds data dir to write into (tfds's default if "
                                  "unset).")
    force: bool = option(False, "Rebuild even if the dataset is already prepared.")
