"""Writes a keras-hub DistilBERT preset folder with random weights, for timing.

A random backbone costs the same FLOPs as a pretrained one of its size, so it
measures speed where the pretrained weights cannot be downloaded. `--size=base`
is DistilBERT-base (6 layers, 768 wide, 12 heads, 3072 FFN); `--size=tiny` is
a 2-layer, 16-wide model for tests. The vocabulary comes from --vocab (e.g. the
stand-in's `vocab.txt`).

    python scripts/build_random_preset.py --size=base \\
        --vocab=assets/minilm-distilbert/vocab.txt --output=assets/distilbert-base-random
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

SIZES = {
    "base": dict(num_layers=6, num_heads=12, hidden_dim=768, intermediate_dim=3072),
    "tiny": dict(num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32),
}


def build_random_preset(output: str, vocab_file: str, size: str = "base", seed: int = 0) -> str:
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    with open(vocab_file) as f:
        vocabulary = [line.rstrip("\n") for line in f]
    tokenizer = keras_hub.models.DistilBertTokenizer(vocabulary=vocabulary)
    preprocessor = keras_hub.models.DistilBertTextClassifierPreprocessor(tokenizer)
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=len(vocabulary), max_sequence_length=512, **SIZES[size])
    os.makedirs(output, exist_ok=True)
    backbone.save_to_preset(output)
    preprocessor.save_to_preset(output)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--vocab", required=True, help="a WordPiece vocab.txt")
    parser.add_argument("--size", choices=sorted(SIZES), default="base")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(build_random_preset(args.output, args.vocab, args.size, args.seed))


if __name__ == "__main__":
    main()
