"""sst2.search: heads trained together equal heads trained alone, the leaderboard and its
files, the best head as a run, an ensemble's answer, exact resume after a kill, and the
search space's checks."""

import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from sst2.run.errors import UserError
from sst2.run.search_config import SearchConfig, parse_space
from tests.helpers import REPO, TINY_SEQUENCE_LENGTH, read_output, run_module, start_paused


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _args(preset, data_dir, model_dir, *more):
    return [f"--preset={preset}", f"--data_dir={data_dir}", f"--model_dir={model_dir}",
            f"--sequence_length={TINY_SEQUENCE_LENGTH}", "--batch_size=8", "--epochs=2",
            "--pooling=mean", "--head_hidden=8", "--lr_schedule=constant", "--noprogress",
            "--checkpoint_every_steps=8", "--precision=float32", *more]


# Two head shapes (two stacks), two learning rates, two seeds: 8 configurations.
SPACE = ["--learning_rate=0.01,0.003", "--head_hidden=8,4", "--seed=0,1"]


def test_the_space_is_checked_before_any_work():
    with pytest.raises(UserError, match="'epochs' cannot be searched"):
        parse_space({"epochs": "1,2"})
    with pytest.raises(UserError, match="--learning_rate=0.001,abc: every value must be a float"):
        parse_space({"learning_rate": "0.001,abc"})
    with pytest.raises(UserError, match="distinct"):
        parse_space({"seed": "1,1"})
    assert parse_space({"pooling": "mean,attention"}) == {"pooling": ["mean", "attention"]}
    with pytest.raises(UserError, match="weight average or R-Drop"):
        SearchConfig(optimization=SearchConfig().optimization.__class__(ema_decay=0.9))


def test_a_bad_value_in_a_list_is_one_error_line(tmp_path):
    result = run_module("sst2.search", f"--model_dir={tmp_path}", "--dropout=0.1,1.5")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: --dropout=1.5 is out of range: it must be at least 0 and below 1."]
    assert not os.path.exists(tmp_path / "search.json")


@pytest.fixture(scope="session")
def searched(tiny_preset, tiny_data_dir, tmp_path_factory):
    """One uninterrupted search, built once for every xdist worker: its folder, its log."""
    from pathlib import Path

    from tests.conftest import _shared

    def build(folder):
        result = run_module("sst2.search", *_args(tiny_preset, tiny_data_dir,
                                                  os.path.join(folder, "search"), *SPACE))
        assert result.returncode == 0, result.stderr[-3000:]
        with open(os.path.join(folder, "output.txt"), "w") as f:
            f.write(result.stdout)

    folder = Path(_shared(tmp_path_factory, "search", build))
    return folder / "search", (folder / "output.txt").read_text()


