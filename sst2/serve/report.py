"""The report a person reads: `<model_dir>/report/index.html`, one self-contained page.

`write_report(trained)` scores the run's validation split through the
export's computation and writes what the run is (data, classes, options,
precision, machine, phase times), its learning curves, and by task: the
confusion matrix with per-class precision, recall and F1, calibration
(reliability diagram and ECE before and after the temperature, a confidence
histogram), the most confidently wrong texts and accuracy by text length
(and windows); per-label F1 and thresholds for multi-label runs; predicted
against true, with Pearson and Spearman, for regression; and the behaviour tests'
results (`behaviour.json`), where the run has them. Images are embedded
(`sst2.fit.figures`); the page needs no network and no JavaScript.

Example:
    >>> from sst2.serve.trained import restore
    >>> path = write_report(restore(trained_dir))
    >>> page = open(path).read()
    >>> path.endswith("report/index.html"), page.count("<img") >= 5, "Calibration" in page
    (True, True, True)
"""

import dataclasses
import html
import json
import os
import platform

import numpy as np
import tensorflow as tf

from sst2.fit import figures
from sst2.run import machine, metrics
from sst2.run.files import load_json, write_atomically
from sst2.run.run_folder import RunFolder
from sst2.serve import temperature as calibration
from sst2.serve.behaviour.described import read_results, report_section
from sst2.serve.graph.explaining import make_explain_fn
from sst2.serve.html_page import STYLE, Markup, image, table

WRONG_SHOWN = 12  # confidently wrong examples listed
TEXT_SHOWN = 300  # characters of a listed text; a longer one ends in an ellipsis


# Words shaded by attribution: toward the answer the model gave, away from it.
TOWARD, AWAY = (214, 39, 40), (31, 119, 180)


def shaded(words: list[str], attributions, limit: int = TEXT_SHOWN) -> Markup:
    """Words as HTML, each on a background as strong as its share of the text's largest
    |attribution|: red toward the answer, blue away; its value in a tooltip. A text
    longer than `limit` characters is cut after its last whole word that fits (or
    inside its first, if that alone is longer) and ends in an ellipsis.

    >>> shaded(["so", "dull"], [0.1, -0.4])
    '<span title="+0.1" style="background:rgba(214,39,40,0.20)">so</span> <span \
title="-0.4" style="background:rgba(31,119,180,0.80)">dull</span>'
    >>> shaded(["a" * 9], [0.0], limit=4)
    '<span title="+0" style="background:rgba(214,39,40,0.00)">aaaa</span>…'
    """
    largest = max((abs(float(a)) for a in attributions), default=0.0) or 1.0
    spans, length = [], -1
    for word, value in zip(words, attributions):
        length += len(word) + 1
        cut = length > limit
        if cut and spans:
            break
        red, green, blue = TOWARD if value >= 0 else AWAY
        spans.append(f'<span title="{float(value):+.2g}" style="background:rgba({red},{green},'
                     f'{blue},{0.8 * abs(float(value)) / largest:.2f})">'
                     f"{html.escape(word[:limit])}</span>")
        if cut:
            break
    ellipsis = "…" if length > limit else ""
    return Markup(" ".join(spans) + ellipsis)


def _run_section(trained, run: dict) -> str:
    info, config = trained.dataset, trained.config
    rows = [("data", json.dumps(info.identity, sort_keys=True)),
            ("task", info.task), ("classes" if info.target.has_classes else "target",
                                  ", ".join(info.label_names) or "a number"),
            ("examples", f"{run.get('train_examples', '?')} training, "
                         f"{run.get('eval_examples', '?')} validation"),
            ("backbone", f"{config.model.preset} (frozen), precision "
                         f"{run.get('precision', config.model.precision)}"),
            ("options", json.dumps({g: json.loads(json.dumps(
                getattr(config, g).__dict__)) for g in ("model", "optimization")},
                sort_keys=True)),
            ("checkpoint", os.path.basename(trained.checkpoint_path)),
            ("machine", f"{machine.cpu_name()}, {platform.platform(terse=True)}"),
            ("seconds", ", ".join(f"{k.replace('_seconds', '')} {run[k]:.1f}" for k in
                                  ("tokenize_seconds", "encode_seconds", "head_seconds",
                                   "wall_seconds") if isinstance(run.get(k), (int, float))))]
    return "<h2>The run</h2>" + table(None, rows)


