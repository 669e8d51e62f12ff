"""`sst2.score` as a user runs it, from a scratch folder with relative paths: a run's output
is exactly its records (never mixed with an earlier run's, never half there), every file is
decoded before it is split, a bad row is that row's error, ids are checked, and what a user
can get wrong is one `error:` line (hostile round 4, issue 47)."""

import contextlib
import glob
import io
import json
import os
import shutil
import signal
import sys

import pytest

from tests.helpers import error_lines, read_output, run_module, start_paused

pytestmark = pytest.mark.slow

README_SCORE = ("--export_dir=runs/sst2", "--input=in/*.csv", "--output=out/scored")


@pytest.fixture
def scratch(openvino_tiny_export, tmp_path):
    """A scratch folder holding `runs/sst2` (a run folder with an OpenVINO export) and `in/`."""
    shutil.copytree(openvino_tiny_export, tmp_path / "runs" / "sst2" / "export_openvino" / "1")
    (tmp_path / "in").mkdir()
    return tmp_path


def score(cwd, *args) -> tuple[int, str, str]:
    """`python -m sst2.score args` run in this process from `cwd`: its exit status, stdout
    and stderr (a UserError as the entry point prints it)."""
    from absl import flags

    from sst2 import cli
    from sst2 import score as entry_point
    from sst2.run.command_config import ScoreConfig
    from sst2.run.errors import UserError

    flag_values = flags.FlagValues()
    cli.define_flags(ScoreConfig, flag_values)
    argv = flag_values(["sst2.score", *args])
    out, err, before = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                entry_point.main(cli.config_from_flags(ScoreConfig, flag_values), argv)
                status = 0
            except UserError as e:
                print(f"error: {e}", file=sys.stderr)
                status = 2
    finally:
        os.chdir(before)
    return status, out.getvalue(), err.getvalue()


def records(prefix) -> list:
    return [json.loads(line) for path in sorted(glob.glob(f"{prefix}-*-of-*.jsonl"))
            for line in open(path, encoding="utf-8")]


def leftovers(folder) -> list:
    """What a run may leave beside its shards and must not."""
    return sorted(name for name in os.listdir(folder)
                  if name.startswith((".", "beam-temp")) or "scoring" in name)


def write_reviews(folder, name: str, count: int, start: int = 0) -> None:
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        f.write("text\n" + "".join(f"review {i} is a good film\n"
                                   for i in range(start, start + count)))


def test_readme_command_never_mixes_an_earlier_runs_shards(scratch):
    """Case 1 (and 10, 14): the README's command as written, then again with another shard
    count: refused without --overwrite, the old shards untouched; with it, exactly the new
    run's records. Nothing is left in the output folder or $TMPDIR."""
    write_reviews(scratch / "in", "a.csv", 7)
    write_reviews(scratch / "in", "b.csv", 5, start=7)
    temporary = scratch / "tmp"
    temporary.mkdir()
    env = {"TMPDIR": str(temporary)}
    first = run_module("sst2.score", *README_SCORE, cwd=scratch, env=env, process=True)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "12 of 12 records scored, from 2 file(s)" in first.stdout
    assert len(records(scratch / "out" / "scored")) == 12
    old = sorted(os.listdir(scratch / "out"))
    assert old == ["scored-00000-of-00001.jsonl"]

    os.remove(scratch / "in" / "b.csv")
    again = ("--export_dir=runs/sst2", "--input=in/a.csv", "--output=out/scored",
             "--num_shards=3")
    refused = run_module("sst2.score", *again, cwd=scratch, env=env, process=True)
    assert refused.returncode == 2 and error_lines(refused.stderr) == [
        f"error: {scratch}/out/scored: 1 shard(s) of an earlier run are there "
        f"({scratch}/out/scored-00000-of-00001.jsonl); pass --overwrite to replace them once "
        "this run has succeeded, or choose another --output."], refused.stderr[-2000:]
    assert sorted(os.listdir(scratch / "out")) == old
    assert len(records(scratch / "out" / "scored")) == 12

    replaced = run_module("sst2.score", *again, "--overwrite", cwd=scratch, env=env,
                          process=True)
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    assert sorted(os.listdir(scratch / "out")) == [f"scored-0000{i}-of-00003.jsonl"
                                                   for i in range(3)]
    assert sorted(r["id"] for r in records(scratch / "out" / "scored")) == [
        f"in/a.csv:{line}" for line in range(2, 9)]
    assert os.listdir(temporary) == [] and leftovers(scratch / "out") == []

    folder = run_module("sst2.score", "--export_dir=runs/sst2", "--input=in/a.csv",
                        "--output=o9/", cwd=scratch, process=True)
    assert folder.returncode == 2 and error_lines(folder.stderr) == [
        f"error: --output={scratch}/o9/ names a folder; give a prefix for the shards' names "
        "in it, e.g. --output=out/scored."], folder.stderr[-2000:]
    assert not os.path.exists(scratch / "o9")


