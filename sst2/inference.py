"""A fast, inference-only forward pass of a keras-hub DistilBERT backbone.

On CPU, oneDNN runs bfloat16 matmuls at ~2x float32 but TensorFlow's
element-wise kernels for bfloat16 are slow (exact GELU alone costs as much as
the feed-forward matmuls). This forward pass reads the backbone's weights and
runs the matmuls as plain 2-D `tf.matmul`s with fused QKV weights (oneDNN),
while each element-wise group (bias + GELU, residual + LayerNorm, masked
softmax) is one small XLA-compiled function computing in float32. The matmuls
stay outside XLA, whose CPU matmuls are slower than oneDNN's.

It computes the same function as the keras-hub layers (see
`tests/test_inference.py`): exact GELU, post-LayerNorm, masked softmax.

Example:
    >>> encoder = FastEncoder(backbone)            # a frozen DistilBertBackbone
    >>> states = encoder(token_ids, padding_mask)   # one [batch, length, hidden] per layer
"""

import math

import numpy as np
import tensorflow as tf


def _jit(fn):
    return tf.function(fn, jit_compile=True, reduce_retracing=True)


@_jit
def _layer_norm(x, gamma, beta, epsilon):
    x = tf.cast(x, tf.float32)
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + epsilon) * gamma + beta


@_jit
def _residual_layer_norm(x, y, bias, gamma, beta, epsilon, out_dtype_like):
    """LayerNorm(x + y + bias), computed in float32, returned in `out_dtype_like`'s dtype."""
    z = tf.cast(x, tf.float32) + tf.cast(y, tf.float32) + bias
    mean, variance = tf.nn.moments(z, axes=[-1], keepdims=True)
    out = (z - mean) * tf.math.rsqrt(variance + epsilon) * gamma + beta
    return tf.cast(out, out_dtype_like.dtype), out


@_jit
def _bias_gelu(x, bias):
    z = tf.cast(x, tf.float32) + bias
    return tf.cast(0.5 * z * (1.0 + tf.math.erf(z * (1.0 / math.sqrt(2.0)))), x.dtype)


@_jit
def _split_heads(qkv, bias, batch, length, heads):
    """[B*L, 3H] + bias → q, k, v as [B, heads, L, head_dim]; q pre-scaled."""
    qkv = tf.cast(tf.cast(qkv, tf.float32) + bias, qkv.dtype)
    qkv = tf.reshape(qkv, [batch, length, 3, heads, -1])
    qkv = tf.transpose(qkv, [2, 0, 3, 1, 4])
    head_dim = tf.cast(tf.shape(qkv)[-1], tf.float32)
    q = tf.cast(tf.cast(qkv[0], tf.float32) * tf.math.rsqrt(head_dim), qkv.dtype)
    return q, qkv[1], qkv[2]


@_jit
def _masked_softmax(scores, mask_bias):
    probs = tf.nn.softmax(tf.cast(scores, tf.float32) + mask_bias, axis=-1)
    return tf.cast(probs, scores.dtype)


@_jit
def _merge_heads(context):
    batch, heads, length, head_dim = tf.unstack(tf.shape(context))
    return tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch * length, heads * head_dim])


class FastEncoder:
    """Every layer's hidden states of a frozen keras-hub `DistilBertBackbone`.

    The weights are copied once, in the backbone's compute dtype; call the
    encoder with `token_ids` and `padding_mask` (`[batch, length]`).
    """

    def __init__(self, backbone):
        self.compute_dtype = tf.as_dtype(backbone.dtype_policy.compute_dtype)
        self.num_heads = backbone.num_heads
        self.hidden_dim = backbone.hidden_dim
        dt = self.compute_dtype

        def const(v, dtype=tf.float32):
            return tf.constant(np.asarray(v.numpy() if hasattr(v, "numpy") else v), dtype)

        embedding = backbone.embeddings
        self.token_embedding = const(embedding.token_embedding.embeddings, dt)
        self.position_embedding = const(embedding.position_embedding.position_embeddings, tf.float32)
        norm = backbone.embeddings_layer_norm
        self.embedding_norm = (const(norm.gamma), const(norm.beta), float(norm.epsilon))
        self.layers = []
        for layer in backbone.transformer_layers:
            attention = layer._self_attention_layer
            h = self.hidden_dim
            qkv_kernel = np.concatenate(
                [np.reshape(d.kernel.numpy(), [h, h]) for d in
                 (attention.query_dense, attention.key_dense, attention.value_dense)], axis=1)
            qkv_bias = np.concatenate(
                [np.reshape(d.bias.numpy(), [h]) for d in
                 (attention.query_dense, attention.key_dense, attention.value_dense)])
            attention_norm, ffn_norm = layer._self_attention_layer_norm, layer._feedforward_layer_norm
            self.layers.append({
                "qkv_kernel": const(qkv_kernel, dt), "qkv_bias": const(qkv_bias),
                "out_kernel": const(np.reshape(attention.output_dense.kernel.numpy(), [h, h]), dt),
                "out_bias": const(attention.output_dense.bias),
                "attention_norm": (const(attention_norm.gamma), const(attention_norm.beta),
                                   float(attention_norm.epsilon)),
                "ffn_kernel": const(layer._feedforward_intermediate_dense.kernel, dt),
                "ffn_bias": const(layer._feedforward_intermediate_dense.bias),
                "ffn_out_kernel": const(layer._feedforward_output_dense.kernel, dt),
                "ffn_out_bias": const(layer._feedforward_output_dense.bias),
                "ffn_norm": (const(ffn_norm.gamma), const(ffn_norm.beta), float(ffn_norm.epsilon)),
            })

    def __call__(self, token_ids, padding_mask) -> list:
        """Returns each layer's output, `[batch, length, hidden]`, in float32."""
        shape = tf.shape(token_ids)
        batch, length = shape[0], shape[1]
        dt = self.compute_dtype
        x = tf.gather(self.token_embedding, token_ids)
        x = tf.cast(x, tf.float32) + self.position_embedding[None, :length]
        x32 = tf.reshape(_layer_norm(x, *self.embedding_norm), [batch * length, self.hidden_dim])
        x = tf.cast(x32, dt)
        mask_bias = (1.0 - tf.cast(padding_mask, tf.float32))[:, None, None, :] * -1e9
        states = []
        for p in self.layers:
            qkv = tf.matmul(x, p["qkv_kernel"])
            q, k, v = _split_heads(qkv, p["qkv_bias"], batch, length, self.num_heads)
            probs = _masked_softmax(tf.matmul(q, k, transpose_b=True), mask_bias)
            context = _merge_heads(tf.matmul(probs, v))
            x, x32 = _residual_layer_norm(x32, tf.matmul(context, p["out_kernel"]), p["out_bias"],
                                          *p["attention_norm"], x)
            hidden = _bias_gelu(tf.matmul(x, p["ffn_kernel"]), p["ffn_bias"])
            x, x32 = _residual_layer_norm(x32, tf.matmul(hidden, p["ffn_out_kernel"]),
                                          p["ffn_out_bias"], *p["ffn_norm"], x)
            states.append(tf.reshape(x32, [batch, length, self.hidden_dim]))
        return states
