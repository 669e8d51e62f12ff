"""Times a train step of the head with unfrozen layers, float32 against bfloat16 compute.

    python scripts/benchmark_unfrozen_precision.py [--layers=2] [--width=384] [--length=24]

The unfrozen copies compute in bfloat16 when `--precision` resolves to bfloat16
(float32 variables and optimizer state). This measures what that buys on this
CPU: bfloat16 is emulated and slower without AVX512-BF16 or AMX, and not always
faster with them, which is why `--precision=auto` measures (`sst2.model.precision`).
Steps run as a training run runs them
(`sst2.model.hardware.head_jit`), on random features of the stand-in's shape.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from sst2.fit.sources import Batch  # noqa: E402
from sst2.fit.steps import Trainer  # noqa: E402
from sst2.model import hardware, precision  # noqa: E402
from sst2.model.head import ClassifierHead  # noqa: E402


def seconds_per_step(dtype: str, args) -> float:
    keras.utils.set_random_seed(0)
    head = ClassifierHead(hidden_units=256, dropout=0.1, seed=0, pooling="attention",
                          sequence_layers=args.layers, num_heads=args.width // 64,
                          intermediate_dim=4 * args.width, average_layers=6,
                          unfrozen_layers=args.layers, unfrozen_dtype=dtype)
    trainer = Trainer(head, keras.optimizers.Adam(1e-4), args.batch_size,
                      jit_compile=hardware.head_jit(True, has_transformer_blocks=True))
    trainer.build((None, 2, args.width))
    rng = np.random.default_rng(0)
    batch = Batch({"tokens": rng.normal(size=(args.batch_size, args.length, 2, args.width))
                   .astype(np.float32),
                   "mask": np.ones((args.batch_size, args.length), np.int32)},
                  rng.integers(0, 2, args.batch_size).astype(np.int32),
                  np.ones(args.batch_size, np.float32))
    for _ in range(3):
        trainer.train_step(batch)
    started = time.perf_counter()
    for _ in range(args.steps):
        float(trainer.train_step(batch)["loss"])
    return (time.perf_counter() - started) / args.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--length", type=int, default=24)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    shape = precision.LayerShape(args.width, args.width // 64, 4 * args.width)
    print(f"auto precision for the unfrozen layers' train step: "
          f"{precision.resolve('auto', shape, 'train')}")
    times = {dtype: seconds_per_step(dtype, args) for dtype in ("float32", "mixed_bfloat16")}
    for dtype, seconds in times.items():
        print(f"{dtype:>15}: {seconds * 1000:.1f} ms/step")
    print(f"bfloat16 speed-up: {times['float32'] / times['mixed_bfloat16']:.2f}x")


if __name__ == "__main__":
    main()
