"""An OpenVINO artifact of a trained run: raw strings in, the export's answers out, fast here.

`export_openvino(trained, export_root)` writes `<export_root>/<version>/`
holding `model.xml` and `model.bin` (OpenVINO IR: the tokenizer of
`sst2.serve.openvino.tokenizer`, then the encoder and head), `sst2.json` (the
SavedModel's export facts, plus the runtime, precision and measured
agreement) and `MODEL_CARD.md`. Answering needs only `openvino`,
`openvino-tokenizers` and numpy (`sst2.serve.client.openvino_runtime`).

The encoder and head are the run's, converted from a float32 TensorFlow function
of token ids (`FastEncoder`, as the SavedModel runs on CPU), then quantized by
NNCF on a sample of the training texts (`QUANTIZATIONS`); `quantize="auto"` makes
each and keeps the fastest on this machine that agrees with the SavedModel
(`sst2.serve.openvino.settings`). The artifact has the
SavedModel's numeric outputs; names (`label`, multi-label `labels`) are left to
the client (`Target.name_answers`), from `sst2.json`'s `label_names`. What it
cannot do is refused: a head of pairs encoded apart, and a model run on an
accelerator at export time (its backbone's weights are not the CPU path's).
Long single texts are cut to the sequence length where the SavedModel reads
windows (docs/measurements.md measures what that costs).

Example:
    >>> from sst2.serve.client.openvino_runtime import OpenVINOModel
    >>> from sst2.serve.trained import restore
    >>> trained = restore(trained_dir)
    >>> folder = export_openvino(trained, os.path.join(tmp_dir, "openvino"), "none")
    >>> sorted(os.listdir(folder))
    ['assets.extra', 'model.bin', 'model.xml']
    >>> OpenVINOModel(folder)(["a gripping film"])["probabilities"].shape
    (1, 2)
"""

import os

import nncf
import numpy as np
import openvino as ov
import tensorflow as tf
from absl import logging
from nncf.quantization.advanced_parameters import (
    AdvancedQuantizationParameters,
    AdvancedSmoothQuantParameters,
)
from openvino_tokenizers import connect_models

from sst2.model import target_math
from sst2.model.backbone import frozen_features
from sst2.model.inference import FastEncoder
from sst2.run import log_lines, targets
from sst2.run.command_config import QUANTIZATIONS, ExportConfig, ReadingConfig
from sst2.run.errors import UserError
from sst2.run.files import save_json
from sst2.run.run_folder import RunFolder
from sst2.serve import model_card as card
from sst2.serve.client.openvino_runtime import MODEL_FILE
from sst2.serve.evaluation import predict_split
from sst2.serve.graph.answers import answer
from sst2.serve.openvino import settings
from sst2.serve.openvino.tokenizer import tokenizer_model
from sst2.serve.versions import EXPORT_FACTS, export_facts, write_version
from sst2.text.datasets import open_dataset

# The converted head's operations (Keras names them after the head's class).
HEAD_OPS = "(classifier_head|stacked_heads).*"
# What each `--quantize` makes int8 (the head stays float32).
PRECISIONS = {
    "int8_weights": "int8 weights of the encoder's matmuls, float activations (NNCF "
                    "weight compression)",
    "int8": "int8 weights and activations of the encoder's matmuls (NNCF post-training "
            "quantization, SmoothQuant off)",
    "none": "float32 weights",
}
assert tuple(PRECISIONS) == QUANTIZATIONS


def answer_function(trained) -> tf.types.experimental.ConcreteFunction:
    """The export's numeric answers as a float32 TensorFlow function of `token_ids` and
    `padding_mask` (int32 `[batch, length]`): what the SavedModel computes after
    tokenizing, for texts of one window."""
    backbone, spec, head, dataset = trained.backbone, trained.spec, trained.head, trained.dataset
    encoder = FastEncoder(backbone, compute_dtype=tf.float32, unpadded=True)
    frozen = spec.frozen_layers(backbone.num_layers) if spec.token_level else None
    scale = targets.TargetScale.from_record(dataset.target_scale)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="token_ids"),
                                  tf.TensorSpec([None, None], tf.int32, name="padding_mask")])
    def answers(token_ids, padding_mask):
        features = frozen_features(encoder(token_ids, padding_mask, num_layers=frozen),
                                   padding_mask, spec)
        if spec.token_level:
            features = {"tokens": features, "mask": padding_mask}
        logits = tf.cast(head(features, training=False), tf.float32)
        outputs = target_math.outputs(dataset.target, logits, scale)
        numbers = answer(dataset, outputs, trained.temperature, getattr(head, "thresholds", None))
        return {name: value for name, value in numbers.items() if value.dtype != tf.string}

    return answers.get_concrete_function()


