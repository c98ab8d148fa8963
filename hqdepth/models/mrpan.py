"""MRPAN: multi-scale residual pyramid attention network (Liu, Zhang, Li & Mao, ICPR 2020).

MRPAN has no public code or full text; it is SARPN (Chen, Chen & Zha, IJCAI 2019, `Xt-Chen/SARPN`)
plus multi-scale attention context aggregation (MACA = spatial attention SAM + global attention
GAM) and an improved residual refinement module (RRM), trained with deep supervision
Loss = sum over scales (l_depth + l_grad + l_normal) (`hqdepth.losses.MultiScaleDepthLoss`).
See specs/other_models.md §4.

Follows the SARPN code:
- encoder: `backbone="senet154"`, the paper's (and SARPN's default) SENet-154, Cadene's
  `pretrainedmodels` network (`hqdepth.backbones.senet`), tapped as SARPN's `E_senet`: layer0
  before its pool (H/2, 128 channels) and layer1-4 (H/4..H/32, 256..2048); or `backbone="resnet50"`,
  SARPN's ResNet-50 configuration, `backbone_version` "v1.5" (default: torchvision's layout, as
  SARPN's `torchvision.models.resnet50(pretrained=True)`) or "v1" (keras.applications, for Keras'
  ImageNet file), tapped at `conv1_relu`, `conv2_block3_out`, `conv3_block4_out`,
  `conv4_block6_out`, `conv5_block3_out`; or any keras.Model with five outputs, finest first;
- every resize bilinear with align_corners=True to the
  exact size of the target scale (odd sizes such as 228x304 -> 29x38 -> 15x19 -> 8x10 work);
- ADFF: for each target scale t, every encoder map -> UpProjection (resize, 5x5 conv-BN-ReLU-3x3
  conv-BN + 5x5 conv-BN shortcut, ReLU, no biases) to F_t/5 channels -> concat F_t -> 3x3
  conv-BN-ReLU -> S_t with R_t channels; F = 1280, 640, 320, 160, 80 and R = 1024 .. 64 (t = 5..1);
- RPD: D5 from [ReLU(BN(1x1 conv of the top map)), S5] -> 3x3 conv-BN-ReLU -> 3x3 conv -> 1;
  D_t = refine(up(D_{t+1}) + R_t(S_t)) with R_t = 3x3 conv-BN-ReLU-3x3 conv -> 1;
  outputs linear, metres (no activation).
Reconstructed [inferred], as specs/other_models.md §4.3 proposes:
- SAM = DANet position attention on S_t at `sam_scales` (default H/32, H/16, H/8: the attention
  matrix at H/4 is N^2 = 18.8 M entries per image at 228x304, at H/2 300 M);
- GAM = per-pixel attention over the five projections P_{s->t} of ADFF (`hqdepth.layers.ScaleAttention`);
  MACA(S_t) = GAM(SAM(S_t)), both residual with gamma initialised to 0 (so an untrained MACA is the
  SARPN baseline);
- improved RRM (`rrm="improved"`): D_t = x_t + head(2 residual blocks(3x3 conv-BN-ReLU([x_t,
  1x1-reduced S_t after MACA, RGB resized to scale t]))), x_t = up(D_{t+1}) + R_t(S_t) (x_5 = the
  coarse D5), width `rrm_channels` (default R_t / 4). `rrm="sarpn"` gives SARPN's Refineblock
  (3x3 conv 1 -> R_t/2 -BN-ReLU- 3x3 -BN-ReLU- 3x3 -> 1 with bias, plus the input).

Output (deep supervision, the default): a list of five depth maps, **finest first**:
[depth_h2 (H/2), depth_h4, depth_h8, depth_h16, depth_h32]. The model is a `DeepSupervisionModel`:
`fit` takes the usual (image, depth) pairs; the ground truth is given to every output (each
output's loss resizes it to its own size: compile with `MultiScaleDepthLoss`, whose sum over the
outputs is the MRPAN loss), and compiled metrics see the finest map resized (bilinear) to the
ground truth, as SARPN's test does. `deep_supervision=False`, or `finest_depth_model(model)` on a
trained model, gives a single-output model returning the finest map resized to the input size
(`hqdepth.models.depth_model` applies it wherever the package runs a trained model: the trainer's
images and test evaluation, `hqdepth evaluate --model`, `predict`, `export`).
"""

import dataclasses

import keras
from keras import layers, ops

