"""The encode pass against its physical reference: the time its linear-layer matmuls alone
take on the same tokens, on this CPU, in each precision, side by side in one process.

For each precision, on the same sentences (the training split, or its first
`--sentences`), tokenized as a run tokenizes them:

  * encode: the run's encode pass (`sst2.model.features`' length-sorted batches of
    `--encode_batch_tokens` padded tokens through `FeatureEncoder`, features to
    host), without writing the cache;
  * matmuls: the linear layers' matmuls alone (per layer: QKV, attention output,
    the two feed-forward matmuls) on the pass's real tokens, as 2-D matmuls of
    `--block_tokens` rows, nothing else.

It prints the CPU, whether oneDNN's rewrites are on and the fused kernels the pass's
graph runs (`_MklLayerNorm`, fused matmuls: TensorFlow's own counts, after its
rewrites), both times, their ratio, the time outside the matmuls as a share of
theirs, and the achieved linear-layer GFLOP/s, and
repeats the pair `--repeats` times alternating the order (the median is reported), so
other load weighs on both alike. Writes `--output` (JSON).

    python scripts/benchmark_encode.py --preset=minilm_standin --sentences=16384
"""

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from sst2.run import machine  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")



def time_encode(encoder, tokens, batch_size: int, batch_tokens: int) -> float:
    import numpy as np
    import tensorflow as tf

    from sst2.model.features import batch_plan
    from sst2.text import data

    plan = data.planned_batches(tokens["length"], batch_plan(
        encoder, tokens["token_ids"].shape[1], batch_size, batch_tokens))
    started = time.perf_counter()
    for indices, padded in plan:
        out = encoder(tf.constant(tokens["token_ids"][indices, :padded]),
                      tf.constant(tokens["padding_mask"][indices, :padded]))
        np.asarray(out.numpy(), np.float16)
    return time.perf_counter() - started


def fused_kernels(encoder, tokens) -> dict:
    """How many of each fused kernel the pass's graph ran on one batch, as TensorFlow ran
    it (after its graph rewrites; read on the function's first run)."""
    import collections

    import tensorflow as tf
    from tensorflow.python.eager import context

    context.context().enable_run_metadata()
    try:
        encoder(tf.constant(tokens["token_ids"][:8]), tf.constant(tokens["padding_mask"][:8]))
        metadata = context.context().export_run_metadata()
    finally:
        context.context().disable_run_metadata()
    ops = collections.Counter(node.op for graph in metadata.function_graphs
                              for partition in graph.partition_graphs for node in partition.node)
    return {op: n for op, n in sorted(ops.items()) if "Fused" in op or "Mkl" in op}


