"""FCN autoencoder, ResNet-50 + transposed convs, BTS and MRPAN: parameter counts against counts from
their layer lists (and the spec's published/analytic numbers), outputs, saving, mixed precision and a
short fit on synthetic scenes. Shapes are tiny; the CPU cost is in building the ResNet-50 encoders."""

import math
import os

import keras
import numpy as np
import pytest

from hqdepth import losses
from hqdepth.errors import ConfigError
from hqdepth.layers import FusedBatchNormalization
from hqdepth.models import build_model
from hqdepth.models.mrpan import DeepSupervisionModel, finest_depth_model
from hqdepth.models.transposed import freeze_resnet_stages

RNG = np.random.default_rng(int(os.environ["HQDEPTH_TEST_SEED"]))


@pytest.fixture(autouse=True)
def _seeded_weights():
    """Weights from a fixed seed: the short fits are deterministic (inputs stay random)."""
    keras.utils.set_random_seed(0)


def conv(k, cin, cout, bias=False):
    return k * k * cin * cout + (cout if bias else 0)


def bn(c):
    return 4 * c  # gamma, beta, moving mean, moving variance


def resnet50_v1_count():
    """keras.applications ResNet50 (every conv with a bias) without the classifier."""
    total = conv(7, 3, 64, True) + bn(64)
    cin = 64
    for width, units in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for unit in range(units):
            if unit == 0:
                total += conv(1, cin, 4 * width, True) + bn(4 * width)
            total += conv(1, cin, width, True) + bn(width) + conv(3, width, width, True) + bn(width)
            total += conv(1, width, 4 * width, True) + bn(4 * width)
            cin = 4 * width
    return total


RESNET_BN_CHANNELS = 64 + sum(units * 6 * w + 4 * w for w, units in ((64, 3), (128, 4), (256, 6), (512, 3)))
RESNET_CONV_BIASES = 64 + sum(units * 6 * w + 4 * w for w, units in ((64, 3), (128, 4), (256, 6), (512, 3)))


def moving_stats(model):
    return sum(int(np.prod(w.shape)) for w in model.non_trainable_weights if "moving" in w.path)


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def synthetic(batch_size=4, with_focal=False, size=64, count=4):
    from hqdepth.data import load

    return load(f"synthetic:{count}?size={size}x{size}", "train", recipe="none", batch_size=batch_size, seed=0,
                deterministic=True, with_focal=with_focal)


