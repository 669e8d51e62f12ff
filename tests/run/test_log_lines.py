"""sst2's log lines: its own on stdout as users read them, other libraries' INFO records
hidden (tfds and tf.train log every file they touch), a worker kept quiet."""

from absl import logging

from sst2.run import log_lines
from sst2.text.labels import infer_task
from sst2.text.text_files import TextTable


def test_sst2_lines_show_and_other_libraries_info_does_not(said):
    logging.info("a library's INFO record")  # logged from outside sst2 (this test file)
    infer_task(TextTable("t.csv", [("a",)] * 2, ["x", "y"], [2, 3]))
    with log_lines.quiet():
        infer_task(TextTable("u.csv", [("a",)] * 2, ["x", "y"], [2, 3]))
    assert len(said) == 1 and said[0].startswith("Task: single_label (inferred from t.csv"), said


def test_without_show_sst2_is_quiet_as_a_library(capsys):
    log_lines.hide()
    infer_task(TextTable("t.csv", [("a",)] * 2, ["x", "y"], [2, 3]))
    captured = capsys.readouterr()
    assert "Task:" not in captured.out + captured.err


def test_an_entry_point_run_inside_a_program_gives_its_log_back(said):
    import io

    with log_lines.kept():
        log_lines.show(io.StringIO())  # what an entry point does first
    infer_task(TextTable("t.csv", [("a",)] * 2, ["x", "y"], [2, 3]))
    assert len(said) == 1, said


def test_a_root_handler_another_library_adds_prints_nothing_twice(said):
    """OpenVINO's tools add a handler to the root logger: sst2's lines still show once."""
    import io
    import logging as python_logging

    root_stream = io.StringIO()
    handler = python_logging.StreamHandler(root_stream)
    python_logging.getLogger().addHandler(handler)
    try:
        infer_task(TextTable("t.csv", [("a",)] * 2, ["x", "y"], [2, 3]))
    finally:
        python_logging.getLogger().removeHandler(handler)
    assert len(said) == 1 and root_stream.getvalue() == "", root_stream.getvalue()


def test_another_librarys_warning_shows_and_its_deprecation_notice_does_not():
    """tfds warns `FeatureConnector.dtype is deprecated` on every read of a dataset: a
    notice to the code that calls it, which a user cannot act on. Checked on the record
    filter of absl's handler, which prints other libraries' records."""
    import io
    import logging as python_logging

    def record(message, level=python_logging.WARNING):
        return python_logging.LogRecord("absl", level, "/site-packages/tfds/feature.py", 72,
                                        message, None, None)

    handler = logging.get_absl_handler()
    with log_lines.kept():
        log_lines.show(io.StringIO())
        assert handler.filter(record("a library's own warning"))
        assert handler.filter(record("an error", python_logging.ERROR))
        assert not handler.filter(record("`FeatureConnector.dtype` is deprecated. Please "
                                         "change your code."))
        assert not handler.filter(record("a library's progress", python_logging.INFO))
