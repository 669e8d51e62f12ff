"""Trains a classifier head over a frozen DistilBERT on GLUE SST-2, or on your data.

    python -m sst2.train --epochs=3
    python -m sst2.train --preset=assets/minilm-distilbert --data_dir=assets/tfds
    python -m sst2.train --train_file=train.csv --eval_file=dev.csv --model_dir=runs/mine

Rerunning with the same --model_dir resumes from its latest checkpoint.
Every flag is an option of `sst2.run.config.TrainConfig`; `--helpfull` lists them.
"""

from sst2 import cli
from sst2.fit import compile_cache
from sst2.run.config import TrainConfig


def main(config: TrainConfig, argv: list[str]) -> None:
    from sst2.fit.training import run
    from sst2.serve.publish import actions

    run(config, actions=actions(config))


def checkpoints_intact(config: TrainConfig) -> str:
    """What a file error (a full disk) leaves safe: the checkpoints already saved."""
    import glob
    import os

    from sst2.run.run_folder import RunFolder

    saved = glob.glob(os.path.join(RunFolder(config.run.model_dir).checkpoints, "ckpt-*.index"))
    return " Checkpoints already saved are intact." if saved else ""


def before_tensorflow(config: TrainConfig) -> None:
    if config.run.compile_cache:
        compile_cache.enable()  # XLA reads its flags when TensorFlow starts


if __name__ == "__main__":
    cli.run(main, TrainConfig, before_tensorflow, after_file_error=checkpoints_intact)
