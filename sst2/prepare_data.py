"""Builds tfds `glue/sst2` (or another GLUE task) from local GLUE files, for offline use.

    python -m sst2.prepare_data --data_dir=assets/tfds                # the embedded copy
    python -m sst2.prepare_data --glue=path/to/SST-2.zip --data_dir=assets/tfds
    python -m sst2.prepare_data --glue=path/to/SST-2/ --data_dir=assets/tfds
    python -m sst2.prepare_data --dataset=glue/stsb --glue=path/to/STS-B/ --data_dir=...

Afterwards `sst2.train --data_dir=assets/tfds` reads it through tfds.load,
exactly as if tfds had downloaded it.
"""

from sst2 import cli
from sst2.run.command_config import PrepareDataConfig


def main(config: PrepareDataConfig, argv: list[str]) -> None:
    from sst2.text import glue

    if config.dataset != glue.DATASET_NAME:
        from sst2.run.errors import UserError
        from sst2.text.glue_local import prepare_glue_task

        if not config.glue:
            raise UserError(f"--dataset={config.dataset}: name the folder of its GLUE files "
                            "with --glue=...")
        print(f"{config.dataset} is ready in "
              f"{prepare_glue_task(config.dataset, config.glue, config.data_dir)}")
        return
    folder = glue.prepare_glue_sst2(config.glue, config.data_dir, force=config.force)
    sizes = {split: glue.split_size(split, config.data_dir) for split in glue.SPLIT_FILES}
    print(f"glue/sst2 is ready in {folder}: "
          + ", ".join(f"{n:,} {split}" for split, n in sizes.items()))


if __name__ == "__main__":
    cli.run(main, PrepareDataConfig)
