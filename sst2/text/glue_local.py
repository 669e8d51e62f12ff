"""Any GLUE task's tfds dataset, built offline from GLUE's own files.

tfds's `glue/<task>` builders download GLUE's zips. `prepare_glue_task`
answers those downloads from a local folder instead (GLUE's `<TASK>/`
folder: `train.tsv`, `dev.tsv`, `test.tsv`; MNLI's `dev_matched.tsv` and
kin; MRPC's `msr_paraphrase_train.txt`, `msr_paraphrase_test.txt` and
`dev_ids.tsv`; AX's `AX.tsv`), so tfds builds the dataset with its own code
and `--dataset=glue/<task> --data_dir=...` then reads it as if downloaded.
(SST-2, which sst2 also embeds, is `sst2.text.glue`.)

Example:
    >>> folder = os.path.join(tmp_dir, "WNLI")
    >>> os.makedirs(folder)
    >>> for name, rows in (("train.tsv", ["a\\tb\\t1", "c\\td\\t0"]), ("dev.tsv", ["e\\tf\\t1"]),
    ...                    ("test.tsv", ["0\\tg\\th"])):
    ...     header = "index\\tsentence1\\tsentence2" if name == "test.tsv" else (
    ...         "sentence1\\tsentence2\\tlabel")
    ...     _ = open(os.path.join(folder, name), "w").write("\\n".join([header] + rows) + "\\n")
    >>> built = prepare_glue_task("glue/wnli", folder, data_dir=os.path.join(tmp_dir, "tfds"))
    Downloading and preparing dataset ...
    Dataset glue downloaded and prepared to .... Subsequent calls will reuse this data.
    >>> os.path.basename(os.path.dirname(built))
    'wnli'
"""

import contextlib
import os
import tempfile
from unittest import mock

from sst2.run.errors import UserError
from sst2.run.files import remove_entry
from sst2.text import glue

# The files each kind of GLUE builder reads (besides the plain train/dev/test.tsv).
MNLI_FILES = ("train.tsv", "dev_matched.tsv", "dev_mismatched.tsv", "test_matched.tsv",
              "test_mismatched.tsv")
MRPC_FILES = {"train": "msr_paraphrase_train.txt", "test": "msr_paraphrase_test.txt",
              "dev_ids": "dev_ids.tsv"}


def _needed(config_name: str) -> tuple:
    if config_name.startswith("mnli"):
        return MNLI_FILES
    if config_name == "mrpc":
        return tuple(MRPC_FILES.values())
    if config_name == "ax":
        return ("AX.tsv",)
    return ("train.tsv", "dev.tsv", "test.tsv")


@contextlib.contextmanager
def _answered_from(folder: str, config, staging: str):
    """tfds's download manager, answering the builder's downloads from `folder`."""
    manager = glue._tfds().download.DownloadManager
    # The zip's layout: <extracted>/<TASK>/<files>.
    os.symlink(os.path.abspath(folder), os.path.join(staging, config.data_dir or "files"))

    def download_and_extract(self, url):
        return staging

    def download(self, urls):
        if isinstance(urls, dict):  # MRPC's three files
            return {key: os.path.join(folder, MRPC_FILES[key]) for key in urls}
        return os.path.join(folder, "AX.tsv")

    with mock.patch.object(manager, "download_and_extract", download_and_extract), \
            mock.patch.object(manager, "download", download):
        yield


def prepare_glue_task(dataset: str, source: str, data_dir: str | None = None) -> str:
    """Builds tfds `dataset` (`glue/<task>`) in `data_dir` from GLUE's files in the folder
    `source` (see the module); returns the prepared dataset's folder. An already
    prepared dataset is left as it is."""
    if dataset == glue.DATASET_NAME:
        return glue.prepare_glue_sst2(source, data_dir)
    tfds = glue._tfds()
    try:
        builder = tfds.builder(dataset, data_dir=data_dir)
    except ValueError as e:  # DatasetNotFoundError and a malformed name
        raise UserError(f"--dataset={dataset!r} is not a tfds GLUE task ({e}).") from None
    if not dataset.startswith("glue/"):
        raise UserError(f"--dataset={dataset!r}: local files can build glue/<task> datasets.")
    if builder.is_prepared():
        return builder.data_dir
    config = builder.builder_config
    if not os.path.isdir(source):
        raise UserError(f"--glue={source}: no such folder. Name the folder that holds "
                        f"{dataset}'s {', '.join(_needed(config.name))}.")
    missing = [name for name in _needed(config.name)
               if not os.path.isfile(os.path.join(source, name))]
    if missing:
        raise UserError(f"{source} lacks {', '.join(missing)}: {dataset} is built from GLUE's "
                        f"{', '.join(_needed(config.name))}.")
    _check_columns(source, config, dataset)
    root = data_dir or tfds.core.constants.DATA_DIR
    before = _entries(root) if os.path.exists(root) else None
    with tempfile.TemporaryDirectory(prefix="sst2-glue-") as staging, \
            _answered_from(source, config, staging):
        try:
            builder.download_and_prepare()
        except BaseException as e:
            _remove_new_entries(root, before)  # a failed build leaves nothing behind
            if not isinstance(e, Exception):
                raise
            raise UserError(f"tfds could not build {dataset} from {source}: "
                            f"{str(e).splitlines()[0][:300]}") from None
    return builder.data_dir


def _check_columns(source: str, config, dataset: str) -> None:
    """Refuses a GLUE file whose first line lacks a column tfds's builder reads (CoLA's
    training files have no header; MRPC's are of another form)."""
    if config.name == "mrpc":
        return
    for name in _needed(config.name):
        if config.name == "cola" and not name.startswith("test"):
            continue
        path = os.path.join(source, name)
        with open(path, encoding="utf-8", errors="replace") as f:
            header = f.readline().rstrip("\r\n").split("\t")
        wanted = list(config.text_features.values())
        if config.label_column and not name.startswith("test") and config.name != "ax":
            wanted.append(config.label_column)
        missing = [column for column in wanted if column not in header]
        if missing:
            raise UserError(f"{path}: its first line has no column {missing[0]!r} (it has "
                            f"{', '.join(repr(c) for c in header[:12])}); {dataset} reads "
                            f"{', '.join(wanted)} from {name}.")


def _entries(root: str, depth: int = 3) -> set:
    """The paths under `root`, `depth` levels deep (where tfds writes a dataset)."""
    found, level = set(), [root]
    for _ in range(depth):
        level = [os.path.join(folder, name) for folder in level if os.path.isdir(folder)
                 and not os.path.islink(folder) for name in os.listdir(folder)]
        found.update(level)
    return found


def _remove_new_entries(root: str, before: set | None) -> None:
    """Removes what appeared under `root` since `before` (`_entries`; None: `root` itself
    is new), outermost first."""
    if before is None:
        remove_entry(root)
        return
    for path in sorted(_entries(root) - before, key=len):
        remove_entry(path)  # nothing there (inside a folder removed before) is fine
