"""TF-slim resnet_v2_50 and HQMDE checkpoint converters (hqdepth.weights.slim) and `hqdepth weights convert`.

The checkpoints are written here with the official variable names and shapes and random values
(no network). The converted Keras networks are compared with an independent float64 NumPy forward pass
written from TF-slim's `resnet_v2.py`/`resnet_utils.py` and HQMDE's `network.py`: slim's
`conv2d_same` (explicit padding for strided convs), the stride in the last unit of each block,
`stack_blocks_dense`'s output stride with multi-grid, SAME max pooling, pre-activation and postnorm,
the ASPP and the decoder with align-corners bilinear resizing.
"""

import math
import os

import numpy as np
import pytest

# HQDEPTH_TEST_SEED replays a run (tests/conftest.py); the failure messages print the seed used here.
SEED = int(os.environ.get("HQDEPTH_TEST_SEED") or np.random.SeedSequence().entropy % 2**32)
EPS = 1e-5  # slim resnet_arg_scope / HQMDE --batch_norm_epsilon
MEAN_RGB = np.array([123.68, 116.78, 103.94])  # HQMDE network.py


# ------------------------------------------------------------------------------ float64 reference


def _pad(x, top, bottom, left, right, value=0.0):
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _same_padding(size, kernel, stride, rate):
    """TensorFlow 'SAME': output ceil(size / stride), the odd pixel of padding after."""
    effective = (kernel - 1) * rate + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def conv(x, w, b=None, stride=1, rate=1, padding="SAME"):
    """tf.nn.conv2d in float64 (NHWC, HWIO), 'SAME' / 'VALID', stride and dilation."""
    kh, kw = w.shape[:2]
    if padding == "SAME":
        x = _pad(x, *_same_padding(x.shape[1], kh, stride, rate), *_same_padding(x.shape[2], kw, stride, rate))
    out_h = (x.shape[1] - ((kh - 1) * rate + 1)) // stride + 1
    out_w = (x.shape[2] - ((kw - 1) * rate + 1)) // stride + 1
    y = np.zeros((x.shape[0], out_h, out_w, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i * rate:i * rate + (out_h - 1) * stride + 1:stride,
                      j * rate:j * rate + (out_w - 1) * stride + 1:stride, :]
            y += (np.ascontiguousarray(patch).reshape(-1, w.shape[2]) @ w[i, j]).reshape(y.shape)
    return y if b is None else y + b


def conv2d_same(x, w, b=None, stride=1, rate=1):
    """slim resnet_utils.conv2d_same: SAME at stride 1, else explicit symmetric-ish padding then VALID."""
    if stride == 1:
        return conv(x, w, b, 1, rate, "SAME")
    effective = w.shape[0] + (w.shape[0] - 1) * (rate - 1)
    beg = (effective - 1) // 2
    end = effective - 1 - beg
    return conv(_pad(x, beg, end, beg, end), w, b, stride, rate, "VALID")


def max_pool_same(x, size=3, stride=2):
    top, bottom = _same_padding(x.shape[1], size, stride, 1)
    left, right = _same_padding(x.shape[2], size, stride, 1)
    x = _pad(x, top, bottom, left, right, -np.inf)
    out_h, out_w = (x.shape[1] - size) // stride + 1, (x.shape[2] - size) // stride + 1
    y = np.full((x.shape[0], out_h, out_w, x.shape[3]), -np.inf)
    for i in range(size):
        for j in range(size):
            y = np.maximum(y, x[:, i:i + (out_h - 1) * stride + 1:stride, j:j + (out_w - 1) * stride + 1:stride])
    return y


def batch_norm(x, v, prefix):
    return (x - v[f"{prefix}/moving_mean"]) / np.sqrt(v[f"{prefix}/moving_variance"] + EPS) * v[f"{prefix}/gamma"] \
        + v[f"{prefix}/beta"]


def relu(x):
    return np.maximum(x, 0.0)


def conv_bn_relu(x, v, prefix, stride=1, rate=1, same=False):
    """slim.conv2d with batch norm and ReLU (no biases); `same`: resnet_utils.conv2d_same."""
    w = v[f"{prefix}/weights"]
    y = conv2d_same(x, w, None, stride, rate) if same else conv(x, w, None, stride, rate)
    return relu(batch_norm(y, v, f"{prefix}/BatchNorm"))


def bottleneck_v2(x, v, prefix, depth, stride, rate):
    preact = relu(batch_norm(x, v, f"{prefix}/preact"))
    if depth == x.shape[-1]:
        shortcut = x[:, ::stride, ::stride] if stride > 1 else x  # max_pool2d 1x1 on the input (not preact)
    else:
        shortcut = conv(preact, v[f"{prefix}/shortcut/weights"], v[f"{prefix}/shortcut/biases"], stride)
    low = conv_bn_relu(preact, v, f"{prefix}/conv1")
    residual = conv_bn_relu(low, v, f"{prefix}/conv2", stride, rate, same=True)
    residual = conv(residual, v[f"{prefix}/conv3/weights"], v[f"{prefix}/conv3/biases"])
    return shortcut + residual, low


def slim_resnet_v2_50(x, v, output_stride=16, multi_grid=(1, 2, 4), scope="resnet_v2_50"):
    """resnet_v2_50(global_pool=False, num_classes=None) in float64; returns (postnorm output, end points)."""
    end_points = {}
    net = conv2d_same(x, v[f"{scope}/conv1/weights"], v[f"{scope}/conv1/biases"], stride=2)  # no BN, no ReLU
    net = max_pool_same(net)
    target = None if output_stride is None else output_stride // 4
    current_stride, rate = 1, 1
    for block, (width, units, block_stride) in enumerate(((64, 3, 2), (128, 4, 2), (256, 6, 2), (512, 3, 1)), 1):
        for i in range(units):
            unit_stride = block_stride if i == units - 1 else 1  # the stride sits in the block's last unit
            prefix = f"{scope}/block{block}/unit_{i + 1}/bottleneck_v2"
            if target is not None and current_stride == target:
                unit_rate = rate * multi_grid[i] if block == 4 else rate
                net, low = bottleneck_v2(net, v, prefix, 4 * width, 1, unit_rate)
                rate *= unit_stride
            else:
                net, low = bottleneck_v2(net, v, prefix, 4 * width, unit_stride, 1)
                current_stride *= unit_stride
            end_points[f"{prefix}/conv1"] = low
    return relu(batch_norm(net, v, f"{scope}/postnorm")), end_points


def resize_align_corners(x, height, width):
    """tf.image.resize_bilinear(align_corners=True): source = dst * (in - 1) / (out - 1)."""
    def axis(n_in, n_out):
        src = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        low = np.floor(src).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, src - low

    y0, y1, fy = axis(x.shape[1], height)
    x0, x1, fx = axis(x.shape[2], width)
    rows = x[:, y0] * (1 - fy)[None, :, None, None] + x[:, y1] * fy[None, :, None, None]
    return rows[:, :, x0] * (1 - fx)[None, None, :, None] + rows[:, :, x1] * fx[None, None, :, None]


def hqmde_network(images, v, decode_at_image_size=True, aspp_rates=(4, 8, 12)):
    """HQMDE network.py mdr_net (inference) in float64: images 0..255 -> (ASPP output, logits)."""
    features, end_points = slim_resnet_v2_50(images - MEAN_RGB, v)
    low = end_points["resnet_v2_50/block1/unit_3/bottleneck_v2/conv1"]
    aspp = "MDR_Net/ASPP_layer"
    pooled = conv_bn_relu(features.mean(axis=(1, 2), keepdims=True), v, f"{aspp}/image_level_conv_1x1")
    branches = [resize_align_corners(pooled, *features.shape[1:3]), conv_bn_relu(features, v, f"{aspp}/conv_1x1_0_0")]
    branches += [conv_bn_relu(features, v, f"{aspp}/conv_3x3_{i}_0", rate=r) for i, r in enumerate(aspp_rates, 1)]
    encoded = conv_bn_relu(np.concatenate(branches, axis=-1), v, f"{aspp}/conv_1x1_output")
    decoder = "MDR_Net/decoder"
    low = conv_bn_relu(low, v, f"{decoder}/lower_level_features/conv_1x1")
    net = np.concatenate([resize_align_corners(encoded, *low.shape[1:3]), low], axis=-1)
    net = conv_bn_relu(net, v, f"{decoder}/upsampling_logits_1/decoder_conv1/decoder_conv1_1")
    net = conv_bn_relu(net, v, f"{decoder}/upsampling_logits_1/decoder_conv1/decoder_conv1_2")
    head = f"{decoder}/upsampling_logits_2"
    if decode_at_image_size:
        net = conv_bn_relu(net, v, f"{head}/decoder_conv2")
        net = resize_align_corners(net, *images.shape[1:3])
        logits = conv(net, v[f"{head}/conv_logits/weights"], v[f"{head}/conv_logits/biases"])
    else:
        logits = conv(net, v[f"{head}/conv_logits/weights"], v[f"{head}/conv_logits/biases"])
        logits = resize_align_corners(logits, *images.shape[1:3])
    return encoded, logits


# ------------------------------------------------------------------------------ checkpoints


def random_values(expected, rng):
    """Random float32 values for {layer: [(name, shape)]}: He-scaled kernels, plausible BN statistics."""
    values = {}
    for entries in expected.values():
        for name, shape in entries:
            leaf = name.rsplit("/", 1)[1]
            if leaf == "weights":
                fan_in = int(np.prod(shape[:3]))
                scale = math.sqrt(2.0 / fan_in) * (0.5 if "/conv3/" in name else 1.0)
                value = rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)
            elif leaf in ("biases", "beta", "moving_mean"):
                value = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.1)
            elif leaf == "gamma":
                value = rng.uniform(0.5, 1.5, shape)
            else:  # moving_variance
                value = rng.uniform(0.5, 2.0, shape)
            values[name] = value.astype(np.float32)
    return values


