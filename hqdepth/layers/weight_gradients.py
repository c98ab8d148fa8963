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

A stride-1 SAME convolution of known size keeps its input's size, so rather than copying a shifted view of the
input per tap (2048 channels in the ASPP), both directions shift the smaller tensor (`_same_size_taps`): the
forward pass multiplies the whole input by every tap's kernel in one product and sums the slices shifted onto
the output; the kernel gradient shifts the output gradient once per tap and takes all taps in one product.
ASPP at rates 4 / 8 / 12, batch 8, bfloat16, one process, median of 7 interleaved calls: forward 52 / 53 / 52
-> 48 / 45 / 43 ms (oneDNN: 103 / 112 / 123), kernel gradient 65 / 59 / 59 -> 56 / 50 / 50 ms (oneDNN: 159 / 195
/ 112). With VALID padding the input is larger than the output and the shifted products would waste work (a
35x41 -> 19x25 dilated layer of ResNet-50: 3x slower), so those keep the views.

`matmul_kernel_gradient(layer)` makes a `keras.layers.Conv2D` compute its kernel gradient that way (the input
gradient stays TensorFlow's kernel): the same sums in another order, equal to bfloat16 round-off. It is a
patch of the layer object, not a new layer class: saved models, weights and configs do not change.
`use_matmul_kernel_gradients(model)` patches the layers of a model that qualify (`qualifies`: trainable,
TensorFlow backend, 1x1 or natively dilated kernels); the trainer does it under `train.kernel_gradients`.

Bias gradients: TensorFlow sums a bfloat16 `BiasAddGrad` in bfloat16 (tens of percent off over a feature map)
unless grappler fuses it into oneDNN's backward-filter convolution, which sums in float32. Patched convolutions,
and 16-bit transposed convolutions and dense layers (`use_float32_bias_gradients`, always applied by the trainer),
add their bias with `add_bias`, whose gradient is the float32 sum.
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

    def call(inputs):  # `Conv.call` with the bias added by `add_bias`
        return _biased_and_activated(layer, convolution_op(inputs, layer.kernel))

    layer.convolution_op = convolution_op
    if layer.use_bias:
        layer.call = call


def add_bias(outputs, bias):
    """`outputs + bias` over the last axis, with the bias gradient summed in float32.

    TensorFlow's `BiasAddGrad` sums a bfloat16 gradient in bfloat16: over the 56,648 pixels of a batch-8 73x97 map
    its result was 96 % off (measured against a float64 sum). oneDNN's backward-filter kernel computes the bias
    gradient of a convolution with bias in float32 when grappler fuses the two, which it cannot once the kernel
    gradient is a matrix product, nor for a transposed convolution or a dense layer; so those add their bias here
    (`matmul_kernel_gradient`, `use_float32_bias_gradients`)."""
    import tensorflow as tf

    @tf.custom_gradient
    def biased(y, b):
        def grad(dy):
            return dy, tf.cast(tf.reduce_sum(tf.cast(dy, "float32"), axis=list(range(len(dy.shape) - 1))), b.dtype)

        return tf.nn.bias_add(y, b), grad

    return biased(tf.convert_to_tensor(outputs), tf.convert_to_tensor(bias))


def use_float32_bias_gradients(model):
    """Make the 16-bit `Conv2DTranspose` and `Dense` layers of `model` (TensorFlow backend, channels last, with a
    bias) add their bias with `add_bias`; returns their names.

    For these TensorFlow's `BiasAddGrad` runs alone (grappler fuses it only into a convolution's backward-filter
    kernel), summing the bias gradient in bfloat16: 90 % off over a 4x64x80 map, measured for both layer types. A
    plain or patched `Conv2D` needs nothing more (`matmul_kernel_gradient` handles the patched ones)."""
    patched = []
    if keras.backend.backend() != "tensorflow":
        return patched
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if (type(layer) not in (keras.layers.Conv2DTranspose, keras.layers.Dense) or not getattr(layer, "use_bias", 0)
                or keras.backend.standardize_dtype(layer.compute_dtype) not in ("bfloat16", "float16")
                or getattr(layer, "data_format", "channels_last") != "channels_last"
                or getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None)):
            continue
        layer.call = functools.partial(_call_with_float32_bias_gradient, layer)
        patched.append(layer.name)
    return patched


