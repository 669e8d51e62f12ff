"""Helpers the tests share: tiny GLUE-format files, entry points run in process or in a
fresh one, the assets' locations."""

import os
import random
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

POSITIVE = ["good", "great", "fun", "moving", "charming", "superb", "warm", "clever"]
NEGATIVE = ["bad", "dull", "boring", "awful", "tedious", "flat", "weak", "stale"]
NEUTRAL = ["the", "film", "movie", "is", "a", "story", "of", "and", "it", "plot", "very"]
TINY_VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + POSITIVE + NEGATIVE + NEUTRAL
TINY_SEQUENCE_LENGTH = 16


_UNPACKED = []

# How far two executions of one computation (a SavedModel against the same function in
# process, another padding or batch split) may differ in a probability or a unit-scale
# feature, by the precision the backbone computed in. float32: summation order alone,
# well below 1e-5 at these sizes. bfloat16 keeps 8 bits of mantissa, so one rounding moves
# a value by up to 2^-9 (2e-3) of itself, and two executions round at different points.
TOLERANCE = {"float32": 1e-5, "bfloat16": 2e-3}


def run_precision(model_dir: str) -> str:
    """The precision a finished run's backbone computed in (its config.json)."""
    import json

    with open(os.path.join(model_dir, "config.json")) as f:
        return json.load(f)["precisions"]["encode"]


def tolerance(model_dir: str) -> float:
    """`TOLERANCE` for the precision of the run in `model_dir`."""
    return TOLERANCE[run_precision(model_dir)]


def glue_dir() -> str:
    """The real GLUE SST-2 files: $SST2_GLUE_DIR if set, else the copy embedded in sst2."""
    if os.environ.get("SST2_GLUE_DIR"):
        return os.environ["SST2_GLUE_DIR"]
    if not _UNPACKED:
        from sst2.text import embedded

        _UNPACKED.append(embedded.unpack_sst2(tempfile.mkdtemp(prefix="sst2-glue-")))
    return _UNPACKED[0]


def senteval_dir() -> str:
    """Slices of SST-5 and TREC from ../shared/data/senteval, bytes unchanged (their README)."""
    return os.path.join(REPO, "tests", "data", "senteval")


def convert_senteval(source: str, destination: str, encoding: str = "utf-8",
                     label_names=None) -> int:
    """`scripts/convert_senteval.py`'s `convert`: what a user runs to get CSV/TSV/JSONL."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "convert_senteval", os.path.join(REPO, "scripts", "convert_senteval.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.convert(source, destination, encoding, label_names)


def _sentence(rng: random.Random, label: int) -> str:
    words = rng.sample(NEUTRAL, rng.randint(1, 6)) + [rng.choice(POSITIVE if label else NEGATIVE)]
    rng.shuffle(words)
    return " ".join(words)


def write_tiny_glue(folder: str, seed: int = 0, sizes=(256, 64, 32)) -> str:
    """Writes GLUE-format SST-2 files whose labels a tiny model can learn."""
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    for name, n in zip(("train.tsv", "dev.tsv"), sizes[:2]):
        with open(os.path.join(folder, name), "w") as f:
            f.write("sentence\tlabel\n")
            for i in range(n):
                label = i % 2
                f.write(f"{_sentence(rng, label)} \t{label}\n")
    with open(os.path.join(folder, "test.tsv"), "w") as f:
        f.write("index\tsentence\n")
        for i in range(sizes[2]):
            f.write(f"{i}\t{_sentence(rng, i % 2)}\n")
    return folder


def run_module(module: str, *args: str, env: dict | None = None, timeout: float = 600,
               cwd: str | None = None, process: bool = False) -> subprocess.CompletedProcess:
    """`python -m module args...` with its exit status, stdout and stderr: in this process
    (an entry point is a function: no second start of TensorFlow and its model), or in a
    fresh one where the process is what a test is about (`process=True`: signals, what is
    imported at start, the README's commands as written, `$TMPDIR` and `$HOME`)."""
    if process:
        full_env = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
        return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                              text=True, env=full_env, timeout=timeout, cwd=cwd or REPO)
    return _run_in_process(module, list(args), env or {}, cwd or REPO)


def _run_in_process(module: str, args: list, env: dict, cwd: str):
    import contextlib
    import io
    import runpy
    import signal
    import traceback

    from sst2.run import log_lines

    out, err = io.StringIO(), io.StringIO()
    saved = (dict(os.environ), os.getcwd(), sys.argv, sys.stdin,
             signal.getsignal(signal.SIGTERM))
    status = 0
    try:
        os.environ.update(env)
        os.chdir(cwd)
        sys.argv, sys.stdin = [module, *args], io.StringIO("")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                log_lines.kept():
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            except SystemExit as e:
                status = e.code if isinstance(e.code, int) else int(e.code is not None)
            except Exception:  # what a process would print before exiting 1
                traceback.print_exc()
                status = 1
    finally:
        environ, directory, sys.argv, sys.stdin, handler = saved
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(directory)
        signal.signal(signal.SIGTERM, handler)
    return subprocess.CompletedProcess([module, *args], status, out.getvalue(), err.getvalue())


def start_paused(target: str, calls: int, module: str, *args: str, output_dir: str,
                 env: dict | None = None, cwd: str | None = None):
    """Starts `python -m module args`, pausing once `target` (`MODULE:FUNCTION`) has
    returned `calls` times (`tests.pause`); returns `(process, paused)` when it is paused
    there or has ended without pausing. Its stdout and stderr go to files in
    `output_dir` (`read_output(output_dir)`), so no pipe can fill and block it."""
    read_fd, write_fd = os.pipe()
    with open(os.path.join(output_dir, "stdout"), "w") as out, \
            open(os.path.join(output_dir, "stderr"), "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.pause", target, str(calls), str(write_fd), module,
             *args], pass_fds=(write_fd,), stdout=out, stderr=err, cwd=cwd or REPO,
            env=dict(os.environ, PYTHONPATH=REPO, **(env or {})))
    os.close(write_fd)
    with os.fdopen(read_fd) as ready:
        paused = ready.readline() == "paused\n"  # "" if it ended first
    return process, paused


def read_output(output_dir: str) -> tuple[str, str]:
    """The stdout and stderr a `start_paused` process wrote."""
    with open(os.path.join(output_dir, "stdout")) as out, \
            open(os.path.join(output_dir, "stderr")) as err:
        return out.read(), err.read()


def error_lines(stderr: str) -> list[str]:
    """The `error: ...` lines a process wrote, wherever TensorFlow's C++ runtime logs
    lines of its own around them."""
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def tiny_head_and_optimizer():
    """A built 8-wide `ClassifierHead` and its built Adam: what checkpoint tests save."""
    import keras
    import tensorflow as tf

    from sst2.model.head import ClassifierHead

    head = ClassifierHead(hidden_units=0)
    head(tf.zeros([1, 1, 8]))
    optimizer = keras.optimizers.Adam()
    optimizer.build(head.trainable_variables)
    return head, optimizer


def train(config, **kwargs):
    """`sst2.fit.training.run` as `sst2.train` calls it: with the export's actions."""
    from sst2.fit import training
    from sst2.serve import publish

    return training.run(config, actions=publish.actions(config), **kwargs)
