"""Calibration, the report page (rendered by headless Chromium), TensorBoard's pictures and
the model card in each export."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from sst2.serve import temperature as calibration
from tests.helpers import run_module


def test_temperature_scaling_recovers_a_known_temperature_and_keeps_every_label():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 3))
    true = np.exp(logits / 2.5)
    true /= true.sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in true])
    overconfident = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    found = calibration.calibrate(overconfident, labels)
    assert found["temperature"] == pytest.approx(2.5, rel=0.08)
    assert found["ece_after"] < found["ece_before"] / 2
    assert found["nll_after"] < found["nll_before"]
    assert found["accuracy_after"] == found["accuracy_before"]
    scaled = calibration.scaled(overconfident, found["temperature"])
    assert (scaled.argmax(1) == overconfident.argmax(1)).all()
    np.testing.assert_allclose(scaled.sum(1), 1, atol=1e-9)


def test_expected_calibration_error_is_its_definition():
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    labels = np.array([0, 1, 1, 0])
    # Bins of width 1/15: 0.9 and 0.8 alone in theirs (1 right, 1 wrong), 0.7, 0.55.
    expected = (abs(1 - 0.9) + abs(0 - 0.8) + abs(1 - 0.7) + abs(0 - 0.55)) / 4
    assert calibration.expected_calibration_error(probabilities, labels) == pytest.approx(
        expected)


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("The report test needs Chromium: apt-get install -y chromium")
    return path


def _decoded_images(page: str, folder) -> tuple[int, int]:
    """How many of the page's images Chromium decoded, out of how many: a copy of the page
    with a script that counts them into its title, read back with --dump-dom."""
    probe = folder / "probe.html"
    script = ("<script>window.addEventListener('load', () => { const all = [...document."
              "images]; document.title = 'decoded ' + all.filter(i => i.complete && "
              "i.naturalWidth > 0).length + ' of ' + all.length; });</script>")
    probe.write_text(page.replace("</body>", script + "</body>"), encoding="utf-8")
    result = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                             "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                            capture_output=True, text=True, timeout=120)
    found = result.stdout.split("<title>decoded ", 1)[1].split("</title>", 1)[0]
    decoded, total = (int(x) for x in found.split(" of "))
    return decoded, total


@pytest.mark.slow
def test_the_report_renders_in_chromium_and_the_card_matches_the_run(trained_tiny_run,
                                                                      tmp_path):
    import yaml

    run = tmp_path / "run"
    shutil.copytree(trained_tiny_run, run)
    exported = run_module("sst2.export", f"--model_dir={run}")
    assert exported.returncode == 0, exported.stderr[-2000:]
    calibration_file = json.loads((run / "calibration.json").read_text())
    assert calibration_file["accuracy_after"] == calibration_file["accuracy_before"]
    checked = run_module("sst2.behaviour", f"--export_dir={run}", "--max_cases=5")
    assert checked.returncode == 0, checked.stderr[-2000:]
    reported = run_module("sst2.report", f"--model_dir={run}")
    assert reported.returncode == 0, reported.stderr[-2000:]
    page = (run / "report" / "index.html").read_text(encoding="utf-8")
    for heading in ("The run", "Learning curves", "Confusion", "Calibration", "Errors",
                    "Accuracy by text length", "Behaviour"):
        assert f"<h2>{heading}" in page
    assert "<script" not in page and "http" not in page.split("<body>", 1)[1]
    # The confidently wrong texts, word by word, shaded by attribution.
    errors = page.split("<h2>Errors</h2>", 1)[1].split("</table>", 1)[0]
    assert errors.count("<tr>") - 1 == errors.count("<td><span title=") > 0
    decoded, total = _decoded_images(page, tmp_path)
    assert total >= 7 and decoded == total  # the behaviour section's picture among them
    # Its failing examples: one row per example shown (at most two a test).
    behaviour = json.loads((run / "behaviour.json").read_text())
    shown = sum(min(2, len(t["examples"])) for t in behaviour["tests"])
    examples = page.split("<h3>Failing examples</h3>", 1)[1].split("</table>", 1)[0]
    assert examples.count("<tr>") - 1 == shown
    screenshot = tmp_path / "page.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={screenshot}", "--window-size=1200,2400",
                    (run / "report" / "index.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The model card: YAML front matter a hub reads, its numbers the run's.
    (version,) = os.listdir(run / "export")
    card = (run / "export" / version / "MODEL_CARD.md").read_text(encoding="utf-8")
    front = yaml.safe_load(card.split("---\n")[1])
    for field in ("base_model", "datasets", "metrics", "license", "tags", "model-index"):
        assert front[field], field
    metrics_json = json.loads((run / "metrics.json").read_text())
    kept = [r for r in metrics_json["epochs"] if r.get("best")][-1]
    (result,) = front["model-index"][0]["results"]
    assert {m["type"]: m["value"] for m in result["metrics"]} == {
        m: kept[f"val_{m}"] for m in front["metrics"]}
    assert front["license"] == "mit" and "accuracy" in front["metrics"]
    for section in ("## Intended use", "## Classes", "## Training data and options",
                    "## Evaluation", "## Limitations", "## How to serve it", "## Reproduce"):
        assert section in card
    # The tiny run validates on 64 examples: too few to trust a temperature (issue 35,
    # case 8), so none is folded in, and the card says why.
    assert not calibration_file["applied"] and calibration_file["temperature"] == 1.0
    assert "Calibration: none folded in (temperature 1: 64 validation examples" in card
    assert json.loads((run / "export" / version / "assets.extra" / "sst2.json").read_text())[
        "temperature"] == pytest.approx(calibration_file["temperature"])


def test_tensorboard_holds_a_confusion_image_and_precision_recall_curves(trained_tiny_run):
    from tensorboard.backend.event_processing import event_accumulator

    events = event_accumulator.EventAccumulator(os.path.join(trained_tiny_run, "eval"))
    events.Reload()
    tags = events.Tags()["tensors"]
    assert "confusion_matrix" in tags
    assert {"pr_curve/class_0/pr_curves", "pr_curve/class_1/pr_curves"} <= set(tags)


def test_the_report_cuts_a_long_text_with_an_ellipsis():
    """Case 18: a 100 KB line filled thousands of pixels of the report."""
    import re

    from sst2.serve.report import TEXT_SHOWN, shaded

    def visible(page):
        return re.sub(r"<[^>]+>", "", page)

    long_line = "word " * 20_000
    shown = visible(shaded(long_line.split(), [0.1] * 20_000))
    assert shown.endswith("…") and len(shown) <= TEXT_SHOWN + 1
    assert long_line.startswith(shown[:-1])
    assert visible(shaded(["x" * 1000], [0.0])) == "x" * TEXT_SHOWN + "…"  # no space to cut at
    assert visible(shaded(["fits", "whole"], [0.1, 0.2])) == "fits whole"
