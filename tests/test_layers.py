"""The packages' imports point one way, without cycles; a kind of target is spelled in one place.

Layers, bottom to top: run < text < model < fit < serve < the head search and
the entry points (docs/design.md, "Layout"). Every `import sst2...` counts,
at the top of a module or inside a function.
"""

import ast
import os
import re

from tests.helpers import REPO

ORDER = ["run", "text", "model", "fit", "serve"]
KIND = re.compile(r"[\"'](single_label|multi_label|regression)[\"']")


def _modules() -> dict:
    found = {}
    root = os.path.join(REPO, "sst2")
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, REPO)[:-3].split(os.sep)
                found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _layer(module: str) -> int:
    parts = module.split(".")
    return ORDER.index(parts[1]) if len(parts) > 1 and parts[1] in ORDER else len(ORDER)


def _imports(modules: dict) -> set:
    edges = set()
    for name, path in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            edges |= {(name, t) for t in targets if t in modules and t != name}
    return edges


def test_no_import_goes_up_the_layers():
    edges = _imports(_modules())
    up = sorted(f"{a} -> {b}" for a, b in edges if _layer(a) < _layer(b))
    assert not up, up


def test_no_modules_import_each_other_in_a_cycle():
    modules = _modules()
    edges = _imports(modules)
    graph = {m: sorted(b for a, b in edges if a == m) for m in modules}
    state, back = {}, []  # state: 1 on the current path, 2 done

    def visit(module, path):
        state[module] = 1
        for imported in graph[module]:
            if state.get(imported) == 1:
                back.append(" -> ".join(path[path.index(imported):] + [imported]))
            elif imported not in state:
                visit(imported, path + [imported])
        state[module] = 2

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])
    assert not back, back


def test_only_the_targets_module_spells_a_kind_of_target():
    spelled = []
    for name, path in _modules().items():
        with open(path) as f:
            if name != "sst2.run.targets" and KIND.search(f.read()):
                spelled.append(name)
    assert not spelled, spelled


def test_the_bottom_layer_imports_without_tensorflow():
    """`sst2.run` (options, registries, run folder) loads in a process without TensorFlow:
    flags parse and bad options are refused before TensorFlow starts."""
    import subprocess
    import sys

    modules = sorted(m for m in _modules() if _layer(m) == 0)
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras')))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.strip() == "[]", found.stdout[-2000:]


def test_nothing_in_the_bottom_layer_imports_tensorflow_even_inside_a_function():
    """`sst2.run` declares (options, registries, kinds of target, the run folder); the
    tensor work lives on the floors that compute it. Read from the source: an import
    inside a function, which the import check above cannot see, counts too."""
    found = []
    for name, path in _modules().items():
        if _layer(name) != 0:
            continue
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{name}:{node.lineno} {n}" for n in names
                      if n.split(".")[0] in ("tensorflow", "keras", "tf_keras", "keras_hub")]
    assert not found, found
