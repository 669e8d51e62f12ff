"""Why the model said it: word attributions by integrated gradients, in the export's graph.

`make_explain_fn` is the computation of the export's `explain` signature. For
each text it returns the answer `serving_default` gives (computed again, on the
same windows), the text's whitespace-separated words and WordPiece tokens, and
how much each moved what the target explains (`Target.explained`): the
probability of the class the text got; for a multi-label model each predicted
label's probability; for a regression model the score.

The method is integrated gradients (Sundararajan et al., 2017) over the token
embeddings, through the frozen encoder and the head: from a baseline where
each of the text's tokens is `[PAD]`'s embedding (`[CLS]`, `[SEP]` and the
positions kept) to the text, in `steps` points of a right Riemann sum. One
step is gradient x (input - baseline); more steps bring a token's
attributions closer to summing to the answer's change from the baseline
(completeness). docs/measurements.md compares steps, occlusion and their costs.
A word's attribution is the sum of its tokens'; a token no window reads
(past `max_windows`, or cut from a long pair) has 0. A text longer than one
window is explained through the mean of its windows, as it is answered.

Example:
    >>> from sst2.serve.trained import restore
    >>> trained = restore(trained_dir, log=lambda message: None)
    >>> explain = make_explain_fn(trained.preprocessor, trained.backbone, trained.head,
    ...                           trained.spec)
    >>> out = explain(tf.constant(["a gripping film", ""]))
    >>> out["words"].numpy()[0].tolist(), out["word_attributions"].shape
    ([b'a', b'gripping', b'film'], TensorShape([2, 3]))
    >>> sorted(set(out) - {"probabilities", "label_id", "label"})
    ['token_attributions', 'token_words', 'tokens', 'word_attributions', 'words']
"""

import tensorflow as tf

from sst2.model.backbone import FeatureSpec, frozen_features
from sst2.model.inference import FastEncoder
from sst2.run import targets
from sst2.run.config import ExplainConfig, ReadingConfig
from sst2.serve.packing import (
    as_ragged,
    pack,
    pack_pair,
    window_positions,
    window_size,
    window_stride,
)
from sst2.text.datasets import SST2_INFO, DatasetInfo

UNREAD = -1  # the source of a [CLS], [SEP] or padding position: no token of the text


def words_and_tokens(tokenizer, text) -> tuple[tf.RaggedTensor, tf.RaggedTensor,
                                               tf.RaggedTensor]:
    """Each text's words (split at ASCII whitespace), its token ids, and each token's word.

    Each word is tokenized alone; the tokenizer splits at ASCII whitespace itself, so
    the tokens are the text's own (`tests/serve/test_explaining.py` checks it). A
    no-break or ideographic space separates no words: the tokenizer does not split
    there either, so one token may span it.
    Bytes that are not UTF-8 are replaced by U+FFFD first, as `serving_default` does.
    """
    text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace",
                                        replacement_char=0xFFFD)
    words = tf.strings.split(text)
    pieces = tf.cast(as_ragged(tokenizer(words.flat_values)), tf.int32)
    # The pieces of a text's words, one row per text.
    token_ids = tf.RaggedTensor.from_row_splits(
        pieces.flat_values, tf.gather(pieces.row_splits, words.row_splits))
    word_of_token = token_ids.with_flat_values(
        tf.cast(pieces.value_rowids(), tf.int32)
        - tf.gather(tf.cast(words.row_splits, tf.int32), token_ids.value_rowids()))
    return words, token_ids, word_of_token


def _ranges(starts, lengths) -> tf.RaggedTensor:
    return tf.ragged.range(starts, starts + lengths)


