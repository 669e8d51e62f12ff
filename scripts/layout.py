"""Prints docs/design.md's Layout table from the code: every subpackage and module of
sst2 with its docstring's first sentence, and every script.

    python scripts/layout.py > /tmp/layout.md
"""

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def first_line(path: str) -> str:
    with open(path) as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    return " ".join(doc.strip().split("\n\n")[0].split()).rstrip(".") if doc.strip() else ""


def _package_rows(root: str, name: str) -> list[str]:
    """Each sub-package of `root` (named `name/...`), its modules, then its own
    sub-packages, in order."""
    out = []
    for package in sorted(d for d in os.listdir(root)
                          if os.path.exists(os.path.join(root, d, "__init__.py"))):
        folder = os.path.join(root, package)
        summary = first_line(os.path.join(folder, "__init__.py"))
        out.append(f"| **`{name}/{package}/`** | **{summary}** |")
        out += [f"| `{name}/{package}/{f}` | {first_line(os.path.join(folder, f))} |"
                for f in sorted(os.listdir(folder)) if f.endswith(".py") and f != "__init__.py"]
        out += _package_rows(folder, f"{name}/{package}")
    return out


def rows() -> list[str]:
    out = ["| module | idea |", "|---|---|"]
    root = os.path.join(REPO, "sst2")
    top = sorted(f for f in os.listdir(root) if f.endswith(".py") and f != "__init__.py")
    out += [f"| `sst2/{f}` | {first_line(os.path.join(root, f))} |" for f in top]
    out += _package_rows(root, "sst2")
    scripts = os.path.join(REPO, "scripts")
    out += [f"| `scripts/{f}` | {first_line(os.path.join(scripts, f))} |"
            for f in sorted(os.listdir(scripts)) if f.endswith(".py")]
    return out


if __name__ == "__main__":
    print("\n".join(rows()))
