"""TF-slim and HQMDE checkpoints -> Keras files of this package.

Two converters:

- `convert_slim_resnet_v2_50(src, out)`: TF-slim's ImageNet `resnet_v2_50` checkpoint
  (`resnet_v2_50_2017_04_14.tar.gz` from tensorflow/models research/slim, the file HQMDE's `train.py`
  restores) -> a `.weights.h5` file of `keras.applications.ResNet50V2` (include_top=False), which
  `hqdepth.backbones.resnet50(version="v2", weights=out)` and every model's
  `backbone_weights=out` option load by layer name.
- `convert_hqmde(src, out)`: the trained whole-network checkpoint of HQMDE (HalleyJiang/HQMDE, TF1)
  -> a `.keras` file of `hqmd_baseline_plus` (or `hqmd_baseline`, detected from the checkpoint).

Variable names (TF-slim `nets/resnet_v2.py`, `nets/resnet_utils.py` as shipped in HQMDE, and HQMDE
`network.py`). A `slim.conv2d` followed by batch norm has `weights` and `<scope>/BatchNorm/{beta,
gamma, moving_mean, moving_variance}` (no biases; `scale=True` in `resnet_arg_scope`, so gamma
exists); a conv without normaliser has `weights` and `biases`. Kernels are HWIO in both frameworks,
so values are copied unchanged.

| Keras layer | slim variable scope (`resnet_v2_50/...`) |
|---|---|
| `conv1_conv` | `conv1` (7x7/2, weights + biases, no BN) |
| `conv{b+1}_block{u}_preact_bn` | `block{b}/unit_{u}/bottleneck_v2/preact` |
| `conv{b+1}_block1_0_conv` | `block{b}/unit_1/bottleneck_v2/shortcut` (weights + biases; only where the depth changes) |
| `conv{b+1}_block{u}_1_conv` / `_1_bn` | `.../conv1` / `.../conv1/BatchNorm` |
| `conv{b+1}_block{u}_2_conv` / `_2_bn` | `.../conv2` / `.../conv2/BatchNorm` |
| `conv{b+1}_block{u}_3_conv` | `.../conv3` (weights + biases) |
| `post_bn` | `postnorm` |

HQMDE head (`MDR_Net/...`): `ASPP_layer/image_level_conv_1x1` -> `image_pooling`,
`ASPP_layer/conv_1x1_0_0` -> `aspp0`, `ASPP_layer/conv_3x3_{1,2,3}_0` -> `aspp1..3` (rates
`aspp_rates`), `ASPP_layer/conv_1x1_output` -> `concat_projection` (all inside the layer `aspp`);
`decoder/lower_level_features/conv_1x1` -> `decoder_low_level`;
`decoder/upsampling_logits_1/decoder_conv1/decoder_conv1_{1,2}` (`slim.repeat`) -> `decoder_conv1`,
`decoder_conv2`; baseline+: `decoder/upsampling_logits_2/decoder_conv2` (3x3 -> 16) ->
`decoder_conv3`; `decoder/upsampling_logits_2/conv_logits` (weights + biases) -> `logits`.

Skipped (listed in the report, never an error): `global_step`, everything under HQMDE's
`optimizer_vars/` scope (step counter, Adam's beta powers), optimizer slots (`.../Adam`,
`.../Adam_1`, `.../Momentum`, `.../RMSProp*`), moving-average shadows
(`.../ExponentialMovingAverage`) and, for the backbone, slim's ImageNet classifier
`resnet_v2_50/logits`. Anything else that the network does not use is an error.

Not in the checkpoint: output stride, multi-grid, ASPP rates and batch-norm epsilon come from HQMDE's
`args<pid>.json` beside the checkpoint (train.py writes it, test_nyu_depth_v2.py reads it), else from
train.py's defaults (16, (1, 2, 4), (4, 8, 12), 1e-5); `max_depth` (10) and the input size (289x385, the
size `test_nyu_depth_v2.py` resizes every test image to; the evaluator reads it from the model) are
options of `convert_hqmde`.
"""

