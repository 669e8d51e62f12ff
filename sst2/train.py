"""Trains a classifier head over a frozen DistilBERT on GLUE SST-2.

    python -m sst2.train --epochs=3
    python -m sst2.train --preset=assets/minilm-distilbert --data_dir=assets/tfds

Rerunning with the same --model_dir resumes from its latest checkpoint.
"""

from sst2 import cli  # noqa: F401  (first: sets TensorFlow's log level)

from absl import flags

from sst2.experiment import TrainConfig, run

_D = TrainConfig()
flags.DEFINE_string("model_dir", _D.model_dir, "Checkpoints, summaries, metrics.json, export.")
flags.DEFINE_string("preset", _D.preset, "keras-hub preset name, local keras-hub preset folder, "
                    "local Hugging Face DistilBERT folder, or hf:// handle.")
flags.DEFINE_string("data_dir", None, "tfds data dir holding glue/sst2 (tfds default if unset).")
flags.DEFINE_string("train_split", _D.train_split, "tfds split to train on, e.g. train[:4096].")
flags.DEFINE_string("eval_split", _D.eval_split, "tfds split to validate on.")
flags.DEFINE_integer("epochs", _D.epochs, "Training epochs.")
flags.DEFINE_integer("batch_size", _D.batch_size,
                     "Batch size per replica; the global batch is this times the replicas.")
flags.DEFINE_float("learning_rate", _D.learning_rate,
                   "Adam learning rate of the head's new layers (default: 1e-3).")
flags.DEFINE_float("backbone_learning_rate", _D.backbone_learning_rate,
                   "Adam learning rate of the unfrozen backbone layers, with "
                   "--trainable_layers (default: 2e-4).")
flags.DEFINE_enum("lr_schedule", _D.lr_schedule, ["constant", "linear"],
                  "constant, or linear decay to 0 over all epochs' steps.")
flags.DEFINE_float("ema_decay", _D.ema_decay,
                   "Evaluate and export an exponential moving average of the trained weights "
                   "with this decay per step, e.g. 0.999 (0: off, the raw weights).")
flags.DEFINE_float("rdrop_alpha", _D.rdrop_alpha,
                   "R-Drop: run each batch twice with different dropout and add this weight "
                   "times the two predictions' KL divergence, e.g. 1 (0: off).")
flags.DEFINE_integer("seed", _D.seed, "Seed for initialization, shuffling and dropout.")
flags.DEFINE_integer("sequence_length", _D.sequence_length, "Tokens per sentence, at most.")
flags.DEFINE_enum("precision", _D.precision, ["auto", "float32", "bfloat16"],
                  "Backbone compute precision; auto picks the fastest for this hardware.")
flags.DEFINE_enum("pooling", _D.pooling, ["cls", "mean", "cls_mean", "attention"],
                  "How the head pools a layer: [CLS], mean over real tokens, both, or learned "
                  "attention over tokens (caches token-level features).")
flags.DEFINE_enum("layers", _D.layers, ["last", "all"], "Which backbone layers the head reads.")
flags.DEFINE_integer("head_hidden", _D.head_hidden, "Hidden units in the head; 0 = one dense layer.")
flags.DEFINE_integer("head_layers", _D.head_layers,
                     "New transformer blocks in the head, over cached token features.")
flags.DEFINE_integer("trainable_layers", _D.trainable_layers,
                     "Unfreeze the backbone's top N layers (the cache stops below them).")
flags.DEFINE_float("dropout", _D.dropout, "Dropout rate in the head.")
flags.DEFINE_boolean("cache_features", _D.cache_features,
                     "Run the frozen backbone once and cache its features (false: every step).")
flags.DEFINE_string("cache_dir", None, "Feature cache folder (default: <model_dir>/feature_cache).")
flags.DEFINE_integer("encode_batch_size", _D.encode_batch_size, "Sentences per backbone call.")
flags.DEFINE_boolean("jit_compile", _D.jit_compile,
                     "XLA-compile the train and eval steps (on CPU, not for heads with "
                     "transformer blocks: oneDNN is faster there).")
flags.DEFINE_enum("strategy", _D.strategy, ["auto", "one_device", "mirrored", "multi_worker", "tpu"],
                  "tf.distribute strategy; multi_worker reads TF_CONFIG.")
flags.DEFINE_string("tpu", None, "TPU address or name for --strategy=tpu.")
flags.DEFINE_integer("checkpoint_every_steps", _D.checkpoint_every_steps,
                     "Save a checkpoint every N steps (and at every epoch end).")
flags.DEFINE_integer("keep_checkpoints", _D.keep_checkpoints, "Rolling checkpoints to keep.")
flags.DEFINE_boolean("restart", False, "Ignore existing checkpoints in --model_dir; start fresh.")
flags.DEFINE_boolean("download", True, "Allow downloading the dataset through tfds.")
flags.DEFINE_boolean("export", True, "Export the best checkpoint as a SavedModel at the end.")
flags.DEFINE_boolean("progress", True, "Show progress bars.")

FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    config = TrainConfig(**{
        field: getattr(FLAGS, field) for field in TrainConfig.__dataclass_fields__
        if field in FLAGS and field != "show_progress"
    }, show_progress=FLAGS.progress)
    run(config)


if __name__ == "__main__":
    cli.run(main)
