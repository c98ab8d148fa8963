"""ResNet-50 v1/v1.5/v2 with output stride 32/16/8, layer names identical to `keras.applications`.

`keras.applications.ResNet50V2`/`ResNet50` have no atrous option, so the network is rebuilt here with
the same layer names (their weight files load by name) and the HQMD code's output-stride logic
(TF-slim `stack_blocks_dense`): once the running stride reaches `output_stride`, later units run at
stride 1 and their 3x3 convs are dilated by the stride they lost; the last stage (`conv5`, slim
`block4`) multiplies its rates by `multi_grid`. At output stride 16 that gives conv5 rates 2, 4, 8.

Versions:
- "v2": pre-activation, `keras.applications.ResNet50V2` (HQMD, TF-slim `resnet_v2_50`).
- "v1": `keras.applications.ResNet50` (Caffe/Keras ResNet: a stage's stride sits on the first
  unit's 1x1 conv).
- "v1.5": torchvision's `resnet50` (BTS, SARPN/MRPAN, seed 004): the same layers and variable
  shapes as "v1" under the same names, but the stride sits on the first unit's 3x3 conv, and that
  strided conv pads the PyTorch way (1 pixel on every side, `ZeroPadding2D` + VALID, layer
  `{unit}_2_pad`) instead of Keras "same" (which pads 0 before / 1 after for stride 2 on an even
  size). The stem is torchvision's too: 7x7/2 conv with padding 3, then 3x3/2 max pool with padding
  1 (torchvision pads with -inf; after the ReLU zero padding gives the same maximum, so
  `pool_padding="zero"` is exact and is v1.5's default). Keras' ImageNet weights do not apply (they
  mean a v1 network): use torchvision weights converted by
  `hqdepth.weights.torch.convert_torchvision_resnet50`. The conv biases of the Keras layout are kept
  (torchvision's convs have none: converted files set them to zero); every one of them feeds a batch
  norm, so in training mode they receive no gradient.
"""

import os
import warnings


import keras
from keras import layers

from hqdepth.errors import ConfigError, HQDepthError
from hqdepth.layers.conv import conv2d
from hqdepth.layers.normalization import FusedBatchNormalization
from hqdepth.layers.preprocessing import ImageNormalization

# (stage name, bottleneck width, units, nominal stride of the stage's strided unit)
STAGES = (("conv2", 64, 3, 2), ("conv3", 128, 4, 2), ("conv4", 256, 6, 2), ("conv5", 512, 3, 1))
STAGES_V1 = (("conv2", 64, 3, 1), ("conv3", 128, 4, 2), ("conv4", 256, 6, 2), ("conv5", 512, 3, 2))

VERSIONS = ("v2", "v1", "v1.5")
KERAS_PREPROCESSING = {"v2": "inception", "v1": "caffe", "v1.5": "torch"}
PREPROCESS_CHOICES = ("mean_subtract", "keras", "inception", "caffe", "torch", "none")
FREEZE_CHOICES = ("none", "stem_block1")
POOL_PADDING_CHOICES = ("same", "zero")

# The keras.applications models whose weight files this backbone reads (v1.5: same variables as v1).
KERAS_APPLICATION = {"v2": "ResNet50V2", "v1": "ResNet50", "v1.5": "ResNet50"}
# Root attribute of a weights file written by a converter: the version whose weights it holds.
VERSION_ATTRIBUTE = "hqdepth_resnet_version"
IMAGENET_FILES = {
    "v2": "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "v1": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
}
IMAGENET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"

# End points by role, for the models that tap the backbone.
FEATURES = {
    "v2": {"stride2": "conv1_conv", "stride4_low_level": "conv2_block3_1_relu", "stride4": "conv2_block3_1_relu",
           "final": "post_relu"},
    "v1": {"stride2": "conv1_relu", "stride4_low_level": "conv2_block3_out", "stride4": "conv2_block3_out",
           "final": "conv5_block3_out"},
}
FEATURES["v1.5"] = FEATURES["v1"]


