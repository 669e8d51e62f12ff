"""Evaluation reads the data a run names, never preparing it where only config.json points."""

import pytest

from sst2.run.errors import UserError


@pytest.mark.slow  # reads a trained run
def test_evaluate_never_prepares_data_where_only_config_json_points(trained_tiny_run,
                                                                    tmp_path):
    # Issue 25, case 5: a crafted config.json data_dir made evaluate build a dataset there.
    import json
    import shutil

    from sst2.serve.evaluation import evaluate
    from sst2.serve.trained import restore

    run = tmp_path / "run"
    shutil.copytree(trained_tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    config["data"]["data_dir"] = str(tmp_path / "elsewhere")
    (run / "config.json").write_text(json.dumps(config))
    trained = restore(str(run))
    with pytest.raises(UserError, match="is not prepared in .*elsewhere.* Pass --data_dir"):
        evaluate(trained)
    assert not (tmp_path / "elsewhere").exists()
