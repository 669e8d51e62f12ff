"""Word attributions of SavedModel exports: how faithful, and what they cost.

On GLUE SST-2 validation sentences of at least `--min_words` words (the first
`--sentences` of them), each export's `explain` signature attributes the
answer to words (`sst2.export --explain_steps=N` sets its integrated-gradients
steps). Faithfulness by deletion: removing the 2 words with the highest
attribution should lower the predicted class's probability (`serving_default`
on the shortened text) more than removing 2 random words (the mean of 5
draws); the ratio of the mean drops is reported. Cost: the time `explain`
takes per sentence against `serving_default` on the same batches of
`--batch_size`, timed in `--rounds` interleaved rounds (medians).
`--occlusion` adds occlusion as a reference method: each word's attribution is
the probability lost when it alone is removed (one prediction per word). The
physical reference, on a row of its own: the time the linear layers' matmuls
alone take on the same padded batches (`--dims`, `--precision`), times 2 per
integrated-gradients step (a forward and an input-gradient backward pass).

    python scripts/benchmark_explain.py EXPORT_DIR [EXPORT_DIR ...] [--occlusion]
"""

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time

import numpy as np

DELETED, DRAWS = 2, 5


def validation_sentences(min_words: int, count: int) -> list[str]:
    from sst2.text import embedded

    with open(os.path.join(embedded.unpack_sst2(tempfile.mkdtemp()), "dev.tsv")) as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [row[0] for row in rows if len(row[0].split()) >= min_words][:count]


def in_batches(function, texts: list, batch_size: int) -> list:
    import tensorflow as tf

    return [function(text=tf.constant(texts[i:i + batch_size]))
            for i in range(0, len(texts), batch_size)]


def probability_of(serve, texts: list, classes: np.ndarray, batch_size: int) -> np.ndarray:
    outputs = in_batches(serve, texts, batch_size)
    probabilities = np.concatenate([out["probabilities"].numpy() for out in outputs])
    return probabilities[np.arange(len(texts)), classes]


def without(text: str, removed) -> str:
    return " ".join(word for i, word in enumerate(text.split()) if i not in removed)


def faithfulness(serve, texts: list, word_attributions: list, classes: np.ndarray,
                 batch_size: int) -> dict:
    """Mean probability drops of the predicted class: top-2 words removed, and 2 random."""
    rng = np.random.default_rng(0)
    top = [without(t, set(np.argsort(-a, kind="stable")[:DELETED]))
           for t, a in zip(texts, word_attributions)]
    random = [without(t, set(rng.choice(len(t.split()), DELETED, replace=False)))
              for t in texts for _ in range(DRAWS)]
    before = probability_of(serve, texts, classes, batch_size)
    drop_top = before - probability_of(serve, top, classes, batch_size)
    drop_random = (np.repeat(before, DRAWS)
                   - probability_of(serve, random, np.repeat(classes, DRAWS), batch_size))
    return {"drop_top": float(drop_top.mean()), "drop_random": float(drop_random.mean()),
            "ratio": float(drop_top.mean() / max(drop_random.mean(), 1e-9))}


def occlusion(serve, texts: list, classes: np.ndarray, batch_size: int) -> list:
    """Each word's attribution: the probability lost when it alone is removed."""
    before = probability_of(serve, texts, classes, batch_size)
    found = []
    for text, cls, p in zip(texts, classes, before):
        shortened = [without(text, {i}) for i in range(len(text.split()))]
        found.append(p - probability_of(serve, shortened, np.full(len(shortened), cls),
                                        batch_size))
    return found


def linear_matmuls_seconds(explained: list, hidden: int, intermediate: int, layers: int,
                           dtype: str, repeats: int = 5) -> tuple[float, float]:
    """The physical reference: seconds a forward pass's linear-layer matmuls alone take on
    `explained`'s batches, as `explain` pads them (each batch to its longest text plus
    [CLS] and [SEP], in multiples of 8) and as `serving_default` packs them (in
    length-sorted sub-batches of 32 padded to their own longest), at `dtype`; the
    medians of `repeats` rounds, after a warm-up."""
    import tensorflow as tf

    weights = [tf.random.normal(shape, dtype=tf.float32, seed=i) * 0.02 for i, shape in
               enumerate([(hidden, 3 * hidden), (hidden, hidden), (hidden, intermediate),
                          (intermediate, hidden)])]
    weights = [tf.cast(w, dtype) for w in weights]

    @tf.function(reduce_retracing=True)
    def forward_matmuls(x):  # QKV, attention output, the two feed-forward matmuls
        kept = tf.zeros([], dtype)
        for _ in range(layers):
            qkv = tf.matmul(x, weights[0])
            hidden_states = tf.matmul(tf.matmul(x, weights[1]), weights[2])
            x = tf.matmul(hidden_states, weights[3])
            kept += qkv[0, 0]  # keeps the QKV matmul from being pruned
        return x, kept

    def rounded(n):
        return (n + 7) // 8 * 8

    shapes = {"explain": [], "plain": []}
    for out in explained:
        lengths = sorted(int((row != b"").sum()) + 2 for row in out["tokens"].numpy())
        shapes["explain"].append(len(lengths) * rounded(max(lengths)))
        shapes["plain"] += [len(lengths[i:i + 32]) * rounded(max(lengths[i:i + 32]))
                            for i in range(0, len(lengths), 32)]
    inputs = {kind: [tf.cast(tf.random.normal([rows, hidden]), dtype) for rows in found]
              for kind, found in shapes.items()}
    seconds = {}
    for kind, batches in inputs.items():
        for x in batches:
            forward_matmuls(x)[0].numpy()
        rounds = []
        for _ in range(repeats):
            started = time.perf_counter()
            for x in batches:
                forward_matmuls(x)[0].numpy()
            rounds.append(time.perf_counter() - started)
        seconds[kind] = statistics.median(rounds)
    return seconds["explain"], seconds["plain"]