def write_checkpoint(prefix, values):
    """A TF checkpoint with exactly these variable names (what a TF1 Saver writes for slim variables)."""
    import tensorflow as tf

    names = sorted(values)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[values[n] for n in names])
    return str(prefix)


@pytest.fixture(scope="module")
def backbone_values():
    from hqdepth.weights.slim import resnet_v2_50_variables

    return random_values(resnet_v2_50_variables(), np.random.default_rng(SEED))


@pytest.fixture(scope="module")
def slim_checkpoint(tmp_path_factory, backbone_values):
    """slim's ImageNet checkpoint layout: the backbone, the 1001-class classifier and global_step."""
    rng = np.random.default_rng(SEED + 1)
    values = dict(backbone_values)
    values["resnet_v2_50/logits/weights"] = rng.normal(0, 0.01, (1, 1, 2048, 1001)).astype(np.float32)
    values["resnet_v2_50/logits/biases"] = np.zeros(1001, np.float32)
    values["global_step"] = np.array(1000, np.int64)
    return write_checkpoint(tmp_path_factory.mktemp("slim") / "resnet_v2_50.ckpt", values)


@pytest.fixture(scope="module")
def converted_backbone(tmp_path_factory, slim_checkpoint):
    """The slim checkpoint converted by `hqdepth weights convert`: (file, what the command printed)."""
    import contextlib
    import io

    from hqdepth.cli import main

    out = tmp_path_factory.mktemp("converted") / "resnet_v2_50.weights.h5"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["weights", "convert", "--from", "slim-resnet50-v2", slim_checkpoint, str(out)]) == 0
    return out, printed.getvalue()


