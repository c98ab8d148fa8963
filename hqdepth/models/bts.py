"""BTS, "From Big to Small" (Lee, Han, Ko & Suh, arXiv 1907.10326), following the official PyTorch code.

Source: `cleinc/bts` `pytorch/bts.py` and `bts_main.py` (specs/other_models.md §3). Decoder with
nf = `bts_size` = 512: upconv(c) = nearest x2 -> 3x3 conv c -> ELU; all decoder convs bias-free and
Glorot-uniform (`decoder_init="xavier"`; the Depth Toolbox's PyTorch default: "torch"); BN momentum 0.01 (Keras 0.99),
eps 1.1e-5.

  ReLU(top) -> upconv5 nf + BN -> [., skip3] -> iconv5 3x3 nf + ELU                       H/16
  upconv4 nf/2 + BN -> concat4 = [., skip2] -> iconv4 3x3 nf/2 + ELU + BN                  H/8
  dense ASPP, rates 3/6/12/18/24, q = nf/4 (rate 3 on iconv4, the chain grows from concat4)
  daspp_conv 3x3 q + ELU -> reduc8x8 -> plane -> LPG k=8 -> / max_depth = depth_8x8_scaled  H
  upconv3 q + BN -> [., skip1, depth_8x8 at 1/4] -> iconv3 -> reduc4x4 -> LPG k=4           H/4
  upconv2 nf/8 + BN -> [., skip0, depth_4x4 at 1/2] -> iconv2 -> reduc2x2 -> LPG k=2        H/2
  upconv1 nf/16 (no BN) -> reduc1x1 (-> 1, sigmoid); [upconv1, reduc1x1, d2x2, d4x4, d8x8]
  -> iconv1 3x3 nf/16 + ELU -> get_depth 3x3 -> 1 -> max_depth * sigmoid  [* focal / 715.0873]

Encoders (taps skip0..3 at H/2..H/16, top at H/32):
- "resnet50" (default): `hqdepth.backbones.resnet50` with keras.applications `ResNet50` names
  (`conv1_relu`, `conv2_block3_out`, `conv3_block4_out`, `conv4_block6_out`, `conv5_block3_out`);
  `backbone_version` "v1.5" (default: torchvision's layout, stride on the 3x3 conv, torchvision
  preprocessing, BN eps 1e-5, as the official code's `models.resnet50(pretrained=True)`) or "v1"
  (keras.applications layout, caffe preprocessing, eps 1.001e-5, for Keras' ImageNet weights).
- "densenet161" / "densenet121": a DenseNet built here with keras.applications `DenseNet*` layer
  names (`conv1_relu`, `pool1`, `pool2_pool`, `pool3_pool`, `bn` = torchvision relu0, pool0,
  transition1, transition2, norm5). DenseNet-161 is not in keras.applications: growth 48, blocks
  (6, 12, 36, 24), 96 initial features. `bn` has no ReLU; the decoder's ReLU(top) supplies it.
- any keras.Model with five outputs at H/2 .. H/32.
Weights default to None (no download); "imagenet" exists for resnet50 v1 and densenet121 only.
The published PyTorch checkpoints convert with `hqdepth.weights.torch.convert_bts`.

Freezing (`freeze`): "official" = PyTorch `set_misc`: the stem conv and the affine parameters of the
encoder batch norms (ResNet: `bn1` and every bottleneck BN, not the shortcut BN; DenseNet: every
norm) are frozen while their statistics keep updating (`FrozenAffineBatchNormalization`);
"tf1" = the TF1 code's encoder: its batch norms in inference mode (statistics frozen; the TF1 code builds
the whole training graph with `bn_training=False`, so its decoder batch norms normalise by their never-updated
moving statistics too, with trainable scale and offset: not reproduced, the decoder's train as in PyTorch);
"none" = the Toolbox. `fix_first_conv_blocks=True` also freezes the first two bottlenecks / dense layers, as PyTorch's
`--fix_first_conv_blocks` does (`set_misc`; the PyTorch argument files do not set it). The TF argument files
set the flag, but the TF1 code's test `(first_conv_name or 'block1' or 'block2') not in var.name` reduces to
its first name, so there it freezes ResNet's stem convolution only (`freeze="official"` freezes that too).

Deviations: the LPG denominator is clamped at `lpg_min_denominator` (1e-3; the official code
can divide by ~0 or a negative number in the 8x8 branch); `final_bias=True` gives the Toolbox head.
Input height and width must be multiples of 32. With `with_focal=True` the model takes
(image, focal (B,)) as `hqdepth.data.load(..., with_focal=True)` yields them.
"""

