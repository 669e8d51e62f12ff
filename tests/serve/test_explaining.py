"""Word attributions (`sst2.serve.graph.explaining`): the words and tokens they name, their
completeness against the model itself for every kind of target and pairs, the export's
`explain` signature, `sst2.predict --explain` and its errors."""

import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import REPO, run_module

ASCII_WHITESPACE = "[ \t\n\v\f\r]+"  # where words end (Python's split: Unicode's too)
HOSTILE = ["", "   ", "tab\tand\vvertical\x0cfeed", "no\u00a0break and\u3000wide space",
           "line\u2028separator\x1cfile\x85next \u200bzero-width",
           "ÉCOLE straße ﬁne", "emoji 🙂️ and 漢字", "don't-stop...now!!", "x" * 80,
           "a\r\nwindows line"]


def _texts() -> list[str]:
    texts = list(HOSTILE)
    for name in ("goemotions/dev.tsv", "stsb/dev.tsv"):
        with open(os.path.join(REPO, "tests", "data", name), encoding="utf-8") as f:
            texts += [line.split("\t")[0] for line in list(f)[1:40]]
    return texts


def test_words_tokenized_alone_give_the_texts_own_tokens(tiny_preset):
    from sst2.model import presets
    from sst2.serve.graph.words import words_and_tokens

    tokenizer = presets.load_preprocessor(tiny_preset, 16).tokenizer
    texts = _texts()
    words, token_ids, word_of_token = words_and_tokens(tokenizer, tf.constant(texts))
    whole = tokenizer(tf.constant(texts))
    assert token_ids.to_list() == [[int(i) for i in row] for row in whole]
    assert [[w.decode() for w in row] for row in words.to_list()] == [
        [w for w in re.split(ASCII_WHITESPACE, t) if w] for t in texts]
    for row, text in zip(word_of_token.to_list(), texts):  # every word's tokens, in order
        assert row == sorted(row) and set(row) <= set(range(len(text.split())))


