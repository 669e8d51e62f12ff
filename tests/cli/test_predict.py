"""sst2.predict: stdin read in batches that still answer a person typing; foreign models."""

import os
import threading

import pytest
import tensorflow as tf

from sst2 import predict
from sst2.run.errors import UserError


def test_a_pipe_is_read_in_full_batches_and_a_pause_flushes(tmp_path):
    read_fd, write_fd = os.pipe()
    answered = threading.Event()
    flushed_before_more = []

    def writer():
        os.write(write_fd, b"".join(b"line %d\n" % i for i in range(10)))
        # A person pausing: what has arrived must be answered before anything more comes.
        # (Synchronised on the reader's answer, not on time; the bound only ends a hang.)
        flushed_before_more.append(answered.wait(timeout=120))
        os.write(write_fd, b"last one\r\nno newline")
        os.close(write_fd)

    thread = threading.Thread(target=writer)
    thread.start()
    batches = []
    for batch in predict.stdin_batches(read_fd, batch_size=4):
        batches.append(batch)
        if len(batches) == 3:
            answered.set()
    thread.join()
    os.close(read_fd)
    assert [len(b) for b in batches] == [4, 4, 2, 2]
    assert batches[2] == [b"line 8", b"line 9"] and batches[3] == [b"last one", b"no newline"]
    assert flushed_before_more == [True]  # the first 10 lines were answered in the pause


def test_a_foreign_saved_model_is_one_clear_error(tmp_path):
    # Issue 25, case 12: TypeError and KeyError tracebacks.
    module = tf.Module()
    module.f = tf.function(lambda x: {"y": 2 * x},
                           input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    path = str(tmp_path / "foreign")
    tf.saved_model.save(module, path, signatures={"serving_default": module.f})
    with pytest.raises(UserError, match=r"is not an sst2 export: its serving_default takes "
                                        r"\['x'\] and returns \['y'\]"):
        list(predict.predict_lines(path, ["a film"]))