def timed(function, texts: list, batch_size: int) -> float:
    started = time.perf_counter()
    in_batches(function, texts, batch_size)
    return (time.perf_counter() - started) / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exports", nargs="+")
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--min_words", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--occlusion", action="store_true")
    parser.add_argument("--dims", default="384,1536,6",
                        help="hidden, intermediate, layers (default: the stand-in's)")
    parser.add_argument("--precision", default="bfloat16",
                        help="the exports' compute dtype, for the matmul reference")
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from sst2.run import machine
    from sst2.serve.versions import read_export_facts

    texts = validation_sentences(args.min_words, args.sentences)
    signatures = {e: tf.saved_model.load(e).signatures for e in args.exports}
    print(f"CPU: {machine.cpu_name()}; {len(texts)} SST-2 validation sentences "
          f"of {args.min_words}+ words, batches of {args.batch_size}")
    seconds = {e: {"plain": [], "explain": []} for e in args.exports}
    for export, found in signatures.items():  # warm-up: every batch shape traced once
        timed(found["serving_default"], texts, args.batch_size)
        timed(found["explain"], texts, args.batch_size)
    for _ in range(args.rounds):  # interleaved, so a busy moment spreads over all
        for export, found in signatures.items():
            for kind, name in (("plain", "serving_default"), ("explain", "explain")):
                seconds[export][kind].append(timed(found[name], texts, args.batch_size))
    print("| export | drop, top 2 words | drop, 2 random words | ratio | ms per sentence, "
          "explain / plain | cost |")
    print("|---|---|---|---|---|---|")
    for export, found in signatures.items():
        serve = found["serving_default"]
        explained = in_batches(found["explain"], texts, args.batch_size)
        classes = np.concatenate([out["label_id"].numpy() for out in explained])
        rows = [row for out in explained for row in out["word_attributions"].numpy()]
        attributions = [row[:len(text.split())] for row, text in zip(rows, texts)]
        found_faith = faithfulness(serve, texts, attributions, classes, args.batch_size)
        plain = statistics.median(seconds[export]["plain"])
        explain = statistics.median(seconds[export]["explain"])
        print(f"| {export} | {found_faith['drop_top']:.4f} | {found_faith['drop_random']:.4f} "
              f"| {found_faith['ratio']:.1f}x | {explain * 1e3:.1f} / {plain * 1e3:.2f} | "
              f"{explain / plain:.1f}x |")
        steps = read_export_facts(export).get("explain", {}).get("steps", 1)
        explain_matmuls, plain_matmuls = linear_matmuls_seconds(
            explained, *map(int, args.dims.split(",")), args.precision)
        explain_matmuls *= 2 * steps  # each step: a forward and an input-gradient backward
        print(f"|   matmuls alone ({args.precision}, {steps} steps) | | | | "
              f"{explain_matmuls / len(texts) * 1e3:.1f} / "
              f"{plain_matmuls / len(texts) * 1e3:.2f} | measured / matmuls: explain "
              f"{explain / (explain_matmuls / len(texts)):.1f}x, plain "
              f"{plain / (plain_matmuls / len(texts)):.1f}x |")
        if args.occlusion:
            started = time.perf_counter()
            occluded = occlusion(serve, texts, classes, args.batch_size)
            cost = (time.perf_counter() - started) / len(texts)
            found_faith = faithfulness(serve, texts, occluded, classes, args.batch_size)
            print(f"| occlusion, {export} | {found_faith['drop_top']:.4f} | "
                  f"{found_faith['drop_random']:.4f} | {found_faith['ratio']:.1f}x | "
                  f"{cost * 1e3:.1f} / {plain * 1e3:.2f} | {cost / plain:.1f}x |")


if __name__ == "__main__":
    main()
