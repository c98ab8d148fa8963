"""SENet-154 (MRPAN's and SARPN's backbone) against an independent float64 NumPy network built from a PyTorch state
dict, as Cadene's `pretrainedmodels.senet154` defines it (SARPN `models/senet.py`), through the converter.

The reference reads the PyTorch names and layouts directly (NCHW, (O, I/groups, kh, kw) kernels, symmetric padding,
`MaxPool2d(3, 2, ceil_mode=True)` with its partial last window), so a wrong tap, padding, group order, pool size or
name mapping shows up as a difference. A smaller network of the same design keeps it fast; the full network's size
is checked against Cadene's published parameter count.
"""

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from hqdepth.backbones.senet import senet154
from hqdepth.errors import ConfigError, HQDepthError
from hqdepth.weights.torch import TorchWeightsError, convert_senet154

SMALL = {"blocks": (2, 1, 2, 1), "planes": (8, 16, 16, 32), "groups": 4, "reduction": 4, "stem_width": 8}
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def cadene_state_dict(rng, blocks, planes, groups, reduction, stem_width):
    """A random state dict with the keys and shapes of Cadene's `SENet(SEBottleneck, blocks, groups, reduction)`."""
    state = {}

    def conv(key, out, cin, k, bias=False, groups=1):
        state[f"{key}.weight"] = rng.normal(0, np.sqrt(2.0 / (cin // groups * k * k)), (out, cin // groups, k, k))
        if bias:
            state[f"{key}.bias"] = rng.normal(0, 0.1, out)

    def bn(key, c):
        state[f"{key}.weight"] = rng.uniform(0.5, 1.5, c)
        state[f"{key}.bias"] = rng.normal(0, 0.1, c)
        state[f"{key}.running_mean"] = rng.normal(0, 0.1, c)
        state[f"{key}.running_var"] = rng.uniform(0.5, 1.5, c)
        state[f"{key}.num_batches_tracked"] = np.array(1000, np.int64)

    for k, (cin, out) in enumerate([(3, stem_width), (stem_width, stem_width), (stem_width, 2 * stem_width)], 1):
        conv(f"layer0.conv{k}", out, cin, 3)
        bn(f"layer0.bn{k}", out)
    inplanes = 2 * stem_width
    for stage, (p, count) in enumerate(zip(planes, blocks), 1):
        for unit in range(count):
            key = f"layer{stage}.{unit}"
            conv(f"{key}.conv1", 2 * p, inplanes, 1)
            bn(f"{key}.bn1", 2 * p)
            conv(f"{key}.conv2", 4 * p, 2 * p, 3, groups=groups)
            bn(f"{key}.bn2", 4 * p)
            conv(f"{key}.conv3", 4 * p, 4 * p, 1)
            bn(f"{key}.bn3", 4 * p)
            conv(f"{key}.se_module.fc1", 4 * p // reduction, 4 * p, 1, bias=True)
            conv(f"{key}.se_module.fc2", 4 * p, 4 * p // reduction, 1, bias=True)
            if unit == 0:
                conv(f"{key}.downsample.0", 4 * p, inplanes, 1 if stage == 1 else 3)
                bn(f"{key}.downsample.1", 4 * p)
            inplanes = 4 * p
    state["last_linear.weight"] = rng.normal(0, 0.01, (10, inplanes))  # the classifier: not converted
    state["last_linear.bias"] = np.zeros(10)
    return state


# --- the reference: PyTorch semantics in float64 NumPy, NCHW ----------------------------------------------------

def conv2d(x, w, stride=1, padding=0, groups=1, bias=None):
    n, c = x.shape[:2]
    out, _, k, _ = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]  # N, C, Ho, Wo, k, k
    windows = windows.reshape(n, groups, c // groups, *windows.shape[2:])
    y = np.einsum("ngchwij,gocij->ngohw", windows, w.reshape(groups, out // groups, *w.shape[1:]))
    y = y.reshape(n, out, *y.shape[-2:])
    return y if bias is None else y + bias[None, :, None, None]


def batch_norm(x, state, key):
    scale = state[f"{key}.weight"] / np.sqrt(state[f"{key}.running_var"] + 1e-5)
    return (x - state[f"{key}.running_mean"][None, :, None, None]) * scale[None, :, None, None] + state[
        f"{key}.bias"][None, :, None, None]


def max_pool_ceil(x, k=3, stride=2):
    """`nn.MaxPool2d(k, stride, ceil_mode=True)`: ceil output size, last window clipped to the input."""
    def size(length):
        out = -(-(length - k) // stride) + 1
        return out - 1 if (out - 1) * stride >= length else out

    h, w = x.shape[2:]
    y = np.empty((*x.shape[:2], size(h), size(w)))
    for i in range(y.shape[2]):
        for j in range(y.shape[3]):
            y[:, :, i, j] = x[:, :, i * stride:i * stride + k, j * stride:j * stride + k].max(axis=(2, 3))
    return y


def relu(x):
    return np.maximum(x, 0)


def reference_taps(state, image, blocks, groups, **_):
    """SARPN's `E_senet` outputs: layer0 before its pool, then layer1-4."""
    x = ((image / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2)
    x = relu(batch_norm(conv2d(x, state["layer0.conv1.weight"], 2, 1), state, "layer0.bn1"))
    x = relu(batch_norm(conv2d(x, state["layer0.conv2.weight"], 1, 1), state, "layer0.bn2"))
    x = relu(batch_norm(conv2d(x, state["layer0.conv3.weight"], 1, 1), state, "layer0.bn3"))
    taps = [x]
    x = max_pool_ceil(x)
    for stage, count in enumerate(blocks, 1):
        for unit in range(count):
            key, stride = f"layer{stage}.{unit}", 2 if stage > 1 and unit == 0 else 1
            y = relu(batch_norm(conv2d(x, state[f"{key}.conv1.weight"]), state, f"{key}.bn1"))
            y = relu(batch_norm(conv2d(y, state[f"{key}.conv2.weight"], stride, 1, groups), state, f"{key}.bn2"))
            y = batch_norm(conv2d(y, state[f"{key}.conv3.weight"]), state, f"{key}.bn3")
            s = y.mean(axis=(2, 3), keepdims=True)
            s = relu(conv2d(s, state[f"{key}.se_module.fc1.weight"], bias=state[f"{key}.se_module.fc1.bias"]))
            s = conv2d(s, state[f"{key}.se_module.fc2.weight"], bias=state[f"{key}.se_module.fc2.bias"])
            y = y / (1 + np.exp(-s))
            shortcut = x
            if f"{key}.downsample.0.weight" in state:
                kernel = state[f"{key}.downsample.0.weight"]
                shortcut = batch_norm(conv2d(x, kernel, stride, kernel.shape[-1] // 2), state, f"{key}.downsample.1")
            x = relu(y + shortcut)
        taps.append(x)
    return [t.transpose(0, 2, 3, 1) for t in taps]


def write_state(state, path):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v, np.int64 if v.dtype == np.int64 else np.float32) for k, v in state.items()},
              str(path))


def test_converted_senet_equals_the_pytorch_network_in_numpy(tmp_path, rng):
    state = cadene_state_dict(rng, **SMALL)
    source = tmp_path / "senet.safetensors"
    write_state(state, source)
    report = convert_senet154(source, tmp_path / "senet.weights.h5", **SMALL)
    assert report.skipped["ImageNet classifier"] == ["last_linear.bias", "last_linear.weight"]
    model = senet154(weights=str(tmp_path / "senet.weights.h5"), **SMALL)
    # 44 -> 22 (even: the ceil-mode pool uses its partial window) and 58 -> 29 (odd) at H/2; later stages odd and even
    image = rng.uniform(0, 255, (2, 44, 58, 3))
    ours = [np.asarray(t) for t in model(image.astype("float32"), training=False)]
    want = reference_taps({k: v.astype(np.float64) for k, v in state.items()}, image, **SMALL)
    assert [t.shape for t in ours] == [t.shape for t in want]
    assert [t.shape[1:3] for t in want] == [(22, 29), (11, 14), (6, 7), (3, 4), (2, 2)]
    assert [t.shape[-1] for t in ours] == [16, 32, 64, 64, 128]
    for level, (a, b) in enumerate(zip(ours, want)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max(), err_msg=f"tap {level}")


def test_a_conversion_for_another_layout_is_refused(tmp_path, rng):
    """A `.weights.h5` loads by position: the converter records the builder's layout and senet154 refuses a file
    recorded for another one (a conversion cached before a builder change) instead of loading it into the wrong
    layers."""
    import h5py

    from hqdepth.backbones.senet import LAYOUT_ATTRIBUTE, layout_fingerprint

    write_state(cadene_state_dict(rng, **SMALL), tmp_path / "senet.safetensors")
    convert_senet154(tmp_path / "senet.safetensors", tmp_path / "senet.weights.h5", **SMALL)
    model = senet154(**SMALL)
    with h5py.File(tmp_path / "senet.weights.h5", "r") as f:
        assert f.attrs[LAYOUT_ATTRIBUTE] == layout_fingerprint(model)
    assert layout_fingerprint(senet154(**{**SMALL, "reduction": 2})) != layout_fingerprint(model)
    with h5py.File(tmp_path / "senet.weights.h5", "a") as f:
        f.attrs[LAYOUT_ATTRIBUTE] = "0123456789abcdef"
    with pytest.raises(HQDepthError, match="converted for another layout.*fingerprint 0123456789abcdef.*convert it"):
        senet154(weights=str(tmp_path / "senet.weights.h5"), **SMALL)
    with pytest.raises(HQDepthError, match="Could not load .* into SENet-154"):
        (tmp_path / "broken.weights.h5").write_text("not HDF5")
        senet154(weights=str(tmp_path / "broken.weights.h5"), **SMALL)


def test_full_senet154_has_cadenes_parameter_count():
    """113,039,984 trainable = Cadene's published 115,088,984 less the 2048 x 1000 classifier; the batch norms' moving
    statistics add 247,552."""
    from shape_helpers import shapes_only

    with shapes_only():  # counts, output shapes and a layer's groups: the random initial values are not drawn
        model = senet154(input_shape=(64, 64, 3))
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable + 2048 * 1000 + 1000 == 115_088_984
    assert model.count_params() == 113_287_536
    assert [tuple(o.shape[1:]) for o in model.outputs] == [(32, 32, 128), (16, 16, 256), (8, 8, 512), (4, 4, 1024),
                                                           (2, 2, 2048)]
    assert model.get_layer("layer3_35_conv2").groups == 64


def test_converter_refuses_another_network_and_bad_options(tmp_path, rng):
    state = cadene_state_dict(rng, **SMALL)
    del state["layer2.0.se_module.fc1.bias"]
    write_state(state, tmp_path / "broken.safetensors")
    with pytest.raises(TorchWeightsError, match="layer2.0.se_module.fc1.bias"):
        convert_senet154(tmp_path / "broken.safetensors", tmp_path / "out.weights.h5", **SMALL)
    write_state({"conv1.weight": np.zeros((64, 3, 7, 7))}, tmp_path / "resnet.safetensors")
    with pytest.raises(TorchWeightsError, match=r"does not look like a SENet \(Cadene"):
        convert_senet154(tmp_path / "resnet.safetensors", tmp_path / "out.weights.h5")
    with pytest.raises(ConfigError, match="preprocess must be one of"):
        senet154(preprocess="caffe")


def test_the_command_line_offers_every_converter():
    from hqdepth import weights
    from hqdepth.commands import weights as command

    assert command.FORMATS == weights.FORMATS


def test_grouped_conv_runs_tensorflows_kernels_and_computes_keras_function(tmp_path, rng):
    """`GroupedConv2D` (TensorFlow's grouped kernels where the probe finds them) against the NumPy convolution above
    and, with gradients, against `keras.layers.Conv2D(groups=...)` (Keras' XLA-compiled path); saved and loaded."""
    import keras
    import tensorflow as tf

    from hqdepth.layers import GroupedConv2D
    from hqdepth.layers import conv as conv_module

    x = rng.normal(size=(2, 9, 11, 8)).astype("float32")
    upstream = rng.normal(size=(2, 4, 5, 6)).astype("float32")  # d loss / d output: no symmetric shortcut
    ours = GroupedConv2D(6, 3, strides=2, groups=2, use_bias=True, bias_initializer="random_normal")
    reference = keras.layers.Conv2D(6, 3, strides=2, groups=2, use_bias=True)
    ours.build(x.shape)
    reference.build(x.shape)
    reference.set_weights(ours.get_weights())
    assert ours.uses_native_kernel() == conv_module.native_grouped_conv_available("float32")

    kernel, bias = (np.asarray(w, np.float64) for w in ours.get_weights())
    want = conv2d(x.transpose(0, 3, 1, 2).astype(np.float64), kernel.transpose(3, 2, 0, 1), 2, 0, groups=2, bias=bias)
    np.testing.assert_allclose(np.asarray(ours(x)), want.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)

    def outputs_and_gradients(layer):
        inputs = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            value = tf.reduce_sum(layer(inputs) * upstream)
        return [layer(inputs), *tape.gradient(value, [inputs, *layer.trainable_weights])]

    for a, b in zip(outputs_and_gradients(ours), outputs_and_gradients(reference)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)

    model = keras.Sequential([keras.Input((9, 11, 8)), ours])
    model.save(tmp_path / "grouped.keras")
    loaded = keras.saving.load_model(tmp_path / "grouped.keras")
    assert isinstance(loaded.layers[0], GroupedConv2D) and loaded.layers[0].groups == 2
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


def test_grouped_conv_exports_to_onnx(tmp_path, rng):
    """`GroupedConv2D` (SENet-154's, so MRPAN's) exports to ONNX: its TensorFlow grouped convolution becomes one ONNX
    `Conv` with `group` set, which ONNX Runtime computes as the NumPy grouped convolution does."""
    import keras
    import onnx
    import onnxruntime

    from hqdepth.layers import GroupedConv2D

    x = rng.normal(size=(2, 9, 11, 8)).astype("float32")
    layer = GroupedConv2D(6, 3, strides=2, groups=2, padding="same", use_bias=True, bias_initializer="random_normal")
    model = keras.Sequential([keras.Input((9, 11, 8)), layer])
    model(x)  # Keras exports only a model that has been called
    model.export(str(tmp_path / "grouped.onnx"), format="onnx", verbose=False)
    groups = [attribute.i for node in onnx.load(str(tmp_path / "grouped.onnx")).graph.node if node.op_type == "Conv"
              for attribute in node.attribute if attribute.name == "group"]
    assert groups == [2]
    session = onnxruntime.InferenceSession(str(tmp_path / "grouped.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
    # "same" at stride 2 on 9x11 pads one row and column on each side
    want = conv2d(x.transpose(0, 3, 1, 2).astype(np.float64), kernel.transpose(3, 2, 0, 1), 2, 1, groups=2, bias=bias)
    np.testing.assert_allclose(got, want.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