def fit_decreases(model, loss, learning_rate, epochs=3, with_focal=False, size=64, **compile_options):
    """`fit` for 3 eager steps (one batch of 4 synthetic scenes per epoch): the loss goes down.
    Eager, because tracing a 400-layer train step costs far more than 3 steps on a CPU."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, run_eagerly=True, **compile_options)
    history = model.fit(synthetic(with_focal=with_focal, size=size), epochs=epochs, verbose=0).history
    assert all(np.isfinite(history["loss"])), history
    assert history["loss"][-1] < history["loss"][0], history
    return history


def round_trip(model, inputs, tmp_path):
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    expected = model(inputs, training=False)
    actual = restored(inputs, training=False)
    for a, b in zip(keras.tree.flatten(actual), keras.tree.flatten(expected)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert trainable_count(restored) == trainable_count(model)
    return restored


def float16_forward(name, shape, model=None, **options):
    """Build under mixed_float16 (unless given) and run one tiny forward pass (float16 on a CPU is slow).
    training=True: batch statistics, since a random encoder in inference mode overflows float16."""
    keras.config.set_dtype_policy("mixed_float16")
    model = model or build_model(name, **options)
    assert any(layer.compute_dtype == "float16" for layer in model.layers)
    x = RNG.uniform(0, 255, (1, *shape, 3)).astype(np.float32)
    outputs = keras.tree.flatten(model(x, training=True))
    for output in outputs:
        assert output.dtype == "float32" and np.isfinite(np.asarray(output)).all()
    return model, outputs


# --- FCN autoencoder -------------------------------------------------------------------------------------

def fcn_count(batch_norm=True):
    """Every conv has a bias unless a batch norm follows it (BN's mean subtraction would cancel it)."""
    def block(k, cin, w):
        return conv(k, cin, w, not batch_norm) + (bn(w) if batch_norm else 0)

    total, cin = 0, 3
    for w in (32, 64, 128):
        total += block(3, cin, w) + block(3, w, w)
        cin = w
    for w in (64, 32, 16):
        total += block(4, cin, w) + block(3, w, w)  # 4x4 transposed conv
        cin = w
    return total + conv(1, 16, 1, True)


def test_fcn_autoencoder_size_range_and_round_trip(tmp_path):
    model = build_model("fcn_autoencoder", input_shape=(480, 640, 3))
    assert model.count_params() == fcn_count()
    assert build_model("fcn_autoencoder", batch_norm=False).count_params() == fcn_count(batch_norm=False)
    assert build_model("fcn_autoencoder", conv_bias=True).count_params() == fcn_count() + 2 * sum((32, 64, 128, 64, 32,
                                                                                                   16))
    assert trainable_count(model) == pytest.approx(0.5e6, rel=0.10)  # seed 001: about 0.5 M trainable
    assert model.get_layer("encoder1_1_conv").kernel_initializer.__class__.__name__ == "GlorotUniform"
    small = build_model("fcn_autoencoder", max_depth=80.0)
    x = RNG.uniform(0, 255, (2, 32, 48, 3)).astype(np.float32)
    depth = np.asarray(small(x, training=True))
    assert depth.shape == (2, 32, 48, 1) and 0 < depth.min() and depth.max() < 80.0 and depth.std() > 0
    round_trip(small, x, tmp_path)


def test_fcn_autoencoder_float16_and_short_fit():
    float16_forward("fcn_autoencoder", (32, 32))
    keras.config.set_dtype_policy("float32")
    model = build_model("fcn_autoencoder")
    fit_decreases(model, losses.SSIMMSE(max_val=10.0), 1e-3)


# --- ResNet-50 + transposed convolutions ---------------------------------------------------------------------

def transposed_decoder_count():
    total, cin = 0, 2048
    for w in (512, 256, 128, 64):
        total += conv(4, cin, w) + bn(w)
        cin = w
    return total + conv(4, 64, 1, True)


def test_resnet50_transposed_size_freezing_round_trip_float16_and_fit(tmp_path):
    model = build_model("resnet50_transposed", input_shape=(224, 224, 3))
    assert model.count_params() == resnet50_v1_count() + transposed_decoder_count()
    encoder_torch_convention = resnet50_v1_count() - 2 * RESNET_BN_CHANNELS - RESNET_CONV_BIASES
    assert encoder_torch_convention / 1e6 == pytest.approx(23.51, abs=0.005)  # spec §2 / §7
    stage5 = 0
    cin = 1024
    for unit in range(3):
        stage5 += (conv(1, 1024, 2048, True) + 2 * 2048) if unit == 0 else 0
        stage5 += conv(1, cin, 512, True) + 2 * 512 + conv(3, 512, 512, True) + 2 * 512
        stage5 += conv(1, 512, 2048, True) + 2 * 2048
        cin = 2048
    decoder_trainable = transposed_decoder_count() - 2 * (512 + 256 + 128 + 64)
    assert trainable_count(model) == stage5 + decoder_trainable  # default frozen_stages=4: only conv5 + decoder
    assert model.get_layer("conv5_block3_out").output.shape == (None, 7, 7, 2048)  # static shapes at 224x224
    assert [model.get_layer(f"deconv{i}").output.shape[1] for i in range(1, 6)] == [14, 28, 56, 112, 224]
    assert model.output.shape == (None, 224, 224, 1)

    small = build_model("resnet50_transposed", frozen_stages=0, output_activation="sigmoid", max_depth=10.0)
    assert all(layer.trainable for layer in small.layers)
    freeze_resnet_stages(small, 3)  # reading (a) of the report
    assert not small.get_layer("conv3_block4_3_conv").trainable and not small.get_layer("conv1_bn").trainable
    assert small.get_layer("conv4_block1_1_conv").trainable
    x = RNG.uniform(0, 255, (2, 64, 32, 3)).astype(np.float32)
    out = np.asarray(small(x, training=True))
    assert out.shape == (2, 64, 32, 1) and 0 <= out.min() and out.max() <= 10
    round_trip(small, x, tmp_path)
    fit_decreases(small, losses.SSIMMSE(ssim_weight=0.0), 1e-3, size=32)
    float16_forward("resnet50_transposed", (32, 32))


# --- BTS ---------------------------------------------------------------------------------------------------------

def reduction_count(c_in, c_out, final=False):
    total = 0
    while c_out >= 4:
        if c_out < 8:
            return total + c_in * (1 if final else 3)
        total += c_in * c_out
        c_in, c_out = c_out, c_out // 2
    return total


def bts_decoder_bn_channels(channels, nf=512):
    c2, q = channels[2], nf // 4
    first_bns = (nf // 2 + q + c2) + (nf + c2) + (nf + q + c2) + (nf + 2 * q + c2)
    return nf + nf // 2 + nf // 2 + 5 * 2 * q + first_bns + q + nf // 8  # bn5, bn4, bn4_2, daspp, bn3, bn2


def bts_decoder_count(channels, nf=512, final_bias=False):
    """From the decoder table (spec §3.2-3.4): bias-free convs, BN = 4 C."""
    c0, c1, c2, c3, c4 = channels
    q = nf // 4
    total = conv(3, c4, nf) + bn(nf) + conv(3, nf + c3, nf)
    total += conv(3, nf, nf // 2) + bn(nf // 2) + conv(3, nf // 2 + c2, nf // 2) + bn(nf // 2)
    total += conv(1, nf // 2, 2 * q) + bn(2 * q) + conv(3, 2 * q, q)  # daspp_3, no first BN
    for c_in in (nf // 2 + q + c2, nf + c2, nf + q + c2, nf + 2 * q + c2):
        total += bn(c_in) + conv(1, c_in, 2 * q) + bn(2 * q) + conv(3, 2 * q, q)
    total += conv(3, nf // 2 + 5 * q, q) + reduction_count(q, q)
    total += conv(3, q, q) + bn(q) + conv(3, q + c1 + 1, q) + reduction_count(q, nf // 8)
    total += conv(3, q, nf // 8) + bn(nf // 8) + conv(3, nf // 8 + c0 + 1, nf // 8) + reduction_count(nf // 8, nf // 16)
    total += conv(3, nf // 8, nf // 16) + reduction_count(nf // 16, nf // 32, final=True)
    return total + conv(3, nf // 16 + 4, nf // 16) + conv(3, nf // 16, 1, final_bias)


def test_bts_resnet50_parameter_count_freezing_and_float16():
    from shape_helpers import shapes_only

    with shapes_only():  # counts, layer types and flags: the random initial values are not drawn (tf1 runs)
        model = build_model("bts")
    count = resnet50_v1_count() + bts_decoder_count((64, 256, 512, 1024, 2048))
    assert model.count_params() == count == 47_575_344  # spec §7: Keras 3 BTS-R50 incl. BN moving stats
    torch_convention = count - moving_stats(model) - RESNET_CONV_BIASES
    assert torch_convention / 1e6 == pytest.approx(47.48, rel=0.02)  # spec: 47.48 M (23.51 + 23.97)
    bottleneck_bn = sum(units * 6 * w for w, units in ((64, 3), (128, 4), (256, 6), (512, 3)))
    frozen = conv(7, 3, 64, True) + 2 * 64 + 2 * bottleneck_bn  # official: stem conv, bn1, bottleneck BN affine
    assert trainable_count(model) == count - moving_stats(model) - frozen
    assert type(model.get_layer("conv2_block1_1_bn")).__name__ == "FrozenAffineBatchNormalization"
    assert type(model.get_layer("conv2_block1_0_bn")).__name__ == "FusedBatchNormalization"  # shortcut BN trains
    assert count - moving_stats(model) == 47_508_528  # spec §7: trainable with nothing frozen (Toolbox)
    assert unbiased_flags(model) == {True}  # PyTorch's running variance, encoder (frozen-affine too) and decoder
    keras.config.set_dtype_policy("mixed_float16")
    tf1 = build_model("bts", freeze="tf1", fix_first_conv_blocks=True, final_bias=True,
                      bn_unbiased_moving_variance=False)
    assert unbiased_flags(tf1) == {False}
    float16_forward("bts", (32, 32), model=tf1)
    assert not tf1.get_layer("conv3_block1_2_bn").trainable and tf1.get_layer("bts_bn4_2").trainable
    assert not tf1.get_layer("conv2_block2_3_conv").trainable and tf1.get_layer("conv2_block3_1_conv").trainable
    assert tf1.count_params() == count + 1  # the Toolbox head's bias


def unbiased_flags(model):
    """The `unbiased_moving_variance` values of the model's batch norms (all of them hqdepth's fused one)."""
    norms = [layer for layer in model._flatten_layers(include_self=False)
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(isinstance(layer, FusedBatchNormalization) for layer in norms)
    return {layer.unbiased_moving_variance for layer in norms}


def test_bts_densenet161_parameter_count():
    model = build_model("bts", encoder="densenet161", freeze="none")
    torch_convention = model.count_params() - moving_stats(model)  # DenseNet convs have no biases
    channels = (96, 96, 192, 384, 2208)
    decoder = bts_decoder_count(channels) - 2 * bts_decoder_bn_channels(channels)
    assert torch_convention - decoder == 26_472_000  # spec §7: DenseNet-161 encoder 26.47 M
    assert torch_convention / 1e6 == pytest.approx(47.00, abs=0.005)  # BTS README: 47.0 M
    probe = keras.Model(model.input, [model.get_layer(n).output for n in ("conv1_relu", "pool1", "pool2_pool",
                                                                          "pool3_pool", "bn")])
    shapes = [t.shape for t in probe(np.zeros((1, 64, 64, 3), np.float32))]
    assert shapes == [(1, 32, 32, 96), (1, 16, 16, 96), (1, 8, 8, 192), (1, 4, 4, 384), (1, 2, 2, 2208)]


def test_bts_focal_scaling_round_trip_and_fit(tmp_path):
    model = build_model("bts", bts_size=128, max_depth=80.0, with_focal=True)
    assert [tuple(i.shape) for i in model.inputs] == [(None, None, None, 3), (None,)]
    x = RNG.uniform(0, 255, (2, 64, 96, 3)).astype(np.float32)
    focal = np.array([707.0912, 721.5377], np.float32)
    probe = keras.Model(model.inputs, [model.output, model.get_layer("bts_depth").output]
                        + [model.get_layer(f"bts_depth_{k}x{k}_scaled").output for k in (8, 4, 2)])
    depth, unscaled, *lpg = [np.asarray(t) for t in probe([x, focal], training=True)]  # batch statistics
    assert depth.shape == (2, 64, 96, 1) and 0 <= unscaled.min() and unscaled.max() <= 80.0 and unscaled.std() > 0
    np.testing.assert_allclose(depth, unscaled * focal[:, None, None, None] / 715.0873, rtol=1e-6)
    assert all(t.shape == (2, 64, 96, 1) and np.isfinite(t).all() for t in lpg)
    round_trip(model, [x, focal], tmp_path)
    for layer in model.layers:  # train the decoder only: no backprop through the encoder (CPU time)
        layer.trainable = layer.name.startswith("bts_")
    fit_decreases(model, losses.SILog(), 1e-3, with_focal=True, size=32)


# --- MRPAN ----------------------------------------------------------------------------------------------------------

def mrpan_count(adff=1280, rpd=2048, sam_scales=(5, 4, 3), gam=True, key=64, rrm="improved"):
    """From the layer list (spec §4.2-4.3), Keras ResNet-50 encoder."""
    channels = (64, 256, 512, 1024, 2048)
    total = resnet50_v1_count()
    for t in (1, 2, 3, 4, 5):
        f_t, r_t = adff >> (5 - t), (rpd // 2) >> (5 - t)
        f = f_t // 5
        for c in channels:  # UpProjection from each encoder scale
            total += conv(5, c, f) + bn(f) + conv(3, f, f) + bn(f) + conv(5, c, f) + bn(f)
        total += conv(3, f_t, r_t) + bn(r_t)
        if t in sam_scales:
            d = r_t // 8
            total += 2 * (r_t * d + d) + r_t * r_t + r_t + 1
        if gam:
            total += r_t * key + key + 5 * (f * key + key + f * r_t + r_t) + 1
        if rrm == "sarpn":
            total += conv(3, 1, r_t // 2) + bn(r_t // 2) + conv(3, r_t // 2, r_t // 2) + bn(r_t // 2)
            total += conv(3, r_t // 2, 1, True)
        else:
            r = max(r_t // 4, 1)
            total += conv(1, r_t, r) + bn(r) + conv(3, 1 + r + 3, r) + bn(r) + 4 * (conv(3, r, r) + bn(r))
            total += conv(3, r, 1, True)
        if t < 5:
            total += conv(3, r_t, r_t) + bn(r_t) + conv(3, r_t, 1)
    return total + conv(1, 2048, rpd // 2) + bn(rpd // 2) + conv(3, rpd, rpd // 2) + bn(rpd // 2) + conv(3, rpd // 2, 1)


def test_mrpan_count_outputs_and_round_trip(tmp_path):
    options = dict(adff_channels=160, rpd_channels=128, sam_scales=(5, 4, 3, 2), gam_key_channels=8)
    model = build_model("mrpan", **options)
    assert isinstance(model, DeepSupervisionModel)
    assert model.count_params() == mrpan_count(160, 128, (5, 4, 3, 2), key=8)
    x = RNG.uniform(0, 255, (1, 76, 100, 3)).astype(np.float32)  # odd scale sizes: 38x50 .. 3x4
    outputs = model(x, training=False)
    assert [tuple(o.shape) for o in outputs] == [(1, 38, 50, 1), (1, 19, 25, 1), (1, 10, 13, 1), (1, 5, 7, 1),
                                                 (1, 3, 4, 1)]
    assert model.output_names == ["depth_h2", "depth_h4", "depth_h8", "depth_h16", "depth_h32"]
    finest = np.asarray(finest_depth_model(model)(x, training=False))
    assert finest.shape == (1, 76, 100, 1)
    np.testing.assert_allclose(finest[:, 0, 0], np.asarray(outputs[0])[:, 0, 0], rtol=1e-6)  # corners align
    restored = round_trip(model, x, tmp_path)
    assert isinstance(restored, DeepSupervisionModel)
    assert unbiased_flags(model) == unbiased_flags(restored) == {True}  # as SARPN's PyTorch BatchNorm2d


def five_scale_backbone(input_shape=(None, None, 3)):
    """Any model mapping the image to five maps H/2 .. H/32 can replace ResNet-50 (here: a tiny one)."""
    image = keras.Input(input_shape, name="image")
    x, outputs = keras.layers.Rescaling(1 / 255.0)(image), []
    for i, channels in enumerate((8, 16, 16, 32, 32)):
        x = keras.layers.Conv2D(channels, 3, strides=2, padding="same", activation="relu", name=f"tiny{i}")(x)
        outputs.append(x)
    return keras.Model(image, outputs)


def test_mrpan_deep_supervision_fit_with_a_custom_backbone():
    model = build_model("mrpan", backbone=five_scale_backbone(), adff_channels=160, rpd_channels=128,
                        sam_scales=(5, 4, 3, 2), gam_key_channels=8)
    loss = losses.MultiScaleDepthLoss()
    history = fit_decreases(model, loss, 1e-3, size=32, metrics=[keras.metrics.MeanAbsoluteError(name="mae")])
    assert {"depth_h2_loss", "depth_h32_loss", "mae"} <= set(history)
    images, depth = next(iter(synthetic(size=32)))
    logs = model.evaluate(images, depth, verbose=0, return_dict=True)
    predictions = model(images, training=False)
    assert logs["loss"] == pytest.approx(float(loss(depth, predictions)), rel=1e-4)  # sum over the five scales
    # compiled metrics see the finest map resized to the ground truth (= finest_depth_model's output)
    assert logs["mae"] == pytest.approx(float(np.mean(np.abs(np.asarray(depth) - np.asarray(
        finest_depth_model(model)(images, training=False))))), rel=1e-4)


def test_mrpan_decoder_initialisation_is_pytorchs_default():
    """SARPN's decoder sets no initialisation, so its convolutions start from PyTorch's nn.Conv2d default:
    kaiming_uniform_(a=sqrt(5)), bound gain * sqrt(3 / fan_in) with gain = sqrt(2 / (1 + a^2)), and a bias
    U(+-1 / sqrt(fan_in)). `decoder_init="he_normal"` gives Keras' he_normal (std sqrt(2 / fan_in)) and zero biases.
    The encoder and the attention layers are not touched."""
    options = dict(backbone=five_scale_backbone(), adff_channels=160, rpd_channels=128, sam_scales=(5,),
                   gam_key_channels=8, rrm="sarpn")
    keras.utils.set_random_seed(int(RNG.integers(2**31)))
    torch_like = build_model("mrpan", **options)
    he = build_model("mrpan", decoder_init="he_normal", **options)
    for name in ("adff_scale1_conv", "rpd_scale5_conv", "adff_5to5_1_conv", "rpd_refine1_3_conv"):
        kernel = np.asarray(torch_like.get_layer(name).kernel, np.float64)
        fan_in = np.prod(kernel.shape[:3])
        bound = math.sqrt(2.0 / (1.0 + 5.0)) * math.sqrt(3.0 / fan_in)
        assert np.abs(kernel).max() <= bound * (1 + 1e-6)
        # a uniform on [-bound, bound] has standard deviation bound / sqrt(3); n values estimate it to ~1/sqrt(n)
        np.testing.assert_allclose(kernel.std(), bound / math.sqrt(3.0), rtol=5.0 / math.sqrt(kernel.size) + 0.01)
        he_kernel = np.asarray(he.get_layer(name).kernel, np.float64)
        np.testing.assert_allclose(he_kernel.std(), math.sqrt(2.0 / fan_in), rtol=5.0 / math.sqrt(he_kernel.size) + 0.02)
    bias = np.asarray(torch_like.get_layer("rpd_refine1_3_conv").bias, np.float64)
    fan_in = np.prod(torch_like.get_layer("rpd_refine1_3_conv").kernel.shape[:3])
    assert bias.shape == (1,) and 0.0 < abs(bias[0]) <= 1.0 / math.sqrt(fan_in)
    assert np.all(np.asarray(he.get_layer("rpd_refine1_3_conv").bias) == 0.0)
    assert torch_like.get_layer("tiny0").get_config()["kernel_initializer"]["class_name"] == "GlorotUniform"
    with pytest.raises(ConfigError, match="decoder_init"):
        build_model("mrpan", decoder_init="xavier", **options)


def test_bts_decoder_initialisation_official_xavier_or_toolbox_torch():
    """decoder_init "xavier" (default): the official code's weights_init_xavier, Glorot-uniform kernels
    (std sqrt(2 / (fan_in + fan_out))) and zero biases; "torch": PyTorch's nn.Conv2d default, which the Depth
    Toolbox's BTSHead keeps, U(+-1/sqrt(fan_in)) for kernels and the final conv's bias. The encoder is untouched."""
    from hqdepth.models import bts

    keras.utils.set_random_seed(int(RNG.integers(2**31)))
    built = {init: bts.bts((64, 64, 3), encoder=five_scale_backbone(), bts_size=128, final_bias=True,
                           decoder_init=init) for init in ("xavier", "torch")}
    for name in ("bts_upconv5_conv", "bts_iconv4", "bts_daspp_12_conv2", "bts_reduc8x8_inter0", "bts_iconv1"):
        kernels = {init: np.asarray(model.get_layer(name).kernel, np.float64) for init, model in built.items()}
        kh, kw, c_in, c_out = kernels["torch"].shape
        fan_in, fan_out = kh * kw * c_in, kh * kw * c_out
        tolerance = 5.0 / math.sqrt(kernels["torch"].size) + 0.02
        bound = 1.0 / math.sqrt(fan_in)
        assert np.abs(kernels["torch"]).max() <= bound * (1 + 1e-6)
        np.testing.assert_allclose(kernels["torch"].std(), bound / math.sqrt(3.0), rtol=tolerance)
        np.testing.assert_allclose(kernels["xavier"].std(), math.sqrt(2.0 / (fan_in + fan_out)), rtol=tolerance)
    fan_in = 9 * (128 // 16)
    assert np.asarray(built["xavier"].get_layer("bts_get_depth").bias).tolist() == [0.0]
    bias = np.asarray(built["torch"].get_layer("bts_get_depth").bias, np.float64)
    assert 0.0 < abs(bias[0]) <= 1.0 / math.sqrt(fan_in)
    assert built["torch"].get_layer("tiny0").get_config()["kernel_initializer"]["class_name"] == "GlorotUniform"
    with pytest.raises(ConfigError, match="decoder_init"):
        bts.bts((64, 64, 3), encoder=five_scale_backbone(), bts_size=128, decoder_init="he_normal")


def test_mrpan_sarpn_refine_count_and_single_output_float16():
    keras.config.set_dtype_policy("mixed_float16")  # attention softmax in float32, outputs float32
    model = build_model("mrpan", adff_channels=160, rpd_channels=256, sam_scales=(5, 4, 3), gam_key_channels=8,
                        rrm="sarpn", deep_supervision=False)
    assert model.count_params() == mrpan_count(160, 256, (5, 4, 3), key=8, rrm="sarpn")
    assert not isinstance(model, DeepSupervisionModel) and len(model.outputs) == 1
    _, (depth,) = float16_forward("mrpan", (64, 64), model=model)
    assert depth.shape == (1, 64, 64, 1)
    # SARPN ResNet-50 at its published widths (not built: 167 M parameters), PyTorch convention:
    bn_moving = 2 * (RESNET_BN_CHANNELS + 5 * (3 * (256 + 128 + 64 + 32 + 16)) + (1024 + 512 + 256 + 128 + 64)
                     + 2 * (512 + 256 + 128 + 64 + 32) + (512 + 256 + 128 + 64) + 1024 + 1024)
    torch_convention = mrpan_count(sam_scales=(), gam=False, rrm="sarpn") - bn_moving - RESNET_CONV_BIASES
    assert torch_convention / 1e6 == pytest.approx(167.3, rel=1e-3)  # spec §7: SARPN ResNet-50 = 167.3 M


def test_an_option_the_family_does_not_have_is_a_config_error():
    """A recipe's model.options key the builder does not take (e.g. a ResNet recipe's backbone_weights left in a
    --set for the FCN) names the option instead of a TypeError traceback."""
    with pytest.raises(ConfigError, match="model 'fcn_autoencoder' has no option 'backbone_weights'"):
        build_model("fcn_autoencoder", input_shape=(32, 32, 3), backbone_weights="none")
    # `hqdepth train` checks before reading any data (a misspelt option used to surface after the data summary)
    from hqdepth.models.registry import check_options
    from hqdepth.training import recipes
    from hqdepth.training.trainer import train

    for name in recipes.list_recipes():  # every recipe's options pass
        model = recipes.resolve_config(name)["model"]
        check_options(model["name"], model["options"])
    config = recipes.resolve_config("hqmd_plus_full", sets=["model.options.max_detph=10"])
    with pytest.raises(ConfigError, match="model 'hqmd_baseline_plus' has no option 'max_detph'"):
        train(config, "folder:/nonexistent", "/nonexistent/run", print_fn=None)
    with pytest.raises(ConfigError, match="model 'hqmd_baseline' has no option 'decode_at_image_size'"):
        check_options("hqmd_baseline", {"decode_at_image_size": True})  # the builder sets it
