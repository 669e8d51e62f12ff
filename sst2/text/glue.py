"""GLUE SST-2 through tfds `glue/sst2`: loading, and preparing it from local files.

Online, `load_split` lets tfds download GLUE SST-2. Offline, `prepare_glue_sst2`
builds the very same tfds dataset from local files (the official `SST-2.zip`, a
folder holding its `train.tsv`, `dev.tsv` and `test.tsv`, or by default the copy
embedded in sst2), after which `tfds.load("glue/sst2", data_dir=...)` reads it
as if tfds had downloaded it. `load_split` does that by itself when the
dataset is missing and cannot be downloaded.

Example (`data_dir` prepared by `prepare_glue_sst2("path/to/SST-2", data_dir)`):
    >>> ds = load_split("validation[:4]", data_dir=data_dir)
    >>> sorted(next(iter(ds)))
    ['idx', 'label', 'sentence']
    >>> split_size("validation", data_dir)
    64
"""

import contextlib
import glob
import os
import shutil
import socket
import tempfile
import urllib.parse
import zipfile
from typing import Iterator
from unittest import mock

import tensorflow as tf
from absl import logging

from sst2.run.errors import UserError
from sst2.run.files import process_alive, sha256_of_file
from sst2.text import embedded

DATASET_NAME = "glue/sst2"
SST2_URL = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"
LABEL_NAMES = ("negative", "positive")
SPLIT_FILES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}

OFFLINE_DATA_HELP = (
    "To work offline, build the dataset from the copy embedded in sst2, or from local "
    "GLUE files:\n"
    "    python -m sst2.prepare_data [--glue=PATH/TO/SST-2] [--data_dir=DIR]\n"
    "where PATH/TO/SST-2 is the official SST-2.zip or a folder holding its "
    "train.tsv, dev.tsv and test.tsv; then pass the same --data_dir to sst2.train."
)


def _tfds():
    # tfds is imported lazily: it is slow to import and the serving path never needs it.
    import tensorflow_datasets as tfds

    return tfds


def _builder(data_dir: str | None):
    return _tfds().builder(DATASET_NAME, data_dir=data_dir)


def is_prepared(data_dir: str | None = None) -> bool:
    """Whether `glue/sst2` is already built in the tfds data dir `data_dir`."""
    return _builder(data_dir).is_prepared()


def can_reach(url: str, timeout: float = 3.0) -> bool:
    """A quick TCP reachability check, so that no network fails in seconds, not minutes."""
    parsed = urllib.parse.urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_prepared(data_dir: str | None = None, download: bool = True) -> None:
    """Makes sure `glue/sst2` is built in `data_dir`.

    It downloads the dataset if allowed and reachable; otherwise it prepares it
    from the copy embedded in sst2, and says so in one line.
    """
    builder = _builder(data_dir)
    if builder.is_prepared():
        return
    if download and can_reach(SST2_URL):
        try:
            builder.download_and_prepare()
            return
        except Exception as e:  # tfds raises many types; the user needs one message.
            raise UserError(f"Downloading GLUE SST-2 failed: {e}\n{OFFLINE_DATA_HELP}") from e
    why = "downloading is off (--nodownload)" if not download else (
        f"{urllib.parse.urlparse(SST2_URL).hostname} cannot be reached")
    where = data_dir or _tfds().core.constants.DATA_DIR
    logging.info(f"GLUE SST-2 is not in {where} and {why}: preparing it from the "
                 "copy embedded in sst2.")
    prepare_glue_sst2(None, data_dir)


def load_split(split: str, data_dir: str | None = None, download: bool = True) -> tf.data.Dataset:
    """Returns a split of `glue/sst2` (any tfds split string, e.g. `train[:4096]`).

    Each element is a dict with `idx` (int32), `sentence` (string) and `label`
    (int64; -1 on the unlabelled test split). The order is the files' order.
    A missing dataset is prepared first (`ensure_prepared`).
    """
    ensure_prepared(data_dir, download)
    try:
        return _tfds().load(DATASET_NAME, split=split, data_dir=data_dir, shuffle_files=False)
    except (ValueError, AssertionError) as e:
        raise UserError(f"Bad split {split!r} for glue/sst2: {e}") from e


def split_size(split: str, data_dir: str | None = None) -> int:
    """The number of examples in a tfds split string, without reading the data."""
    return _builder(data_dir).info.splits[split].num_examples


def registered_checksum() -> tuple[int, str]:
    """tfds's own registered (size, sha256) of the official SST-2.zip."""
    url_info = _builder(None).url_infos[SST2_URL]
    return url_info.size, url_info.checksum


def _find_sst2_folder(root: str) -> str | None:
    for folder, _, files in os.walk(root):
        if all(name in files for name in SPLIT_FILES.values()):
            return folder
    return None


