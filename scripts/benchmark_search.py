"""Times K heads trained together per step: separate heads in one step (`HeadGroup`) against
stacked heads (`StackedHeads`), on synthetic token features of SST-2's shape.

    python scripts/benchmark_search.py --heads=1,4,16 --hidden=256

Prints milliseconds per step and per head-step; compare within one run (one machine).
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--heads", default="1,4,16")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--examples", type=int, default=4096)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from sst2.fit.optimization import GroupedOptimizer
    from sst2.fit.sources import CachedTokenSource
    from sst2.head_search.head_group import GroupTrainer, HeadGroup
    from sst2.head_search.stacked_heads import StackedAdam, StackedHeads
    from sst2.model.feature_store import FeatureSet
    from sst2.model.head import ClassifierHead
    from sst2.run.metrics import MetricSums

    rng = np.random.default_rng(0)
    width = 384
    lengths = rng.integers(8, 40, args.examples).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    features = FeatureSet(rng.standard_normal((offsets[-1], width)).astype(np.float16),
                          rng.integers(0, 2, args.examples).astype(np.int32),
                          np.arange(args.examples, dtype=np.int32), offsets)
    source = CachedTokenSource(features, 32, (16, 32, 48), seed=0)
    example = {"tokens": tf.zeros([1, 8, width]), "mask": tf.ones([1, 8], tf.int32)}
    for k in [int(x) for x in args.heads.split(",")]:
        for kind in ("separate", "stacked"):
            heads = [ClassifierHead(hidden_units=args.hidden, dropout=0.1, pooling="attention",
                                    seed=i) for i in range(k)]
            for head in heads:
                head(example)
            if kind == "stacked":
                model = StackedHeads(heads)
                optimizer = StackedAdam([1e-3] * k, ["linear"] * k, total_steps=1000)
            else:
                model = HeadGroup(heads)
                optimizer = GroupedOptimizer([keras.optimizers.Adam(1e-3) for _ in heads],
                                             [h.trainable_variables for h in heads])
            trainer = GroupTrainer(model, optimizer, 32, best_metric="accuracy")
            trainer.build((None, width))
            steps = source.num_batches(0) // 50 * 50
            trainer.train_steps(trainer.iterator(source, 0), 50, MetricSums())  # compiles
            iterator = trainer.iterator(source, 0)
            started = time.time()
            for _ in range(steps // 50):
                trainer.train_steps(iterator, 50, MetricSums())
            per_step = (time.time() - started) / steps * 1000
            print(f"K={k:3d} {kind:8s}: {per_step:6.2f} ms/step, {per_step / k:5.2f} "
                  "ms/head-step", flush=True)


if __name__ == "__main__":
    main()
