"""Peak memory of the head phase against the size of the feature cache.

Writes a synthetic token-level feature cache of `--examples` sentences (lengths
drawn from GLUE SST-2's training sentences, `--width` float16 features per
token, as the default head caches), then trains the default head on it for one
epoch in a fresh process, reading the cache memory-mapped (as `sst2.train`
does) or, with `--whole`, loaded whole into memory (as sst2 did before), and
prints that process's peak RSS.

    python scripts/benchmark_memory.py --examples=67349 --workdir=/tmp/mem
    python scripts/benchmark_memory.py --examples=673490 --workdir=/tmp/mem [--whole]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, resource, sys, time
import keras, numpy as np
from sst2.fit import sources
from sst2.model import feature_store
from sst2.run.config import ModelConfig
from sst2.model.head import ClassifierHead
from sst2.fit.loop import fit
from sst2.fit.steps import Trainer
from sst2.text.data import bucket_lengths

folder, whole, steps_per_call = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
cache = feature_store.FeatureCache(folder, {"synthetic": True})
cached = cache.load()
if whole:
    cached = feature_store.FeatureSet(np.array(cached.features), cached.labels, cached.idx,
                                 cached.offsets)
config = ModelConfig()
keras.utils.set_random_seed(0)
head = ClassifierHead(hidden_units=config.head_hidden, dropout=config.dropout, seed=0,
                      pooling=config.pooling)
trainer = Trainer(head, keras.optimizers.Adam(1e-3), 32)
trainer.build((None,) + cached.features.shape[1:])
source = sources.CachedTokenSource(cached, 32, bucket_lengths(128), seed=0)
started = time.time()
fit(trainer, source, None, epochs=1, show_progress=False,
    steps_per_call=steps_per_call)
print(json.dumps({"seconds": time.time() - started,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_cache(folder: str, examples: int, width: int, seed: int = 0) -> int:
    """A complete synthetic cache in `folder`; returns its features' size in bytes."""
    import numpy as np

    sys.path.insert(0, REPO)
    from sst2.model import feature_store
    from sst2.text import embedded

    with open(os.path.join(embedded.unpack_sst2(tempfile.mkdtemp()), "train.tsv")) as f:
        words = np.array([len(line.split("\t")[0].split()) for line in f][1:])
    rng = np.random.default_rng(seed)
    # Wordpiece tokens run ~1.1 per word, plus [CLS] and [SEP].
    lengths = np.minimum(np.ceil(rng.choice(words, examples) * 1.1).astype(int) + 2, 128)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    cache = feature_store.FeatureCache(folder, {"synthetic": True})
    cache.start()
    path = os.path.join(cache.folder, "features.tmp.npy")
    stored = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16,
                                       shape=(int(offsets[-1]), width))
    for start in range(0, len(stored), 1 << 20):  # in chunks: never all in memory
        chunk = stored[start:start + (1 << 20)]
        chunk[:] = rng.standard_normal(chunk.shape, np.float32)
    stored.flush()
    del stored
    np.save(os.path.join(cache.folder, "offsets.npy"), offsets)
    np.save(os.path.join(cache.folder, "labels.npy"), rng.integers(0, 2, examples, np.int32))
    np.save(os.path.join(cache.folder, "idx.npy"), np.arange(examples, dtype=np.int32))
    os.replace(path, os.path.join(cache.folder, "features.npy"))
    with open(os.path.join(cache.folder, "complete.json"), "w") as f:
        json.dump({"examples": examples}, f)
    return os.path.getsize(os.path.join(cache.folder, "features.npy"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=67349)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--whole", action="store_true", help="Load the cache into memory.")
    parser.add_argument("--steps_per_call", type=int, default=50)
    args = parser.parse_args()

    folder = os.path.join(args.workdir, f"cache-{args.examples}-{args.width}")
    size = write_cache(folder, args.examples, args.width) if not os.path.isdir(folder) else (
        sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder)
            for name in names))
    out = subprocess.run([sys.executable, "-c", CHILD, folder, "1" if args.whole else "0",
                          str(args.steps_per_call)], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3"))
    if out.returncode:
        sys.exit(out.stderr[-3000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{args.examples} examples, cache {size / 2**30:.2f} GiB, "
          f"{'loaded whole' if args.whole else 'memory-mapped'}: one epoch in "
          f"{result['seconds']:.1f} s, peak RSS {result['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
