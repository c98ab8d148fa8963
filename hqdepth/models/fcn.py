"""Fully convolutional encoder-decoder ("sort of autoencoder") trained with SSIM + MSE (seed report 001).

What the source states: RGB in, a depth map out, fully convolutional, about 0.5 M trainable
parameters, Xavier (Glorot) initialisation, loss = weighted SSIM-derived term + MSE (see
`hqdepth.losses.SSIMMSE`), Adam 1e-4, batch 16, NYU Depth v2 labeled set (480x640), augmentation
flip + Gaussian noise. The layers themselves are only in a figure, so the architecture below is
designed for this port [reconstructed], sized to 508,337 trainable parameters (0.51 M):

  (convolutions followed by BN have no bias: BN's mean subtraction cancels it)
  encoder, per level w in (32, 64, 128): 3x3 conv w + BN + ReLU, 3x3 conv w stride 2 + BN + ReLU
  decoder, per level w in (64, 32, 16):  4x4 transposed conv w stride 2 + BN + ReLU, 3x3 conv w + BN + ReLU
  head: 1x1 conv -> 1, depth = max_depth * sigmoid (float32)

No skip connections (an autoencoder). Height and width must be multiples of 2**levels (8).
RGB 0..255 is scaled to 0..1 inside the model (normalisation not stated; our choice).
"""

import keras
from keras import layers

from hqdepth.errors import ConfigError
from hqdepth.layers import FusedBatchNormalization, ScaledSigmoid
from hqdepth.models.registry import register_model

PAPER = "FCN autoencoder with SSIM + MSE loss (seed report 'Monocular Depth Estimation', 001)"


def _check_multiple(input_shape, factor, model):
    for size in input_shape[:2]:
        if size is not None and size % factor:
            raise ConfigError(f"{model}: input height and width must be multiples of {factor}, got {input_shape[:2]}.")


def fcn_size_multiple(encoder_filters=(32, 64, 128), **_):
    """Height and width must be multiples of 2**levels (one stride-2 conv per encoder level)."""
    return 2 ** len(encoder_filters)


def fcn_autoencoder(input_shape=(None, None, 3), max_depth=10.0, encoder_filters=(32, 64, 128),
                    decoder_filters=(64, 32, 16), kernel_initializer="glorot_uniform", batch_norm=True,
                    bn_momentum=0.99, conv_bias=None, name="fcn_autoencoder"):
    """Build the FCN autoencoder; see the module docstring for the layer list.

    Args:
        max_depth: output = max_depth * sigmoid(logits), metres.
        encoder_filters / decoder_filters: widths per level (as many decoder levels as encoder ones).
        kernel_initializer: "glorot_uniform" (Xavier; which variant the report used is not stated).
        batch_norm: BN after every conv except the head (our choice; not stated in the report).
        conv_bias: None: a bias only on convolutions no batch norm follows (a bias before BN is cancelled by its
            mean subtraction: same function, one pass less over the largest activations); True: on every
            convolution (the layout of models saved before 2026-12-01, 510,353 parameters).
    """
    if len(decoder_filters) != len(encoder_filters):
        raise ConfigError("fcn_autoencoder: decoder_filters needs one width per encoder level.")
    _check_multiple(input_shape, fcn_size_multiple(encoder_filters), "fcn_autoencoder")
    image = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="preprocess")(image)

    def block(x, filters, kernel, stride, label, transpose=False):
        conv = layers.Conv2DTranspose if transpose else layers.Conv2D
        x = conv(filters, kernel, strides=stride, padding="same", use_bias=bool(conv_bias) or not batch_norm,
                 kernel_initializer=kernel_initializer, name=f"{label}_conv")(x)
        if batch_norm:
            x = FusedBatchNormalization(momentum=bn_momentum, name=f"{label}_bn")(x)
        return layers.ReLU(name=f"{label}_relu")(x)

    for level, filters in enumerate(encoder_filters, start=1):
        x = block(x, filters, 3, 1, f"encoder{level}_1")
        x = block(x, filters, 3, 2, f"encoder{level}_2")
    for level, filters in enumerate(decoder_filters, start=1):
        x = block(x, filters, 4, 2, f"decoder{level}_up", transpose=True)
        x = block(x, filters, 3, 1, f"decoder{level}_conv")
    logits = layers.Conv2D(1, 1, kernel_initializer=kernel_initializer, dtype="float32", name="logits")(x)
    depth = ScaledSigmoid(max_depth, name="depth")(logits)
    return keras.Model(image, depth, name=name)


@register_model("fcn_autoencoder", (480, 640), "FCN encoder-decoder, ~0.5 M params, SSIM+MSE loss (reconstructed)",
                PAPER, size_multiple=fcn_size_multiple)
def fcn_autoencoder_model(input_shape=(None, None, 3), **options):
    return fcn_autoencoder(input_shape, **options)


fcn_autoencoder_model.options_from = fcn_autoencoder  # registry.check_options
