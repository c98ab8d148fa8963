"""PyTorch weights into hqdepth models: torchvision ResNet-50, the published BTS checkpoints, Cadene's SENet-154.

Three converters, each reading a PyTorch state dict from a `.safetensors` file (the `safetensors`
package's NumPy API, no PyTorch needed) or from a `torch.save` file (`.pth`, `.pt`, `.ckpt` or BTS's
extension-less `model`; needs PyTorch, loaded with `weights_only=True`):

- `convert_torchvision_resnet50(src, out)`: a torchvision `resnet50` state dict (BTS, SARPN's ResNet-50
  configuration and seed 004 start from it) -> a Keras `.weights.h5` in the `keras.applications.ResNet50` layout that
  `hqdepth.backbones.resnet50(version="v1.5", weights=out)` and every model's
  `backbone_weights=out` (with `backbone_version="v1.5"`) load. torchvision puts a stage's stride on
  the 3x3 conv of its first bottleneck; the weights only mean what they meant in that layout
  ("v1.5"), which is why the file records `hqdepth_resnet_version = "v1.5"` and the "v1" backbone
  refuses it.
- `convert_bts(src, out, **options)`: a published BTS PyTorch checkpoint (`cleinc/bts`,
  `bts_{nyu,eigen}_v2_pytorch_{resnet50,densenet161,densenet121}`: `torch.save({'global_step',
  'model', 'optimizer'})` of a `DataParallel(BtsModel)`, keys `module.encoder.base_model.*` and
  `module.decoder.*`) -> our `bts` model as a `.keras` file.
- `convert_senet154(src, out)`: Cadene's `pretrainedmodels` SENet-154 (`senet154-c7b49a05.pth`, SARPN's and
  MRPAN's backbone) -> a `.weights.h5` for `hqdepth.backbones.senet.senet154`, whose layer names are the
  PyTorch module names with "_" for "." (`layer2.0.se_module.fc1` -> `layer2_0_se_module_fc1`); `last_linear`
  (the classifier) is skipped.

Name mapping (PyTorch `(O, I, kh, kw)` conv kernels become Keras `(kh, kw, I, O)`):

| torchvision `resnet50` | Keras `ResNet50` layer |
|---|---|
| `conv1.weight` | `conv1_conv` kernel (bias: zeros) |
| `bn1.{weight,bias,running_mean,running_var}` | `conv1_bn` gamma, beta, moving mean, moving variance |
| `layer{s}.{u}.conv{k}.weight`, `.bn{k}.*` | `conv{s+1}_block{u+1}_{k}_conv` (bias: zeros), `_{k}_bn` |
| `layer{s}.0.downsample.0.weight`, `.downsample.1.*` | `conv{s+1}_block1_0_conv` (bias: zeros), `_0_bn` |
| `*.num_batches_tracked`, `fc.weight`, `fc.bias` | not used (BN step counters; the classifier) |

torchvision's convs have no bias, Keras' ResNet50 convs have one: the converter writes zeros (each of
these convs feeds a batch norm, so they stay inert in training mode). Batch-norm epsilon: torchvision
uses 1e-5, keras.applications 1.001e-5; the epsilon is a layer setting, not a weight: the v1.5
backbones built by `hqdepth.backbones.resnet50` (default) and by the `bts`, `mrpan` and
`resnet50_transposed` models use 1e-5, as torchvision.

BTS decoder (`module.decoder.`, nf = `bts_size`, read from `upconv5.conv.weight`):
`upconv{n}.conv` -> `bts_upconv{n}_conv`; `bn5, bn4, bn4_2, bn3, bn2` -> `bts_bn5` ...;
`conv{n}.0` -> `bts_iconv{n}`; `daspp_{r}.atrous_conv.first_bn` / `.aconv_sequence.1` / `.2` / `.4`
-> `bts_daspp_{r}_first_bn` / `_conv1` / `_bn` / `_conv2`; `daspp_conv.0` -> `bts_daspp_conv`;
`reduc{k}x{k}.reduc.inter_{i}_{o}.0` (in order) -> `bts_reduc{k}x{k}_inter{step}`;
`.reduc.plane_params` -> `_plane_params`; `reduc1x1.reduc.final.0` -> `bts_reduc1x1_final`;
`get_depth.0` -> `bts_get_depth`. Encoder: the ResNet-50 table under `module.encoder.base_model.`
(`fc.*` unused), or for DenseNet `conv0, norm0` -> `conv1_conv, conv1_bn`;
`denseblock{b}.denselayer{l}.norm1, conv1, norm2, conv2` -> `conv{b+1}_block{l}_0_bn, _1_conv, _1_bn,
_2_conv`; `transition{t}.norm, conv` -> `pool{t+1}_bn, pool{t+1}_conv`; `norm5` -> `bn`.

Every variable is accounted for both ways: a PyTorch key that nothing reads (other than the ignored
ones above) or a Keras variable that no key fills stops the conversion with an error naming them.
"""

