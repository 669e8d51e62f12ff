"""A text's words and WordPiece tokens, and attributions summed from its tokens to its words.

The `explain` signature (`sst2.serve.graph.explaining`) attributes an answer to
the tokens the encoder read; a user reads words. `words_and_tokens` splits
each text into words and tokenizes each word alone, so every token knows its
word; `by_word_and_token` turns the tokens' attributions into the signature's
padded outputs, a word's being the sum of its tokens'.

Example:
    >>> from sst2.model import presets
    >>> tokenizer = presets.load_preprocessor(preset, 16).tokenizer
    >>> words, token_ids, word_of_token = words_and_tokens(tokenizer,
    ...                                                    tf.constant(["the film is good"]))
    >>> words.to_list(), word_of_token.to_list()
    ([[b'the', b'film', b'is', b'good']], [[0, 1, 2, 3]])
    >>> out = by_word_and_token(tf.constant([[0.25], [0.0], [0.0], [0.5]]), token_ids,
    ...                         word_of_token, words, tf.constant(tokenizer.get_vocabulary()),
    ...                         each_label=False)
    >>> out["word_attributions"].numpy().tolist(), out["tokens"].numpy().tolist()
    ([[0.25, 0.0, 0.0, 0.5]], [[b'the', b'film', b'is', b'good']])
"""

import tensorflow as tf

from sst2.serve.graph.packing import as_ragged


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


def by_word_and_token(attributions, all_tokens, word_of_token, words, vocabulary,
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
