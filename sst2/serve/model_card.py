"""`MODEL_CARD.md`, shipped in every export version: what the model is, in words and in the
YAML front matter model hubs read (base model, datasets, metrics, license, tags).

`render(trained)` reads the run folder (`metrics.json`, `config.json`,
`calibration.json`) and writes: the front matter (Hugging Face's model-card
fields, with `model-index` results), then intended use, the classes, the
training data and options, the evaluation results, calibration, behaviour
(`behaviour.json`, when it describes this checkpoint), limitations, how to
serve it, and the command that reproduces it.

Example:
    >>> from sst2.serve.trained import restore
    >>> card = render(restore(trained_dir))
    >>> card.startswith("---\\nlanguage:"), "## How to serve it" in card
    (True, True)
"""

import json
import os
import platform

from sst2.run.command_config import ReadingConfig
from sst2.run.config import GROUPS
from sst2.run.config_file import to_dict
from sst2.run.files import load_json
from sst2.run.metrics import METRICS, shown
from sst2.run.options import options
from sst2.run.run_folder import RunFolder
from sst2.serve.behaviour.described import card_lines, for_checkpoint

# What each preset is, for the card's `base_model`.
BASE_MODELS = {"distil_bert_base_en_uncased": "distilbert/distilbert-base-uncased",
               "minilm_standin": "sentence-transformers/all-MiniLM-L6-v2"}


def _yaml(value, indent: int = 0) -> str:
    """A small YAML writer: mappings, lists, and scalars (strings as JSON, which YAML reads)."""
    pad = " " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:\n{_yaml(item, indent + 2)}")
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
        return "\n".join(lines)
    lines = []
    for item in value:
        if isinstance(item, dict) and item:
            body = _yaml(item, indent + 2)
            lines.append(f"{pad}- {body.lstrip()}")
        else:
            lines.append(f"{pad}- {_scalar(item)}")
    return "\n".join(lines)


def _scalar(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (dict, list)):
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(str(value), ensure_ascii=False)


def reproduce_command(config) -> str:
    """The `sst2.train` command line of a run: every option it set away from the default."""
    flags = []
    for group, config_class in GROUPS.items():
        if group == "run":
            continue
        values = getattr(config, group)
        for field, _, kind in options(config_class):
            value = getattr(values, field.name)
            if value != field.default and value is not None:
                flags.append(f"--{field.name}" if value is True else f"--no{field.name}"
                             if value is False else f"--{field.name}={value}")
    return " \\\n    ".join(["python -m sst2.train"] + flags)


def _front_matter(trained, run: dict) -> dict:
    info = trained.dataset
    # The exported checkpoint's own validation results: its epoch's record.
    kept = [r for r in run.get("epochs", []) if r.get("best")]
    test = ({k[4:]: v for k, v in kept[-1].items() if k.startswith("val_")} if kept
            else run.get("test", {}))
    metric_names = [m for m in ("accuracy", "macro_f1", "f1", "mcc", "micro_f1",
                                "subset_accuracy", "pearson", "spearman", "mse")
                    if isinstance(test.get(m), (int, float))]
    dataset_name = info.name if info.name != "files" else os.path.basename(
        trained.config.data.train_file or "files")
    return {
        "language": ["en"], "license": "mit", "library_name": "tensorflow",
        "pipeline_tag": "text-classification",
        "base_model": BASE_MODELS.get(trained.config.model.preset, trained.config.model.preset),
        "tags": ["sst2", info.target.tag, "frozen-backbone", "keras-hub", "savedmodel"],
        "datasets": [dataset_name],
        "metrics": metric_names,
        "model-index": [{"name": os.path.basename(os.path.abspath(
            trained.config.run.model_dir)), "results": [{
                "task": {"type": info.target.tag},
                "dataset": {"name": dataset_name, "type": info.name,
                            "split": trained.config.data.eval_split,
                            "identity": json.dumps(info.identity, sort_keys=True)},
                "metrics": [{"type": m, "value": float(test[m])} for m in metric_names]}]}],
    }


