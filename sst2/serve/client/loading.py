"""An export as a client loads it: a SavedModel or an OpenVINO artifact, found from a
version folder, an export root or a model_dir, and called on batches of texts.

`load_export` returns one function for both kinds, answering numpy arrays (the
target's `export_outputs`); `sst2.predict` and `sst2.score` call it.

Example:
    >>> from sst2.serve.versions import latest_export
    >>> answer, pairs, task = load_export(resolve_export_dir(openvino_dir))
    >>> sorted(answer(["a gripping film"])), pairs
    (['cut', 'label', 'label_id', 'probabilities'], False)
"""

import os
import sys

import numpy as np

from sst2.run.errors import UserError
from sst2.run.run_folder import RunFolder
from sst2.run.targets import TARGETS
from sst2.serve.versions import incomplete_versions, latest_export, read_export_facts

# What marks an export's version folder: a SavedModel, or an OpenVINO artifact.
MARKERS = ("saved_model.pb", "model.xml")


def resolve_export_dir(path: str, quiet: bool = False) -> str:
    """An export's folder (a SavedModel or an OpenVINO artifact) from a version folder, an
    export root or a model_dir (its SavedModel export first); `quiet`: without the note
    on incomplete versions skipped."""
    if any(os.path.exists(os.path.join(path, marker)) for marker in MARKERS):
        return path
    folder = RunFolder(path)
    for root in (path, folder.export, folder.export_openvino):
        # An OpenVINO root has versions holding model.xml; any other, a SavedModel's.
        marker = next((m for m in reversed(MARKERS) if latest_export(root, m)), MARKERS[0])
        broken = incomplete_versions(root, marker)
        found = latest_export(root, marker)
        if broken and found and not quiet:
            print(f"note: {', '.join(broken)} holds no {marker} (a model server would "
                  f"fail to load it); using {found}.", file=sys.stderr)
        if found:
            return found
        if broken:
            raise UserError(f"{broken[-1]} holds no {marker}, and no older version is "
                            "complete. Export again with: python -m sst2.export --model_dir=...")
    raise UserError(f"No SavedModel or OpenVINO artifact at {path}. Export one with: "
                    "python -m sst2.export --model_dir=...")


def is_openvino_artifact(path: str) -> bool:
    """Whether `path` (as `resolve_export_dir` takes it) is, or leads to, an OpenVINO
    artifact: answered without TensorFlow. Where it leads nowhere, False (the error is
    said where the export is loaded)."""
    try:
        return os.path.exists(os.path.join(resolve_export_dir(path, quiet=True), "model.xml"))
    except UserError:
        return False


def load_export(export_dir: str):
    """A function answering a batch of texts (and one of second texts) as numpy arrays
    (the target's `export_outputs`), whether the export takes sentence pairs, and its task:
    of a SavedModel (`load_signature`) or an OpenVINO artifact."""
    if not os.path.exists(os.path.join(export_dir, "model.xml")):
        return _signature_answers(export_dir, "serving_default")
    try:
        from sst2.serve.client.openvino_runtime import OpenVINOModel
    except ImportError as e:
        raise UserError(f"{export_dir} is an OpenVINO artifact: answering with it needs "
                        "openvino and openvino-tokenizers (pip install 'sst2[openvino]').") from e
    try:
        model = OpenVINOModel(export_dir)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise UserError(f"{export_dir} holds no loadable OpenVINO artifact ({reason}). Export "
                        "it again with: python -m sst2.export --format=openvino "
                        "--model_dir=...") from e
    return model, model.pairs, model.task


def load_explainer(export_dir: str):
    """As `load_export`, with the SavedModel's `explain` signature (`sst2.serve.graph.explaining`):
    answers with each text's words, tokens and their attributions."""
    if os.path.exists(os.path.join(export_dir, "model.xml")):
        raise UserError(f"{export_dir} is an OpenVINO artifact, which answers without "
                        "gradients: explain with the run's SavedModel (its export/ folder).")
    return _signature_answers(export_dir, "explain")


