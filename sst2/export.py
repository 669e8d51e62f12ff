"""Exports a trained run: a SavedModel whose `serving_default` takes raw strings, or an
OpenVINO artifact that answers without TensorFlow.

    python -m sst2.export --model_dir=runs/sst2                 # the best checkpoint
    python -m sst2.export --model_dir=runs/sst2 --checkpoint=latest
    python -m sst2.export --model_dir=runs/sst2 --format=openvino   # fastest here

Writes `<model_dir>/export/<version>/` (`--format=openvino`:
`<model_dir>/export_openvino/<version>/`), or under --export_root.
"""

import dataclasses
import importlib

from sst2 import cli
from sst2.run.command_config import ExplainConfig, ExportConfig, ReadingConfig
from sst2.run.errors import UserError

# What --format=openvino needs beyond sst2's own requirements.
OPENVINO_MODULES = ("openvino", "openvino_tokenizers", "nncf")


def main(config: ExportConfig, argv: list[str]) -> None:
    from sst2.run.runlock import RunLock
    from sst2.serve.trained import restore

    if config.format == "openvino":
        missing = [m for m in OPENVINO_MODULES if not _importable(m)]
        if missing:
            raise UserError(f"--format=openvino needs {', '.join(missing)}: "
                            "pip install 'sst2[openvino]'")
    # The run folder's lock: never a checkpoint a training run is still writing.
    with RunLock(config.model_dir, create=False):
        trained = restore(config.model_dir, config.checkpoint)
        if not config.calibrate:
            trained = dataclasses.replace(trained, temperature=None)
        elif trained.temperature is None:  # a run without one for this checkpoint
            from sst2.serve.calibrated import calibrate_run

            trained = calibrate_run(trained)
        if config.format == "openvino":
            from sst2.serve.openvino import export as openvino_export

            path = openvino_export.export_run(trained, config)
        else:
            path = trained.export(config.export_root, config.part(ReadingConfig),
                                  explaining=config.part(ExplainConfig))
    print(f"Exported {trained.checkpoint_path} to {path}")


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    cli.run(main, ExportConfig)
