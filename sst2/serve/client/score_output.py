"""One run's output of `sst2.score`: whole, only that run's records, one run at a time.

A run writes its shards in a staging folder beside the output
(`<folder>/.<name>.scoring-<id>/`, Beam's own temporary files inside it) and
moves them to `<prefix>-SSSSS-of-NNNNN.jsonl` only after the pipeline
succeeded, so a reader never sees a part of a run, and a failed or interrupted
run leaves the output as it was. Shards of an earlier run under the same
prefix are refused, unless `overwrite`: then they are removed once the new
ones are in place (a shard count that changed leaves no stale shard beside
them). A local prefix is held by one run at a time (`<folder>/.<name>.lock`,
removed after); staging folders a killed run left are removed by the next.

Example:
    >>> prefix = os.path.join(tmp_dir, "out", "scored")
    >>> with ScoreOutput(prefix) as output:
    ...     with open(output.staging_prefix + "-00000-of-00001.jsonl", "w") as f:
    ...         _ = f.write('{"id": "a.txt:1", "label": "positive"}\\n')
    ...     [os.path.basename(p) for p in output.publish()]
    ['scored-00000-of-00001.jsonl']
    >>> sorted(os.listdir(os.path.dirname(prefix)))
    ['scored-00000-of-00001.jsonl']
    >>> with ScoreOutput(prefix) as output:
    ...     pass
    Traceback (most recent call last):
    ...
    sst2.run.errors.UserError: ...scored: 1 shard(s) of an earlier run are there (...); ...
"""

import contextlib
import glob
import os
import re
import signal
import uuid

from apache_beam.io.filesystems import FileSystems

from sst2.run.errors import UserError
from sst2.run.runlock import FileLock

# Beam's shard names (`-SSSSS-of-NNNNN`, wider past 99,999 shards) with sst2's suffix.
SHARD = re.compile(r"-\d{5,}-of-\d{5,}\.jsonl$")


class ScoreOutput:
    """`with ScoreOutput(prefix, overwrite) as output:` write to `output.staging_prefix`,
    then `output.publish()` (see the module). Raises `UserError` for a prefix that
    cannot be written, earlier shards without `overwrite`, or another run on it."""

    def __init__(self, prefix: str, overwrite: bool = False):
        self.local = FileSystems.get_scheme(prefix) in (None, "file")
        self.names_folder = prefix.endswith(("/", os.sep))
        self.prefix = os.path.abspath(prefix) if self.local else prefix
        self.folder, self.name = FileSystems.split(self.prefix)
        self.overwrite = overwrite
        self.staging = FileSystems.join(self.folder, f".{self.name}.scoring-{uuid.uuid4().hex}")
        self._held = contextlib.ExitStack()

    @property
    def staging_prefix(self) -> str:
        """Where the pipeline writes its shards."""
        return FileSystems.join(self.staging, self.name)

    def __enter__(self) -> "ScoreOutput":
        if not self.name or self.names_folder:
            shown = self.prefix + (os.sep if self.names_folder else "")
            raise UserError(f"--output={shown} names a folder; give a prefix for the "
                            "shards' names in it, e.g. --output=out/scored.")
        if self.local:
            self._make_local_folder()
            self._held.enter_context(FileLock(
                os.path.join(self.folder, f".{self.name}.lock"), f"--output={self.prefix}",
                "Wait for it to finish or stop it, or use another --output.", remove=True))
        try:
            stale = self._matching(FileSystems.join(self.folder, f".{self.name}.scoring-*"))
            if stale:  # a killed run's: this prefix is held, so no other run's
                FileSystems.delete(stale)
            earlier = self.shards(self.prefix)
            if earlier and not self.overwrite:
                raise UserError(
                    f"{self.prefix}: {len(earlier)} shard(s) of an earlier run are there "
                    f"({earlier[0]}); pass --overwrite to replace them once this run has "
                    "succeeded, or choose another --output.")
            FileSystems.mkdirs(self.staging)
        except BaseException:
            self._held.close()
            raise
        return self

    def _make_local_folder(self) -> None:
        blocking = next((p for p in _parents(self.folder) if os.path.isfile(p)), None)
        if blocking:
            raise UserError(f"--output={self.prefix}: {blocking} is a file, not a folder; "
                            "choose another --output.")
        os.makedirs(self.folder, exist_ok=True)

    @staticmethod
    def shards(prefix: str) -> list:
        """The shard files of `prefix`, sorted."""
        return sorted(p for p in _files(f"{prefix}-*-of-*.jsonl")
                      if SHARD.fullmatch(p[len(prefix):]))

    def publish(self) -> list:
        """Moves the staged shards into place, then removes the earlier ones they did not
        replace; returns the shards' paths. Ctrl-C and SIGTERM wait until it is done."""
        staged = self.shards(self.staging_prefix)
        final = [self.prefix + p[len(self.staging_prefix):] for p in staged]
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            stale = [p for p in self.shards(self.prefix) if p not in final]
            if staged:
                FileSystems.rename(staged, final)
            if stale:
                FileSystems.delete(stale)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return final

    def __exit__(self, *exc) -> None:
        try:
            if self._matching(self.staging):
                FileSystems.delete([self.staging])
        finally:
            self._held.close()


    def _matching(self, pattern: str) -> list:
        """Files and folders matching `pattern` (Beam matches only files on a local disk)."""
        return glob.glob(pattern) if self.local else _files(pattern)


def _files(pattern: str) -> list:
    return [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]


def _parents(folder: str) -> list:
    """`folder` and each folder above it."""
    parents = [folder]
    while os.path.dirname(parents[-1]) != parents[-1]:
        parents.append(os.path.dirname(parents[-1]))
    return parents
