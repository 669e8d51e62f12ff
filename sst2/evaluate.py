"""Evaluates a trained run and writes GLUE's SST-2 submission file.

    python -m sst2.evaluate --model_dir=runs/sst2 [--data_dir=assets/tfds]

Reports validation loss and accuracy (best checkpoint by default) and writes
`<model_dir>/SST-2.tsv` (`index<TAB>prediction`, one row per test sentence).
"""

from sst2 import cli
from sst2.config import EvaluateConfig


def main(config: EvaluateConfig, argv: list[str]) -> None:
    from sst2.trained import evaluate, restore

    trained = restore(config.model_dir, config.checkpoint)
    evaluate(trained, config.data_dir, eval_split=config.eval_split,
             submission_path=config.output, reading=config)


if __name__ == "__main__":
    cli.run(main, EvaluateConfig)
