"""Attention blocks for MRPAN's multi-scale attention context aggregation (MACA) [reconstructed].

MRPAN (Liu et al., ICPR 2020) names a spatial attention module (SAM) and a global attention module
(GAM) without published code. Following specs/other_models.md §4.3:
- `PositionAttention` (SAM) = DANet's position attention module (`PAM_Module`, Fu et al. 2019):
  Q, K = 1x1 conv to C/8, V = 1x1 conv to C (with biases), A = softmax over keys of Q K^T
  (N x N, N = H W, no 1/sqrt(d) scaling, as DANet), out = gamma * (A V) + x, gamma initialised to 0.
- `ScaleAttention` (GAM) attends, at every pixel of a target scale, over the projections of the
  five encoder scales onto it: q = 1x1 conv of the target feature, k_s, v_s = 1x1 convs of source
  s, weights = softmax_s(<q, k_s> / sqrt(d)), out = target + gamma * sum_s w_s v_s, gamma init 0.
With gamma = 0 both are the identity, so an untrained MACA starts as the SARPN baseline.
The softmax runs in float32 under mixed precision (N x N logits overflow float16 easily).
"""

import math

import keras
from keras import ops


def _dense_weights(layer, name, fan_in, fan_out, initializer):
    kernel = layer.add_weight(name=f"{name}_kernel", shape=(fan_in, fan_out), initializer=initializer)
    bias = layer.add_weight(name=f"{name}_bias", shape=(fan_out,), initializer="zeros")
    return kernel, bias


def _project(x, kernel, bias):
    """x @ kernel + bias over the last axis (a 1x1 convolution), as one 2-D matrix product.

    Not `einsum("...c,cd->...d")`: TensorFlow differentiates that with respect to the kernel by materialising the
    broadcast product of every pixel's input and output channels (B*H*W*C*D values, 6 GB for a 2x57x76x512 map to
    512 channels) before summing it; on 2x114x152x64 -> 64 forward + backward took 1073 ms against 7.7 ms for the
    2-D product, and MRPAN training spent half its step there (benchmarks/RESULTS.md)."""
    shape = ops.shape(x)
    flat = ops.matmul(ops.reshape(x, (-1, shape[-1])), ops.cast(kernel, x.dtype)) + ops.cast(bias, x.dtype)
    return ops.reshape(flat, (*shape[:-1], kernel.shape[-1]))


@keras.saving.register_keras_serializable(package="hqdepth")
class PositionAttention(keras.layers.Layer):
    """DANet position attention (MRPAN SAM, reconstructed): (B, H, W, C) -> same shape."""

    def __init__(self, reduction=8, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.reduction = int(reduction)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        key_channels = max(channels // self.reduction, 1)
        self.query_kernel, self.query_bias = _dense_weights(self, "query", channels, key_channels,
                                                            self.kernel_initializer)
        self.key_kernel, self.key_bias = _dense_weights(self, "key", channels, key_channels, self.kernel_initializer)
        self.value_kernel, self.value_bias = _dense_weights(self, "value", channels, channels,
                                                            self.kernel_initializer)
        self.gamma = self.add_weight(name="gamma", shape=(), initializer="zeros")

    def call(self, x):
        shape = ops.shape(x)
        tokens = ops.reshape(x, (shape[0], shape[1] * shape[2], shape[3]))
        query = _project(tokens, self.query_kernel, self.query_bias)
        key = _project(tokens, self.key_kernel, self.key_bias)
        value = _project(tokens, self.value_kernel, self.value_bias)
        energy = ops.einsum("bnd,bmd->bnm", ops.cast(query, "float32"), ops.cast(key, "float32"))
        attention = ops.cast(ops.softmax(energy, axis=-1), x.dtype)
        out = ops.einsum("bnm,bmc->bnc", attention, value)
        return ops.reshape(ops.cast(self.gamma, x.dtype) * out, shape) + x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


@keras.saving.register_keras_serializable(package="hqdepth")
class ScaleAttention(keras.layers.Layer):
    """Per-pixel attention over source scales (MRPAN GAM, reconstructed).

    Call on [target (B, H, W, C), source_1, ..., source_S] (all at the target's size, any channel
    counts); returns (B, H, W, C) = target + gamma * sum_s softmax_s(<q, k_s> / sqrt(d)) v_s.
    """

    def __init__(self, key_channels=64, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.key_channels = int(key_channels)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        target, *sources = input_shape
        channels = int(target[-1])
        if not sources:
            raise ValueError("ScaleAttention needs [target, source_1, ...] with at least one source.")
        self.query_kernel, self.query_bias = _dense_weights(self, "query", channels, self.key_channels,
                                                            self.kernel_initializer)
        self.source_weights = []
        for s, source in enumerate(sources):
            key = _dense_weights(self, f"key{s}", int(source[-1]), self.key_channels, self.kernel_initializer)
            value = _dense_weights(self, f"value{s}", int(source[-1]), channels, self.kernel_initializer)
            self.source_weights.append((key, value))
        self.gamma = self.add_weight(name="gamma", shape=(), initializer="zeros")

    def call(self, inputs):
        target, *sources = inputs
        query = _project(target, self.query_kernel, self.query_bias)
        logits, values = [], []
        for source, ((k_kernel, k_bias), (v_kernel, v_bias)) in zip(sources, self.source_weights):
            key = _project(source, k_kernel, k_bias)
            logits.append(ops.sum(ops.cast(query, "float32") * ops.cast(key, "float32"), axis=-1))
            values.append(_project(source, v_kernel, v_bias))
        weights = ops.softmax(ops.stack(logits, axis=-1) / math.sqrt(self.key_channels), axis=-1)
        weights = ops.cast(weights, target.dtype)
        context = sum(weights[..., s:s + 1] * value for s, value in enumerate(values))
        return target + ops.cast(self.gamma, target.dtype) * context

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "key_channels": self.key_channels,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}