def render(trained, reading: ReadingConfig = ReadingConfig(), artifact: dict | None = None) -> str:
    """The model card of a restored run (see the module); `artifact`: the facts of an
    OpenVINO artifact (`sst2.serve.openvino.export`) the card ships in, instead of the
    SavedModel."""
    folder = RunFolder(trained.config.run.model_dir)
    run = load_json(folder.metrics) if os.path.isfile(folder.metrics) else {}
    info, config = trained.dataset, trained.config
    calibration = trained.calibration if trained.temperature is not None else None
    calibration = calibration or {}
    best = [r for r in run.get("epochs", []) if r.get("best")]
    lines = ["---", _yaml(_front_matter(trained, run)), "---", "",
             f"# {os.path.basename(os.path.abspath(config.run.model_dir))}", "",
             "## Intended use", "",
             f"{info.target.tag.replace('-', ' ').capitalize()} of English text"
             + (" pairs" if info.is_pair else "") + f", trained on {info.name} with sst2: "
             "a small head over a frozen backbone. Use it where the training data's "
             "domain matches yours; check it on your own labelled examples first.", "",
             "## Classes" if info.target.has_classes else "## Target", ""]
    if not info.target.has_classes:
        scale = info.target_scale or {}
        lines.append(f"A number (`score`); training mean {scale.get('mean', 0):.3g}, "
                     f"standard deviation {scale.get('std', 1):.3g}.")
    else:
        lines += [f"{i}. {name}" for i, name in enumerate(info.label_names)]
    lines += ["", "## Training data and options", "",
              f"- data: `{json.dumps(info.identity, sort_keys=True)}`, text "
              f"{', '.join(info.text_features)}; {run.get('train_examples', '?')} training "
              f"and {run.get('eval_examples', '?')} validation examples" + _added(run, config),
              f"- backbone: `{config.model.preset}`, frozen; precision "
              f"{run.get('precision', config.model.precision)}",
              "- options: `" + json.dumps({g: to_dict(config)[g] for g in ("model",
                                                                          "optimization")},
                                         sort_keys=True) + "`",
              f"- checkpoint: `{os.path.basename(trained.checkpoint_path)}`"
              + (f" (epoch {best[-1]['epoch']})" if best else ""), "",
              "## Evaluation", ""] + _evaluation_table(run, info)
    if calibration and not calibration.get("applied", True):
        lines += ["", f"Calibration: none folded in (temperature 1: "
                  f"{calibration.get('reason', '')}); expected calibration error "
                  f"{calibration['ece_before']:.4f} on {calibration['split']}."]
    elif calibration:
        lines += ["", f"Calibration (temperature {calibration['temperature']:.3f}, fitted on "
                  f"{calibration['split']}): expected calibration error "
                  f"{calibration['ece_before']:.4f} before, {calibration['ece_after']:.4f} "
                  "after; the labels are unchanged."]
    behaviour = for_checkpoint(config.run.model_dir, trained.checkpoint_path,
                               trained.temperature)
    if behaviour:
        lines += card_lines(behaviour)
    if artifact is not None:
        lines += _artifact(artifact, info)
    lines += _limits_and_serving(trained, reading, artifact)
    return "\n".join(lines) + "\n"


def _artifact(facts: dict, info) -> list:
    """What an OpenVINO artifact is and how far its answers agree with the SavedModel's."""
    agreement = facts.get("agreement") or {}
    metric = info.target.default_metric
    lines = ["", "## This artifact", "",
             f"OpenVINO {facts['openvino']} IR with its tokenizer (raw strings in); "
             f"{facts['precision']}; the head in float32. Texts are cut to "
             f"{facts['sequence_length']} tokens."]
    if agreement:
        lines += ["", f"Against the SavedModel's answers on {agreement['examples']} "
                  f"validation examples (OpenVINO's default inference precision on the "
                  f"exporting CPU): the same answer for {agreement['answers_equal']:.2%}; "
                  f"largest difference of `{info.target.answer}` "
                  f"{agreement['largest_difference']:.3g}; {metric} "
                  f"{shown(agreement[metric])} against the SavedModel's "
                  f"{shown(agreement['saved_model_' + metric])}."]
    elif facts.get("agreement_not_measured"):
        lines += ["", "Not measured against the SavedModel's answers: "
                  f"{facts['agreement_not_measured']}."]
    speed = facts.get("speed")
    if speed:
        lines += ["", f"Speed, measured where it was exported ({speed['cpu']}): "
                  f"{speed['rate']:,.0f} texts/s in batches of {speed['batch_size']} against "
                  f"the SavedModel's {speed['saved_model_rate']:,.0f} on the same "
                  f"{speed['texts']} validation texts, **{speed['ratio']:.2f}x**, under "
                  f"OpenVINO's {speed['hint'].lower()} hint. Another CPU gives another "
                  "ratio; `assets.extra/sst2.json` lists every setting tried."]
    lines += ["", "OpenVINO's default CPU precision (bfloat16 where the CPU has it) answers a "
              "text slightly differently beside different texts in a batch; compile with "
              '`{"INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"}` '
              "for the same answer in any batch, at some of the speed."]
    return lines


