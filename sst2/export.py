"""Exports a trained run as a SavedModel whose `serving_default` takes raw strings.

    python -m sst2.export --model_dir=runs/sst2                 # the best checkpoint
    python -m sst2.export --model_dir=runs/sst2 --checkpoint=latest

Writes `<model_dir>/export/<version>/` (or under --export_root).
"""

from sst2 import cli  # noqa: F401  (first: sets TensorFlow's log level)

from absl import flags

from sst2.experiment import restore

cli.define_restore_flags("export")
flags.DEFINE_string("export_root", None, "Where to write versions (default <model_dir>/export).")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    trained = restore(FLAGS.model_dir, FLAGS.checkpoint)
    path = trained.export(FLAGS.export_root)
    print(f"Exported {trained.checkpoint_path} to {path}")


if __name__ == "__main__":
    cli.run(main)
