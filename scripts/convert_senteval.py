"""Converts SentEval-style files (`<label> <sentence>` per line) to CSV, TSV or JSONL.

    python scripts/convert_senteval.py ../shared/data/senteval/TREC/train.txt trec/train.tsv \
        --encoding=latin-1 --label_names=description,entity,abbreviation,human,location,numeric

The output keeps the input's encoding (TREC's Latin-1 training file stays
Latin-1: train on it with `--encoding=latin-1`), has the columns `text` and
`label`, and labels as integers or, with `--label_names`, as names. Then:

    python -m sst2.train --train_file=trec/train.tsv --eval_file=trec/test.tsv \
        --encoding=latin-1 --model_dir=runs/trec
"""

import argparse
import csv
import json
import os

from sst2.text.file_text import file_format


def convert(source: str, destination: str, encoding: str = "utf-8",
            label_names: list | None = None, fmt: str = "auto") -> int:
    """Writes `destination` from `source`; returns the number of examples."""
    fmt = file_format(destination, fmt)
    with open(source, encoding=encoding, newline="") as f:
        rows = []
        for number, line in enumerate(f.read().splitlines(), start=1):
            if not line.strip():
                continue
            label, _, sentence = line.partition(" ")
            if not label.isdigit():
                raise ValueError(f"{source}: line {number} does not start with a label")
            rows.append((sentence, label_names[int(label)] if label_names else int(label)))
    os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
    with open(destination, "w", encoding=encoding, newline="") as f:
        if fmt == "jsonl":
            for sentence, label in rows:
                f.write(json.dumps({"text": sentence, "label": label}, ensure_ascii=False)
                        + "\n")
        else:
            writer = csv.writer(f, **({"delimiter": "\t", "quoting": csv.QUOTE_NONE,
                                       "escapechar": None} if fmt == "tsv" else {}),
                                lineterminator="\n")
            writer.writerow(["text", "label"])
            writer.writerows(rows)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("destination", help="a .csv, .tsv or .jsonl path")
    parser.add_argument("--encoding", default="utf-8")
    parser.add_argument("--label_names", default=None,
                        help="comma-separated names for labels 0, 1, ...")
    args = parser.parse_args()
    names = args.label_names.split(",") if args.label_names else None
    count = convert(args.source, args.destination, args.encoding, names)
    print(f"{args.destination}: {count} examples")


if __name__ == "__main__":
    main()