import os
import re
from pathlib import Path

import numpy as np

from hqdepth.errors import ConfigError
from hqdepth.weights import ConversionReport, WeightsFileError

RESNET50_UNITS = (3, 4, 6, 3)
BN_FIELDS = ("weight", "bias", "running_mean", "running_var")  # Keras order: gamma, beta, moving mean/variance
DENSENET_BLOCKS = {2208: ("densenet161", (6, 12, 36, 24)), 1024: ("densenet121", (6, 12, 24, 16))}
BTS_PREFIXES = ("encoder.base_model.", "decoder.")
# What the official `--dataset` argument sets (arguments_test_nyu.txt / arguments_test_eigen.txt, bts.py).
BTS_DATASETS = {"nyu": {"max_depth": 10.0, "with_focal": False}, "kitti": {"max_depth": 80.0, "with_focal": True}}
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".tar", "")
ZEROS = None  # a mapping entry with no PyTorch source: zeros of the Keras variable's shape


class TorchWeightsError(WeightsFileError):
    """A PyTorch weights file cannot be read or does not match the model (the message names file and key)."""


class TorchConversionReport(ConversionReport):
    """The `ConversionReport` of a PyTorch conversion; it also stands for the output path:
    `str(report)` and `os.fspath(report)` give `report.out`."""

    def __str__(self):
        return self.out

    def __fspath__(self):
        return self.out


def _report(src, out, target, state, used):
    skipped = {}
    for key in sorted(state):
        if key not in used:  # assign() has refused anything else
            reason = "batch-norm step counters" if key.endswith("num_batches_tracked") else "ImageNet classifier"
            skipped.setdefault(reason, []).append(key)
    values = sum(int(np.asarray(state[key]).size) for key in used)
    return TorchConversionReport(os.fspath(src), os.fspath(out), target, len(used), values, skipped)


# --- reading ---------------------------------------------------------------------------------------------

def _require_published(src, name):
    """TorchWeightsError naming where the published file (`hqdepth.weights.pretrained.PRETRAINED[name]`) comes from
    when `src` does not exist."""
    if not Path(src).is_file():
        from hqdepth.weights.pretrained import PRETRAINED

        entry = PRETRAINED[name]
        raise TorchWeightsError(f"PyTorch weights file not found: {src}; the published one ({entry.name}) is "
                                f"{entry.file}, from {entry.url}")


def load_state_dict(src):
    """{key: float NumPy array} from a `.safetensors` file or (with PyTorch installed) a `torch.save` file.

    A checkpoint dict holding the state dict under "model" (BTS) or "state_dict" is unwrapped, and a
    `module.` prefix (`DataParallel`) on every key is removed.
    """
    path = Path(src)
    if not path.is_file():
        raise TorchWeightsError(f"PyTorch weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError as error:
            raise TorchWeightsError(f"Reading {path} needs the safetensors package: pip install safetensors") from error
        try:
            state = load_file(str(path))
        except Exception as error:  # safetensors raises its own SafetensorError
            raise TorchWeightsError(f"{path} is not a readable safetensors file: {error}") from error
    else:
        state = _torch_load(path)
    if all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def _torch_load(path):
    with open(path, "rb") as file:
        head = file.read(4)
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save: a zip archive, or (before 1.6) a pickle
        raise TorchWeightsError(f"{path} is not a PyTorch checkpoint: torch.save writes a zip archive or a pickle, "
                                f"and it starts with {head!r}.")
    try:
        import torch
    except ImportError as error:
        raise TorchWeightsError(
            f"{path} is a PyTorch file: reading it needs PyTorch (pip install torch), or convert it to safetensors "
            "on a machine that has PyTorch:\n"
            "  python -c \"import torch, safetensors.torch as st; c = torch.load('IN', map_location='cpu'); "
            "c = c.get('model', c); st.save_file({k: v.contiguous() for k, v in c.items()}, 'OUT.safetensors')\"\n"
            "and pass the .safetensors file."
        ) from error
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and weights_only errors
        raise TorchWeightsError(f"Could not read {path} with torch.load: {error.__class__.__name__}: {error}") from error
    if isinstance(checkpoint, dict):
        for key in ("model", "state_dict"):
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, dict):
        raise TorchWeightsError(f"{path} holds a {type(checkpoint).__name__}, not a state dict.")
    state = {}
    for key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            raise TorchWeightsError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor.")
        state[str(key)] = value.detach().cpu().float().numpy() if value.is_floating_point() else value.numpy()
    return state


