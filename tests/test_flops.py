"""hqdepth.flops: the analytic count against hand-computed counts and against TensorFlow's profiler."""

import os

import keras
import numpy as np
import pytest
from keras import layers

from hqdepth.flops import count_flops, default_parts, profiler_flops
from hqdepth.layers import AtrousConv2D, AtrousSpatialPyramidPooling, BilinearResize, UpsampledConcatConv2D

RNG = np.random.default_rng(int(os.environ["HQDEPTH_TEST_SEED"]))


def single_layer(layer, input_shape):
    x = keras.Input(input_shape)
    return keras.Model(x, layer(x))


def entry(count, name):
    (found,) = [e for e in count.layers if e.name == name]
    return found


def test_strided_same_conv():
    h, w, c_in, c_out = RNG.integers(9, 30), RNG.integers(9, 30), RNG.integers(1, 9), RNG.integers(1, 9)
    count = count_flops(single_layer(layers.Conv2D(c_out, 3, strides=2, padding="same", name="conv"), (h, w, c_in)))
    out_h, out_w = -(-h // 2), -(-w // 2)  # ceil
    assert entry(count, "conv").macs == out_h * out_w * c_out * 3 * 3 * c_in
    assert entry(count, "conv").other_flops == out_h * out_w * c_out  # bias
    assert count.flops == 2 * count.macs


def test_dilated_valid_conv_and_atrous_layer():
    h, w, c_in, c_out, rate = 17, 23, 5, 4, 2
    # valid, rate 2: effective kernel 5 -> output 13 x 19
    for layer in (layers.Conv2D(c_out, 3, dilation_rate=rate, padding="valid", use_bias=False, name="conv"),
                  AtrousConv2D(c_out, 3, dilation_rate=rate, padding="valid", use_bias=False, name="conv")):
        count = count_flops(single_layer(layer, (h, w, c_in)))
        assert entry(count, "conv").macs == 13 * 19 * c_out * 9 * c_in
        assert entry(count, "conv").other_flops == 0


def test_grouped_and_depthwise_and_separable():
    count = count_flops(single_layer(layers.Conv2D(6, 1, groups=2, use_bias=False, name="conv"), (7, 8, 4)))
    assert entry(count, "conv").macs == 7 * 8 * 6 * 1 * (4 // 2)
    count = count_flops(single_layer(layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw"), (7, 8, 4)))
    assert entry(count, "dw").macs == 7 * 8 * 4 * 9
    count = count_flops(single_layer(layers.SeparableConv2D(5, 3, padding="same", use_bias=False, name="sep"),
                                     (7, 8, 4)))
    assert entry(count, "sep").macs == 7 * 8 * 4 * 9 + 7 * 8 * 4 * 5


def test_transposed_conv():
    h, w, c_in, c_out, k = 5, 6, 8, 3, 4
    count = count_flops(single_layer(layers.Conv2DTranspose(c_out, k, strides=2, padding="same", name="up"),
                                     (h, w, c_in)))
    # every input pixel is multiplied by the whole k x k x c_in x c_out kernel
    assert entry(count, "up").macs == h * w * c_in * k * k * c_out
    assert entry(count, "up").other_flops == (2 * h) * (2 * w) * c_out


def test_dense_on_sequence():
    count = count_flops(single_layer(layers.Dense(10, name="fc"), (4, 6)))
    assert entry(count, "fc").macs == 4 * 6 * 10
    assert entry(count, "fc").other_flops == 4 * 10


def test_elementwise_and_data_movement():
    x = keras.Input((6, 7, 3))
    y = layers.BatchNormalization(name="bn")(x)
    y = layers.ReLU(name="relu")(y)
    z = layers.Add(name="add")([y, x])
    z = layers.MaxPooling2D(2, name="pool")(z)
    z = layers.Concatenate(name="cat")([z, z])
    count = count_flops(keras.Model(x, z))
    n = 6 * 7 * 3
    assert entry(count, "bn").other_flops == 2 * n
    assert entry(count, "relu").other_flops == n
    assert entry(count, "add").other_flops == n
    assert entry(count, "pool").other_flops == 3 * 3 * 3 * 4
    assert entry(count, "cat").other_flops == 0
    assert count.macs == 0 and not count.uncounted


def test_layer_with_sublayers_is_traced_without_side_effects():
    h, w, c, f = 5, 7, 16, 8
    aspp = AtrousSpatialPyramidPooling(f, rates=(2, 3), name="aspp")
    model = single_layer(aspp, (h, w, c))
    nodes_before = [len(sub._inbound_nodes) for sub in aspp._flatten_layers(include_self=False)]
    count = count_flops(model)
    assert [len(sub._inbound_nodes) for sub in aspp._flatten_layers(include_self=False)] == nodes_before
    n = h * w
    expected = (c * f            # image pooling: 1x1 conv on the 1x1 pooled map
                + n * c * f      # aspp0 1x1
                + 2 * n * 9 * c * f  # two 3x3 atrous branches
                + n * (4 * f) * f)   # projection of the 4 concatenated branches
    assert count.macs == expected
    assert all(e.name.startswith("aspp/") for e in count.layers if e.kind != "InputLayer")
    assert count.by_part(default_parts())["aspp"] == expected
    model.predict(np.zeros((1, h, w, c), np.float32), verbose=0)  # still runs


def test_bilinear_resize_counts_four_taps_per_output():
    x = keras.Input((9, 11, 3))
    model = keras.Model(x, BilinearResize(size=(17, 21), name="resize")(x))
    count = count_flops(model)
    assert entry(count, "resize").macs == 0  # TensorFlow's ResizeBilinear kernel, not matrix products
    assert entry(count, "resize").other_flops == 7 * 17 * 21 * 3


def test_free_input_size_is_refused_unless_a_size_is_given():
    free = single_layer(layers.Conv2D(2, 3, padding="same", name="conv"), (None, None, 3))
    with pytest.raises(ValueError, match="static shapes"):
        count_flops(free)
    assert count_flops(free, input_size=(7, 9)).macs == 7 * 9 * 2 * 9 * 3  # the same layer on 7x9 images
    fixed = single_layer(layers.Conv2D(2, 3, padding="same", name="conv"), (5, 6, 3))
    assert count_flops(fixed, input_size=(10, 12)).macs == 4 * count_flops(fixed).macs


def test_matches_tensorflow_profiler_on_a_small_model():
    x = keras.Input((21, 26, 3))
    y = layers.Conv2D(8, 3, strides=2, padding="same", name="c1")(x)
    y = layers.BatchNormalization(name="bn")(y)
    y = layers.ReLU(name="relu")(y)
    y = AtrousConv2D(8, 3, dilation_rate=2, padding="same", use_bias=False, name="atrous")(y)
    y = AtrousConv2D(6, 3, dilation_rate=3, padding="same", name="dilated")(y)
    y = layers.Conv2DTranspose(4, 4, strides=2, padding="same", name="up")(y)
    y = layers.Conv2D(4, 3, strides=2, padding="valid", name="c2")(y)
    y = layers.GlobalAveragePooling2D(name="gap")(y)
    y = layers.Dense(5, name="fc")(y)
    model = keras.Model(x, y)
    count = count_flops(model)
    profile = profiler_flops(model)
    assert count.uncounted == []
    assert profile["matmul_flops"] == count.profiler_comparable_flops == count.flops
    assert set(profile["by_op"]) >= {"Conv2D", "Conv2DBackpropInput", "MatMul"}


def test_upsampled_concat_conv_counts_the_network_and_runs_fewer():
    """Counted as resize -> concat -> 3x3 conv; the profiler sees the fine conv and the three coarse products."""
    (h, w, coarse), (height, width, fine), filters = (5, 7, 6), (17, 25, 3), 4
    inputs = [keras.Input((h, w, coarse)), keras.Input((height, width, fine))]
    model = keras.Model(inputs, UpsampledConcatConv2D(filters, name="up_conv")(inputs))
    count = count_flops(model)
    assert entry(count, "up_conv").macs == height * width * 9 * (coarse + fine) * filters
    run = (height * width * 9 * fine + h * w * coarse * 9 + 9 * h * width * w + 3 * height * h * width) * filters
    assert count.profiler_comparable_flops == 2 * run == profiler_flops(model)["matmul_flops"]
    assert run < entry(count, "up_conv").macs

def test_profiler_sees_the_padding_of_keras_space_to_batch_dilation():
    """Keras' own dilated Conv2D runs SpaceToBatchND -> Conv2D on a padded map: the profiler counts that work,
    the analytic count the convolution's (which AtrousConv2D executes)."""
    model = single_layer(layers.Conv2D(6, 3, dilation_rate=3, padding="same", use_bias=False, name="dilated"),
                         (11, 13, 8))
    count = count_flops(model)
    assert count.macs == 11 * 13 * 6 * 9 * 8
    assert profiler_flops(model)["matmul_flops"] > count.flops


def test_hqmd_baseline_plus_matches_the_spec_count():
    """specs/hqmd.md 2.5: baseline+ conv MACs at 289x385 = 30.4 G (encoder 13.9, ASPP 7.1, decoder 9.4)."""
    from shape_helpers import shapes_only

    from hqdepth.models import build_model

    with shapes_only():  # the count reads shapes only: the random initial values are not drawn
        model = build_model("hqmd_baseline_plus", input_shape=(289, 385, 3))
    count = count_flops(model)
    conv = [e for e in count.layers if e.kind in ("Conv2D", "AtrousConv2D", "UpsampledConcatConv2D")]
    assert sum(e.macs for e in conv) / 1e9 == pytest.approx(30.4, abs=0.05)
    parts = count.by_part(default_parts())
    assert parts["encoder"] / 1e9 == pytest.approx(13.9, abs=0.05)
    assert parts["aspp"] / 1e9 == pytest.approx(7.1, abs=0.05)
    assert parts["decoder"] / 1e9 == pytest.approx(9.4, abs=0.05)  # its resizes are element-wise work


def test_functional_model_used_as_a_layer_is_counted_inside():
    inner_in = keras.Input((8, 9, 3))
    inner = keras.Model(inner_in, layers.Conv2D(4, 3, padding="same", use_bias=False, name="conv")(inner_in),
                        name="inner")
    x = keras.Input((8, 9, 3))
    outer = keras.Model(x, layers.Dense(2, use_bias=False, name="fc")(inner(x)))
    count = count_flops(outer)
    assert entry(count, "inner/conv").macs == 8 * 9 * 4 * 9 * 3
    assert entry(count, "fc").macs == 8 * 9 * 4 * 2
