"""Choosing a tf.distribute strategy, and who writes what under it.

    --strategy=auto          mirrored over all GPUs if there are several, else one device
    --strategy=one_device    the first GPU, else the CPU
    --strategy=mirrored      all local GPUs (or all logical CPU devices)
    --strategy=multi_worker  MultiWorkerMirroredStrategy over the workers in TF_CONFIG
    --strategy=tpu --tpu=... TPUStrategy on a TPU (address, name, or "local")

Only the chief writes (`sst2.run.worker`); other workers take part in every
collective (checkpoint saves are collective under MultiWorkerMirroredStrategy).

Example:
    >>> strategy = make_strategy("one_device")
    >>> strategy.num_replicas_in_sync, worker_info(strategy)
    (1, WorkerInfo(index=0, count=1))
"""

import json
import os

import tensorflow as tf

from sst2.run.errors import UserError
from sst2.run.worker import WorkerInfo

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")


def make_strategy(name: str = "auto", tpu: str | None = None) -> tf.distribute.Strategy:
    """Builds the strategy `name`; see the module docstring."""
    if name not in STRATEGIES:
        raise UserError(f"--strategy must be one of {', '.join(STRATEGIES)}, not {name!r}")
    # Listing *physical* devices leaves the runtime unstarted, as multi-worker needs.
    if name == "auto":
        name = "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "one_device"
    if name == "multi_worker":
        return _multi_worker()
    if name == "tpu":
        return _tpu(tpu)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def _multi_worker() -> tf.distribute.Strategy:
    if "TF_CONFIG" not in os.environ:
        raise UserError("--strategy=multi_worker needs TF_CONFIG: a JSON cluster spec with "
                        "this worker's task (see the README).")
    try:
        json.loads(os.environ["TF_CONFIG"])
    except ValueError as e:
        raise UserError(f"TF_CONFIG is not valid JSON: {e}") from e
    # A dead peer must end the run in bounded time, not hang a collective forever.
    text = os.environ.get("SST2_COLLECTIVE_TIMEOUT", "120")
    try:
        timeout = float(text)
    except ValueError:
        timeout = -1.0
    if not 0 < timeout < float("inf"):
        raise UserError(f"SST2_COLLECTIVE_TIMEOUT={text!r} is not a number of seconds above 0.")
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def _tpu(tpu: str | None) -> tf.distribute.Strategy:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as e:
        raise UserError(f"No TPU at {tpu or 'the default address'}: {e}") from e
    return tf.distribute.TPUStrategy(resolver)


def worker_info(strategy: tf.distribute.Strategy) -> WorkerInfo:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return WorkerInfo()
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    workers = len(resolver.cluster_spec().as_dict().get("worker", [])) + len(
        resolver.cluster_spec().as_dict().get("chief", []))
    index = task_id + (1 if task_type == "worker" and "chief" in resolver.cluster_spec().as_dict()
                       else 0)
    return WorkerInfo(index=index, count=max(workers, 1))
