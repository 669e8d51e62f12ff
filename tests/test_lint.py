"""The code passes the linter configured in pyproject.toml (errors, style, import order)."""

import shutil
import subprocess

import pytest

from tests.helpers import REPO


def test_the_code_passes_ruff():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is missing: pip install -e '.[test]' installs it.")
    found = subprocess.run([ruff, "check", "--no-cache", REPO], capture_output=True, text=True)
    assert found.returncode == 0, found.stdout + found.stderr
