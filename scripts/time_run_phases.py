"""Times each phase of a run that computes almost nothing: what TensorFlow costs per run.

A tiny random DistilBERT (2 layers x 16) on 256 tiny GLUE-format sentences: the
arithmetic takes milliseconds, so every second measured is tracing, compiling,
`tf.data` start-up and file work, the fixed cost every run and every test pays.
The run is repeated in one process and the last repeat is reported (the first
also pays imports and first-use costs), phase by phase as `sst2.train` and its
publish action run them. Prints a Markdown table naming the CPU.

    python scripts/time_run_phases.py --workdir=/tmp/phases --repeats=2
"""

import argparse
import os
import platform
import shutil
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cpu_name() -> str:
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    return f"{names[0] if names else platform.processor()}, {os.cpu_count()} cores"


def build_assets(workdir: str) -> tuple[str, str]:
    """A tiny random preset and a tfds data dir with a tiny glue/sst2 (the tests' own)."""
    from scripts.build_random_preset import build_random_preset
    from sst2.text import glue
    from tests.helpers import TINY_VOCABULARY, write_tiny_glue

    vocab = os.path.join(workdir, "vocab.txt")
    with open(vocab, "w") as f:
        f.write("\n".join(TINY_VOCABULARY) + "\n")
    preset = build_random_preset(os.path.join(workdir, "preset"), vocab, size="tiny")
    data_dir = os.path.join(workdir, "tfds")
    glue.prepare_glue_sst2(write_tiny_glue(os.path.join(workdir, "SST-2")), data_dir)
    return preset, data_dir


def time_one_run(preset: str, data_dir: str, model_dir: str) -> dict:
    """Seconds per phase of one exported run: train, restore, score, calibrate, export, report."""
    from sst2.fit import training
    from sst2.run.config import TrainConfig
    from sst2.serve.calibrated import calibrate_run
    from sst2.serve.report import scored_split, write_report
    from sst2.serve.trained import restore
    from tests.helpers import TINY_SEQUENCE_LENGTH

    seconds, started = {}, time.perf_counter()

    def lap(name):
        nonlocal started
        seconds[name] = time.perf_counter() - started
        started = time.perf_counter()

    training.run(TrainConfig.from_options(
        model_dir=model_dir, preset=preset, data_dir=data_dir, epochs=1, batch_size=8,
        sequence_length=TINY_SEQUENCE_LENGTH, pooling="attention", layers="last",
        head_hidden=8, progress=False, export=False))
    lap("train (tokenize, load, trace and compile, 32 steps, evaluate)")
    trained = restore(model_dir)
    lap("restore the best checkpoint")
    scored = scored_split(trained)
    lap("score the validation split through the serving function")
    trained = calibrate_run(trained, scored=scored)
    lap("calibrate")
    trained.export()
    lap("export (SavedModel: serving_default and explain)")
    write_report(trained, scored=scored)
    lap("report")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/sst2-run-phases")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    preset, data_dir = build_assets(args.workdir)
    for repeat in range(args.repeats):
        seconds = time_one_run(preset, data_dir, os.path.join(args.workdir, f"run{repeat}"))
    import tensorflow as tf

    print(f"A tiny run's phases, repeat {args.repeats} of {args.repeats} in one process; "
          f"{cpu_name()}, TensorFlow {tf.__version__}.\n")
    print("| phase | seconds |\n|---|---|")
    for name, value in seconds.items():
        print(f"| {name} | {value:.1f} |")
    print(f"| all | {sum(seconds.values()):.1f} |")


if __name__ == "__main__":
    main()
