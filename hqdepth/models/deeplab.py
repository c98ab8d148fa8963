"""HQMD networks: DeepLabv3+ on an atrous ResNet-50, "baseline" and "baseline+" (Jiang & Huang, ICIP 2019).

Follows the official code (HalleyJiang/HQMDE `network.py`): ASPP (rates 4/8/12, image pooling) on the
output-stride-16 backbone -> 256 ch; low-level `conv2_block3_1_relu` -> 48 ch; concat at 1/4 and two
3x3x256 convs. baseline: 1x1 conv -> 1 at 1/4, bilinear upsampling of the logits. baseline+
(`--decoding_at_image_size`): 3x3 conv -> 16, bilinear upsampling to the input size, 1x1 conv -> 1.
depth = max_depth * sigmoid(logits). Every resize is bilinear with align_corners=True (option).

baseline+ runs its last two steps in the other order: the 1x1 logits conv at 1/4 resolution, then the bilinear
upsampling of the one logits channel. Both maps are linear and each row of bilinear weights sums to one, so
conv(resize(x)) = resize(conv(x)), bias included: the same function as the official code's (tests/test_weights_slim.py
checks it against a float64 NumPy network in the official order), with 16 times fewer values at image size (the
mixed_bfloat16 training step at 289x385 spent about 100 ms of op time on them). Under mixed precision it is also
the more exact order: the upsampling runs in float32 on the logits instead of in bfloat16 on the features.

For the same reason the decoder's first 3x3 convolution takes the ASPP output at 1/16 (`UpsampledConcatConv2D`):
the official resize -> concat -> conv, with the upsampled channels' share of the convolution computed at the coarse
size and then upsampled (8.4 of its 10 GFLOP per image at 289x385 become about 1); the same kernel and function.
"""

import keras
from keras import layers

from hqdepth.backbones.resnet import FEATURES, resnet50
from hqdepth.layers import (AtrousSpatialPyramidPooling, BilinearResize, FusedBatchNormalization, ScaledSigmoid,
                            UpsampledConcatConv2D, conv_bn_relu)
from hqdepth.models.registry import register_model

PAPER = "Jiang & Huang, High quality monocular depth estimation via a multi-scale network and a " \
        "detail-preserving objective, ICIP 2019"


def hqmd_deeplab(input_shape=(None, None, 3), decode_at_image_size=True, max_depth=10.0,
                 backbone_version="v2", output_stride=16, multi_grid=(1, 2, 4), aspp_rates=(4, 8, 12),
                 backbone_weights=None, freeze="stem_block1", preprocess="mean_subtract",
                 pool_padding="same", align_corners=True, bn_momentum=0.9997, bn_epsilon=1e-5,
                 bn_unbiased_moving_variance=True, l2=1e-4, low_level_layer=None, name=None):
    """DeepLabv3+ depth network of HQMD; `decode_at_image_size=True` is baseline+.

    `l2` follows slim's convention (1e-4 * sum(w^2) / 2), i.e. Keras `L2(l2 / 2)` on conv kernels.
    `bn_unbiased_moving_variance=True` (default): every batch norm averages the unbiased batch variance into its
    moving variance, as HQMD's TF-slim `batch_norm(fused=True)` does; it matters for the ASPP's image-pooling
    branch (one value per image: Keras' biased average is 7/8 of it at batch 8). False: Keras' average.
    Other options: see `hqdepth.backbones.resnet50` and the README's paper/code table.
    """
    settings = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, weight_decay=l2 / 2,
                    bn_unbiased_moving_variance=bn_unbiased_moving_variance)
    backbone = resnet50(version=backbone_version, output_stride=output_stride, multi_grid=multi_grid,
                        weights=backbone_weights, freeze=freeze, preprocess=preprocess,
                        pool_padding=pool_padding, input_shape=input_shape, **settings)
    image = backbone.input
    features = AtrousSpatialPyramidPooling(256, aspp_rates, name="aspp", **settings)(backbone.output)

    low_level = backbone.get_layer(low_level_layer or FEATURES[backbone_version]["stride4_low_level"]).output
    low_level = conv_bn_relu(low_level, 48, 1, "decoder_low_level", **settings)
    # resize -> concat -> conv as one layer that keeps the ASPP's part at 1/16 (the same function, module docstring).
    x = UpsampledConcatConv2D(256, align_corners=align_corners, name="decoder_conv1_conv",
                              kernel_regularizer=keras.regularizers.L2(l2 / 2) if l2 else None)([features, low_level])
    x = FusedBatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon, name="decoder_conv1_bn",
                                unbiased_moving_variance=bn_unbiased_moving_variance)(x)
    x = layers.ReLU(name="decoder_conv1_relu")(x)
    x = conv_bn_relu(x, 256, 3, "decoder_conv2", **settings)

    if decode_at_image_size:
        x = conv_bn_relu(x, 16, 3, "decoder_conv3", **settings)
    logits = layers.Conv2D(1, 1, kernel_initializer="he_normal", dtype="float32", name="logits",
                           kernel_regularizer=keras.regularizers.L2(l2 / 2) if l2 else None)(x)
    logits = BilinearResize(align_corners=align_corners, dtype="float32", name="upsample_to_image")([logits, image])
    depth = ScaledSigmoid(max_depth, name="depth")(logits)
    default_name = "hqmd_baseline_plus" if decode_at_image_size else "hqmd_baseline"
    return keras.Model(image, depth, name=name or default_name)


@register_model("hqmd_baseline_plus", (289, 385), "HQMD baseline+: DeepLabv3+ R50-v2 OS16, decoding at image size",
                PAPER)
def hqmd_baseline_plus(input_shape=(None, None, 3), **options):
    return hqmd_deeplab(input_shape, decode_at_image_size=True, **options)


@register_model("hqmd_baseline", (289, 385), "HQMD baseline: DeepLabv3+ R50-v2 OS16, logits upsampled from 1/4",
                PAPER)
def hqmd_baseline(input_shape=(None, None, 3), **options):
    return hqmd_deeplab(input_shape, decode_at_image_size=False, **options)


for _builder in (hqmd_baseline_plus, hqmd_baseline):  # registry.check_options
    _builder.options_from, _builder.fixed_options = hqmd_deeplab, ("decode_at_image_size",)
