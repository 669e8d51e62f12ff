"""The OpenVINO artifact's settings, chosen on the machine that exports it.

Which quantization and which of OpenVINO's performance hints answer fastest
depends on the CPU: int8 activations pay where AMX runs int8 matmuls and cost
agreement everywhere; the throughput hint (a batch split over requests in
flight, one stream each) pays on some CPUs and not on others. So the export
times each setting against the SavedModel's computation on the run's own
texts (`rates`: batches of 32, rounds interleaved, the median), and keeps the
fastest whose labels agree with the SavedModel's on at least `AGREEMENT_BOUND`
of the validation examples (`choose`). `sst2.json` records what was measured,
on which CPU; clients compile with the kept setting's `compile_config`.

Example:
    >>> answerers = {"quick": lambda texts: sum(map(len, texts)),
    ...              "slow": lambda texts: [sorted(texts * 50) for _ in range(20)]}
    >>> rate = rates(answerers, [["a gripping film", "dull"] * 16], rounds=2)
    >>> rate["quick"] > rate["slow"] > 0
    True
    >>> kept = choose([Setting("int8", "LATENCY", rate=900, answers_equal=0.98),
    ...                Setting("int8_weights", "LATENCY", rate=800, answers_equal=0.997)])
    >>> kept.quantize, kept.hint
    ('int8_weights', 'LATENCY')
"""

import dataclasses
import statistics
import time

import numpy as np
from absl import logging

from sst2.run import machine
from sst2.serve.client.openvino_runtime import OpenVINOModel
from sst2.serve.evaluation import served_answer

# The share of validation labels an artifact must give as the SavedModel does to be kept.
AGREEMENT_BOUND = 0.995
# OpenVINO's performance hints: one request whose threads split every operation
# (latency), or one single-threaded stream per core, a batch split between them
# (throughput). The second also holds up beside other work: a stream never waits for
# a thread on a core another process holds (docs/serving.md, "A shared machine").
HINTS = ("LATENCY", "THROUGHPUT")


def compile_config(hint: str) -> dict:
    """OpenVINO's compile settings for an artifact answering under `hint`."""
    return {"PERFORMANCE_HINT": hint}


@dataclasses.dataclass
class Setting:
    """One way to make and run the artifact, and what it measured.

    Attributes:
        quantize: what is int8 (`sst2.run.command_config.QUANTIZATIONS`).
        hint: OpenVINO's performance hint (`HINTS`).
        rate: texts per second, batches of 32.
        answers_equal: the share of validation answers equal to the SavedModel's
            (None: not measured: a faster setting agreed enough and was kept).
    """
    quantize: str
    hint: str
    rate: float = 0.0
    answers_equal: float | None = None

    @property
    def name(self) -> str:
        return f"{self.quantize}, {self.hint.lower()}"


def rates(answerers: dict, columns: list, batch_size: int = 32, rounds: int = 3) -> dict:
    """Texts per second of each answerer (a function of one list of texts per column)
    over the texts of `columns`, in batches of `batch_size`: each warmed up on one batch,
    then timed once per round, the rounds interleaved (each in another order, so that a
    busy moment weighs on all alike); the median round of each."""
    count = len(columns[0])
    batches = [[column[i:i + batch_size] for column in columns]
               for i in range(0, count, batch_size)]
    for answer in answerers.values():
        answer(*batches[0])
    seconds = {name: [] for name in answerers}
    names = list(answerers)
    for round_ in range(rounds):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            started = time.perf_counter()
            for batch in batches:
                answerers[name](*batch)
            seconds[name].append(time.perf_counter() - started)
    return {name: count / statistics.median(times) for name, times in seconds.items()}


def choose(settings: list, agreement_of=None) -> Setting:
    """The fastest of `settings` whose answers agree with the SavedModel's on at least
    `AGREEMENT_BOUND` of the validation examples. `agreement_of(setting)` gives a
    setting's share when it is not known yet: settings are tried fastest first, so the
    slower ones are not measured. If none agrees enough, the most agreeing one."""
    ranked = sorted(settings, key=lambda s: -s.rate)
    for setting in ranked:
        if setting.answers_equal is None and agreement_of is not None:
            setting.answers_equal = agreement_of(setting)
        if setting.answers_equal is not None and setting.answers_equal >= AGREEMENT_BOUND:
            return setting
    best = max(ranked, key=lambda s: (s.answers_equal or 0.0, s.rate))
    logging.warning(f"warning: no setting of the artifact gives {AGREEMENT_BOUND:.1%} of the "
                    f"validation labels the SavedModel gives; keeping the most agreeing "
                    f"({best.name}: {best.answers_equal:.2%}).")
    return best