import os
import re
from pathlib import Path

from hqdepth.errors import ConfigError
from hqdepth.weights import ConversionReport, WeightsFileError

SLIM_SCOPE = "resnet_v2_50"
HQMDE_SCOPE = "MDR_Net"
# Keras BatchNormalization weight order.
BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")
# (bottleneck width, units) of slim's block1..block4 = Keras conv2..conv5.
BLOCKS = ((64, 3), (128, 4), (256, 6), (512, 3))
HQMDE_INPUT_SIZE = (289, 385)
HQMDE_VARIANTS = ("auto", "baseline_plus", "baseline")
# Root attribute read by hqdepth.backbones.resnet (weights_file_version) to tell ResNet layouts apart.
VERSION_ATTRIBUTE = "hqdepth_resnet_version"

_OPTIMIZER_SLOTS = {"Adam", "Adam_1", "Momentum", "RMSProp", "RMSProp_1", "Adagrad", "Ftrl", "Ftrl_1"}
_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


# ---------------------------------------------------------------------------------------------- names


def _bn(prefix, channels):
    return [(f"{prefix}/{name}", (channels,)) for name in BN_VARIABLES]


def _conv_bn(layer, prefix, kernel_shape):
    """A slim conv2d with batch norm: no biases, `BatchNorm` under the conv's scope."""
    return {f"{layer}_conv": [(f"{prefix}/weights", tuple(kernel_shape))],
            f"{layer}_bn": _bn(f"{prefix}/BatchNorm", kernel_shape[-1])}


def _conv_bias(prefix, kernel_shape):
    """A slim conv2d without normaliser: weights and biases."""
    return [(f"{prefix}/weights", tuple(kernel_shape)), (f"{prefix}/biases", (kernel_shape[-1],))]


def resnet_v2_50_variables(scope=SLIM_SCOPE):
    """TF-slim `resnet_v2_50` variables by Keras `ResNet50V2` layer.

    Returns {Keras layer name: [(checkpoint variable name, shape), ...]} with the variables in the
    order of the Keras layer's weights (conv: kernel, bias; batch norm: gamma, beta, moving mean,
    moving variance). `scope` is the checkpoint's top scope (slim: "resnet_v2_50").
    """
    layers = {"conv1_conv": _conv_bias(f"{scope}/conv1", (7, 7, 3, 64))}
    depth_in = 64
    for block, (width, units) in enumerate(BLOCKS, start=1):
        depth = 4 * width
        for unit in range(1, units + 1):
            prefix = f"{scope}/block{block}/unit_{unit}/bottleneck_v2"
            name = f"conv{block + 1}_block{unit}"
            layers[f"{name}_preact_bn"] = _bn(f"{prefix}/preact", depth_in)
            if depth != depth_in:  # slim: a 1x1 conv shortcut only where the depth changes
                layers[f"{name}_0_conv"] = _conv_bias(f"{prefix}/shortcut", (1, 1, depth_in, depth))
            layers.update(_conv_bn(f"{name}_1", f"{prefix}/conv1", (1, 1, depth_in, width)))
            layers.update(_conv_bn(f"{name}_2", f"{prefix}/conv2", (3, 3, width, width)))
            layers[f"{name}_3_conv"] = _conv_bias(f"{prefix}/conv3", (1, 1, width, depth))
            depth_in = depth
    layers["post_bn"] = _bn(f"{scope}/postnorm", depth_in)
    return layers