def hqmde_values(backbone_values, decode_at_image_size, seed):
    from hqdepth.weights.slim import hqmde_head_variables

    rng = np.random.default_rng(seed)
    values = dict(backbone_values)
    values.update(random_values(hqmde_head_variables(decode_at_image_size), rng))
    logits = "MDR_Net/decoder/upsampling_logits_2/conv_logits/weights"
    values[logits] *= 0.002  # random BN statistics let activations grow: keep 10 * sigmoid(logits) unsaturated
    # what train.py's tf.train.Saver() also stores: Adam slots, beta powers, step (scope optimizer_vars)
    values["optimizer_vars/Variable"] = np.array(300000, np.int64)
    values["optimizer_vars/beta1_power"] = np.array(0.5, np.float32)
    values["optimizer_vars/beta2_power"] = np.array(0.7, np.float32)
    for name in ("resnet_v2_50/conv1/weights", "MDR_Net/decoder/upsampling_logits_2/conv_logits/biases"):
        values[f"optimizer_vars/{name}/Adam"] = np.zeros_like(values[name])
        values[f"{name}/Adam_1"] = np.zeros_like(values[name])
    return values


# ------------------------------------------------------------------------------ backbone


def test_slim_mapping_names_and_shapes():
    """slim's resnet_v2_50 variables by Keras layer (coverage of the model both ways is checked on conversion)."""
    from hqdepth.weights.slim import resnet_v2_50_variables

    expected = resnet_v2_50_variables()
    names = [name for entries in expected.values() for name, _ in entries]
    assert len(names) == len(set(names)) == 270  # 53 kernels, 21 biases, 49 batch norms x 4
    # = keras.applications.ResNet50V2(include_top=False).count_params()
    assert sum(int(np.prod(s)) for e in expected.values() for _, s in e) == 23_564_800
    assert expected["conv1_conv"] == [("resnet_v2_50/conv1/weights", (7, 7, 3, 64)),
                                      ("resnet_v2_50/conv1/biases", (64,))]
    assert expected["conv2_block1_0_conv"][0] == ("resnet_v2_50/block1/unit_1/bottleneck_v2/shortcut/weights",
                                                  (1, 1, 64, 256))
    assert expected["conv4_block1_preact_bn"][0] == ("resnet_v2_50/block3/unit_1/bottleneck_v2/preact/gamma", (512,))
    assert expected["conv5_block3_2_bn"][1] == ("resnet_v2_50/block4/unit_3/bottleneck_v2/conv2/BatchNorm/beta",
                                                (512,))
    assert expected["conv5_block3_3_conv"][1] == ("resnet_v2_50/block4/unit_3/bottleneck_v2/conv3/biases", (2048,))
    assert expected["post_bn"][3] == ("resnet_v2_50/postnorm/moving_variance", (2048,))
    assert "conv2_block2_0_conv" not in expected  # identity shortcut where the depth does not change


