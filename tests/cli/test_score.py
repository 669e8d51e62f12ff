"""`sst2.score`: files scored on Apache Beam's DirectRunner with a SavedModel or an OpenVINO
artifact, every record answered once under its id, the answers the export's own, and
bad input an error record or one error line."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import REPO, error_lines, run_module

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def saved_model(trained_tiny_run, tmp_path_factory):
    from sst2.serve.trained import restore

    return restore(trained_tiny_run).export(
        str(tmp_path_factory.mktemp("score") / "export"), model_card=False)


def outputs(prefix) -> list:
    return [json.loads(line) for path in sorted(glob.glob(f"{prefix}-*-of-*.jsonl"))
            for line in open(path, encoding="utf-8")]


def test_every_line_is_answered_once_as_the_export_answers_it(saved_model, tmp_path):
    from sst2.predict import predict_lines

    inputs = tmp_path / "in"
    inputs.mkdir()
    files = {"a.txt": b"a great , charming film\nflat and dull\n\nthe plot is weak\n",
             "b.txt": b"not \xff valid utf-8\nfun\r\nmoving story"}  # no final newline
    for name, data in files.items():
        (inputs / name).write_bytes(data)
    result = run_module("sst2.score", f"--export_dir={saved_model}",
                        f"--input={inputs}/*.txt", f"--output={tmp_path}/out/scored",
                        "--num_shards=2", "--batch_size=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "out")) == ["scored-00000-of-00002.jsonl",
                                                    "scored-00001-of-00002.jsonl"]
    records = {r["id"]: r for r in outputs(tmp_path / "out" / "scored")}
    lines = {f"{inputs / name}:{i}": line for name, data in files.items()
             for i, line in enumerate(data.decode("utf-8", "replace").split("\n"), start=1)
             if i <= data.count(b"\n") + (not data.endswith(b"\n"))}
    assert len(outputs(tmp_path / "out" / "scored")) == len(records) == len(lines) == 7
    assert set(records) == set(lines)
    expected = list(predict_lines(saved_model, [line.removesuffix("\r")
                                                for line in lines.values()]))
    for (record_id, _), want in zip(lines.items(), expected):
        got = records[record_id]
        assert got["label"] == want["label"] and got["probabilities"] == want[
            "probabilities"], record_id


def test_columns_ids_and_unreadable_files_with_an_openvino_artifact(openvino_tiny_export,
                                                                     tmp_path):
    from sst2.serve.client.openvino_runtime import OpenVINOModel

    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "one.csv").write_text('rid,review\nr1,"great, fun"\nr2,dull\n', encoding="utf-8")
    (inputs / "two.jsonl").write_text('{"rid": 3, "review": "a moving story"}\n',
                                      encoding="utf-8")
    (inputs / "four.txt").write_text("")
    result = run_module("sst2.score", f"--export_dir={openvino_tiny_export}",
                        f"--input={inputs}/*", f"--output={tmp_path}/scored",
                        "--text_column=review", "--id_column=rid")
    assert result.returncode == 0, result.stderr[-3000:]
    records = {r["id"]: r for r in outputs(tmp_path / "scored")}
    assert set(records) == {"r1", "r2", "3", str(inputs / "four.txt")}
    assert records[str(inputs / "four.txt")]["error"] == "the file is empty"
    texts = ["great, fun", "dull", "a moving story"]
    model = OpenVINOModel(openvino_tiny_export)
    want = model(texts)["probabilities"]
    got = np.array([records[i]["probabilities"] for i in ("r1", "r2", "3")])
    # OpenVINO's bfloat16 kernels differ a little with a batch's other texts.
    np.testing.assert_allclose(got, want, atol=0.03)


def test_bad_input_is_one_error_line(openvino_tiny_export, tmp_path):
    nothing = run_module("sst2.score", f"--export_dir={openvino_tiny_export}",
                         f"--input={tmp_path}/none-*.txt", f"--output={tmp_path}/out")
    assert nothing.returncode == 2 and error_lines(nothing.stderr) == [
        f"error: --input={tmp_path}/none-*.txt matches no file."], nothing.stderr[-2000:]
    (tmp_path / "x.txt").write_text("fine\n")
    alien = tmp_path / "alien"
    alien.mkdir()
    (alien / "model.xml").write_text("<net/>")
    other = run_module("sst2.score", f"--export_dir={alien}", f"--input={tmp_path}/x.txt",
                       f"--output={tmp_path}/out")
    assert other.returncode == 2 and len(error_lines(other.stderr)) == 1
    assert "is not an sst2 export" in other.stderr
    stray = run_module("sst2.score", f"--export_dir={openvino_tiny_export}",
                       f"--input={tmp_path}/x.txt", f"--output={tmp_path}/out", "extra")
    assert stray.returncode == 2 and "follow a lone --" in stray.stderr
    missing = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['apache_beam'] = None; "
         "from sst2 import cli, score; from sst2.run.command_config import ScoreConfig; "
         f"sys.argv = ['sst2.score', '--export_dir={openvino_tiny_export}', "
         f"'--input={tmp_path}/x.txt', '--output={tmp_path}/out']; "
         "cli.run(score.main, ScoreConfig)"], capture_output=True, text=True, cwd=REPO,
        timeout=300)
    assert missing.returncode == 2 and error_lines(missing.stderr) == [
        "error: sst2.score needs Apache Beam (apache_beam is missing): "
        "pip install 'sst2[beam]'"], missing.stderr[-2000:]
    assert not glob.glob(f"{tmp_path}/out*") and not glob.glob(f"{tmp_path}/beam-temp-*")