def hqmde_head_variables(decode_at_image_size=True, scope=HQMDE_SCOPE):
    """HQMDE `network.py` ASPP and decoder variables by layer of `hqdepth.models.deeplab.hqmd_deeplab`.

    Same format as `resnet_v2_50_variables`. `decode_at_image_size=True` is baseline+ (HQMDE's
    `--decoding_at_image_size`), False the plain baseline.
    """
    aspp, decoder = f"{scope}/ASPP_layer", f"{scope}/decoder"
    layers = {}
    layers.update(_conv_bn("image_pooling", f"{aspp}/image_level_conv_1x1", (1, 1, 2048, 256)))
    layers.update(_conv_bn("aspp0", f"{aspp}/conv_1x1_0_0", (1, 1, 2048, 256)))
    for i in (1, 2, 3):
        layers.update(_conv_bn(f"aspp{i}", f"{aspp}/conv_3x3_{i}_0", (3, 3, 2048, 256)))
    layers.update(_conv_bn("concat_projection", f"{aspp}/conv_1x1_output", (1, 1, 5 * 256, 256)))
    layers.update(_conv_bn("decoder_low_level", f"{decoder}/lower_level_features/conv_1x1", (1, 1, 64, 48)))
    repeat = f"{decoder}/upsampling_logits_1/decoder_conv1/decoder_conv1"
    layers.update(_conv_bn("decoder_conv1", f"{repeat}_1", (3, 3, 256 + 48, 256)))
    layers.update(_conv_bn("decoder_conv2", f"{repeat}_2", (3, 3, 256, 256)))
    logits_in = 256
    if decode_at_image_size:
        layers.update(_conv_bn("decoder_conv3", f"{decoder}/upsampling_logits_2/decoder_conv2", (3, 3, 256, 16)))
        logits_in = 16
    layers["logits"] = _conv_bias(f"{decoder}/upsampling_logits_2/conv_logits", (1, 1, logits_in, 1))
    return layers


def unused_reason(name, classifier_scope=None):
    """Why checkpoint variable `name` is not a network weight (a short phrase), or None if it should be one."""
    parts = name.split("/")
    if parts[-1] == "global_step":
        return "training step counter"
    if parts[0] == "optimizer_vars":
        return "HQMDE optimizer_vars scope: step counter and Adam state"
    if parts[-1] in _OPTIMIZER_SLOTS or parts[-1] in ("beta1_power", "beta2_power"):
        return "optimizer state"
    if parts[-1] == "ExponentialMovingAverage":
        return "moving averages of the weights"
    if classifier_scope and name.startswith(classifier_scope + "/"):
        return "ImageNet classifier, not part of the backbone"
    return None


# ---------------------------------------------------------------------------------------------- reading


def _checkpoint_prefix(path):
    """The checkpoint prefix for a path a user may give: the prefix, its .index/.data/.meta file, a folder."""
    text = str(path)
    folder = Path(text)
    if folder.is_dir() and not (folder / "checkpoint").is_file():  # no TF "checkpoint" state file: one checkpoint?
        found = sorted({str(p)[:-len(".index")] for p in folder.glob("*.index")}
                       | {str(p) for p in folder.glob("*.ckpt")})
        if len(found) == 1:
            return found[0]
        raise WeightsFileError(f"{text}: " + ("no TensorFlow checkpoint in this folder" if not found else
                               f"several checkpoints ({_listing([Path(f).name for f in found])}); give one prefix"))
    stripped = re.sub(r"(\.index|\.meta|\.data-\d+-of-\d+)$", "", text)
    if Path(stripped).exists() or Path(stripped + ".index").exists():
        return stripped
    if Path(text).exists():
        return text
    raise WeightsFileError(f"checkpoint not found: {text} (give the checkpoint prefix, e.g. "
                           "resnet_v2_50.ckpt or model.ckpt-300000, its .index file, or the folder holding it; "
                           "docs/reproducing.md says where each published checkpoint is)")


def read_checkpoint(path):
    """Open a TensorFlow checkpoint (TF1 V1 or V2 format, or TF2). Returns (reader, {name: shape tuple}).

    Raises `WeightsFileError` naming the file when it is missing or not a checkpoint.
    """
    prefix = _checkpoint_prefix(path)
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = {name: tuple(shape) for name, shape in reader.get_variable_to_shape_map().items()}
    except (tf.errors.OpError, ValueError, OSError) as error:
        message = getattr(error, "message", None) or str(error)
        raise WeightsFileError(f"cannot read {path} as a TensorFlow checkpoint: "
                               f"{message.strip().splitlines()[0]}") from None
    return reader, shapes