import math

import keras
from keras import layers

from hqdepth.backbones.resnet import check_imagenet_allowed, classic_resnet50, load_keras_application_weights
from hqdepth.errors import ConfigError, HQDepthError
from hqdepth.layers import (FocalScaling, FrozenAffineBatchNormalization, FusedBatchNormalization, LocalPlanarGuidance,
                            PlaneCoefficients, ScaledSigmoid, use_unbiased_moving_variance)
from hqdepth.layers.conv import conv2d, decoder_initializers
from hqdepth.layers.preprocessing import ImageNormalization
from hqdepth.layers.planar import KITTI_MEAN_FOCAL
from hqdepth.models.fcn import _check_multiple
from hqdepth.models.registry import register_model

PAPER = "Lee, Han, Ko & Suh, From Big to Small: Multi-Scale Local Planar Guidance for Monocular Depth " \
        "Estimation, arXiv 1907.10326 (BTS)"

FREEZE_CHOICES = ("official", "tf1", "none")
DECODER_INITS = ("xavier", "torch")
DENSENETS = {  # name: (blocks, growth rate, initial features)
    "densenet121": ((6, 12, 24, 16), 32, 64),
    "densenet161": ((6, 12, 36, 24), 48, 96),
}
RESNET_TAPS = ("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out")
DENSENET_TAPS = ("conv1_relu", "pool1", "pool2_pool", "pool3_pool", "bn")
DECODER_PREFIX = "bts_"
SIZE_MULTIPLE = 32  # five stride-2 stages, five x2 upsamplings


# --- encoders ---------------------------------------------------------------------------------------

def _first_blocks(name, fix_first_conv_blocks):
    """Layers of the first two bottlenecks / dense layers (PyTorch layer1.0-1 / denselayer1-2)."""
    return fix_first_conv_blocks and name.startswith(("conv2_block1_", "conv2_block2_"))


def _frozen_conv(name, freeze, fix_first_conv_blocks):
    """PyTorch 'base_model.conv1' / 'conv0' (official, or with the first blocks), plus the first blocks."""
    stem = name == "conv1_conv" and (freeze == "official" or fix_first_conv_blocks)
    return stem or _first_blocks(name, fix_first_conv_blocks)


def _frozen_affine(name, freeze, fix_first_conv_blocks, densenet):
    """Batch norms whose gamma/beta PyTorch freezes: '.bn' (ResNet: bn1 and bottleneck bn1..3, not the
    shortcut's downsample.1) or 'norm' (DenseNet: every BN), plus the first blocks' when fixed."""
    if freeze == "tf1":
        return False  # all encoder BNs are in inference mode instead
    official = freeze == "official" and (densenet or name == "conv1_bn" or name.endswith(("_1_bn", "_2_bn", "_3_bn")))
    return official or _first_blocks(name, fix_first_conv_blocks)


def _apply_freezing(backbone, freeze, fix_first_conv_blocks):
    for layer in backbone.layers:
        if isinstance(layer, layers.Conv2D) and _frozen_conv(layer.name, freeze, fix_first_conv_blocks):
            layer.trainable = False
        if freeze == "tf1" and isinstance(layer, layers.BatchNormalization):
            layer.trainable = False


def resnet50_encoder(input_shape, weights=None, freeze="official", fix_first_conv_blocks=False, preprocess=None,
                     bn_momentum=0.9, version="v1.5"):
    """ResNet-50 (`hqdepth.backbones.resnet50`) with BTS's freezing; returns (model, taps).

    version: "v1.5" (torchvision, the official code; preprocess None = "torch", BN eps 1e-5; weights
    from `hqdepth.weights.torch.convert_torchvision_resnet50`) or "v1" (keras.applications; preprocess
    None = "keras" caffe mode, eps 1.001e-5; "imagenet" allowed).
    """
    if version in ("v1", "v1.5"):
        check_imagenet_allowed(version, weights)  # before building anything
    backbone = classic_resnet50("bts", version, preprocess=preprocess, bn_momentum=bn_momentum,
                                input_shape=input_shape, name="resnet50_encoder")
    if any(_frozen_affine(layer.name, freeze, fix_first_conv_blocks, False) for layer in backbone.layers):
        def clone(layer):  # the same layer, or a frozen-affine BN with the same config
            cls = layer.__class__
            if isinstance(layer, layers.BatchNormalization) and _frozen_affine(layer.name, freeze,
                                                                              fix_first_conv_blocks, False):
                cls = FrozenAffineBatchNormalization
            return cls.from_config(layer.get_config())

        backbone = keras.models.clone_model(backbone, clone_function=clone)
    _apply_freezing(backbone, freeze, fix_first_conv_blocks)
    if weights is not None:
        load_keras_application_weights(backbone, version, weights)
    return backbone, [backbone.get_layer(name).output for name in RESNET_TAPS]