def check_supported(trained) -> None:
    """Refuses, in one sentence, a run the artifact cannot answer as its SavedModel does."""
    if trained.spec.separate_pairs:
        raise UserError("--format=openvino does not export a head of pairs encoded apart "
                        "(--pair_encoding=separate); export a SavedModel instead.")


def convert(trained, quantize: str, calibration_texts: list) -> ov.Model:
    """The artifact's model: tokenizer, then encoder and head, quantized as `quantize` says
    (calibrated on `calibration_texts`)."""
    check_supported(trained)
    tokenizer = trained.preprocessor.tokenizer
    inputs = ("text", "text_pair") if trained.dataset.is_pair else ("text",)
    tokens = tokenizer_model(
        tokenizer.get_vocabulary(), trained.preprocessor.sequence_length,
        {"cls": tokenizer.cls_token_id, "sep": tokenizer.sep_token_id,
         "pad": tokenizer.pad_token_id}, inputs)
    # Copied: shared weights would point into the function's tensors, freed with it.
    model = ov.convert_model(answer_function(trained), share_weights=False)
    for parameter, name in zip(model.inputs, ("token_ids", "padding_mask")):
        parameter.get_tensor().set_names({name})
    for output in model.outputs:
        output.get_tensor().set_names({output.get_any_name().split(":")[0]})
    if quantize != "none":
        model = _quantize(model, quantize, _tokenized(tokens, calibration_texts, len(inputs)))
    # The tokenizer's `cut` stays an output: which texts were longer than it reads.
    return connect_models(tokens, model, {"token_ids": "token_ids",
                                          "padding_mask": "padding_mask"},
                          keep_remaining_first_model_outputs=True)


def _tokenized(tokens: ov.Model, texts: list, inputs: int, batch_size: int = 8) -> list:
    """The calibration texts (a pair as a tuple) as model inputs, in batches padded to
    their longest, as requests are."""
    compiled = ov.Core().compile_model(tokens, "CPU")
    examples = []
    for i in range(0, len(texts), batch_size):
        batch = [text if inputs > 1 else (text,) for text in texts[i:i + batch_size]]
        out = compiled([ov.Tensor(np.array(column, dtype=np.str_)) for column in zip(*batch)])
        examples.append({"token_ids": out["token_ids"], "padding_mask": out["padding_mask"]})
    return examples


def _quantize(model: ov.Model, quantize: str, examples: list) -> ov.Model:
    """The encoder's matmuls quantized (the head, attention and mask stay float)."""
    if quantize == "int8_weights":
        return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    return nncf.quantize(
        model, nncf.Dataset(examples), model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(examples),
        # The head and the attention (scores, mask, softmax) stay float: the time is in
        # the linear layers, and the head was trained on float features.
        ignored_scope=nncf.IgnoredScope(patterns=[HEAD_OPS],
                                        types=["ScaledDotProductAttention"], validate=False),
        advanced_parameters=AdvancedQuantizationParameters(
            # SmoothQuant moves scale into weights the head never saw: 76 % of SST-2
            # validation labels kept, against 98 % without (docs/measurements.md).
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1),
            # Bias correction through the attention-pooling head's masked softmax: NaN.
            disable_bias_correction=True))


def _numbers(compiled, inputs: dict) -> dict:
    """A compiled model's outputs by name, as numpy arrays."""
    return {output.get_any_name(): value for output, value in compiled(inputs).items()}


