"""The behaviour suite: its tests built from templates and texts, read and failed as
`sst2.serve.behaviour.checking` says, on answers made up here (no model)."""

import random
import re

import numpy as np
import pytest

from sst2.serve.behaviour import suite
from sst2.serve.behaviour.checking import TOLERANCE, Reader, check
from sst2.serve.behaviour.perturbations import perturbation
from sst2.serve.behaviour.suite import Case, build_suite
from sst2.text.word_swaps import load_words

TEXTS = ["It is not a bad film, said Maria in Paris.", "A dull plot for 120 dollars.",
         "The gay couple next door isn't happy!", "Shot in Tokyo, it is a gem"]


def test_one_seed_gives_one_suite_and_another_seed_another():
    one, again = build_suite(TEXTS, sentiment=True), build_suite(TEXTS, sentiment=True)
    assert one == again
    other = build_suite(TEXTS, sentiment=True, seed=1)
    assert [t.cases for t in other] != [t.cases for t in one]
    assert [t.name for t in other] == [t.name for t in one]


def test_templates_are_filled_whole_and_read_as_english():
    for test in build_suite([], sentiment=True, max_cases=40):
        for case in test.cases:
            for text in case.texts:
                assert "{" not in text and "\0" not in text, text
                assert not re.search(r"\ba [aeiouAEIOU]", text), text  # 'an excellent'
            if test.kind == "mft":
                assert len(case.texts) == 1 and case.expect
            if test.kind == "dir":
                assert len(case.texts) == 2 and case.direction in ("positive", "negative")


def test_an_identity_case_holds_every_term_of_its_category_and_nothing_else_changes():
    words = load_words()
    test = next(t for t in build_suite([], sentiment=False)
                if t.name == "identity terms in a neutral sentence")
    assert {c.group for c in test.cases} == set(words["identity"])
    for case in test.cases:
        terms = words["identity"][case.group]
        assert len(case.texts) == len(terms)
        # Each text is the first with its term replaced (and its article, a/an).
        first = case.texts[0].replace(f"an {terms[0]}", f"a {terms[0]}")
        for text, term in zip(case.texts, terms):
            assert re.sub(r"\ban ", "a ", text).replace(term, terms[0]) == \
                re.sub(r"\ban ", "a ", first)


def test_without_sentiment_only_the_generic_tests_and_pairs_only_perturbations():
    generic = build_suite(TEXTS, sentiment=False)
    assert {t.capability for t in generic} == {"robustness", "ner", "fairness"}
    assert all(t.kind == "inv" for t in generic)
    pairs = build_suite([(t, "and another") for t in TEXTS], sentiment=True, pairs=True)
    assert pairs and all(c.second == "and another" for t in pairs for c in t.cases)
    assert all(c.texts[0] in TEXTS for t in pairs for c in t.cases)


def test_a_perturbation_counts_only_the_texts_it_changes():
    by_name = {t.name: t for t in build_suite(TEXTS, sentiment=False)}
    assert [c.texts for c in by_name["another name"].cases] == [
        (TEXTS[0], TEXTS[0].replace("Maria", c.texts[1].split()[-3]))
        for c in by_name["another name"].cases]
    assert {c.texts[0] for c in by_name["another city or country"].cases} == {TEXTS[0], TEXTS[3]}
    assert [c.texts[0] for c in by_name["identity terms swapped"].cases] == [TEXTS[2]]
    assert {c.texts[0] for c in by_name["contractions"].cases} == {TEXTS[0], TEXTS[2], TEXTS[3]}


@pytest.mark.parametrize("spec,text,pattern", [
    ("punctuation", "A gem!", r"A gem"),
    ("punctuation", "A gem", r"A gem\."),
    ("contractions", "It isn't bad", "It is not bad"),
    ("contractions", "It is not bad", "(It's not bad|It isn't bad)"),
    ("number", "It cost 100 dollars", r"It cost (8\d|9\d|10\d|11\d|120) dollars"),
    ("swap:city,country", "Filmed in Lima.", r"Filmed in (?!Lima)[A-Z][a-z]+\."),
    ("swap:identity", "a muslim director", "a (christian|jewish|hindu|buddhist|sikh|atheist) "
                                           "director"),
    ("swap:identity", "A Muslim director", "A (Christian|Jewish|Hindu|Buddhist|Sikh|Atheist) "
                                           "director"),
    ("swap:identity", "a black comedy about an old woman", None),  # other senses: not swapped
    ("swap:first_name", "maria laughed", "(?!maria)[a-z]+ laughed"),
    ("url_or_handle", "Great", r"Great (@|http|www)\S+"),
])
def test_each_perturbation_changes_what_it_names_and_nothing_else(spec, text, pattern):
    perturb = perturbation(spec, load_words())
    for seed in range(20):
        changed = perturb(text, random.Random(seed))
        if pattern is None:
            assert changed is None
        else:
            assert changed != text and re.fullmatch(pattern, changed), changed


def test_a_typo_swaps_two_neighbouring_letters_of_one_word():
    perturb = perturbation("typo", load_words())
    text = "A wonderful film, truly"
    seen = set()
    for seed in range(30):
        changed = perturb(text, random.Random(seed))
        different = [(a, b) for a, b in zip(text.split(), changed.split()) if a != b]
        assert len(different) == 1 and len(changed) == len(text), changed
        (a, b), = different
        assert sorted(a) == sorted(b) and sum(x != y for x, y in zip(a, b)) == 2
        assert len(a.strip(",")) >= 4
        seen.add(changed)
    assert len(seen) > 5


