"""Which precision the encode pass runs faster in, decided on the run's own batches.

`sst2.model.precision.verdict` times one layer on a small batch, once per
machine, and caches the answer: a first guess, and one that a busy machine can
get wrong for good. `confirm` times the real work instead: the whole frozen
backbone in float32 and in bfloat16 on a few of the run's own encode batches
(its sentences, lengths and batching), the two precisions alternating round
by round so that other load on the machine weighs on both alike. bfloat16 wins
only where it is clearly faster (`sst2.model.precision.faster_of`: it also
rounds the features), and the cached verdict is replaced where the trial
contradicts it.

Example:
    >>> from sst2.model import presets
    >>> from sst2.model.backbone import FeatureSpec
    >>> encoders = {p: FeatureEncoder.for_backbone(presets.load_backbone(preset, dtype=p),
    ...                                            FeatureSpec("cls", "last"), jit_compile=False)
    ...             for p in PRECISIONS}
    >>> tokens = {"token_ids": np.full((64, 8), 7, np.int32),
    ...           "padding_mask": np.ones((64, 8), np.int32), "length": np.full(64, 8)}
    >>> trial = confirm(encoders, tokens, batch_size=16, batch_tokens=128)
    >>> trial["precision"] in PRECISIONS, trial["batches"], trial["tokens"]
    (True, 2, 256)
"""

import time

import numpy as np
import tensorflow as tf
from absl import logging

from sst2.model.encoder import FeatureEncoder
from sst2.model.features import batch_plan
from sst2.model.precision import PRECISIONS, faster_of
from sst2.text import data

TRIAL_BATCHES = 2   # batches timed, spread over the pass's tokens
TRIAL_ROUNDS = 3    # rounds at least, each precision once per round
TRIAL_SECONDS = 3.0  # more rounds while the trial has taken less than this
# Sentences of the training split the trial's batches are drawn from.
TRIAL_SENTENCES = 2048


def _call(encoder: FeatureEncoder, tokens: dict, indices: np.ndarray, padded: int) -> None:
    ids = tf.constant(tokens["token_ids"][indices, :padded])
    mask = tf.constant(tokens["padding_mask"][indices, :padded])
    encoder(ids, mask).numpy()


def confirm(encoders: dict, tokens: dict, batch_size: int, batch_tokens: int | None = None) -> dict:
    """Times `encoders` (a `FeatureEncoder` per precision, same weights) on the encode
    pass's batches of `tokens` (`data.to_numpy(data.tokenize(...))` of real sentences),
    batched as the pass batches them (`sst2.model.features.batch_plan`).

    Returns `precision` (the faster, see the module), `seconds` (per precision, the
    median of its rounds' times for the trial's batches), `batches` and `tokens`
    (their real tokens).
    """
    some = next(iter(encoders.values()))
    plan = data.planned_batches(tokens["length"], batch_plan(
        some, tokens["token_ids"].shape[1], batch_size, batch_tokens))
    # The batches where the pass's tokens are: at the middles of equal shares of its
    # tokens (short batches are many but carry few tokens).
    mass = np.cumsum([tokens["length"][indices].sum() for indices, _ in plan])
    shares = (np.arange(TRIAL_BATCHES) + 0.5) / TRIAL_BATCHES * mass[-1]
    picks = sorted(set(np.searchsorted(mass, shares).tolist()))
    batches = [plan[i] for i in picks]
    for encoder in encoders.values():  # trace every shape, warm the caches
        for indices, padded in batches:
            _call(encoder, tokens, indices, padded)
    rounds = {p: [] for p in encoders}
    started = time.perf_counter()
    round_number = 0
    while (round_number < TRIAL_ROUNDS
           or time.perf_counter() - started < TRIAL_SECONDS and round_number < 4 * TRIAL_ROUNDS):
        order = list(encoders) if round_number % 2 == 0 else list(encoders)[::-1]
        for p in order:
            begun = time.perf_counter()
            for indices, padded in batches:
                _call(encoders[p], tokens, indices, padded)
            rounds[p].append(time.perf_counter() - begun)
        round_number += 1
    seconds = {p: float(np.median(t)) for p, t in rounds.items()}
    faster = faster_of(seconds)
    real_tokens = int(sum(tokens["length"][indices].sum() for indices, _ in batches))
    logging.info(f"Precision of the encode pass, timed on {len(batches)} of this run's batches "
                 f"({real_tokens:,} tokens), {round_number} alternating rounds: " + ", ".join(
                     f"{p} {seconds[p] * 1e3:.0f} ms" for p in PRECISIONS) + f": {faster}.")
    return {"precision": faster, "seconds": seconds, "batches": len(batches),
            "tokens": real_tokens, "rounds": round_number}
