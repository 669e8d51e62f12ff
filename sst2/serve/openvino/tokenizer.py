"""The run's WordPiece tokenizer as an OpenVINO graph: strings in, `[CLS] ... [SEP]` ids out.

It repeats keras-hub's `WordPieceTokenizer` (as `DistilBertTokenizer` sets
it: lower-cased, accents kept, split on whitespace, punctuation and CJK
characters) with openvino-tokenizers' operations, so that an OpenVINO
artifact takes raw strings as the SavedModel does. keras-hub case-folds each
word after splitting (ICU's NFKC_Casefold); here each word is NFKC-normalized,
case-folded and `ß` spelled `ss`, and the default-ignorable marks NFKC_Casefold
drops (variation selectors) are removed before splitting. The ids equal
keras-hub's on every text of SST-2, GoEmotions and STS-B (docs/measurements.md).

Texts longer than the sequence length are cut (a pair: as the SavedModel cuts it),
where the SavedModel reads a long single text in windows.

Example:
    >>> vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "film", "##s", "!"]
    >>> model = ov.Core().compile_model(tokenizer_model(vocabulary, 6, {"cls": 2, "sep": 3,
    ...                                                                  "pad": 0}))
    >>> out = model([ov.Tensor(np.array(["A films!", "film"]))])
    >>> out["token_ids"].tolist(), out["padding_mask"].tolist()
    ([[2, 4, 5, 6, 7, 3], [2, 5, 3, 0, 0, 0]], [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
"""

import numpy as np
import openvino as ov
import openvino.opset14 as ops
import openvino_tokenizers  # noqa: F401  (registers the tokenizer operations)
from openvino import PartialShape, Type
from openvino_tokenizers import _get_factory, _get_opset_factory
from openvino_tokenizers.tokenizer_pipeline import (
    CaseFoldStep,
    NormalizeUnicode,
    RegexNormalizationStep,
    RegexSplitStep,
    TokenizerPipeline,
    WordPieceTokenizationStep,
)

# keras-hub's split patterns (keras_hub/src/tokenizers/word_piece_tokenizer.py).
CJK = "|".join((r"[\x{4E00}-\x{9FFF}]", r"[\x{3400}-\x{4DBF}]", r"[\x{20000}-\x{2A6DF}]",
                r"[\x{2A700}-\x{2B73F}]", r"[\x{2B740}-\x{2B81F}]", r"[\x{2B820}-\x{2CEAF}]",
                r"[\x{F900}-\x{FAFF}]", r"[\x{2F800}-\x{2FA1F}]"))
PUNCTUATION = "|".join((r"[!-/]", r"[:-@]", r"[\[-`]", r"[{-~]", r"[\p{P}]"))
WHITESPACE = "|".join((r"\s", r"\p{Cc}", r"\p{Cf}"))
# Default-ignorable code points that are not format characters (those split words).
IGNORABLE = (r"[\x{034F}\x{115F}\x{1160}\x{17B4}\x{17B5}\x{180B}-\x{180D}\x{180F}\x{3164}"
             r"\x{FE00}-\x{FE0F}\x{FFA0}\x{E0100}-\x{E01EF}]")


def _words(text: ov.Output) -> list:
    """A batch of strings as ragged words: `[row begins, row ends, word begins, word ends,
    bytes, skips]`, each word normalized as keras-hub's case folding leaves it."""
    node = _get_opset_factory("opset15").create("StringTensorUnpack", [text]).outputs()
    for step in (RegexNormalizationStep(f"({CJK})", " $1 "),
                 RegexNormalizationStep(IGNORABLE, "")):
        node = step.get_ov_subgraph(node)
    node = TokenizerPipeline.add_ragged_dimension(node)
    # Every RegexSplit is given its skip flags: without them a second split reads past
    # the end of a buffer it sizes by rows (openvino-tokenizers 2026.4).
    node = node + [ops.broadcast(ops.constant(False, Type.boolean),
                                 ops.shape_of(node[2])).output(0)]
    for step in (RegexSplitStep(WHITESPACE, behaviour="remove"),
                 RegexSplitStep(f"{PUNCTUATION}|{CJK}", behaviour="isolate")):
        node = step.get_ov_subgraph(node)
    words = node[2:5]
    for step in (NormalizeUnicode("NFKC"), CaseFoldStep(), RegexNormalizationStep("ß|ẞ", "ss")):
        words = step.get_ov_subgraph(list(words))
    return node[:2] + list(words)