def _baseline_output(trained, first: list, second: list | None):
    """The served output of texts whose every token is [PAD] (the attribution's
    baseline), computed here from the packing functions and the model's layers."""
    from sst2.model import target_math
    from sst2.model.backbone import frozen_features
    from sst2.model.inference import FastEncoder
    from sst2.run.targets import TargetScale
    from sst2.serve.graph import answers as answering
    from sst2.serve.graph.packing import pack, pack_pair, split_windows

    tokenizer, length = trained.preprocessor.tokenizer, trained.preprocessor.sequence_length
    special = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)

    def as_pad(texts):
        ids = tf.ragged.constant([[int(i) for i in row] for row in tokenizer(tf.constant(texts))],
                                 dtype=tf.int32, ragged_rank=1)
        return tf.ragged.map_flat_values(lambda v: tf.fill(tf.shape(v), special[2]), ids)

    encoder, spec = FastEncoder(trained.backbone), trained.spec

    def features(ids, mask):
        found = frozen_features(encoder(ids, mask), mask, spec)
        return {"tokens": found, "mask": mask} if spec.token_level else found

    target = trained.dataset.target
    scale = TargetScale.from_record(trained.dataset.target_scale)
    if second is None:
        windows, text_index = split_windows(as_pad(first), length - 2, (length - 2) // 2, 8)
        outputs = target_math.outputs(
            target, trained.head(features(*pack(windows, length, *special))), scale)
        outputs = tf.math.unsorted_segment_mean(outputs, text_index, len(first))
    elif spec.separate_pairs:
        head_input = {"first": features(*pack(as_pad(first), length, *special)),
                      "second": features(*pack(as_pad(second), length, *special))}
        outputs = target_math.outputs(target, trained.head(head_input), scale)
    else:
        outputs = target_math.outputs(target, trained.head(features(*pack_pair(
            as_pad(first), as_pad(second), length, *special))), scale)
    return answering.served(target, outputs, trained.temperature).numpy()


FIRST = ["the film is great fun", "dull and tedious", "", "a very weak plot " * 6]
SECOND = ["a great film", "the story is boring", "fun", "charming"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["single_label", "multi_label", "regression",
                                  "regression_separate"])
def test_attributions_sum_to_the_answers_change_from_the_baseline(
        kind, trained_tiny_run, tiny_kind_run):
    """Integrated gradients' completeness, with many steps: for every explained output,
    the tokens' attributions add up to its change from the all-[PAD] baseline. This
    checks the whole chain: windows, pairs, the rows of each label, and the tokens each
    position comes from. Words' attributions are their tokens' sums."""
    from sst2.run.command_config import ExplainConfig
    from sst2.serve.client.loading import explanation_record
    from sst2.serve.graph.explaining import make_explain_fn
    from sst2.serve.graph.serving import make_predict_fn
    from sst2.serve.trained import restore

    trained = restore(trained_tiny_run if kind == "single_label" else tiny_kind_run(kind))
    pairs = trained.dataset.is_pair
    inputs = [FIRST, SECOND] if pairs else [FIRST + ["one", "a long long text " * 5]]
    explain = make_explain_fn(trained.preprocessor, trained.backbone, trained.head,
                              trained.spec, dataset=trained.dataset,
                              temperature=trained.temperature,
                              explaining=ExplainConfig(explain_steps=48))
    out = {k: v.numpy() for k, v in explain(*[tf.constant(x) for x in inputs]).items()}
    predict = make_predict_fn(trained.preprocessor, trained.backbone, trained.head,
                              trained.spec, dataset=trained.dataset,
                              temperature=trained.temperature)
    served = {k: v.numpy() for k, v in predict(*[tf.constant(x) for x in inputs]).items()}
    target = trained.dataset.target
    np.testing.assert_allclose(out[target.answer], served[target.answer], atol=1e-5)
    x = out[target.answer]
    baseline = _baseline_output(trained, inputs[0], inputs[1] if pairs else None)
    tokens, words = out["token_attributions"], out["word_attributions"]
    if kind == "single_label":
        chosen = out["label_id"]
        change = x[np.arange(len(x)), chosen] - baseline[np.arange(len(x)), chosen]
    elif kind == "multi_label":  # each predicted label's own attributions; others 0
        predicted = out["predicted"]
        assert tokens.shape[1] == predicted.shape[1] and not tokens[~predicted].any()
        tokens, words = tokens[predicted], words[predicted]
        change = (x - baseline)[predicted]
    else:
        change = x - baseline
    np.testing.assert_allclose(tokens.sum(-1), change, atol=2e-3 + 0.02 * np.abs(change).max())
    np.testing.assert_allclose(words.sum(-1), tokens.sum(-1), atol=1e-5)
    # Each token's word is the one the text's words say; padding is -1 and attributes 0.
    assert ((out["token_words"] >= 0) == (out["tokens"] != b"")).all()
    if pairs:
        assert out["first_words"].tolist() == [len(t.split()) for t in inputs[0]]
    assert [len([w for w in row if w]) for row in out["words"]] == [
        sum(len(x[i].split()) for x in inputs) for i in range(len(inputs[0]))]
    # What sst2.predict --json prints of it.
    names = list(trained.dataset.label_names)
    for i in range(len(inputs[0])):
        record = explanation_record(out, i, target.explains_each_label, names)
        assert record["words"] == inputs[0][i].split()
        assert record.get("pair_words", []) == (inputs[1][i].split() if pairs else [])
        values = record["word_attributions"]
        if target.explains_each_label:
            assert list(values) == [n for n, p in zip(names, out["predicted"][i]) if p]
            values = next(iter(values.values()), [])
        assert len(values) == len(record["words"])
        assert len(record["token_attributions"] if not target.explains_each_label else next(
            iter(record["token_attributions"].values()), record["tokens"])) == len(
                record["tokens"])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["single_label", "multi_label"])
