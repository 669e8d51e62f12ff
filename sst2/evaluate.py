"""Evaluates a trained run; for a GLUE dataset, writes its submission file.

    python -m sst2.evaluate --model_dir=runs/sst2 [--data_dir=assets/tfds]
    python -m sst2.evaluate --model_dir=runs/mine --eval_file=new_reviews.csv \
        [--test_file=unlabelled.csv]

Reports validation loss, accuracy, macro-F1 and Matthews correlation (best
checkpoint by default) on the run's own validation data, or on another split
or labelled file. For GLUE SST-2 it also writes `<model_dir>/SST-2.tsv`
(`index<TAB>prediction`, one row per test sentence); for local files, it
predicts the `--test_file` into `<model_dir>/predictions.jsonl`.
"""

from sst2 import cli
from sst2.run.command_config import EvaluateConfig, ReadingConfig


def main(config: EvaluateConfig, argv: list[str]) -> None:
    from sst2.run.runlock import RunLock
    from sst2.serve.evaluation import evaluate
    from sst2.serve.trained import restore

    # The run folder's lock: never a checkpoint a training run is still writing, and one
    # writer of the files it writes there at a time.
    with RunLock(config.model_dir, create=False):
        trained = restore(config.model_dir, config.checkpoint)
        evaluate(trained, config.data_dir, eval_split=config.eval_split,
                 submission_path=config.output, reading=config.part(ReadingConfig),
                 eval_file=config.eval_file, test_file=config.test_file)
        if config.report:
            from sst2.serve.report import write_report

            print(f"Report: {write_report(trained)}")


if __name__ == "__main__":
    cli.run(main, EvaluateConfig)
