"""A SavedModel that takes raw strings: tokenizer, backbone and head in one graph.

The `serving_default` signature takes `text` (`tf.string`, `[None]`) and returns
`probabilities` (`float32`, `[None, 2]`: negative, positive), `label_id`
(`int32`, `[None]`) and `label` (`string`, `[None]`). Loading it needs only
`tensorflow` and `tensorflow_text` (for the WordPiece ops), as TF Serving does.

Example:
    >>> from sst2.trained import restore
    >>> trained = restore(trained_dir, log=lambda message: None)
    >>> path = export_saved_model(trained.preprocessor, trained.backbone, trained.head,
    ...                           trained.spec, os.path.join(tmp_dir, "export"))
    >>> import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)
    >>> serve = tf.saved_model.load(path).signatures["serving_default"]
    >>> output = serve(text=tf.constant(["a gripping film", ""]))
    >>> output["probabilities"].shape, output["label"].dtype
    (TensorShape([2, 2]), tf.string)
"""

import os
import shutil
import time

import keras
import tensorflow as tf

from sst2.data import LABEL_NAMES
from sst2.backbone import FeatureSpec, pool_features


def make_predict_fn(preprocessor, backbone, head, spec: FeatureSpec):
    """The serving computation as a Python function of a batch of strings."""
    label_names = tf.constant(LABEL_NAMES)

    def predict(text):
        text = tf.reshape(tf.convert_to_tensor(text, tf.string), [-1])
        # Invalid UTF-8 would make the tokenizer raise; replace bad bytes with U+FFFD.
        text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace",
                                            replacement_char=0xFFFD)
        inputs = preprocessor(text)
        # The preprocessor turns an empty batch into one unbatched row; keep `batch` rows.
        batch, sequence_length = tf.shape(text)[0], preprocessor.sequence_length
        token_ids = tf.reshape(inputs["token_ids"], [-1, sequence_length])[:batch]
        padding_mask = tf.reshape(inputs["padding_mask"], [-1, sequence_length])[:batch]
        features = pool_features(backbone, token_ids, padding_mask, spec)
        if spec.token_level:
            features = {"tokens": features, "mask": tf.cast(padding_mask, tf.int32)}
        logits = tf.cast(head(features, training=False), tf.float32)
        probabilities = tf.nn.softmax(logits, axis=-1)
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {"probabilities": probabilities, "label_id": label_id,
                "label": tf.gather(label_names, label_id)}

    return predict


def export_saved_model(preprocessor, backbone, head, spec: FeatureSpec, export_root: str,
                       version: int | None = None) -> str:
    """Writes `<export_root>/<version>/` (default version: the Unix time) and returns it.

    The folder is written under a temporary name and renamed when complete, so
    a crash never leaves a half-written version for a server to pick up.
    """
    version = version if version is not None else int(time.time())
    path = os.path.join(export_root, str(version))
    tmp = os.path.join(export_root, f".{version}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(export_root, exist_ok=True)

    predict = make_predict_fn(preprocessor, backbone, head, spec)
    predict(tf.constant(["build"]))  # builds every layer, as export requires
    archive = keras.export.ExportArchive()
    for layer in (preprocessor, backbone, head):
        archive.track(layer)
    archive.add_endpoint(
        "serving_default", predict,
        input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    try:
        archive.write_out(tmp, verbose=False)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    except BaseException:  # a full disk, an interrupt: leave nothing half-written
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def latest_export(export_root: str) -> str | None:
    """The newest numbered version under `export_root`, as TF Serving would pick."""
    if not os.path.isdir(export_root):
        return None
    versions = [int(v) for v in os.listdir(export_root) if v.isdigit()]
    return os.path.join(export_root, str(max(versions))) if versions else None
