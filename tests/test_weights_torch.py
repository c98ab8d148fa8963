"""PyTorch converters (`hqdepth.weights.torch`) against an independent float64 NumPy forward.

State dicts are written here with the official names and shapes (torchvision `resnet50`, cleinc/bts
`pytorch/bts.py`) and random values, as safetensors (PyTorch is not needed). The NumPy reference
follows PyTorch's conventions (symmetric padding, -inf max-pool padding, eps 1e-5 / 1.1e-5), written
from the official modules, not from the converter's mapping.
"""

import math
import os

import keras
import numpy as np
import pytest

from hqdepth.backbones import resnet50
from hqdepth.errors import ConfigError, HQDepthError

safetensors_numpy = pytest.importorskip("safetensors.numpy")
from hqdepth.weights.torch import TorchWeightsError, convert_bts, convert_torchvision_resnet50  # noqa: E402

RNG = np.random.default_rng(int(os.environ["HQDEPTH_TEST_SEED"]))
TORCH_MEAN = np.array([0.485, 0.456, 0.406])
TORCH_STD = np.array([0.229, 0.224, 0.225])
RESNET_CHANNELS = (64, 256, 512, 1024, 2048)


# --- official state dicts with random values ---------------------------------------------------------------

class StateDict(dict):
    """Adds convs and batch norms with torch names and shapes, random values that keep activations O(1)."""

    def conv(self, name, out_ch, in_ch, k):
        self[f"{name}.weight"] = RNG.normal(0, math.sqrt(2.0 / (in_ch * k * k)), (out_ch, in_ch, k, k)).astype(np.float32)

    def bn(self, name, c):
        self[f"{name}.weight"] = RNG.uniform(0.5, 1.5, c).astype(np.float32)
        self[f"{name}.bias"] = RNG.normal(0, 0.2, c).astype(np.float32)
        self[f"{name}.running_mean"] = RNG.normal(0, 0.2, c).astype(np.float32)
        self[f"{name}.running_var"] = RNG.uniform(0.5, 2.0, c).astype(np.float32)
        self[f"{name}.num_batches_tracked"] = np.array(RNG.integers(1, 10 ** 6), np.int64)


def torchvision_resnet50(prefix="", fc=True):
    """torchvision.models.resnet50().state_dict(): Bottleneck with expansion 4, downsample on block 0."""
    s = StateDict()
    s.conv(prefix + "conv1", 64, 3, 7)
    s.bn(prefix + "bn1", 64)
    inplanes = 64
    for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for block in range(blocks):
            name = f"{prefix}layer{index}.{block}"
            s.conv(f"{name}.conv1", planes, inplanes, 1)
            s.bn(f"{name}.bn1", planes)
            s.conv(f"{name}.conv2", planes, planes, 3)
            s.bn(f"{name}.bn2", planes)
            s.conv(f"{name}.conv3", planes * 4, planes, 1)
            s.bn(f"{name}.bn3", planes * 4)
            if block == 0:
                s.conv(f"{name}.downsample.0", planes * 4, inplanes, 1)
                s.bn(f"{name}.downsample.1", planes * 4)
            inplanes = planes * 4
    if fc:
        s[prefix + "fc.weight"] = RNG.normal(0, 0.01, (1000, 2048)).astype(np.float32)
        s[prefix + "fc.bias"] = np.zeros(1000, np.float32)
    return s


