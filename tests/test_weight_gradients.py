"""Convolution kernel gradients as matrix products (`hqdepth.layers.weight_gradients`) against a float64 NumPy
convolution, against TensorFlow's own gradients, in float32 and mixed_bfloat16, and in the trainer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hqdepth.errors import ConfigError
from hqdepth.layers.conv import AtrousConv2D, native_dilated_conv_available
from hqdepth.layers import weight_gradients
from hqdepth.layers.weight_gradients import kernel_gradient, qualifies, use_matmul_kernel_gradients
from hqdepth.training import recipes, trainer


def same_padding(size, kernel, stride, dilation):
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return out, total // 2, total - total // 2


def numpy_conv(x, w, stride, padding, dilation):
    """float64 NHWC cross-correlation, written out tap by tap."""
    (kh, kw, _, cout), (sh, sw), (dh, dw) = w.shape, stride, dilation
    if padding == "same":
        out_h, top, bottom = same_padding(x.shape[1], kh, sh, dh)
        out_w, left, right = same_padding(x.shape[2], kw, sw, dw)
        x = np.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)])
    else:
        out_h = (x.shape[1] - (kh - 1) * dh - 1) // sh + 1
        out_w = (x.shape[2] - (kw - 1) * dw - 1) // sw + 1
    y = np.zeros((x.shape[0], out_h, out_w, cout))
    for a in range(kh):
        for b in range(kw):
            view = x[:, a * dh:a * dh + (out_h - 1) * sh + 1:sh, b * dw:b * dw + (out_w - 1) * sw + 1:sw, :]
            y += np.einsum("nijc,cd->nijd", view, w[a, b])
    return y


CASES = [  # kernel, stride, padding, dilation, input (H, W)
    ((1, 1), (1, 1), "same", (1, 1), (7, 9)),
    ((1, 1), (2, 2), "same", (1, 1), (9, 8)),
    ((1, 1), (2, 2), "valid", (1, 1), (9, 8)),
    ((3, 3), (1, 1), "same", (2, 2), (10, 7)),
    ((3, 3), (1, 1), "same", (6, 6), (9, 11)),
    ((3, 3), (1, 1), "valid", (3, 2), (12, 9)),
    ((3, 2), (2, 1), "same", (1, 2), (8, 9)),
    ((3, 3), (1, 1), "same", (6, 6), (5, 7)),  # same size, shifted dy: taps beyond the rows get zeros
    ((2, 3), (1, 1), "same", (3, 2), (8, 9)),  # same size, even kernel: the extra padding pixel goes after
]


@pytest.mark.parametrize("kernel,stride,padding,dilation,size", CASES)
def test_kernel_gradient_is_the_derivative_of_the_convolution(rng, kernel, stride, padding, dilation, size):
    x = rng.normal(size=(2, *size, 3))
    w = rng.normal(size=(*kernel, 3, 4))
    y = numpy_conv(x, w, stride, padding, dilation)
    # the reference convolution is TensorFlow's (so its padding is)
    tf_y = tf.nn.conv2d(x.astype(np.float32), w.astype(np.float32), (1, *stride, 1), padding.upper(),
                        dilations=(1, *dilation, 1))
    np.testing.assert_allclose(tf_y.numpy(), y, rtol=1e-4, atol=1e-4)
    dy = rng.normal(size=y.shape)
    # the convolution is linear in w: d sum(y * dy) / d w[a, b, i, o] = sum(conv(x, e_abio) * dy)
    expected = np.zeros_like(w)
    for index in np.ndindex(*w.shape):
        unit = np.zeros_like(w)
        unit[index] = 1.0
        expected[index] = np.sum(numpy_conv(x, unit, stride, padding, dilation) * dy)
    got = kernel_gradient(tf.constant(x, tf.float64), tf.constant(dy, tf.float64), w.shape, stride, padding, dilation)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-10)


def conv_model(dtype_policy):
    inputs = keras.Input((13, 11, 5))
    x = keras.layers.Conv2D(6, 1, name="pointwise", dtype=dtype_policy)(inputs)
    x = keras.layers.Conv2D(6, 1, strides=2, padding="same", name="strided", dtype=dtype_policy)(x)
    x = AtrousConv2D(4, 3, padding="same", dilation_rate=2, name="dilated", dtype=dtype_policy)(x)
    x = keras.layers.Conv2D(4, 3, padding="same", dilation_rate=2, name="keras_dilated", dtype=dtype_policy)(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="plain", dtype=dtype_policy)(x)
    frozen = keras.layers.Conv2D(4, 1, name="frozen", dtype=dtype_policy)
    frozen.trainable = False
    return keras.Model(inputs, frozen(x))


def gradients(model, x, dy):
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x, training=True)
            value = tf.reduce_sum(tf.cast(y, tf.float32) * dy)
        return [tf.cast(g, tf.float32) for g in tape.gradient(value, [x, *model.trainable_variables])]

    ops = [op.type for op in step.get_concrete_function(tf.TensorSpec(x.shape)).graph.get_operations()]
    return [g.numpy() for g in step(tf.constant(x))], ops


@pytest.mark.parametrize("policy,tolerance", [("float32", 1e-5), ("mixed_bfloat16", 3e-2)])
def test_patched_layers_train_like_tensorflows(rng, policy, tolerance):
    x = rng.normal(size=(2, 13, 11, 5)).astype(np.float32)
    dy = rng.normal(size=(2, 7, 6, 4)).astype(np.float32)
    keras.utils.set_random_seed(int(rng.integers(1 << 30)))
    plain = conv_model(policy)
    patched = conv_model(policy)
    patched.set_weights(plain.get_weights())
    # Keras' own dilated Conv2D (SpaceToBatchND forward) and the plain 3x3 keep TensorFlow's gradients
    native = native_dilated_conv_available("bfloat16" if "bfloat16" in policy else "float32")
    expected_names = ["pointwise", "strided"] + ["dilated"] * native
    assert [layer.name for layer in patched.layers if qualifies(layer)] == expected_names
    assert use_matmul_kernel_gradients(patched, forward="native") == expected_names
    expected, plain_ops = gradients(plain, x, dy)
    got, patched_ops = gradients(patched, x, dy)
    for name, a, b in zip(["input", *(v.path for v in plain.trainable_variables)], got, expected):
        scale = np.abs(b).max()
        assert np.abs(a - b).max() <= tolerance * scale, name
    # the forward pass is untouched; TensorFlow's kernel-gradient op is left for the plain 3x3 only
    np.testing.assert_array_equal(np.asarray(patched(x)), np.asarray(plain(x)))
    # (the graph holds TensorFlow's kernel-gradient op of every convolution, the frozen one's too: pruned at run time)
    assert patched_ops.count("Conv2DBackpropFilter") == plain_ops.count("Conv2DBackpropFilter") - len(expected_names)
    assert "MatMul" in patched_ops and "MatMul" not in plain_ops


@pytest.mark.parametrize("kernel,padding,dilation,size", [
    ((3, 3), "same", (2, 2), (9, 11)), ((3, 3), "same", (6, 4), (5, 7)), ((3, 3), "same", (3, 5), (12, 6)),
    ((2, 3), "same", (3, 2), (8, 9)), ((3, 3), "valid", (3, 2), (12, 9))])
def test_forward_as_matrix_products(rng, kernel, padding, dilation, size):
    """forward="matmul": SAME (same size) as one product shifted onto the output per tap, VALID as one product
    per shifted view of the input, in float32 sums; taps that read only padding (a rate beyond the map) are left
    out, which changes nothing."""
    x = rng.normal(size=(2, *size, 6))
    w = rng.normal(size=(*kernel, 6, 5))
    expected = numpy_conv(x, w, (1, 1), padding, dilation)
    got = weight_gradients.conv2d(tf.constant(x, tf.float32), tf.constant(w, tf.float32), (1, 1), padding, dilation,
                                  forward="matmul")
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)
    with tf.GradientTape() as tape:
        xt = tf.constant(x, tf.float32)
        tape.watch(xt)
        y = weight_gradients.conv2d(xt, tf.constant(w, tf.float32), (1, 1), padding, dilation, forward="matmul")
    dx = tape.gradient(y, xt, output_gradients=tf.ones_like(y))
    reference = tf.raw_ops.Conv2DBackpropInput(input_sizes=x.shape, filter=tf.constant(w, tf.float32),
                                               out_backprop=tf.ones_like(y), strides=[1, 1, 1, 1],
                                               padding=padding.upper(), dilations=[1, *dilation, 1])
    np.testing.assert_allclose(dx.numpy(), reference.numpy(), rtol=1e-5, atol=1e-5)


def test_unknown_sizes_take_the_views(rng):
    """A map of unknown height and width (a model built for any size) cannot be shifted: the forward pass and the
    kernel gradient take the views of the input, and are still the convolution and its derivative."""
    x = rng.normal(size=(2, 7, 9, 3))
    w = rng.normal(size=(3, 3, 3, 4))
    dy = rng.normal(size=(2, 7, 9, 4))
    spec = tf.TensorSpec((None, None, None, 3), tf.float64)

    @tf.function(input_signature=[spec, tf.TensorSpec((None, None, None, 4), tf.float64)])
    def both(x, dy):
        y = weight_gradients.conv2d(x, tf.constant(w), (1, 1), "same", (2, 2), forward="matmul")
        return y, kernel_gradient(x, dy, w.shape, (1, 1), "same", (2, 2))

    y, dw = both(tf.constant(x), tf.constant(dy))
    np.testing.assert_allclose(y.numpy(), numpy_conv(x, w, (1, 1), "same", (2, 2)), rtol=1e-10, atol=1e-10)
    static = kernel_gradient(tf.constant(x), tf.constant(dy), w.shape, (1, 1), "same", (2, 2))  # shifted dy
    np.testing.assert_allclose(dw.numpy(), static.numpy(), rtol=1e-10, atol=1e-10)


def test_the_forward_is_chosen_by_measurement(monkeypatch, rng):
    """forward="auto" measures the two forwards of a dilated layer at the shape it is first called with, once."""
    monkeypatch.setattr(weight_gradients, "_forward_choices", {})
    model = conv_model("float32")
    native = native_dilated_conv_available("float32")
    assert qualifies(model.get_layer("dilated")) == native  # else the layer is not patched at all
    use_matmul_kernel_gradients(model)
    x = rng.normal(size=(3, 13, 11, 5)).astype(np.float32)
    model(x)
    model(x)
    choices = weight_gradients._forward_choices
    assert list(choices) == ([((3, 7, 6, 6), (3, 3, 6, 4), (1, 1), "same", (2, 2), "float32")] if native else [])
    assert all(choice in ("native", "matmul") for choice in choices.values())
    assert weight_gradients.faster_forward((None, None, 6, 6), (3, 3, 6, 4), dilation=(2, 2)) == "native"


def test_patched_model_saves_and_loads_as_before(tmp_path, rng):
    model = conv_model("float32")
    use_matmul_kernel_gradients(model)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = rng.normal(size=(1, 13, 11, 5)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    assert "convolution_op" not in vars(loaded.get_layer("pointwise"))  # a runtime choice, not saved


def test_kernel_gradients_setting():
    config = recipes.resolve_config("hqmd_plus_full")
    assert config["train"]["kernel_gradients"] == "auto"
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("float32")
        assert trainer.kernel_gradients(config) == "tensorflow"
        keras.config.set_dtype_policy("mixed_bfloat16")
        assert trainer.kernel_gradients(config) == ("tensorflow" if tf.config.list_physical_devices("GPU") else "matmul")
        config["train"]["kernel_gradients"] = "tensorflow"
        assert trainer.kernel_gradients(config) == "tensorflow"
    finally:
        keras.config.set_dtype_policy(previous)
    with pytest.raises(ConfigError, match="kernel_gradients"):
        recipes.resolve_config("hqmd_plus_full", sets=["train.kernel_gradients=fast"])


@pytest.mark.parametrize("deterministic,forward", [(False, "auto"), (True, "native")])
def test_build_model_patches_under_bfloat16(monkeypatch, deterministic, forward):
    """The trainer's build_model patches the model's convolutions in mixed_bfloat16 on a CPU; a deterministic run
    keeps the native forward passes (the "auto" choice is a timing)."""
    calls = []
    monkeypatch.setattr(weight_gradients, "use_matmul_kernel_gradients",
                        lambda model, forward="auto": calls.append(forward) or [])
    config = recipes.resolve_config("fcn_ssim_mse", sets=["data.input_size=[32, 32]", "train.seed=0",
                                                          f"train.deterministic={str(deterministic).lower()}"])
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("mixed_bfloat16")
        trainer.build_model(config)
        keras.config.set_dtype_policy("float32")
        trainer.build_model(config)
    finally:
        keras.config.set_dtype_policy(previous)
    assert calls == ([] if tf.config.list_physical_devices("GPU") else [forward])


def test_patched_layers_sum_their_bias_gradient_in_float32(rng):
    """TensorFlow's BiasAddGrad sums bfloat16 in bfloat16 (tens of percent off over thousands of pixels); the
    patched layers' bias gradient is the float32 sum of the bfloat16 output gradient, like oneDNN's fused kernel."""
    x = rng.normal(size=(4, 48, 64, 8)).astype(np.float32)
    dy = (rng.normal(size=(4, 48, 64, 16)) + 0.5).astype(np.float32)
    inputs = keras.Input(x.shape[1:])
    model = keras.Model(inputs, keras.layers.Conv2D(16, 1, dtype="mixed_bfloat16", name="pointwise")(inputs))
    assert use_matmul_kernel_gradients(model) == ["pointwise"]
    bias_gradient = gradients(model, x, dy)[0][-1]
    exact = np.asarray(tf.cast(tf.cast(dy, tf.bfloat16), tf.float64)).sum(axis=(0, 1, 2))
    np.testing.assert_allclose(bias_gradient, exact, rtol=1e-2)


@pytest.mark.parametrize("kind", ["conv_transpose", "dense"])
def test_16_bit_transposed_convs_and_dense_layers_sum_their_bias_gradient_in_float32(kind, rng):
    """Alone (no convolution's backward-filter kernel to fuse into) BiasAddGrad sums bfloat16 in bfloat16: 90 % off
    at this size. Patched: forward and kernel gradient as Keras computes them, the bias gradient the float32 sum."""
    from hqdepth.layers.weight_gradients import use_float32_bias_gradients

    def build():
        keras.utils.set_random_seed(0)
        layer = (keras.layers.Conv2DTranspose(16, 4, strides=2, padding="same", dtype="mixed_bfloat16", name=kind)
                 if kind == "conv_transpose" else keras.layers.Dense(16, dtype="mixed_bfloat16", name=kind))
        inputs = keras.Input((24, 32, 8))
        return keras.Model(inputs, layer(inputs))

    x = rng.normal(size=(4, 24, 32, 8)).astype(np.float32)
    plain, patched = build(), build()
    dy = (rng.normal(size=plain.output.shape[1:]) + 0.5).astype(np.float32)[None].repeat(4, axis=0)
    assert use_float32_bias_gradients(patched) == [kind]
    float32_input = keras.Input((3,))
    assert use_float32_bias_gradients(keras.Model(float32_input, keras.layers.Dense(2)(float32_input))) == []
    expected, got = gradients(plain, x, dy)[0], gradients(patched, x, dy)[0]
    np.testing.assert_array_equal(np.asarray(patched(x)), np.asarray(plain(x)))
    np.testing.assert_array_equal(got[1], expected[1])  # kernel gradient untouched
    exact = np.asarray(tf.cast(tf.cast(dy, tf.bfloat16), tf.float64)).reshape(-1, 16).sum(axis=0)
    np.testing.assert_allclose(got[2], exact, rtol=1e-2)
    assert np.abs(expected[2] - exact).max() > 0.1 * np.abs(exact).max()  # TensorFlow's own sum is far off here