def test_a_large_request_is_explained_in_chunks_as_small_ones_are(kind, trained_tiny_run,
                                                                  tiny_kind_run):
    """Past `tokens_at_once` row positions a request is explained chunk by chunk
    (memory stays bounded); its answers and attributions are those of small requests."""
    from sst2.serve.graph.explaining import make_explain_fn
    from sst2.serve.trained import restore

    trained = restore(trained_tiny_run if kind == "single_label" else tiny_kind_run(kind))
    # 64 positions: 4 rows of the tiny model's 16 tokens a chunk.
    explain = tf.function(make_explain_fn(trained.preprocessor, trained.backbone, trained.head,
                                          trained.spec, dataset=trained.dataset,
                                          tokens_at_once=64))
    texts = [("a very weak plot " * (i % 7) + "fun " * (i % 3)).strip() for i in range(60)]
    whole = explain(tf.constant(texts))

    for start in range(0, len(texts), 10):
        part = explain(tf.constant(texts[start:start + 10]))
        for name in ("probabilities", "word_attributions", "token_attributions"):
            got, expected = whole[name].numpy()[start:start + 10], part[name].numpy()
            width = expected.shape[-1]
            np.testing.assert_allclose(got[..., :width], expected, atol=1e-6, err_msg=name)
            assert not got[..., width:].any(), name


@pytest.mark.slow
@pytest.mark.precision  # the weights' constants are in the run's precision
def test_the_export_explains_and_predict_prints_words_and_tokens(trained_tiny_run,
                                                                 openvino_tiny_export, tmp_path):
    from sst2.predict import predict_lines, readable_explanation
    from sst2.run.errors import UserError
    from sst2.serve.client.loading import load_explainer
    from sst2.serve.graph import serving_audit
    from sst2.serve.trained import restore

    trained = restore(trained_tiny_run)
    export = trained.export(str(tmp_path / "export"), model_card=False)
    assert serving_audit.unservable_ops(export) == []
    # Both signatures read one copy of the weights (the export is not twice the size).
    floating = {dtype.as_datatype_enum for dtype in (tf.float32, tf.bfloat16, tf.float16)}
    constants = sum(int(np.prod([d.size for d in n.attr["value"].tensor.tensor_shape.dim]))
                    for n in serving_audit.nodes(export)[0] if n.op == "Const"
                    and n.attr["value"].tensor.dtype in floating)  # whatever the precision
    weights = sum(int(np.prod(w.shape)) for w in trained.backbone.weights)
    assert weights <= constants < 1.5 * weights
    texts = ["the film is great fun", "", "dull", "a very weak plot " * 6]
    said = run_module("sst2.predict", f"--export_dir={export}", "--explain", "--json", *texts)
    assert said.returncode == 0, said.stderr[-2000:]
    for line, answer, text in zip(said.stdout.splitlines(), predict_lines(export, texts), texts):
        record = json.loads(line)
        assert record["label"] == answer["label"]
        assert record["probability"] == pytest.approx(answer["probability"], abs=1e-5)
        assert record["words"] == text.split()
        assert len(record["word_attributions"]) == len(record["words"])
        assert len(record["token_attributions"]) == len(record["tokens"])
        assert sum(record["word_attributions"]) == pytest.approx(
            sum(record["token_attributions"]), abs=1e-4)
        shown = readable_explanation(record)  # what a person sees
        assert shown.split() == [f"{w}({a:+.2g})" for w, a in zip(
            record["words"], record["word_attributions"])]

    # Where no explain signature can answer: an OpenVINO artifact; an older export.
    with pytest.raises(UserError, match="answers without gradients"):
        load_explainer(openvino_tiny_export)
    old = tmp_path / "old"

    class Old(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            n = tf.shape(text)[0]
            return {"probabilities": tf.fill([n, 2], 0.5), "label_id": tf.zeros([n], tf.int32),
                    "label": tf.fill([n], "negative")}

    module = Old()
    tf.saved_model.save(module, str(old), signatures={"serving_default": module.serve})
    with pytest.raises(UserError, match="has no explain signature"):
        load_explainer(str(old))
