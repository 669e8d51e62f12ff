"""One process per run folder: a second holder is refused by name, a killed holder never
blocks, a lock file that is a link is refused."""

import json
import os
import subprocess
import sys

import pytest

from sst2.run.errors import UserError
from sst2.run.runlock import RunLock
from tests.helpers import REPO


def test_a_lock_file_that_is_a_link_is_refused(tmp_path, outside):
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(outside, run / ".lock")
    with pytest.raises(UserError, match="symbolic link"):
        with RunLock(str(run)):
            pass
    assert outside.read_text() == "keep me"


def test_a_second_holder_of_a_run_folder_is_refused_naming_the_first(tmp_path):
    with RunLock(str(tmp_path)):
        with pytest.raises(UserError, match=rf"in use by another run \(pid {os.getpid()} on "):
            with RunLock(str(tmp_path)):
                pass
    with RunLock(str(tmp_path)):  # released: free again
        pass


@pytest.mark.slow
def test_a_lock_file_left_by_a_killed_run_never_blocks(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); "
         "from sst2.run.runlock import RunLock; l = RunLock(sys.argv[2]).__enter__(); "
         "print('held', flush=True); time.sleep(60)", REPO, str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"pid {holder.pid}"):
            RunLock(str(tmp_path)).__enter__()
    finally:  # a failed assertion must not leave the holder running
        holder.kill()
        holder.wait()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == holder.pid  # file stays
    with RunLock(str(tmp_path)):
        pass