from hqdepth.backbones.resnet import classic_resnet50
from hqdepth.backbones.senet import senet154
from hqdepth.errors import ConfigError
from hqdepth.layers import (BilinearResize, FusedBatchNormalization, PositionAttention, ScaleAttention, resize_bilinear,
                            use_unbiased_moving_variance)
from hqdepth.layers.conv import decoder_initializers
from hqdepth.models.registry import register_model

PAPER = "Liu, Zhang, Li & Mao, Multi-scale Residual Pyramid Attention Network for Monocular Depth Estimation, " \
        "ICPR 2020 (MRPAN; baseline SARPN, Chen et al. IJCAI 2019)"

RESNET_TAPS = ("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out")
RRM_CHOICES = ("improved", "sarpn")
DECODER_INITS = ("torch", "he_normal")
SCALES = (1, 2, 3, 4, 5)  # scale t has stride 2**t


@keras.saving.register_keras_serializable(package="hqdepth")
class DeepSupervisionModel(keras.Model):
    """Functional model with one output per scale, trained from a single ground-truth map.

    `compute_loss` gives the ground truth to every output when `y` is one tensor (each compiled
    loss then resizes it to its output); `compute_metrics` evaluates the compiled metrics on the
    first (finest) output resized to the ground truth (bilinear, align_corners=True).
    """

    @staticmethod
    def _broadcast(y, y_pred):
        return isinstance(y_pred, (list, tuple)) and not isinstance(y, (list, tuple, dict))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self._broadcast(y, y_pred):
            y = [y] * len(y_pred)
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if self._broadcast(y, y_pred):
            shape = ops.shape(y)
            y_pred = resize_bilinear(y_pred[0], (shape[1], shape[2]), align_corners=True)
        return super().compute_metrics(x, y, y_pred, sample_weight)


def finest_depth_model(model, align_corners=True, name=None):
    """Single-output model (sharing weights): the finest depth map resized to the input image size."""
    finest = model.outputs[0]
    image = model.inputs[0]
    depth = BilinearResize(align_corners=align_corners, dtype="float32", name="depth")([finest, image])
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, depth, name=name or f"{model.name}_finest")


@dataclasses.dataclass(frozen=True)
class _Decoder:
    """Settings every decoder layer shares: batch-norm momentum and the convolutions' initialisation."""

    momentum: float
    init: str


def _conv(x, filters, kernel, name, decoder, use_bias=False, dtype=None):
    kernel_initializer, bias_initializer = decoder_initializers(decoder.init, kernel * kernel * x.shape[-1])
    return layers.Conv2D(filters, kernel, padding="same", use_bias=use_bias, kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer, name=name, dtype=dtype)(x)


def _bn(x, name, decoder):
    return FusedBatchNormalization(momentum=decoder.momentum, epsilon=1e-5, name=name)(x)


def _conv_bn_relu(x, filters, kernel, name, decoder):
    x = _bn(_conv(x, filters, kernel, f"{name}_conv", decoder), f"{name}_bn", decoder)
    return layers.ReLU(name=f"{name}_relu")(x)


def up_projection(x, reference, filters, name, decoder, align_corners=True):
    """SARPN `_UpProjection`: resize to `reference`'s size, 5x5-BN-ReLU-3x3-BN + 5x5-BN, ReLU(sum)."""
    if reference is not None:
        x = BilinearResize(align_corners=align_corners, name=f"{name}_resize")([x, reference])
    branch1 = _conv_bn_relu(x, filters, 5, f"{name}_1", decoder)
    branch1 = _bn(_conv(branch1, filters, 3, f"{name}_1_2_conv", decoder), f"{name}_1_2_bn", decoder)
    branch2 = _bn(_conv(x, filters, 5, f"{name}_2_conv", decoder), f"{name}_2_bn", decoder)
    return layers.ReLU(name=f"{name}_relu")(layers.Add(name=f"{name}_add")([branch1, branch2]))


