"""Long texts, read in windows: accuracy of ways to combine windows, and what a long text costs.

There is no labelled long-text sentiment set offline, so this builds one from
GLUE SST-2's validation sentences: each text joins `m` distinct sentences drawn
at random (m odd), and its label is the majority of theirs; with `--clear`, two
thirds of a text's sentences share its label (a clear verdict, spread out). A model that reads
only the first window sees its first few sentences; one that reads every window
sees them all. What this shows: whether reading past the first window and
combining windows recovers evidence spread over a text. What it does not show:
real reviews' structure (a verdict at the end, "but" turns, sarcasm across
sentences); these texts are unrelated sentences side by side.

    python scripts/benchmark_long_texts.py --model_dir=runs/sst2 [--texts=400]

Prints, per text size: mean tokens and windows per text; the accuracy of the
first window alone (today's truncation), of the served mean of window
probabilities, of the mean of window logits and of a majority vote of windows;
the accuracy of a vote of the model's per-sentence predictions (the reference:
every sentence read on its own); and texts per second through the served
computation (batches of 32 texts), next to SST-2's single sentences.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np


def build_texts(sentences: list[str], labels: np.ndarray, size: int, count: int, seed: int,
                clear: bool = False) -> tuple[list[str], np.ndarray, np.ndarray]:
    """`count` texts of `size` distinct sentences in random order; their majority labels
    and the indices of their sentences. Sentences are drawn at random, or with
    `clear`, two thirds (rounded up) from the text's label and the rest from the other."""
    rng = np.random.default_rng([seed, size, clear])
    by_label = [np.flatnonzero(labels == label) for label in (0, 1)]
    rows = []
    for _ in range(count):
        if clear:
            label, majority = rng.integers(2), -(-2 * size // 3)
            row = np.concatenate([rng.choice(by_label[label], majority, replace=False),
                                  rng.choice(by_label[1 - label], size - majority,
                                             replace=False)])
            rows.append(rng.permutation(row))
        else:
            rows.append(rng.choice(len(sentences), size, replace=False))
    chosen = np.stack(rows)
    texts = [" ".join(sentences[i] for i in row) for row in chosen]
    return texts, (labels[chosen].mean(axis=1) > 0.5).astype(int), chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--checkpoint", default="best")
    parser.add_argument("--sizes", default="1,5,11,21", help="Sentences per text (odd).")
    parser.add_argument("--texts", type=int, default=400, help="Texts per size.")
    parser.add_argument("--max_windows", type=int, default=8)
    parser.add_argument("--window_tokens", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clear", action="store_true",
                        help="Two thirds of a text's sentences share its label.")
    args = parser.parse_args()

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import tensorflow as tf

    from sst2.run.command_config import ReadingConfig
    from sst2.serve.graph import packing, serving
    from sst2.serve.trained import restore
    from sst2.text import embedded

    with open(os.path.join(embedded.unpack_sst2(tempfile.mkdtemp()), "dev.tsv")) as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    sentences, labels = [r[0] for r in rows], np.array([int(r[1]) for r in rows])

    trained = restore(args.model_dir, args.checkpoint)
    reading = ReadingConfig(max_windows=args.max_windows, window_tokens=args.window_tokens)
    window_logits = tf.function(
        serving.make_window_logits_fn(trained.preprocessor, trained.backbone, trained.head,
                                      trained.spec, reading),
        input_signature=[tf.TensorSpec([None], tf.string)])
    served = tf.function(
        serving.make_predict_fn(trained.preprocessor, trained.backbone, trained.head,
                                trained.spec, reading),
        input_signature=[tf.TensorSpec([None], tf.string)])
    tokenizer = trained.preprocessor.tokenizer

    def per_window(texts):
        logits, index = [], []
        for start in range(0, len(texts), 32):
            out, text_index = window_logits(tf.constant(texts[start:start + 32]))
            logits.append(out.numpy())
            index.append(text_index.numpy() + start)
        return np.concatenate(logits), np.concatenate(index)

    def texts_per_second(texts):
        batches = [tf.constant(texts[i:i + 32]) for i in range(0, len(texts), 32)]
        served(batches[0])  # warm-up
        started = time.perf_counter()
        for batch in batches:
            served(batch)["probabilities"].numpy()
        return len(texts) / (time.perf_counter() - started)

    # The reference: each sentence read on its own, in one full window (all SST-2's fit).
    read_alone = serving.make_predict_fn(trained.preprocessor, trained.backbone, trained.head,
                                         trained.spec, ReadingConfig())
    sentence_predictions = np.concatenate([
        read_alone(tf.constant(sentences[i:i + 256]))["label_id"].numpy()
        for i in range(0, len(sentences), 256)])
    window = packing.window_size(trained.preprocessor.sequence_length, args.window_tokens)
    print(f"model: {args.model_dir} ({trained.checkpoint_path}); window {window} tokens, overlap "
          f"{reading.window_overlap}, at most {reading.max_windows} windows")
    print("| sentences per text | tokens (mean) | windows (mean) | first window | mean of "
          "probabilities (served) | mean of logits | window vote | sentence vote (reference) "
          "| texts/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        texts, truth, chosen = build_texts(sentences, labels, size, args.texts, args.seed,
                                           args.clear)
        tokens = np.array([len(t) for t in packing.as_ragged(tokenizer(tf.constant(texts)))
                           .to_list()])
        logits, index = per_window(texts)
        probabilities = tf.nn.softmax(logits).numpy()
        windows = np.bincount(index, minlength=len(texts))
        first = np.searchsorted(index, np.arange(len(texts)))

        def mean(values):
            return np.stack([values[index == i].mean(0) for i in range(len(texts))])

        votes = mean(np.eye(2)[probabilities.argmax(-1)]) + 1e-6 * mean(probabilities)
        accuracy = {
            "first": probabilities[first].argmax(-1),
            "mean_probabilities": mean(probabilities).argmax(-1),
            "mean_logits": mean(logits).argmax(-1),
            "vote": votes.argmax(-1),  # ties broken by the mean probability
            "sentences": (sentence_predictions[chosen].mean(1) > 0.5).astype(int),
        }
        accuracy = {k: (v == truth).mean() for k, v in accuracy.items()}
        print(f"| {size} | {tokens.mean():.0f} | {windows.mean():.2f} | {accuracy['first']:.4f} "
              f"| {accuracy['mean_probabilities']:.4f} | {accuracy['mean_logits']:.4f} "
              f"| {accuracy['vote']:.4f} | {accuracy['sentences']:.4f} "
              f"| {texts_per_second(texts):.1f} |", flush=True)


if __name__ == "__main__":
    main()
