"""Layers against TensorFlow's published ops and float64 NumPy references."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from hqdepth.layers import (AtrousConv2D, AtrousSpatialPyramidPooling, BilinearResize, ImageNormalization,
                            UpsampledConcatConv2D, conv2d, resize_bilinear)
from hqdepth.layers.conv import native_dilated_conv_available

RNG = np.random.default_rng(int(os.environ["HQDEPTH_TEST_SEED"]))


def np_resize_align_corners(x, out_h, out_w):
    """TF1 resize_bilinear(align_corners=True) by definition: src = dst * (in - 1) / (out - 1)."""
    n, h, w, c = x.shape
    out = np.zeros((n, out_h, out_w, c))
    for i in range(out_h):
        sy = i * (h - 1) / (out_h - 1) if out_h > 1 else 0.0
        y0 = int(np.floor(sy)); y1 = min(y0 + 1, h - 1); fy = sy - y0
        for j in range(out_w):
            sx = j * (w - 1) / (out_w - 1) if out_w > 1 else 0.0
            x0 = int(np.floor(sx)); x1 = min(x0 + 1, w - 1); fx = sx - x0
            top = x[:, y0, x0] * (1 - fx) + x[:, y0, x1] * fx
            bottom = x[:, y1, x0] * (1 - fx) + x[:, y1, x1] * fx
            out[:, i, j] = top * (1 - fy) + bottom * fy
    return out


@pytest.mark.parametrize("in_size,out_size", [((19, 25), (73, 97)), ((73, 97), (289, 385)), ((9, 7), (4, 5)),
                                              ((1, 1), (5, 6)), ((6, 5), (1, 1))])
@pytest.mark.parametrize("channels", [1, 3])  # one channel takes its own product order (a depth or logits map)
def test_resize_align_corners_matches_tf1_and_numpy(in_size, out_size, channels):
    x = RNG.normal(size=(2, *in_size, channels)).astype(np.float32)
    ours = np.asarray(resize_bilinear(x, out_size, align_corners=True))
    tf1 = tf.compat.v1.image.resize_bilinear(x, out_size, align_corners=True).numpy()
    np.testing.assert_allclose(ours, tf1, atol=2e-5)
    if max(out_size) < 100:
        np.testing.assert_allclose(ours, np_resize_align_corners(x.astype(np.float64), *out_size), atol=2e-5)


@pytest.mark.parametrize("in_size,out_size", [((19, 25), (73, 97)), ((9, 7), (4, 5)), ((5, 8), (5, 8))])
@pytest.mark.parametrize("channels", [1, 2])
def test_resize_half_pixel_matches_tf2(in_size, out_size, channels):
    x = RNG.normal(size=(1, *in_size, channels)).astype(np.float32)
    ours = np.asarray(resize_bilinear(x, out_size, align_corners=False))
    expected = tf.image.resize(x, out_size, method="bilinear", antialias=False).numpy()
    np.testing.assert_allclose(ours, expected, atol=2e-5)


def np_resize_gradient(upstream, in_h, in_w, align_corners):
    """The adjoint of the resize in float64: scatter each output's upstream gradient onto its 4 source pixels with
    the interpolation weights (`np_resize_align_corners` / half-pixel centres, sources clamped to the image)."""
    n, out_h, out_w, c = upstream.shape
    grad = np.zeros((n, in_h, in_w, c))

    def source(i, out_size, in_size):
        if align_corners:
            s = i * (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        else:
            s = min(max((i + 0.5) * in_size / out_size - 0.5, 0.0), in_size - 1)
        lo = int(np.floor(s))
        return lo, min(lo + 1, in_size - 1), s - lo

    for i in range(out_h):
        y0, y1, fy = source(i, out_h, in_h)
        for j in range(out_w):
            x0, x1, fx = source(j, out_w, in_w)
            g = upstream[:, i, j]
            grad[:, y0, x0] += g * (1 - fy) * (1 - fx)
            grad[:, y0, x1] += g * (1 - fy) * fx
            grad[:, y1, x0] += g * fy * (1 - fx)
            grad[:, y1, x1] += g * fy * fx
    return grad


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("in_size,out_size", [((5, 7), (17, 25)), ((9, 7), (4, 5)), ((1, 1), (3, 4))])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("channels", [1, 3])
def test_resize_gradient_is_the_adjoint(in_size, out_size, align_corners, dtype, channels):
    """The TensorFlow gradient (of the two products) equals the float64 adjoint of the interpolation, in float32 and
    under bfloat16 (its input's dtype)."""
    x = tf.constant(RNG.normal(size=(2, *in_size, channels)), dtype)
    upstream = RNG.normal(size=(2, *out_size, channels))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = resize_bilinear(x, out_size, align_corners=align_corners)
        loss = tf.reduce_sum(tf.cast(y, "float64") * upstream)
    grad = tape.gradient(loss, x)
    assert grad.dtype == x.dtype
    want = np_resize_gradient(upstream, *in_size, align_corners)
    # bfloat16 rounds the upstream gradient, the intermediate product and the result to 8 bits (2^-9 relative each):
    # the error of each element is bounded by a few 2^-9 of the same sum over |upstream|, which cancellation can make
    # large against the result itself (a 1x1 input sums 12 values of either sign).
    tolerance = 1e-4 if dtype == "float32" else 2.0**-6 * np_resize_gradient(np.abs(upstream), *in_size, align_corners)
    error = np.abs(np.asarray(tf.cast(grad, "float64")) - want)
    assert np.all(error <= tolerance), f"error / tolerance up to {np.max(error / tolerance):.2f} (largest error {error.max():.3g})"


def test_bilinear_resize_layer_reference_input_dynamic_shape_and_config():
    image = keras.Input((None, None, 3))
    small = keras.layers.AveragePooling2D(4)(image)
    up = BilinearResize(name="up")([small, image])
    model = keras.Model(image, up)
    x = RNG.normal(size=(1, 17, 21, 3)).astype(np.float32)
    pooled = tf.nn.avg_pool2d(x, 4, 4, "VALID").numpy()
    np.testing.assert_allclose(model(x), tf.compat.v1.image.resize_bilinear(pooled, (17, 21), align_corners=True),
                               atol=2e-5)
    depth = keras.Model(image, BilinearResize()([keras.layers.Conv2D(1, 4, strides=4)(image), image]))
    coarse = depth.layers[1](x).numpy()
    np.testing.assert_allclose(depth(x), np_resize_align_corners(coarse.astype(np.float64), 17, 21), atol=2e-5)
    layer = BilinearResize.from_config(BilinearResize(size=(4, 6), align_corners=False).get_config())
    assert layer.size == (4, 6) and layer.align_corners is False
    assert layer(x).shape == (1, 4, 6, 3)


def test_image_normalization_matches_keras_applications():
    x = RNG.uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(ImageNormalization("inception")(x),
                               keras.applications.resnet_v2.preprocess_input(x.copy()), atol=1e-5)
    np.testing.assert_allclose(ImageNormalization("caffe")(x),
                               keras.applications.resnet50.preprocess_input(x.copy()), atol=1e-4)
    np.testing.assert_allclose(ImageNormalization("mean_subtract")(x), x - np.array([123.68, 116.78, 103.94]),
                               atol=1e-4)
    # torchvision's transforms.Normalize after ToTensor, in float64; and keras.applications' "torch" mode.
    torch_like = (x.astype(np.float64) / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(ImageNormalization("torch")(x), torch_like, atol=1e-5)
    np.testing.assert_allclose(ImageNormalization("torch")(x),
                               keras.applications.densenet.preprocess_input(x.copy()), atol=1e-5)
    with pytest.raises(ValueError, match="normalisation mode"):
        ImageNormalization("imagenet_std")


def np_conv(x, kernel, rate=1):
    """'same' dilated cross-correlation, float64."""
    k = kernel.shape[0]
    pad = rate * (k - 1) // 2
    p = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    h, w = x.shape[1:3]
    out = np.zeros((*x.shape[:3], kernel.shape[-1]))
    for i in range(k):
        for j in range(k):
            out += np.einsum("nhwc,cd->nhwd", p[:, i * rate:i * rate + h, j * rate:j * rate + w], kernel[i, j])
    return out


@pytest.mark.parametrize("rate,size", [(2, (7, 9)), (12, (4, 6)), (5, (11, 3))])
def test_atrous_conv_matches_numpy_and_keras_conv_gradients(rate, size):
    """Rates larger than the map included (HQMD's ASPP at the demo size): the taps fall in the padding."""
    x = RNG.normal(size=(2, *size, 6)).astype(np.float32)
    layer = AtrousConv2D(5, 3, padding="same", dilation_rate=rate, use_bias=True, bias_initializer="random_normal")
    reference = keras.layers.Conv2D(5, 3, padding="same", dilation_rate=rate, use_bias=True)
    layer.build(x.shape), reference.build(x.shape)
    reference.set_weights(layer.get_weights())
    kernel, bias = (w.numpy().astype(np.float64) for w in layer.weights)
    np.testing.assert_allclose(layer(x), np_conv(x.astype(np.float64), kernel, rate) + bias, rtol=1e-5, atol=1e-5)

    xt = tf.constant(x)
    gradients = []
    for conv in (layer, reference):
        with tf.GradientTape() as tape:
            tape.watch(xt)
            loss = tf.reduce_sum(tf.sin(conv(xt)))
        gradients.append(tape.gradient(loss, [xt, *conv.trainable_weights]))
    for ours, theirs in zip(*gradients):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)

    ops = {op.type for op in tf.function(layer).get_concrete_function(xt).graph.get_operations()}
    assert native_dilated_conv_available() and "SpaceToBatchND" not in ops and "Conv2D" in ops
    clone = AtrousConv2D.from_config(layer.get_config())
    assert clone.dilation_rate == (rate, rate)
    assert isinstance(conv2d(4, 3, dilation_rate=2), AtrousConv2D) and type(conv2d(4, 3)) is keras.layers.Conv2D


def test_aspp_matches_numpy_reference_in_inference():
    aspp = AtrousSpatialPyramidPooling(filters=4, rates=(1, 2), bn_epsilon=1e-3)
    x = RNG.normal(size=(2, 6, 7, 5)).astype(np.float32)
    aspp(x)
    # give batch norms non-trivial statistics so the reference must apply them
    for layer in aspp._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([RNG.uniform(0.5, 1.5, 4), RNG.normal(size=4), RNG.normal(size=4), RNG.uniform(0.5, 2, 4)])

    def block(layers, inputs):
        conv, bn = layers[0], layers[1]
        gamma, beta, mean, var = [w.numpy().astype(np.float64) for w in bn.weights]
        y = np_conv(inputs, conv.kernel.numpy().astype(np.float64), conv.dilation_rate[0])
        return np.maximum((y - mean) / np.sqrt(var + 1e-3) * gamma + beta, 0)

    x64 = x.astype(np.float64)
    pooled = block(aspp.pool_branch, x64.mean(axis=(1, 2), keepdims=True))
    branches = [np.broadcast_to(pooled, (2, 6, 7, 4))] + [block(b, x64) for b in aspp.branches]
    expected = block(aspp.projection, np.concatenate(branches, -1))
    np.testing.assert_allclose(aspp(x, training=False), expected, rtol=1e-4, atol=1e-4)
    clone = AtrousSpatialPyramidPooling.from_config(aspp.get_config())
    assert clone.rates == (1, 2) and clone.filters == 4


@pytest.mark.parametrize("align_corners", [True, False])
def test_resize_matrix_of_static_sizes_equals_the_traced_one(align_corners, rng):
    """Sizes known at trace time give a NumPy-computed constant; it equals, bit for bit, the matrix the graph computes
    when the sizes are tensors (random sizes, up- and down-sampling, 1-pixel edges)."""
    from hqdepth.layers.resize import _interpolation_matrix

    sizes = [(1, 5), (6, 1), (1, 1)] + [tuple(int(v) for v in rng.integers(1, 400, 2)) for _ in range(20)]
    traced = tf.function(lambda a, b: _interpolation_matrix(a, b, align_corners, "float32"), reduce_retracing=True)
    for in_size, out_size in sizes:
        static = _interpolation_matrix(in_size, out_size, align_corners, "float32")
        dynamic = traced(tf.constant(in_size), tf.constant(out_size))
        np.testing.assert_array_equal(np.asarray(static), dynamic.numpy(), err_msg=f"{in_size} -> {out_size}")


def np_resize(x, size, align_corners):
    """float64 bilinear resize: `np_resize_align_corners`, or TF2's half-pixel `tf.image.resize` run in float64."""
    if align_corners:
        return np_resize_align_corners(x, *size)
    return tf.image.resize(x, size, method="bilinear", antialias=False).numpy()


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("coarse_size,fine_size", [((19, 25), (73, 97)), ((5, 7), (17, 25)), ((1, 1), (4, 5)),
                                                   ((9, 7), (4, 5))])
def test_upsampled_concat_conv_is_resize_concat_conv(coarse_size, fine_size, align_corners, rng):
    """The decoder's resize -> concat -> 3x3 conv, computed with the coarse taps at the coarse size, against the
    official order in float64 NumPy; its gradients against Keras' BilinearResize -> Concatenate -> Conv2D."""
    coarse = rng.normal(size=(2, *coarse_size, 6)).astype(np.float32)
    fine = rng.normal(size=(2, *fine_size, 3)).astype(np.float32)
    layer = UpsampledConcatConv2D(5, align_corners=align_corners)
    got = layer([coarse, fine])
    kernel = layer.kernel.numpy().astype(np.float64)
    expected = np_conv(np.concatenate([np_resize(coarse.astype(np.float64), fine_size, align_corners),
                                       fine.astype(np.float64)], -1), kernel)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6 * np.abs(expected).max())

    reference = keras.layers.Conv2D(5, 3, padding="same", use_bias=False)
    reference.build((None, None, None, 9))
    reference.set_weights(layer.get_weights())
    resize = BilinearResize(align_corners=align_corners)
    tensors = [tf.constant(coarse), tf.constant(fine)]
    gradients = []
    for call, weights in ((lambda c, f: layer([c, f]), layer.kernel),
                          (lambda c, f: reference(tf.concat([resize([c, f]), f], -1)), reference.kernel)):
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            loss = tf.reduce_sum(tf.sin(call(*tensors)))
        gradients.append(tape.gradient(loss, [*tensors, weights]))
    for ours, theirs in zip(*gradients):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())