def _ignored(key):
    """State-dict entries no Keras variable corresponds to: BN step counters and the ImageNet classifier
    (torchvision's `fc`, Cadene's `last_linear`)."""
    return (key.endswith("num_batches_tracked")
            or re.fullmatch(r"(.*\.)?(fc|last_linear)\.(weight|bias)", key) is not None)


# --- mappings: Keras layer name -> PyTorch keys, one per Keras variable (ZEROS: no source) ---------------

def _conv(key, bias=False):
    return [key + ".weight"] + ([ZEROS] if bias else [])


def _bn(key):
    return [f"{key}.{field}" for field in BN_FIELDS]


def resnet50_mapping(prefix=""):
    """{Keras ResNet50 layer: [PyTorch keys]} for a torchvision `resnet50` whose keys start with `prefix`."""
    mapping = {"conv1_conv": _conv(prefix + "conv1", bias=True), "conv1_bn": _bn(prefix + "bn1")}
    for stage, units in enumerate(RESNET50_UNITS, start=1):
        for unit in range(units):
            torch_name, keras_name = f"{prefix}layer{stage}.{unit}", f"conv{stage + 1}_block{unit + 1}"
            for k in (1, 2, 3):
                mapping[f"{keras_name}_{k}_conv"] = _conv(f"{torch_name}.conv{k}", bias=True)
                mapping[f"{keras_name}_{k}_bn"] = _bn(f"{torch_name}.bn{k}")
            if unit == 0:
                mapping[f"{keras_name}_0_conv"] = _conv(f"{torch_name}.downsample.0", bias=True)
                mapping[f"{keras_name}_0_bn"] = _bn(f"{torch_name}.downsample.1")
    return mapping


def senet154_mapping(blocks=(3, 8, 36, 3), prefix=""):
    """{Keras layer of `hqdepth.backbones.senet.senet154`: [PyTorch keys]} for Cadene's `senet154` (SARPN's
    `models/senet.py`) with `blocks` bottlenecks per stage; every first bottleneck has a `downsample`."""
    mapping = {}
    for k in (1, 2, 3):
        mapping[f"layer0_conv{k}"] = _conv(f"{prefix}layer0.conv{k}")
        mapping[f"layer0_bn{k}"] = _bn(f"{prefix}layer0.bn{k}")
    for stage, units in enumerate(blocks, start=1):
        for unit in range(units):
            torch_name, keras_name = f"{prefix}layer{stage}.{unit}", f"layer{stage}_{unit}"
            for k in (1, 2, 3):
                mapping[f"{keras_name}_conv{k}"] = _conv(f"{torch_name}.conv{k}")
                mapping[f"{keras_name}_bn{k}"] = _bn(f"{torch_name}.bn{k}")
            for fc in ("fc1", "fc2"):
                mapping[f"{keras_name}_se_module_{fc}"] = _conv(f"{torch_name}.se_module.{fc}") + [
                    f"{torch_name}.se_module.{fc}.bias"]
            if unit == 0:
                mapping[f"{keras_name}_downsample_0"] = _conv(f"{torch_name}.downsample.0")
                mapping[f"{keras_name}_downsample_1"] = _bn(f"{torch_name}.downsample.1")
    return mapping