def test_converted_backbone_in_hqmd_baseline_plus_matches_slim_reference(converted_backbone, backbone_values):
    """`backbone_weights=FILE` builds hqmd_baseline_plus with exactly the checkpoint's values, and its backbone
    (v2, output stride 16, multi-grid 1/2/4, mean subtraction) equals float64 slim resnet_v2_50 to 1e-4."""
    import keras

    from hqdepth.models.registry import build_model
    from hqdepth.weights.slim import resnet_v2_50_variables

    out, printed = converted_backbone
    assert f"wrote {out}" in printed and "270 variables, 23,564,800 values" in printed
    assert "skipped 2 (ImageNet classifier, not part of the backbone): resnet_v2_50/logits/biases, " \
           "resnet_v2_50/logits/weights" in printed and "skipped 1 (training step counter): global_step" in printed

    # 35x46: the conv1 output is 18x23, so the SAME max pool pads 0 before / 1 after rows (slim's alignment)
    model = build_model("hqmd_baseline_plus", input_shape=(35, 46, 3), backbone_weights=str(out))
    for layer_name, entries in resnet_v2_50_variables().items():
        arrays = model.get_layer(layer_name).get_weights()
        for array, (name, _) in zip(arrays, entries, strict=True):
            np.testing.assert_array_equal(array, backbone_values[name], err_msg=name)

    images = np.random.default_rng(SEED + 2).uniform(0, 255, (2, 35, 46, 3))
    probe = keras.Model(model.input, [model.get_layer(name).output for name in ("conv2_block3_1_relu", "post_relu")])
    low, final = (np.asarray(t, np.float64) for t in probe(images.astype(np.float32), training=False))
    ref_final, end_points = slim_resnet_v2_50(images - MEAN_RGB,
                                              {k: v.astype(np.float64) for k, v in backbone_values.items()})
    ref_low = end_points["resnet_v2_50/block1/unit_3/bottleneck_v2/conv1"]
    assert low.shape == ref_low.shape == (2, 9, 12, 64)
    assert final.shape == ref_final.shape == (2, 3, 3, 2048)
    for ours, ref in ((low, ref_low), (final, ref_final)):
        assert np.mean(ref > 0) > 0.2, "degenerate reference (ReLU killed the features)"
        error = np.max(np.abs(ours - ref)) / np.max(np.abs(ref))
        assert error < 1e-4, f"HQDEPTH_TEST_SEED={SEED}: relative error {error:.2e}"