def test_every_format_is_decoded_before_it_is_split(scratch):
    """Case 2: UTF-16 writes a line break as two bytes, one of them 0x0A; a plain-text file
    is decoded whole, then split, as CSV, TSV and JSONL are."""
    texts = ["a great film", "terrible", "naïve, but fun — 映画"]
    files = {"t.txt": "\n".join(texts) + "\n",
             "t.tsv": "text\n" + "\n".join(texts) + "\n",
             "t.csv": "text\n" + "\n".join(f'"{t}"' for t in texts) + "\n",
             "t.jsonl": "".join(json.dumps({"text": t}) + "\n" for t in texts)}
    for name, content in files.items():
        (scratch / "in" / name).write_bytes(content.encode("utf-16"))
    status, out, err = score(scratch, "--export_dir=runs/sst2", "--input=in/t.*",
                             "--output=out/s", "--encoding=utf-16")
    assert status == 0, err
    got = {r["id"]: r for r in records(scratch / "out" / "s")}
    assert len(got) == 12 and all("error" not in r for r in got.values()), got
    from sst2.serve.client.openvino_runtime import OpenVINOModel

    want = OpenVINOModel(str(scratch / "runs/sst2/export_openvino/1"))(texts)["label"]
    first_line = {"t.txt": 1, "t.tsv": 2, "t.csv": 2, "t.jsonl": 1}
    for name, line in first_line.items():
        labels = [got[f"in/{name}:{line + k}"]["label"] for k in range(3)]
        assert labels == list(want), name


def test_a_bad_row_is_its_own_error_and_failures_are_counted(scratch):
    """Case 3 (and 15): a wrong --text_column is one error line before anything runs; a
    row that does not parse is that row's error record, the file's other rows scored; the
    counts are on stderr; nothing scored is exit status 2."""
    inputs = scratch / "in"
    (inputs / "a.csv").write_text("review,stars\nfine film,5\nawful,1\n", encoding="utf-8")
    status, _, err = score(scratch, "--export_dir=runs/sst2", "--input=in/*",
                           "--output=out/s")
    assert status == 2 and error_lines(err) == [
        "error: in/a.csv: the header (line 1) has no column 'text'; its columns "
        "are 'review', 'stars'. Name the right one with --text_column=..."], err
    status, _, err = score(scratch, "--export_dir=runs/sst2", "--input=in/*",
                           "--output=out/s", "--text_column=review", "--id_column=rid")
    assert status == 2 and "Name the right one with --id_column=..." in err, err
    assert not os.path.exists(scratch / "out")

    (inputs / "a.csv").write_text("review,stars\nfine film,5\nawful,1\ngood, really,4\n"
                                  "moving,5\n", encoding="utf-8")
    (inputs / "b.jsonl").write_text('{"review": "charming"}\n{"review": 42}\nnot json\n'
                                    '{"review": "dull"}\n', encoding="utf-8")
    (inputs / "c.txt").write_text("")
    status, out, err = score(scratch, "--export_dir=runs/sst2", "--input=in/*",
                             "--output=out/s", "--text_column=review")
    assert status == 0, err
    got = {r["id"]: r for r in records(scratch / "out" / "s")}
    errors = {i: r["error"] for i, r in got.items() if "error" in r}
    assert set(errors) == {"in/a.csv:4", "in/b.jsonl:2", "in/b.jsonl:3", "in/c.txt"}, errors
    assert "line 4 has 3 fields, the header 2" in errors["in/a.csv:4"]
    assert "'review' must be a string, not 42" in errors["in/b.jsonl:2"]
    assert len(got) - len(errors) == 5  # every other row
    assert "5 of 8 records scored, from 3 file(s)" in out
    assert "warning: 3 record(s) and 1 whole file(s) could not be read" in err

    for name in ("a.csv", "b.jsonl"):
        os.remove(inputs / name)
    (inputs / "d.jsonl").write_text('{"review": 1}\n{"review": null}\n', encoding="utf-8")
    status, _, err = score(scratch, "--export_dir=runs/sst2", "--input=in/*",
                           "--output=out/t", "--text_column=review")
    assert status == 2 and len(error_lines(err)) == 1, err
    assert error_lines(err)[0].startswith(
        "error: no record was scored: 2 record(s) and 1 whole file(s) could not be read "
        "(their error records are in out/t-*.jsonl), e.g. ")
    assert len(records(scratch / "out" / "t")) == 3


def test_ids_are_checked(scratch):
    """Case 4: an empty id falls back to `<file>:<line>`; ids given twice are named."""
    inputs = scratch / "in"
    (inputs / "a.csv").write_bytes("\ufeffrid,text\n1,fine\n2,dull\n2,good\n,moving\n"
                                   .encode("utf-8"))
    (inputs / "b.jsonl").write_text('{"rid": 1, "text": "awful"}\n{"rid": 2, "text": "ok"}\n',
                                    encoding="utf-8")
    status, _, err = score(scratch, "--export_dir=runs/sst2", "--input=in/*",
                           "--output=out/s", "--id_column=rid")
    assert status == 0, err
    ids = sorted(r["id"] for r in records(scratch / "out" / "s"))
    assert ids == ["1", "1", "2", "2", "2", "in/a.csv:5"]
    assert ("warning: 2 id(s) were given to more than one record (e.g. '1' x2, '2' x3)"
            in err), err


