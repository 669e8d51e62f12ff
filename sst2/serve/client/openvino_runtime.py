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
    """An artifact, compiled for the CPU: call it with a list of texts (and one of second
    texts, for a model of pairs) to get the SavedModel's outputs as numpy arrays.

    It compiles with the settings its export measured fastest on the exporting machine
    (`sst2.json`'s `openvino_config`: OpenVINO's performance hint;
    `sst2.serve.openvino.settings`). Under the throughput hint a batch is split over
    OpenVINO's requests in flight, one per stream.

    Args:
        model: the artifact's folder, or its `openvino.Model` (then `facts` is needed).
        threads: OpenVINO's `INFERENCE_NUM_THREADS` (default: its own).
        inference_precision: `f32` or `bf16` (default: OpenVINO's for this CPU, bfloat16
            where the CPU has it), as any client gets it.
        facts: its `sst2.json` (default: read from the folder).
        config: compile settings over the export's.

    Attributes:
        facts: its `sst2.json` (task, label names, inputs, outputs, precision, agreement).
        task: its target kind (`sst2.run.targets`).
    """

    def __init__(self, model, threads: int | None = None,
                 inference_precision: str | None = None, facts: dict | None = None,
                 config: dict | None = None):
        if facts is None:  # given: an artifact still being written
            with open(os.path.join(model, EXPORT_FACTS), encoding="utf-8") as f:
                facts = json.load(f)
        self.facts = facts
        self.task = self.facts["task"]
        settings = {**self.facts.get("openvino_config", {}), **(config or {})}
        if threads:
            settings["INFERENCE_NUM_THREADS"] = threads
        if inference_precision:
            settings["INFERENCE_PRECISION_HINT"] = inference_precision
        if isinstance(model, str):
            model = os.path.join(model, MODEL_FILE)
        self.compiled = ov.Core().compile_model(model, "CPU", settings)
        self.requests = ov.AsyncInferQueue(
            self.compiled, self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._answers = {}
        self.requests.set_callback(self._keep)

    @property
    def pairs(self) -> bool:
        return self.facts["inputs"] == ["text", "text_pair"]

    def __call__(self, text: list, text_pair: list | None = None) -> dict:
        texts = [text] if text_pair is None else [text, text_pair]
        if len(texts) != len(self.facts["inputs"]):
            raise ValueError(f"this model takes {' and '.join(self.facts['inputs'])}")
        if not len(text):
            return {}
        columns = [np.array([_as_str(t) for t in column], dtype=np.str_) for column in texts]
        # One part per request in flight (one, under the latency hint), in order.
        parts = np.array_split(np.arange(len(text)), min(len(self.requests), len(text)))
        self._answers = {}
        for i, rows in enumerate(parts):
            self.requests.start_async([ov.Tensor(column[rows[0]:rows[-1] + 1])
                                       for column in columns], i)
        self.requests.wait_all()
        answers = {name: np.concatenate([self._answers[i][name] for i in range(len(parts))])
                   for name in self._answers[0]}
        return TARGETS[self.task].name_answers(answers, self.facts["label_names"],
                                               self.facts["label_separator"])

    def _keep(self, request, part: int) -> None:
        """A finished request's outputs, copied before the request is reused."""
        self._answers[part] = {output.get_any_name(): np.copy(request.get_tensor(output).data)
                               for output in self.compiled.outputs}


def _as_str(text) -> str:
    """A text as `str`: bytes that are not UTF-8 replaced by U+FFFD, as the SavedModel does."""
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text