def test_check_variables_names_missing_extra_and_misshaped():
    from hqdepth.weights import WeightsFileError
    from hqdepth.weights.slim import check_variables, resnet_v2_50_variables

    expected = resnet_v2_50_variables()
    shapes = {name: shape for entries in expected.values() for name, shape in entries}
    gone = "resnet_v2_50/block2/unit_3/bottleneck_v2/conv2/BatchNorm/gamma"
    bad = dict(shapes)
    del bad[gone]
    bad["resnet_v2_50/block2/unit_3/bottleneck_v2/conv2/extra"] = (3,)
    bad["resnet_v2_50/conv1/weights"] = (7, 7, 3, 32)
    bad["resnet_v2_50/block1/unit_1/bottleneck_v2/conv1/weights/Momentum"] = (1, 1, 64, 64)
    with pytest.raises(WeightsFileError) as error:
        check_variables("/x/model.ckpt", bad, expected, "TF-slim resnet_v2_50")
    message = str(error.value)
    assert "/x/model.ckpt" in message and gone in message
    assert "resnet_v2_50/block2/unit_3/bottleneck_v2/conv2/extra" in message
    assert "resnet_v2_50/conv1/weights [7, 7, 3, 32] (expected [7, 7, 3, 64])" in message
    assert "Momentum" not in message  # optimizer slots are skipped, not errors
    ok = dict(shapes, global_step=())
    assert check_variables("f", ok, expected, "x") == {"training step counter": ["global_step"]}
    # another network entirely: say where its variables are
    other = {name.replace("resnet_v2_50", "resnet_v2_101"): shape for name, shape in shapes.items()}
    with pytest.raises(WeightsFileError, match=r"under: resnet_v2_101\)"):
        check_variables("f", other, expected, "TF-slim resnet_v2_50")


def test_unreadable_or_missing_checkpoint_and_bad_output(tmp_path):
    from hqdepth.errors import ConfigError
    from hqdepth.weights import WeightsFileError
    from hqdepth.weights.slim import convert_slim_resnet_v2_50, read_checkpoint

    with pytest.raises(WeightsFileError, match="checkpoint not found: .*nothere.ckpt"):
        read_checkpoint(tmp_path / "nothere.ckpt")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsFileError, match="cannot read .*garbage.ckpt as a TensorFlow checkpoint"):
        read_checkpoint(garbage)
    prefix = write_checkpoint(tmp_path / "small.ckpt", {"a/weights": np.ones((1, 1, 2, 2), np.float32)})
    assert read_checkpoint(prefix + ".index")[1] == {"a/weights": (1, 1, 2, 2)}
    folder = tmp_path / "unpacked"
    folder.mkdir()
    with pytest.raises(WeightsFileError, match="no TensorFlow checkpoint in this folder"):
        read_checkpoint(folder)
    write_checkpoint(folder / "resnet_v2_50.ckpt", {"a/biases": np.ones(2, np.float32)})
    assert read_checkpoint(folder)[1] == {"a/biases": (2,)}  # the one checkpoint of a folder (slim's tarball)
    with pytest.raises(ConfigError, match=r"must end with \.weights\.h5"):
        convert_slim_resnet_v2_50(prefix, tmp_path / "out.h5")


def test_reads_tf1_v1_format_checkpoint(tmp_path):
    """slim's 2017 release is a single-file V1 checkpoint (resnet_v2_50.ckpt): the reader opens that format."""
    import tensorflow as tf

    from hqdepth.weights.slim import read_checkpoint

    value = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    graph = tf.Graph()
    with graph.as_default():
        variable = tf.compat.v1.Variable(value, name="v")
        saver = tf.compat.v1.train.Saver({"resnet_v2_50/conv1/weights": variable},
                                         write_version=tf.compat.v1.train.SaverDef.V1)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(tmp_path / "resnet_v2_50.ckpt"), write_meta_graph=False)
    reader, shapes = read_checkpoint(tmp_path / "resnet_v2_50.ckpt")
    assert shapes == {"resnet_v2_50/conv1/weights": (1, 1, 2, 3)}
    np.testing.assert_array_equal(reader.get_tensor("resnet_v2_50/conv1/weights"), value)


# ------------------------------------------------------------------------------ HQMDE whole network


