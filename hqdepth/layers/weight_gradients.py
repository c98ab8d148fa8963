"""Convolution kernel gradients (and some forward passes) as matrix products, where oneDNN's bfloat16
kernels for them are slow.

On a CPU, TensorFlow computes a convolution's kernel gradient with oneDNN's backward-filter kernel. In
bfloat16 that kernel is slow for two kinds of convolution the package's models are full of (measured on
an Intel Xeon with AMX, 2 cores, batch 8 at HQMD's 289x385: `benchmarks/ANALYSIS.md`):

- 1x1 convolutions: 230-330 GFLOP/s, against 550-1000 GFLOP/s for the same sum written as one matrix
  product, x^T dy over the batch's pixels (float32: no difference);
- dilated 3x3 convolutions (the ASPP's, 2048 channels): 240-410 GFLOP/s, against about 820 GFLOP/s for nine
  matrix products of shifted views of the input (plain 3x3: oneDNN is faster).

The ASPP's dilated forward pass is slow too (95-114 ms against 39 for the views); other dilated shapes are
faster natively, so the forward pass of a dilated layer is measured at its first call (`faster_forward`).

`matmul_kernel_gradient(layer)` makes a `keras.layers.Conv2D` compute its kernel gradient that way (the input
gradient stays TensorFlow's kernel): the same sums in another order, equal to bfloat16 round-off. It is a
patch of the layer object, not a new layer class: saved models, weights and configs do not change.
`use_matmul_kernel_gradients(model)` patches the layers of a model that qualify (`qualifies`: trainable,
TensorFlow backend, 1x1 or natively dilated kernels); the trainer does it under `train.kernel_gradients`.
"""

import functools

import keras


def qualifies(layer):
    """A trainable 2-D convolution on the TensorFlow backend, channels last: a `keras.layers.Conv2D` with a 1x1
    kernel, or an `AtrousConv2D` with stride 1 that runs the native dilated kernel (`uses_native_kernel`: the
    forward pass is then the same `tf.nn.conv2d` here, and the dilated input gradient is known to run)."""
    from hqdepth.layers.conv import AtrousConv2D

    if (keras.backend.backend() != "tensorflow" or type(layer) not in (keras.layers.Conv2D, AtrousConv2D)
            or not layer.trainable or layer.data_format != "channels_last" or layer.groups != 1):
        return False
    kernel, strides, dilation = tuple(layer.kernel_size), tuple(layer.strides), tuple(layer.dilation_rate)
    if kernel == (1, 1) and dilation == (1, 1):
        return True
    return isinstance(layer, AtrousConv2D) and strides == (1, 1) and layer.uses_native_kernel()


def use_matmul_kernel_gradients(model, forward="auto"):
    """Patch every qualifying convolution of `model` (`matmul_kernel_gradient` with `forward`); returns their names."""
    patched = []
    for layer in _conv_layers(model):
        if qualifies(layer):
            matmul_kernel_gradient(layer, forward)
            patched.append(layer.name)
    return patched


def _conv_layers(model):
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Conv2D):
            yield layer


def matmul_kernel_gradient(layer, forward="auto"):
    """Make `layer` (a qualifying `keras.layers.Conv2D`) compute its kernel gradient as matrix products. Its
    forward pass: "native" (TensorFlow's convolution), "matmul" (matrix products of shifted views, `conv2d`) or
    "auto" (for dilated kernels, whichever `faster_forward` measures faster at the shape the layer is first
    called with; 1x1 kernels: native)."""
    if not qualifies(layer):
        raise ValueError(f"{layer.name}: not a trainable 1x1 Conv2D or native dilated AtrousConv2D on TensorFlow")
    if forward not in ("auto", "native", "matmul"):
        raise ValueError(f"forward={forward!r}: auto, native or matmul")
    settings = {"strides": tuple(layer.strides), "padding": layer.padding, "dilation": tuple(layer.dilation_rate)}

    def convolution_op(inputs, kernel):
        mode = forward
        if mode == "auto":
            mode = "native" if max(settings["dilation"]) == 1 else faster_forward(inputs.shape, kernel.shape,
                                                                                  dtype=inputs.dtype, **settings)
        return conv2d(inputs, kernel, forward=mode, **settings)

    layer.convolution_op = convolution_op


