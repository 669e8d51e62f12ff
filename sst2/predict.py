"""Classifies sentences with an export: a SavedModel, or an OpenVINO artifact.

    python -m sst2.predict --export_dir=runs/sst2/export/1700000000 "a gripping film" "dull"
    cat reviews.txt | python -m sst2.predict --export_dir=... --json
    python -m sst2.predict --export_dir=runs/sst2/export_openvino "dull"   # no TensorFlow

An OpenVINO artifact is answered without importing TensorFlow or Keras: sst2 with
openvino, openvino-tokenizers, numpy and absl-py is enough.

With no sentences on the command line, reads one per line from stdin. Prints
per line the label and its probability (a multi-label model: the predicted
labels, joined by its separator, or `(no label)`; a regression model: the
score), then the text; or one JSON object per line (--json).
A model of sentence pairs takes each pair as one line, its two texts separated
by a tab.
`--export_dir` may also be an export root or a model_dir: the newest version is used
(of a model_dir: its SavedModel, or else its OpenVINO artifact).
Every line is answered: bytes that are not UTF-8 are replaced by U+FFFD, as the
export itself does; a pair model's line without a tab gets an `error:` line on
stderr (and exit status 2 at the end) while every other line is answered.
Lines from stdin are classified in batches of `--batch_size`, or as soon as
no more input has arrived for 5 ms, so typed lines are answered at once.
"""

import json
import os
import select
import sys
import unicodedata
from typing import Iterable, Iterator

from sst2 import cli
from sst2.run.command_config import PredictConfig
from sst2.run.errors import UserError
from sst2.run.targets import TARGETS
from sst2.serve.client.loading import (
    explanation_record,
    is_openvino_artifact,
    label_names,
    load_explainer,
    load_export,
    resolve_export_dir,
)
from sst2.text.records import NO_TAB


def as_bytes(text: str | bytes) -> bytes:
    """A line as the bytes it was: command-line arguments that are not UTF-8 reach Python
    as lone surrogates (PEP 383), which encode back to their original bytes."""
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")




def predict_batches(export_dir: str, batches: Iterable[list],
                    explain: bool = False) -> Iterator[dict]:
    """Yields, per line of each batch (lines as `str` or `bytes`), `{"text", "label",
    "label_id", "probability", "probabilities"}` (multi-label: `{"text", "labels",
    "probabilities"}`; regression `{"text", "score"}`; with `"cut": true` for a text
    longer than an OpenVINO artifact reads), or `{"text", "error"}` for a line a pair
    model cannot read (no tab). One call of the export per batch. With `explain`,
    the answers come from the export's `explain` signature, with each text's words and
    tokens and their attributions (`explanation_record`).

    `text` is the line as UTF-8 text, invalid bytes replaced by U+FFFD. For a
    model of sentence pairs (a `text_pair` input), each line is `text<TAB>text_pair`.
    """
    answer, pairs, task = (load_explainer if explain else load_export)(export_dir)
    names, separator = label_names(export_dir)
    for lines in batches:
        raw = [as_bytes(line) for line in lines]
        readable = [i for i, line in enumerate(raw) if not pairs or b"\t" in line]
        answers = {}
        if readable:
            if pairs:
                split = [raw[i].split(b"\t", 1) for i in readable]
                out = answer([p[0] for p in split], [p[1] for p in split])
            else:
                out = answer([raw[i] for i in readable])
            for k, answer_of_line in enumerate(_answers(out, task, names, separator)):
                if "cut" in out and out["cut"][k]:
                    answer_of_line["cut"] = True  # longer than an OpenVINO artifact reads
                if explain:
                    answer_of_line.update(explanation_record(
                        out, k, TARGETS[task].explains_each_label, names))
                answers[readable[k]] = answer_of_line
        for i, line in enumerate(raw):
            text = line.decode("utf-8", errors="replace")
            yield {"text": text, **answers.get(i, {"error": NO_TAB.format(
                verb=TARGETS[task].verb)})}


def _answers(answers: dict, task: str, label_names, separator: str) -> list[dict]:
    """One batch of the export's answers (numpy), per line, as plain values (its target's
    `record`)."""
    target = TARGETS[task]
    return [target.record(answers, i, label_names, separator)
            for i in range(len(next(iter(answers.values()))))]


