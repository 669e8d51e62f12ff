"""Answers of an OpenVINO artifact (`sst2.serve.openvino.export`), without TensorFlow.

Needs only `openvino`, `openvino-tokenizers` and numpy:

    >>> model = OpenVINOModel(openvino_dir)
    >>> answers = model(["a gripping film", "dull"])
    >>> sorted(answers), answers["probabilities"].shape, model.pairs
    (['cut', 'label', 'label_id', 'probabilities'], (2, 2), False)
    >>> set(answers["label"]) <= {"negative", "positive"}
    True

Without sst2 at all, the artifact is an ordinary OpenVINO model of strings:

    >>> import openvino as ov, openvino_tokenizers  # the second registers its operations
    >>> compiled = ov.Core().compile_model(os.path.join(openvino_dir, "model.xml"))
    >>> compiled([ov.Tensor(np.array(["a gripping film"]))])["label_id"].shape
    (1,)
"""

import json
import os

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  (registers the tokenizer operations)

from sst2.run.targets import TARGETS
from sst2.serve.versions import EXPORT_FACTS

MODEL_FILE = "model.xml"


class OpenVINOModel:
    """An artifact folder, compiled for the CPU: call it with a list of texts (and one of
    second texts, for a model of pairs) to get the SavedModel's outputs as numpy arrays.

    Attributes:
        facts: its `sst2.json` (task, label names, inputs, outputs, precision, agreement).
        task: its target kind (`sst2.run.targets`).
    """

    def __init__(self, folder: str, threads: int | None = None,
                 inference_precision: str | None = None, facts: dict | None = None):
        if facts is None:  # given: an artifact still being written
            with open(os.path.join(folder, EXPORT_FACTS), encoding="utf-8") as f:
                facts = json.load(f)
        self.facts = facts
        self.task = self.facts["task"]
        # OpenVINO's own defaults (bfloat16 where the CPU has it), as any client gets them,
        # unless `inference_precision` (`f32`, `bf16`) says otherwise.
        config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
        if inference_precision:
            config["INFERENCE_PRECISION_HINT"] = inference_precision
        self.compiled = ov.Core().compile_model(os.path.join(folder, MODEL_FILE), "CPU", config)
        self.request = self.compiled.create_infer_request()

    @property
    def pairs(self) -> bool:
        return self.facts["inputs"] == ["text", "text_pair"]

    def __call__(self, text: list, text_pair: list | None = None) -> dict:
        texts = [text] if text_pair is None else [text, text_pair]
        if len(texts) != len(self.facts["inputs"]):
            raise ValueError(f"this model takes {' and '.join(self.facts['inputs'])}")
        if not len(text):
            return {}
        self.request.infer([ov.Tensor(np.array([_as_str(t) for t in column], dtype=np.str_))
                            for column in texts])
        answers = {output.get_any_name(): np.copy(self.request.get_tensor(output).data)
                   for output in self.compiled.outputs}
        return TARGETS[self.task].name_answers(answers, self.facts["label_names"],
                                               self.facts["label_separator"])


def _as_str(text) -> str:
    """A text as `str`: bytes that are not UTF-8 replaced by U+FFFD, as the SavedModel does."""
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text