_forward_choices = {}  # (input shape, kernel shape, strides, padding, dilation, dtype) -> "native" | "matmul"


def faster_forward(input_shape, kernel_shape, strides=(1, 1), padding="valid", dilation=(1, 1), dtype="float32",
                   calls=3, margin=0.8):
    """"matmul" when a convolution's forward pass as matrix products of shifted views (`conv2d`'s
    forward="matmul") is measured faster than TensorFlow's own at this input shape, else "native".

    oneDNN's bfloat16 dilated convolution is fast on some shapes and slow on others (HQMD's ASPP, 2048 -> 256
    channels on a 19x25 map, batch 8: 95-114 ms against 39 for the views; ResNet-50's dilated 512 -> 512: 9-12 ms
    against 20), so this is measured, once per shape and dtype in a process: `calls` interleaved calls of each
    on random data after one warm-up (an unknown batch size counts as 2); the views must take less than
    `margin` x the convolution's median time. An unknown height, width or channel count: "native"."""
    import time

    import numpy as np
    import tensorflow as tf

    shape = tuple(input_shape)
    if not all(isinstance(n, int) for n in shape[1:]):
        return "native"
    shape = (shape[0] if isinstance(shape[0], int) else 2, *shape[1:])
    dtype = keras.backend.standardize_dtype(dtype)
    key = (shape, tuple(kernel_shape), tuple(strides), padding, tuple(dilation), dtype)
    if key not in _forward_choices:
        with tf.init_scope():  # run eagerly even while a model is being traced
            rng = np.random.default_rng(0)
            x = tf.cast(rng.normal(size=shape).astype("float32"), dtype)
            w = tf.cast(rng.normal(size=key[1]).astype("float32"), dtype)
            calls_of = {mode: tf.function(functools.partial(conv2d, strides=strides, padding=padding,
                                                            dilation=dilation, forward=mode))
                        for mode in ("native", "matmul")}
            seconds = {mode: [] for mode in calls_of}
            for round_ in range(calls + 1):
                for mode, call in calls_of.items():
                    start = time.perf_counter()
                    call(x, w).numpy()
                    if round_:
                        seconds[mode].append(time.perf_counter() - start)
        faster = np.median(seconds["matmul"]) < margin * np.median(seconds["native"])
        _forward_choices[key] = "matmul" if faster else "native"
    return _forward_choices[key]


def conv2d(inputs, kernel, strides=(1, 1), padding="valid", dilation=(1, 1), forward="native"):
    """A 2-D convolution (NHWC) whose kernel gradient is `kernel_gradient` and input gradient TensorFlow's
    Conv2DBackpropInput. forward: "native" = `tf.nn.conv2d`; "matmul" = one matrix product per kernel tap
    of a shifted view of the padded input, summed in float32 (taps that only see padding are left out)."""
    import tensorflow as tf

    strides4, dilation4, pad = [1, *strides, 1], [1, *dilation, 1], padding.upper()

    @tf.custom_gradient
    def convolve(x, w):
        def grad(dy):
            dx = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=strides4,
                                                padding=pad, dilations=dilation4)
            return dx, kernel_gradient(x, dy, w.shape, strides, padding, dilation)

        if forward == "native":
            return tf.nn.conv2d(x, w, strides4, pad, dilations=dilation4), grad
        return _views_forward(x, w, strides, padding, dilation), grad

    return convolve(tf.convert_to_tensor(inputs), tf.convert_to_tensor(kernel))


def _views_forward(x, w, strides, padding, dilation):
    import tensorflow as tf

    kh, kw, channels_in, channels_out = (int(n) for n in w.shape)
    out_h = _output_size(_size(x, 1), kh, strides[0], dilation[0], padding)
    out_w = _output_size(_size(x, 2), kw, strides[1], dilation[1], padding)
    total = None
    for (a, b), view in _tap_views(x, (kh, kw), strides, padding, dilation, (out_h, out_w), skip_padding=True):
        product = tf.cast(tf.matmul(tf.reshape(view, (-1, channels_in)), w[a, b]), "float32")
        total = product if total is None else total + product
    return tf.cast(tf.reshape(total, (-1, out_h, out_w, channels_out)), x.dtype)


