"""FastEncoder computes what the keras-hub DistilBERT layers compute."""

import collections
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.eager import context

from sst2.model import inference, presets
from sst2.model.backbone import FeatureSpec, hidden_states
from sst2.model.encoder import FeatureEncoder
from sst2.model.inference import FastEncoder
from tests.helpers import TINY_SEQUENCE_LENGTH

SENTENCES = ["good film", "the plot is very dull and flat and boring", "", "a charming story"]

# precision: CI runs these again with SST2_AUTO_PRECISION=bfloat16.
pytestmark = pytest.mark.precision


def _inputs(preset):
    x = presets.load_preprocessor(preset, TINY_SEQUENCE_LENGTH)(SENTENCES)
    return x["token_ids"], x["padding_mask"]


def test_float32_matches_keras_hub_every_layer(tiny_preset):
    token_ids, mask = _inputs(tiny_preset)
    backbone = presets.load_backbone(tiny_preset, "float32")
    reference = hidden_states(backbone, token_ids, mask)
    ours = FastEncoder(backbone)(token_ids, mask)
    real = mask.numpy().astype(bool)
    assert len(ours) == len(reference) == 3  # embeddings, then each layer
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(a.numpy()[real], b.numpy()[real], atol=2e-5)


def test_bfloat16_is_as_close_to_float32_as_keras_hub_bfloat16(tiny_preset):
    token_ids, mask = _inputs(tiny_preset)
    real = mask.numpy().astype(bool)
    exact = hidden_states(presets.load_backbone(tiny_preset, "float32"), token_ids, mask)[-1]
    bf16 = presets.load_backbone(tiny_preset, "bfloat16")
    keras_error = np.abs((tf.cast(hidden_states(bf16, token_ids, mask)[-1], tf.float32)
                          - exact).numpy())[real].mean()
    fast_error = np.abs((FastEncoder(bf16)(token_ids, mask)[-1] - exact).numpy())[real].mean()
    assert fast_error <= 1.5 * keras_error + 1e-4, (fast_error, keras_error)


def test_padding_does_not_change_real_positions(tiny_preset):
    token_ids, mask = _inputs(tiny_preset)
    encoder = FastEncoder(presets.load_backbone(tiny_preset, "float32"))
    short = encoder(token_ids[:, :12], mask[:, :12])[-1].numpy()
    full = encoder(token_ids, mask)[-1].numpy()
    real = mask.numpy()[:, :12].astype(bool)
    np.testing.assert_allclose(short[real], full[:, :12][real], atol=2e-5)


@pytest.mark.parametrize("shape", [(5, 16), (3, 4, 16)])
def test_fused_layer_norm_equals_moments_form(shape):
    x = tf.random.stateless_normal(shape, seed=[1, 2]) * 3.0 + 1.0
    gamma, beta = tf.linspace(0.5, 1.5, 16), tf.linspace(-1.0, 1.0, 16)
    np.testing.assert_allclose(inference.fused_layer_norm(x, gamma, beta, 1e-12).numpy(),
                               inference.moments_layer_norm(x, gamma, beta, 1e-12).numpy(),
                               atol=1e-5)


def test_encoder_states_do_not_depend_on_the_layer_norm_form(tiny_preset):
    token_ids, mask = _inputs(tiny_preset)
    backbone = presets.load_backbone(tiny_preset, "float32")
    real = mask.numpy().astype(bool)
    fused = FastEncoder(backbone, fuse_layer_norm=True)(token_ids, mask)
    separate = FastEncoder(backbone, fuse_layer_norm=False)(token_ids, mask)
    for a, b in zip(fused, separate):
        np.testing.assert_allclose(a.numpy()[real], b.numpy()[real], atol=2e-5)


def _kernels_run(fn, *args) -> collections.Counter:
    """The ops of the graphs TensorFlow ran for `fn(*args)`, after its rewrites."""
    context.context().enable_run_metadata()
    try:
        fn(*args)
        metadata = context.context().export_run_metadata()
    finally:
        context.context().disable_run_metadata()
    return collections.Counter(node.op for graph in metadata.function_graphs
                               for partition in graph.partition_graphs for node in partition.node)


def test_every_layer_norm_runs_as_one_onednn_kernel(tiny_preset):
    """The point of the fused form: TensorFlow's oneDNN remapper turns each LayerNorm
    into one `_MklLayerNorm` kernel in the encode pass's graph (a TensorFlow upgrade
    that stops matching the pattern fails here, not silently in speed)."""
    if not inference.onednn_fuses():
        pytest.skip("oneDNN's rewrites are off in this TensorFlow build")
    backbone = presets.load_backbone(tiny_preset, "float32")
    encode = FeatureEncoder.for_backbone(backbone, FeatureSpec("mean", "all"),
                                         jit_compile=False)  # the encode pass's function
    kernels = _kernels_run(encode, *[tf.cast(x, tf.int32) for x in _inputs(tiny_preset)])
    assert kernels["_MklLayerNorm"] == 1 + 2 * backbone.num_layers, kernels
    # Each linear layer's matmul with its bias (and GELU): one fused kernel, 4 a layer;
    # each attention's softmax one oneDNN kernel.
    fused = sum(n for op, n in kernels.items() if op.endswith("FusedMatMul"))
    assert fused == 4 * backbone.num_layers, kernels
    assert kernels["_MklSoftmax"] == backbone.num_layers, kernels


def test_sst2_runs_tensorflow_with_onednn_on_where_it_is_off_by_default():
    """TensorFlow turns oneDNN's rewrites on by itself only on newer CPUs; importing sst2
    first turns them on everywhere (unless TF_ENABLE_ONEDNN_OPTS says otherwise), and
    keeps XLA's own CPU matmuls (its steps with oneDNN's took 2x as long)."""
    import sst2  # noqa: F401

    assert "--xla_cpu_use_onednn=false" in os.environ["XLA_FLAGS"]
    import subprocess
    import sys

    check = ("import sst2, tensorflow; from tensorflow.python.util._pywrap_util_port "
             "import IsMklEnabled; print(IsMklEnabled())")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    for setting, expected in ((None, "True"), ("0", "False")):
        out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                             env=dict(env, **({"TF_ENABLE_ONEDNN_OPTS": setting} if setting
                                              else {})), timeout=300)
        assert out.stdout.strip().splitlines()[-1] == expected, out.stderr[-2000:]