def unit_schedule(version, output_stride, multi_grid):
    """[(stage, width, unit index, stride, rate)] for every bottleneck unit, slim-style.

    v2 strides in the 3x3 conv of a stage's last unit, v1 (keras/caffe) in the first unit's 1x1 conv,
    v1.5 (torchvision) in the first unit's 3x3 conv. When a stride is removed, the conv that carried it
    keeps the old rate and later convs double it in v2 and v1.5 (slim's `stack_blocks_dense`; torchvision's
    `replace_stride_with_dilation` gives a stage's first block `previous_dilation`); in v1 the stride sits
    before the 3x3 conv, so that unit's own 3x3 conv already runs at the doubled rate.
    output_stride=32 is the nominal network (slim's `output_stride=None`): no atrous conv, no multi-grid.
    """
    if version not in VERSIONS:
        raise ConfigError(f"version must be one of {VERSIONS}, got {version!r}.")
    if output_stride not in (8, 16, 32):
        raise ConfigError(f"output_stride must be 8, 16 or 32, got {output_stride!r}.")
    if len(multi_grid) != 3:
        raise ConfigError(f"multi_grid needs one rate per conv5 unit (3 values), got {multi_grid!r}.")
    stages = STAGES if version == "v2" else STAGES_V1
    current_stride, rate, schedule = 4, 1, []
    for stage, width, units, stage_stride in stages:
        for unit in range(1, units + 1):
            strided_unit = unit == (units if version == "v2" else 1)
            stride = stage_stride if strided_unit else 1
            if output_stride < 32 and current_stride == output_stride:
                if version == "v1":
                    rate *= stride
                unit_rate = rate * multi_grid[unit - 1] if stage == "conv5" else rate
                schedule.append((stage, width, unit, 1, unit_rate))
                if version != "v1":
                    rate *= stride
            else:
                schedule.append((stage, width, unit, stride, 1))
                current_stride *= stride
    return schedule


def _conv(filters, kernel_size, name, stride=1, rate=1, use_bias=True, padding="valid", settings=None,
          trainable=True):
    regularizer = keras.regularizers.L2(settings["weight_decay"]) if settings["weight_decay"] else None
    return conv2d(filters, kernel_size, strides=stride, dilation_rate=rate, padding=padding,
                  use_bias=use_bias, kernel_initializer="he_normal", kernel_regularizer=regularizer,
                  trainable=trainable, name=name)


def _bn(name, settings):
    return FusedBatchNormalization(momentum=settings["bn_momentum"], epsilon=settings["bn_epsilon"], name=name,
                                   unbiased_moving_variance=settings.get("bn_unbiased_moving_variance", False))


def _unit_v2(x, width, name, stride, rate, first, settings, trainable):
    preact = _bn(f"{name}_preact_bn", settings)(x)
    preact = layers.ReLU(name=f"{name}_preact_relu")(preact)
    if first:
        shortcut = _conv(4 * width, 1, f"{name}_0_conv", stride, settings=settings, trainable=trainable)(preact)
    elif stride > 1:
        shortcut = layers.MaxPooling2D(1, strides=stride, name=f"{name}_0_pool")(x)
    else:
        shortcut = x
    y = _conv(width, 1, f"{name}_1_conv", use_bias=False, settings=settings, trainable=trainable)(preact)
    y = _bn(f"{name}_1_bn", settings)(y)
    y = layers.ReLU(name=f"{name}_1_relu")(y)
    y = layers.ZeroPadding2D(rate, name=f"{name}_2_pad")(y)
    y = _conv(width, 3, f"{name}_2_conv", stride, rate, use_bias=False, settings=settings, trainable=trainable)(y)
    y = _bn(f"{name}_2_bn", settings)(y)
    y = layers.ReLU(name=f"{name}_2_relu")(y)
    y = _conv(4 * width, 1, f"{name}_3_conv", settings=settings, trainable=trainable)(y)
    return layers.Add(name=f"{name}_out")([shortcut, y])


