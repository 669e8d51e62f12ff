"""Training rows added to a split: variants of its texts that keep their labels.

With `--augment_identity`, every training text that names an identity term
(`sst2.text.word_swaps`: "a french film", "a gay character") is added again once
for each other term of the term's category: the head sees that the term alone
says nothing about the label. With `--augment_typos=F`, a fraction F of the
texts (the same ones every run) is added again with a typo (`sst2.text.typos`).
The added rows are tokenized and encoded on their own (their own feature-cache
entry, keyed by their content like any split), so adding them costs the encode
pass only their tokens, and are then read after the split's own rows
(`feature_store.JoinedFeatureSet`). Each keeps the `idx` of the row it varies.

Example:
    >>> rows = {"text": np.array([b"a french film .", b"a fine film ."]),
    ...         "label": np.array([1, 0]), "idx": np.array([4, 5])}
    >>> added = identity_variants(rows)
    >>> len(added["text"]), added["text"][0], added["label"][:2].tolist()
    (9, 'an american film .', [1, 1])
    >>> sorted(set(added["idx"].tolist()))
    [4]
"""

import random

import numpy as np
from absl import logging

from sst2.text import data
from sst2.text.typos import typo
from sst2.text.word_swaps import identity_counterfactuals, identity_groups, load_words


def identity_variants(rows: dict) -> dict:
    """`rows` (`text`, `label`, `idx` arrays; texts as bytes or str) as the variants of
    each text that names identity terms (`word_swaps.identity_counterfactuals`), each
    with its row's label and idx; empty arrays where no text names one."""
    groups = identity_groups(load_words())
    return _variants(rows, lambda row, text: identity_counterfactuals(text, groups))


def typo_variants(rows: dict, fraction: float) -> dict:
    """A `fraction` of `rows`' texts, each with one typo (`typos.typo`), with its row's
    label and idx. The texts and typos are drawn from a fixed seed: the same every run,
    so their features are encoded once."""
    rng = random.Random(0)
    chosen = set(rng.sample(range(len(rows["text"])), round(fraction * len(rows["text"]))))

    def with_a_typo(row: int, text: str) -> list[str]:
        changed = typo(text, rng) if row in chosen else None
        return [] if changed is None else [changed]

    return _variants(rows, with_a_typo)


def _variants(rows: dict, vary) -> dict:
    texts, sources = [], []
    for row, text in enumerate(rows["text"]):
        text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
        variants = vary(row, text)
        texts += variants
        sources += [row] * len(variants)
    sources = np.asarray(sources, np.int64)
    return {"text": np.array(texts, dtype=object), "label": rows["label"][sources],
            "idx": rows["idx"][sources]}


def added_tokens(config, dataset, split: str, preprocessor) -> dict | None:
    """The tokens of the rows `config` adds to `split` (`identity_variants`, then
    `typo_variants`), tokenized as the split is; None where it adds none, and for
    sentence pairs (a term swapped in one text of a pair may change how they relate)."""
    import tensorflow as tf

    identity, typos = config.data.augment_identity, config.data.augment_typos
    if not (identity or typos):
        return None
    if dataset.info.is_pair:
        logging.info("--augment_identity and --augment_typos vary single texts: sentence "
                     "pairs are trained on as they are.")
        return None
    rows = data.to_numpy(dataset.load(split))
    parts = ([("with identity terms swapped", identity_variants(rows))] if identity else []) + (
        [("with a typo", typo_variants(rows, typos))] if typos else [])
    added = {name: np.concatenate([part[name] for _, part in parts])
             for name in ("text", "label", "idx")}
    logging.info(f"Added for training: {len(added['text']):,} variants of "
                 f"{len(np.unique(added['idx'])):,} of the {len(rows['idx']):,} training "
                 "texts (" + ", ".join(f"{len(part['text']):,} {what}" for what, part in parts)
                 + ").")
    if not len(added["text"]):
        return None
    return data.to_numpy(data.tokenize(tf.data.Dataset.from_tensor_slices({
        "idx": added["idx"], "label": added["label"],
        "text": tf.constant(added["text"].tolist(), tf.string)}), preprocessor))


def joined_tokens(tokens: dict, added: dict) -> dict:
    """Token arrays of a split then its added rows (both padded to one sequence length)."""
    return {name: np.concatenate([tokens[name], added[name]]) for name in tokens}