def densenet_mapping(blocks, prefix=""):
    """{Keras DenseNet layer (`hqdepth.models.bts.densenet_encoder` names): [PyTorch keys]} for torchvision
    `densenet*.features` keys under `prefix`."""
    mapping = {"conv1_conv": _conv(prefix + "conv0"), "conv1_bn": _bn(prefix + "norm0"), "bn": _bn(prefix + "norm5")}
    for block, layers in enumerate(blocks, start=1):
        for unit in range(1, layers + 1):
            torch_name, keras_name = f"{prefix}denseblock{block}.denselayer{unit}", f"conv{block + 1}_block{unit}"
            mapping[f"{keras_name}_0_bn"] = _bn(f"{torch_name}.norm1")
            mapping[f"{keras_name}_1_conv"] = _conv(f"{torch_name}.conv1")
            mapping[f"{keras_name}_1_bn"] = _bn(f"{torch_name}.norm2")
            mapping[f"{keras_name}_2_conv"] = _conv(f"{torch_name}.conv2")
        if block < len(blocks):
            mapping[f"pool{block + 1}_bn"] = _bn(f"{prefix}transition{block}.norm")
            mapping[f"pool{block + 1}_conv"] = _conv(f"{prefix}transition{block}.conv")
    return mapping


def _reduction_mapping(keras_name, torch_name, c_in, c_out, final=False):
    """BTS `reduction_1x1`: inter_{in}_{out} 1x1 convs while c_out >= 8, then plane_params (or final.0)."""
    mapping, step = {}, 0
    while c_out >= 4:
        if c_out < 8:
            if final:
                mapping[f"{keras_name}_final"] = _conv(f"{torch_name}.reduc.final.0")
            else:
                mapping[f"{keras_name}_plane_params"] = _conv(f"{torch_name}.reduc.plane_params")
            break
        mapping[f"{keras_name}_inter{step}"] = _conv(f"{torch_name}.reduc.inter_{c_in}_{c_out}.0")
        step, c_in, c_out = step + 1, c_out, c_out // 2
    return mapping