def densenet_encoder(input_shape, variant="densenet161", weights=None, freeze="official", fix_first_conv_blocks=False,
                     preprocess=None, bn_momentum=0.9):
    """DenseNet-121/161 with keras.applications layer names; returns (model, taps).

    preprocess: "torch" (default: RGB/255, ImageNet mean/std, as torchvision and Keras' DenseNet
    weights expect) or "none". weights: None, "imagenet" (densenet121 only: keras.applications
    DenseNet121, downloaded when asked), a `.keras` model holding these layer names (copied by
    name), a legacy `.h5` of keras.applications DenseNet121, or a `.weights.h5` of this encoder.
    """
    blocks, growth, features = DENSENETS[variant]

    def batch_norm(name):
        frozen = _frozen_affine(name, freeze, fix_first_conv_blocks, True)
        cls = FrozenAffineBatchNormalization if frozen else FusedBatchNormalization
        return cls(momentum=bn_momentum, epsilon=1.001e-5, name=name)

    def conv(filters, kernel, name, **kwargs):
        return layers.Conv2D(filters, kernel, use_bias=False, name=name, **kwargs)

    image = keras.Input(shape=input_shape, name="image")
    mode = preprocess or "torch"
    if mode not in ("torch", "none"):
        raise ConfigError(f"DenseNet preprocess must be 'torch' or 'none', got {preprocess!r}.")
    x = ImageNormalization(mode, name="preprocess")(image)
    x = layers.ZeroPadding2D(3, name="zero_padding2d")(x)
    x = conv(features, 7, "conv1_conv", strides=2)(x)
    x = batch_norm("conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(1, name="zero_padding2d_1")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for stage, units in enumerate(blocks, start=2):
        for unit in range(1, units + 1):
            name = f"conv{stage}_block{unit}"
            y = batch_norm(f"{name}_0_bn")(x)
            y = layers.Activation("relu", name=f"{name}_0_relu")(y)
            y = conv(4 * growth, 1, f"{name}_1_conv")(y)
            y = batch_norm(f"{name}_1_bn")(y)
            y = layers.Activation("relu", name=f"{name}_1_relu")(y)
            y = conv(growth, 3, f"{name}_2_conv", padding="same")(y)
            x = layers.Concatenate(name=f"{name}_concat")([x, y])
        if stage < 5:
            name = f"pool{stage}"
            x = batch_norm(f"{name}_bn")(x)
            x = layers.Activation("relu", name=f"{name}_relu")(x)
            x = conv(x.shape[-1] // 2, 1, f"{name}_conv")(x)
            x = layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)
    x = batch_norm("bn")(x)
    model = keras.Model(image, x, name=f"{variant}_encoder")
    _apply_freezing(model, freeze, fix_first_conv_blocks)
    if weights is not None:
        _load_densenet_weights(model, variant, weights)
    return model, [model.get_layer(name).output for name in DENSENET_TAPS]


def _load_densenet_weights(model, variant, weights):
    path = str(weights)
    try:
        if weights == "imagenet" or (path.endswith(".h5") and not path.endswith(".weights.h5")):
            if variant != "densenet121":
                raise HQDepthError(f"No keras.applications weights exist for {variant}; pass a .weights.h5 or "
                                   ".keras file of this encoder.")
            reference = keras.applications.DenseNet121(include_top=False, weights=weights, input_shape=(None, None, 3))
        elif path.endswith(".keras"):
            reference = keras.saving.load_model(path, compile=False)
        else:
            model.load_weights(path)
            return
    except HQDepthError:
        raise
    except Exception as error:  # no network, missing or wrong file
        raise HQDepthError(f"Could not load weights {weights!r} into the {variant} encoder "
                           f"({error.__class__.__name__}: {error}).") from error
    source = {layer.name: layer for layer in reference.layers if layer.weights}
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in source]
    if missing:
        raise HQDepthError(f"{weights} has no weights for {len(missing)} encoder layers, e.g. {missing[:3]}.")
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(source[layer.name].get_weights())