@contextlib.contextmanager
def _local_download(extracted_root: str) -> Iterator[None]:
    """Serves `SST2_URL` from a local folder to tfds's download manager.

    The glue builder asks for `download_and_extract(SST2_URL)` and reads
    `<result>/SST-2/{train,dev,test}.tsv`. Answering that call from disk makes
    tfds generate the dataset with its own code, and leaves the installed tfds
    package untouched (unlike `register_checksums=True`, which rewrites it).
    """
    download_manager_cls = _tfds().download.DownloadManager
    original = download_manager_cls.download_and_extract

    def download_and_extract(self, url_or_urls):
        if url_or_urls == SST2_URL:
            return extracted_root
        return original(self, url_or_urls)

    with mock.patch.object(download_manager_cls, "download_and_extract", download_and_extract):
        yield


# The header each GLUE SST-2 file must have (tfds's builder reads the columns by name).
COLUMNS = {"train.tsv": ("sentence", "label"), "dev.tsv": ("sentence", "label"),
           "test.tsv": ("index", "sentence")}


def _check_columns(folder: str) -> None:
    """Refuses GLUE files without the columns tfds reads (it would label every row -1)."""
    for name, needed in COLUMNS.items():
        path = os.path.join(folder, name)
        with open(path, encoding="utf-8", errors="replace") as f:
            header = f.readline().rstrip("\r\n").split("\t")
        missing = [c for c in needed if c not in header]
        if missing:
            raise UserError(f"{path}: line 1 must name the columns {' and '.join(needed)} "
                            f"(tab-separated); it has {header!r}, without "
                            f"{' and '.join(missing)}.")


def prepare_glue_sst2(source: str | None, data_dir: str | None = None,
                      force: bool = False) -> str:
    """Builds tfds `glue/sst2` in `data_dir` from local GLUE SST-2 files.

    Args:
        source: the official `SST-2.zip` (verified against tfds's registered
            checksum), a folder that holds `train.tsv`, `dev.tsv` and
            `test.tsv`, directly or in a subfolder, or None: the copy embedded
            in sst2 (`sst2.text.embedded`).
        data_dir: the tfds data dir to write into (tfds's default if None).
        force: rebuild even if the dataset is already there.

    Returns:
        The folder of the prepared dataset.
    """
    builder = _builder(data_dir)
    if builder.is_prepared() and not force:
        return builder.data_dir
    with tempfile.TemporaryDirectory(prefix="sst2-glue-") as tmp:
        if source is None:
            source = embedded.unpack_sst2(os.path.join(tmp, "embedded"))
        source = os.path.expanduser(source)
        if not os.path.exists(source):
            raise UserError(f"No GLUE SST-2 files at {source}. " + OFFLINE_DATA_HELP)
        if zipfile.is_zipfile(source):
            size, checksum = registered_checksum()
            if os.path.getsize(source) == size and sha256_of_file(source) == checksum:
                print(f"{source} is the official SST-2.zip (tfds checksum verified).")
            else:
                print(f"{source} is not byte-identical to the official SST-2.zip; "
                      "using the SST-2 files inside it.")
            with zipfile.ZipFile(source) as archive:
                archive.extractall(tmp)
            found = _find_sst2_folder(tmp)
        elif os.path.isdir(source):
            found = _find_sst2_folder(source)
        else:
            found = None
        if found is None:
            raise UserError(
                f"{source} holds no folder with train.tsv, dev.tsv and test.tsv. "
                + OFFLINE_DATA_HELP)
        _check_columns(found)
        staged = os.path.join(tmp, "staged")
        os.makedirs(os.path.join(staged, "SST-2"))
        for name in SPLIT_FILES.values():
            shutil.copy(os.path.join(found, name), os.path.join(staged, "SST-2", name))
        if force and builder.is_prepared():
            return _rebuild(builder, data_dir, staged, found)
        with _local_download(staged):
            try:
                builder.download_and_prepare()
            except Exception as e:
                raise UserError(f"tfds could not build glue/sst2 from {found}: {e}") from e
    return builder.data_dir


def _rebuild(builder, data_dir: str | None, staged: str, found: str) -> str:
    """Builds glue/sst2 beside the prepared one and swaps it in only when complete, so a
    bad source or a kill mid-build leaves the prepared dataset as it was."""
    target = builder.data_dir  # <root>/glue/sst2/<version>
    root = os.path.dirname(os.path.dirname(os.path.dirname(target)))
    for stale in glob.glob(os.path.join(root, ".sst2-rebuild-*")):  # left by killed builds
        if not process_alive(int(stale.rsplit("-", 1)[1])):
            shutil.rmtree(stale, ignore_errors=True)
    staging = os.path.join(root, f".sst2-rebuild-{os.getpid()}")
    try:
        new_builder = _builder(staging)
        with _local_download(staged):
            try:
                new_builder.download_and_prepare()
            except Exception as e:
                raise UserError(f"tfds could not build glue/sst2 from {found}; the prepared "
                                f"dataset in {target} is unchanged: {e}") from e
        replaced = f"{target}.replaced-{os.getpid()}"
        os.replace(target, replaced)
        os.replace(new_builder.data_dir, target)
        shutil.rmtree(replaced)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
