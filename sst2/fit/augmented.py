"""Training rows added to a split: counterfactual identity terms (`--augment_identity`).

Every training text that names an identity term (`sst2.text.word_swaps`: "a
french film", "a gay character") is added again once for each other term of the
term's category, with the same label: the head sees that the term alone says
nothing about the label. The added rows are tokenized and encoded on their own
(their own feature-cache entry, keyed by their content like any split), so adding
them costs the encode pass only their tokens, and are then read after the split's
own rows (`feature_store.JoinedFeatureSet`). Each keeps the `idx` of the row it
varies.

Example:
    >>> rows = {"text": np.array([b"a french film .", b"a fine film ."]),
    ...         "label": np.array([1, 0]), "idx": np.array([4, 5])}
    >>> added = identity_variants(rows)
    >>> len(added["text"]), added["text"][0], added["label"][:2].tolist()
    (9, 'an american film .', [1, 1])
    >>> sorted(set(added["idx"].tolist()))
    [4]
"""

import numpy as np
from absl import logging

from sst2.text import data
from sst2.text.word_swaps import identity_counterfactuals, identity_groups, load_words


def identity_variants(rows: dict) -> dict:
    """`rows` (`text`, `label`, `idx` arrays; texts as bytes or str) as the variants of
    each text that names identity terms (`word_swaps.identity_counterfactuals`), each
    with its row's label and idx; empty arrays where no text names one."""
    groups = identity_groups(load_words())
    texts, sources = [], []
    for row, text in enumerate(rows["text"]):
        text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
        variants = identity_counterfactuals(text, groups)
        texts += variants
        sources += [row] * len(variants)
    sources = np.asarray(sources, np.int64)
    return {"text": np.array(texts, dtype=object), "label": rows["label"][sources],
            "idx": rows["idx"][sources]}


def identity_tokens(dataset, split: str, preprocessor) -> dict | None:
    """The tokens of `split`'s identity-term variants (`identity_variants`), tokenized as
    the split is; None where no text of it names an identity term, or for sentence pairs
    (a term swapped in one text of a pair may change how the two relate)."""
    import tensorflow as tf

    if dataset.info.is_pair:
        logging.info("--augment_identity varies single texts: sentence pairs are trained on "
                     "as they are.")
        return None
    rows = data.to_numpy(dataset.load(split))
    added = identity_variants(rows)
    logging.info(f"--augment_identity: {len(added['text']):,} variants of "
                 f"{len(np.unique(added['idx'])):,} of the {len(rows['idx']):,} training "
                 "texts, with their identity terms swapped.")
    if not len(added["text"]):
        return None
    return data.to_numpy(data.tokenize(tf.data.Dataset.from_tensor_slices({
        "idx": added["idx"], "label": added["label"],
        "text": tf.constant(added["text"].tolist(), tf.string)}), preprocessor))


def joined_tokens(tokens: dict, added: dict) -> dict:
    """Token arrays of a split then its added rows (both padded to one sequence length)."""
    return {name: np.concatenate([tokens[name], added[name]]) for name in tokens}