def time_matmuls(dtype: str, tokens: int, hidden: int, intermediate: int, layers: int,
                 block: int) -> float:
    """Seconds for the linear layers' matmuls of `tokens` tokens, in blocks of `block`."""
    import tensorflow as tf

    dt = tf.as_dtype(dtype)
    weights = {"qkv": (hidden, 3 * hidden), "out": (hidden, hidden),
               "ffn": (hidden, intermediate), "ffn_out": (intermediate, hidden)}
    kernels = {k: tf.cast(tf.random.normal(s, stddev=0.02), dt) for k, s in weights.items()}
    inputs = {rows: (tf.cast(tf.random.normal([rows, hidden]), dt),
                     tf.cast(tf.random.normal([rows, intermediate]), dt))
              for rows in {block, tokens % block} if rows}

    @tf.function
    def layer(x, wide):
        return (tf.matmul(x, kernels["qkv"]), tf.matmul(x, kernels["out"]),
                tf.matmul(x, kernels["ffn"]), tf.matmul(wide, kernels["ffn_out"]))

    for x, wide in inputs.values():  # trace and warm up
        [t.numpy() for t in layer(x, wide)]
    blocks = [block] * (tokens // block) + ([tokens % block] if tokens % block else [])
    started = time.perf_counter()
    for _ in range(layers):
        for rows in blocks:
            outputs = layer(*inputs[rows])
    [t.numpy() for t in outputs]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="minilm_standin")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--sentences", type=int, default=0, help="0: the whole split")
    parser.add_argument("--sequence_length", type=int, default=128)
    parser.add_argument("--encode_batch_size", type=int, default=128)
    parser.add_argument("--encode_batch_tokens", type=int, default=8192,
                        help="0: batches of --encode_batch_size sentences")
    parser.add_argument("--block_tokens", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pooling", default="attention")
    parser.add_argument("--precisions", default="float32,bfloat16",
                        help="comma-separated; bfloat16 is emulated, slowly, on CPUs "
                             "without AVX512-BF16 or AMX")
    parser.add_argument("--output", default="benchmark_encode.json")
    args = parser.parse_args()

    import numpy as np

    from sst2.model import presets
    from sst2.model.backbone import FeatureSpec
    from sst2.model.encoder import FeatureEncoder
    from sst2.model.inference import linear_flops_per_token
    from sst2.text import data
    from sst2.text.datasets import TfdsDataset

    split = "train" if not args.sentences else f"train[:{args.sentences}]"
    preprocessor = presets.load_preprocessor(args.preset, args.sequence_length)
    dataset = TfdsDataset("glue/sst2", args.data_dir)
    tokens = data.to_numpy(data.tokenize(dataset.load(split), preprocessor))
    real_tokens = int(tokens["length"].sum())
    results = {"cpu": machine.cpu_name(), "sentences": len(tokens["length"]),
               "real_tokens": real_tokens, "precisions": {}}
    from sst2.model.inference import onednn_fuses

    results["onednn"] = bool(onednn_fuses())
    print(f"{results['cpu']}; {results['sentences']:,} sentences, {real_tokens:,} tokens; "
          f"oneDNN's rewrites {'on' if results['onednn'] else 'off'}")
    for precision in args.precisions.split(","):
        backbone = presets.load_backbone(args.preset, dtype=precision)
        spec = FeatureSpec(args.pooling, "all")
        encoder = FeatureEncoder.for_backbone(backbone, spec, jit_compile=False)
        hidden, intermediate = backbone.hidden_dim, backbone.intermediate_dim
        layers = backbone.num_layers
        batching = (args.encode_batch_size, args.encode_batch_tokens)
        kernels = fused_kernels(encoder, tokens)  # its first run: the graph is built then
        time_encode(encoder, {k: v[:2048] for k, v in tokens.items()}, *batching)
        encode, matmuls = [], []
        for repeat in range(args.repeats):
            pair = [("encode", lambda: time_encode(encoder, tokens, *batching)),
                    ("matmuls", lambda: time_matmuls(precision, real_tokens, hidden,
                                                     intermediate, layers, args.block_tokens))]
            for name, run in (pair if repeat % 2 == 0 else pair[::-1]):
                (encode if name == "encode" else matmuls).append(run())
        flops = linear_flops_per_token(hidden, intermediate, layers) * real_tokens
        row = {"encode_seconds": float(np.median(encode)),
               "matmul_seconds": float(np.median(matmuls)),
               "encode_runs": encode, "matmul_runs": matmuls}
        row["ratio"] = row["encode_seconds"] / row["matmul_seconds"]
        row["outside_matmuls"] = row["ratio"] - 1  # the time outside, in matmul times
        row["fused_kernels"] = kernels
        row["encode_linear_gflops"] = flops / row["encode_seconds"] / 1e9
        row["matmul_gflops"] = flops / row["matmul_seconds"] / 1e9
        results["precisions"][precision] = row
        print(f"{precision}: encode pass {row['encode_seconds']:.1f} s, its linear-layer "
              f"matmuls alone {row['matmul_seconds']:.1f} s: {row['ratio']:.2f}x, "
              f"{row['outside_matmuls']:.2f}x the matmul time outside them "
              f"({row['encode_linear_gflops']:.0f} against {row['matmul_gflops']:.0f} "
              f"GFLOP/s of linear layers); fused kernels {kernels}")
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
