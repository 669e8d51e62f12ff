"""Exports a trained run as a SavedModel whose `serving_default` takes raw strings.

    python -m sst2.export --model_dir=runs/sst2                 # the best checkpoint
    python -m sst2.export --model_dir=runs/sst2 --checkpoint=latest

Writes `<model_dir>/export/<version>/` (or under --export_root).
"""

from sst2 import cli
from sst2.run.config import ExportConfig


def main(config: ExportConfig, argv: list[str]) -> None:
    from sst2.run.runlock import RunLock
    from sst2.serve.trained import restore

    # The run folder's lock: never a checkpoint a training run is still writing.
    with RunLock(config.model_dir, create=False):
        trained = restore(config.model_dir, config.checkpoint)
        if not config.calibrate:
            trained.temperature = None
        elif trained.temperature is None:  # a run without one for this checkpoint
            from sst2.serve.calibrated import calibrate_run

            calibrate_run(trained)
        path = trained.export(config.export_root, config)
    print(f"Exported {trained.checkpoint_path} to {path}")


if __name__ == "__main__":
    cli.run(main, ExportConfig)
