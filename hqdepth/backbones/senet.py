"""SENet-154 (Hu, Shen & Sun, CVPR 2018) as SARPN and MRPAN use it: five feature maps, H/2 to H/32.

The network is Cadene's `pretrainedmodels.senet154` (`SENet(SEBottleneck, [3, 8, 36, 3], groups=64,
reduction=16)`), the model and ImageNet weights that SARPN's code (`Xt-Chen/SARPN`, `models/senet.py`)
builds and MRPAN names as its backbone:

- layer0: 3x3/2 conv 3 -> 64, 3x3 conv 64 -> 64, 3x3 conv 64 -> 128 (each BN + ReLU), then a 3x3/2 max
  pool with `ceil_mode=True`;
- layer1-4: [3, 8, 36, 3] SE bottlenecks of width `planes` = 64, 128, 256, 512: 1x1 conv to 2 planes,
  3x3 conv with 64 groups to 4 planes (carrying the stage's stride), 1x1 conv to 4 planes (each BN, the
  first two + ReLU), squeeze-and-excitation (global average, 1x1 conv to 4 planes / 16 + ReLU, 1x1 conv
  back + sigmoid, scaling the channels), plus the shortcut, ReLU. The first bottleneck of a stage
  projects the shortcut: 1x1 conv in layer1, 3x3/2 conv with padding 1 in layers 2-4 (SENet-154's
  `downsample_kernel_size=3`), + BN;
- taps (SARPN's `E_senet`): layer0 before its pool (H/2, 128 channels), then the outputs of layer1-4
  (H/4 .. H/32, 256 .. 2048 channels).

PyTorch padding is kept exactly: every stride-2 conv pads 1 pixel on every side (`ZeroPadding2D` +
VALID; Keras "same" would pad 0 before / 1 after on even sizes), and the ceil-mode pool pads one zero
row and column at the bottom and right (the pool follows a ReLU, so a zero never exceeds the window's
maximum, and PyTorch's last, partial window is this one). Batch norm: epsilon 1e-5, as PyTorch.
Input RGB in [0, 255], normalised as Cadene's weights expect (`preprocess="torch"`: / 255, ImageNet
mean and std).

Layer names follow the PyTorch module names (`layer2_0_conv2` is `layer2.0.conv2`), so that
`hqdepth.weights.torch.convert_senet154` maps a state dict one to one. The 64-group convolutions are
`hqdepth.layers.GroupedConv2D`: TensorFlow's own grouped kernels (oneDNN, cuDNN) where a probe finds them,
instead of the XLA compilation Keras' TensorFlow backend gives every grouped convolution (its CPU backward pass
made MRPAN's training step 150 s instead of seconds).
"""

import keras
from keras import layers

from hqdepth.errors import ConfigError, HQDepthError
from hqdepth.layers.conv import conv2d
from hqdepth.layers.normalization import FusedBatchNormalization
from hqdepth.layers.preprocessing import ImageNormalization

BLOCKS = (3, 8, 36, 3)
PLANES = (64, 128, 256, 512)
GROUPS = 64
REDUCTION = 16
PREPROCESS_CHOICES = ("torch", "none")
# A `.weights.h5` file loads by position, not by layer name: the converter records the layout it was written for
# (`layout_fingerprint`) so that a file converted before a change to this builder is refused, never loaded into
# the wrong layers.
LAYOUT_ATTRIBUTE = "hqdepth_senet_layout"


def layout_fingerprint(model):
    """A short hash of `model`'s weights in order (path and shape): equal for two models exactly when a weights
    file of one loads position by position into the same layers of the other."""
    import hashlib

    text = "\n".join(f"{weight.path}:{tuple(weight.shape)}" for weight in model.weights)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _load_converted(model, weights):
    """Load a file written by `hqdepth.weights.torch.convert_senet154`, refusing one written for another layout."""
    import h5py

    how = "convert it again with `hqdepth weights convert --from cadene-senet154 SRC OUT.weights.h5`"
    try:
        with h5py.File(str(weights), "r") as f:
            recorded = f.attrs.get(LAYOUT_ATTRIBUTE)
        current = layout_fingerprint(model)
        if recorded is not None and str(recorded) != current:
            raise HQDepthError(f"{weights} was converted for another layout of this SENet (fingerprint {recorded}, "
                               f"this build {current}): {how} (a cached conversion in "
                               "~/.keras/models/hqdepth/: delete it and it is converted again on next use).")
        model.load_weights(str(weights))
    except FileNotFoundError as error:
        raise HQDepthError(f"SENet-154 weights file not found: {weights}") from error
    except (OSError, ValueError) as error:
        raise HQDepthError(f"Could not load {weights} into SENet-154 ({error}); {how}.") from error


def _bn(name, settings):
    return FusedBatchNormalization(momentum=settings["momentum"], epsilon=1e-5, name=name)