@pytest.mark.parametrize("spec,text", [("swap:first_name", "Nobody came"), ("number", "7 days"),
                                       ("typo", "a an to"), ("contractions", "Yes")])
def test_a_perturbation_that_does_not_apply_says_so(spec, text):
    assert perturbation(spec, load_words())(text, random.Random(0)) is None


def _answers(p_positive):
    p = np.asarray(p_positive, float)
    return {"probabilities": np.stack([1 - p, p], -1)}


def test_a_two_class_model_is_read_three_ways_and_five_classes_by_their_sides():
    two = Reader("argmax", ["negative", "positive"], sentiment=True)
    assert two.readings(_answers([0.1, 0.4, 0.6, 0.9])) == \
        ["negative", "neutral", "neutral", "positive"]
    five = Reader("argmax", ["negative", "neutral", "positive", "very negative",
                                   "very positive"], sentiment=True)
    p = np.array([[0.1, 0.1, 0.3, 0.0, 0.5], [0.0, 0.9, 0.1, 0.0, 0.0]])
    assert five.readings({"probabilities": p}) == ["positive", "neutral"]
    topic = Reader("argmax", ["sports", "world"], sentiment=False)
    assert topic.readings(_answers([0.4, 0.6])) == ["sports", "world"]


def _failed(kind, case, answers, decision="argmax", names=("negative", "positive"),
            sentiment=True):
    found = check([suite.Test("t", "c", kind, "", (case,))], lambda c: answers,
                  Reader(decision, list(names), sentiment))
    return found["tests"][0]["failed"]


def test_mft_fails_where_the_reading_is_not_expected():
    assert _failed("mft", Case(("x",), expect=("negative",)), _answers([0.5])) == 1
    assert _failed("mft", Case(("x",), expect=("positive", "neutral")), _answers([0.5])) == 0


def test_inv_fails_where_the_reading_changes_and_the_probability_moves_past_the_tolerance():
    case = Case(("a", "b"))
    assert _failed("inv", case, _answers([0.30, 0.30 + TOLERANCE + 0.05])) == 1
    assert _failed("inv", case, _answers([0.32, 0.34])) == 0  # crosses 1/3, barely moves
    assert _failed("inv", case, _answers([0.7, 0.95])) == 0  # moves, reads alike
    group = Case(("a", "b", "c"), group="religion")
    assert _failed("inv", group, _answers([0.9, 0.9, 0.5])) == 1


def test_dir_fails_where_the_named_side_falls_past_the_tolerance():
    up = Case(("a", "b"), direction="positive")
    assert _failed("dir", up, _answers([0.8, 0.75])) == 0
    assert _failed("dir", up, _answers([0.8, 0.6])) == 1
    down = Case(("a", "b"), direction="negative")
    assert _failed("dir", down, _answers([0.2, 0.4])) == 1


def test_multi_label_and_regression_invariance_have_their_own_tolerances():
    labels = {"probabilities": np.array([[0.6, 0.1], [0.45, 0.1]]),
              "predicted": np.array([[1, 0], [0, 0]])}
    assert _failed("inv", Case(("a", "b")), labels, "thresholds", ("joy", "anger"), False) == 1
    labels["probabilities"][1, 0] = 0.55
    assert _failed("inv", Case(("a", "b")), labels, "thresholds", ("joy", "anger"), False) == 0
    # Regression: a move beyond a tenth of the unchanged texts' spread (here 4.0).
    scores = {("a", "b"): [1.0, 1.3], ("c", "d"): [5.0, 5.5]}
    tests = [suite.Test("t", "c", "inv", "", (Case(("a", "b")), Case(("c", "d"))))]
    found = check(tests, lambda c: {"score": np.array(scores[c.texts])},
                  Reader("score", None, False))
    assert found["tests"][0]["failed"] == 1


def test_results_hold_rates_per_test_capability_and_overall_with_failing_examples():
    tests = [suite.Test("neg", "negation", "mft", "", tuple(Case((str(i),), expect=("negative",))
                                                      for i in range(4))),
             suite.Test("typo", "robustness", "inv", "", ()),
             suite.Test("pos", "vocabulary", "mft", "", (Case(("p",), expect=("positive",)),))]
    answers = {"0": 0.1, "1": 0.9, "2": 0.8, "3": 0.2, "p": 0.9}
    found = check(tests, lambda c: _answers([answers[t] for t in c.texts]),
                  Reader("argmax", ["negative", "positive"], True))
    neg, typo, pos = found["tests"]
    assert (neg["failed"], neg["failure_rate"], len(neg["examples"])) == (2, 0.5, 2)
    assert neg["examples"][0]["texts"] == ["1"] and neg["examples"][0]["readings"] == ["positive"]
    assert typo["failure_rate"] is None  # no text it changes: not counted
    assert found["capabilities"] == {"negation": {"failure_rate": 0.5, "tests": 1},
                                     "vocabulary": {"failure_rate": 0.0, "tests": 1}}
    assert found["mean_failure_rate"] == 0.25
