"""ResNet-50 encoder + five transposed convolutions (D. Saia, "Monocular Depth Estimation", seed 004).

Faithful to the report: ImageNet ResNet-50 without pooling/FC, input 224x224 -> 7x7x2048 encoder
output, the first stages frozen, five transposed convolutions to a one-channel depth map. The
decoder widths and kernels are only in a figure [reconstructed]: five 4x4 stride-2 transposed
convs (n_out = (n_in - 1) * 2 + 4 - 2 * 1 = 2 n_in, the report's formula with p = 1), widths
512, 256, 128, 64, 1, BN + ReLU after the first four, 7 -> 14 -> 28 -> 56 -> 112 -> 224.

`frozen_stages` (0..5) counts Keras stages: 1 = stem (`conv1_*`), 2..5 = `conv2_*`..`conv5_*`
(torchvision layer1..layer4). The report freezes "the first three convolutional stages" and
fine-tunes "the last layer":
  reading (a) frozen_stages=3: conv1, conv2, conv3 frozen; conv4 and conv5 trained;
  reading (b) frozen_stages=4: stem + torchvision layer1-3 frozen, only layer4 (`conv5_*`) trained.
Default 4, reading (b): "the last layer" = torchvision `layer4` (under (a) two stages are trained); the report's
count of five convolutional stages, stem included, favours (a). The encoder is torchvision's ResNet-50 layout by
default (`backbone_version="v1.5"`: stride on the 3x3 conv; which ImageNet file the report used is not stated, its
PyTorch idioms suggest torchvision's), or keras.applications' ("v1", for Keras' ImageNet file). Frozen layers, batch
norms included, run in inference mode (Keras' convention for frozen layers; a PyTorch model would keep updating the
BN statistics unless put in eval mode).
"""

import keras
from keras import layers

from hqdepth.backbones.resnet import classic_resnet50
from hqdepth.errors import ConfigError
from hqdepth.layers import FusedBatchNormalization, ScaledSigmoid
from hqdepth.models.fcn import _check_multiple
from hqdepth.models.registry import register_model

PAPER = "D. Saia, Monocular Depth Estimation (ResNet-50 + transposed convolutions, course report, seed 004)"
OUTPUT_ACTIVATIONS = ("linear", "relu", "sigmoid")
SIZE_MULTIPLE = 32  # encoder stride 32, five x2 transposed convs


def freeze_resnet_stages(model, frozen_stages):
    """Set `trainable=False` on every layer of Keras ResNet stages 1..frozen_stages (1 = stem)."""
    if not 0 <= int(frozen_stages) <= 5:
        raise ConfigError(f"frozen_stages must be in 0..5, got {frozen_stages!r}.")
    prefixes = tuple(f"conv{stage}_" for stage in range(1, int(frozen_stages) + 1))
    for layer in model.layers:
        if prefixes and layer.name.startswith(prefixes):
            layer.trainable = False


def resnet50_transposed(input_shape=(None, None, 3), frozen_stages=4, decoder_filters=(512, 256, 128, 64),
                        kernel_size=4, output_activation="linear", max_depth=10.0, backbone_weights=None,
                        preprocess=None, batch_norm=True, backbone_version="v1.5", name="resnet50_transposed"):
    """Build the model. Options:

    frozen_stages: 0..5, default 4 (see the module docstring for the two readings of the report).
    decoder_filters: widths of the first four transposed convs (the fifth outputs 1 channel).
    kernel_size: 4 (stride 2, "same": exact doubling). output_activation: "linear" (the report's
    conv output, default), "relu", or "sigmoid" = max_depth * sigmoid.
    backbone_version: "v1.5" (torchvision layout, default) or "v1" (keras.applications).
    backbone_weights: None, a path (v1.5: written by `hqdepth.weights.torch.convert_torchvision_resnet50`),
    or "imagenet" (v1 only: keras.applications ResNet50, downloaded only when asked).
    preprocess: None = what the version's weights expect ("torch" for v1.5: RGB / 255, ImageNet
    mean / std; "keras" for v1: caffe, BGR minus means) | "torch" | "keras" | "mean_subtract" | "none".
    """
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ConfigError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}.")
    if len(decoder_filters) != 4:
        raise ConfigError(f"decoder_filters needs 4 widths (the 5th transposed conv outputs 1), "
                          f"got {decoder_filters!r}.")
    _check_multiple(input_shape, SIZE_MULTIPLE, "resnet50_transposed")
    backbone = classic_resnet50("resnet50_transposed", backbone_version, weights=backbone_weights,
                                preprocess=preprocess, bn_momentum=0.9 if backbone_version == "v1.5" else 0.99,
                                input_shape=input_shape)
    freeze_resnet_stages(backbone, frozen_stages)
    x = backbone.output
    for i, filters in enumerate(decoder_filters, start=1):
        x = layers.Conv2DTranspose(filters, kernel_size, strides=2, padding="same", use_bias=not batch_norm,
                                   kernel_initializer="glorot_uniform", name=f"deconv{i}")(x)
        if batch_norm:
            x = FusedBatchNormalization(name=f"deconv{i}_bn")(x)
        x = layers.ReLU(name=f"deconv{i}_relu")(x)
    x = layers.Conv2DTranspose(1, kernel_size, strides=2, padding="same", kernel_initializer="glorot_uniform",
                               dtype="float32", name="deconv5")(x)
    if output_activation == "sigmoid":
        x = ScaledSigmoid(max_depth, name="depth")(x)
    else:
        x = layers.Activation(output_activation, dtype="float32", name="depth")(x)
    return keras.Model(backbone.input, x, name=name)


@register_model("resnet50_transposed", (224, 224),
                "ResNet-50 (frozen stem..conv4) + 5 stride-2 transposed convs, 224x224", PAPER,
                size_multiple=SIZE_MULTIPLE)
def resnet50_transposed_model(input_shape=(None, None, 3), **options):
    return resnet50_transposed(input_shape, **options)


resnet50_transposed_model.options_from = resnet50_transposed  # registry.check_options