def bts_decoder_mapping(nf, prefix="decoder.", keras_prefix="bts_"):
    """{Keras BTS decoder layer: [PyTorch keys]} for the official `bts` decoder with `num_features` nf."""
    d, k = prefix, keras_prefix
    mapping = {}
    for n in (5, 4, 3, 2, 1):
        mapping[f"{k}upconv{n}_conv"] = _conv(f"{d}upconv{n}.conv")
        mapping[f"{k}iconv{n}"] = _conv(f"{d}conv{n}.0")
    for name in ("bn5", "bn4", "bn4_2", "bn3", "bn2"):
        mapping[k + name] = _bn(d + name)
    for rate in (3, 6, 12, 18, 24):
        torch_name, keras_name = f"{d}daspp_{rate}.atrous_conv", f"{k}daspp_{rate}"
        if rate != 3:
            mapping[f"{keras_name}_first_bn"] = _bn(f"{torch_name}.first_bn")
        mapping[f"{keras_name}_conv1"] = _conv(f"{torch_name}.aconv_sequence.1")
        mapping[f"{keras_name}_bn"] = _bn(f"{torch_name}.aconv_sequence.2")
        mapping[f"{keras_name}_conv2"] = _conv(f"{torch_name}.aconv_sequence.4")
    mapping[f"{k}daspp_conv"] = _conv(f"{d}daspp_conv.0")
    mapping.update(_reduction_mapping(f"{k}reduc8x8", f"{d}reduc8x8", nf // 4, nf // 4))
    mapping.update(_reduction_mapping(f"{k}reduc4x4", f"{d}reduc4x4", nf // 4, nf // 8))
    mapping.update(_reduction_mapping(f"{k}reduc2x2", f"{d}reduc2x2", nf // 8, nf // 16))
    mapping.update(_reduction_mapping(f"{k}reduc1x1", f"{d}reduc1x1", nf // 16, nf // 32, final=True))
    mapping[f"{k}get_depth"] = _conv(f"{d}get_depth.0")
    return mapping


# --- assignment ------------------------------------------------------------------------------------------

def _to_keras(value, shape, src, key, layer_name):
    """A PyTorch tensor in Keras layout: conv kernels (O, I, kh, kw) -> (kh, kw, I, O); vectors unchanged."""
    if value.ndim == 4:
        value = value.transpose(2, 3, 1, 0)
    if tuple(value.shape) != tuple(shape):
        raise TorchWeightsError(f"{src}: {key} has shape {tuple(value.shape)} in Keras layout, Keras layer "
                                f"{layer_name} expects {tuple(shape)}.")
    return value.astype(np.float32)


def assign(model, mapping, state, src):
    """Set every weighted layer of `model` from `state` following `mapping`; refuse anything left over.

    Raises `TorchWeightsError` naming `src` and the keys when a key the mapping needs is missing or
    has the wrong shape, when a weighted Keras layer has no mapping, or when a state-dict entry (other
    than `num_batches_tracked` and `fc.*`) is not read. Returns the set of keys read.
    """
    used, unmapped, missing = set(), [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        keys = mapping.get(layer.name)
        if keys is None:
            unmapped.append(layer.name)
            continue
        if len(keys) != len(layer.weights):
            raise TorchWeightsError(f"Keras layer {layer.name} has {len(layer.weights)} variables, the mapping from "
                                    f"{src} gives {len(keys)} ({keys}).")
        values = []
        for key, variable in zip(keys, layer.weights):
            if key is ZEROS:
                values.append(np.zeros(variable.shape, np.float32))
            elif key not in state:
                missing.append(key)
            else:
                values.append(_to_keras(np.asarray(state[key]), variable.shape, src, key, layer.name))
                used.add(key)
        if len(values) == len(keys):
            layer.set_weights(values)
    if missing:
        raise TorchWeightsError(f"{src} has no {missing[0]!r} ({len(missing)} keys missing, e.g. {missing[:5]}): "
                                "not the expected PyTorch model.")
    if unmapped:
        raise TorchWeightsError(f"No PyTorch key maps to {len(unmapped)} Keras layers of {model.name}, e.g. "
                                f"{unmapped[:5]}.")
    leftover = sorted(key for key in state if key not in used and not _ignored(key))
    if leftover:
        raise TorchWeightsError(f"{src}: {len(leftover)} entries are not used by the conversion, e.g. {leftover[:5]} "
                                "(a different architecture or size?).")
    return used


def _check_out(out, suffix):
    out = Path(out)
    if not out.name.endswith(suffix):
        raise ConfigError(f"The output file must end with {suffix} (Keras' format for it), got {out}.")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _key_prefix(state, src, anchor, network):
    """The prefix in front of the key `anchor` of `network`'s state dict (usually empty; e.g. `encoder.`)."""
    prefixes = {key[:-len(anchor)] for key in state if key.endswith(anchor)}
    if len(prefixes) != 1:
        raise TorchWeightsError(f"{src} does not look like a {network} state dict: "
                                f"{'no' if not prefixes else len(prefixes)} {anchor!r} entries.")
    return prefixes.pop()


def _resnet_prefix(state, src):
    """The prefix in front of torchvision's `conv1.weight` / `layer1.0.conv1.weight` (usually empty)."""
    return _key_prefix(state, src, "layer1.0.conv1.weight", "torchvision ResNet-50")


# --- converters ------------------------------------------------------------------------------------------

def convert_torchvision_resnet50(src, out):
    """Convert a torchvision ResNet-50 state dict into a Keras weights file for the "v1.5" backbone.

    Args:
        src: `.safetensors` file (NumPy only) or `torch.save` file (`.pth`; needs PyTorch) holding
            torchvision `resnet50().state_dict()` (optionally under "model"/"state_dict", keys
            optionally prefixed, e.g. `module.`). `fc.*` and `num_batches_tracked` are ignored; any
            other unused entry is an error.
        out: path of the `.weights.h5` file to write: `keras.applications.ResNet50` layout with
            torchvision's values (conv biases zero), marked `hqdepth_resnet_version = "v1.5"`.
            Load it with `hqdepth.backbones.resnet50(version="v1.5", weights=out)` or a model's
            `backbone_weights=out` (`bts`, `mrpan`, `resnet50_transposed` default to v1.5).

    Returns:
        A `TorchConversionReport` (`str()` of it is the output path; `.summary()` lists what was
        copied and skipped).
    """
    import h5py
    import keras

    from hqdepth.backbones.resnet import VERSION_ATTRIBUTE

    out = _check_out(out, ".weights.h5")
    _require_published(src, "torchvision-resnet50")
    state = load_state_dict(src)
    prefix = _resnet_prefix(state, src)
    model = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(None, None, 3))
    used = assign(model, resnet50_mapping(prefix), state, src)
    model.save_weights(str(out))
    with h5py.File(out, "a") as f:
        f.attrs[VERSION_ATTRIBUTE] = "v1.5"
    return _report(src, out, "torchvision ResNet-50 -> keras.applications ResNet50 layout for resnet50(version='v1.5') "
                   "(conv biases zero)", state, used)


def convert_senet154(src, out, **architecture):
    """Convert Cadene's SENet-154 state dict (`senet154-c7b49a05.pth`, what SARPN loads) into a Keras weights file
    for `hqdepth.backbones.senet.senet154` (`mrpan(backbone="senet154", backbone_weights=out)`).

    Args:
        src: `.pth` (needs PyTorch) or `.safetensors` file of `pretrainedmodels.senet154().state_dict()` (keys
            `layer0.conv1.weight` ... optionally prefixed, e.g. `module.`); `last_linear.*` is ignored.
        out: the `.weights.h5` file to write.
        architecture: `senet154` options (blocks, planes, groups, reduction, stem_width) for a network other
            than SENet-154's own (tests).
    """
    import h5py

    from hqdepth.backbones.senet import BLOCKS, LAYOUT_ATTRIBUTE, layout_fingerprint, senet154

    out = _check_out(out, ".weights.h5")
    _require_published(src, "cadene-senet154")
    state = load_state_dict(src)
    prefix = _key_prefix(state, src, "layer0.conv1.weight", "SENet (Cadene's pretrainedmodels)")
    model = senet154(**architecture)
    used = assign(model, senet154_mapping(architecture.get("blocks", BLOCKS), prefix), state, src)
    model.save_weights(str(out))
    with h5py.File(out, "a") as f:
        f.attrs[LAYOUT_ATTRIBUTE] = layout_fingerprint(model)
    return _report(src, out, "Cadene SENet-154 -> hqdepth.backbones.senet.senet154", state, used)


def bts_encoder_of(state, src="checkpoint"):
    """("resnet50" | "densenet161" | "densenet121", encoder mapping) of a BTS state dict (no `module.`)."""
    base = BTS_PREFIXES[0]
    if base + "conv1.weight" in state:
        return "resnet50", resnet50_mapping(base)
    if base + "conv0.weight" in state:
        channels = state.get(base + "norm5.weight")
        if channels is None or channels.shape[0] not in DENSENET_BLOCKS:
            raise TorchWeightsError(f"{src}: DenseNet encoder with {base}norm5.weight "
                                    f"{None if channels is None else channels.shape}: not DenseNet-121/161.")
        variant, blocks = DENSENET_BLOCKS[channels.shape[0]]
        return variant, densenet_mapping(blocks, base)
    raise TorchWeightsError(f"{src} has neither {base}conv1.weight (ResNet) nor {base}conv0.weight (DenseNet): "
                            "not a BTS checkpoint with a supported encoder (ResNet-50, DenseNet-121/161).")


def bts_dataset_options(src, options):
    """`options` completed with the settings of the dataset the BTS checkpoint was trained on.

    A checkpoint does not store them: `dataset="nyu"` (max_depth 10, no focal input) or "kitti"
    (max_depth 80, output x focal / 715.0873, as the official code does for `--dataset kitti`).
    Without `dataset`, `max_depth` or `with_focal` in `options`, the dataset is read from the path
    of the published files (`bts_nyu_v2_pytorch_*` / `bts_eigen_v2_pytorch_*`); a path naming
    neither is an error, since the wrong choice gives wrong depths without any other sign.
    """
    options = dict(options)
    dataset = options.pop("dataset", None)
    if dataset is None and not {"max_depth", "with_focal"} & set(options):
        text = str(src).lower()
        found = {name for name, words in (("kitti", ("eigen", "kitti")), ("nyu", ("nyu",)))
                 if any(word in text for word in words)}
        if len(found) != 1:
            raise ConfigError(f"convert_bts: which dataset was {src} trained on? The checkpoint does not say and the "
                              "path names " + ("both" if found else "neither") + " of NYU / KITTI (eigen): give the "
                              "dataset, nyu (max_depth 10) or kitti (max_depth 80, focal scaling): `-o dataset=nyu` on "
                              "the command line, dataset='nyu' in Python.")
        dataset = found.pop()
    if dataset is not None:
        if dataset not in BTS_DATASETS:
            raise ConfigError(f"convert_bts: dataset must be one of {tuple(BTS_DATASETS)}, got {dataset!r}.")
        for key, value in BTS_DATASETS[dataset].items():
            options.setdefault(key, value)
    return options


def convert_bts(src, out, **options):
    """Convert a published BTS PyTorch checkpoint (`cleinc/bts`) into our `bts` model, saved as `.keras`.

    Args:
        src: the checkpoint (`model` inside `bts_nyu_v2_pytorch_resnet50.zip` etc.: a `torch.save` dict
            with the state dict under "model", keys `module.encoder.base_model.*` / `module.decoder.*`;
            needs PyTorch) or that state dict saved as `.safetensors`.
        out: path of the `.keras` file to write.
        **options: what the checkpoint does not store. `dataset`: "nyu" (max_depth 10) or "kitti"
            (max_depth 80, `with_focal=True`: the official code multiplies by focal / 715.0873 when
            `--dataset kitti`); read from the published file's path (`bts_nyu_v2_*`, `bts_eigen_v2_*`)
            when neither it nor `max_depth` / `with_focal` is given (`bts_dataset_options`). Any
            `hqdepth.models.bts.bts` option: `max_depth`, `with_focal`, `input_shape` (default free
            size), `freeze`, `lpg_min_denominator` (1e-3 guard; None = the official formula exactly),
            `theta_max`, `name`. The encoder (ResNet-50, built as
            `backbone_version="v1.5"`, or DenseNet-121/161) and `bts_size` (from
            `upconv5.conv.weight`) come from the checkpoint.

    Returns:
        A `TorchConversionReport` (`str()` of it is the output path).
    """
    from hqdepth.models.bts import bts

    out = _check_out(out, ".keras")
    if not Path(src).is_file():  # before asking for the dataset of a file that is not there
        raise TorchWeightsError(f"PyTorch weights file not found: {src} (the published BTS checkpoints, e.g. "
                                "bts_nyu_v2_pytorch_resnet50.zip, are linked from the cleinc/bts README: unzip one and "
                                "give its `model` file; docs/reproducing.md, section 1).")
    options = bts_dataset_options(src, options)
    state = load_state_dict(src)
    fixed = {"encoder", "backbone_weights", "backbone_version", "final_bias"} & set(options)
    if fixed:
        raise ConfigError(f"convert_bts: {sorted(fixed)} come from the checkpoint (ResNet-50 v1.5 / DenseNet, no bias "
                          "on the last conv) and cannot be set.")
    upconv5 = state.get("decoder.upconv5.conv.weight")
    if upconv5 is None:
        raise TorchWeightsError(f"{src} has no 'module.decoder.upconv5.conv.weight': not a BTS PyTorch checkpoint.")
    nf = int(upconv5.shape[0])
    if options.setdefault("bts_size", nf) != nf:
        raise ConfigError(f"convert_bts: bts_size={options['bts_size']} but {src} has bts_size {nf} "
                          "(decoder.upconv5.conv.weight).")
    encoder, mapping = bts_encoder_of(state, src)
    mapping.update(bts_decoder_mapping(nf))
    input_shape = options.pop("input_shape", (None, None, 3))
    model = bts(input_shape, encoder=encoder, **options)
    used = assign(model, mapping, state, src)
    model.save(str(out))
    return _report(src, out, f"BTS ({encoder} encoder, bts_size {nf}, max_depth {options.get('max_depth', 10.0)}"
                   f"{', focal scaling' if options.get('with_focal') else ''}) -> hqdepth bts model", state, used)
