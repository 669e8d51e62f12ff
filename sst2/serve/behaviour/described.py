"""A run's behaviour results in words and tables: the model card's section, the report's.

Both read `<model_dir>/behaviour.json` (`sst2.serve.publish.check_behaviour`,
or `python -m sst2.behaviour`). The card shows it only when it describes the
checkpoint and temperature the card ships with; the report shows what the
file describes, and says which model that was.

Example:
    >>> found = {"mean_failure_rate": 0.25, "tests": [
    ...     {"name": "negated praise", "capability": "negation", "kind": "mft",
    ...      "cases": 4, "failed": 2, "failure_rate": 0.5, "about": "",
    ...      "examples": [{"texts": ["The film was not good."], "readings": ["positive"],
    ...                    "expected": ["negative"]}]}],
    ...     "capabilities": {"negation": {"failure_rate": 0.5, "tests": 1}}}
    >>> print("\\n".join(card_lines(found)[5:8]))
    | capability | cases failed | tests |
    |---|---|---|
    | negation | 50.0 % | 1 |
"""

import html
import os

from sst2.fit import figures
from sst2.run.files import load_json
from sst2.run.run_folder import RunFolder
from sst2.serve.html_page import Markup, image, table

LIMIT = 0.2  # a capability failing more of its cases is named among the limits
EXAMPLES_SHOWN = 2  # failing examples per test in the report


def _rate(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def read_results(model_dir: str) -> dict | None:
    """`behaviour.json` of a run folder, or None where there is none."""
    path = RunFolder(model_dir).behaviour
    return load_json(path, "run python -m sst2.behaviour again") if os.path.isfile(path) \
        else None


def for_checkpoint(model_dir: str, checkpoint_path: str, temperature) -> dict | None:
    """The run's behaviour results if they describe this checkpoint at this temperature
    (what a model card may claim), else None."""
    found = read_results(model_dir)
    if not found or found.get("checkpoint") != os.path.basename(checkpoint_path):
        return None
    return found if found.get("temperature") == temperature else None


def _text(example: dict) -> str:
    return " → ".join(example["texts"]) + (f" / {example['second']}"
                                            if "second" in example else "")


def card_lines(found: dict) -> list[str]:
    """The model card's Markdown: failure rate per capability, and the capabilities that
    fail more than `LIMIT` of their cases in words, each with an example."""
    lines = ["", "## Behaviour", "",
             "sst2's behaviour tests (`python -m sst2.behaviour`; what each checks: "
             "sst2's docs/behaviour.md), the share of their cases this model fails:", "",
             "| capability | cases failed | tests |", "|---|---|---|"]
    for name, capability in sorted(found["capabilities"].items()):
        lines.append(f"| {name} | {_rate(capability['failure_rate'])} | "
                     f"{capability['tests']} |")
    lines.append(f"| mean over tests | {_rate(found['mean_failure_rate'])} | "
                 f"{sum(c['tests'] for c in found['capabilities'].values())} |")
    weak = [t for t in found["tests"] if (t["failure_rate"] or 0) > LIMIT]
    if weak:
        lines += ["", "Where it fails more than one case in five:", ""]
        for test in sorted(weak, key=lambda t: -t["failure_rate"]):
            example = test["examples"][0] if test["examples"] else None
            shown = (f": \"{_text(example)}\" read {', '.join(map(str, example['readings']))}"
                     if example else "")
            lines.append(f"- {test['capability']}, {test['name']}: "
                         f"{_rate(test['failure_rate'])}{shown}")
    return lines


def report_section(found: dict) -> str:
    """The report's Behaviour section: a picture and a table of the failure rate per
    capability, every test's, and failing examples."""
    capabilities = sorted(found["capabilities"].items())
    where = (f"checkpoint {found['checkpoint']}" if found.get("checkpoint")
             else f"the export {found.get('export_dir', '')}")
    rows = [(t["capability"], t["kind"], t["name"], f"{t['failed']} / {t['cases']}",
             _rate(t["failure_rate"])) for t in found["tests"]]
    examples = [(t["name"], Markup("<br>".join(html.escape(x) for x in e["texts"])),
                 ", ".join(map(str, e["readings"])), ", ".join(e.get("expected", []))
                 or e.get("direction", "alike"))
                for t in found["tests"] for e in t["examples"][:EXAMPLES_SHOWN]]
    return ("<h2>Behaviour</h2>"
            f"<p>sst2's behaviour tests on {html.escape(where)}: the share of each "
            "capability's cases failed (<code>python -m sst2.behaviour</code>; minimum "
            "functionality, invariance and directional tests, described in sst2's "
            f"docs/behaviour.md). Mean over tests: {_rate(found['mean_failure_rate'])}.</p>"
            + image(figures.bars([n for n, _ in capabilities],
                                 [c["failure_rate"] for _, c in capabilities],
                                 "cases failed"), "behaviour: cases failed per capability")
            + table(["capability", "kind", "test", "failed", "rate"], rows)
            + "<h3>Failing examples</h3>"
            + table(["test", "texts", "read as", "expected"], examples))
