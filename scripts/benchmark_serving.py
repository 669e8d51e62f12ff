"""Serving throughput of exports on GLUE SST-2's test sentences, side by side.

Each export is loaded in its own process with only its runtime: a SavedModel
with `tensorflow` and `tensorflow_text` (as a model server would), an OpenVINO
artifact (`sst2.export --format=openvino`) with `openvino` and
`openvino-tokenizers`. Each is warmed up on one batch, then timed answering all
1,821 test sentences in batches of `--batch_size`, in the file's order
(`--repeats` times), and one sentence at a time for the latency of a single
request (the median over the first 200 sentences); `--rounds` times, the
exports interleaved, the medians reported.

    python scripts/benchmark_serving.py EXPORT_DIR [EXPORT_DIR ...] [--batch_size=32]
    python scripts/benchmark_serving.py SAVED_MODEL OPENVINO_DIR OPENVINO_DIR:throughput
    python scripts/benchmark_serving.py SAVED_MODEL OPENVINO_DIR \
        'OPENVINO_DIR:{"ENABLE_CPU_PINNING": false}' --beside=matmul

The first export is the reference for the speed ratios. An artifact's `:throughput`
is OpenVINO's throughput mode (batches queued, its requests in flight); `:client`,
as `sst2.predict` and `sst2.score` answer with it (`OpenVINOModel`: the settings its
export kept); `:{...}` (or `:throughput:{...}`) its compile configuration (JSON).
`--beside` times them beside other work on the same cores, started before each
timing and stopped after it by this script (at most `--beside_seconds` each):
`matmul`, two `nice -n 19` processes each looping a numpy matmul on all cores (as
a shared host's batch jobs); `tensorflow`, one `nice -n 19` TensorFlow process
looping float32 matmuls on its thread pools (as another training job).
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys

TIMING = r"""
texts = json.loads(sys.stdin.read())
size, repeats = int(sys.argv[2]), int(sys.argv[3])
batches = [convert(texts[i:i + size]) for i in range(0, len(texts), size)]
answer(batches[0])
seconds = []
for _ in range(repeats):
    started = time.perf_counter()
    for batch in batches:
        answer(batch)
    seconds.append(time.perf_counter() - started)
single = []
for text in texts[:200]:
    one = convert([text])
    started = time.perf_counter()
    answer(one)
    single.append(time.perf_counter() - started)
