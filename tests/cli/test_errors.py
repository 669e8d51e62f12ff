"""What a user can get wrong ends in one `error:` line with exit status 2: flags that do not
parse, operating-system errors, an interrupt."""

import subprocess
import sys

import pytest

from sst2 import cli
from tests.helpers import REPO


@pytest.mark.parametrize("flag,message", [
    ("--epoch=1", "error: Unknown command line flag 'epoch'. Did you mean: epochs ?"),
    ("--learning_rate=abc", "error: flag --learning_rate=abc: could not convert"),
])
def test_a_flag_that_does_not_parse_is_one_error_line(flag, message):
    from tests.helpers import run_module

    # Issue 25, case 18: absl's "FATAL Flags parsing error" and exit status 1.
    result = run_module("sst2.train", flag, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_os_errors_read_as_one_line_with_advice():
    import errno

    full = OSError(errno.ENOSPC, "No space left on device", "/data/run/ckpt-5")
    assert cli.describe_os_error(full) == (
        "No space left on device: /data/run/ckpt-5 (free some space there, or point the run "
        "elsewhere).")
    assert "use a shorter path" in cli.describe_os_error(
        OSError(errno.ENAMETOOLONG, "File name too long", "/x" * 3000))


@pytest.mark.slow
def test_an_interrupt_exits_2_without_a_traceback(tmp_path):
    program = ("import sys; sys.path.insert(0, sys.argv[1]); from sst2 import cli; "
               "from sst2.run.command_config import PredictConfig\n"
               "def main(config, argv): raise KeyboardInterrupt\n"
               "cli.run(main, PredictConfig)")
    result = subprocess.run([sys.executable, "-c", program, REPO, "--export_dir=x"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: Interrupted." in result.stderr