def _call_with_float32_bias_gradient(layer, inputs, training=None):
    """`Conv2DTranspose.call` / `Dense.call` with the bias added by `add_bias`."""
    if isinstance(layer, keras.layers.Conv2DTranspose):
        outputs = keras.ops.conv_transpose(inputs, layer.kernel, strides=list(layer.strides), padding=layer.padding,
                                           output_padding=layer.output_padding, dilation_rate=layer.dilation_rate,
                                           data_format=layer.data_format)
    else:
        outputs = keras.ops.matmul(inputs, layer.kernel)
    return _biased_and_activated(layer, outputs)


def _biased_and_activated(layer, outputs):
    """The end of a Keras conv / dense `call`: the layer's bias (by `add_bias`), then its activation."""
    outputs = add_bias(outputs, layer.bias)
    return outputs if layer.activation is None else layer.activation(outputs)


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
    Conv2DBackpropInput. forward: "native" = `tf.nn.conv2d`; "matmul" = one matrix product per kernel tap of a
    shifted view of the padded input, 16-bit products summed in float32 (taps that only see padding are left
    out); a stride-1 SAME convolution of known size shifts the products instead (`_shifted_products_forward`)."""
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
        taps = _same_size_taps(x, w.shape[:2], strides, padding, dilation)
        if taps:
            return _shifted_products_forward(x, w, taps), grad
        return _views_forward(x, w, strides, padding, dilation), grad

    return convolve(tf.convert_to_tensor(inputs), tf.convert_to_tensor(kernel))


def _same_size_taps(x, kernel_hw, strides, padding, dilation):
    """For a convolution that keeps the known size of `x` (stride 1, SAME padding): [((a, b), (rows, columns))],
    output pixel (i, j) reading tap (a, b) at input pixel (i + rows, j + columns), without the taps that read only
    padding (a rate beyond the map). Any other convolution: []."""
    height, width = x.shape[1], x.shape[2]
    if (tuple(strides) != (1, 1) or padding.lower() != "same"
            or not (isinstance(height, int) and isinstance(width, int))):
        return []
    (kh, kw), (dh, dw) = (int(n) for n in kernel_hw), dilation
    top, left = (kh - 1) * dh // 2, (kw - 1) * dw // 2
    return [((a, b), (a * dh - top, b * dw - left)) for a in range(kh) for b in range(kw)
            if abs(a * dh - top) < height and abs(b * dw - left) < width]


def _shifted(t, rows, columns):
    """s with s[:, i, j] = t[:, i + rows, j + columns], zero where that falls outside t (same size as t)."""
    import tensorflow as tf

    height, width = t.shape[1], t.shape[2]
    top, bottom = max(0, -rows), max(0, rows)
    left, right = max(0, -columns), max(0, columns)
    if top == bottom == left == right == 0:
        return t
    t = t[:, top + rows:height - bottom + rows, left + columns:width - right + columns, :]
    return tf.pad(t, [[0, 0], [top, bottom], [left, right], [0, 0]])


def _shifted_products_forward(x, w, taps):
    """A stride-1 SAME convolution (`taps` from `_same_size_taps`) as one product of the input with every tap's
    kernel, (pixels, C_in) x (C_in, taps * C_out), whose slices are shifted onto the output and summed in float32."""
    import tensorflow as tf

    channels_in, channels_out = int(w.shape[2]), int(w.shape[3])
    height, width = x.shape[1], x.shape[2]
    kernels = tf.concat([w[a, b] for (a, b), _ in taps], axis=-1)
    products = tf.reshape(tf.matmul(tf.reshape(x, (-1, channels_in)), kernels),
                          (-1, height, width, len(taps) * channels_out))
    total = None
    for i, (_, (rows, columns)) in enumerate(taps):
        part = tf.cast(_shifted(products[..., i * channels_out:(i + 1) * channels_out], rows, columns),
                       _sum_dtype(x.dtype))
        total = part if total is None else total + part
    return tf.cast(total, x.dtype)


def _views_forward(x, w, strides, padding, dilation):
    import tensorflow as tf

    kh, kw, channels_in, channels_out = (int(n) for n in w.shape)
    out_h = _output_size(_size(x, 1), kh, strides[0], dilation[0], padding)
    out_w = _output_size(_size(x, 2), kw, strides[1], dilation[1], padding)
    total = None
    for (a, b), view in _tap_views(x, (kh, kw), strides, padding, dilation, (out_h, out_w), skip_padding=True):
        product = tf.cast(tf.matmul(tf.reshape(view, (-1, channels_in)), w[a, b]), _sum_dtype(x.dtype))
        total = product if total is None else total + product
    return tf.cast(tf.reshape(total, (-1, out_h, out_w, channels_out)), x.dtype)


def _sum_dtype(dtype):
    """The dtype the taps' products are summed in: float32 for 16-bit floats, else their own."""
    return "float32" if keras.backend.standardize_dtype(dtype) in ("bfloat16", "float16") else dtype


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
            yield (a, b), x if rows is columns is _WHOLE_AXIS else x[:, rows, columns, :]