def readable_line(result: dict, separator: str = ",") -> str:
    """A line of `predict_batches`'s output for a person: tab-separated, the text last,
    its control characters and line breaks escaped (no escape sequence reaches the
    terminal, no answer spans two lines).

    >>> readable_line({"text": "great", "label": "positive", "probability": 0.98})
    'positive\\t0.9800\\tgreat'
    >>> readable_line({"text": "fine", "labels": []}), readable_line({"text": "a", "score": 3.2})
    ('(no label)\\tfine', '3.2000\\ta')
    >>> readable_line({"text": "bell\\x07 esc\\x1b[31m", "score": 1.0}).split("\\t")[1]
    'bell\\\\x07 esc\\\\x1b[31m'
    """
    text = printable(result["text"])
    if "score" in result:
        return f"{result['score']:.4f}\t{text}"
    if "labels" in result:
        return f"{separator.join(result['labels']) or '(no label)'}\t{text}"
    return f"{result['label']}\t{result['probability']:.4f}\t{text}"


def printable(text: str) -> str:
    """`text` with control characters and line or paragraph separators escaped as Python
    writes them (`\\x07`, `\\t`, `\\u2028`); everything else as it is."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c
                   for c in text)


def readable_explanation(result: dict) -> str:
    """`predict_batches`'s word attributions for a person: each word with how much it
    moved the answer (`+`: toward it), one line per explained label.

    >>> readable_explanation({"words": ["so", "dull"], "word_attributions": [0.01, 0.4]})
    '  so(+0.01) dull(+0.4)'
    >>> print(readable_explanation({"words": ["sad"], "word_attributions": {"grief": [0.3]},
    ...                             "pair_words": [], "pair_word_attributions": {"grief": []}}))
      grief: sad(+0.3) |
    """
    def marked(words, values):
        return " ".join(f"{w}({v:+.2g})" for w, v in zip(words, values))

    def line(values, pair_values):
        shown = marked(result["words"], values)
        if pair_values is None:
            return shown
        return f"{shown} | {marked(result['pair_words'], pair_values)}".rstrip()

    values, pair_values = result["word_attributions"], result.get("pair_word_attributions")
    if isinstance(values, dict):
        return "\n".join(f"  {name}: " + line(v, None if pair_values is None
                                               else pair_values[name])
                         for name, v in values.items())
    return "  " + line(values, pair_values)


def in_batches(lines: Iterable, batch_size: int) -> Iterator[list]:
    """`lines` in lists of `batch_size` (the last may be shorter)."""
    batch = []
    for line in lines:
        batch.append(line)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_lines(export_dir: str, lines: Iterable[str | bytes],
                  batch_size: int = 256) -> Iterator[dict]:
    """`predict_batches` over `lines` in batches of `batch_size` (the export loaded once)."""
    return predict_batches(export_dir, in_batches(lines, batch_size))


def stdin_batches(fd: int, batch_size: int, wait: float = 0.005) -> Iterator[list]:
    """Lines of the file descriptor `fd` in batches: `batch_size` lines, or what has
    arrived when nothing more comes within `wait` seconds, so a person typing gets each
    answer at once and a pipe is read in full batches."""
    pending, batch = b"", []
    while True:
        if batch and not select.select([fd], [], [], wait)[0]:
            yield batch
            batch = []
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            batch.append(line.rstrip(b"\r"))
            if len(batch) == batch_size:
                yield batch
                batch = []
    if pending:
        batch.append(pending.rstrip(b"\r"))
    if batch:
        yield batch


def main(config: PredictConfig, argv: list[str]) -> None:
    export_dir = resolve_export_dir(config.export_dir)
    batches = (in_batches(argv[1:], config.batch_size) if argv[1:]
               else stdin_batches(sys.stdin.fileno(), config.batch_size))
    answered, unread, cut = 0, [], 0
    _, separator = label_names(export_dir)
    item = "argument" if argv[1:] else "line"
    for number, result in enumerate(predict_batches(export_dir, batches, config.explain),
                                    start=1):
        answered += 1
        cut += result.get("cut", False)
        if "error" in result:
            unread.append(number)
            print(f"error: {item} {number}: {result['error']}", file=sys.stderr, flush=True)
        elif config.json:
            print(json.dumps(result, ensure_ascii=False), flush=True)
        else:
            print(readable_line(result, separator), flush=True)
            if config.explain:
                print(readable_explanation(result), flush=True)
    if not answered:
        raise UserError("No input: give sentences as arguments, or one per line on stdin.")
    if cut:
        print(f"note: {cut} of {answered} {item}s were longer than the OpenVINO artifact "
              "reads and were cut to its sequence length (the SavedModel reads long texts "
              "in windows; docs/serving.md).", file=sys.stderr)
    if unread:
        shown = ", ".join(map(str, unread[:10])) + (", ..." if len(unread) > 10 else "")
        raise UserError(f"{len(unread)} of {answered} {item}s were not answered (no tab: "
                        f"{item}s {shown}); every other {item} was answered.")


if __name__ == "__main__":
    cli.run(main, PredictConfig, needs_tensorflow=lambda config: not is_openvino_artifact(
        config.export_dir))
