"""The code passes the linter configured in pyproject.toml (errors, style, import order)."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO


def find_ruff() -> str | None:
    """ruff beside this Python (a venv's, used without activating it), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "ruff")
    return beside if os.access(beside, os.X_OK) else shutil.which("ruff")


def test_ruff_is_found_beside_the_python_running_the_tests(monkeypatch):
    """Case 20 of issue 47: a venv's python run without activating it finds its ruff."""
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_ruff() == os.path.join(os.path.dirname(sys.executable), "ruff")


def test_the_code_passes_ruff():
    ruff = find_ruff()
    if ruff is None:
        pytest.fail("ruff is missing: pip install -e '.[test]' installs it.")
    found = subprocess.run([ruff, "check", "--no-cache", REPO], capture_output=True, text=True)
    assert found.returncode == 0, found.stdout + found.stderr
