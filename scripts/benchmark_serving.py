"""Serving throughput of SavedModel exports on GLUE SST-2's test sentences.

Each export is loaded in its own process with only `tensorflow` and
`tensorflow_text` (as a model server would), warmed up on one batch, then
timed answering all 1,821 test sentences in batches of `--batch_size`
(`--repeats` times; the median is reported).

    python scripts/benchmark_serving.py EXPORT_DIR [EXPORT_DIR ...] [--batch_size=256]

The first export is the reference for the speed ratios.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

TIMER = r"""
import json, sys, time
import tensorflow as tf, tensorflow_text  # noqa: F401
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
texts = json.loads(sys.stdin.read())
size, repeats = int(sys.argv[2]), int(sys.argv[3])
batches = [tf.constant(texts[i:i + size]) for i in range(0, len(texts), size)]
serve(text=batches[0])
seconds = []
for _ in range(repeats):
    started = time.perf_counter()
    for batch in batches:
        serve(text=batch)["probabilities"].numpy()
    seconds.append(time.perf_counter() - started)
print(json.dumps(seconds))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exports", nargs="+")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import tempfile

    from sst2.text import embedded

    with open(os.path.join(embedded.unpack_sst2(tempfile.mkdtemp()), "test.tsv")) as f:
        texts = [line.rstrip("\n").split("\t", 1)[1] for line in f][1:]
    rates = []
    for export in args.exports:
        out = subprocess.run([sys.executable, "-c", TIMER, export, str(args.batch_size),
                              str(args.repeats)], input=json.dumps(texts), text=True,
                             capture_output=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        if out.returncode:
            sys.exit(out.stderr[-2000:])
        seconds = statistics.median(json.loads(out.stdout.strip().splitlines()[-1]))
        rates.append(len(texts) / seconds)
        print(f"{export}: {len(texts)} sentences in {seconds:.2f} s = {rates[-1]:.1f} "
              f"sentences/s ({rates[-1] / rates[0]:.2f}x the first)")


if __name__ == "__main__":
    main()