def _signature_answers(export_dir: str, name: str):
    """`load_export`'s triple for a SavedModel's signature `name`."""
    import tensorflow as tf  # only for a SavedModel: an OpenVINO client has none

    signature, pairs, task = load_signature(export_dir, name)

    def answer(texts, second_texts=None):
        inputs = {"text": tf.constant(texts, tf.string)}
        if second_texts is not None:
            inputs["text_pair"] = tf.constant(second_texts, tf.string)
        return {key: value.numpy() for key, value in signature(**inputs).items()}

    return answer, pairs, task


def _attribution(value) -> float:
    return float(f"{value:.4g}")  # 4 significant digits: attributions span many decades


def explanation_record(explained: dict, i: int, each_label: bool, label_names=None) -> dict:
    """Text `i` of a batch of `explain` answers (numpy), as plain JSON values: `words` and
    `word_attributions` (a pair's second text: `pair_words`, `pair_word_attributions`),
    `tokens` and `token_attributions`; with `each_label` (a multi-label model,
    `Target.explains_each_label`) attributions by predicted label, `{label: [...]}`.

    >>> out = {"words": np.array([[b"so", b"dull"]]), "word_attributions": np.array(
    ...     [[0.01, 0.4]]), "tokens": np.array([[b"so", b"dull"]]),
    ...     "token_attributions": np.array([[0.01, 0.4]]), "label_id": np.array([0])}
    >>> explanation_record(out, 0, each_label=False)["word_attributions"]
    [0.01, 0.4]
    """
    words = [w.decode("utf-8", "replace") for w in explained["words"][i] if w]
    tokens = [t.decode("utf-8", "replace") for t in explained["tokens"][i] if t]
    first = int(explained["first_words"][i]) if "first_words" in explained else len(words)
    def listed(values, n):
        return [_attribution(v) for v in values[:n]]

    def by_label(values, n):  # one list, or a multi-label model's {label: list}
        if not each_label:
            return listed(values, n)
        names = label_names or [str(j) for j in range(len(values))]
        return {names[j]: listed(values[j], n)
                for j in np.flatnonzero(explained["predicted"][i])}

    word_values = by_label(explained["word_attributions"][i], len(words))
    record = {"words": words[:first], "word_attributions": _part(word_values, slice(first))}
    if "first_words" in explained:
        record["pair_words"] = words[first:]
        record["pair_word_attributions"] = _part(word_values, slice(first, None))
    record["tokens"] = tokens
    record["token_attributions"] = by_label(explained["token_attributions"][i], len(tokens))
    return record


def _part(values, part: slice):
    """A pair's values of one of its texts, per label or not."""
    if isinstance(values, dict):
        return {name: v[part] for name, v in values.items()}
    return values[part]


def load_signature(export_dir: str, name: str = "serving_default"):
    """The export's signature `name`, its `serving_default` checked to be an sst2 model's;
    whether it takes sentence pairs; and its task (the target whose `export_outputs`
    `serving_default` returns)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)

    try:
        signatures = tf.saved_model.load(export_dir).signatures
        serve = signatures["serving_default"]
    except (OSError, ValueError, KeyError, tf.errors.OpError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise UserError(f"{export_dir} holds no loadable SavedModel ({reason}). Export it "
                        "again with: python -m sst2.export --model_dir=...") from e
    inputs = serve.structured_input_signature[1]
    outputs = set(serve.structured_outputs)
    tasks = [name for name, target in TARGETS.items() if set(target.export_outputs) == outputs]
    if set(inputs) - {"text", "text_pair"} or "text" not in inputs or not tasks or any(
            spec.dtype != tf.string for spec in inputs.values()):
        raise UserError(f"{export_dir} is not an sst2 export: its serving_default takes "
                        f"{sorted(inputs)} and returns {sorted(outputs)}, where sst2's takes "
                        "text (and text_pair) strings and returns probabilities, label_id "
                        "and label (or a multi-label or regression model's outputs).")
    if name not in signatures:
        raise UserError(f"{export_dir} has no {name} signature (it was exported by an older "
                        "sst2). Export it again with: python -m sst2.export --model_dir=...")
    return signatures[name], "text_pair" in inputs, tasks[0]


def label_names(export_dir: str) -> tuple[list | None, str]:
    """The label names and separator an export records (`sst2.serve.graph.serving`'s
    `assets.extra/sst2.json`), for a multi-label answer by name."""
    facts = read_export_facts(export_dir)
    return facts.get("label_names"), facts.get("label_separator", ",")
