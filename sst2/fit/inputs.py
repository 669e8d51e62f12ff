"""From a split's name to batch sources: tokenize, encode (cached), batch.

`split_source` builds one split's source. With `--cache_features` (the
default) the frozen backbone runs once per sentence and its features are
cached (`sst2.fit.cached_features`); without it, the backbone runs on every batch.

Example:
    >>> config = TrainConfig.from_options(data_dir=data_dir, preset=preset, sequence_length=16,
    ...                                   model_dir=tmp_dir, progress=False)
    >>> from sst2.model import presets
    >>> from sst2.model.encoder import FeatureEncoder
    >>> from sst2.text.datasets import open_dataset
    >>> preprocessor = presets.load_preprocessor(preset, 16)
    >>> tokens = tokenize_split(open_dataset(config.data), "validation", preprocessor)
    >>> sorted(tokens)
    ['idx', 'label', 'length', 'padding_mask', 'token_ids']
    >>> backbone = presets.load_backbone(preset)
    >>> encoder = FeatureEncoder.for_backbone(backbone, FeatureSpec.of(config.model),
    ...                                       jit_compile=False)
    >>> source = split_source(config, "validation", tokens,
    ...                       Encoding(encoder, "float32", backbone.num_layers))
    >>> source.num_batches(0), source.batch(0, 0).features["tokens"].shape[0]
    (2, 32)
"""

import dataclasses
import time

import numpy as np
from absl import logging

from sst2.fit.augmented import added_tokens, joined_tokens
from sst2.fit.cached_features import (
    Encoding,
    cache_dir,
    cached_features,
    encode_rate,
    encode_work,
    encoded,
    feature_key,
)
from sst2.fit.sources import CachedFeatureSource, CachedPairSource, CachedTokenSource, TokenSource
from sst2.model.backbone import FeatureSpec
from sst2.model.feature_store import JoinedFeatureSet
from sst2.run import targets
from sst2.run.config import TrainConfig
from sst2.run.errors import UserError
from sst2.run.worker import WorkerInfo
from sst2.text import data
from sst2.text.data import load_train_buckets
from sst2.text.dataset_info import TextDataset


def tokenize_split(dataset: TextDataset, split: str, preprocessor,
                   labelled: str | None = None, separate_pairs: bool = False) -> dict:
    """`split` of `dataset` as numpy token arrays (see `data.tokenize`).

    With `labelled` (the flag that named the split), a split with unlabelled
    examples (label -1, as GLUE's test split) is refused. With `separate_pairs`
    (a dataset of pairs), each distinct text is tokenized alone: `sentences`
    holds their tokens, `first` and `second` each pair's two sentences, and
    `length` the longer one's length (`tokenize_pairs_apart`).
    """
    if separate_pairs and dataset.info.is_pair:
        tokens = tokenize_pairs_apart(dataset.load(split), preprocessor)
    else:
        tokens = data.to_numpy(data.tokenize(dataset.load(split), preprocessor))
    if not tokens:
        raise UserError(f"The split {split!r} is empty.")
    unlabelled = int(unlabelled_rows(tokens["label"]).sum())
    if labelled and unlabelled:
        raise UserError(f"{labelled}={split!r} has {unlabelled} unlabelled examples (GLUE's "
                        "test split has no labels): train and validate on labelled splits, "
                        "e.g. train and validation.")
    return tokens


def tokenize_pairs_apart(pairs, preprocessor) -> dict:
    """A dataset of pairs as its distinct sentences, each tokenized alone (encoded once,
    however many pairs share it), and each pair's two sentence numbers."""
    import tensorflow as tf

    rows = data.to_numpy(pairs)
    if not rows:
        return {}
    number = {}
    first, second = ([number.setdefault(text, len(number)) for text in rows[column]]
                     for column in ("text", "text_pair"))
    texts = np.array(list(number), dtype=object)
    sentences = data.to_numpy(data.tokenize(tf.data.Dataset.from_tensor_slices({
        "idx": np.arange(len(texts), dtype=np.int32), "label": np.zeros(len(texts), np.int64),
        "text": tf.constant(texts.tolist(), tf.string)}), preprocessor))
    first, second = np.asarray(first, np.int64), np.asarray(second, np.int64)
    return {"sentences": sentences, "first": first, "second": second,
            "label": rows["label"].astype(np.float32 if rows["label"].dtype.kind == "f"
                                          else np.int32),
            "idx": rows["idx"].astype(np.int32),
            "length": np.maximum(sentences["length"][first], sentences["length"][second])}


def unlabelled_rows(labels: np.ndarray) -> np.ndarray:
    """Which examples have no label: -1 (any entry, multi-label), or NaN (a number)."""
    missing = np.isnan(labels) if labels.dtype.kind == "f" else labels < 0
    return missing.reshape(len(labels), -1).any(axis=1)