def _listing(names, limit=6):
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def check_variables(path, shapes, expected, what, classifier_scope=None):
    """Compare a checkpoint's variables with `expected` ({layer: [(name, shape)]}) both ways.

    Returns {reason: [names]} of the variables skipped as not being network weights. Raises
    `WeightsFileError` naming `path` and the variables that are missing, left over or mis-shaped.
    """
    wanted = {name: shape for entries in expected.values() for name, shape in entries}
    missing = sorted(name for name in wanted if name not in shapes)
    misshaped = [f"{name} {list(shapes[name])} (expected {list(wanted[name])})"
                 for name in sorted(wanted) if name in shapes and shapes[name] != wanted[name]]
    skipped, extra = {}, []
    for name in sorted(shapes):
        if name in wanted:
            continue
        reason = unused_reason(name, classifier_scope)
        if reason:
            skipped.setdefault(reason, []).append(name)
        else:
            extra.append(name)
    problems = []
    if missing:
        problems.append(f"{len(missing)} variable(s) missing: {_listing(missing)}")
    if extra:
        problems.append(f"{len(extra)} variable(s) the network does not use: {_listing(extra)}")
    if misshaped:
        problems.append(f"{len(misshaped)} variable(s) with another shape: {_listing(misshaped, 4)}")
    if problems:
        hint = ""
        if len(missing) > len(wanted) // 2:
            scopes = sorted({name.split("/")[0] for name in shapes})
            hint = f" (its variables are under: {_listing(scopes)})"
        raise WeightsFileError(f"{path} is not a {what} checkpoint{hint}: " + "; ".join(problems) + ".")
    return skipped


def _value(reader, path, name):
    import numpy as np

    value = reader.get_tensor(name)
    dtype = str(getattr(value, "dtype", type(value)))
    if not any(dtype.startswith(t) for t in _FLOAT_DTYPES):
        raise WeightsFileError(f"{path}: variable {name} has dtype {dtype}, expected floating point.")
    value = np.asarray(value, dtype=np.float32)
    if not np.all(np.isfinite(value)):
        raise WeightsFileError(f"{path}: variable {name} holds non-finite values.")
    return value


# ---------------------------------------------------------------------------------------------- writing


def _weighted_layers(model):
    """{name: layer} for every layer holding weights, nested layers included (the ASPP's convs)."""
    found = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not layer.weights or list(layer._flatten_layers(include_self=False, recursive=False)):
            continue  # no weights, or a container whose variables belong to its sub-layers
        if layer.name in found:
            raise RuntimeError(f"two layers named {layer.name!r} in {model.name}")
        found[layer.name] = layer
    return found


def _assign(model, expected, reader, path):
    """Copy checkpoint values into `model` by layer; every weighted layer is covered and vice versa."""
    layers = _weighted_layers(model)
    if set(layers) != set(expected):
        raise RuntimeError(  # a programming error (the layer names changed), not a user's
            f"{model.name}: layers without a checkpoint mapping: {sorted(set(layers) - set(expected))[:5]}; "
            f"mapped names without a layer: {sorted(set(expected) - set(layers))[:5]}")
    tensors = values = 0
    for name, entries in expected.items():
        layer = layers[name]
        shapes = [tuple(w.shape) for w in layer.weights]
        if shapes != [shape for _, shape in entries]:
            raise RuntimeError(f"layer {name}: weights {shapes}, mapping expects {[s for _, s in entries]}")
        arrays = [_value(reader, path, variable) for variable, _ in entries]
        layer.set_weights(arrays)
        tensors += len(arrays)
        values += sum(a.size for a in arrays)
    return tensors, values


def _check_out(out, suffix):
    out = Path(out)
    if not out.name.endswith(suffix) or out.name == suffix:
        raise ConfigError(f"output file {out} must end with {suffix}")
    if out.is_dir():
        raise ConfigError(f"output {out} is a folder; give a file name ending with {suffix}")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _temporary(out, suffix):
    return out.with_name(f".{out.name[:-len(suffix)]}.tmp{os.getpid()}{suffix}")


