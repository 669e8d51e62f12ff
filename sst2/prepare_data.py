"""Builds tfds `glue/sst2` from local GLUE SST-2 files, for offline use.

    python -m sst2.prepare_data --glue=path/to/SST-2.zip --data_dir=assets/tfds
    python -m sst2.prepare_data --glue=path/to/SST-2/ --data_dir=assets/tfds

Afterwards `sst2.train --data_dir=assets/tfds` reads it through tfds.load,
exactly as if tfds had downloaded it.
"""

from sst2 import cli  # noqa: F401  (first: sets TensorFlow's log level)

from absl import flags

from sst2 import data

flags.DEFINE_string("glue", None, "The official SST-2.zip, or a folder with train/dev/test.tsv.")
flags.DEFINE_string("data_dir", None, "tfds data dir to write into (tfds default if unset).")
flags.DEFINE_boolean("force", False, "Rebuild even if the dataset is already prepared.")
flags.mark_flag_as_required("glue")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    folder = data.prepare_glue_sst2(FLAGS.glue, FLAGS.data_dir, force=FLAGS.force)
    sizes = {split: data.split_size(split, FLAGS.data_dir) for split in data.SPLIT_FILES}
    print(f"glue/sst2 is ready in {folder}: "
          + ", ".join(f"{n:,} {split}" for split, n in sizes.items()))


if __name__ == "__main__":
    cli.run(main)
