"""Atrous (dilated) convolution that runs the native dilated kernel under TensorFlow.

Keras 3's TensorFlow backend sends every dilated convolution through `tf.nn.convolution`, which
rewrites it as SpaceToBatchND -> Conv2D -> BatchToSpaceND. On a small feature map with a large rate
that pads the map to a multiple of the rate in each direction: on HQMD's ASPP (rate 12 on a 4x6
map, the 64x96 demo size) one 3x3 conv took 360 ms instead of 3.5 ms on this CPU, and the whole
baseline+ forward pass went from about 0.75 s to 0.1 s. `tf.nn.conv2d(..., dilations=rate)` runs
oneDNN's (CPU) or cuDNN's (GPU) dilated kernels directly and computes the same function.

TensorFlow's plain (non-oneDNN) CPU kernels have no dilated backward pass, so the direct path is
taken only where a one-off probe shows it is differentiable; JAX and PyTorch have native dilation.
"""

import functools

import keras
from keras import layers


@functools.lru_cache(maxsize=None)
def native_dilated_conv_available():
    """Whether TensorFlow here can run and differentiate Conv2D with dilations > 1 on the CPU."""
    import tensorflow as tf

    try:
        with tf.device("/CPU:0"):
            x = tf.ones((1, 5, 5, 1))
            kernel = tf.ones((3, 3, 1, 1))
            with tf.GradientTape() as tape:
                tape.watch([x, kernel])
                y = tf.nn.conv2d(x, kernel, 1, "SAME", dilations=2)
            tape.gradient(y, [x, kernel])
        return True
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
        return False


@keras.saving.register_keras_serializable(package="hqdepth")
class AtrousConv2D(layers.Conv2D):
    """`keras.layers.Conv2D` (same config, weights and results) with a faster dilated path on TensorFlow."""

    def convolution_op(self, inputs, kernel):
        dilated = max(self.dilation_rate) > 1
        if (dilated and keras.backend.backend() == "tensorflow" and self.data_format == "channels_last"
                and native_dilated_conv_available()):
            import tensorflow as tf

            return tf.nn.conv2d(inputs, kernel, strides=self.strides, padding=self.padding.upper(),
                                dilations=self.dilation_rate)
        return super().convolution_op(inputs, kernel)


def conv2d(filters, kernel_size, dilation_rate=1, **kwargs):
    """`Conv2D`, or `AtrousConv2D` where the dilation rate is above 1."""
    rate = dilation_rate if isinstance(dilation_rate, int) else max(dilation_rate)
    cls = AtrousConv2D if rate > 1 else layers.Conv2D
    return cls(filters, kernel_size, dilation_rate=dilation_rate, **kwargs)
