"""Labels as users write them: a score column with one bad value, huge scores, a constant,
decimal commas, a cell of separators, a label name holding the separator."""

import pytest

from sst2.run.errors import UserError


def _scores_file(tmp_path, scores, name="train.csv"):
    """A CSV of texts and `scores` (strings as a user's file holds them)."""
    path = tmp_path / name
    path.write_text("text,score\n" + "".join(
        f"sentence {i},\"{score}\"\n" for i, score in enumerate(scores)), encoding="utf-8")
    return str(path)


def _open(train_file, eval_file=None, **options):
    from sst2.run.config import DataConfig
    from sst2.text.datasets import open_dataset

    return open_dataset(DataConfig(train_file=train_file, eval_file=eval_file,
                                   label_column="score", **options))


DECIMALS = [f"{0.1 * i + 0.05:.2f}" for i in range(60)]


@pytest.mark.parametrize("bad", ["nan", "inf", "-Infinity", "1e400", "n/a"])
def test_one_bad_value_never_turns_a_score_column_into_classes(tmp_path, bad):
    """Case 3: one `nan` made 60 decimal scores a 61-class classifier."""
    scores = DECIMALS[:40] + [bad] + DECIMALS[40:]
    with pytest.raises(UserError, match=r"train\.csv: line 42: the label .* finite number.*"
                                        r"decimal numbers \(line 2"):
        _open(_scores_file(tmp_path, scores))
    with pytest.raises(UserError, match=r"line 42: .*not a finite number"):
        _open(_scores_file(tmp_path, scores), task="regression")


def test_a_nan_among_integer_class_ids_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"line 4: the label 'nan' is not a finite number"):
        _open(_scores_file(tmp_path, ["0", "1", "nan", "1", "0"]))


@pytest.mark.parametrize("huge,why", [("1e39", "beyond 1e\\+18"), ("-3e30", "beyond 1e\\+18")])
def test_scores_beyond_float32s_squares_are_refused_by_line(tmp_path, huge, why):
    """Cases 4 and 5: 1e39 overflowed float32 (a NaN model, exit 0); 1e30 overflowed the
    MSE summary after epoch 1 (a traceback)."""
    scores = DECIMALS[:5] + [huge] + DECIMALS[5:]
    for task in ("auto", "regression"):
        with pytest.raises(UserError, match=rf"line 7: the label '{huge}' is {why}.*rescale"):
            _open(_scores_file(tmp_path, scores), task=task)


def test_a_constant_score_is_refused(tmp_path):
    """Case 6: every score 2.5 trained (std 1e-06) and exported."""
    with pytest.raises(UserError, match=r"every example's target is 2\.5 \(one value only\)"):
        _open(_scores_file(tmp_path, ["2.5"] * 20))


def test_decimal_commas_are_named_where_they_are(said, tmp_path):
    """Case 7: `3,5` scores were inferred multi-label without a word, then the eval file
    was blamed."""
    train = _scores_file(tmp_path, ["3,5", "2,0", "4,5", "1,0", "5,0", "0,5"] * 3)
    dev = _scores_file(tmp_path, ["2,75", "3,5"], name="dev.csv")
    dataset = _open(train, dev)
    assert dataset.info.task == "multi_label"
    assert any(f"inferred from {train}: line 2's label '3,5'" in m and "decimal comma" in m
               for m in said), said
    with pytest.raises(UserError, match=rf"dev\.csv: line 2: .*inferred from the labels of "
                                        rf"{train}.*decimal comma"):
        dataset.arrays("validation")
    # Sparse ids (up to 75 of which most never occur) are refused at the training file.
    sparse = _scores_file(tmp_path, ["3,5", "2,75", "4,25", "1,0", "3,45"] * 3, "sparse.csv")
    with pytest.raises(UserError, match=r"sparse\.csv: .*largest, 75 \(line 3\).*decimal comma"):
        _open(sparse)


def test_a_cell_of_separators_alone_is_refused_as_an_empty_one(tmp_path):
    """Case 16."""
    path = tmp_path / "train.csv"
    path.write_text('text,score\na,"joy,anger"\nb,joy\nc,","\nd,anger\n')
    with pytest.raises(UserError, match=r"line 4: the label cell ',' names no label"):
        _open(str(path))


def test_a_label_names_file_with_the_separator_in_a_name_is_refused(tmp_path):
    """Case 17."""
    path = tmp_path / "train.csv"
    path.write_text('text,score\na,"joy,anger"\nb,joy\nd,anger\n')
    names = tmp_path / "labels.txt"
    names.write_text("joy\nanger,rage\n")
    with pytest.raises(UserError, match=r"'anger,rage' holds the label separator ','"):
        _open(str(path), label_names_file=str(names))
