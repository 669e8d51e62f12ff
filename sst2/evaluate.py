"""Evaluates a trained run and writes GLUE's SST-2 submission file.

    python -m sst2.evaluate --model_dir=runs/sst2 [--data_dir=assets/tfds]

Reports validation loss and accuracy (best checkpoint by default) and writes
`<model_dir>/SST-2.tsv` (`index<TAB>prediction`, one row per test sentence).
"""

from sst2 import cli  # noqa: F401  (first: sets TensorFlow's log level)

from absl import flags

from sst2.experiment import evaluate, restore

cli.define_restore_flags("evaluate")
flags.DEFINE_string("data_dir", None, "tfds data dir (default: the run's own).")
flags.DEFINE_string("eval_split", "validation", "Labelled split to score.")
flags.DEFINE_string("output", None, "Submission file (default <model_dir>/SST-2.tsv).")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    trained = restore(FLAGS.model_dir, FLAGS.checkpoint)
    evaluate(trained, FLAGS.data_dir, eval_split=FLAGS.eval_split,
             submission_path=FLAGS.output)


if __name__ == "__main__":
    cli.run(main)
