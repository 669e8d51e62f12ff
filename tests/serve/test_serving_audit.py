"""The serving audit knows the oldest runtime: TF 2.12.1's ops and their attributes."""

import os

import tensorflow as tf

from sst2.serve.graph import packing, serving_audit


def _save(tmp_path, name, function, signature) -> str:
    module = tf.Module()
    module.serve = tf.function(function, input_signature=signature)
    path = str(tmp_path / name)
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def test_the_record_is_tf_2_12_and_its_tokenizer_ops():
    record = serving_audit.serving_ops()
    assert (record["tensorflow"], record["tensorflow_text"]) == ("2.12.1", "2.12.1")
    ops = record["ops"]
    assert ops["TensorListSetItem"] == ["element_dtype"]
    assert "FastWordpieceTokenizeWithOffsets" in ops and "MatMul" in ops
    assert not any("RoundRobinTrim" in op for op in ops)  # keras-hub's packer: not in 2.12


def test_a_growing_tensor_array_is_caught_by_its_attribute(tmp_path):
    # What encode_by_length wrote before: TF 2.21 marks the write `resize_if_index_out_of_bounds`,
    # which TF 2.12 drops, so the list never grows and every request fails there.
    def grow(x):
        parts = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
        _, parts = tf.while_loop(lambda i, _: i < tf.shape(x)[0],
                                 lambda i, p: (i + 1, p.write(i, x[i])), [0, parts])
        return {"y": parts.stack()}

    path = _save(tmp_path, "grow", grow, [tf.TensorSpec([None], tf.float32)])
    assert serving_audit.unservable_ops(path) == [
        "TensorListSetItem.resize_if_index_out_of_bounds"]


def test_an_op_newer_than_the_runtime_is_caught(tmp_path):
    def transform(x):  # FFTND arrived after TF 2.12
        return {"y": tf.raw_ops.FFTND(input=x, fft_length=[4], axes=[0])}

    path = _save(tmp_path, "fftnd", transform, [tf.TensorSpec([4], tf.complex64)])
    assert serving_audit.unservable_ops(path) == ["FFTND"]


def test_encoding_by_length_is_servable_on_the_oldest_runtime(tmp_path):
    def encode(ids):
        mask = tf.cast(ids > 0, tf.int32)
        return {"y": packing.encode_by_length(
            lambda i, m: tf.cast(tf.reduce_sum(i * m, axis=1, keepdims=True), tf.float32),
            ids, mask, (1,), chunk=2)}

    path = _save(tmp_path, "by_length", encode, [tf.TensorSpec([None, None], tf.int32)])
    assert "TensorListSetItem" in serving_audit.op_types(path)
    assert serving_audit.unservable_ops(path) == []
    served = tf.saved_model.load(path).signatures["serving_default"]
    ids = tf.constant([[3, 1, 0], [2, 0, 0], [1, 1, 1]])
    assert served(ids=ids)["y"].numpy().ravel().tolist() == [4, 2, 3]
    assert os.path.exists(os.path.join(path, "saved_model.pb"))