def _sarpn_refine(x, channels, name, decoder):
    """SARPN `Refineblock` on a 1-channel depth map."""
    y = _conv_bn_relu(x, channels // 2, 3, f"{name}_1", decoder)
    y = _conv_bn_relu(y, channels // 2, 3, f"{name}_2", decoder)
    y = _conv(y, 1, 3, f"{name}_3_conv", decoder, use_bias=True)
    return layers.Add(name=f"{name}_add")([x, y])


def _improved_refine(x, features, rgb, channels, name, decoder):
    """Improved RRM [reconstructed]: depth + semantics (S_t after MACA) + RGB -> residual of the depth."""
    semantic = _conv_bn_relu(features, channels, 1, f"{name}_semantic", decoder)
    h = layers.Concatenate(name=f"{name}_concat")([x, semantic, rgb])
    h = _conv_bn_relu(h, channels, 3, f"{name}_in", decoder)
    for block in (1, 2):
        y = _conv_bn_relu(h, channels, 3, f"{name}_res{block}_1", decoder)
        y = _bn(_conv(y, channels, 3, f"{name}_res{block}_2_conv", decoder), f"{name}_res{block}_2_bn", decoder)
        h = layers.ReLU(name=f"{name}_res{block}_relu")(layers.Add(name=f"{name}_res{block}_add")([h, y]))
    residual = _conv(h, 1, 3, f"{name}_head", decoder, use_bias=True)
    return layers.Add(name=f"{name}_add")([x, residual])


def _encoder(backbone, input_shape, backbone_weights, preprocess, bn_momentum, version="v1.5"):
    if isinstance(backbone, keras.Model):
        if len(backbone.outputs) != 5:
            raise ConfigError(f"mrpan: a backbone model must output five feature maps (H/2 .. H/32), "
                              f"it has {len(backbone.outputs)} outputs.")
        return backbone.inputs[0], list(backbone.outputs)
    if backbone == "senet154":
        model = senet154(input_shape, weights=backbone_weights, preprocess=preprocess or "torch",
                         bn_momentum=bn_momentum)
        return model.input, list(model.outputs)
    if backbone != "resnet50":
        raise ConfigError(f"mrpan: backbone must be 'senet154', 'resnet50' or a keras.Model with five outputs, got "
                          f"{backbone!r}.")
    model = classic_resnet50("mrpan", version, weights=backbone_weights, preprocess=preprocess,
                             bn_momentum=bn_momentum, input_shape=input_shape)
    return model.input, [model.get_layer(name).output for name in RESNET_TAPS]


def mrpan(input_shape=(None, None, 3), backbone="resnet50", backbone_weights=None, preprocess=None,
          adff_channels=1280, rpd_channels=2048, sam_scales=(5, 4, 3), gam=True, gam_key_channels=64,
          sam_reduction=8, rrm="improved", rrm_channels=None, deep_supervision=True, bn_momentum=0.9,
          align_corners=True, backbone_version="v1.5", decoder_init="torch", bn_unbiased_moving_variance=True,
          name="mrpan"):
    """Build MRPAN (see the module docstring). Options:

    backbone: "senet154" (the paper's; `hqdepth.backbones.senet.senet154`, `backbone_weights` None | path from
    `hqdepth.weights.torch.convert_senet154`; backbone_version is then unused), "resnet50"
    (`hqdepth.backbones.resnet50`, keras.applications layer names) or a
    keras.Model mapping the image to five feature maps, finest (H/2) first. backbone_version:
    "v1.5" (torchvision layout, SARPN's; `backbone_weights` None | path from
    `hqdepth.weights.torch.convert_torchvision_resnet50`; BN eps 1e-5) or "v1" (keras.applications;
    None | "imagenet" | path; eps 1.001e-5). preprocess: None = what the version's weights expect
    ("torch" for v1.5, "keras" caffe mode for v1) | "torch" | "keras" | "mean_subtract" | "none". adff_channels / rpd_channels: SARPN widths (1280 / 2048; the
    slim variant 640 / 1024 halves the parameters). sam_scales: scales (1 = H/2 .. 5 = H/32) with
    position attention, () for none; gam: scale attention at every scale. rrm: "improved" | "sarpn";
    rrm_channels: improved-RRM width per scale (default R_t / 4). deep_supervision: five outputs,
    finest first (True) or one output at the input size (False). bn_momentum: 0.9 (PyTorch 0.1).
    decoder_init: the decoder convolutions' initialisation, "torch" (PyTorch's default, which SARPN's code keeps) or
    "he_normal" (Keras' he_normal, zero biases); the attention layers keep their own.
    bn_unbiased_moving_variance: every batch norm averages the unbiased batch variance into its moving variance,
    as PyTorch's BatchNorm2d (False: Keras' biased one).
    With rrm="sarpn", sam_scales=() and gam=False the network is SARPN (MRPAN's baseline).
    """
    if rrm not in RRM_CHOICES:
        raise ConfigError(f"rrm must be one of {RRM_CHOICES}, got {rrm!r}.")
    if decoder_init not in DECODER_INITS:
        raise ConfigError(f"decoder_init must be one of {DECODER_INITS}, got {decoder_init!r}.")
    if adff_channels % 80 or rpd_channels % 32:
        raise ConfigError("adff_channels must be a multiple of 80 and rpd_channels of 32 "
                          f"(five halvings), got {adff_channels}, {rpd_channels}.")
    bad_scales = [s for s in sam_scales if s not in SCALES]
    if bad_scales:
        raise ConfigError(f"sam_scales must be among {SCALES} (1 = H/2 .. 5 = H/32), got {tuple(sam_scales)}.")
    d = _Decoder(bn_momentum, decoder_init)
    image, taps = _encoder(backbone, input_shape, backbone_weights, preprocess, bn_momentum, backbone_version)
    widths = {t: (adff_channels >> (5 - t), (rpd_channels // 2) >> (5 - t)) for t in SCALES}  # (F_t, R_t)

    fused, projections = {}, {}
    for t in reversed(SCALES):
        f_t, r_t = widths[t]
        projections[t] = [up_projection(taps[s - 1], None if s == t else taps[t - 1], f_t // 5, f"adff_{s}to{t}", d,
                                        align_corners) for s in SCALES]
        x = layers.Concatenate(name=f"adff_concat{t}")(projections[t])
        fused[t] = _conv_bn_relu(x, r_t, 3, f"adff_scale{t}", d)

    context = {}
    for t in reversed(SCALES):  # MACA [reconstructed]
        x = fused[t]
        if t in sam_scales:
            x = PositionAttention(sam_reduction, name=f"maca_sam{t}")(x)
        if gam:
            x = ScaleAttention(gam_key_channels, name=f"maca_gam{t}")([x, *projections[t]])
        context[t] = x

    rgb = layers.Rescaling(1.0 / 255.0, name="rgb_scale")(image) if rrm == "improved" else None

    def refine(x, t):
        r_t = widths[t][1]
        if rrm == "sarpn":
            return _sarpn_refine(x, r_t, f"rpd_refine{t}", d)
        rgb_t = BilinearResize(align_corners=align_corners, name=f"rgb_to_scale{t}")([rgb, taps[t - 1]])
        return _improved_refine(x, context[t], rgb_t, rrm_channels or max(r_t // 4, 1), f"rrm{t}", d)

    top = layers.ReLU(name="rpd_top_relu")(_bn(_conv(taps[4], rpd_channels // 2, 1, "rpd_top_conv", d), "rpd_top_bn",
                                               d))
    x = layers.Concatenate(name="rpd_concat5")([top, context[5]])
    x = _conv_bn_relu(x, rpd_channels // 2, 3, "rpd_scale5", d)
    x = _conv(x, 1, 3, "rpd_scale5_depth_conv", d)
    depth = {5: refine(x, 5)}
    for t in (4, 3, 2, 1):
        r_t = widths[t][1]
        residual = _conv_bn_relu(context[t], r_t, 3, f"rpd_scale{t}", d)
        residual = _conv(residual, 1, 3, f"rpd_scale{t}_depth_conv", d)
        up = BilinearResize(align_corners=align_corners, name=f"rpd_up{t + 1}to{t}")([depth[t + 1], residual])
        depth[t] = refine(layers.Add(name=f"rpd_sum{t}")([up, residual]), t)

    outputs = [layers.Activation("linear", dtype="float32", name=f"depth_h{2 ** t}")(depth[t]) for t in SCALES]
    if not deep_supervision:
        final = BilinearResize(align_corners=align_corners, dtype="float32", name="depth")([outputs[0], image])
        model = keras.Model(image, final, name=name)
    else:
        model = DeepSupervisionModel(image, outputs, name=name)
    use_unbiased_moving_variance(model, bn_unbiased_moving_variance)
    return model


@register_model("mrpan", (228, 304), "MRPAN: SARPN residual pyramid + attention (SAM/GAM) + improved RRM, "
                "five outputs (reconstructed parts)", PAPER)
def mrpan_model(input_shape=(None, None, 3), **options):
    return mrpan(input_shape, **options)


mrpan_model.options_from = mrpan  # registry.check_options
