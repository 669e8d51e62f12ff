"""The docs say what the code is: the layout table is the code's, the README stays short."""

import importlib.util
import os

from tests.helpers import REPO


def test_the_layout_table_lists_every_module_as_its_docstring_says():
    spec = importlib.util.spec_from_file_location(
        "layout", os.path.join(REPO, "scripts", "layout.py"))
    layout = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layout)
    with open(os.path.join(REPO, "docs", "design.md")) as f:
        design = f.read()
    assert "\n".join(layout.rows()) in design, "run: python scripts/layout.py (docs/design.md)"


def test_the_readme_is_for_a_newcomer():
    """What it is, how to run it (the two set-up commands, as CI runs the second), your
    own data, what a run writes, one results table with its CPU named, the docs linked;
    short enough to read in one sitting."""
    import re

    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(REPO, ".ci", "run")) as f:
        ci = f.read()
    sections = re.findall(r"^## (.+)$", readme, re.M)
    for needed in ("Your own data", "Commands", "What a run writes", "Results", "More"):
        assert needed in sections, (needed, sections)
    commands = [line.split("   #")[0].strip() for line in readme.splitlines()
                if line.rstrip().endswith(("# the main job, offline", "# the tests"))]
    assert len(commands) == 2 and "python -m sst2.train" in commands[0], commands
    assert commands[1] in ci, "the README's test command is what CI runs"
    results = readme[readme.index("## Results"):readme.index("## More")]
    assert results.count("\n|---") == 1 and re.search(r"(AMD EPYC|Intel Xeon)", results)
    for page in sorted(os.listdir(os.path.join(REPO, "docs"))):
        assert f"(docs/{page})" in readme, page
    assert len(readme.splitlines()) <= 220


def test_every_behaviour_test_is_described_in_the_docs():
    import json

    with open(os.path.join(REPO, "docs", "behaviour.md")) as f:
        rows = {tuple(cell.strip() for cell in line.strip("|\n").split("|")[:3])
                for line in f if line.startswith("| ")}
    folder = os.path.join(REPO, "sst2", "resources", "behaviour")
    for name in ("generic.json", "sentiment.json"):
        with open(os.path.join(folder, name)) as f:
            for test in json.load(f)["tests"]:
                assert (test["capability"], test["name"], test["kind"]) in rows, test["name"]