def _curves_section(run: dict, metric: str) -> str:
    if not run.get("epochs"):
        return ""
    return ("<h2>Learning curves</h2>" + image(figures.learning_curves(run["epochs"], metric),
                                                "learning curves"))


def _class_sections(trained, scored: dict) -> str:
    lengths = np.array([len(ids) for ids in trained.preprocessor.tokenizer(
        [t.decode("utf-8", "replace") for t in scored["text"]])])
    names = list(trained.dataset.label_names)
    raw, gold = scored["probabilities"], scored["gold"]
    temperature = trained.temperature or calibration.fit_temperature(raw, gold)
    calibrated = calibration.scaled(raw, temperature)
    predicted = calibrated.argmax(1)
    k = len(names)
    matrix = np.bincount(gold * k + predicted, minlength=k * k).reshape(k, k)
    tp, support, said = np.diag(matrix), matrix.sum(1), matrix.sum(0)
    precision = np.divide(tp, said, out=np.zeros(k), where=said > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k),
                   where=precision + recall > 0)
    per_class = [(n, f"{p:.3f}", f"{r:.3f}", f"{f:.3f}", int(s))
                 for n, p, r, f, s in zip(names, precision, recall, f1, support)]
    ece = (calibration.expected_calibration_error(raw, gold),
           calibration.expected_calibration_error(calibrated, gold))
    confidence = calibrated.max(1)
    wrong = np.flatnonzero(predicted != gold)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:WRONG_SHOWN]
    explained = _explained(trained, scored, wrong, temperature)

    def text(k):  # a pair's two texts, one after the other, each cut to its first words
        words = [w.decode("utf-8", "replace") for w in explained["words"][k] if w]
        values = explained["word_attributions"][k]
        first = int(explained["first_words"][k]) if "first_words" in explained else len(words)
        parts = [shaded(words[:first], values[:first])]
        if "first_words" in explained:
            parts.append(shaded(words[first:], values[first:len(words)]))
        return Markup(" / ".join(parts))

    wrong_rows = [(text(k), names[gold[i]], names[predicted[i]], f"{confidence[i]:.3f}")
                  for k, i in enumerate(wrong)]
    return ("<h2>Confusion</h2>"
            + image(figures.confusion(matrix, names, False), "confusion matrix, counts")
            + image(figures.confusion(matrix, names, True), "confusion matrix, normalized")
            + table(["class", "precision", "recall", "F1", "support"], per_class)
            + "<h2>Calibration</h2>"
            + f"<p>Temperature {temperature:.3f}: expected calibration error {ece[0]:.4f} "
              f"before, {ece[1]:.4f} after (15 bins). Labels are unchanged.</p>"
            + image(figures.reliability(calibration.reliability(raw, gold),
                                         calibration.reliability(calibrated, gold)),
                     "reliability diagram")
            + image(figures.histogram(confidence, "confidence (calibrated)"),
                     "confidence histogram")
            + "<h2>Errors</h2><p>The most confidently wrong validation texts, each word "
              "shaded by how much it moved the model toward its wrong answer (red) or away "
              "from it (blue), as the export's <code>explain</code> signature says "
              "(integrated gradients; the value in each word's tooltip):</p>"
            + table(["text", "true", "predicted", "confidence"], wrong_rows)
            + _by_length(lengths, predicted == gold, trained))


def _explained(trained, scored: dict, rows, temperature: float) -> dict:
    """The export's `explain` answers (numpy) for `rows` of the scored split."""
    explain = make_explain_fn(trained.preprocessor, trained.backbone, trained.head,
                              trained.spec, dataset=trained.dataset, temperature=temperature)
    texts = [tf.constant([scored[c][i] for i in rows], tf.string)
             for c in ("text", "text_pair") if c in scored]
    return {name: value.numpy() for name, value in explain(*texts).items()}