def export_openvino(trained, export_root: str, quantize: str = "auto",
                    calibration_texts: list = (), reference: dict | None = None,
                    model_card=None, version: int | None = None,
                    unmeasured: str | None = None, timed_texts: int = 256) -> str:
    """Writes the artifact (see the module) as `<export_root>/<version>/` and returns its
    folder.

    Args:
        trained: the restored run.
        export_root: the folder of versions.
        quantize: `auto`, `int8_weights`, `int8` or `none` (`QUANTIZATIONS`); `auto`:
            the fastest on this machine that agrees enough with the SavedModel
            (`sst2.serve.openvino.settings`), `int8` among them only given
            `calibration_texts`.
        calibration_texts: what int8 activations are calibrated on.
        reference: the SavedModel's answers to texts (`predict_split(...,
            with_text=True)`): the artifact's settings are timed on the first
            `timed_texts` of them against the SavedModel's computation and held to its
            answers; `sst2.json` and the model card record both. None: nothing measured,
            `auto` means `int8_weights` under OpenVINO's latency hint.
        model_card: a function of those facts returning Markdown.
        version: the version's number (default: the Unix time, as `write_version`).
        unmeasured: why there is no `reference`, for the card.
    """
    dataset = trained.dataset
    facts = export_facts(dataset, trained.temperature, runtime="openvino",
                         openvino=ov.get_version().split("-")[0],
                         sequence_length=trained.preprocessor.sequence_length,
                         checkpoint=os.path.basename(trained.checkpoint_path))
    quantizations = ([q for q in QUANTIZATIONS if q != "int8" or calibration_texts]
                     if quantize == "auto" else [quantize])
    if reference is None:
        kept = settings.Setting("int8_weights" if quantize == "auto" else quantize, "LATENCY")
        model = convert(trained, kept.quantize, list(calibration_texts))
        facts["agreement_not_measured"] = unmeasured or "no reference answers were given"
    else:
        models = {q: convert(trained, q, list(calibration_texts)) for q in quantizations}
        kept, facts["agreement"], facts["speed"] = settings.measured_setting(
            trained, models, reference, facts, timed_texts)
        model = models[kept.quantize]
    facts.update(precision=PRECISIONS[kept.quantize], quantize=kept.quantize,
                 openvino_config=settings.compile_config(kept.hint))

    def write(folder):
        os.makedirs(os.path.join(folder, "assets.extra"))
        ov.save_model(model, os.path.join(folder, MODEL_FILE), compress_to_fp16=False)
        save_json(os.path.join(folder, EXPORT_FACTS), facts)
        if model_card is not None:
            with open(os.path.join(folder, "MODEL_CARD.md"), "w", encoding="utf-8") as f:
                f.write(model_card(facts))

    return write_version(export_root, write, version)


def calibration_texts(trained, count: int) -> list:
    """`count` of the run's training texts, shuffled (a pair as a tuple): what int8
    activations are calibrated on."""
    data = trained.config.data
    with log_lines.quiet():
        dataset = open_dataset(data)
        sample = dataset.load(data.train_split).shuffle(dataset.size(data.train_split), seed=0)
    columns = ("text", "text_pair") if trained.dataset.is_pair else ("text",)
    texts = [tuple(example[c].numpy().decode("utf-8", "replace") for c in columns)
             for example in sample.take(count)]
    return [t if len(columns) > 1 else t[0] for t in texts]


def export_run(trained, config: ExportConfig) -> str:
    """`sst2.export --format=openvino`: the artifact of a restored run (`--quantize=int8`:
    calibrated on `config.calibration_texts` of its training texts), its agreement with
    the SavedModel measured on the run's validation split. Returns its folder."""
    if config.part(ReadingConfig) != ReadingConfig():
        raise UserError("--window_tokens, --window_overlap and --max_windows set how the "
                        "SavedModel reads long texts; the OpenVINO artifact reads the first "
                        f"{trained.preprocessor.sequence_length} tokens. Leave them unset.")
    check_supported(trained)
    data = trained.config.data
    texts = []
    try:
        if config.quantize in ("int8", "auto"):
            texts = calibration_texts(trained, config.calibration_texts)
    except UserError as e:
        if config.quantize == "int8":
            raise UserError(f"{e} --quantize=int8 calibrates on the run's training texts: put "
                            "the file back where the run read it, or use "
                            "--quantize=int8_weights, which needs none.") from e
        logging.info(f"note: not trying int8 activations, which calibrate on the run's "
                     f"training texts: {e}")
    logging.info(f"Scoring {data.eval_split} with the SavedModel's computation, to measure the "
                 "artifact against it.")
    reference, unmeasured = None, None
    try:
        reference = predict_split(trained, data.eval_split, with_text=True,
                                  show_progress=trained.config.run.progress)
    except UserError as e:  # moved data: the artifact is still exported, said unmeasured
        unmeasured = f"the run's data could not be read at export time ({e})"
        logging.warning(f"not measuring the artifact against the SavedModel on the run's "
                        f"validation data: {e} To measure it, put the file back where the run "
                        "read it and export again.")
    logging.info("Converting to OpenVINO (" + (
        PRECISIONS[config.quantize] if config.quantize != "auto" else
        "each quantization, the fastest kept that agrees with the SavedModel")
        + (f"; int8 activations calibrated on {len(texts)} training texts)." if texts
           else ")."))
    folder = export_openvino(
        trained, config.export_root or RunFolder(trained.config.run.model_dir).export_openvino,
        config.quantize, texts, reference, unmeasured=unmeasured,
        model_card=lambda facts: card.render(trained, artifact=facts))
    if not trained.dataset.is_pair:
        logging.info(f"note: the artifact reads the first "
                     f"{trained.preprocessor.sequence_length - 2} tokens of a text and cuts the "
                     "rest, where the SavedModel reads a long text in windows; sst2.predict and "
                     "sst2.score say when they cut one.")
    return folder