def test_upsampled_concat_conv_dynamic_sizes_bfloat16_and_config(rng):
    coarse = rng.normal(size=(1, 5, 6, 4)).astype(np.float32)
    fine = rng.normal(size=(1, 13, 16, 2)).astype(np.float32)
    layer = UpsampledConcatConv2D(3, kernel_regularizer=keras.regularizers.L2(0.5), name="up_conv")
    static = np.asarray(layer([coarse, fine]))
    spec = [tf.TensorSpec((None, None, None, 4)), tf.TensorSpec((None, None, None, 2))]
    dynamic = tf.function(lambda c, f: layer([c, f]), input_signature=spec)(coarse, fine)
    np.testing.assert_allclose(dynamic, static, rtol=0, atol=1e-6 * np.abs(static).max())
    assert float(sum(layer.losses)) == pytest.approx(0.5 * float(np.sum(layer.kernel.numpy() ** 2)), rel=1e-6)

    half = UpsampledConcatConv2D(3, dtype="mixed_bfloat16")
    half.build([coarse.shape, fine.shape])
    half.set_weights(layer.get_weights())
    low = half([coarse, fine])
    assert low.dtype == "bfloat16"
    np.testing.assert_allclose(np.asarray(low, np.float32), static, rtol=0, atol=0.02 * np.abs(static).max())

    clone = UpsampledConcatConv2D.from_config(layer.get_config())
    assert (clone.filters, clone.align_corners, clone.name) == (3, True, "up_conv")
    assert isinstance(clone.kernel_regularizer, keras.regularizers.L2)
