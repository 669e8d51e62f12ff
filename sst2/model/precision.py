"""Which precision `--precision=auto` means on this machine: measured, not read off CPU flags.

A CPU flag (`avx512_bf16`, `amx_bf16`) says an instruction exists, not that
TensorFlow's kernels run faster with it: on some machines bfloat16 runs at
half float32's speed despite the flag (docs/measurements.md). So on a CPU,
the first time a backbone shape meets this machine and TensorFlow build, one
layer of that shape is timed in float32 and in bfloat16, for the encode pass
(`FastEncoder`'s forward) and, separately, for the unfrozen layers' train
step (forward and backward), about a second in all. The verdict is cached in
`$SST2_CACHE_DIR/precision/` (default `~/.cache/sst2`); later runs read it as a
first guess, and a training run that encodes confirms it on its own batches
(`sst2.model.precision_trial`), replacing it where the real work disagrees.
Accelerators compute in bfloat16 without measuring. `SST2_AUTO_PRECISION`
(`float32` or `bfloat16`) forces what `auto` means, on any machine: bfloat16
is emulated where the CPU lacks it, slower but correct, so a float32 machine
can run what a bfloat16 machine would.

Example:
    >>> resolve("float32", LayerShape(16, 2, 32))
    'float32'
    >>> os.environ[FORCE] = "bfloat16"
    >>> resolve("auto", LayerShape(16, 2, 32))
    'bfloat16'
    >>> del os.environ[FORCE]
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

from sst2.model import hardware
from sst2.run import machine
from sst2.run.errors import UserError
from sst2.run.files import load_json, save_json

FORCE = "SST2_AUTO_PRECISION"
PRECISIONS = ("float32", "bfloat16")
# bfloat16 must be clearly faster: it also rounds the features to 8 bits of mantissa.
BFLOAT16_MUST_TAKE_AT_MOST = 0.9
MEASURE_SECONDS = 0.2  # per precision and kind
# Batches as they come: a length-sorted encode batch of SST-2 sentences; a train batch.
BATCH = {"encode": (16, 32), "train": (8, 32)}


def faster_of(seconds: dict) -> str:
    """The precision to compute in, given each one's time for the same work: bfloat16
    only where it takes at most `BFLOAT16_MUST_TAKE_AT_MOST` of float32's time.

    >>> faster_of({"float32": 1.0, "bfloat16": 0.95})
    'float32'
    >>> faster_of({"float32": 1.0, "bfloat16": 0.7})
    'bfloat16'
    """
    return ("bfloat16" if seconds["bfloat16"] <= BFLOAT16_MUST_TAKE_AT_MOST * seconds["float32"]
            else "float32")


@dataclasses.dataclass(frozen=True)
class LayerShape:
    """One transformer layer's sizes: what the measurement times."""
    hidden: int
    heads: int
    intermediate: int

    @classmethod
    def of(cls, backbone) -> "LayerShape":
        return cls(backbone.hidden_dim, backbone.num_heads, backbone.intermediate_dim)


def resolve(precision: str, shape: LayerShape, kind: str = "encode") -> str:
    """`float32` or `bfloat16`: `precision` itself unless `auto`; else forced by
    `SST2_AUTO_PRECISION`, bfloat16 on accelerators, or the faster on this CPU for
    `kind` (`encode` or `train`), measured once."""
    if precision != "auto":
        return precision
    forced = os.environ.get(FORCE)
    if forced:
        if forced not in PRECISIONS:
            raise UserError(f"{FORCE}={forced!r} is not one of {', '.join(PRECISIONS)}.")
        return forced
    if hardware.has_accelerator():
        return "bfloat16"
    return verdict(shape, kind)["precision"]


def for_run(precision: str, shape: LayerShape, trainable_layers: int,
            recorded: dict | None = None) -> dict:
    """A run's precisions, `{"encode": ..., "train": ...}` (`train`: its unfrozen
    layers'): what it recorded when it started (a resumed run computes as it did),
    else resolved here; `train` is measured only for runs with unfrozen layers."""
    if recorded:
        return dict(recorded)
    encode = resolve(precision, shape, "encode")
    train = resolve(precision, shape, "train") if trainable_layers else encode
    return {"encode": encode, "train": train}


def machine_key(shape: LayerShape, kind: str) -> dict:
    """What a verdict depends on: the CPU, the TensorFlow build, the layer and the kind."""
    cpu = machine.cpu_info()
    return {"cpu": cpu["name"], "flags": hashlib.sha256(cpu["flags"].encode()).hexdigest()[:16],
            "cores": os.cpu_count(), "tensorflow": tf.__version__, "kind": kind,
            **dataclasses.asdict(shape)}


def _record_path(key: dict) -> str:
    from sst2.model.standin import cache_root

    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return os.path.join(cache_root(), "precision", f"{key['kind']}-{name}.json")