def _conv(x, filters, kernel, name, stride=1, groups=1, use_bias=False):
    """A PyTorch `Conv2d` with padding (kernel - 1) / 2: "same" at stride 1, explicit 1-pixel padding at stride 2."""
    if stride > 1:
        x = layers.ZeroPadding2D((kernel - 1) // 2, name=f"{name}_pad")(x)
    padding = "same" if stride == 1 else "valid"
    return conv2d(filters, kernel, strides=stride, padding=padding, groups=groups, use_bias=use_bias,
                  kernel_initializer="he_normal", name=name)(x)


def _conv_bn(x, filters, kernel, name, settings, stride=1, groups=1, relu=True):
    """conv `{prefix}conv{k}` + BN `{prefix}bn{k}` (+ ReLU): PyTorch's module names with "_" for "."."""
    x = _conv(x, filters, kernel, name, stride, groups)
    x = _bn(name.replace("conv", "bn"), settings)(x)
    return layers.ReLU(name=name.replace("conv", "relu"))(x) if relu else x


def _squeeze_excite(x, reduction, name):
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(x)
    s = layers.Conv2D(channels // reduction, 1, name=f"{name}_se_module_fc1")(s)
    s = layers.ReLU(name=f"{name}_se_relu")(s)
    s = layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_se_module_fc2")(s)
    return layers.Multiply(name=f"{name}_se_scale")([x, s])


def _bottleneck(x, planes, name, stride, downsample_kernel, settings):
    """Cadene's `SEBottleneck`; `downsample_kernel` None: identity shortcut."""
    y = _conv_bn(x, planes * 2, 1, f"{name}_conv1", settings)
    y = _conv_bn(y, planes * 4, 3, f"{name}_conv2", settings, stride=stride, groups=settings["groups"])
    y = _conv_bn(y, planes * 4, 1, f"{name}_conv3", settings, relu=False)
    y = _squeeze_excite(y, settings["reduction"], name)
    shortcut = x
    if downsample_kernel:
        shortcut = _conv(x, planes * 4, downsample_kernel, f"{name}_downsample_0", stride)
        shortcut = _bn(f"{name}_downsample_1", settings)(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def senet154(input_shape=(None, None, 3), weights=None, preprocess="torch", bn_momentum=0.9, blocks=BLOCKS,
             planes=PLANES, groups=GROUPS, reduction=REDUCTION, stem_width=64, name="senet154"):
    """SENet-154 feature extractor: RGB in [0, 255] -> [H/2 (128 ch), H/4 (256), H/8 (512), H/16 (1024), H/32 (2048)].

    Args:
        weights: None (He-normal initialisation) or a `.weights.h5` file written by
            `hqdepth.weights.torch.convert_senet154` (Cadene's ImageNet weights: `backbone_weights=cadene-senet154`
            fetches and converts them).
        preprocess: "torch" (RGB / 255, ImageNet mean and std: what Cadene's weights expect) or "none".
        bn_momentum: moving-average momentum (PyTorch's default 0.1 = Keras 0.9).
        blocks, planes, groups, reduction, stem_width: the architecture (SENet-154: (3, 8, 36, 3), (64, 128, 256,
            512), 64, 16, 64); other values build smaller networks of the same design, for tests. Stage s outputs
            4 * planes[s] channels, layer0 2 * stem_width.
    """
    if preprocess not in PREPROCESS_CHOICES:
        raise ConfigError(f"senet154: preprocess must be one of {PREPROCESS_CHOICES}, got {preprocess!r}.")
    if len(blocks) != 4 or min(blocks) < 1 or len(planes) != 4:
        raise ConfigError(f"senet154: blocks and planes need four entries (layer1-4), got {tuple(blocks)}, "
                          f"{tuple(planes)}.")
    settings = {"momentum": bn_momentum, "groups": groups, "reduction": reduction}
    image = keras.Input(shape=input_shape, name="image")
    x = ImageNormalization(preprocess, name="preprocess")(image)
    x = _conv_bn(x, stem_width, 3, "layer0_conv1", settings, stride=2)
    x = _conv_bn(x, stem_width, 3, "layer0_conv2", settings)
    stem = _conv_bn(x, 2 * stem_width, 3, "layer0_conv3", settings)
    x = layers.ZeroPadding2D(((0, 1), (0, 1)), name="layer0_pool_pad")(stem)  # ceil_mode=True, see the docstring
    x = layers.MaxPooling2D(3, strides=2, name="layer0_pool")(x)
    taps = [stem]
    for stage, (width, count) in enumerate(zip(planes, blocks), start=1):
        stride = 1 if stage == 1 else 2
        for unit in range(count):
            first = unit == 0
            projected = first and (stage > 1 or x.shape[-1] != 4 * width)  # Cadene's `_make_layer` condition
            downsample = (1 if stage == 1 else 3) if projected else None
            x = _bottleneck(x, width, f"layer{stage}_{unit}", stride if first else 1, downsample, settings)
        taps.append(x)
    model = keras.Model(image, taps, name=name)
    if weights is not None:
        _load_converted(model, weights)
    return model
