"""Measures issue 28's targets on the stand-in: GoEmotions macro-F1 and STS-B correlations.

    python scripts/measure_targets.py split-stsb OUT_DIR        # hold out every 5th pair
    python scripts/measure_targets.py zero-shot DEV.tsv          # the stand-in's cosine
    python scripts/measure_targets.py multi-label RUN_DIR...     # thresholds, honestly
    python scripts/measure_targets.py regression RUN_DIR...

`multi-label` scores each run's best checkpoint on its validation file through
the export's computation three ways: thresholds tuned on that file (what
training reports), thresholds tuned on one half and applied to the other
(2-fold cross-fitting: an estimate for unseen data) and a fixed 0.5.
`zero-shot` is the backbone's own cosine similarity of the two sentences'
mean-pooled last layer, no training: what a trained STS-B head must beat.
Results go to docs/measurements.md by hand, with the CPU named.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def split_stsb(out_dir: str, source: str = "../shared/data/stsb/train.tsv") -> None:
    """`train.tsv` and `dev.tsv` in `out_dir`: every 5th pair held out (the file is ordered
    by genre, so the held-out part spans them), and `train_binary.tsv`/`dev_binary.tsv`:
    the same pairs labelled 1 when the score is at least 3 (a classification pair task)."""
    with open(source, encoding="utf-8") as f:
        header, *rows = f.read().splitlines()
    os.makedirs(out_dir, exist_ok=True)
    parts = {"train": [r for i, r in enumerate(rows) if i % 5], "dev": rows[::5]}
    for name, part in parts.items():
        with open(os.path.join(out_dir, f"{name}.tsv"), "w", encoding="utf-8") as f:
            f.write("\n".join([header] + part) + "\n")
        binary = [r.rsplit("\t", 1)[0] + "\t" + str(int(float(r.rsplit("\t", 1)[1]) >= 3))
                  for r in part]
        with open(os.path.join(out_dir, f"{name}_binary.tsv"), "w", encoding="utf-8") as f:
            f.write("\n".join([header.rsplit("\t", 1)[0] + "\tlabel"] + binary) + "\n")
    print({name: len(part) for name, part in parts.items()})


def zero_shot(dev_file: str) -> None:
    import tensorflow as tf

    from sst2.model import presets
    from sst2.model.backbone import hidden_states, pool_tokens
    from sst2.run import metrics
    from sst2.text.text_files import read_table

    table = read_table(dev_file, ("sentence1", "sentence2"), "score")
    preprocessor = presets.load_preprocessor("minilm_standin", 128)
    backbone = presets.load_backbone("minilm_standin", dtype="float32")

    def embed(texts):
        out = []
        for i in range(0, len(texts), 128):
            x = preprocessor(tf.constant(texts[i:i + 128]))
            states = hidden_states(backbone, x["token_ids"], x["padding_mask"])
            out.append(pool_tokens(states[-1], x["padding_mask"], "mean").numpy())
        vectors = np.concatenate(out)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    u, v = (embed([t[k] for t in table.texts]) for k in (0, 1))
    scores = metrics.regression_scores((u * v).sum(1), np.array(table.labels, np.float64))
    print(json.dumps({"zero_shot_cosine": scores, "pairs": len(table.texts)}))


def _scored(run_dir: str) -> tuple:
    from sst2.serve.evaluation import predict_split
    from sst2.serve.trained import restore

    trained = restore(run_dir)
    scored = predict_split(trained, "validation", show_progress=False)
    return trained, scored


def multi_label(run_dirs: list) -> None:
    from sst2.run import metrics

    for run_dir in run_dirs:
        trained, scored = _scored(run_dir)
        p, y = scored["probabilities"], scored["gold"]
        halves = [np.arange(len(y)) % 2 == k for k in (0, 1)]
        crossed = np.zeros_like(p, dtype=bool)
        for k in (0, 1):  # thresholds from one half, applied to the other
            crossed[halves[1 - k]] = p[halves[1 - k]] >= metrics.tune_thresholds(p[halves[k]],
                                                                                 y[halves[k]])
        tp = (crossed & (y == 1)).sum(0)
        f1 = 2 * tp / np.maximum(crossed.sum(0) + y.sum(0), 1)
        exported = metrics.multi_label_scores(p, y, trained.head.thresholds.numpy())
        print(json.dumps({"run": run_dir, "tuned_on_dev": exported["macro_f1"],
                          "cross_fitted": float(f1.mean()),
                          "at_half": exported["macro_f1_at_half"],
                          "micro_f1": exported["micro_f1"]}))


def regression(run_dirs: list) -> None:
    from sst2.run import metrics

    for run_dir in run_dirs:
        _, scored = _scored(run_dir)
        print(json.dumps({"run": run_dir, **metrics.regression_scores(scored["score"],
                                                                      scored["gold"])}))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"split-stsb": lambda: split_stsb(*args), "zero-shot": lambda: zero_shot(*args),
     "multi-label": lambda: multi_label(args), "regression": lambda: regression(args)}[command]()