def make_explain_fn(preprocessor, backbone, head, spec: FeatureSpec,
                    reading: ReadingConfig = ReadingConfig(), dataset: DatasetInfo = SST2_INFO,
                    temperature: float | None = None, explaining: ExplainConfig = ExplainConfig(),
                    encoder: FastEncoder | None = None):
    """The `explain` signature's computation, as a Python function of a batch of strings
    (two, for a `dataset` of sentence pairs). Returns the answer (the target's
    `export_answer`) and `words` (string `[batch, words]`, padded with ""), `tokens`
    (`[batch, tokens]`), `token_words` (each token's word, -1 for padding) and their
    attributions `word_attributions` and `token_attributions` (float32 `[batch, n]`; a
    multi-label model's `[batch, labels, n]`, 0 for a label not predicted). A pair's
    words and tokens are its first text's, then its second's; `first_words` says how
    many words are the first text's. `encoder`: the fused forward pass to run (its
    weights shared with the export's other signature); by default one of its own.
    """
    tokenizer, sequence_length = preprocessor.tokenizer, preprocessor.sequence_length
    window = window_size(sequence_length, reading.window_tokens)
    stride = window_stride(window, reading.window_overlap)
    encoder = encoder or FastEncoder(backbone)
    frozen = spec.frozen_layers(backbone.num_layers) if spec.token_level else None
    special = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)
    vocabulary = tf.constant(tokenizer.get_vocabulary())
    target = dataset.target
    scale = targets.TargetScale.from_record(dataset.target_scale)
    thresholds = getattr(head, "thresholds", None)

    def rows_of(token_ids, second_ids=None):
        """The encoder's rows: ids, mask, each position's source (its token's index in
        the batch's tokens, first texts' then second texts' per text) and each row's
        text, rows of one text together."""
        if second_ids is None:
            positions, text_index = window_positions(token_ids, window, stride,
                                                     reading.max_windows)
            ids, mask = pack(tf.gather(token_ids.flat_values, positions), sequence_length,
                             *special)
            source, _ = pack(positions, sequence_length, UNREAD, UNREAD, UNREAD)
            return ids, mask, source, text_index
        first_length = tf.cast(token_ids.row_lengths(), tf.int32)
        starts = tf.cast(token_ids.row_starts(), tf.int32) + tf.cast(
            second_ids.row_starts(), tf.int32)
        first = _ranges(starts, first_length)
        second = _ranges(starts + first_length, tf.cast(second_ids.row_lengths(), tf.int32))
        if spec.separate_pairs:  # each text alone, a pair's two rows one after the other
            ids, mask = pack(tf.stack([token_ids, second_ids], 1).merge_dims(0, 1),
                             sequence_length, *special)
            source, _ = pack(tf.stack([first, second], 1).merge_dims(0, 1), sequence_length,
                             UNREAD, UNREAD, UNREAD)
            return ids, mask, source, tf.repeat(tf.range(token_ids.nrows(tf.int32)), 2)
        ids, mask = pack_pair(token_ids, second_ids, sequence_length, *special)
        source, _ = pack_pair(first, second, sequence_length, UNREAD, UNREAD, UNREAD)
        return ids, mask, source, tf.range(token_ids.nrows(tf.int32))

    def outputs_of(embeddings, mask, row_unit, units):
        """The served outputs of `units` texts from their rows' token embeddings."""
        features = frozen_features(encoder.encode_embedded(embeddings, mask, frozen), mask,
                                   spec)
        if spec.token_level:
            features = {"tokens": features, "mask": mask}
        if spec.separate_pairs:  # a pair's rows: its first text's, then its second's
            features = {part: tf.nest.map_structure(lambda x: x[start::2], features)
                        for part, start in (("first", 0), ("second", 1))}
        logits = tf.cast(head(features, training=False), tf.float32)
        outputs = target.outputs(logits, scale=scale)
        if not spec.separate_pairs:  # a text's answer: the mean of its windows'
            outputs = tf.math.unsorted_segment_mean(outputs, row_unit, units)
        return target.served(outputs, temperature)

    def explain(text, text_pair=None):
        text = tf.reshape(tf.convert_to_tensor(text, tf.string), [-1])
        batch = tf.shape(text)[0]
        words, token_ids, word_of_token = words_and_tokens(tokenizer, text)
        second_ids = None
        if text_pair is not None:
            text_pair = tf.reshape(tf.convert_to_tensor(text_pair, tf.string), [-1])
            tf.debugging.assert_equal(tf.shape(text), tf.shape(text_pair), message=(
                "text and text_pair must hold as many strings"))
            second_words, second_ids, second_word_of_token = words_and_tokens(
                tokenizer, text_pair)
            first_words = tf.cast(words.row_lengths(), tf.int32)
            word_of_token = tf.concat(
                [word_of_token, second_word_of_token + first_words[:, None]], axis=1)
            words = tf.concat([words, second_words], axis=1)
        ids, mask, source, text_index = rows_of(token_ids, second_ids)
        all_tokens = (token_ids if second_ids is None
                      else tf.concat([token_ids, second_ids], axis=1))
        answers, attributions = integrated_gradients(
            encoder.embed(ids), mask, source, text_index, batch,
            tf.size(all_tokens.flat_values))
        result = dict(answers)
        result.update(_by_word_and_token(attributions, all_tokens, word_of_token, words,
                                         vocabulary, target.explains_each_label))
        if text_pair is not None:
            result["first_words"] = first_words
        return result

    def answer_of(outputs) -> dict:
        return target.export_answer(outputs, dataset.label_names, dataset.label_separator,
                                    thresholds)

    def integrated_gradients(embeddings, mask, source, text_index, batch, num_tokens):
        """The answers, and each token's attribution per explained column
        (`[num_tokens, columns]`): a unit is a (text, column) pair, its rows the text's."""
        if target.explains_each_label:  # a text's rows once per label it got
            answers = answer_of(outputs_of(embeddings, mask, text_index, batch))
            columns = target.explained_columns(answers)
        else:  # one column; the answer is the first step's, at the input itself
            answers, columns = None, tf.ones([batch, 1], tf.bool)
        units = tf.cast(tf.where(columns), tf.int32)
        unit_text, unit_column = units[:, 0], units[:, 1]
        # Each unit's rows: the rows of its text, in order.
        rows_by_text = tf.RaggedTensor.from_value_rowids(
            tf.range(tf.shape(text_index)[0]), text_index, nrows=batch)
        unit_rows = tf.gather(rows_by_text, unit_text)
        rows, row_unit = unit_rows.flat_values, tf.cast(unit_rows.value_rowids(), tf.int32)
        x, mask, source = (tf.gather(t, rows) for t in (embeddings, mask, source))
        baseline = tf.where((source >= 0)[..., None], encoder.embed(special[2]), x)
        total, steps = tf.zeros_like(x), explaining.explain_steps
        for step in range(steps, 0, -1):  # the input first
            point = x if step == steps else baseline + (step / steps) * (x - baseline)
            with tf.GradientTape() as tape:
                tape.watch(point)
                outputs = outputs_of(point, mask, row_unit, tf.shape(units)[0])
                if answers is None:  # the units are the texts, in order
                    answers = answer_of(outputs)
                unit_answers = tf.nest.map_structure(lambda a: tf.gather(a, unit_text),
                                                     answers)
                explained = tf.reduce_sum(tf.gather(target.explained(outputs, unit_answers),
                                                    unit_column, batch_dims=1))
            total += tape.gradient(explained, point)
        per_position = tf.reduce_sum(total / steps * (x - baseline), axis=-1)
        read = tf.where(source >= 0)  # (row, position) of every token read
        num_columns = tf.shape(columns)[1]
        column = tf.gather(unit_column, tf.gather(row_unit, read[:, 0]))
        slot = column * num_tokens + tf.gather_nd(source, read)
        summed = tf.math.unsorted_segment_sum(tf.gather_nd(per_position, read), slot,
                                              num_columns * num_tokens)
        return answers, tf.transpose(tf.reshape(summed, [num_columns, num_tokens]))

    return explain


def _by_word_and_token(attributions, all_tokens, word_of_token, words, vocabulary,
                       each_label: bool) -> dict:
    """The signature's words, tokens and their attributions, padded dense tensors."""
    token_attributions = all_tokens.with_flat_values(attributions)  # [batch, (tokens), E]
    word_slot = word_of_token.flat_values + tf.gather(
        tf.cast(words.row_splits, tf.int32), word_of_token.value_rowids())
    word_attributions = words.with_flat_values(tf.math.unsorted_segment_sum(
        attributions, word_slot, tf.size(words.flat_values)))

    def per_label(ragged):  # [batch, n, E] -> [batch, E, n], or [batch, n] for one column
        dense = tf.transpose(ragged.to_tensor(), [0, 2, 1])
        return dense if each_label else dense[:, 0]

    return {"words": words.to_tensor(""),
            "word_attributions": per_label(word_attributions),
            "tokens": tf.gather(vocabulary, all_tokens).to_tensor(""),
            "token_words": word_of_token.to_tensor(-1),
            "token_attributions": per_label(token_attributions)}
