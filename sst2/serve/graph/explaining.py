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
    >>> trained = restore(trained_dir)
    >>> explain = make_explain_fn(trained.preprocessor, trained.backbone, trained.head,
    ...                           trained.spec)
    >>> out = explain(tf.constant(["a gripping film", ""]))
    >>> out["words"].numpy()[0].tolist(), out["word_attributions"].shape
    ([b'a', b'gripping', b'film'], TensorShape([2, 3]))
    >>> sorted(set(out) - {"probabilities", "label_id", "label"})
    ['token_attributions', 'token_words', 'tokens', 'word_attributions', 'words']
"""

import tensorflow as tf

from sst2.model import target_math
from sst2.model.backbone import FeatureSpec, frozen_features
from sst2.model.inference import FastEncoder
from sst2.run import targets
from sst2.run.command_config import ExplainConfig, ReadingConfig
from sst2.serve.graph import answers as answering
from sst2.serve.graph.packing import (
    pack,
    pack_pair,
    window_positions,
    window_size,
    window_stride,
)
from sst2.serve.graph.words import by_word_and_token, words_and_tokens
from sst2.text.dataset_info import SST2_INFO, DatasetInfo

UNREAD = -1  # the source of a [CLS], [SEP] or padding position: no token of the text
# Row positions explained at once: a row's gradient keeps every layer's activations
# (about 60 MB for 128 tokens), so a large request is explained in chunks of rows.
TOKENS_AT_ONCE = 2048


def _ranges(starts, lengths) -> tf.RaggedTensor:
    return tf.ragged.range(starts, starts + lengths)


def make_explain_fn(preprocessor, backbone, head, spec: FeatureSpec,
                    reading: ReadingConfig = ReadingConfig(), dataset: DatasetInfo = SST2_INFO,
                    temperature: float | None = None, explaining: ExplainConfig = ExplainConfig(),
                    encoder: FastEncoder | None = None, tokens_at_once: int = TOKENS_AT_ONCE):
    """The `explain` signature's computation, as a Python function of a batch of strings
    (two, for a `dataset` of sentence pairs): `Explainer.explain`.

    Args:
        preprocessor, backbone, head: the run's model.
        spec: its features (`FeatureSpec`).
        reading: how long texts are read (windows).
        dataset: what the run learned (its target, labels, pairs).
        temperature: the calibration folded into the answers, if any.
        explaining: the steps of integrated gradients (`explain_steps`).
        encoder: the fused forward pass to run (its weights shared with the export's
            other signature); by default one of its own.
        tokens_at_once: about how many token positions one chunk explains.
    """
    return Explainer(preprocessor, backbone, head, spec, reading, dataset, temperature,
                     explaining.explain_steps, encoder or FastEncoder(backbone),
                     tokens_at_once).explain


class Explainer:
    """Integrated gradients of a served model's answers (see the module)."""

    def __init__(self, preprocessor, backbone, head, spec: FeatureSpec, reading: ReadingConfig,
                 dataset: DatasetInfo, temperature: float | None, steps: int,
                 encoder: FastEncoder, tokens_at_once: int = TOKENS_AT_ONCE):
        self.tokenizer, self.sequence_length = (preprocessor.tokenizer,
                                                preprocessor.sequence_length)
        self.window = window_size(self.sequence_length, reading.window_tokens)
        self.stride = window_stride(self.window, reading.window_overlap)
        self.max_windows, self.steps, self.tokens_at_once = (reading.max_windows, steps,
                                                             tokens_at_once)
        self.head, self.spec, self.encoder = head, spec, encoder
        self.frozen = spec.frozen_layers(backbone.num_layers) if spec.token_level else None
        self.special = (self.tokenizer.cls_token_id, self.tokenizer.sep_token_id,
                        self.tokenizer.pad_token_id)
        self.vocabulary = tf.constant(self.tokenizer.get_vocabulary())
        self.dataset, self.target, self.temperature = dataset, dataset.target, temperature
        self.scale = targets.TargetScale.from_record(dataset.target_scale)

    def explain(self, text, text_pair=None) -> dict:
        """The answer (`sst2.serve.graph.answers.answer`'s) and `words` (string `[batch, words]`,
        padded with ""), `tokens` (`[batch, tokens]`), `token_words` (each token's word,
        -1 for padding) and their attributions `word_attributions` and
        `token_attributions` (float32 `[batch, n]`; a multi-label model's `[batch,
        labels, n]`, 0 for a label not predicted). A pair's words and tokens are its
        first text's, then its second's; `first_words` says how many are the first's."""
        text = tf.reshape(tf.convert_to_tensor(text, tf.string), [-1])
        words, token_ids, word_of_token = words_and_tokens(self.tokenizer, text)
        second_ids = None
        if text_pair is not None:
            text_pair = tf.reshape(tf.convert_to_tensor(text_pair, tf.string), [-1])
            tf.debugging.assert_equal(tf.shape(text), tf.shape(text_pair), message=(
                "text and text_pair must hold as many strings"))
            second_words, second_ids, second_word_of_token = words_and_tokens(
                self.tokenizer, text_pair)
            first_words = tf.cast(words.row_lengths(), tf.int32)
            word_of_token = tf.concat(
                [word_of_token, second_word_of_token + first_words[:, None]], axis=1)
            words = tf.concat([words, second_words], axis=1)
        ids, mask, source, text_index = self.rows(token_ids, second_ids)
        all_tokens = (token_ids if second_ids is None
                      else tf.concat([token_ids, second_ids], axis=1))
        answers, attributions = self.integrated_gradients(
            self.encoder.embed(ids), mask, source, text_index, tf.shape(text)[0],
            tf.size(all_tokens.flat_values))
        result = dict(answers)
        result.update(by_word_and_token(attributions, all_tokens, word_of_token, words,
                                         self.vocabulary, self.target.explains_each_label))
        if text_pair is not None:
            result["first_words"] = first_words
        return result

    def rows(self, token_ids, second_ids=None) -> tuple:
        """The encoder's rows: ids, mask, each position's source (its token's index in
        the batch's tokens, first texts' then second texts' per text) and each row's
        text, the rows of a text together: its windows; a pair's one row, or two
        (first text, second text) for a head of pairs encoded apart."""
        length, special = self.sequence_length, self.special
        if second_ids is None:
            positions, text_index = window_positions(token_ids, self.window, self.stride,
                                                     self.max_windows)
            ids, mask = pack(tf.gather(token_ids.flat_values, positions), length, *special)
            source, _ = pack(positions, length, UNREAD, UNREAD, UNREAD)
            return ids, mask, source, text_index
        first_length = tf.cast(token_ids.row_lengths(), tf.int32)
        starts = tf.cast(token_ids.row_starts(), tf.int32) + tf.cast(
            second_ids.row_starts(), tf.int32)
        first = _ranges(starts, first_length)
        second = _ranges(starts + first_length, tf.cast(second_ids.row_lengths(), tf.int32))
        texts = tf.range(token_ids.nrows(tf.int32))
        if self.spec.separate_pairs:
            ids, mask = pack(tf.stack([token_ids, second_ids], 1).merge_dims(0, 1), length,
                             *special)
            source, _ = pack(tf.stack([first, second], 1).merge_dims(0, 1), length,
                             UNREAD, UNREAD, UNREAD)
            return ids, mask, source, tf.repeat(texts, 2)
        ids, mask = pack_pair(token_ids, second_ids, length, *special)
        source, _ = pack_pair(first, second, length, UNREAD, UNREAD, UNREAD)
        return ids, mask, source, texts

    def outputs(self, embeddings, mask, row_unit, units):
        """The served outputs of `units` texts from their rows' token embeddings
        (`row_unit`: each row's text, among the units)."""
        spec = self.spec
        features = frozen_features(self.encoder.encode_embedded(embeddings, mask, self.frozen),
                                   mask, spec)
        if spec.token_level:
            features = {"tokens": features, "mask": mask}
        if spec.separate_pairs:  # a pair's rows: its first text's, then its second's
            features = {part: tf.nest.map_structure(lambda x: x[start::2], features)
                        for part, start in (("first", 0), ("second", 1))}
        logits = tf.cast(self.head(features, training=False), tf.float32)
        outputs = target_math.outputs(self.target, logits, self.scale)
        if not spec.separate_pairs:  # a text's answer: the mean of its windows'
            outputs = tf.math.unsorted_segment_mean(outputs, row_unit, units)
        return answering.served(self.target, outputs, self.temperature)

    def answer(self, outputs) -> dict:
        return answering.decided(self.dataset, outputs, getattr(self.head, "thresholds", None))

    def integrated_gradients(self, embeddings, mask, source, text_index, batch, num_tokens):
        """The answers, and each token's attribution per explained column
        (`[num_tokens, columns]`). A unit is a (text, column) pair, its rows the text's;
        units are explained about `tokens_at_once` row positions at a time, whatever the
        request's size."""
        target = self.target
        if target.explains_each_label:  # a text's rows once per label it got
            answers = self.answer(self.outputs(embeddings, mask, text_index, batch))
            columns = answering.explained_columns(target, answers)
        else:  # one column; the answer is the first step's, at the input itself
            answers, columns = None, tf.ones([batch, 1], tf.bool)
        units = tf.cast(tf.where(columns), tf.int32)
        unit_rows = tf.gather(tf.RaggedTensor.from_value_rowids(
            tf.range(tf.shape(text_index)[0]), text_index, nrows=batch), units[:, 0])
        # Consecutive units in chunks of about `tokens_at_once` positions (a unit is never
        # split): rows are as wide as the request's longest.
        rows_at_once = tf.maximum(1, self.tokens_at_once // tf.shape(mask)[1])
        first_row = tf.cast(unit_rows.row_starts(), tf.int32) // rows_at_once
        chunk = tf.concat([[0], tf.cumsum(tf.cast(first_row[1:] != first_row[:-1], tf.int32))],
                          0)[:tf.shape(units)[0]]
        chunks = tf.reduce_max(tf.concat([chunk, [-1]], 0)) + 1

        def explain_chunk(k, total, outputs_at_input):
            in_chunk = tf.where(chunk == k)[:, 0]
            rows = tf.gather(unit_rows, in_chunk)
            row_unit = tf.cast(rows.value_rowids(), tf.int32)
            x, row_mask, row_source = (tf.gather(t, rows.flat_values)
                                       for t in (embeddings, mask, source))
            unit_column = tf.gather(units[:, 1], in_chunk)
            chunk_answers = None if answers is None else tf.nest.map_structure(
                lambda a: tf.gather(a, tf.gather(units[:, 0], in_chunk)), answers)
            per_position, outputs = self._chunk(x, row_mask, row_source, row_unit,
                                                tf.size(in_chunk), unit_column, chunk_answers)
            total += _per_token(per_position, row_source, tf.gather(unit_column, row_unit),
                                tf.shape(columns)[1], num_tokens)
            return k + 1, total, outputs_at_input.write(k, outputs)

        # Sized up front: TF 2.12's runtime drops a growing list's attribute (packing.py).
        # One chunk at a time: chunks run side by side would hold their memory together.
        _, total, outputs_at_input = tf.while_loop(
            lambda k, *_: k < chunks, explain_chunk,
            [0, tf.zeros([num_tokens, tf.shape(columns)[1]]),
             tf.TensorArray(tf.float32, size=chunks, infer_shape=False)],
            parallel_iterations=1)
        if answers is None:  # each text's answer, from its chunk's first step
            answers = self.answer(tf.cond(
                chunks > 0, outputs_at_input.concat,
                lambda: self.outputs(embeddings[:0], mask[:0], text_index[:0], 0)))
        return answers, total

    def _chunk(self, x, mask, source, row_unit, units, unit_column, answers):
        """One chunk's integrated gradients: each row position's attribution toward its
        unit's column, and the units' outputs at the input (its `answers`: theirs, or
        None to take them from those outputs)."""
        baseline = tf.where((source >= 0)[..., None], self.encoder.embed(self.special[2]), x)
        total, at_input = tf.zeros_like(x), None
        for step in range(self.steps, 0, -1):  # the input first
            point = (x if step == self.steps
                     else baseline + (step / self.steps) * (x - baseline))
            with tf.GradientTape() as tape:
                tape.watch(point)
                outputs = self.outputs(point, mask, row_unit, units)
                if at_input is None:
                    at_input = outputs
                    answers = answers if answers is not None else self.answer(outputs)
                explained = tf.reduce_sum(tf.gather(answering.explained(self.target, outputs,
                                                                        answers),
                                                    unit_column, batch_dims=1))
            total += tape.gradient(explained, point)
        return tf.reduce_sum(total / self.steps * (x - baseline), axis=-1), at_input


def _per_token(per_position, source, row_column, num_columns, num_tokens):
    """Positions' attributions summed into their tokens', per column: a token read by
    several windows gets the sum of its positions'. `[num_tokens, num_columns]`."""
    read = tf.where(source >= 0)  # (row, position) of every token read
    slot = (tf.gather(row_column, read[:, 0]) * num_tokens + tf.gather_nd(source, read))
    summed = tf.math.unsorted_segment_sum(tf.gather_nd(per_position, read), slot,
                                          num_columns * num_tokens)
    return tf.transpose(tf.reshape(summed, [num_columns, num_tokens]))