def convert_slim_resnet_v2_50(src, out, scope=SLIM_SCOPE):
    """TF-slim `resnet_v2_50` checkpoint -> `keras.applications.ResNet50V2` weights file (`.weights.h5`).

    Args:
        src: the checkpoint (slim's `resnet_v2_50.ckpt`, any TF checkpoint prefix, its `.index`, or a folder).
        out: the file to write; must end with `.weights.h5`. Load it with
            `hqdepth.backbones.resnet50(version="v2", weights=out)` or a model option
            `backbone_weights=out` (e.g. `--set model.options.backbone_weights=out`).
        scope: the checkpoint's top scope ("resnet_v2_50"; a network built under another scope,
            e.g. a detector's feature extractor, can be read by naming it here).

    The backbone's batch-norm epsilon/momentum and the input preprocessing are properties of the model
    that loads the file, not of the file: slim trained this checkpoint with Inception preprocessing
    ([-1, 1]); HQMD uses it with mean subtraction (`preprocess="mean_subtract"`, the HQMD default).

    Returns a `ConversionReport`; the ImageNet classifier (`resnet_v2_50/logits`) and
    training state are skipped and listed there.
    """
    out = _check_out(out, ".weights.h5")
    reader, shapes = read_checkpoint(src)
    expected = resnet_v2_50_variables(scope)
    skipped = check_variables(src, shapes, expected, f"TF-slim {scope}", classifier_scope=f"{scope}/logits")

    import h5py
    import keras

    model = keras.applications.ResNet50V2(include_top=False, weights=None, input_shape=(None, None, 3))
    tensors, values = _assign(model, expected, reader, src)
    temporary = _temporary(out, ".weights.h5")
    try:
        model.save_weights(str(temporary))
        with h5py.File(temporary, "a") as f:
            f.attrs[VERSION_ATTRIBUTE] = "v2"
            f.attrs["hqdepth_converted_from"] = f"TF-slim {scope} checkpoint {Path(str(src)).name}"
        os.replace(temporary, out)
    finally:
        if temporary.exists():
            temporary.unlink()
    return ConversionReport(str(src), str(out), "keras.applications ResNet50V2 weights (hqdepth resnet50 v2)",
                            tensors, values, skipped)


def _parse_input_size(input_size):
    if input_size is None or (isinstance(input_size, str) and input_size.lower() in ("free", "none")):
        return None
    if isinstance(input_size, str):
        match = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", input_size)
        if not match:
            raise ConfigError(f"input_size must be HxW (e.g. 289x385) or 'free', got {input_size!r}")
        input_size = (int(match.group(1)), int(match.group(2)))
    try:
        height, width = (int(v) for v in input_size)
    except (TypeError, ValueError):
        raise ConfigError(f"input_size must be (height, width), HxW or 'free', got {input_size!r}") from None
    if height < 16 or width < 16:
        raise ConfigError(f"input_size {height}x{width} is too small (at least 16x16)")
    return height, width


def _detect_variant(shapes, variant, path):
    if variant not in HQMDE_VARIANTS:
        raise ConfigError(f"variant must be one of {HQMDE_VARIANTS}, got {variant!r}")
    if variant != "auto":
        return variant == "baseline_plus"
    logits = shapes.get(f"{HQMDE_SCOPE}/decoder/upsampling_logits_2/conv_logits/weights")
    if logits is None:
        raise WeightsFileError(f"{path} is not an HQMDE checkpoint: no variable "
                               f"{HQMDE_SCOPE}/decoder/upsampling_logits_2/conv_logits/weights "
                               f"(its variables are under: {_listing(sorted({n.split('/')[0] for n in shapes}))}).")
    # baseline+ (--decoding_at_image_size): logits from the 16-channel decoder_conv2; baseline: from 256 channels.
    return len(logits) == 4 and logits[2] == 16