# What one more length bucket (one more compiled shape) costs, in padded token rows
# trained per epoch, for a head without transformer blocks: an XLA compile of the
# default head's train step takes ~2.3-3.3 s on CPU, as long as ~1.5-2M padded token
# rows (~1.6 us each), i.e. ~500,000 per epoch of a ~3-epoch run (docs/measurements.md,
# "Fewer compiled shapes"; the optimum is flat from ~300,000 to 1,000,000).
BUCKET_COST_IN_TOKEN_ROWS = 500_000


def bucket_boundaries(config: TrainConfig, lengths: np.ndarray,
                      batch_size: int) -> tuple[int, ...]:
    """The padded lengths of a split's batches (`data.choose_buckets`).

    For heads with transformer blocks (or unfrozen layers) every padded token
    costs far more than a compile, so they get the least padding.
    """
    has_blocks = FeatureSpec.of(config.model).has_transformer_blocks
    return data.choose_buckets(lengths, batch_size,
                               data.bucket_lengths(config.model.sequence_length),
                               0 if has_blocks else BUCKET_COST_IN_TOKEN_ROWS)


def split_source(config: TrainConfig, split: str, tokens: dict, encoding: Encoding, *,
                 shuffle: bool = False, batch_size: int | None = None,
                 worker: WorkerInfo = WorkerInfo(), dataset=None,
                 boundaries: tuple[int, ...] | None = None, key: dict | None = None,
                 added: dict | None = None, added_key: dict | None = None):
    """`split`'s batch source: cached features, or the backbone on every batch
    (`--cache_features=false`).

    Args:
        config: the run's options.
        split: the split's name.
        tokens: its tokenized examples (`tokenize_split`).
        encoding: the frozen model's encode pass and precision.
        shuffle: a new order each epoch (the training split).
        batch_size: the global batch (default: the config's).
        worker: this process's place in a multi-worker run.
        dataset: the `DatasetInfo`, for the cache key (see `cached_features`).
        boundaries: the length buckets (default: `bucket_boundaries`).
        key: the features' cache key, if known.
        added, added_key: rows added to the split for training (`sst2.fit.augmented`),
            read after its own, and their cache key.
    """
    batch_size = batch_size or config.optimization.batch_size
    lengths = tokens["length"] if added is None else np.concatenate(
        [tokens["length"], added["length"]])
    boundaries = boundaries or bucket_boundaries(config, lengths, batch_size)
    seed = config.optimization.seed
    if "sentences" in tokens:  # pairs encoded apart: each sentence once
        if not config.run.cache_features:
            raise UserError("--pair_encoding=separate encodes each sentence once into the "
                            "feature cache; use it with --cache_features (the default).")
        sentences = cached_features(config, split, tokens["sentences"], encoding, worker,
                                    dataset, key)
        return CachedPairSource(sentences, tokens, batch_size,
                                boundaries if FeatureSpec.of(config.model).token_level
                                else None, seed, shuffle)
    if not config.run.cache_features:
        return TokenSource(tokens if added is None else joined_tokens(tokens, added),
                           encoding.encoder, batch_size, boundaries, seed, shuffle)
    features = cached_features(config, split, tokens, encoding, worker, dataset, key)
    if added is not None:
        features = JoinedFeatureSet(features, cached_features(
            config, f"{split} (added)", added, encoding, worker, dataset, added_key))
    if FeatureSpec.of(config.model).token_level:
        return CachedTokenSource(features, batch_size, boundaries, seed, shuffle)
    return CachedFeatureSource(features, batch_size, seed, shuffle)


@dataclasses.dataclass(frozen=True)
class RunInputs:
    """What a run trains and evaluates on, read once (`run_sources`).

    Attributes:
        train, eval: the batch sources (`sst2.fit.sources`).
        info: the dataset as the run learns it: a regression run's with its target's
            scale, measured on the training split.
        class_weights: `--class_weights=balanced`'s weights, or None.
        precisions: what the backbone computes in (`encode`, `train`).
        global_batch: examples per step, over every replica.
        facts: what `metrics.json` records about them.
    """

    train: object
    eval: object
    info: object
    class_weights: list | None
    precisions: dict
    global_batch: int
    facts: dict


def _say_what_is_trained(config: TrainConfig, info, train_tokens: dict, eval_tokens: dict,
                         backbone, encoding: Encoding) -> None:
    """The two lines that tell a user what the run learns from, and with what."""
    logging.info(f"{len(train_tokens['label'])} training and {len(eval_tokens['label'])} "
                 f"evaluation {'pairs' if info.is_pair else 'sentences'}, "
                 f"{info.target.describe_labels(info.num_classes, info.target_scale)}; "
                 f"backbone {backbone.num_layers} layers x {backbone.hidden_dim}, "
                 f"precision {encoding.precision}.")
    logging.info(f"Head: {FeatureSpec.of(config.model).describe()}; "
                 f"{_describe_optimization(config)}.")


