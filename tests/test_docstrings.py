"""Every docstring example in the package runs, as keras-hub runs its own.

Examples may use these names, bound here to small fixtures: `preset` (a tiny
random DistilBERT preset folder), `data_dir` (a tfds data dir holding a tiny
glue/sst2), `trained_dir` (a finished tiny run), `tmp_dir` (an empty folder) and, for the
modules of `NEEDS_OPENVINO_DIR`, `openvino_dir` (an OpenVINO artifact of the tiny run).
"""

import doctest
import importlib
import io
import pkgutil

import pytest

import sst2

# Examples that train, export or serve a whole model run in the slow tier.
SLOW = {"sst2.serve.graph.serving", "sst2.serve.trained", "sst2.serve.evaluation",
        "sst2.fit.training", "sst2.head_search.searching", "sst2.serve.report",
        "sst2.serve.calibrated", "sst2.serve.model_card", "sst2.serve.openvino.export",
        "sst2.serve.client.openvino_runtime", "sst2.serve.client.loading",
        "sst2.serve.client.scoring", "sst2.serve.behaviour.export_check"}
NEEDS_OPENVINO_DIR = {"sst2.serve.client.openvino_runtime", "sst2.serve.client.loading",
                      "sst2.serve.client.scoring", "sst2.serve.behaviour.export_check"}
MODULES = [pytest.param(m.name, marks=[pytest.mark.slow] if m.name in SLOW else [])
           for m in sorted(pkgutil.walk_packages(sst2.__path__, "sst2."), key=lambda m: m.name)]
# Subpackages say what they group; their modules hold the examples.
PACKAGES = {m.name for m in pkgutil.walk_packages(sst2.__path__, "sst2.") if m.ispkg}
# Entry points hold usage lines (their flags are tested), not examples.
WITHOUT_EXAMPLES = {"sst2.cli", "sst2.run.errors", "sst2.run.files", "sst2.train", "sst2.evaluate",
                    "sst2.export", "sst2.predict", "sst2.prepare_data", "sst2.search",
                    "sst2.report", "sst2.score", "sst2.behaviour"}


def _run_examples(name, globs) -> tuple[int, str]:
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    for test in doctest.DocTestFinder().find(module, name, extraglobs=globs):
        runner.run(test, out=report.write)
    return runner.tries, report.getvalue()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tiny_preset, tiny_data_dir, trained_tiny_run, tmp_path,
                                request):
    globs = {"preset": tiny_preset, "data_dir": tiny_data_dir, "trained_dir": trained_tiny_run,
             "tmp_dir": str(tmp_path)}
    if name in NEEDS_OPENVINO_DIR:
        globs["openvino_dir"] = request.getfixturevalue("openvino_tiny_export")
    tries, failures = _run_examples(name, globs)
    assert not failures, failures
    if name not in WITHOUT_EXAMPLES | PACKAGES:
        assert tries > 0, f"{name} has no docstring example"
