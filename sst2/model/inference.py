"""A fast, inference-only forward pass of a keras-hub DistilBERT backbone, for CPUs.

On CPU, oneDNN runs bfloat16 matmuls at ~2x float32 and fuses `MatMul +
BiasAdd + GELU` into one kernel, but only when the graph holds that pattern
on 2-D matmuls. keras-hub's layers use 3-D einsums, so in bfloat16 their exact
GELU alone costs as much as the feed-forward matmuls. This forward pass reads
the backbone's weights once (QKV fused into one matrix) and runs the encoder
as 2-D `tf.matmul` + `tf.nn.bias_add` + `tf.nn.gelu`, keeping the residual
stream, LayerNorm and softmax in float32. The encode pass, where oneDNN's graph
rewrites are on, writes LayerNorm in the one form they fuse into a single kernel
(`fused_layer_norm`, `onednn_fuses`). Nothing is XLA-compiled, so any
batch shape runs without a recompile: the encode pass pads each
length-sorted batch only to its own longest sentence.

It computes the same function as the keras-hub layers (exact GELU, post-
LayerNorm, masked softmax); `tests/model/test_inference.py` checks it.

Example:
    >>> from sst2.model import presets
    >>> encoder = FastEncoder(presets.load_backbone(preset))   # 2 layers, hidden 16
    >>> states = encoder(tf.constant([[2, 7, 3, 0]]), tf.constant([[1, 1, 1, 0]]))
    >>> len(states), states[-1].shape                # embeddings, then each layer
    (3, TensorShape([1, 4, 16]))
"""

import numpy as np
import tensorflow as tf

try:  # whether oneDNN's graph rewrites are on: TensorFlow's own check, not a public API
    from tensorflow.python.util._pywrap_util_port import IsMklEnabled as onednn_fuses
except ImportError:  # a build without it: the portable LayerNorm
    def onednn_fuses() -> bool:
        return False


def linear_flops_per_token(hidden: int, intermediate: int, layers: int) -> float:
    """One token's arithmetic (2 x multiply-adds) in every layer's linear layers: QKV,
    the attention output and the two feed-forward matmuls. The encode pass's physical
    reference is the time these matmuls alone take (`scripts/benchmark_encode.py`).

    >>> linear_flops_per_token(384, 1536, 6)   # the stand-in: 21.2 MFLOP a token
    21233664.0
    """
    return 2.0 * layers * (4 * hidden * hidden + 2 * hidden * intermediate)


def moments_layer_norm(x, gamma, beta, epsilon):
    """LayerNorm over the last axis, in separate ops (every TensorFlow build)."""
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + epsilon) * gamma + beta


def fused_layer_norm(x, gamma, beta, epsilon):
    """LayerNorm over the last axis of a float32 `x` (rank 2 or 3), written as
    `FusedBatchNormV3` over rows (each row a "channel" of an NCHW batch), as
    `tf.keras` 2 wrote it: TensorFlow's oneDNN remapper fuses exactly this pattern,
    with the `gamma` product and `beta` sum, into one `_MklLayerNorm` kernel, several
    times faster than the separate ops. Without oneDNN it runs as a plain batch norm,
    slower than they are, so only the encode pass uses it, with oneDNN on.

    >>> x = tf.constant([[1.0, 2.0, 3.0, 6.0]])
    >>> fused_layer_norm(x, tf.ones([4]), tf.zeros([4]), 1e-12).numpy().round(3)
    array([[-1.069, -0.535,  0.   ,  1.604]], dtype=float32)
    """
    shape = tf.shape(x)
    rows = tf.reduce_prod(shape[:-1])
    normalized, _, _ = tf.compat.v1.nn.fused_batch_norm(
        tf.reshape(x, [1, rows, x.shape[-1], 1]), tf.fill([rows], 1.0), tf.fill([rows], 0.0),
        epsilon=epsilon, data_format="NCHW")
    return tf.reshape(normalized, shape) * gamma + beta