def _by_length(lengths: np.ndarray, correct: np.ndarray, trained) -> str:
    edges = [0, 10, 20, 40, 80, trained.config.model.sequence_length - 2, np.inf]
    labels, values = [], []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (lengths > low) & (lengths <= high)
        if inside.any():
            labels.append(f"{low + 1}-{int(high)}" if np.isfinite(high) else f">{low}")
            values.append(float(correct[inside].mean()))
    return ("<h2>Accuracy by text length (tokens)</h2>"
            "<p>Texts longer than the window are read in several windows.</p>"
            + image(figures.bars(labels, values, "accuracy"), "accuracy by length"))


def _label_set_sections(trained, scored: dict) -> str:
    names = list(trained.dataset.label_names)
    thresholds = trained.head.thresholds.numpy()
    scores = metrics.multi_label_scores(scored["probabilities"], scored["gold"], thresholds)
    rows = [(n, f"{f:.3f}", f"{t:.3f}", int(s)) for n, f, t, s in
            zip(names, scores["per_label_f1"], thresholds, scored["gold"].sum(0))]
    return ("<h2>Per label</h2>"
            + f"<p>macro-F1 {scores['macro_f1']:.4f}, micro-F1 {scores['micro_f1']:.4f}, "
              f"subset accuracy {scores['subset_accuracy']:.4f}.</p>"
            + image(figures.bars(names, scores["per_label_f1"], "F1", list(thresholds),
                                  "threshold"), "F1 and threshold per label")
            + table(["label", "F1", "threshold", "support"], rows))


def _number_sections(trained, scored: dict) -> str:
    found = metrics.regression_scores(scored["score"], scored["gold"])
    title = (f"Pearson {metrics.shown(found['pearson'])}, "
             f"Spearman {metrics.shown(found['spearman'])}")
    return ("<h2>Predicted against true</h2>"
            + image(figures.scatter(scored["score"], scored["gold"], title), title))


def scored_split(trained, split: str | None = None) -> dict:
    """What the report draws from: the split's uncalibrated answers, with their texts."""
    from sst2.serve.evaluation import predict_split

    raw = dataclasses.replace(trained, temperature=None)  # raw probabilities
    return predict_split(raw, split or trained.config.data.eval_split,
                         show_progress=trained.config.run.progress, with_text=True)


# What the page shows, by how the target's labels are spelled (`Target.labels`): a
# new kind of target with labels of one of these kinds shows their pictures.
_SECTIONS = {"classes": _class_sections, "label_sets": _label_set_sections,
             "numbers": _number_sections}


def write_report(trained, split: str | None = None,
                 scored: dict | None = None) -> str:
    """Writes `<model_dir>/report/index.html` for `trained` (see the module); returns it.
    `scored`: `scored_split`'s answers, if the caller has them already."""
    folder = RunFolder(trained.config.run.model_dir)
    run = load_json(folder.metrics) if os.path.isfile(folder.metrics) else {}
    split = split or trained.config.data.eval_split
    if scored is None:
        scored = scored_split(trained, split)
    target, metric = trained.dataset.target, trained.config.optimization.best_metric
    metric = target.default_metric if metric == "auto" else metric
    behaviour = read_results(trained.config.run.model_dir)
    body = (_run_section(trained, run) + _curves_section(run, metric)
            + _SECTIONS[target.labels](trained, scored)
            + (report_section(behaviour) if behaviour else ""))
    title = f"sst2 report: {os.path.basename(os.path.abspath(trained.config.run.model_dir))}"
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>"
            f"{html.escape(title)}</title><style>{STYLE}</style></head><body><h1>"
            f"{html.escape(title)}</h1><p>Validation split: {html.escape(split)}, "
            f"{len(scored['idx'])} examples, scored as the export answers.</p>{body}"
            "</body></html>\n")
    os.makedirs(folder.report, exist_ok=True)
    path = os.path.join(folder.report, "index.html")
    write_atomically(path, lambda f: f.write(page), encoding="utf-8")
    return path