# HQMDE train.py argparse defaults (= the README's reproduction command) for what the checkpoint does not store.
HQMDE_TRAIN_DEFAULTS = {"cnn_model": "resnet_v2_50", "output_stride": 16, "multi_grid": [1, 2, 4],
                        "aspp_rates": [4, 8, 12], "batch_norm_epsilon": 1e-5}


def find_train_args(src, train_args="auto"):
    """HQMDE's `args<pid>.json` (written by train.py beside its checkpoints, read by test_nyu_depth_v2.py).

    `train_args`: "auto" (the single `args*.json` in the checkpoint's folder, if there is one), a path,
    or None (do not read one). Returns (path or None, dict).
    """
    import json

    if train_args is None:
        return None, {}
    if train_args == "auto":
        folder = Path(_checkpoint_prefix(src))
        folder = folder if folder.is_dir() else folder.parent
        found = sorted(folder.glob("args*.json"))
        if not found:
            return None, {}
        if len(found) > 1:
            raise ConfigError(f"several training argument files beside {src}: {', '.join(p.name for p in found)}; "
                              "choose one with train_args=PATH (or train_args=null to use HQMDE's defaults)")
        train_args = found[0]
    path = Path(train_args)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise WeightsFileError(f"training arguments file not found: {path}") from None
    except (OSError, ValueError) as error:
        raise WeightsFileError(f"cannot read {path} as HQMDE training arguments (JSON): {error}") from None
    if not isinstance(values, dict):
        raise WeightsFileError(f"{path}: expected a JSON object of HQMDE train.py arguments")
    return path, values


def hqmde_settings(train_values, output_stride=None, multi_grid=None, aspp_rates=None, bn_epsilon=None):
    """Network settings for a trained HQMDE model, resolved as HQMDE's `test_nyu_depth_v2.py` does.

    `train_values`: the training arguments (args json; missing keys take train.py's defaults).
    `output_stride` is the test output stride (default: the training one); the ASPP rates are scaled by
    train/test output stride, `int(rate * train_os / test_os)`, as the official test script does.
    Explicit `multi_grid`, `aspp_rates`, `bn_epsilon` replace the training values.
    Returns {"output_stride", "multi_grid", "aspp_rates", "bn_epsilon", "decode_at_image_size" (None if unknown)}.
    """
    values = {**HQMDE_TRAIN_DEFAULTS, **{k: v for k, v in train_values.items() if v is not None}}
    if values["cnn_model"] != "resnet_v2_50":
        raise ConfigError(f"the checkpoint was trained with --cnn_model {values['cnn_model']}; only resnet_v2_50 "
                          "(the paper's network) converts to hqmd_baseline(_plus)")
    train_os = int(values["output_stride"])
    test_os = int(output_stride) if output_stride is not None else train_os
    rates = aspp_rates if aspp_rates is not None else [int(r * train_os / test_os) for r in values["aspp_rates"]]
    decode = train_values.get("decoding_at_image_size")
    return {"output_stride": test_os,
            "multi_grid": tuple(int(m) for m in (multi_grid if multi_grid is not None else values["multi_grid"])),
            "aspp_rates": tuple(int(r) for r in rates),
            "bn_epsilon": float(bn_epsilon if bn_epsilon is not None else values["batch_norm_epsilon"]),
            "decode_at_image_size": None if decode is None else bool(decode)}