def _cut(segments: list, budget: int) -> list:
    """Ragged segments (`[begins, ends, ids]`) cut to `budget` tokens per row, as the
    SavedModel's `trim_pair` (TF Text's round robin) cuts them: a pair's longer text
    loses tokens first, the first text keeping the odd one."""
    def length(segment):
        return ops.subtract(segment[1], segment[0])

    if len(segments) == 1:
        kept = [ops.minimum(length(segments[0]), ops.constant(np.int32(budget)))]
    else:
        first, second = length(segments[0]), length(segments[1])
        half = ops.constant(np.int32(-(-budget // 2)))
        kept_first = ops.minimum(first, ops.maximum(half, ops.subtract(
            ops.constant(np.int32(budget)), second)))
        kept = [kept_first, ops.minimum(second, ops.subtract(ops.constant(np.int32(budget)),
                                                              kept_first))]
    return [[segment[0], ops.add(segment[0], keep).output(0), segment[2]]
            for segment, keep in zip(segments, kept)]


def tokenizer_outputs(texts: list, vocabulary: list, sequence_length: int, special: dict) -> list:
    """`[token_ids, padding_mask]` (int32 `[batch, longest]`) of one or two string inputs
    (a pair packed as `[CLS] text [SEP] text_pair [SEP]`), cut to `sequence_length`; for
    one input, then `cut` (bool `[batch]`): which texts had more tokens than were kept,
    where the SavedModel would have read on in windows. `special`: the ids of `cls`,
    `sep` and `pad`."""
    wordpiece = WordPieceTokenizationStep(vocab=list(vocabulary), unk_token="[UNK]",
                                          suffix_indicator="##", max_bytes_per_word=100)
    whole = [wordpiece.get_ov_subgraph(_words(text)) for text in texts]
    budget = sequence_length - len(texts) - 1
    ragged = _cut(whole, budget)
    cut = ([ops.greater(ops.subtract(whole[0][1], whole[0][0]),
                        ops.constant(np.int32(budget))).output(0)] if len(texts) == 1 else [])
    def token(token_id):
        return [ops.constant(np.int32(0)).output(0), ops.constant(np.int32(1)).output(0),
                ops.constant(np.array([token_id], np.int32)).output(0)]

    combined = token(special["cls"])
    for i in range(len(texts)):
        combined += ragged[i] + token(special["sep"])
    segment_ids = [0] * (2 * len(texts) + 1)
    combined = _get_factory().create(
        "CombineSegments", combined + [ops.constant(np.array(segment_ids, np.int32)).output(0)]
    ).outputs()
    longest = ops.reduce_max(ops.subtract(combined[1], combined[0]), ops.constant(0))
    token_ids, mask = _get_factory().create(
        "RaggedToDense", combined[:3] + [longest.output(0),
                                         ops.constant(np.int32(special["pad"])).output(0)],
        {"pad_right": True, "pad_max_length": False}).outputs()
    return [token_ids, ops.convert(mask, "i32").output(0)] + cut


def tokenizer_model(vocabulary: list, sequence_length: int, special: dict,
                    inputs: tuple = ("text",)) -> ov.Model:
    """The tokenizer alone as a model: string inputs named `inputs`, outputs
    `token_ids`, `padding_mask` and, for one input, `cut` (`tokenizer_outputs`)."""
    texts = []
    for name in inputs:
        parameter = ops.parameter(PartialShape([-1]), Type.string, name=name)
        parameter.output(0).set_names({name})
        texts.append(parameter)
    outputs = tokenizer_outputs([t.output(0) for t in texts], vocabulary, sequence_length,
                                special)
    for output, name in zip(outputs, ("token_ids", "padding_mask", "cut")):
        output.set_names({name})
    return ov.Model(outputs, texts, "tokenizer")