@pytest.mark.slow
def test_heads_trained_together_are_the_heads_trained_alone(tiny_preset, tiny_data_dir,
                                                             searched, tmp_path):
    """A configuration trained with seven others in one step (two stacks of heads, one
    per width) gets the validation metrics it gets from sst2.train, whichever its place
    (the batches follow the first seed, 0: configurations of seed 0 see the batches
    `sst2.train --seed=0` sees)."""
    search, output = searched
    assert "Searching 8 configurations in 1 group(s)" in output
    rows = load_json(search / "leaderboard.json")
    assert [r["rank"] for r in rows] == list(range(1, 9))
    scores = [r["best"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    for lr, hidden, seed in ((0.01, 8, 0), (0.003, 4, 0)):
        alone = tmp_path / f"alone-{lr}-{hidden}"
        result = run_module("sst2.train", *_args(tiny_preset, tiny_data_dir, alone,
                                                 f"--learning_rate={lr}", "--noexport",
                                                 f"--head_hidden={hidden}", f"--seed={seed}"))
        assert result.returncode == 0, result.stderr[-3000:]
        epochs = load_json(alone / "metrics.json")["epochs"]
        (row,) = [r for r in rows if r["config"]["learning_rate"] == lr and
                  r["config"]["head_hidden"] == hidden and r["config"]["seed"] == seed]
        for together, by_itself in zip(row["epochs"], epochs):
            for name in ("loss", "accuracy", "macro_f1", "mcc"):
                assert together[name] == pytest.approx(by_itself[f"val_{name}"], abs=2e-5)
    # The files a user reads.
    with open(search / "leaderboard.csv") as f:
        table = list(csv.DictReader(f))
    assert [int(r["rank"]) for r in table] == list(range(1, 9))
    assert float(table[0]["best"]) == rows[0]["best"]
    assert len(os.listdir(search / "hparams")) == 8 and "rank  learning_rate" in output
    # The best head is a run of its own: sst2.evaluate scores it.
    best_run = search / "best_run"
    assert load_json(best_run / "config.json")["optimization"]["learning_rate"] == (
        rows[0]["config"]["learning_rate"])
    evaluated = run_module("sst2.evaluate", f"--model_dir={best_run}")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert f"accuracy {rows[0]['best']:.4f}" in evaluated.stdout


@pytest.mark.slow
def test_an_ensemble_export_answers_the_mean_of_its_heads(tiny_preset, tiny_data_dir, tmp_path):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from sst2.head_search.best import _restore_group
    from sst2.head_search.head_group import MeanOfHeads
    from sst2.head_search.searching import run_search
    from sst2.run.config import DataConfig, ModelConfig, OptimizationConfig, RunConfig
    from sst2.serve.graph.serving import make_predict_fn

    config = SearchConfig(
        data=DataConfig(data_dir=tiny_data_dir),
        model=ModelConfig(preset=tiny_preset, sequence_length=TINY_SEQUENCE_LENGTH,
                          pooling="mean", head_hidden=8),
        optimization=OptimizationConfig(epochs=2, batch_size=8),
        run=RunConfig(model_dir=str(tmp_path), progress=False),
        search=SearchConfig().search.__class__(ensemble=3),
        space={"learning_rate": [0.01, 0.003], "seed": [0, 1]})
    result = run_search(config)
    plan = load_json(tmp_path / "search.json")
    best = result["best"]
    assert len(best["export_heads"]) == 3 and best["export_heads"][0] == best["head"]
    restored = _restore_group(str(tmp_path / "groups" / str(best["group"])),
                              [plan["configurations"][i] for i in plan["groups"][0]])
    _, info, preprocessor, backbone, heads, _, _, _ = restored
    from sst2.model.backbone import FeatureSpec

    spec = FeatureSpec("mean", "all")
    texts = tf.constant(["a good film", "dull and slow", ""])
    alone = [make_predict_fn(preprocessor, backbone, heads[h], spec, dataset=info)(texts)
             ["probabilities"].numpy() for h in best["export_heads"]]
    from sst2.serve.temperature import scaled

    served = tf.saved_model.load(result["export_dir"]).signatures["serving_default"]
    # The mean of the heads' probabilities, at the temperature fitted for the ensemble.
    temperature = load_json(os.path.join(result["export_dir"], "assets.extra",
                                         "sst2.json"))["temperature"]
    assert temperature > 0
    np.testing.assert_allclose(served(text=texts)["probabilities"].numpy(),
                               scaled(np.mean(alone, axis=0), temperature), atol=1e-5)
    ensemble = MeanOfHeads([heads[h] for h in best["export_heads"]], "single_label")
    np.testing.assert_allclose(
        make_predict_fn(preprocessor, backbone, ensemble, spec, dataset=info)(texts)
        ["probabilities"].numpy(), np.mean(alone, axis=0), atol=1e-6)


def _latest_step(folder):
    state = os.path.join(folder, "groups", "0", "checkpoints", "checkpoint")
    if not os.path.exists(state):
        return -1
    with open(state) as f:
        return int(f.readline().rsplit("-", 1)[1].strip().strip('"'))


@pytest.mark.slow
def test_a_killed_search_resumes_bit_for_bit(tiny_preset, tiny_data_dir, searched, tmp_path):
    straight, _ = searched
    # 32 steps an epoch, a checkpoint every 8: killed in the second epoch, paused right
    # after its sixth save (steps 8, 16, 24, 32, the epoch's end, 40; no race).
    killed = tmp_path / "killed"
    process, paused = start_paused("sst2.fit.checkpoint:RunCheckpoint.save", 6, "sst2.search",
                                   *_args(tiny_preset, tiny_data_dir, killed, *SPACE),
                                   output_dir=str(tmp_path))
    assert paused, read_output(str(tmp_path))[1][-3000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL and _latest_step(killed) == 40
    result = run_module("sst2.search", *_args(tiny_preset, tiny_data_dir, killed, *SPACE))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming the search" in result.stdout and "Resuming from step" in result.stdout

    def rows(folder):
        return [{k: v for k, v in r.items() if "seconds" not in k}
                for r in load_json(folder / "leaderboard.json")]

    assert rows(killed) == rows(straight)
    assert load_json(killed / "best_run" / "metrics.json")["epochs"] == load_json(
        straight / "best_run" / "metrics.json")["epochs"]


@pytest.mark.parametrize("schedule", ["constant", "linear"])
def test_stacked_adam_is_keras_adam_per_head(schedule):
    import keras
    import tensorflow as tf

    from sst2.fit.optimization import learning_rate
    from sst2.head_search.stacked_heads import StackedAdam

    rng = np.random.default_rng(0)
    start = rng.standard_normal((2, 3, 4)).astype(np.float32)
    stacked = tf.Variable(start)
    alone = [tf.Variable(start[k]) for k in range(2)]
    rates = [1e-2, 3e-3]
    ours = StackedAdam(rates, [schedule] * 2, total_steps=5)
    ours.build([stacked])
    theirs = [keras.optimizers.Adam(learning_rate(r, schedule, 5)) for r in rates]
    for optimizer, variable in zip(theirs, alone):
        optimizer.build([variable])
    for _ in range(7):
        gradient = rng.standard_normal((2, 3, 4)).astype(np.float32)
        ours.apply_gradients([(tf.constant(gradient), stacked)])
        for k in range(2):
            theirs[k].apply_gradients([(tf.constant(gradient[k]), alone[k])])
    for k in range(2):
        np.testing.assert_allclose(stacked.numpy()[k], alone[k].numpy(), rtol=1e-6, atol=1e-7)


def test_head_stacks_answer_in_the_heads_order():
    import tensorflow as tf

    from sst2.head_search.stacked_heads import HeadStacks
    from sst2.model.head import ClassifierHead

    heads = [ClassifierHead(hidden_units=h, seed=i) for i, h in enumerate((4, 0, 4, 8))]
    features = tf.random.normal([3, 2, 6])
    expected = [head(features).numpy() for head in heads]
    stacks = HeadStacks(heads)
    assert len(stacks.stacks) == 3
    np.testing.assert_allclose(stacks(features).numpy(), np.stack(expected), atol=1e-6)


SEARCH_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from sst2.head_search.searching import run_search
from sst2.run.config import DataConfig, ModelConfig, OptimizationConfig, RunConfig
from sst2.run.search_config import SearchConfig
strategy, batch = sys.argv[2], int(sys.argv[3])
config = SearchConfig(
    data=DataConfig(data_dir=sys.argv[5]),
    model=ModelConfig(preset=sys.argv[4], sequence_length=16, pooling="mean", dropout=0.0,
                      precision="float32"),
    optimization=OptimizationConfig(epochs=2, batch_size=batch),
    run=RunConfig(model_dir=sys.argv[6], progress=False, export=False, strategy=strategy),
    space={"learning_rate": [0.01, 0.003], "head_hidden": [8, 4]})
rows = run_search(config)["leaderboard"]
print(json.dumps([[r["configuration"], [e["loss"] for e in r["epochs"]]] for r in rows]))
"""


@pytest.mark.slow
def test_a_search_over_two_replicas_matches_one_device(tiny_preset, tiny_data_dir, tmp_path):
    found = {}
    for strategy, batch in (("one_device", 16), ("mirrored", 8)):  # the same global batch
        out = subprocess.run([sys.executable, "-c", SEARCH_SCRIPT, REPO, strategy, str(batch),
                              tiny_preset, tiny_data_dir, str(tmp_path / strategy)],
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        found[strategy] = dict((c, losses) for c, losses in
                               json.loads(out.stdout.strip().splitlines()[-1]))
    assert found["one_device"].keys() == found["mirrored"].keys() == {0, 1, 2, 3}
    for configuration, losses in found["one_device"].items():
        np.testing.assert_allclose(found["mirrored"][configuration], losses, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["multi_label", "regression"])
def test_a_search_of_other_targets_ranks_by_their_metric_and_exports_their_answers(
        tiny_preset, tmp_path, task):
    data = os.path.join(REPO, "tests", "data", "goemotions" if task == "multi_label" else "stsb")
    files = ([f"--train_file={data}/train.tsv", f"--eval_file={data}/dev.tsv",
              f"--label_names_file={data}/labels.txt"] if task == "multi_label" else
             [f"--train_file={data}/train.tsv", f"--eval_file={data}/dev.tsv",
              "--text_column=sentence1,sentence2", "--label_column=score"])
    result = run_module("sst2.search", *files, f"--preset={tiny_preset}",
                        f"--model_dir={tmp_path}", f"--sequence_length={TINY_SEQUENCE_LENGTH}",
                        "--epochs=2", "--learning_rate=0.01,0.003", "--head_hidden=8,4",
                        "--ensemble=2", "--noprogress", "--noreport")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = load_json(tmp_path / "leaderboard.json")
    metric = "macro_f1" if task == "multi_label" else "pearson"
    assert len(rows) == 4 and {r["metric"] for r in rows} == {metric}
    assert [r["best"] for r in rows] == sorted((r["best"] for r in rows), reverse=True)
    (version,) = os.listdir(tmp_path / "export")
    facts = load_json(tmp_path / "export" / version / "assets.extra" / "sst2.json")
    assert facts["task"] == task
    assert facts["outputs"] == (["probabilities", "predicted", "labels"]
                                if task == "multi_label" else ["score"])


@pytest.mark.slow  # trains two runs
def test_a_head_of_another_seed_starts_where_that_seed_alone_builds_its_head(
        tiny_preset, tiny_data_dir, tmp_path):
    """A group's head of seed S is built from the random state `sst2.train --seed=S` builds
    its head from (the state right after the run seeds itself again, once the frozen
    model has loaded), whatever loading the model drew."""
    import random

    from sst2.fit import training
    from sst2.head_search.groups import _initial_random_states
    from sst2.run.config import TrainConfig

    def config(seed):
        return TrainConfig.from_options(
            model_dir=str(tmp_path / str(seed)), preset=tiny_preset, data_dir=tiny_data_dir,
            epochs=1, batch_size=16, sequence_length=TINY_SEQUENCE_LENGTH, seed=seed,
            pooling="mean", head_hidden=8, precision="float32", progress=False, export=False)

    at_build = {}

    def recording(run_config, *args):
        at_build[run_config.optimization.seed] = random.getstate()
        return training._build_trainer(run_config, *args)

    training.run(config(1), build_trainer=recording)
    training.run(config(0), build_trainer=recording)
    random.setstate(at_build[0])  # where a search of base seed 0 builds its group
    states = _initial_random_states(config(0), {0, 1})
    assert states[0] == at_build[0] and states["after"] == at_build[0]
    assert states[1] == at_build[1]
