"""`python -m sst2.behaviour` on exports as clients load them: a run folder's (its
validation texts perturbed, its results in the run folder), one outside any run
(`--output`, `--texts_file`), and the other kinds of target (invariance only)."""

import json
import os
import shutil

import pytest

from tests.helpers import error_lines, run_module

pytestmark = pytest.mark.slow


def _exported_copy(run_dir, tmp_path, name="run"):
    from sst2.serve.trained import restore

    run = tmp_path / name
    shutil.copytree(run_dir, run)
    return run, restore(str(run)).export()


def test_a_run_folders_export_is_checked_and_its_results_kept_in_the_run(trained_tiny_run,
                                                                          tmp_path):
    run, export = _exported_copy(trained_tiny_run, tmp_path)
    result = run_module("sst2.behaviour", f"--export_dir={run}", "--max_cases=12")
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads((run / "behaviour.json").read_text())
    # The tiny run's classes are negative and positive: the sentiment tests run too.
    assert found["sentiment"] and found["export_dir"] == export
    assert found["texts_given"] == 64  # its validation split
    # What the export serves, as its facts say: the card of that checkpoint may carry it.
    facts = json.loads((tmp_path / export / "assets.extra" / "sst2.json").read_text())
    assert found["checkpoint"] == facts["checkpoint"] and found["checkpoint"].startswith("best-")
    assert found["temperature"] == facts["temperature"]
    capabilities = {t["capability"] for t in found["tests"]}
    assert capabilities == {"vocabulary", "negation", "temporal", "srl", "fairness",
                            "robustness", "ner"}
    for test in found["tests"]:
        assert 0 <= test["failed"] <= test["cases"] <= 12
        if test["cases"]:
            assert test["failure_rate"] == test["failed"] / test["cases"]
        assert len(test["examples"]) == min(3, test["failed"])
        assert f"{test['failed']:>4}/{test['cases']:<4} {test['name']}" in result.stdout
    for name, capability in found["capabilities"].items():
        rates = [t["failure_rate"] for t in found["tests"]
                 if t["capability"] == name and t["failure_rate"] is not None]
        assert capability == {"failure_rate": pytest.approx(sum(rates) / len(rates)),
                              "tests": len(rates)}
        assert f"  {name:<12} {100 * capability['failure_rate']:5.1f} % failed" in result.stdout
    # One seed, one suite, one answer: a second run writes the same file.
    again = run_module("sst2.behaviour", f"--export_dir={run}", "--max_cases=12")
    assert again.returncode == 0 and json.loads((run / "behaviour.json").read_text()) == found

    # The report shows it; a model card of that checkpoint carries it, its table the file's.
    from sst2.serve.model_card import render
    from sst2.serve.trained import restore

    card = render(restore(str(run)))
    for name, capability in found["capabilities"].items():
        assert f"| {name} | {100 * capability['failure_rate']:.1f} % | " \
               f"{capability['tests']} |" in card
    reported = run_module("sst2.report", f"--model_dir={run}")
    assert reported.returncode == 0, reported.stderr[-2000:]
    page = (run / "report" / "index.html").read_text(encoding="utf-8")
    assert "<h2>Behaviour</h2>" in page and "Failing examples" in page


def test_an_export_outside_a_run_needs_an_output_and_writes_only_there(trained_tiny_run,
                                                                       tmp_path, outside):
    _, export = _exported_copy(trained_tiny_run, tmp_path)
    alone = tmp_path / "served" / "1"
    shutil.copytree(export, alone)
    before = sorted(os.listdir(alone))
    result = run_module("sst2.behaviour", f"--export_dir={alone}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert error_lines(result.stderr) == [
        f"error: {alone} is not in a run folder: name where to write the results with "
        "--output=behaviour.json."]
    texts = tmp_path / "texts.txt"
    texts.write_text("Maria loved it.\n\nA dull film in Paris, 120 minutes long\n",
                     encoding="utf-8")
    output = tmp_path / "out" / "behaviour.json"
    result = run_module("sst2.behaviour", f"--export_dir={alone}", f"--output={output}",
                        f"--texts_file={texts}", "--max_cases=5", "--sentiment=false")
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(output.read_text())
    assert found["texts_given"] == 2 and not found["sentiment"]
    assert {t["capability"] for t in found["tests"]} == {"robustness", "ner", "fairness"}
    names = {t["name"]: t for t in found["tests"]}
    assert names["another name"]["cases"] == 1 and names["another number"]["cases"] == 1
    assert sorted(os.listdir(alone)) == before and outside.read_text() == "keep me"


@pytest.mark.parametrize("kind", ["multi_label", "regression"])
def test_other_targets_get_the_invariance_tests_with_their_tolerances(kind, tiny_kind_run,
                                                                      tmp_path):
    from sst2.serve.behaviour.export_check import check_export, run_texts

    run, export = _exported_copy(tiny_kind_run(kind), tmp_path)
    texts = run_texts(str(run))
    found = check_export(export, texts, max_cases=8)
    assert not found["sentiment"] and found["task"] == kind
    assert {t["kind"] for t in found["tests"]} == {"inv"}
    assert sum(t["cases"] for t in found["tests"]) > 0
    if kind == "regression":  # sentence pairs: the first text changed, the second kept
        assert isinstance(texts[0], tuple)
        assert all(e["second"] for t in found["tests"] for e in t["examples"])
    result = run_module("sst2.behaviour", f"--export_dir={run}", "--sentiment=true")
    assert result.returncode == 2
    assert error_lines(result.stderr)[0].startswith("error: --sentiment=true needs a "
                                                    "single-label model")
