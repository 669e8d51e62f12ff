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
    with open(os.path.join(REPO, "README.md")) as f:
        assert len(f.read().splitlines()) <= 220