def _evaluation_table(run: dict, info) -> list:
    """Each finished epoch's validation metrics (the task's, `undefined` where a
    correlation has none), or a warning that no epoch finished."""
    epochs = run.get("epochs") or []
    if not epochs:
        return ["**No epoch finished**: this checkpoint was saved inside epoch 1 and never "
                "validated" + (" (its thresholds are not tuned)" if info.target.thresholded
                               else "") + ". Train the run to the end of an epoch first."]
    reported = info.target.reported(info.num_classes)
    names = [m for m in METRICS if m in reported or any(
        isinstance(r.get(f"val_{m}"), float) for r in epochs)]
    lines = ["| epoch | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for record in epochs:
        lines.append(f"| {record['epoch']}{' (kept)' if record.get('best') else ''} | "
                     + " | ".join(shown(record.get(f"val_{m}")) for m in names) + " |")
    return lines


def _limits_and_serving(trained, reading: ReadingConfig, artifact: dict | None = None) -> list:
    config, info = trained.config, trained.dataset
    window = config.model.sequence_length - 2
    inputs = ('{"text": "a gripping, funny film", "text_pair": "..."}' if info.is_pair
              else '{"text": "a gripping, funny film"}')
    serving = ["```", "docker run -p 8501:8501 -v \"$PWD/export:/models/sst2\" "
               "-e MODEL_NAME=sst2 tensorflow/serving:2.12.1",
               "curl -d '{\"instances\": [" + inputs + "]}' "
               "http://localhost:8501/v1/models/sst2:predict", "```", "",
               "Which words moved each answer: the same request with `\"signature_name\": "
               "\"explain\"` (each text's words and tokens, and their attributions by "
               "integrated gradients), or `python -m sst2.predict --export_dir=. --explain`."]
    return ["", "## Limitations", "",
            "- The backbone is frozen: only the head learned this task.",
            *(["- Trained with the offline stand-in (all-MiniLM-L6-v2 folded into "
               "DistilBERT's layout), not DistilBERT."]
              if config.model.preset == "minilm_standin" else []),
            (f"- A text longer than {window} tokens is cut: the rest is not read."
             if artifact else
             f"- A text longer than {window} tokens is read in overlapping windows (at most "
             f"{reading.max_windows}); beyond that, parts are not read. Pairs are cut to "
             f"{config.model.sequence_length} tokens."),
            "- English, uncased WordPiece; other languages are not supported.",
            *(["- Multi-label: a text with no label above its threshold gets none."]
              if info.target.thresholded else []),
            "", "## How to serve it", "",
            *(_openvino_usage(info) if artifact else serving), "",
            "## Reproduce", "", "```", reproduce_command(config), "```", "",
            f"Made with sst2 on {platform.platform(terse=True)}, Python "
            f"{platform.python_version()}, TensorFlow {_version('tensorflow')}, keras-hub "
            f"{_version('keras_hub')}.", ""]


def _openvino_usage(info) -> list:
    """Answering with the artifact with only `openvino` and `openvino-tokenizers`."""
    arguments = "[texts, second_texts]" if info.is_pair else "[texts]"
    return ["```python", "import numpy as np, openvino as ov, openvino_tokenizers  "
            "# the second registers the tokenizer's operations",
            "import json",
            'config = json.load(open("assets.extra/sst2.json")).get("openvino_config", {})',
            'model = ov.Core().compile_model("model.xml", "CPU", config)  # as exported',
            'texts = ov.Tensor(np.array(["a gripping, funny film"]))'
            + ("\nsecond_texts = ov.Tensor(np.array([\"...\"]))" if info.is_pair else ""),
            f"answers = model({arguments})  # "
            + ", ".join(f'answers["{name}"]' for name in info.target.export_outputs
                        if name not in ("label", "labels")),
            "```", "", "Names of classes: `assets.extra/sst2.json`'s `label_names`; "
            "`python -m sst2.predict --export_dir=` answers with them."]


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except (ImportError, AttributeError):  # the card says so rather than failing
        return "unknown"


def _added(run: dict, config) -> str:
    """What the card says of the training variants (`sst2.fit.augmented`), where any."""
    if not run.get("added_examples"):
        return ""
    kinds = (["identity terms swapped (`--augment_identity`)"] if config.data.augment_identity
             else []) + ([f"a typo (`--augment_typos={config.data.augment_typos:g}`)"]
                         if config.data.augment_typos else [])
    return (f", and {run['added_examples']:,} variants of training texts with their labels: "
            + " or ".join(kinds))
