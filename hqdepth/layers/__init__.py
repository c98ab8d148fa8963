"""Reusable, serializable layers (registered under the `hqdepth` package)."""

from hqdepth.layers.aspp import AtrousSpatialPyramidPooling, conv_bn_relu, conv_bn_relu_layers
from hqdepth.layers.conv import AtrousConv2D, GroupedConv2D, conv2d
from hqdepth.layers.attention import PositionAttention, ScaleAttention
from hqdepth.layers.heads import ScaledSigmoid
from hqdepth.layers.normalization import (FrozenAffineBatchNormalization, FusedBatchNormalization,
                                          use_unbiased_moving_variance)
from hqdepth.layers.planar import FocalScaling, LocalPlanarGuidance, PlaneCoefficients
from hqdepth.layers.preprocessing import ImageNormalization
from hqdepth.layers.resize import BilinearResize, resize_bilinear
from hqdepth.layers.upsampled_conv import UpsampledConcatConv2D

__all__ = [
    "AtrousConv2D",
    "AtrousSpatialPyramidPooling",
    "BilinearResize",
    "FocalScaling",
    "FrozenAffineBatchNormalization",
    "FusedBatchNormalization",
    "GroupedConv2D",
    "ImageNormalization",
    "LocalPlanarGuidance",
    "PlaneCoefficients",
    "PositionAttention",
    "ScaleAttention",
    "ScaledSigmoid",
    "UpsampledConcatConv2D",
    "conv2d",
    "conv_bn_relu",
    "conv_bn_relu_layers",
    "resize_bilinear",
    "use_unbiased_moving_variance",
]