def test_hqmde_checkpoint_converts_to_keras_matching_reference(tmp_path, backbone_values):
    """HQMDE baseline+ checkpoint -> .keras; reloaded, its ASPP output and logits equal the float64 network.py."""
    import keras

    from hqdepth.weights.slim import convert_hqmde

    import json

    from hqdepth.weights import WeightsFileError

    values = hqmde_values(backbone_values, True, SEED + 3)
    run = tmp_path / "nyu_depth_v2" / "12582"  # train.py's CKPT_PATH layout, with its args<pid>.json
    run.mkdir(parents=True)
    prefix = write_checkpoint(run / "model.ckpt-300000", values)
    args = {"cnn_model": "resnet_v2_50", "decoding_at_image_size": True, "output_stride": 16,
            "multi_grid": [1, 2, 4], "aspp_rates": [3, 6, 9], "batch_norm_epsilon": 1e-5, "batch_size": 8}
    (run / "args12582.json").write_text(json.dumps(args))
    wrong = tmp_path / "args_baseline.json"
    wrong.write_text(json.dumps({**args, "decoding_at_image_size": False}))
    with pytest.raises(WeightsFileError, match="decoding_at_image_size=False"):
        convert_hqmde(prefix, tmp_path / "x.keras", train_args=str(wrong))

    out = tmp_path / "hqmd.keras"
    report = convert_hqmde(prefix + ".index", out, input_size="65x97")
    assert report.tensors == 322
    assert "ASPP rates (3, 6, 9)" in report.target and "args12582.json" in report.target
    assert sorted(n for names in report.skipped.values() for n in names) == sorted(
        n for n in values if "Adam" in n or n.startswith("optimizer_vars/"))

    model = keras.saving.load_model(out, safe_mode=True, compile=False)
    assert model.name == "hqmd_baseline_plus" and tuple(model.input.shape) == (None, 65, 97, 3)
    assert len(model.weights) == 322  # every weight of the model came from the checkpoint
    frozen = {layer.name for layer in model.layers if layer.weights and not layer.trainable}
    assert "conv1_conv" in frozen and "conv2_block3_2_conv" in frozen and "conv3_block1_1_conv" not in frozen
    assert "conv2_block1_preact_bn" not in frozen and "conv2_block1_1_bn" not in frozen

    images = np.random.default_rng(SEED + 4).uniform(0, 255, (1, 65, 97, 3))
    # logits at image size: the official network resizes 16 channels then applies the 1x1 conv, ours the other way
    probe = keras.Model(model.input, [model.get_layer("aspp").output, model.get_layer("upsample_to_image").output,
                                      model.output])
    aspp, logits, depth = (np.asarray(t, np.float64) for t in probe(images.astype(np.float32), training=False))
    ref_aspp, ref_logits = hqmde_network(images, {k: np.asarray(v, np.float64) for k, v in values.items()},
                                         aspp_rates=(3, 6, 9))
    assert aspp.shape == ref_aspp.shape == (1, 5, 7, 256) and logits.shape == ref_logits.shape == (1, 65, 97, 1)
    for ours, ref in ((aspp, ref_aspp), (logits, ref_logits)):
        error = np.max(np.abs(ours - ref)) / np.max(np.abs(ref))
        assert error < 1e-4, f"HQDEPTH_TEST_SEED={SEED}: relative error {error:.2e}"
    np.testing.assert_allclose(depth, 5.0 * (1.0 + np.tanh(logits / 2)), atol=1e-5)  # depth = 10 sigmoid(logits)
    assert np.mean((depth > 0.1) & (depth < 9.9)) > 0.3, f"saturated sigmoid, logits up to {np.abs(logits).max()}"


def test_hqmde_settings_follow_the_official_test_script():
    """Rates scale by train/test output stride (test_nyu_depth_v2.py); missing args take train.py defaults."""
    from hqdepth.errors import ConfigError
    from hqdepth.weights.slim import hqmde_settings

    assert hqmde_settings({}) == {"output_stride": 16, "multi_grid": (1, 2, 4), "aspp_rates": (4, 8, 12),
                                  "bn_epsilon": 1e-5, "decode_at_image_size": None}
    assert hqmde_settings({"aspp_rates": [4, 8, 12]}, output_stride=8)["aspp_rates"] == (8, 16, 24)
    assert hqmde_settings({"output_stride": 8, "aspp_rates": [6, 12, 18]}, output_stride=16)["aspp_rates"] == (3, 6, 9)
    assert hqmde_settings({"decoding_at_image_size": True})["decode_at_image_size"] is True
    with pytest.raises(ConfigError, match="resnet_v2_101"):
        hqmde_settings({"cnn_model": "resnet_v2_101"})


