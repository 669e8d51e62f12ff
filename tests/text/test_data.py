import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from sst2.model import presets
from sst2.run.errors import UserError
from sst2.text import data, glue
from sst2.text.datasets import TfdsDataset
from tests.helpers import TINY_SEQUENCE_LENGTH, write_tiny_glue


def test_prepare_tiny_glue_matches_files(tiny_data_dir):
    assert glue.split_size("train", tiny_data_dir) == 256
    assert glue.split_size("validation", tiny_data_dir) == 64
    assert glue.split_size("test", tiny_data_dir) == 32
    test = list(glue.load_split("test", tiny_data_dir).as_numpy_iterator())
    assert {int(x["label"]) for x in test} == {-1}
    assert sorted(int(x["idx"]) for x in test) == list(range(32))


def test_prepare_accepts_a_non_official_zip(tmp_path):
    import zipfile

    files = write_tiny_glue(str(tmp_path / "SST-2"), seed=3, sizes=(20, 10, 5))
    archive = tmp_path / "SST-2.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("train.tsv", "dev.tsv", "test.tsv"):
            z.write(os.path.join(files, name), f"SST-2/{name}")
    data_dir = str(tmp_path / "tfds")
    glue.prepare_glue_sst2(str(archive), data_dir)
    assert glue.split_size("train", data_dir) == 20
    assert glue.split_size("validation", data_dir) == 10


def test_preparing_from_local_files_leaves_the_tfds_package_untouched(tmp_path):
    """glue/sst2 is built through tfds's own builder with its download answered from disk,
    not by registering checksums (which rewrites tfds's installed files): the package's
    glue files keep their bytes, and its registered SST-2.zip is still the official one."""
    import hashlib

    import tensorflow_datasets as tfds

    package = os.path.dirname(tfds.__file__)
    files = sorted(glob.glob(os.path.join(package, "url_checksums", "*glue*")) +
                   glob.glob(os.path.join(package, "text", "glue*.py")))

    def digests():
        return {path: hashlib.sha256(open(path, "rb").read()).hexdigest() for path in files}

    before = digests()
    write_tiny_glue(str(tmp_path / "SST-2"))
    glue.prepare_glue_sst2(str(tmp_path / "SST-2"), str(tmp_path / "tfds"))
    assert glue.split_size("train", str(tmp_path / "tfds")) == 256
    assert files and digests() == before
    # GLUE's own SHA-256 of SST-2.zip, as published with the dataset.
    assert glue.registered_checksum()[1] == (
        "d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa")