# --- decoder ----------------------------------------------------------------------------------------

def _conv(filters, kernel, name, init, dilation=1, use_bias=False, dtype=None, fan_in=None):
    """A decoder convolution. init "xavier": the official code's `weights_init_xavier` (Glorot-uniform kernel, zero
    bias); "torch": PyTorch's nn.Conv2d default, which the Depth Toolbox's BTSHead keeps (a bias needs `fan_in`)."""
    kernel_initializer, bias_initializer = decoder_initializers(init, fan_in)
    return conv2d(filters, kernel, padding="same", dilation_rate=dilation, use_bias=use_bias,
                  kernel_initializer=kernel_initializer, bias_initializer=bias_initializer, name=DECODER_PREFIX + name,
                  dtype=dtype)


def _bn(name, epsilon=1.1e-5, momentum=0.99):
    return FusedBatchNormalization(momentum=momentum, epsilon=epsilon, name=DECODER_PREFIX + name)


def _elu(name):
    return layers.ELU(name=DECODER_PREFIX + name)


def _upconv(x, filters, name, init):
    x = layers.UpSampling2D(2, interpolation="nearest", name=DECODER_PREFIX + name + "_up")(x)
    x = _conv(filters, 3, name + "_conv", init)(x)
    return _elu(name + "_elu")(x)


def _concat(tensors, name):
    return layers.Concatenate(name=DECODER_PREFIX + name)(tensors)


def _atrous(x, filters, rate, name, init, first_bn=True):
    """[BN] -> ReLU -> 1x1 conv 2q -> BN -> ReLU -> 3x3 conv q dilated (BTS `atrous_conv`)."""
    if first_bn:
        x = _bn(name + "_first_bn")(x)
    x = layers.ReLU(name=DECODER_PREFIX + name + "_relu1")(x)
    x = _conv(2 * filters, 1, name + "_conv1", init)(x)
    x = _bn(name + "_bn", epsilon=1e-5)(x)  # PyTorch default eps in the code
    x = layers.ReLU(name=DECODER_PREFIX + name + "_relu2")(x)
    return _conv(filters, 3, name + "_conv2", init, dilation=rate)(x)


def _reduction(x, c_in, c_out, name, init, final=False):
    """BTS `reduction_1x1`: 1x1 convs + ELU halving from c_out while >= 8, then 3 raw (or 1 sigmoid)."""
    del c_in  # the conv infers it
    step = 0
    while c_out >= 4:
        if c_out < 8:
            if final:
                x = _conv(1, 1, f"{name}_final", init)(x)
                return layers.Activation("sigmoid", dtype="float32", name=DECODER_PREFIX + name)(x)
            return _conv(3, 1, f"{name}_plane_params", init, dtype="float32")(x)
        x = _conv(c_out, 1, f"{name}_inter{step}", init)(x)
        x = _elu(f"{name}_inter{step}_elu")(x)
        step += 1
        c_out //= 2
    raise ConfigError(f"bts_size too small for the reduction {name}.")


def _lpg_branch(x, c_in, c_out, upratio, max_depth, name, theta_max, min_denominator, max_output, init):
    raw = _reduction(x, c_in, c_out, f"reduc{upratio}x{upratio}", init)
    planes = PlaneCoefficients(max_depth, theta_max, name=f"{DECODER_PREFIX}plane_{name}")(raw)
    depth = LocalPlanarGuidance(upratio, min_denominator, max_output, name=f"{DECODER_PREFIX}lpg_{name}")(planes)
    return layers.Rescaling(1.0 / max_depth, dtype="float32", name=f"{DECODER_PREFIX}depth_{name}_scaled")(depth)