print(json.dumps({"seconds": seconds, "latency": sorted(single)[len(single) // 2]}))
"""

# Other work on the cores: each process loops until its stdin closes or its time is up.
BESIDE = {
    "matmul": (2, r"""
import sys, threading, time
import numpy as np
done, deadline = threading.Event(), time.monotonic() + float(sys.argv[1])
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
while not done.is_set() and time.monotonic() < deadline:
    a = np.tanh(a @ a)
"""),
    "tensorflow": (1, r"""
import os, sys, threading, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
done, deadline = threading.Event(), time.monotonic() + float(sys.argv[1])
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
a = tf.random.normal([1024, 1024])
step = tf.function(lambda a: tf.tanh(tf.matmul(a, a)))
while not done.is_set() and time.monotonic() < deadline:
    a = step(a)
    a.numpy()
"""),
}

# OpenVINO's throughput mode: its own number of requests in flight (AsyncInferQueue).
THROUGHPUT = r"""
import json, os, sys, time
import numpy as np, openvino as ov, openvino_tokenizers  # noqa: F401
compiled = ov.Core().compile_model(os.path.join(sys.argv[1], "model.xml"), "CPU",
                                   {"PERFORMANCE_HINT": "THROUGHPUT",
                                    **json.loads(os.environ.get("OV_CONFIG", "{}"))})
queue = ov.AsyncInferQueue(compiled)
texts = json.loads(sys.stdin.read())
size, repeats = int(sys.argv[2]), int(sys.argv[3])
batches = [ov.Tensor(np.array(texts[i:i + size], dtype=np.str_))
           for i in range(0, len(texts), size)]
for batch in batches[:len(queue)]:
    queue.start_async([batch])
queue.wait_all()
seconds = []
for _ in range(repeats):
    started = time.perf_counter()
    for batch in batches:
        queue.start_async([batch])
    queue.wait_all()
    seconds.append(time.perf_counter() - started)
print(json.dumps({"seconds": seconds, "latency": float("nan")}))
"""

# An artifact as sst2's clients answer with it (`OpenVINOModel`: the export's settings).
CLIENT = r"""
import json, os, sys, time
sys.path.insert(0, os.environ["SST2_REPO"])
from sst2.serve.client.openvino_runtime import OpenVINOModel
model = OpenVINOModel(sys.argv[1])
convert = list
def answer(batch):
    return model(batch)["probabilities"]
""" + TIMING

TIMERS = {
    "saved_model.pb": r"""
import json, sys, time
import tensorflow as tf, tensorflow_text  # noqa: F401
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
convert = tf.constant
def answer(batch):
    return serve(text=batch)["probabilities"].numpy()
""" + TIMING,
    "model.xml": r"""
import json, os, sys, time
import numpy as np, openvino as ov, openvino_tokenizers  # noqa: F401
config = json.loads(os.environ.get("OV_CONFIG", "{}"))
compiled = ov.Core().compile_model(os.path.join(sys.argv[1], "model.xml"), "CPU", config)
request = compiled.create_infer_request()
def convert(texts):
    return ov.Tensor(np.array(texts, dtype=np.str_))
def answer(batch):
    request.infer([batch])
    return request.get_tensor("probabilities").data
""" + TIMING,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exports", nargs="+")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--beside", choices=sorted(BESIDE), default=None)
    parser.add_argument("--beside_seconds", type=float, default=600)
    args = parser.parse_args()

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import tempfile

    from sst2.run import machine
    from sst2.text import embedded

    with open(os.path.join(embedded.unpack_sst2(tempfile.mkdtemp()), "test.tsv")) as f:
        texts = [line.rstrip("\n").split("\t", 1)[1] for line in f][1:]
    print(f"CPU: {machine.cpu_name()}" + (f"; beside {args.beside}" if args.beside else ""))
    # Rounds interleave the exports, so a busy moment of the machine spreads over all.
    timings = {export: [] for export in args.exports}
    for _ in range(args.rounds):
        for export in args.exports:
            with _beside(args.beside, args.beside_seconds):
                timings[export].append(_time(export, texts, args.batch_size, args.repeats))
    reference = None
    for export, runs in timings.items():
        seconds = statistics.median(s for run in runs for s in run["seconds"])
        latency = statistics.median(run["latency"] for run in runs)
        rate = len(texts) / seconds
        reference = reference or rate
        single = (f"one sentence {latency * 1000:.1f} ms" if latency == latency
                  else "throughput mode")
        print(f"{export}: {len(texts)} sentences in {seconds:.2f} s = {rate:.1f} sentences/s "
              f"({rate / reference:.2f}x the first); {single}")


@contextlib.contextmanager
def _beside(load: str | None, seconds: float):
    """`load`'s processes running (`BESIDE`), stopped when the block ends."""
    if load is None:
        yield
        return
    count, code = BESIDE[load]
    processes = [subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", code,
                                   str(seconds)], stdin=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
                 for _ in range(count)]
    try:
        yield
    finally:
        for process in processes:
            process.stdin.close()  # it stops at its next step
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _time(export: str, texts: list, batch_size: int, repeats: int) -> dict:
    """One process's timings of `export` (`DIR:throughput`: an OpenVINO artifact in
    OpenVINO's throughput mode, several requests in flight; `DIR:{json}`: compiled with
    that configuration)."""
    folder, _, mode = export.partition(":")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    mode, _, config = mode.partition(":") if not mode.startswith("{") else ("", "", mode)
    if config:
        env["OV_CONFIG"] = config
    kind = [name for name in TIMERS if os.path.exists(os.path.join(folder, name))]
    if not kind:
        sys.exit(f"{folder} holds neither a SavedModel nor an OpenVINO artifact")
    timer = TIMERS[kind[0]]
    if kind[0] == "model.xml" and mode:
        timer = {"throughput": THROUGHPUT, "client": CLIENT}[mode]
    env["SST2_REPO"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", timer, folder, str(batch_size),
                          str(repeats)], input=json.dumps(texts), text=True,
                         capture_output=True, env=env)
    if out.returncode:
        sys.exit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