class FastEncoder:
    """Every layer's hidden states of a frozen keras-hub `DistilBertBackbone`.

    The weights are copied once, in the backbone's compute dtype (or
    `compute_dtype`: float32 for an artifact of another runtime); call the
    encoder with `token_ids` and `padding_mask` (`[batch, length]`).
    `unpadded`: the linear layers, LayerNorm and GELU run on the real tokens
    only (gathered from the batch, scattered back for attention), so a batch of
    mixed lengths costs its tokens, not its padded size; padded positions of
    the states are zeros. `fuse_layer_norm`: LayerNorm in the form oneDNN fuses
    (the encode pass's, with `onednn_fuses()`); the two forms agree to float32
    rounding. Off by default: exports run on the servers' TensorFlow, and TF
    2.12.1's fused kernel aborts the process (free(): invalid pointer) on a batch
    of 300 short texts (`scripts/check_serving_runtimes.py`).
    """

    def __init__(self, backbone, compute_dtype=None, unpadded: bool = False,
                 fuse_layer_norm: bool = False):
        self.compute_dtype = tf.as_dtype(compute_dtype or backbone.dtype_policy.compute_dtype)
        self.unpadded = unpadded
        self.layer_norm = fused_layer_norm if fuse_layer_norm else moments_layer_norm
        self.num_heads = backbone.num_heads
        self.hidden_dim = backbone.hidden_dim
        dt = self.compute_dtype

        def const(value, dtype=tf.float32):
            return tf.constant(np.asarray(value), dtype)

        embedding = backbone.embeddings
        self.token_embedding = const(embedding.token_embedding.embeddings.numpy(), dt)
        self.position_embedding = const(embedding.position_embedding.position_embeddings.numpy())
        norm = backbone.embeddings_layer_norm
        self.embedding_norm = (const(norm.gamma.numpy()), const(norm.beta.numpy()),
                               float(norm.epsilon))
        h = self.hidden_dim
        self.layers = []
        for layer in backbone.transformer_layers:
            attention = layer._self_attention_layer
            projections = (attention.query_dense, attention.key_dense, attention.value_dense)
            attention_norm = layer._self_attention_layer_norm
            ffn_norm = layer._feedforward_layer_norm
            self.layers.append({
                "qkv_kernel": const(np.concatenate(
                    [np.reshape(d.kernel.numpy(), [h, h]) for d in projections], axis=1), dt),
                "qkv_bias": const(np.concatenate(
                    [np.reshape(d.bias.numpy(), [h]) for d in projections]), dt),
                "out_kernel": const(np.reshape(attention.output_dense.kernel.numpy(), [h, h]), dt),
                "out_bias": const(attention.output_dense.bias.numpy(), dt),
                "attention_norm": (const(attention_norm.gamma.numpy()),
                                   const(attention_norm.beta.numpy()),
                                   float(attention_norm.epsilon)),
                "ffn_kernel": const(layer._feedforward_intermediate_dense.kernel.numpy(), dt),
                "ffn_bias": const(layer._feedforward_intermediate_dense.bias.numpy(), dt),
                "ffn_out_kernel": const(layer._feedforward_output_dense.kernel.numpy(), dt),
                "ffn_out_bias": const(layer._feedforward_output_dense.bias.numpy(), dt),
                "ffn_norm": (const(ffn_norm.gamma.numpy()), const(ffn_norm.beta.numpy()),
                             float(ffn_norm.epsilon)),
            })

    def _attention(self, x, p, batch, length, mask_bias, tokens=None):
        heads, head_dim = self.num_heads, self.hidden_dim // self.num_heads
        qkv = tf.nn.bias_add(tf.matmul(x, p["qkv_kernel"]), p["qkv_bias"])
        if tokens is not None:
            qkv = tf.scatter_nd(tokens, qkv, [batch * length, 3 * self.hidden_dim])
        qkv = tf.transpose(tf.reshape(qkv, [batch, length, 3, heads, head_dim]), [2, 0, 3, 1, 4])
        q = qkv[0] * tf.cast(head_dim ** -0.5, x.dtype)
        scores = tf.cast(tf.matmul(q, qkv[1], transpose_b=True), tf.float32) + mask_bias
        probs = tf.cast(tf.nn.softmax(scores, axis=-1), x.dtype)
        context = tf.transpose(tf.matmul(probs, qkv[2]), [0, 2, 1, 3])
        context = tf.reshape(context, [batch * length, self.hidden_dim])
        if tokens is not None:
            context = tf.gather_nd(context, tokens)
        return tf.nn.bias_add(tf.matmul(context, p["out_kernel"]), p["out_bias"])

    def __call__(self, token_ids, padding_mask, num_layers: int | None = None) -> list:
        """The embeddings' output, then each layer's (the first `num_layers`), in float32.

        Each is `[batch, length, hidden]`, like `sst2.model.backbone.hidden_states`.
        """
        return self.encode_embedded(self.embed(token_ids), padding_mask, num_layers)

    def embed(self, token_ids) -> tf.Tensor:
        """The token embeddings of `token_ids`, in float32 (positions not yet added)."""
        return tf.cast(tf.gather(self.token_embedding, token_ids), tf.float32)

    def encode_embedded(self, token_embeddings, padding_mask,
                        num_layers: int | None = None) -> list:
        """As calling the encoder, from token embeddings (`embed`'s) instead of ids: what
        gradients with respect to the input are taken of (`sst2.serve.graph.explaining`)."""
        shape = tf.shape(token_embeddings)
        batch, length = shape[0], shape[1]
        dt = self.compute_dtype
        x = token_embeddings + self.position_embedding[None, :length]
        x32 = tf.reshape(self.layer_norm(x, *self.embedding_norm),
                         [batch * length, self.hidden_dim])
        mask_bias = (1.0 - tf.cast(padding_mask, tf.float32))[:, None, None, :] * -1e9
        tokens = tf.where(tf.reshape(padding_mask, [-1]) > 0) if self.unpadded else None

        def state(x):
            if tokens is not None:
                x = tf.scatter_nd(tokens, x, [batch * length, self.hidden_dim])
            return tf.reshape(x, [batch, length, self.hidden_dim])

        states = [tf.reshape(x32, [batch, length, self.hidden_dim])]
        if tokens is not None:
            x32 = tf.gather_nd(x32, tokens)
        for p in self.layers[:num_layers]:
            attended = self._attention(tf.cast(x32, dt), p, batch, length, mask_bias, tokens)
            x32 = self.layer_norm(x32 + tf.cast(attended, tf.float32), *p["attention_norm"])
            # MatMul + BiasAdd + GELU: one fused oneDNN kernel.
            hidden = tf.nn.gelu(tf.nn.bias_add(tf.matmul(tf.cast(x32, dt), p["ffn_kernel"]),
                                               p["ffn_bias"]), approximate=False)
            out = tf.nn.bias_add(tf.matmul(hidden, p["ffn_out_kernel"]), p["ffn_out_bias"])
            x32 = self.layer_norm(x32 + tf.cast(out, tf.float32), *p["ffn_norm"])
            states.append(state(x32))
        return states
