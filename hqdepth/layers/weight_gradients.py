"""Convolution kernel gradients as matrix products, where oneDNN's bfloat16 kernel for them is slow.

On a CPU, TensorFlow computes a convolution's kernel gradient with oneDNN's backward-filter kernel. In
bfloat16 that kernel is slow for two kinds of convolution the package's models are full of (measured on
an Intel Xeon with AMX, 2 cores, batch 8 at HQMD's 289x385: `benchmarks/ANALYSIS.md`):

- 1x1 convolutions: 230-330 GFLOP/s, against 550-1000 GFLOP/s for the same sum written as one matrix
  product, x^T dy over the batch's pixels (float32: no difference);
- dilated 3x3 convolutions (the ASPP's rates 6 and 12 on 2048 channels): 240-410 GFLOP/s, against about
  820 GFLOP/s for nine matrix products of shifted views of the input (plain 3x3: oneDNN is faster).

`matmul_kernel_gradient(layer)` makes a `keras.layers.Conv2D` compute its kernel gradient that way: the
forward convolution and the input gradient stay TensorFlow's kernels, the kernel gradient is the same sum
in another order (equal to bfloat16 round-off). It is a patch of the layer object, not a new layer class:
saved models, weights and configs do not change. `use_matmul_kernel_gradients(model)` patches the layers of
a model that qualify (trainable, TensorFlow backend, 1x1 or dilated kernels).
"""

import functools

import keras

MODES = ("auto", "on", "off")


def qualifies(layer):
    """A trainable 2-D convolution (not depthwise, not transposed) with a 1x1 kernel, or a dilated one with
    stride 1, on the TensorFlow backend, channels last."""
    if keras.backend.backend() != "tensorflow" or type(layer) is not keras.layers.Conv2D or not layer.trainable:
        return False
    if layer.data_format != "channels_last" or layer.groups != 1:
        return False
    kernel, strides, dilation = tuple(layer.kernel_size), tuple(layer.strides), tuple(layer.dilation_rate)
    if kernel == (1, 1):
        return dilation == (1, 1)
    return strides == (1, 1) and max(dilation) > 1


def use_matmul_kernel_gradients(model):
    """Patch every qualifying convolution of `model` (`matmul_kernel_gradient`); returns their names."""
    patched = []
    for layer in _conv_layers(model):
        if qualifies(layer):
            matmul_kernel_gradient(layer)
            patched.append(layer.name)
    return patched


def _conv_layers(model):
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Conv2D):
            yield layer


def matmul_kernel_gradient(layer):
    """Make `layer` (a qualifying `keras.layers.Conv2D`) compute its kernel gradient as matrix products."""
    if not qualifies(layer):
        raise ValueError(f"{layer.name}: not a trainable 1x1 or dilated stride-1 Conv2D on TensorFlow")
    layer.convolution_op = functools.partial(conv2d, strides=tuple(layer.strides),
                                             padding=layer.padding, dilation=tuple(layer.dilation_rate))


def conv2d(inputs, kernel, strides=(1, 1), padding="valid", dilation=(1, 1)):
    """`tf.nn.conv2d` (NHWC) whose kernel gradient is `kernel_gradient`; the input gradient is TensorFlow's."""
    import tensorflow as tf

    strides4, dilation4, pad = [1, *strides, 1], [1, *dilation, 1], padding.upper()

    @tf.custom_gradient
    def convolve(x, w):
        def grad(dy):
            dx = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=strides4,
                                                padding=pad, dilations=dilation4)
            return dx, kernel_gradient(x, dy, w.shape, strides, padding, dilation)

        return tf.nn.conv2d(x, w, strides4, pad, dilations=dilation4), grad

    return convolve(tf.convert_to_tensor(inputs), tf.convert_to_tensor(kernel))


def kernel_gradient(x, dy, kernel_shape, strides=(1, 1), padding="valid", dilation=(1, 1)):
    """d loss / d kernel of an NHWC convolution from its input `x` and output gradient `dy`: for each kernel
    tap (a, b), the input pixels that tap reads (a shifted, strided view of the padded input) times `dy`,
    summed over the batch's pixels in one matrix product. The reference for it is TensorFlow's
    Conv2DBackpropFilter (the tests compare the two)."""
    import tensorflow as tf

    kh, kw, channels_in, channels_out = (int(n) for n in kernel_shape)
    (sh, sw), (dh, dw) = strides, dilation
    out_h, out_w = tf.shape(dy)[1], tf.shape(dy)[2]
    x = tf.cast(x, dy.dtype)
    if padding.lower() == "same":
        x = tf.pad(x, [[0, 0], *_same_padding(tf.shape(x)[1], out_h, kh, sh, dh),
                       *_same_padding(tf.shape(x)[2], out_w, kw, sw, dw), [0, 0]])
    dy_rows = tf.reshape(dy, (-1, channels_out))
    taps = []
    for a in range(kh):
        for b in range(kw):
            view = x[:, a * dh:, b * dw:, :][:, :(out_h - 1) * sh + 1:sh, :(out_w - 1) * sw + 1:sw, :]
            taps.append(tf.matmul(tf.reshape(view, (-1, channels_in)), dy_rows, transpose_a=True))
    return tf.reshape(tf.stack(taps), (kh, kw, channels_in, channels_out))


def _same_padding(size, out, kernel, stride, dilation):
    """[[before, after]] of TensorFlow's SAME padding along one axis (the extra pixel goes after)."""
    import tensorflow as tf

    total = tf.maximum((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return [[total // 2, total - total // 2]]