def bts_decoder(taps, max_depth=10.0, bts_size=512, theta_max=math.pi / 3, lpg_min_denominator=1e-3,
                lpg_max_output=None, final_bias=False, decoder_init="xavier"):
    """The BTS decoder on encoder taps [skip0, skip1, skip2, skip3, top]; returns the depth logits' sigmoid."""
    if decoder_init not in DECODER_INITS:
        raise ConfigError(f"decoder_init must be one of {DECODER_INITS}, got {decoder_init!r}.")
    init = decoder_init
    nf = int(bts_size)
    if nf % 32 or nf < 128:
        raise ConfigError(f"bts_size must be a multiple of 32 and >= 128 (every reduction needs a head), "
                          f"got {bts_size!r}.")
    skip0, skip1, skip2, skip3, top = taps
    lpg = dict(max_depth=max_depth, theta_max=theta_max, min_denominator=lpg_min_denominator,
               max_output=lpg_max_output, init=init)

    dense = layers.ReLU(name=DECODER_PREFIX + "top_relu")(top)
    upconv5 = _bn("bn5")(_upconv(dense, nf, "upconv5", init))
    iconv5 = _elu("iconv5_elu")(_conv(nf, 3, "iconv5", init)(_concat([upconv5, skip3], "concat5")))

    upconv4 = _bn("bn4")(_upconv(iconv5, nf // 2, "upconv4", init))
    concat4 = _concat([upconv4, skip2], "concat4")
    iconv4 = _bn("bn4_2")(_elu("iconv4_elu")(_conv(nf // 2, 3, "iconv4", init)(concat4)))

    q = nf // 4
    daspp = [_atrous(iconv4, q, 3, "daspp_3", init, first_bn=False)]
    chain = _concat([concat4, daspp[0]], "concat4_2")
    for i, rate in enumerate((6, 12, 18, 24)):
        daspp.append(_atrous(chain, q, rate, f"daspp_{rate}", init))
        if rate != 24:
            chain = _concat([chain, daspp[-1]], f"concat4_{i + 3}")
    daspp_feat = _elu("daspp_conv_elu")(_conv(q, 3, "daspp_conv", init)(_concat([iconv4, *daspp], "concat4_daspp")))

    depth_8x8 = _lpg_branch(daspp_feat, q, q, 8, name="8x8", **lpg)
    depth_8x8_ds = layers.MaxPooling2D(1, strides=4, name=DECODER_PREFIX + "depth_8x8_ds")(depth_8x8)  # x[::4, ::4]
    upconv3 = _bn("bn3")(_upconv(daspp_feat, q, "upconv3", init))
    iconv3 = _elu("iconv3_elu")(_conv(q, 3, "iconv3", init)(_concat([upconv3, skip1, depth_8x8_ds], "concat3")))

    depth_4x4 = _lpg_branch(iconv3, q, nf // 8, 4, name="4x4", **lpg)
    depth_4x4_ds = layers.MaxPooling2D(1, strides=2, name=DECODER_PREFIX + "depth_4x4_ds")(depth_4x4)
    upconv2 = _bn("bn2")(_upconv(iconv3, nf // 8, "upconv2", init))
    iconv2 = _elu("iconv2_elu")(_conv(nf // 8, 3, "iconv2", init)(_concat([upconv2, skip0, depth_4x4_ds], "concat2")))

    depth_2x2 = _lpg_branch(iconv2, nf // 8, nf // 16, 2, name="2x2", **lpg)
    upconv1 = _upconv(iconv2, nf // 16, "upconv1", init)
    reduc1x1 = _reduction(upconv1, nf // 16, nf // 32, "reduc1x1", init, final=True)
    concat1 = _concat([upconv1, reduc1x1, depth_2x2, depth_4x4, depth_8x8], "concat1")
    iconv1 = _elu("iconv1_elu")(_conv(nf // 16, 3, "iconv1", init)(concat1))
    logits = _conv(1, 3, "get_depth", init, use_bias=final_bias, dtype="float32", fan_in=9 * (nf // 16))(iconv1)
    return ScaledSigmoid(max_depth, name=DECODER_PREFIX + "depth")(logits)


def bts(input_shape=(None, None, 3), encoder="resnet50", max_depth=10.0, bts_size=512, with_focal=False,
        reference_focal=KITTI_MEAN_FOCAL, backbone_weights=None, freeze="official", fix_first_conv_blocks=False,
        preprocess=None, encoder_bn_momentum=0.9, theta_max=math.pi / 3, lpg_min_denominator=1e-3,
        lpg_max_output=None, final_bias=False, decoder_init="xavier", backbone_version="v1.5",
        bn_unbiased_moving_variance=True, name="bts"):
    """Build BTS. Options (defaults = official PyTorch code):

    encoder: "resnet50" | "densenet161" | "densenet121", or a keras.Model mapping the image to the five
    taps [H/2, H/4, H/8, H/16, H/32] (the encoder options then do not apply). bts_size: nf (512; TF1 ResNet-50 256).
    with_focal: inputs (image, focal (B,)); output x focal / reference_focal (KITTI, 715.0873).
    backbone_weights: None | "imagenet" (resnet50 with backbone_version "v1", densenet121) | path.
    backbone_version (resnet50 only): "v1.5" (torchvision, as the official code) | "v1" (keras.applications).
    freeze: "official" | "tf1" | "none" (Toolbox);
    fix_first_conv_blocks: also freeze the first two bottlenecks / dense layers.
    preprocess: None = the encoder's ("torch" for ResNet-50 v1.5 and DenseNet, "keras" caffe mode for v1).
    encoder_bn_momentum: 0.9 (torchvision default 0.1). theta_max: pi/3 (PyTorch; TF1 pi/6).
    lpg_min_denominator: 1e-3 (guard; None = exact formula); lpg_max_output: clip LPG depth (None).
    final_bias: the Toolbox head has a bias on the last conv (PyTorch: none).
    decoder_init: "xavier" (the official code's weights_init_xavier: Glorot-uniform kernels, zero biases) |
    "torch" (PyTorch's nn.Conv2d default, which the Depth Toolbox's BTSHead keeps: U(+-1/sqrt(fan_in))).
    bn_unbiased_moving_variance: every batch norm averages the unbiased batch variance into its moving variance,
    as PyTorch's BatchNorm2d (False: Keras' biased one).
    """
    if freeze not in FREEZE_CHOICES:
        raise ConfigError(f"freeze must be one of {FREEZE_CHOICES}, got {freeze!r}.")
    _check_multiple(input_shape, SIZE_MULTIPLE, "bts")
    options = dict(weights=backbone_weights, freeze=freeze, fix_first_conv_blocks=fix_first_conv_blocks,
                   preprocess=preprocess, bn_momentum=encoder_bn_momentum)
    if isinstance(encoder, keras.Model):
        if len(encoder.outputs) != 5:
            raise ConfigError(f"bts: an encoder model must output five maps (H/2, H/4, H/8, H/16, H/32), "
                              f"it has {len(encoder.outputs)} outputs.")
        backbone, taps = encoder, list(encoder.outputs)
    elif encoder == "resnet50":
        backbone, taps = resnet50_encoder(input_shape, **options, version=backbone_version)
    elif encoder in DENSENETS:
        backbone, taps = densenet_encoder(input_shape, encoder, **options)
    else:
        raise ConfigError(f"encoder must be resnet50, {', '.join(DENSENETS)} or a keras.Model with five outputs; "
                          f"got {encoder!r}.")
    depth = bts_decoder(taps, max_depth, bts_size, theta_max, lpg_min_denominator,
                        lpg_max_output, final_bias, decoder_init)
    if with_focal:
        focal = keras.Input(shape=(), name="focal")
        depth = FocalScaling(reference_focal, name=DECODER_PREFIX + "focal_scaling")([depth, focal])
        model = keras.Model([backbone.input, focal], depth, name=name)
    else:
        model = keras.Model(backbone.input, depth, name=name)
    use_unbiased_moving_variance(model, bn_unbiased_moving_variance)
    return model


def decoder_variables(model):
    """The decoder's trainable variables. BTS applies AdamW weight decay to the encoder only; a recipe's
    `optimizer.decay_encoder_only: true` makes the trainer exclude these
    (`optimizer.exclude_from_weight_decay(var_list=decoder_variables(model))`)."""
    return [v for layer in model.layers if layer.name.startswith(DECODER_PREFIX) for v in layer.trainable_weights]


@register_model("bts", (416, 544), "BTS: ResNet-50 + dense ASPP + local planar guidance (DenseNet-161 option)",
                PAPER, decoder_variables=decoder_variables, size_multiple=SIZE_MULTIPLE)
def bts_model(input_shape=(None, None, 3), **options):
    return bts(input_shape, **options)


bts_model.options_from = bts  # registry.check_options
