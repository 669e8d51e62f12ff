"""Classifies sentences with an exported SavedModel.

    python -m sst2.predict --export_dir=runs/sst2/export/1700000000 "a gripping film" "dull"
    cat reviews.txt | python -m sst2.predict --export_dir=... --json

With no sentences on the command line, reads one per line from stdin. Prints
the label and its probability per line, or one JSON object per line (--json).
A model of sentence pairs takes each pair as one line, its two texts separated
by a tab.
`--export_dir` may also be an export root or a model_dir: the newest version is used.
Every line is answered: bytes that are not UTF-8 are replaced by U+FFFD, as the
export itself does.
"""

import json
import os
import sys
from typing import Iterable, Iterator

from sst2 import cli
from sst2.config import PredictConfig
from sst2.errors import UserError


def resolve_export_dir(path: str) -> str:
    """A SavedModel folder from a version folder, an export root or a model_dir."""
    from sst2.serving import latest_export

    for candidate in (path, latest_export(path), latest_export(os.path.join(path, "export"))):
        if candidate and os.path.exists(os.path.join(candidate, "saved_model.pb")):
            return candidate
    raise UserError(f"No SavedModel at {path}. Export one with: "
                    "python -m sst2.export --model_dir=...")


def as_bytes(text: str | bytes) -> bytes:
    """A line as the bytes it was: command-line arguments that are not UTF-8 reach Python
    as lone surrogates (PEP 383), which encode back to their original bytes."""
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")


def predict_lines(export_dir: str, lines: Iterable[str | bytes],
                  batch_size: int = 64) -> Iterator[dict]:
    """Yields `{"text", "label", "label_id", "probability", "probabilities"}` per line.

    `text` is the line as UTF-8 text, invalid bytes replaced by U+FFFD. For a
    model of sentence pairs (a `text_pair` input), each line is `text<TAB>text_pair`.
    """
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)

    try:
        serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    except (OSError, ValueError, KeyError, tf.errors.OpError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise UserError(f"{export_dir} holds no loadable SavedModel ({reason}). Export it "
                        "again with: python -m sst2.export --model_dir=...") from e
    pairs = "text_pair" in serve.structured_input_signature[1]
    batch = []

    def inputs():
        if not pairs:
            return {"text": tf.constant(batch, tf.string)}
        split = [line.split(b"\t", 1) for line in batch]
        return {"text": tf.constant([p[0] for p in split], tf.string),
                "text_pair": tf.constant([p[1] for p in split], tf.string)}

    def flush():
        out = serve(**inputs())
        for i, raw in enumerate(batch):
            text = raw.decode("utf-8", errors="replace")
            probabilities = out["probabilities"][i].numpy().tolist()
            label_id = int(out["label_id"][i])
            yield {"text": text, "label": out["label"][i].numpy().decode(),
                   "label_id": label_id, "probability": probabilities[label_id],
                   "probabilities": probabilities}

    for number, line in enumerate(lines, start=1):
        if pairs and b"\t" not in as_bytes(line):
            raise UserError(f"Input line {number} has no tab: this model classifies sentence "
                            "pairs, one pair per line, its two texts separated by a tab.")
        batch.append(as_bytes(line))
        if len(batch) == batch_size:
            yield from flush()
            batch = []
    if batch:
        yield from flush()


def main(config: PredictConfig, argv: list[str]) -> None:
    export_dir = resolve_export_dir(config.export_dir)
    lines = argv[1:] or (line.rstrip(b"\n").rstrip(b"\r") for line in sys.stdin.buffer)
    for result in predict_lines(export_dir, lines, config.batch_size):
        if config.json:
            print(json.dumps(result, ensure_ascii=False), flush=True)
        else:
            print(f"{result['label']}\t{result['probability']:.4f}\t{result['text']}", flush=True)


if __name__ == "__main__":
    cli.run(main, PredictConfig)
