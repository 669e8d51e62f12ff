"""GLUE SST-2, embedded in the package: the three original files, gzipped.

So that sst2 trains, evaluates and passes its tests on a machine that reaches
no dataset host, as scikit-learn's bundled datasets do. Each file is checked
against its SHA-256 (`SHA256SUMS`, the original files' sums) when unpacked.
`sst2.text.data` prepares tfds `glue/sst2` from this copy when it cannot download.

Example:
    >>> folder = unpack_sst2(tmp_dir)
    >>> sorted(os.listdir(folder))
    ['dev.tsv', 'test.tsv', 'train.tsv']
    >>> open(os.path.join(folder, "dev.tsv")).readline()
    'sentence\\tlabel\\n'
"""

import gzip
import hashlib
import os

from sst2.run.errors import UserError

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # sst2/
EMBEDDED_DIR = os.path.join(PACKAGE_DIR, "resources",
                            "glue_sst2")
FILES = ("train.tsv", "dev.tsv", "test.tsv")


def checksums(folder: str = EMBEDDED_DIR) -> dict[str, str]:
    """`{file name: sha256}` from the embedded `SHA256SUMS`."""
    with open(os.path.join(folder, "SHA256SUMS")) as f:
        return {name: digest for digest, name in (line.split() for line in f if line.strip())}


def unpack_sst2(folder: str, source: str = EMBEDDED_DIR) -> str:
    """Writes the original `train.tsv`, `dev.tsv` and `test.tsv` into `folder`; returns it.

    Raises:
        UserError: if a file is missing or does not match its checksum.
    """
    os.makedirs(folder, exist_ok=True)
    try:
        expected = checksums(source)
        for name in FILES:
            with gzip.open(os.path.join(source, name + ".gz"), "rb") as f:
                content = f.read()
            if hashlib.sha256(content).hexdigest() != expected[name]:
                raise ValueError(f"{name} does not match its SHA-256")
            with open(os.path.join(folder, name), "wb") as f:
                f.write(content)
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise UserError(f"The copy of GLUE SST-2 embedded in sst2 ({source}) is damaged "
                        f"({e}); reinstall sst2, or pass --data_dir a prepared dataset.") from e
    return folder
