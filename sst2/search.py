"""Searches heads over the cached features: many trained together, the best exported.

    python -m sst2.search --model_dir=runs/search                      # the default space
    python -m sst2.search --learning_rate=1e-3,3e-3 --dropout=0.1,0.3 --head_hidden=256,512
    python -m sst2.search --train_file=train.csv --eval_file=dev.csv --ensemble=3

Takes every flag of `sst2.train`; the searchable ones (learning_rate, dropout,
head_hidden, pooling, layers, seed) take comma-separated values, and every
combination is a configuration (none given as a list: a default space of
16, one shape: four learning rates, two dropouts, two seeds). Configurations
that read the same features train together, in one compiled step per batch.
Writes the leaderboard (`leaderboard.json`, `leaderboard.csv`, TensorBoard's
HParams in `hparams/`), the best head as a run of its own (`best_run/`) and
its export (or, with `--ensemble=K`, the mean of the top K heads). Rerunning
the same command resumes the search.
"""

from sst2 import cli
from sst2.fit import compile_cache
from sst2.run.search_config import SearchConfig


def main(config: SearchConfig, argv: list[str]) -> None:
    from sst2.head_search.searching import run_search

    run_search(config)


def before_tensorflow(config: SearchConfig) -> None:
    if config.run.compile_cache:
        compile_cache.enable()


if __name__ == "__main__":
    cli.run(main, SearchConfig, before_tensorflow)
