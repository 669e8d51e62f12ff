"""An export's behaviour: the suite built for it, answered by it, and `behaviour.json`.

`check_export` loads an export as clients do (`sst2.serve.client.loading`: a
SavedModel or an OpenVINO artifact), builds the suite its task allows (a
single-label model every test; multi-label and regression models the
invariance tests, with a tolerance on their outputs), answers every distinct
text once, in batches, and returns what `sst2.serve.behaviour.checking` found.
`run_texts` gives a run's validation texts, which the perturbations change.

Example:
    >>> found = check_export(openvino_dir, ["a gripping film", "a dull plot"], max_cases=3)
    >>> found["sentiment"], sorted(found["capabilities"])[:3]
    (True, ['fairness', 'negation', 'ner'])
"""

import numpy as np
from absl import logging
from tqdm.auto import tqdm

from sst2.run.errors import UserError
from sst2.run.targets import TARGETS
from sst2.serve.behaviour.checking import Reader, check
from sst2.serve.behaviour.suite import build_suite
from sst2.serve.client.loading import load_export
from sst2.serve.versions import read_export_facts

VERSION = 1  # of behaviour.json's layout


def is_sentiment(label_names) -> bool:
    """Whether classes name a sentiment: one named positive and one negative."""
    names = [str(n).lower() for n in (label_names or [])]
    return any("positive" in n for n in names) and any("negative" in n for n in names)


def check_export(export_dir: str, texts: list, sentiment: str = "auto", seed: int = 0,
                 max_cases: int = 100, batch_size: int = 256,
                 show_progress: bool = False) -> dict:
    """The suite run on the export at `export_dir` (a version folder), as clients load it
    (see `check_answers`)."""
    answer, pairs, task = load_export(export_dir)
    facts = read_export_facts(export_dir)
    found = check_answers(answer, pairs, task, facts.get("label_names"), texts, sentiment,
                          seed, max_cases, batch_size, show_progress)
    # What the export serves, as its facts say: a model card of that checkpoint at that
    # temperature may carry the results (`sst2.serve.behaviour.described`).
    return {"export_dir": export_dir, "checkpoint": facts.get("checkpoint"),
            "temperature": facts.get("temperature"), **found}


def check_answers(answer, pairs: bool, task: str, label_names, texts: list,
                  sentiment: str = "auto", seed: int = 0, max_cases: int = 100,
                  batch_size: int = 256, show_progress: bool = False) -> dict:
    """The suite a model's task allows, answered by `answer(texts, second_texts)` (numpy
    arrays, as `load_export`'s), checked.

    Args:
        answer: the model's answers to a batch of texts (and of second texts).
        pairs: whether the model reads sentence pairs.
        task: its target's name (`sst2.run.targets.TARGETS`).
        label_names: its classes or labels.
        texts: the texts to perturb (strings, or `(text, second)` for pairs).
        sentiment: "auto" (the class names decide), "true" or "false".
        seed: the suite's seed.
        max_cases: cases per test, at most.
        batch_size: texts per call of `answer`.
        show_progress: a progress bar over the texts answered.
    """
    decision = TARGETS[task].decision
    one_class = decision == "argmax"  # a class per text, as a sentiment is
    if sentiment == "true" and not (one_class and is_sentiment(label_names)):
        raise UserError(f"--sentiment=true needs a single-label model with classes named "
                        f"positive and negative; this one answers {task} with classes "
                        f"{label_names}.")
    sentiment_tests = one_class and (
        sentiment == "true" or (sentiment == "auto" and is_sentiment(label_names)))
    tests = build_suite(texts, sentiment_tests, pairs=pairs, seed=seed, max_cases=max_cases)
    if not one_class:  # label sets and numbers: no expected class, no direction
        tests = [t for t in tests if t.kind == "inv"]
    answers_of = _answer_all(answer, tests, pairs, batch_size, show_progress)
    found = check(tests, answers_of, Reader(decision, label_names, sentiment_tests))
    return {"version": VERSION, "task": task, "sentiment": sentiment_tests, "seed": seed,
            "max_cases": max_cases, "texts_given": len(texts), **found}


def run_texts(model_dir: str, split: str = "validation") -> list:
    """A run's texts of `split` (its own data, as `config.json` names it): strings, or
    `(text, second)` for sentence pairs."""
    from sst2.run import log_lines
    from sst2.run.config_file import load_config
    from sst2.text.datasets import open_dataset

    with log_lines.quiet():  # the run's data again: its log said what it is
        dataset = open_dataset(load_config(model_dir).data)
        texts = []
        for batch in dataset.load(split).batch(1024):
            first = [t.decode("utf-8") for t in batch["text"].numpy()]
            if "text_pair" in batch:
                texts += list(zip(first, (t.decode("utf-8") for t in batch["text_pair"].numpy())))
            else:
                texts += first
    return texts


def _answer_all(answer, tests, pairs: bool, batch_size: int, show_progress: bool):
    """`answers_of(case)`: the export's answers to a case's texts, each distinct input
    answered once."""
    inputs = sorted({(text, case.second or "") for test in tests for case in test.cases
                     for text in case.texts})
    logging.info(f"Checking behaviour: {sum(len(t.cases) for t in tests)} cases in "
                 f"{len(tests)} tests, {len(inputs)} distinct texts.")
    rows = {key: i for i, key in enumerate(inputs)}
    parts = []
    for start in tqdm(range(0, len(inputs), batch_size), desc="behaviour", unit="batch",
                      leave=False, disable=not show_progress):
        batch = inputs[start:start + batch_size]
        answers = answer([t for t, _ in batch], [s for _, s in batch] if pairs else None)
        parts.append({k: np.asarray(v) for k, v in answers.items()
                      if np.asarray(v).dtype.kind in "biuf"})  # not the names
    every = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}

    def answers_of(case):
        index = [rows[(text, case.second or "")] for text in case.texts]
        return {k: v[index] for k, v in every.items()}

    return answers_of