def run_sources(config: TrainConfig, dataset: TextDataset, preprocessor, encoding: Encoding,
                backbone, global_batch: int, worker: WorkerInfo,
                precisions: dict) -> RunInputs:
    """A run's inputs (`RunInputs`): its splits tokenized, encoded (or cached) and batched.

    Args:
        config: the run's options.
        dataset: its data (`open_dataset`).
        preprocessor, encoding, backbone: the frozen model and how it encodes.
        global_batch: examples per step over every replica.
        worker: this process's place in a multi-worker run.
        precisions: what the backbone computes in, for `metrics.json`.
    """
    data_config = config.data
    tokenize_started = time.time()
    train_tokens, eval_tokens, info = _tokenized(config, dataset, preprocessor)
    added = added_tokens(config, dataset, data_config.train_split, preprocessor)
    _say_what_is_trained(config, info, train_tokens, eval_tokens, backbone, encoding)
    tokenize_seconds = time.time() - tokenize_started
    token_sets = [train_tokens, eval_tokens] + ([added] if added is not None else [])
    # Each set's cache key once (it hashes every example), where features are cached.
    keys = ([feature_key(config, encoded(t), encoding, info) for t in token_sets]
            if config.run.cache_features else [None] * len(token_sets))
    work = encode_work(config, backbone, token_sets, keys)
    encode_started = time.time()
    # A resumed run keeps the buckets it started with: the same batches.
    train_source = split_source(config, data_config.train_split, train_tokens, encoding,
                                shuffle=True, batch_size=global_batch, worker=worker,
                                dataset=info, key=keys[0],
                                boundaries=load_train_buckets(config.run.model_dir),
                                added=added, added_key=(keys + [None])[2])
    eval_source = split_source(config, data_config.eval_split, eval_tokens, encoding,
                               batch_size=global_batch, worker=worker, dataset=info,
                               key=keys[1])
    encode_seconds = None
    if config.run.cache_features:
        encode_seconds = time.time() - encode_started
        logging.info(f"Features ready in {encode_seconds:.1f}s (cache: {cache_dir(config)}"
                     + encode_rate(work, encode_seconds) + ").")
    buckets = {"train": train_source.boundaries, "eval": eval_source.boundaries}
    if buckets["train"]:
        logging.info(f"Length buckets (one compiled shape each): training {buckets['train']}, "
                     f"evaluation {buckets['eval']}.")
    class_weights = (info.target.class_weights(train_tokens["label"], info.num_classes).tolist()
                     if config.optimization.class_weights == "balanced" else None)
    facts = {**_optimization_facts(config), "precision": encoding.precision,
             "precisions": precisions, "length_buckets": buckets if buckets["train"] else None,
             "train_examples": len(train_tokens["label"]),
             "added_examples": 0 if added is None else len(added["label"]),
             "eval_examples": len(eval_tokens["label"]),
             "tokenize_seconds": tokenize_seconds, "encode_seconds": encode_seconds,
             **work,
             "dataset": info.to_dict(), "class_weights": class_weights}
    return RunInputs(train_source, eval_source, info, class_weights, precisions, global_batch,
                     facts)


def _optimization_facts(config: TrainConfig) -> dict:
    optimization = config.optimization
    return {"learning_rate": optimization.learning_rate,
            "backbone_learning_rate": (optimization.backbone_learning_rate
                                       if config.model.trainable_layers else None)}


def _tokenized(config: TrainConfig, dataset: TextDataset, preprocessor) -> tuple:
    """`(train tokens, eval tokens, the dataset as learned)`: a regression run's info
    gains its target's scale, measured on the training split."""
    data_config, info = config.data, dataset.info
    logging.info(f"Tokenizing {data_config.train_split} and {data_config.eval_split} of "
                 f"{data_config.train_file or info.name} "
                 f"(sequence length {config.model.sequence_length})...")
    separate = FeatureSpec.of(config.model).separate_pairs
    train_tokens = tokenize_split(dataset, data_config.train_split, preprocessor,
                                  labelled="--train_split", separate_pairs=separate)
    eval_tokens = tokenize_split(dataset, data_config.eval_split, preprocessor,
                                 labelled="--eval_split", separate_pairs=separate)
    if info.target.standardized:  # the head learns the standardized number
        info = dataclasses.replace(info, target_scale=dataclasses.asdict(
            targets.TargetScale.of(train_tokens["label"])))
    return train_tokens, eval_tokens, info


def _describe_optimization(config: TrainConfig) -> str:
    optimization = config.optimization
    text = f"learning rate {optimization.learning_rate:g}"
    if config.model.trainable_layers:
        text += f" (unfrozen layers {optimization.backbone_learning_rate:g})"
    text += f", {optimization.lr_schedule}"
    if optimization.rdrop_alpha:
        text += f"; R-Drop (alpha {optimization.rdrop_alpha:g})"
    if optimization.ema_decay:
        text += f"; evaluated with a weight average (EMA decay {optimization.ema_decay:g})"
    return text