def speed_facts(kept: Setting, settings: list, saved_model_rate: float, cpu: str,
                texts: int, batch_size: int = 32) -> dict:
    """`sst2.json`'s `speed`: the kept setting's rate against the SavedModel's, where and
    how it was measured, and every setting tried."""
    return {"cpu": cpu, "texts": texts, "batch_size": batch_size, "hint": kept.hint,
            "rate": round(kept.rate, 1), "saved_model_rate": round(saved_model_rate, 1),
            "ratio": round(kept.rate / saved_model_rate, 3),
            "settings": [{"quantize": s.quantize, "hint": s.hint, "rate": round(s.rate, 1),
                          "ratio": round(s.rate / saved_model_rate, 3),
                          "answers_equal": s.answers_equal} for s in settings]}


def measured_setting(trained, models: dict, reference: dict, facts: dict,
                     timed_texts: int = 256):
    """Each of `models` (an `openvino.Model` by quantization) under each hint, timed
    against the SavedModel's computation of `trained` on the first `timed_texts` of
    `reference`'s texts, and the fastest that agrees enough kept (`choose`): the kept
    setting, its agreement (`measure_agreement`) and `sst2.json`'s `speed`.

    Args:
        trained: the restored run (`sst2.serve.trained`).
        models: the artifact's model for each quantization tried.
        reference: the SavedModel's answers to the validation texts (`predict_split(...,
            with_text=True)`).
        facts: the artifact's `sst2.json` facts, as its client reads them.
        timed_texts: how many of the texts are timed.
    """
    dataset = trained.dataset
    artifacts = {(q, hint): OpenVINOModel(model, facts=facts, config=compile_config(hint))
                 for q, model in models.items() for hint in HINTS}
    columns = [[t.decode("utf-8", "replace") for t in reference[c][:timed_texts]]
               for c in (("text", "text_pair") if dataset.is_pair else ("text",))]
    cpu = machine.cpu_name()
    logging.info(f"Timing {len(artifacts)} settings of the artifact against the SavedModel's "
                 f"computation on {len(columns[0])} validation texts, batches of 32 ({cpu}).")
    rate = rates({"saved_model": served_answer(trained), **artifacts}, columns)
    tried = [Setting(q, hint, rate=rate[(q, hint)]) for q, hint in artifacts]
    thresholds = trained.head.thresholds.numpy() if dataset.target.thresholded else None
    agreements = {}

    def agreement(setting):
        key = (setting.quantize, setting.hint)
        agreements[key] = measure_agreement(artifacts[key], reference, dataset, thresholds)
        return agreements[key]["answers_equal"]

    kept = choose(tried, agreement)
    if (kept.quantize, kept.hint) not in agreements:
        agreement(kept)
    speed = speed_facts(kept, tried, rate["saved_model"], cpu, len(columns[0]))
    for setting in sorted(tried, key=lambda s: -s.rate):
        logging.info(f"  {setting.name}: {setting.rate:.0f} texts/s, "
                     f"{setting.rate / rate['saved_model']:.2f}x the SavedModel's "
                     f"{rate['saved_model']:.0f}"
                     + (f"; {setting.answers_equal:.2%} of labels equal"
                        if setting.answers_equal is not None else ""))
    logging.info(f"Kept {kept.name}.")
    if kept.rate < rate["saved_model"]:
        logging.warning(f"warning: on this machine the SavedModel answers faster than the "
                        f"artifact ({rate['saved_model']:.0f} texts/s against "
                        f"{kept.rate:.0f}); serve the SavedModel here.")
    return kept, agreements[(kept.quantize, kept.hint)], speed


def measure_agreement(artifact, reference: dict, dataset, thresholds=None,
                      batch_size: int = 64) -> dict:
    """The artifact's answers to the reference's texts against the reference's: the
    target's `agreement`, and the default metric of each against the gold labels."""
    target = dataset.target
    columns = ("text", "text_pair") if dataset.is_pair else ("text",)
    texts = [[t.decode("utf-8", "replace") for t in reference[c]] for c in columns]
    parts = [artifact(*[column[i:i + batch_size] for column in texts])
             for i in range(0, len(texts[0]), batch_size)]
    answers = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    result = {"examples": len(texts[0]), **target.agreement(answers, reference)}
    metric = target.default_metric
    gold = reference["gold"]
    result[metric] = target.score(answers[target.answer], gold, thresholds)[metric]
    result[f"saved_model_{metric}"] = target.score(reference[target.answer], gold,
                                                   thresholds)[metric]
    return result
