"""Files written whole and only where they belong: never through a link at a temporary name."""

import os

from sst2.run.files import save_json, write_atomically


def test_a_link_at_a_temporary_name_is_never_written_through(tmp_path, outside):
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(outside, run / "metrics.json.tmp")
    save_json(str(run / "metrics.json"), {"epochs": []})
    os.symlink(outside, run / "SST-2.tsv.tmp")
    write_atomically(str(run / "SST-2.tsv"), lambda f: f.write("index\tprediction\n"))
    assert outside.read_text() == "keep me"
    assert (run / "SST-2.tsv").read_text() == "index\tprediction\n"
    assert not os.path.lexists(run / "SST-2.tsv.tmp")