def bts_state(nf, prefix="module."):
    """cleinc/bts pytorch BtsModel(resnet50_bts).state_dict() under DataParallel (`module.`)."""
    s = torchvision_resnet50(prefix + "encoder.base_model.")
    d = prefix + "decoder."
    c0, c1, c2, c3, c4 = RESNET_CHANNELS

    def upconv(name, out_ch, in_ch):
        s.conv(f"{d}{name}.conv", out_ch, in_ch, 3)

    def atrous(name, in_ch, out_ch, first_bn=True):
        if first_bn:
            s.bn(f"{d}{name}.atrous_conv.first_bn", in_ch)
        s.conv(f"{d}{name}.atrous_conv.aconv_sequence.1", out_ch * 2, in_ch, 1)
        s.bn(f"{d}{name}.atrous_conv.aconv_sequence.2", out_ch * 2)
        s.conv(f"{d}{name}.atrous_conv.aconv_sequence.4", out_ch, out_ch * 2, 3)

    def reduction(name, n_in, n_out, final=False):  # the while loop of reduction_1x1.__init__
        while n_out >= 4:
            if n_out < 8:
                if final:
                    s.conv(f"{d}{name}.reduc.final.0", 1, n_in, 1)
                else:
                    s.conv(f"{d}{name}.reduc.plane_params", 3, n_in, 1)
                break
            s.conv(f"{d}{name}.reduc.inter_{n_in}_{n_out}.0", n_out, n_in, 1)
            n_in, n_out = n_out, n_out // 2

    upconv("upconv5", nf, c4)
    s.bn(d + "bn5", nf)
    s.conv(d + "conv5.0", nf, nf + c3, 3)
    upconv("upconv4", nf // 2, nf)
    s.bn(d + "bn4", nf // 2)
    s.conv(d + "conv4.0", nf // 2, nf // 2 + c2, 3)
    s.bn(d + "bn4_2", nf // 2)
    atrous("daspp_3", nf // 2, nf // 4, first_bn=False)
    atrous("daspp_6", nf // 2 + nf // 4 + c2, nf // 4)
    atrous("daspp_12", nf + c2, nf // 4)
    atrous("daspp_18", nf + nf // 4 + c2, nf // 4)
    atrous("daspp_24", nf + nf // 2 + c2, nf // 4)
    s.conv(d + "daspp_conv.0", nf // 4, nf + nf // 2 + nf // 4, 3)
    reduction("reduc8x8", nf // 4, nf // 4)
    upconv("upconv3", nf // 4, nf // 4)
    s.bn(d + "bn3", nf // 4)
    s.conv(d + "conv3.0", nf // 4, nf // 4 + c1 + 1, 3)
    reduction("reduc4x4", nf // 4, nf // 8)
    upconv("upconv2", nf // 8, nf // 4)
    s.bn(d + "bn2", nf // 8)
    s.conv(d + "conv2.0", nf // 8, nf // 8 + c0 + 1, 3)
    reduction("reduc2x2", nf // 8, nf // 16)
    upconv("upconv1", nf // 16, nf // 8)
    reduction("reduc1x1", nf // 16, nf // 32, final=True)
    s.conv(d + "conv1.0", nf // 16, nf // 16 + 4, 3)
    s.conv(d + "get_depth.0", 1, nf // 16, 3)
    return s


# --- NumPy float64 reference, PyTorch conventions (NCHW weights, HWC maps) ---------------------------------

def conv(x, w, stride=1, pad=0, dilation=1):
    """torch.nn.Conv2d (no bias, zero padding `pad` on every side) on one (H, W, C) map."""
    w = np.asarray(w, np.float64)
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    _, _, kh, kw = w.shape
    h = (x.shape[0] - dilation * (kh - 1) - 1) // stride + 1
    wd = (x.shape[1] - dilation * (kw - 1) - 1) // stride + 1
    out = np.zeros((h, wd, w.shape[0]))
    for a in range(kh):
        for b in range(kw):
            patch = x[a * dilation:a * dilation + stride * (h - 1) + 1:stride,
                      b * dilation:b * dilation + stride * (wd - 1) + 1:stride]
            out += patch @ w[:, :, a, b].T
    return out


def bn(x, state, name, eps=1e-5):
    g, b, m, v = (np.asarray(state[f"{name}.{f}"], np.float64) for f in ("weight", "bias", "running_mean", "running_var"))
    return (x - m) / np.sqrt(v + eps) * g + b


def relu(x):
    return np.maximum(x, 0.0)


def elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def max_pool_3x3_s2_p1(x):
    """torch.nn.MaxPool2d(3, 2, 1): pads with -inf."""
    x = np.pad(x, ((1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    h, w = (x.shape[0] - 3) // 2 + 1, (x.shape[1] - 3) // 2 + 1
    return np.max([x[a:a + 2 * (h - 1) + 1:2, b:b + 2 * (w - 1) + 1:2] for a in range(3) for b in range(3)], axis=0)


def stem(image, s):
    """torchvision conv1 (7x7/2, pad 3) -> bn1 -> relu -> maxpool, on torchvision-normalised RGB."""
    x = (image / 255.0 - TORCH_MEAN) / TORCH_STD
    return max_pool_3x3_s2_p1(relu(bn(conv(x, s["conv1.weight"], 2, 3), s, "bn1")))


def bottleneck(x, s, name, stride):
    """torchvision Bottleneck (v1.5: stride on conv2, padding 1) with its downsample branch."""
    y = relu(bn(conv(x, s[f"{name}.conv1.weight"]), s, f"{name}.bn1"))
    y = relu(bn(conv(y, s[f"{name}.conv2.weight"], stride, 1), s, f"{name}.bn2"))
    y = bn(conv(y, s[f"{name}.conv3.weight"]), s, f"{name}.bn3")
    shortcut = bn(conv(x, s[f"{name}.downsample.0.weight"], stride), s, f"{name}.downsample.1")
    return relu(y + shortcut)


def fingerprints(arrays):
    """Order-free identity of a list of arrays: (sorted shape, rounded sum, rounded sum of squares)."""
    return sorted((tuple(sorted(a.shape)), round(float(np.sum(a, dtype=np.float64)), 3),
                   round(float(np.sum(np.square(a, dtype=np.float64))), 3)) for a in arrays)


def relative_error(got, expected):
    return np.abs(np.asarray(got, np.float64) - expected).max() / np.abs(expected).max()


def probe(model, names, x):
    outputs = keras.Model(model.input, [model.get_layer(n).output for n in names])(x, training=False)
    return {n: np.asarray(o, np.float64)[0] for n, o in zip(names, outputs)}


# --- torchvision ResNet-50 -> v1.5 backbone -----------------------------------------------------------------

@pytest.fixture(scope="module")
def converted_resnet(tmp_path_factory):
    folder = tmp_path_factory.mktemp("torchvision")
    state = torchvision_resnet50()
    src = folder / "resnet50.safetensors"
    safetensors_numpy.save_file(dict(state), str(src))
    report = convert_torchvision_resnet50(src, folder / "resnet50.weights.h5")
    return state, src, report


def test_resnet50_stem_and_strided_bottleneck_match_numpy(converted_resnet):
    state, _, report = converted_resnet
    assert str(report).endswith("resnet50.weights.h5")
    assert sorted(report.skipped) == ["ImageNet classifier", "batch-norm step counters"]
    assert report.skipped["ImageNet classifier"] == ["fc.bias", "fc.weight"]
    assert len(report.skipped["batch-norm step counters"]) == 53
    assert report.tensors == len(state) - 53 - 2
    model = resnet50("v1.5", weights=str(report), preprocess="torch")
    assert model.get_layer("conv1_bn").epsilon == 1e-5
    names = ["pool1_pool", "conv2_block3_out", "conv3_block1_out", "conv3_block4_out", "conv4_block1_out"]
    # 64x96: even maps at every stride (where Keras "same" would pad 0/1); 66x86: odd maps
    for height, width in ((64, 96), (66, 86)):
        image = RNG.uniform(0, 255, (1, height, width, 3))
        got = probe(model, names, image.astype(np.float32))
        expected = stem(image[0], state)
        assert got["pool1_pool"].shape == expected.shape
        assert relative_error(got["pool1_pool"], expected) < 1e-4
        for before, after, torch_name in (("conv2_block3_out", "conv3_block1_out", "layer2.0"),
                                          ("conv3_block4_out", "conv4_block1_out", "layer3.0")):
            expected = bottleneck(got[before], state, torch_name, stride=2)
            assert got[after].shape == expected.shape
            assert np.abs(expected).max() > 0.1
            assert relative_error(got[after], expected) < 1e-4


def test_resnet50_file_is_refused_by_v1_and_imagenet_by_v15(converted_resnet, tmp_path):
    _, _, report = converted_resnet
    with pytest.raises(HQDepthError, match=r"v1\.5 weights.*version='v1\.5'"):
        resnet50("v1", weights=str(report))
    with pytest.raises(ConfigError, match="convert a torchvision"):
        resnet50("v1.5", weights="imagenet")
    from hqdepth.models.bts import bts
    with pytest.raises(ConfigError, match="torchvision"):
        bts(encoder="resnet50", backbone_weights="imagenet")


def test_resnet50_mapping_errors_name_file_and_key(converted_resnet, tmp_path):
    from hqdepth.weights.torch import assign, resnet50_mapping

    state, _, _ = converted_resnet
    model = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(None, None, 3))
    extra = dict(state, **{"layer4.3.conv1.weight": np.zeros((512, 2048, 1, 1), np.float32)})
    with pytest.raises(TorchWeightsError, match=r"resnet101\.pth: 1 entries are not used.*layer4\.3\.conv1\.weight"):
        assign(model, resnet50_mapping(), extra, "resnet101.pth")
    missing = {k: v for k, v in state.items() if k != "layer2.1.bn2.running_var"}
    with pytest.raises(TorchWeightsError, match=r"missing\.pth.*layer2\.1\.bn2\.running_var"):
        assign(model, resnet50_mapping(), missing, "missing.pth")
    wrong = dict(state, **{"layer1.0.conv2.weight": np.zeros((64, 64, 1, 1), np.float32)})
    with pytest.raises(TorchWeightsError, match=r"wrong\.pth: layer1\.0\.conv2\.weight.*conv2_block1_2_conv"):
        assign(model, resnet50_mapping(), wrong, "wrong.pth")
    with pytest.raises(TorchWeightsError, match="No PyTorch key maps to 1 Keras layers.*extra_conv"):
        x = keras.layers.Conv2D(2, 1, name="extra_conv")(model.output)
        assign(keras.Model(model.input, x), resnet50_mapping(), state, "state.pth")
    with pytest.raises(ConfigError, match=r"\.weights\.h5"):
        convert_torchvision_resnet50(tmp_path / "absent.safetensors", tmp_path / "out.h5")
    with pytest.raises(TorchWeightsError, match="not found"):
        convert_torchvision_resnet50(tmp_path / "absent.safetensors", tmp_path / "d.weights.h5")


def torchvision_densenet121_features(prefix):
    """torchvision.models.densenet121().features.state_dict(): growth 32, blocks (6, 12, 24, 16), bn_size 4."""
    s = StateDict()
    s.conv(prefix + "conv0", 64, 3, 7)
    s.bn(prefix + "norm0", 64)
    features = 64
    for i, layers in enumerate((6, 12, 24, 16), start=1):
        for j in range(1, layers + 1):
            name = f"{prefix}denseblock{i}.denselayer{j}"
            s.bn(f"{name}.norm1", features + (j - 1) * 32)
            s.conv(f"{name}.conv1", 128, features + (j - 1) * 32, 1)
            s.bn(f"{name}.norm2", 128)
            s.conv(f"{name}.conv2", 32, 128, 3)
        features += layers * 32
        if i < 4:
            s.bn(f"{prefix}transition{i}.norm", features)
            s.conv(f"{prefix}transition{i}.conv", features // 2, features, 1)
            features //= 2
    s.bn(prefix + "norm5", features)
    return s


def test_bts_densenet121_encoder_mapping_covers_both_ways():
    from hqdepth.models.bts import densenet_encoder
    from hqdepth.weights.torch import assign, bts_encoder_of

    state = torchvision_densenet121_features("encoder.base_model.")
    variant, mapping = bts_encoder_of(state)
    assert variant == "densenet121"
    model, _ = densenet_encoder((None, None, 3), "densenet121", freeze="none")
    used = assign(model, mapping, state, "densenet121.pth")
    official = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    assert len(used) == len(official)
    assert fingerprints([np.asarray(w) for w in model.weights]) == fingerprints(official)


def test_pth_without_torch_says_what_to_do(tmp_path):
    try:
        import torch  # noqa: F401
        pytest.skip("PyTorch is installed")
    except ImportError:
        pass
    path = tmp_path / "resnet50.pth"
    path.write_bytes(b"PK\x03\x04 a zip archive, as torch.save writes, not read further")
    with pytest.raises(TorchWeightsError, match=r"resnet50\.pth.*pip install torch.*safetensors"):
        convert_torchvision_resnet50(path, tmp_path / "out.weights.h5")


def test_a_missing_published_file_names_where_it_comes_from(tmp_path):
    """`weights convert --from torchvision-resnet50 / cadene-senet154` of a path that does not exist names the
    published file and its address, as the BTS and TF-slim conversions do (they said only "not found")."""
    from hqdepth.weights.torch import convert_senet154

    with pytest.raises(TorchWeightsError, match=r"not found: .*r50\.safetensors; the published one "
                                                r"\(torchvision-resnet50\) is resnet50\.tv_in1k\.safetensors, from "
                                                r"https://huggingface\.co/timm/resnet50\.tv_in1k"):
        convert_torchvision_resnet50(tmp_path / "r50.safetensors", tmp_path / "out.weights.h5")
    with pytest.raises(TorchWeightsError, match=r"senet154-c7b49a05\.pth, from http://data\.lip6\.fr/cadene/"):
        convert_senet154(tmp_path / "senet.pth", tmp_path / "out.weights.h5")


def test_a_pth_that_is_not_a_checkpoint_is_named_as_such(tmp_path):
    """Judged by its first bytes, not its name: torch.save writes a zip archive (or, before 1.6, a pickle)."""
    path = tmp_path / "resnet50.pth"
    path.write_text("a text file named .pth\n")
    with pytest.raises(TorchWeightsError, match=r"resnet50\.pth is not a PyTorch checkpoint.*starts with b'a te'"):
        convert_torchvision_resnet50(path, tmp_path / "out.weights.h5")


def test_v15_schedule_keeps_the_strided_convs_rate():
    """torchvision replace_stride_with_dilation: a stage's first block keeps the previous dilation."""
    from hqdepth.backbones import unit_schedule

    schedule = {(s, u): (stride, rate) for s, _, u, stride, rate in unit_schedule("v1.5", 16, (1, 1, 1))}
    assert [schedule[("conv5", u)] for u in (1, 2, 3)] == [(1, 1), (1, 2), (1, 2)]
    assert schedule[("conv4", 1)] == (2, 1)
    schedule = {(s, u): (stride, rate) for s, _, u, stride, rate in unit_schedule("v1.5", 8, (1, 1, 1))}
    assert schedule[("conv4", 1)] == (1, 1) and schedule[("conv4", 2)] == (1, 2)
    assert [schedule[("conv5", u)] for u in (1, 2, 3)] == [(1, 2), (1, 4), (1, 4)]


def test_v15_layout_strides_the_3x3_conv_and_dilates_at_output_stride_16():
    model = resnet50("v1.5", output_stride=16, multi_grid=(1, 1, 1), input_shape=(64, 96, 3))
    assert model.get_layer("conv3_block1_1_conv").strides == (1, 1)
    assert model.get_layer("conv3_block1_2_conv").strides == (2, 2)
    assert model.get_layer("conv3_block1_2_pad").padding == ((1, 1), (1, 1))
    assert model.get_layer("conv3_block1_0_conv").strides == (2, 2)
    assert model.get_layer("conv5_block1_2_conv").strides == (1, 1)
    assert [model.get_layer(f"conv5_block{u}_2_conv").dilation_rate for u in (1, 2, 3)] == [(1, 1), (2, 2), (2, 2)]
    assert tuple(model.output.shape) == (None, 4, 6, 2048)


# --- BTS --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bts_checkpoint(tmp_path_factory):
    """A BTS ResNet-50 state dict with bts_size 128 (official names and shapes), as safetensors."""
    state = bts_state(128)
    src = tmp_path_factory.mktemp("bts") / "bts.safetensors"
    safetensors_numpy.save_file(dict(state), str(src))
    return state, src


def test_bts_checkpoint_converts_both_ways_and_decoder_matches_numpy(bts_checkpoint, tmp_path):
    max_depth = 10.0
    state, src = bts_checkpoint
    # freeze="none" only saves the clone of the encoder that the official freezing needs (same variables)
    report = convert_bts(src, tmp_path / "bts.keras", max_depth=max_depth, freeze="none")
    assert str(report).endswith("bts.keras") and "bts_size 128" in report.target
    model = keras.saving.load_model(str(report), compile=False)

    # both ways: every official tensor (less step counters and fc) is exactly one Keras variable, and every
    # Keras variable is an official tensor or a zero bias of an encoder conv (torchvision convs have none)
    official = [v for k, v in state.items() if not k.endswith("num_batches_tracked") and ".fc." not in k]
    ours = [np.asarray(w) for w in model.weights]
    zero_biases = [w for w in ours if w.ndim == 1 and not w.any()]
    assert len(zero_biases) == 53
    nonzero = [w for w in ours if not (w.ndim == 1 and not w.any())]
    assert fingerprints(nonzero) == fingerprints(official)
    assert report.tensors == len(official)
    assert model.count_params() == sum(v.size for v in official) + sum(w.size for w in zero_biases)

    s = {k[len("module.decoder."):]: v for k, v in state.items() if k.startswith("module.decoder.")}
    image = RNG.uniform(0, 255, (1, 64, 96, 3)).astype(np.float32)
    got = probe(model, ["bts_concat4_2", "bts_daspp_6_conv2", "bts_daspp_conv_elu", "conv2_block3_out",
                        "bts_depth_8x8_ds", "bts_iconv3_elu", "bts_depth_4x4_scaled", "bts_upconv1_elu",
                        "bts_reduc1x1", "bts_depth_2x2_scaled", "bts_depth_8x8_scaled", "bts_depth"], image)

    # dense ASPP block, rate 6: first_bn (eps 1.1e-5) -> ReLU -> 1x1 -> BN (eps 1e-5) -> ReLU -> 3x3 dilated 6, pad 6
    a = "daspp_6.atrous_conv."
    y = relu(bn(got["bts_concat4_2"], s, a + "first_bn", eps=1.1e-5))
    y = relu(bn(conv(y, s[a + "aconv_sequence.1.weight"]), s, a + "aconv_sequence.2"))
    expected = conv(y, s[a + "aconv_sequence.4.weight"], pad=6, dilation=6)
    assert relative_error(got["bts_daspp_6_conv2"], expected) < 1e-4

    # upconv3 (nearest x2, 3x3 pad 1, ELU) -> bn3 -> cat(upconv3, skip1, depth_8x8_ds) -> conv3 + ELU
    up = np.repeat(np.repeat(got["bts_daspp_conv_elu"], 2, 0), 2, 1)
    upconv3 = bn(elu(conv(up, s["upconv3.conv.weight"], pad=1)), s, "bn3", eps=1.1e-5)
    concat3 = np.concatenate([upconv3, got["conv2_block3_out"], got["bts_depth_8x8_ds"]], axis=-1)
    iconv3 = elu(conv(concat3, s["conv3.0.weight"], pad=1))
    assert relative_error(got["bts_iconv3_elu"], iconv3) < 1e-4

    # reduc4x4 (1x1 + ELU chain, plane_params) -> plane -> LPG k=4 -> / max_depth
    x = got["bts_iconv3_elu"]
    for name in ("inter_32_16", "inter_16_8"):  # nf 128: reduction_1x1(32, 16)
        x = elu(conv(x, s[f"reduc4x4.reduc.{name}.0.weight"]))
    raw = conv(x, s["reduc4x4.reduc.plane_params.weight"])
    theta, phi = sigmoid(raw[..., 0]) * math.pi / 3, sigmoid(raw[..., 1]) * math.pi * 2
    n1, n2, n3 = np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)
    n4 = sigmoid(raw[..., 2]) * max_depth
    k = 4
    rep = lambda p: np.repeat(np.repeat(p, k, 0), k, 1)  # noqa: E731
    h, w = raw.shape[0] * k, raw.shape[1] * k
    u = ((np.arange(w) % k) - (k - 1) / 2) / k  # along the width (official `self.u`)
    v = ((np.arange(h) % k) - (k - 1) / 2) / k
    depth_4x4 = rep(n4) / (rep(n1) * u[None, :] + rep(n2) * v[:, None] + rep(n3))
    assert relative_error(got["bts_depth_4x4_scaled"][..., 0], depth_4x4 / max_depth) < 1e-4

    # head: reduc1x1 (nf 128: 8 -> 1, sigmoid) and cat(upconv1, reduc1x1, d2, d4, d8) -> conv1 + ELU -> get_depth
    x = got["bts_upconv1_elu"]
    reduc1x1 = sigmoid(conv(x, s["reduc1x1.reduc.final.0.weight"]))
    assert relative_error(got["bts_reduc1x1"], reduc1x1) < 1e-4
    concat1 = np.concatenate([x, reduc1x1, got["bts_depth_2x2_scaled"], got["bts_depth_4x4_scaled"],
                              got["bts_depth_8x8_scaled"]], axis=-1)
    iconv1 = elu(conv(concat1, s["conv1.0.weight"], pad=1))
    depth = max_depth * sigmoid(conv(iconv1, s["get_depth.0.weight"], pad=1))
    assert relative_error(got["bts_depth"], depth) < 1e-4


def test_bts_conversion_errors(bts_checkpoint, converted_resnet, tmp_path):
    _, src = bts_checkpoint
    with pytest.raises(ConfigError, match="bts_size"):
        convert_bts(src, tmp_path / "out.keras", bts_size=512, dataset="nyu")
    with pytest.raises(ConfigError, match="nyu .*kitti .*`-o dataset=nyu` on the command line, dataset='nyu' in"):
        convert_bts(src, tmp_path / "out.keras")  # bts.safetensors names no dataset
    # a missing file is said first (the dataset question came first and hid it), with where to get one
    with pytest.raises(TorchWeightsError, match=r"not found: .*nope.*cleinc/bts README"):
        convert_bts(tmp_path / "nope" / "model", tmp_path / "out.keras")
    with pytest.raises(ConfigError, match="backbone_version"):
        convert_bts(src, tmp_path / "out.keras", backbone_version="v1", max_depth=10.0)
    with pytest.raises(ConfigError, match=r"\.keras"):
        convert_bts(src, tmp_path / "out.h5", dataset="nyu")
    _, resnet_src, _ = converted_resnet
    with pytest.raises(TorchWeightsError, match=r"resnet50\.safetensors.*upconv5"):
        convert_bts(resnet_src, tmp_path / "out.keras", dataset="kitti")


def test_bts_dataset_settings_from_the_published_names():
    from hqdepth.weights.torch import bts_dataset_options

    kitti = {"max_depth": 80.0, "with_focal": True}
    assert bts_dataset_options("w/bts_eigen_v2_pytorch_resnet50/model", {}) == kitti
    assert bts_dataset_options("w/bts_nyu_v2_pytorch_resnet50/model", {}) == {"max_depth": 10.0, "with_focal": False}
    assert bts_dataset_options("w/bts_nyu_v2_pytorch_resnet50/model", {"dataset": "kitti"}) == kitti
    assert bts_dataset_options("model", {"max_depth": 80.0}) == {"max_depth": 80.0}
    with pytest.raises(ConfigError, match="dataset must be"):
        bts_dataset_options("model", {"dataset": "make3d"})