def test_hqmde_baseline_variant_is_detected_and_mapped():
    """Without --decoding_at_image_size the logits read 256 channels: hqmd_baseline, every weight mapped."""
    from hqdepth.models.deeplab import hqmd_deeplab
    from hqdepth.weights import WeightsFileError
    from hqdepth.weights.slim import (_detect_variant, _weighted_layers, check_variables, hqmde_head_variables,
                                      resnet_v2_50_variables)

    expected = {**resnet_v2_50_variables(), **hqmde_head_variables(False)}
    shapes = {name: shape for entries in expected.values() for name, shape in entries}
    shapes["optimizer_vars/Variable"] = ()
    assert _detect_variant(shapes, "auto", "f") is False
    assert check_variables("f", shapes, expected, "HQMDE baseline") == {
        "HQMDE optimizer_vars scope: step counter and Adam state": ["optimizer_vars/Variable"]}
    plus = {**resnet_v2_50_variables(), **hqmde_head_variables(True)}
    with pytest.raises(WeightsFileError, match="decoder_conv2/weights"):  # forced baseline+: names what is missing
        check_variables("f", shapes, plus, "HQMDE baseline_plus")
    model = hqmd_deeplab((None, None, 3), decode_at_image_size=False, freeze="none")
    layers = {name: [tuple(w.shape) for w in layer.weights] for name, layer in _weighted_layers(model).items()}
    assert layers == {name: [shape for _, shape in entries] for name, entries in expected.items()}
    assert len(shapes) - 1 == len(model.weights) == 317


# ------------------------------------------------------------------------------ command line


def test_cli_weights_convert_errors(tmp_path, converted_backbone, slim_checkpoint, capsys):
    import h5py

    from hqdepth.cli import main

    out, _ = converted_backbone
    with h5py.File(out, "r") as f:  # read by hqdepth.backbones.resnet to refuse a file of another layout
        assert f.attrs["hqdepth_resnet_version"] == "v2"
    # an existing output is kept unless --overwrite
    assert main(["weights", "convert", "--from", "slim-resnet50-v2", slim_checkpoint, str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    # a checkpoint of something else: the error names the file and variables, no traceback, no output file
    prefix = write_checkpoint(tmp_path / "other.ckpt", {"vgg_16/conv1/conv1_1/weights": np.ones((3, 3, 3, 64),
                                                                                               np.float32)})
    assert main(["weights", "convert", "--from", "slim-resnet50-v2", prefix, str(tmp_path / "x.weights.h5")]) == 2
    err = capsys.readouterr().err
    assert "other.ckpt" in err and "vgg_16/conv1/conv1_1/weights" in err and "Traceback" not in err
    assert not (tmp_path / "x.weights.h5").exists()
    missing = str(tmp_path / "missing.ckpt")
    assert main(["weights", "convert", "--from", "hqmde", missing, str(tmp_path / "m.keras")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_cli_torch_formats_without_their_module(tmp_path, monkeypatch, capsys):
    """--from torchvision-resnet50 / bts dispatch lazily; a missing converter module is a clear error."""
    import sys

    from hqdepth.cli import main

    monkeypatch.setitem(sys.modules, "hqdepth.weights.torch", None)
    src = tmp_path / "model.pth"
    src.write_bytes(b"")
    assert main(["weights", "convert", "--from", "bts", str(src), str(tmp_path / "bts.keras")]) == 2
    err = capsys.readouterr().err
    assert "'bts' converter is not available" in err and "hqdepth.weights.torch" in err and "Traceback" not in err


def test_cli_options_reach_the_converter(monkeypatch, tmp_path):
    import hqdepth.weights as weights
    from hqdepth.cli import main

    calls = []
    monkeypatch.setattr(weights, "get_converter", lambda fmt: lambda src, out, **kw: calls.append((fmt, kw)))
    assert main(["weights", "convert", "--from", "hqmde", "src", str(tmp_path / "m.keras"),
                 "--option", "input_size=free", "-o", "aspp_rates=[6, 12, 18]", "-o", "max_depth=10"]) == 0
    assert calls == [("hqmde", {"input_size": "free", "aspp_rates": [6, 12, 18], "max_depth": 10})]
    assert main(["weights", "convert", "--from", "hqmde", "src", str(tmp_path / "m.keras"), "-o", "novalue"]) == 2