def test_what_a_user_gets_wrong_is_one_error_line(scratch):
    """Case 7: a folder as input, an output under a file, an unknown encoding before the
    export is loaded, an unknown scheme, a truncated artifact."""
    (scratch / "in" / "a.txt").write_text("fine\n")
    (scratch / "afile").write_text("")
    broken = scratch / "broken"
    shutil.copytree(scratch / "runs/sst2/export_openvino/1", broken)
    with open(broken / "model.bin", "r+b") as f:
        f.truncate(os.path.getsize(broken / "model.bin") // 2)
    cases = {
        ("--input=in", "--output=out/s"):
            "error: --input=in: in is a folder; name the files in it, e.g. --input='in/*'.",
        ("--input=in/a.txt", "--output=afile/x"):
            f"error: --output={scratch}/afile/x: {scratch}/afile is a file, not a folder; "
            "choose another --output.",
        ("--input=in/a.txt", "--output=out/s", "--encoding=nonsense"):
            "error: --encoding='nonsense' is not an encoding Python knows; use e.g. utf-8, "
            "utf-16, latin-1 or cp1252.",
        ("--input=foo://x/*.txt", "--output=out/s"):
            "error: --input=foo://x/*.txt: Unable to get filesystem from specified path, "
            "please use the correct path or ensure the required dependency is installed, "
            "e.g., pip install apache-beam[gcp]. Path specified: foo://x/*.txt",
    }
    for args, line in cases.items():
        export = "--export_dir=broken" if "nonsense" in args[-1] else "--export_dir=runs/sst2"
        status, _, err = score(scratch, export, *args)
        assert status == 2 and error_lines(err) == [line], (args, err)
    status, _, err = score(scratch, "--export_dir=broken", "--input=in/a.txt",
                           "--output=out/s")
    assert status == 2 and len(error_lines(err)) == 1 and "holds no loadable OpenVINO" in err
    assert not os.path.exists(scratch / "out") or leftovers(scratch / "out") == []


def test_interrupted_killed_and_concurrent_runs(scratch):
    """Cases 7, 8 and 10: SIGTERM mid-run is "Interrupted" and leaves the output as it
    was; a second run on a prefix in use is one error line and touches nothing of the
    first's; a SIGKILLed run's staging folder is removed by the next run."""
    write_reviews(scratch / "in", "a.csv", 40)
    args = (*README_SCORE, "--batch_size=4")
    first, paused = start_paused("sst2.serve.client.scoring:ExportHandler.run_inference", 1,
                                 "sst2.score", *args, output_dir=str(scratch), cwd=scratch)
    assert paused, read_output(scratch)
    second = run_module("sst2.score", *args, cwd=scratch, process=True)
    assert second.returncode == 2 and error_lines(second.stderr) == [
        f"error: --output={scratch}/out/scored is in use by another run (pid {first.pid} "
        f"on {os.uname().nodename}, started " + error_lines(second.stderr)[0].split(
            "started ", 1)[1]], second.stderr[-2000:]
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 2
    _, err = read_output(scratch)
    assert error_lines(err) == ["error: Interrupted: out/scored is as it was before this run; "
                                "run the same command again to score the files."], err[-3000:]
    assert "Traceback" not in err and os.listdir(scratch / "out") == []

    killed, paused = start_paused("sst2.serve.client.scoring:ExportHandler.run_inference", 1,
                                  "sst2.score", *args, output_dir=str(scratch), cwd=scratch)
    assert paused
    killed.kill()
    killed.wait(timeout=60)
    assert [n for n in os.listdir(scratch / "out") if ".scoring-" in n]  # its staging
    status, out, err = score(scratch, *args)
    assert status == 0, err
    assert sorted(os.listdir(scratch / "out")) == ["scored-00000-of-00001.jsonl"]
    assert len({r["id"] for r in records(scratch / "out" / "scored")}) == 40


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs (root only, as CI runs): a disk that fills."""
    import subprocess

    folder = tmp_path / "full"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                      capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield folder
    # Lazily: the failed write's file may still be open in this process (its traceback).
    subprocess.run(["umount", "--lazy", str(folder)], check=True)


def test_a_full_disk_is_one_error_line(scratch, full_disk):
    """Case 7: the output's disk fills mid-run: one line naming it, nothing left there."""
    with open(scratch / "in" / "big.txt", "w") as f:
        f.writelines(f"review {i} is a really quite good film with many words in it\n"
                     for i in range(3000))
    status, _, err = score(scratch, "--export_dir=runs/sst2", "--input=in/big.txt",
                           f"--output={full_disk}/out/s")
    assert status == 2 and error_lines(err) == [
        "error: The scoring pipeline failed: No space left on device: writing "
        f"{full_disk}/out/s (free some space there, or point the run elsewhere)."], err
    assert os.listdir(full_disk / "out") == []