def _unit_v1(x, width, name, stride, rate, first, settings, trainable, stride_on_3x3=False):
    """Keras/Caffe bottleneck (stride on the 1x1 conv) or, with `stride_on_3x3`, torchvision's (v1.5)."""
    if first:
        shortcut = _conv(4 * width, 1, f"{name}_0_conv", stride, settings=settings, trainable=trainable)(x)
        shortcut = _bn(f"{name}_0_bn", settings)(shortcut)
    else:
        shortcut = x
    y = _conv(width, 1, f"{name}_1_conv", 1 if stride_on_3x3 else stride, settings=settings, trainable=trainable)(x)
    y = _bn(f"{name}_1_bn", settings)(y)
    y = layers.ReLU(name=f"{name}_1_relu")(y)
    if stride_on_3x3 and stride > 1:  # PyTorch padding=dilation on both sides ("same" pads 0/1 at stride 2)
        y = layers.ZeroPadding2D(rate, name=f"{name}_2_pad")(y)
        y = _conv(width, 3, f"{name}_2_conv", stride, rate, settings=settings, trainable=trainable)(y)
    else:  # stride 1: "same" pads `rate` on both sides, as PyTorch
        y = _conv(width, 3, f"{name}_2_conv", rate=rate, padding="same", settings=settings, trainable=trainable)(y)
    y = _bn(f"{name}_2_bn", settings)(y)
    y = layers.ReLU(name=f"{name}_2_relu")(y)
    y = _conv(4 * width, 1, f"{name}_3_conv", settings=settings, trainable=trainable)(y)
    y = _bn(f"{name}_3_bn", settings)(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def resnet50(version="v2", output_stride=32, multi_grid=(1, 2, 4), weights=None, freeze="none",
             preprocess="mean_subtract", pool_padding=None, bn_momentum=0.9997, bn_epsilon=1e-5,
             weight_decay=5e-5, input_shape=(None, None, 3), name=None, bn_unbiased_moving_variance=False):
    """ResNet-50 feature extractor: RGB in [0, 255] -> final features at `output_stride`.

    Args:
        version: "v2" (pre-activation, `keras.applications.ResNet50V2`, HQMD), "v1" (`ResNet50`:
            stride on the 1x1 conv) or "v1.5" (torchvision `resnet50`: stride on the 3x3 conv, PyTorch
            padding; see the module docstring).
        output_stride: 32 (plain), 16 (HQMD) or 8; strides beyond it become atrous convolution.
        multi_grid: rate multipliers of the three conv5 units when conv5 is atrous.
        weights: None (He-normal init), "imagenet" (Keras' official file, downloaded only now and
            only if not cached; v1 and v2 only) or a path to a Keras weights file (`.h5`,
            `.weights.h5`, `.keras`) of the matching `keras.applications` model, loaded by layer
            name. For v1.5 that is a file written by
            `hqdepth.weights.torch.convert_torchvision_resnet50` (`ResNet50` layout, torchvision values).
        freeze: "stem_block1" freezes the stem conv and every conv of the first stage (HQMD code;
            their batch norms stay trainable) or "none".
        preprocess: "mean_subtract" (HQMD: minus ImageNet RGB means), "keras" (what the version's
            pretrained weights expect: inception for v2, caffe for v1, torch for v1.5), "inception",
            "caffe", "torch" (torchvision: RGB / 255, minus mean (0.485, 0.456, 0.406), divided by
            std (0.229, 0.224, 0.225)) or "none".
        pool_padding: "same" (TF-slim / HQMD max-pool) or "zero" (`keras.applications` and
            torchvision: `ZeroPadding2D(1)` then VALID, which differs at borders and for even sizes).
            None (default): "zero" for v1.5, "same" otherwise.
        bn_momentum, bn_epsilon: HQMD 0.9997 / 1e-5 (keras.applications: 0.99 / 1.001e-5;
            torchvision: 0.9 / 1e-5).
        bn_unbiased_moving_variance: moving variance from the unbiased batch variance, as TF1's fused batch norm
            (HQMD) and PyTorch do (`FusedBatchNormalization`); False: Keras'.
        weight_decay: Keras L2 factor on conv kernels; 5e-5 equals slim's l2_regularizer(1e-4).
    """
    if version not in VERSIONS:
        raise ConfigError(f"version must be one of {VERSIONS}, got {version!r}.")
    check_imagenet_allowed(version, weights)
    if weights is not None and weights != "imagenet":
        _check_weights_version(str(weights), version)  # before building anything
    if preprocess not in PREPROCESS_CHOICES:
        raise ConfigError(f"preprocess must be one of {PREPROCESS_CHOICES}, got {preprocess!r}.")
    if pool_padding is None:
        pool_padding = "zero" if version == "v1.5" else "same"
    if freeze not in FREEZE_CHOICES:
        raise ConfigError(f"freeze must be one of {FREEZE_CHOICES}, got {freeze!r}.")
    if pool_padding not in POOL_PADDING_CHOICES:
        raise ConfigError(f"pool_padding must be one of {POOL_PADDING_CHOICES}, got {pool_padding!r}.")
    mode = KERAS_PREPROCESSING[version] if preprocess == "keras" else preprocess
    settings = {"bn_momentum": bn_momentum, "bn_epsilon": bn_epsilon, "weight_decay": weight_decay,
                "bn_unbiased_moving_variance": bn_unbiased_moving_variance}
    frozen = freeze == "stem_block1"

    inputs = keras.Input(shape=input_shape, name="image")
    x = ImageNormalization(mode, name="preprocess")(inputs)
    x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = _conv(64, 7, "conv1_conv", stride=2, settings=settings, trainable=not frozen)(x)
    if version != "v2":
        x = _bn("conv1_bn", settings)(x)
        x = layers.ReLU(name="conv1_relu")(x)
    if pool_padding == "zero":
        x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    else:
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_pool")(x)

    for stage, width, unit, stride, rate in unit_schedule(version, output_stride, tuple(multi_grid)):
        trainable = not (frozen and stage == "conv2")
        args = (x, width, f"{stage}_block{unit}", stride, rate, unit == 1, settings, trainable)
        x = _unit_v2(*args) if version == "v2" else _unit_v1(*args, stride_on_3x3=version == "v1.5")
    if version == "v2":
        x = _bn("post_bn", settings)(x)
        x = layers.ReLU(name="post_relu")(x)

    model = keras.Model(inputs, x, name=name or f"resnet50_{version.replace('.', '_')}_os{output_stride}")
    if weights is not None:
        _copy_keras_application_weights(model, version, weights)
    return model


def check_imagenet_allowed(version, weights):
    """Raise `ConfigError` for weights="imagenet" with version "v1.5" (Keras' file holds v1 weights)."""
    if version == "v1.5" and isinstance(weights, str) and weights == "imagenet":
        raise ConfigError(
            "weights='imagenet' are keras.applications ResNet50 weights, trained with the stride on the 1x1 conv "
            "(version 'v1'); the torchvision layout 'v1.5' needs torchvision's weights: convert a torchvision "
            "ResNet-50 state dict with `hqdepth weights convert` (hqdepth.weights.torch.convert_torchvision_resnet50) "
            "and pass the file it writes as weights=PATH (or use version 'v1' with 'imagenet').")


def weights_file_version(path):
    """The ResNet version a converter recorded in an HDF5 weights file (root attribute), or None."""
    path = str(path)
    if not path.endswith(".h5"):
        return None
    import h5py

    try:
        with h5py.File(path, "r") as f:
            value = f.attrs.get(VERSION_ATTRIBUTE)
    except OSError:
        return None  # missing or unreadable: the loader reports it
    return value.decode() if isinstance(value, bytes) else value


def _check_weights_version(path, version):
    """Refuse a file converted for another layout; warn when v1.5 gets a file without the v1.5 mark."""
    recorded = weights_file_version(path)
    if recorded is not None and recorded != version:
        raise HQDepthError(f"{path} holds ResNet-50 {recorded} weights (attribute {VERSION_ATTRIBUTE}); "
                           f"this backbone is version {version!r}: build it with version={recorded!r}.")
    if recorded is None and version == "v1.5" and path.endswith(".h5") and os.path.isfile(path):
        warnings.warn(f"{path} does not say it holds torchvision (v1.5) weights; keras.applications ResNet50 files "
                      "hold v1 weights, which mean something else in the v1.5 layout.", stacklevel=3)


def _reference_model(version, weights):
    """The keras.applications model that `weights` belongs to, with those weights loaded."""
    application = getattr(keras.applications, KERAS_APPLICATION[version])
    if weights == "imagenet":
        try:
            return application(include_top=False, weights="imagenet", input_shape=(None, None, 3))
        except Exception as error:  # no network, proxy, bad cache
            raise HQDepthError(
                f"Could not get the ImageNet weights of keras.applications.{KERAS_APPLICATION[version]} "
                f"({error.__class__.__name__}: {error}). Download {IMAGENET_URL}{IMAGENET_FILES[version]} "
                "on a machine with network access and pass its local path as weights=PATH."
            ) from error
    reference = application(include_top=False, weights=None, input_shape=(None, None, 3))
    path = str(weights)
    try:
        if path.endswith(".keras"):
            return keras.saving.load_model(path, compile=False)
        if path.endswith(".h5") and not path.endswith(".weights.h5"):
            _check_legacy_h5_covers(path, reference)
            reference.load_weights(path, by_name=True)
        else:
            reference.load_weights(path)
    except FileNotFoundError as error:
        raise HQDepthError(f"Backbone weights file not found: {path}") from error
    except (OSError, ValueError) as error:
        raise HQDepthError(
            f"Could not load {path} as weights of keras.applications.{KERAS_APPLICATION[version]}: {error}"
        ) from error
    return reference


def _check_legacy_h5_covers(path, reference):
    """Loading a legacy .h5 by name skips layers it lacks silently: refuse such a file instead."""
    import h5py

    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        names = {n.decode() if isinstance(n, bytes) else n for n in group.attrs.get("layer_names", [])}
    missing = [layer.name for layer in reference.layers if layer.weights and layer.name not in names]
    if missing:
        raise HQDepthError(f"{path} has no weights for {len(missing)} ResNet-50 layers, e.g. {missing[:3]}.")


def load_keras_application_weights(model, version, weights):
    """Copy the weights of a `keras.applications` ResNet-50 (file or "imagenet") into `model` by name.

    `version` picks the `keras.applications` layout ("v1.5" reads the `ResNet50` layout, as written by
    `hqdepth.weights.torch.convert_torchvision_resnet50`); "imagenet" is refused for "v1.5".
    """
    check_imagenet_allowed(version, weights)
    if weights != "imagenet":
        _check_weights_version(str(weights), version)
    _copy_keras_application_weights(model, version, weights)


def _copy_keras_application_weights(model, version, weights):
    reference = _reference_model(version, weights)
    source = {layer.name: layer for layer in reference.layers if layer.weights}
    missing = []
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in source:
            missing.append(layer.name)
            continue
        values = source[layer.name].get_weights()
        expected = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != expected:
            raise HQDepthError(f"Layer {layer.name}: weights {[v.shape for v in values]} in {weights}, "
                               f"model expects {expected}.")
        layer.set_weights(values)
    if missing:
        raise HQDepthError(f"{weights} has no weights for {len(missing)} backbone layers, e.g. {missing[:3]}.")


def classic_resnet50(family, version, weights=None, preprocess=None, bn_momentum=0.99, input_shape=(None, None, 3),
                     name=None):
    """The plain (output stride 32) ResNet-50 that BTS, MRPAN/SARPN and seed 004 tap: "v1.5" (torchvision's
    layout, the papers' code) or "v1" (keras.applications), each with the preprocessing and BN epsilon its
    weights expect (torch / 1e-5, keras caffe / 1.001e-5) unless `preprocess` is given. `family` names the
    model in errors."""
    if version not in ("v1", "v1.5"):
        raise ConfigError(f"{family}: backbone_version must be 'v1.5' (torchvision) or 'v1' (keras.applications), "
                          f"got {version!r}.")
    torchvision = version == "v1.5"
    return resnet50(version=version, output_stride=32, weights=weights,
                    preprocess=preprocess or ("torch" if torchvision else "keras"), pool_padding="zero",
                    bn_momentum=bn_momentum, bn_epsilon=1e-5 if torchvision else 1.001e-5, weight_decay=0.0,
                    input_shape=input_shape, name=name)