def test_missing_source_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="No GLUE SST-2 files"):
        glue.prepare_glue_sst2(str(tmp_path / "nowhere"), str(tmp_path / "tfds"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="train.tsv, dev.tsv and test.tsv"):
        glue.prepare_glue_sst2(str(tmp_path / "empty"), str(tmp_path / "tfds"))


@pytest.mark.slow
def test_a_missing_dataset_is_prepared_from_the_embedded_copy(said, tmp_path):
    dataset = glue.load_split("validation", str(tmp_path / "tfds"), download=False)
    assert said == [f"GLUE SST-2 is not in {tmp_path / 'tfds'} and downloading is off "
                    "(--nodownload): preparing it from the copy embedded in sst2."]
    assert sum(1 for _ in dataset) == 872
    assert glue.split_size("train", str(tmp_path / "tfds")) == 67349


def test_the_embedded_copy_is_the_original_and_checked(tmp_path):
    import gzip
    import hashlib
    import shutil

    from sst2.text import embedded

    folder = embedded.unpack_sst2(str(tmp_path / "ok"))
    sums = embedded.checksums()
    for name in embedded.FILES:
        with open(os.path.join(folder, name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == sums[name]
    # GLUE's published sums of the original files.
    assert sums["train.tsv"] == "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1"
    damaged = tmp_path / "damaged"
    shutil.copytree(embedded.EMBEDDED_DIR, damaged)
    with gzip.open(damaged / "dev.tsv.gz", "wb") as f:
        f.write(b"sentence\tlabel\nnot the original\t1\n")
    with pytest.raises(UserError, match="dev.tsv does not match its SHA-256.*reinstall sst2"):
        embedded.unpack_sst2(str(tmp_path / "out"), source=str(damaged))


def test_tokenize_shapes_and_dtypes(tiny_data_dir, tiny_preset):
    preprocessor = presets.load_preprocessor(tiny_preset, TINY_SEQUENCE_LENGTH)
    ds = data.tokenize(TfdsDataset("glue/sst2", tiny_data_dir).load("validation"), preprocessor,
                       batch_size=16)
    spec = ds.element_spec
    assert spec["token_ids"].shape == [TINY_SEQUENCE_LENGTH]
    assert spec["token_ids"].dtype == tf.int32
    assert spec["padding_mask"].dtype == tf.int32
    assert spec["label"].dtype == tf.int32 and spec["length"].dtype == tf.int32
    tokens = data.to_numpy(ds)
    assert tokens["token_ids"].shape == (64, TINY_SEQUENCE_LENGTH)
    assert np.array_equal(tokens["length"], tokens["padding_mask"].sum(1))
    # [CLS] first, [SEP] last real token.
    assert (tokens["token_ids"][:, 0] == 2).all()
    assert (tokens["token_ids"][np.arange(64), tokens["length"] - 1] == 3).all()
    assert set(tokens["label"]) == {0, 1}


def test_plan_batches_covers_every_example_once():
    lengths = np.random.default_rng(0).integers(3, 60, size=1000)
    boundaries = data.bucket_lengths(64)
    for rng in (None, np.random.default_rng([1, 2])):
        plan = data.plan_batches(lengths, 32, boundaries, rng)
        seen = np.concatenate([ix for ix, _ in plan])
        assert sorted(seen) == list(range(1000))
        for ix, padded in plan:
            assert padded in boundaries and lengths[ix].max() <= padded and len(ix) <= 32
    shapes = {padded for _, padded in data.plan_batches(lengths, 32, boundaries)}
    assert shapes <= set(boundaries)  # a small fixed set: no per-batch recompiles


def test_token_batches_hold_every_example_once_sorted_and_within_the_budget():
    lengths = np.random.default_rng(3).integers(2, 100, 500)
    lengths[7] = 128  # longer than the budget's share: a batch of its own
    plan = data.plan_token_batches(lengths, 120)
    order = np.concatenate([indices for indices, _ in plan])
    assert sorted(order.tolist()) == list(range(500))
    assert np.all(np.diff(lengths[order]) >= 0)  # length-sorted, least padding
    for (indices, padded), (following, _) in zip(plan, plan[1:] + [(None, 0)]):
        assert padded == lengths[indices].max()
        assert len(indices) * padded <= 120 or len(indices) == 1
        if following is not None:  # full: the next example would not have fitted
            assert (len(indices) + 1) * lengths[following[0]] > 120
    assert any(7 in indices and len(indices) == 1 for indices, _ in plan)


def test_plan_batches_is_deterministic_per_seed():
    lengths = np.random.default_rng(0).integers(3, 60, size=500)
    a = data.plan_batches(lengths, 16, (16, 32, 64), np.random.default_rng([7, 0]))
    b = data.plan_batches(lengths, 16, (16, 32, 64), np.random.default_rng([7, 0]))
    c = data.plan_batches(lengths, 16, (16, 32, 64), np.random.default_rng([7, 1]))
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b))
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a, c))


def test_bucket_lengths():
    assert data.bucket_lengths(128)[-1] == 128
    assert data.bucket_lengths(50) == (8, 16, 24, 32, 40, 48, 50)


def _epoch_cost(lengths, batch_size, buckets, bucket_cost):
    """Compiles plus padded token rows of one epoch, counted from `plan_batches`."""
    plan = data.plan_batches(lengths, batch_size, buckets)
    return bucket_cost * len(buckets) + sum(batch_size * padded for _, padded in plan)


@pytest.mark.parametrize("bucket_cost", [0, 500, 5_000, 50_000])
def test_choose_buckets_is_the_cheapest_subset(bucket_cost):
    """Against every subset of the candidates that covers the longest example."""
    import itertools

    rng = np.random.default_rng(bucket_cost)
    lengths = np.minimum(rng.geometric(0.08, size=700) + 2, 64)
    candidates = data.bucket_lengths(64)
    chosen = data.choose_buckets(lengths, 16, candidates, bucket_cost)
    assert chosen[-1] >= lengths.max() and set(chosen) <= set(candidates)
    covering = [subset for r in range(1, len(candidates) + 1)
                for subset in itertools.combinations(candidates, r)
                if subset[-1] >= lengths.max()]
    cheapest = min(_epoch_cost(lengths, 16, s, bucket_cost) for s in covering)
    assert _epoch_cost(lengths, 16, chosen, bucket_cost) == cheapest