def measured_on_real_work(precision: str) -> bool:
    """Whether `precision` leaves the choice to a measurement on this CPU (`auto`, not
    forced, no accelerator): the case a run confirms on its own batches
    (`sst2.model.precision_trial`)."""
    return (precision == "auto" and not os.environ.get(FORCE)
            and not hardware.has_accelerator())


def remember(shape: LayerShape, kind: str, trial: dict) -> None:
    """Replaces this machine's cached verdict with a trial on real work (`trial`:
    `precision_trial.confirm`'s result), saying so where it changes the verdict."""
    key = machine_key(shape, kind)
    path = _record_path(key)
    previous = (cached(shape, kind) or {}).get("precision")
    if previous not in (None, trial["precision"]):
        logging.info(f"The cached verdict for this machine ({previous}) is replaced: the run's own "
                     f"batches ran faster in {trial['precision']}.")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_json(path, {"key": key, "precision": trial["precision"],
                         "seconds_per_step": trial["seconds"], "real_work": trial})
    except (OSError, UserError):
        pass  # a read-only cache: the next run's trial decides again


def cached(shape: LayerShape, kind: str) -> dict | None:
    """This machine's cached verdict for `shape` and `kind`, or None (none yet, or a
    damaged record: a folder in its place, or JSON that is not one)."""
    key = machine_key(shape, kind)
    path = _record_path(key)
    try:
        record = load_json(path) if os.path.exists(path) else None
    except (UserError, OSError):
        record = None
    if (isinstance(record, dict) and record.get("key") == key
            and record.get("precision") in PRECISIONS):
        return record
    return None


@contextlib.contextmanager
def deciding(shape: LayerShape, kind: str):
    """Held while one process decides `kind`'s precision: runs started together on one
    machine decide once, and the others read that decision."""
    path = _record_path(machine_key(shape, kind)) + ".lock"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lock = open(path, "a")
    except OSError:  # a read-only cache: each run decides alone
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def verdict(shape: LayerShape, kind: str) -> dict:
    """The cached measurement for this machine, or a new one (saved when the cache
    folder is writable)."""
    key = machine_key(shape, kind)
    path = _record_path(key)
    record = cached(shape, kind)
    if record is not None:
        return record
    seconds = measure(shape, kind)
    faster = faster_of(seconds)
    record = {"key": key, "seconds_per_step": seconds, "precision": faster}
    logging.info(f"Precision for the {kind} pass, measured on this machine ({key['cpu']}, one "
                 f"{shape.hidden}-wide layer): float32 {seconds['float32'] * 1e3:.1f} ms, "
                 f"bfloat16 {seconds['bfloat16'] * 1e3:.1f} ms per step: {faster} (cached in "
                 f"{path}).")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_json(path, record)
    except (OSError, UserError):
        pass  # a read-only cache measures again next time
    return record


def _step(shape: LayerShape, precision: str, kind: str):
    """One layer's encode forward or train step, as a traced function of no arguments."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    rows, length = BATCH[kind]
    inputs = tf.constant(np.random.default_rng(0).standard_normal(
        (rows, length, shape.hidden)), tf.float32)
    mask = tf.ones((rows, length), tf.int32)
    if kind == "encode":
        from sst2.model.inference import FastEncoder, onednn_fuses

        backbone = keras_hub.models.DistilBertBackbone(
            vocabulary_size=8, num_layers=1, num_heads=shape.heads, hidden_dim=shape.hidden,
            intermediate_dim=shape.intermediate, max_sequence_length=length, dtype=precision)
        encoder = FastEncoder(backbone, fuse_layer_norm=onednn_fuses())  # as the pass's
        ids = tf.zeros((rows, length), tf.int32)
        return tf.function(lambda: encoder(ids, mask)[-1])
    layer = keras_hub.layers.TransformerEncoder(
        shape.intermediate, shape.heads, activation="gelu",
        dtype="mixed_bfloat16" if precision == "bfloat16" else "float32")
    layer(inputs, padding_mask=mask)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(layer(inputs, padding_mask=mask), tf.float32))
        return tape.gradient(loss, layer.trainable_variables)

    return train_step


def measure(shape: LayerShape, kind: str = "encode") -> dict:
    """Seconds per step of one layer in each precision: the median over alternating rounds
    of `MEASURE_SECONDS` in all per precision, after a warm-up call."""
    steps = {p: _step(shape, p, kind) for p in PRECISIONS}
    for step in steps.values():
        tf.nest.map_structure(lambda t: t.numpy(), step())  # trace and warm up
    times = {p: [] for p in PRECISIONS}
    deadline = time.perf_counter() + 2 * MEASURE_SECONDS
    while time.perf_counter() < deadline or min(len(t) for t in times.values()) < 3:
        for p, step in steps.items():
            started = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), step())
            times[p].append(time.perf_counter() - started)
    return {p: float(np.median(t)) for p, t in times.items()}
