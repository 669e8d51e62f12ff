"""The behaviour suite: its tests, built from templates and from the texts checked.

Three kinds of test, as behavioural testing names them:

* `mft` (minimum functionality): a filled template and the readings that pass
  ("The film was not good." must read negative);
* `inv` (invariance): texts that must be answered alike (a text and its copy
  with a typo; one sentence with every identity term of a category in turn);
* `dir` (directional): a change that may move the answer one way only (adding
  "Highly recommended." must not make a text more negative).

The tests live in `sst2/resources/behaviour/` as data: `generic.json` for any
classifier, `sentiment.json` for a sentiment one, filled from `words.json`.
Everything here is seeded: one seed, one suite, text for text.

Example:
    >>> tests = build_suite(["It is not a bad film.", "A dull plot."], sentiment=True,
    ...                     max_cases=5)
    >>> [t.name for t in tests if t.capability == "negation"][:2]
    ['negated praise', 'negated criticism']
    >>> next(t for t in tests if t.name == "negated praise").cases[0].texts
    ('The film was not enjoyable.',)
"""

import dataclasses
import json
import os
import random
import re

from sst2.serve.behaviour.perturbations import perturbation
from sst2.text.word_swaps import RESOURCES, load_words

KINDS = ("mft", "inv", "dir")
SLOT = re.compile(r"\{(\w+)\}")


@dataclasses.dataclass(frozen=True)
class Case:
    """One check: `texts` (mft: one; inv: the reference, then texts answered alike; dir:
    before and after), each with `second` (a pair export's unchanged second text)."""

    texts: tuple
    second: str | None = None
    expect: tuple = ()  # mft: the readings that pass
    direction: str = ""  # dir: "positive" or "negative"
    group: str = ""  # an identity template's category


@dataclasses.dataclass(frozen=True)
class Test:
    name: str
    capability: str
    kind: str
    about: str
    cases: tuple


def build_suite(texts: list, sentiment: bool, pairs: bool = False, seed: int = 0,
                max_cases: int = 100) -> list[Test]:
    """The suite for a classifier: `generic.json`'s tests, and `sentiment.json`'s too when
    `sentiment`; perturbations applied to `texts` (strings, or `(text, second)` for a pair
    export, whose first text alone is changed). Template tests need single texts: a
    pair export gets the perturbations only.

    Args:
        texts: the texts to perturb (a run's validation texts, a user's file).
        sentiment: whether the classifier answers a sentiment (see `sentiment.json`).
        pairs: whether the export reads sentence pairs.
        seed: what every choice of word, text and position is drawn from.
        max_cases: cases per test, at most.
    """
    words = load_words()
    specs = _read("generic.json")["tests"]
    base = [(t, None) if isinstance(t, str) else tuple(t) for t in texts]
    if sentiment:
        sentiment_file = _read("sentiment.json")
        specs = sentiment_file["tests"] + specs
        if not pairs:  # the suite's own sentences, as the perturbations' texts too
            rng = random.Random(f"{seed}:texts")
            base += [(_fill((t,), words, rng)[0], None)
                     for t in sentiment_file["texts"] for _ in range(10)]
    tests = []
    for spec in specs:
        if spec["kind"] not in KINDS:
            raise ValueError(f"{spec['name']}: kind {spec['kind']!r} is not one of {KINDS}")
        if "templates" in spec and pairs:
            continue
        rng = random.Random(f"{seed}:{spec['name']}")
        cases = (_template_cases(spec, words, rng, max_cases) if "templates" in spec
                 else _perturbed_cases(spec, words, base, rng, max_cases))
        tests.append(Test(spec["name"], spec["capability"], spec["kind"], spec["about"],
                          tuple(cases)))
    return tests


def _read(name: str) -> dict:
    with open(os.path.join(RESOURCES, name), encoding="utf-8") as f:
        return json.load(f)


def _template_cases(spec: dict, words: dict, rng: random.Random, max_cases: int) -> list:
    """Up to `max_cases` distinct cases, the templates taken in turn, slots drawn at
    random; an `{identity}` slot makes one case of every term of a category."""
    categories = sorted(words["identity"])
    cases, seen = [], set()
    for attempt in range(max_cases * 5):  # duplicates are drawn again, a bounded number
        if len(cases) == max_cases:
            break
        template = spec["templates"][attempt % len(spec["templates"])]
        if "from" in template:
            before, after = _fill((template["from"], template["to"]), words, rng)
            case = Case((before, after), direction=template["direction"])
        elif "{identity}" in template["text"]:
            category = categories[(attempt // len(spec["templates"])) % len(categories)]
            (filled,) = _fill((template["text"],), words, rng)
            case = Case(tuple(_articles(filled.replace("\0identity\0", term))
                              for term in words["identity"][category]), group=category)
        else:
            (text,) = _fill((template["text"],), words, rng)
            case = Case((text,), expect=tuple(template["expect"]))
        if case.texts not in seen:
            seen.add(case.texts)
            cases.append(case)
    return cases


def _fill(templates: tuple, words: dict, rng: random.Random) -> tuple:
    """Templates filled alike, each slot drawn from its word list once per slot name;
    `{identity}` left as a marker for the caller."""
    slots = sorted({s for t in templates for s in SLOT.findall(t)} - {"identity"})
    values = {s: rng.choice(words[s]) for s in slots}
    values["identity"] = "\0identity\0"
    return tuple(_articles(SLOT.sub(lambda m: values[m.group(1)], t)) for t in templates)


def _articles(text: str) -> str:
    """'a' before a vowel sound written 'an' ('an excellent film', 'an Asian doctor')."""
    return re.sub(r"\b([Aa]) (?=[AEIOUaeiou])", r"\1n ", text) if "\0" not in text else text


def _perturbed_cases(spec: dict, words: dict, base: list, rng: random.Random,
                     max_cases: int) -> list:
    """Up to `max_cases` of the texts the perturbation changes, in a seeded order."""
    perturb = perturbation(spec["perturb"], words)
    order = sorted(set(base), key=lambda t: (t[0], t[1] or ""))
    rng.shuffle(order)
    cases = []
    for text, second in order:
        if len(cases) == max_cases:
            break
        changed = perturb(text, rng)
        if changed is not None and changed != text:
            cases.append(Case((text, changed), second=second,
                              direction=spec.get("direction", "")))
    return cases