def test_choose_buckets_trades_padding_for_fewer_shapes():
    lengths = np.random.default_rng(0).integers(3, 100, size=5000)
    counts = [len(data.choose_buckets(lengths, 32, data.bucket_lengths(128), cost))
              for cost in (0, 20_000, 200_000, 10**9)]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1] == 1


def test_a_forced_rebuild_replaces_the_dataset_only_when_complete(tmp_path, monkeypatch):
    # Issue 25, case 6: --force deleted the prepared dataset before building the new one.
    data_dir = str(tmp_path / "tfds")
    glue.prepare_glue_sst2(write_tiny_glue(str(tmp_path / "a"), sizes=(20, 10, 5)), data_dir)
    real_builder = glue._builder

    def failing_builder(where):
        builder = real_builder(where)
        if ".sst2-rebuild-" in str(where):
            def killed():
                os.makedirs(builder.data_dir, exist_ok=True)  # half-built
                raise RuntimeError("killed mid-build")
            builder.download_and_prepare = killed
        return builder

    monkeypatch.setattr(glue, "_builder", failing_builder)
    source = write_tiny_glue(str(tmp_path / "b"), sizes=(30, 10, 5))
    with pytest.raises(UserError, match="the prepared dataset in .* is unchanged"):
        glue.prepare_glue_sst2(source, data_dir, force=True)
    assert glue.split_size("train", data_dir) == 20
    assert not [n for n in os.listdir(data_dir) if n.startswith(".sst2-rebuild")]
    monkeypatch.setattr(glue, "_builder", real_builder)
    glue.prepare_glue_sst2(source, data_dir, force=True)
    assert glue.split_size("train", data_dir) == 30
    assert sorted(os.listdir(os.path.join(data_dir, "glue", "sst2"))) == ["2.0.0"]


def _stsb_folder(folder, header):
    folder.mkdir()
    rows = ["0\tA plane is taking off.\tAn air plane is taking off.\t5.0",
            "1\tA man plays a flute.\tA man plays a guitar.\t1.5"]
    for name in ("train.tsv", "dev.tsv"):
        (folder / name).write_text("\n".join([header] + rows) + "\n")
    (folder / "test.tsv").write_text("index\tsentence1\tsentence2\n0\ta\tb\n")
    return folder


def test_prepare_data_names_the_missing_column_and_leaves_nothing(tmp_path):
    """Case 12: a bare KeyError "'sentence1'", and glue/stsb, glue/.config and
    downloads/extracted left behind."""
    from sst2.text.glue_local import prepare_glue_task

    data_dir = tmp_path / "tfds"
    wrong = _stsb_folder(tmp_path / "wrong", "index\ttext_a\ttext_b\tscore")
    with pytest.raises(UserError, match=r"wrong/train\.tsv: its first line has no column "
                                        r"'sentence1' .*glue/stsb reads sentence1, "
                                        r"sentence2, score"):
        prepare_glue_task("glue/stsb", str(wrong), str(data_dir))
    assert not data_dir.exists()
    # A failure tfds finds itself (a score that is not a number) leaves nothing either,
    # in a data dir that holds something already.
    data_dir.mkdir()
    (data_dir / "keep.txt").write_text("mine")
    bad = _stsb_folder(tmp_path / "bad", "index\tsentence1\tsentence2\tscore")
    (bad / "train.tsv").write_text("index\tsentence1\tsentence2\tscore\n0\ta\tb\thigh\n")
    with pytest.raises(UserError, match="tfds could not build glue/stsb"):
        prepare_glue_task("glue/stsb", str(bad), str(data_dir))
    assert os.listdir(data_dir) == ["keep.txt"]
    with pytest.raises(UserError, match=r"--glue=/nonexistent: no such folder"):
        prepare_glue_task("glue/stsb", "/nonexistent", str(data_dir))


def test_glue_files_without_their_label_column_are_refused(tmp_path):
    files = write_tiny_glue(str(tmp_path / "SST-2"), sizes=(8, 4, 2))
    rows = open(os.path.join(files, "train.tsv")).read().splitlines()
    with open(os.path.join(files, "train.tsv"), "w") as f:
        f.write("\n".join(r.split("\t")[0] for r in rows) + "\n")
    with pytest.raises(UserError, match="train.tsv: line 1 must name the columns sentence and "
                                        "label .*without label"):
        glue.prepare_glue_sst2(files, str(tmp_path / "tfds"))