_WHOLE_AXIS = slice(None)


def _axis_slice(offset, out, stride, size):
    """The positions offset + i * stride (i < out) of an axis of static `size` (or None) as a slice; the
    whole axis as `_WHOLE_AXIS`, so that a 1x1 kernel's view is the input itself and not a copy of it (compared by
    identity: a slice holding a dynamic size cannot be compared by value in a graph)."""
    if offset == 0 and stride == 1 and isinstance(out, int) and out == size:
        return _WHOLE_AXIS
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
    summed over the batch's pixels in one matrix product (a stride-1 SAME convolution of known size shifts `dy`
    instead: `_shifted_kernel_gradient`). TensorFlow's Conv2DBackpropFilter computes the same
    (tests/test_weight_gradients.py checks it against the derivative of a float64 NumPy convolution)."""
    import tensorflow as tf

    kh, kw, channels_in, channels_out = (int(n) for n in kernel_shape)
    x = tf.cast(x, dy.dtype)
    taps = _same_size_taps(x, (kh, kw), strides, padding, dilation) if (kh, kw) != (1, 1) else []
    if taps:
        return _shifted_kernel_gradient(x, dy, kernel_shape, taps)
    dy_rows = tf.reshape(dy, (-1, channels_out))
    views = _tap_views(x, (kh, kw), strides, padding, dilation, (_size(dy, 1), _size(dy, 2)))
    products = [tf.matmul(tf.reshape(view, (-1, channels_in)), dy_rows, transpose_a=True) for _, view in views]
    return tf.reshape(tf.stack(products), (kh, kw, channels_in, channels_out))


def _shifted_kernel_gradient(x, dy, kernel_shape, taps):
    """`kernel_gradient` of a stride-1 SAME convolution (`taps` from `_same_size_taps`): tap (a, b) sums
    x[q] dy[q - shift] over the input pixels q, so the output gradient is shifted once per tap (not the input) and
    all taps take one product, (C_in, pixels) x (pixels, taps * C_out); taps that read only padding get zeros."""
    import tensorflow as tf

    kh, kw, channels_in, channels_out = (int(n) for n in kernel_shape)
    shifted = tf.concat([_shifted(dy, -rows, -columns) for _, (rows, columns) in taps], axis=-1)
    product = tf.matmul(tf.reshape(x, (-1, channels_in)), tf.reshape(shifted, (-1, len(taps) * channels_out)),
                        transpose_a=True)
    per_tap = tf.transpose(tf.reshape(product, (channels_in, len(taps), channels_out)), (1, 0, 2))
    if len(taps) < kh * kw:
        indices = [[a * kw + b] for (a, b), _ in taps]
        per_tap = tf.scatter_nd(indices, per_tap, (kh * kw, channels_in, channels_out))
    return tf.reshape(per_tap, kernel_shape)


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