def _output_size(size, kernel, stride, dilation, padding):
    if padding.lower() == "same":
        return -(-size // stride)
    return (size - (kernel - 1) * dilation - 1) // stride + 1


def _tap_views(x, kernel_hw, strides, padding, dilation, out_hw, skip_padding=False):
    """((a, b), view) per kernel tap: the input pixels tap (a, b) reads for each output pixel, (B, out_h,
    out_w, C). With `skip_padding`, taps that read nothing but padding are left out (when the sizes are static)."""
    import tensorflow as tf

    (kh, kw), (sh, sw), (dh, dw), (out_h, out_w) = kernel_hw, strides, dilation, out_hw
    size_h, size_w = _size(x, 1), _size(x, 2)
    (top, bottom), (left, right) = (0, 0), (0, 0)
    if padding.lower() == "same":
        top, bottom = _same_padding(size_h, out_h, kh, sh, dh)
        left, right = _same_padding(size_w, out_w, kw, sw, dw)
        x = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
    for a in range(kh):
        for b in range(kw):
            if skip_padding and (_reads_only_padding(a * dh, out_h, sh, top, size_h)
                                 or _reads_only_padding(b * dw, out_w, sw, left, size_w)):
                continue
            rows = _axis_slice(a * dh, out_h, sh, x.shape[1])
            columns = _axis_slice(b * dw, out_w, sw, x.shape[2])
            yield (a, b), x if rows == columns == slice(None) else x[:, rows, columns, :]


def _axis_slice(offset, out, stride, size):
    """The positions offset + i * stride (i < out) of an axis of static `size` (or None) as a slice; the
    whole axis as slice(None), so that a 1x1 kernel's view is the input itself and not a copy of it."""
    if offset == 0 and stride == 1 and isinstance(out, int) and out == size:
        return slice(None)
    return slice(offset, offset + (out - 1) * stride + 1, stride)


def _size(x, axis):
    """A static size when known, else the dynamic one."""
    import tensorflow as tf

    return x.shape[axis] if isinstance(x.shape[axis], int) else tf.shape(x)[axis]


def _reads_only_padding(offset, out, stride, before, size):
    """Whether positions offset + i * stride (i < out) of a padded axis all miss the original [before, before + size)."""
    if not all(isinstance(n, int) for n in (out, before, size)):
        return False
    return offset + (out - 1) * stride < before or offset >= before + size


def kernel_gradient(x, dy, kernel_shape, strides=(1, 1), padding="valid", dilation=(1, 1)):
    """d loss / d kernel of an NHWC convolution from its input `x` and output gradient `dy`: for each kernel
    tap (a, b), the input pixels that tap reads (a shifted, strided view of the padded input) times `dy`,
    summed over the batch's pixels in one matrix product: TensorFlow's Conv2DBackpropFilter computes the same
    (tests/test_weight_gradients.py checks it against the derivative of a float64 NumPy convolution)."""
    import tensorflow as tf

    kh, kw, channels_in, channels_out = (int(n) for n in kernel_shape)
    x = tf.cast(x, dy.dtype)
    dy_rows = tf.reshape(dy, (-1, channels_out))
    views = _tap_views(x, (kh, kw), strides, padding, dilation, (_size(dy, 1), _size(dy, 2)))
    taps = [tf.matmul(tf.reshape(view, (-1, channels_in)), dy_rows, transpose_a=True) for _, view in views]
    return tf.reshape(tf.stack(taps), (kh, kw, channels_in, channels_out))


def _same_padding(size, out, kernel, stride, dilation):
    """(before, after) of TensorFlow's SAME padding along one axis (the extra pixel goes after); Python ints
    when the sizes are, else tensors."""
    needed = (out - 1) * stride + (kernel - 1) * dilation + 1 - size
    if isinstance(needed, int):
        total = max(needed, 0)
    else:
        import tensorflow as tf

        total = tf.maximum(needed, 0)
    return total // 2, total - total // 2
