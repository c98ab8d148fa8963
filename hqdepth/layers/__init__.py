"""Reusable, serializable layers (registered under the `hqdepth` package)."""

from hqdepth.layers.aspp import AtrousSpatialPyramidPooling, conv_bn_relu, conv_bn_relu_layers
from hqdepth.layers.heads import ScaledSigmoid
from hqdepth.layers.preprocessing import ImageNormalization
from hqdepth.layers.resize import BilinearResize, resize_bilinear

__all__ = [
    "AtrousSpatialPyramidPooling",
    "BilinearResize",
    "ImageNormalization",
    "ScaledSigmoid",
    "conv_bn_relu",
    "conv_bn_relu_layers",
    "resize_bilinear",
]