def convert_hqmde(src, out, input_size=HQMDE_INPUT_SIZE, variant="auto", train_args="auto", output_stride=None,
                  multi_grid=None, aspp_rates=None, bn_epsilon=None, max_depth=10.0):
    """HQMDE's trained TF1 checkpoint (whole network) -> `.keras` model `hqmd_baseline_plus` / `hqmd_baseline`.

    Args:
        src: the checkpoint prefix (e.g. `model.ckpt-300000`), its `.index` file or its folder.
        out: the `.keras` file to write.
        input_size: (H, W) or "HxW" of the model input, or "free" (any size). Default 289x385: HQMDE
            trains at this size and `test_nyu_depth_v2.py` resizes each test image to it, then resizes
            the prediction back; `hqdepth evaluate --model out` does the same with a fixed-size model.
        variant: "auto" (from the checkpoint: baseline+ when the logits read 16 channels), "baseline_plus"
            or "baseline".
        train_args: HQMDE's `args<pid>.json` ("auto": the one beside the checkpoint, as the official test
            script reads it; a path; or None). It supplies the settings the checkpoint does not store:
            output stride, multi-grid, ASPP rates, batch-norm epsilon. Without one, train.py's defaults
            (= the README's command: 16, (1, 2, 4), (4, 8, 12), 1e-5).
        output_stride: test output stride (default: the training one); ASPP rates are rescaled by
            train/test as in `test_nyu_depth_v2.py`.
        multi_grid, aspp_rates, bn_epsilon: replace the training values (normally left unset).
        max_depth: depth = max_depth * sigmoid(logits) (HQMDE: 10 m for NYU Depth v2).

    The stem and block1 convolutions are marked non-trainable, as in HQMDE (`trainable=False` in its
    `resnet_v2.py`/`resnet_utils.py`); batch norms stay trainable. Returns a `ConversionReport`
    (Adam slots, beta powers and the step counter under `optimizer_vars/` are skipped and listed).
    """
    out = _check_out(out, ".keras")
    size = _parse_input_size(input_size)
    reader, shapes = read_checkpoint(src)
    args_path, train_values = find_train_args(src, train_args)
    settings = hqmde_settings(train_values, output_stride, multi_grid, aspp_rates, bn_epsilon)
    decode_at_image_size = _detect_variant(shapes, variant, src)
    if settings["decode_at_image_size"] is not None and settings["decode_at_image_size"] != decode_at_image_size:
        raise WeightsFileError(
            f"{args_path} says decoding_at_image_size={settings['decode_at_image_size']}, but {src} holds the "
            f"{'baseline+' if decode_at_image_size else 'baseline'} decoder")
    expected = {**resnet_v2_50_variables(SLIM_SCOPE), **hqmde_head_variables(decode_at_image_size)}
    name = "hqmd_baseline_plus" if decode_at_image_size else "hqmd_baseline"
    skipped = check_variables(src, shapes, expected, f"HQMDE {name.replace('hqmd_', '')}")

    from hqdepth.models.deeplab import hqmd_deeplab

    model = hqmd_deeplab(input_shape=(*size, 3) if size else (None, None, 3),
                         decode_at_image_size=decode_at_image_size, max_depth=max_depth, backbone_version="v2",
                         output_stride=settings["output_stride"], multi_grid=settings["multi_grid"],
                         aspp_rates=settings["aspp_rates"], bn_epsilon=settings["bn_epsilon"],
                         backbone_weights=None, freeze="none", name=name)
    for layer in model.layers:  # HQMDE: root conv and block1 convs built with trainable=False
        if layer.name == "conv1_conv" or (layer.name.startswith("conv2_block") and layer.name.endswith("_conv")):
            layer.trainable = False
    tensors, values = _assign(model, expected, reader, src)
    temporary = _temporary(out, ".keras")
    try:
        model.save(str(temporary))
        os.replace(temporary, out)
    finally:
        if temporary.exists():
            temporary.unlink()
    size_text = f"{size[0]}x{size[1]}" if size else "free"
    where = f"settings from {args_path}" if args_path else "HQMDE train.py default settings (no args*.json found)"
    return ConversionReport(
        str(src), str(out),
        f"{name} (input {size_text}, output stride {settings['output_stride']}, multi-grid {settings['multi_grid']}, "
        f"ASPP rates {settings['aspp_rates']}, BN epsilon {settings['bn_epsilon']:g}, max depth {max_depth:g} m; "
        f"{where})", tensors, values, skipped)


__all__ = ["check_variables", "convert_hqmde", "convert_slim_resnet_v2_50", "find_train_args", "hqmde_head_variables",
           "hqmde_settings", "read_checkpoint", "resnet_v2_50_variables", "unused_reason"]
