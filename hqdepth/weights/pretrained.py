"""The papers' initialisations by name, fetched and cached the Keras way.

A model with a pretrained backbone (ResNet-50; MRPAN's SENet-154) takes `backbone_weights` (recipe field
`model.options.backbone_weights`):

- a name in `PRETRAINED`: the initialisation a paper used, downloaded once with
  `keras.utils.get_file` into `~/.keras/models/` and, where the paper used another framework's
  weights, converted once into a Keras weights file beside it (`~/.keras/models/hqdepth/`);
- a path to a weights file (Keras applications `.h5`/`.weights.h5`/`.keras`, or the output of
  `hqdepth weights convert`);
- `none`: random (He-normal) initialisation. It must be asked for explicitly, and a model that
  freezes layers (HQMD's stem and block1, BTS's stem, seed 004's stages) refuses it: frozen random
  layers can only hurt.

A paper recipe names its paper's initialisation, so `hqdepth train` starts where the paper started.
Without network access (or with `HQDEPTH_OFFLINE=1`, which the tests and the demo set) a missing file
stops the run before anything is built, with the file's name, where to get it and how to pass it.
"""

import inspect
import os
from dataclasses import dataclass
from pathlib import Path

from hqdepth.errors import ConfigError, HQDepthError

OFFLINE_ENV = "HQDEPTH_OFFLINE"
NONE = "none"


@dataclass(frozen=True)
class Pretrained:
    """One downloadable initialisation: the file, where it comes from, which backbone it fits."""

    name: str
    description: str
    file: str                  # cached file name (keras.utils.get_file fname)
    url: str
    backbone_versions: tuple   # hqdepth.backbones.resnet50 versions (or "senet154") whose layers it fills
    converter: str = ""        # "" (a Keras file already) | "slim" | "torchvision" | "senet154"
    file_hash: str = None      # as keras.utils.get_file checks it (md5 or sha256)
    extract: bool = False
    used_by: str = ""


PRETRAINED = {
    entry.name: entry
    for entry in (
        Pretrained(
            "slim-resnet_v2_50",
            "TF-slim resnet_v2_50 ImageNet checkpoint (2017-04-14), converted to the v2 backbone",
            "resnet_v2_50_2017_04_14.tar.gz",
            "http://download.tensorflow.org/models/resnet_v2_50_2017_04_14.tar.gz",
            ("v2",), converter="slim", extract=True,
            used_by="HQMD (HalleyJiang/HQMDE train.py restores it; utils.download_cnn_checkpoint_if_necessary)"),
        Pretrained(
            "torchvision-resnet50",
            "torchvision ResNet-50 ImageNet weights (IMAGENET1K_V1, the resnet50-19c8e357.pth of 2017-2019) "
            "as safetensors, converted to the v1.5 backbone",
            "resnet50.tv_in1k.safetensors",
            "https://huggingface.co/timm/resnet50.tv_in1k/resolve/main/model.safetensors",
            ("v1.5",), converter="torchvision",
            used_by="BTS (cleinc/bts), SARPN (Xt-Chen/SARPN): torchvision.models.resnet50(pretrained=True); seed 004's "
                    "ImageNet ResNet-50 (which file is not stated)"),
        Pretrained(
            "cadene-senet154",
            "Cadene pretrainedmodels SENet-154 ImageNet weights, converted to hqdepth.backbones.senet.senet154",
            "senet154-c7b49a05.pth",
            "http://data.lip6.fr/cadene/pretrainedmodels/senet154-c7b49a05.pth",
            ("senet154",), converter="senet154",
            used_by="SARPN (Xt-Chen/SARPN models/senet.py) and MRPAN: senet154(pretrained='imagenet'); reading the "
                    ".pth needs PyTorch"),
        Pretrained(
            "keras-resnet50v2",
            "keras.applications ResNet50V2 ImageNet weights (no top)",
            "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
            "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
            ("v2",), file_hash="fac2f116257151a9d068a22e544a4917",
            used_by="closest Keras equivalent of the slim checkpoint"),
        Pretrained(
            "keras-resnet50",
            "keras.applications ResNet50 ImageNet weights (no top; Caffe-converted, stride on the 1x1 conv)",
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            ("v1",), file_hash="4d473c1dd8becc155b73f8504c6f6626",
            used_by="Keras users' usual ImageNet start for a v1 backbone"),
    )
}
# Pretrained.converter -> the `hqdepth weights convert --from` format that converts it.
CONVERTER_FORMAT = {"slim": "slim-resnet50-v2", "torchvision": "torchvision-resnet50", "senet154": "cadene-senet154"}
# "imagenet" = Keras' own file for the backbone's version (the builders' historical meaning).
KERAS_IMAGENET = {"v2": "keras-resnet50v2", "v1": "keras-resnet50"}

# The function behind each registered model that has a ResNet-50 backbone (its signature holds the
# defaults of the options that freeze layers).
_BACKBONE_MODELS = {
    "hqmd_baseline_plus": ("hqdepth.models.deeplab", "hqmd_deeplab"),
    "hqmd_baseline": ("hqdepth.models.deeplab", "hqmd_deeplab"),
    "bts": ("hqdepth.models.bts", "bts"),
    "mrpan": ("hqdepth.models.mrpan", "mrpan"),
    "resnet50_transposed": ("hqdepth.models.transposed", "resnet50_transposed"),
}
# Option -> the values that freeze nothing; UNFROZEN: the one to set (as `--set` writes it).
_NOT_FREEZING = {"freeze": (NONE, None), "frozen_stages": (0, None), "fix_first_conv_blocks": (False, None)}
UNFROZEN = {"freeze": NONE, "frozen_stages": "0", "fix_first_conv_blocks": "false"}


def cache_dir():
    """Where downloads and conversions are kept: `$KERAS_HOME/models` (default `~/.keras/models`)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def offline():
    return os.environ.get(OFFLINE_ENV, "").lower() not in ("", "0", "false", "no")


def _builder_defaults(model_name):
    import importlib

    module, function = _BACKBONE_MODELS[model_name]
    signature = inspect.signature(getattr(importlib.import_module(module), function))
    return {k: p.default for k, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}


def has_backbone(model_name, options=None):
    """True when the model takes `backbone_weights` (a ResNet-50 backbone)."""
    return model_name in _BACKBONE_MODELS or "backbone_weights" in (options or {})


def backbone_version(model_name, options):
    """The backbone the weights must fit: "senet154" (MRPAN's `backbone="senet154"`), else the
    `hqdepth.backbones.resnet50` version the model is built with."""
    if options.get("backbone") == "senet154":
        return "senet154"
    if model_name not in _BACKBONE_MODELS:
        return options.get("backbone_version", "v1")
    return options.get("backbone_version", _builder_defaults(model_name).get("backbone_version", "v1"))


def frozen_options(model_name, options):
    """{option: value} of the options that freeze layers, as the model will be built."""
    defaults = _builder_defaults(model_name) if model_name in _BACKBONE_MODELS else {}
    frozen = {}
    for key, idle in _NOT_FREEZING.items():
        if key in options or key in defaults:
            value = options.get(key, defaults.get(key))
            if value not in idle:
                frozen[key] = value
    return frozen


def check_initialisation(config):
    """Refuse a recipe whose backbone initialisation is unset, unknown, or random under frozen layers.

    Cheap (no download); `hqdepth train` calls it before anything else. Returns the setting.
    """
    model = config["model"]
    name, options = model["name"], model.get("options") or {}
    if not has_backbone(name, options):
        return None
    weights = options.get("backbone_weights")
    where = f"recipe {config.get('name') or '(custom)'}"
    if weights is None:
        raise ConfigError(
            f"{where}: model.options.backbone_weights is not set. Name the initialisation: "
            f"{', '.join(sorted(PRETRAINED))}, imagenet (Keras' file for the backbone), a weights file path, "
            f"or '{NONE}' for random initialisation (explicitly).")
    if weights == NONE:
        frozen = frozen_options(name, options)
        if frozen:
            settings = ", ".join(f"model.options.{k}={v}" for k, v in frozen.items())
            fixes = " ".join(f"--set model.options.{k}={UNFROZEN[k]}" for k in frozen)
            raise ConfigError(
                f"{where}: backbone_weights=none initialises the backbone randomly, but {settings} freezes "
                f"layers of it, which would then stay random. Give pretrained weights, or unfreeze: {fixes}")
        return weights
    if isinstance(weights, str) and weights not in PRETRAINED and weights != "imagenet" and not Path(weights).exists():
        raise ConfigError(
            f"{where}: model.options.backbone_weights={weights!r} is neither a known initialisation "
            f"({', '.join(sorted(PRETRAINED))}, imagenet, {NONE}) nor an existing file.")
    version = backbone_version(name, options)
    entry = _entry(weights, version)
    if entry and version not in entry.backbone_versions:
        raise ConfigError(
            f"{where}: {entry.name} fits a {'/'.join(entry.backbone_versions)} backbone, but the model is built with "
            f"{version!r} (initialisations for it: {', '.join(_fitting(version)) or 'none'}).")
    return weights


def _fitting(version):
    """The names in `PRETRAINED` that fit a backbone of `version`."""
    return [entry.name for entry in PRETRAINED.values() if version in entry.backbone_versions]


def _entry(weights, version):
    if weights == "imagenet":
        if version not in KERAS_IMAGENET:
            raise ConfigError(f"backbone_weights=imagenet means Keras' ImageNet file, which fits a ResNet-50 v1 or v2 "
                              f"backbone, not {version!r}: use {' or '.join(_fitting(version))}.")
        return PRETRAINED[KERAS_IMAGENET[version]]
    return PRETRAINED.get(weights) if isinstance(weights, str) else None


def resolve(weights, version="v2"):
    """`backbone_weights` as a builder takes it: None (random), or a local file path.

    Names in `PRETRAINED` (and `imagenet`) are downloaded once and converted once; later calls read the
    cache. Raises `HQDepthError` naming the file, its source and the `backbone_weights=PATH` alternative
    when the file is missing and cannot be fetched.
    """
    if weights in (None, NONE):
        return None
    entry = _entry(weights, version)
    if entry is None:
        path = Path(weights)
        if not path.exists():
            raise HQDepthError(f"backbone weights file not found: {path}")
        return str(path)
    converted = cache_dir() / "hqdepth" / f"{entry.name}.weights.h5"
    if entry.converter and converted.is_file():
        return str(converted)
    downloaded = _download(entry)
    if not entry.converter:
        return downloaded
    converted.parent.mkdir(parents=True, exist_ok=True)
    partial = converted.with_name(converted.name + ".partial.weights.h5")
    _convert(entry, downloaded, partial)
    os.replace(partial, converted)
    return str(converted)


def _download(entry):
    """The cached file (or unpacked folder) of `entry`, downloading it only when it is not cached."""
    import keras

    archive = cache_dir() / entry.file
    unpacked = cache_dir() / f"{entry.file[: entry.file.find('.')]}_extracted"  # keras.utils.get_file's name
    if entry.extract and unpacked.is_dir():
        return str(unpacked)
    if archive.exists() and entry.file_hash:  # checked here: keras.utils.get_file would download it again
        from keras.src.utils.file_utils import validate_file

        if not validate_file(str(archive), entry.file_hash):
            raise HQDepthError(f"{archive} does not match the published hash {entry.file_hash} of {entry.file} "
                               f"(incomplete or another file): delete it to download it again, or pass your own "
                               f"file with --set model.options.backbone_weights=PATH.")
        return str(archive)
    if not archive.exists() and offline():
        raise HQDepthError(_missing_message(entry, f"{OFFLINE_ENV} is set, so nothing is downloaded"))
    try:  # a cached archive is only checked (and unpacked), not fetched again
        return keras.utils.get_file(entry.file, entry.url, file_hash=entry.file_hash, cache_subdir="models",
                                    cache_dir=str(cache_dir().parent), extract=entry.extract)
    except Exception as error:  # no network, proxy, wrong hash: the message says what to do instead
        raise HQDepthError(_missing_message(entry, f"{error.__class__.__name__}: {error}")) from None


def _convert(entry, source, out):
    from hqdepth.weights import convert

    if entry.converter == "slim":
        return convert(CONVERTER_FORMAT[entry.converter], _slim_checkpoint(Path(source)), out)
    return convert(CONVERTER_FORMAT[entry.converter], source, out)


def _slim_checkpoint(folder):
    """The checkpoint prefix inside an unpacked slim tarball (`resnet_v2_50.ckpt`)."""
    if folder.is_file():
        return str(folder)
    indexes = sorted(folder.rglob("*.ckpt.index")) or sorted(folder.rglob("*.index"))
    plain = sorted(folder.rglob("*.ckpt"))
    if indexes:
        return str(indexes[0])[: -len(".index")]
    if plain:
        return str(plain[0])
    raise HQDepthError(f"{folder}: no TF checkpoint (*.ckpt) inside the unpacked {folder.name} archive.")


def _missing_message(entry, reason):
    local = cache_dir() / entry.file
    how = (f"then pass it with --set model.options.backbone_weights=PATH (the downloaded file; it is converted "
           f"on first use) or put it at {local}") if not entry.converter else (
        f"then either put it at {local} (converted on first use), or convert it yourself with "
        f"`hqdepth weights convert --from {CONVERTER_FORMAT[entry.converter]} SRC OUT.weights.h5` and pass --set model.options.backbone_weights=OUT.weights.h5")
    return (f"the initialisation {entry.name!r} ({entry.description}; used by {entry.used_by}) needs the file "
            f"{entry.file}, which is not in {cache_dir()} and could not be downloaded ({reason}). Download "
            f"{entry.url} on a machine with network access, {how}. To train from random weights instead, say so: "
            f"--set model.options.backbone_weights=none (frozen layers must then be unfrozen).")


def model_options(config):
    """The model options of a resolved recipe with `backbone_weights` replaced by what the builder takes."""
    model = config["model"]
    options = dict(model.get("options") or {})
    if has_backbone(model["name"], options) and "backbone_weights" in options:
        # with model.init the trained weights replace every initialisation: nothing to fetch
        weights = NONE if model.get("init") else options["backbone_weights"]
        options["backbone_weights"] = resolve(weights, backbone_version(model["name"], options))
    return options


def describe(weights):
    """One line for `hqdepth recipes`: what an initialisation setting means."""
    if weights is None:
        return "not set (required: a PRETRAINED name, imagenet, a file, or none)"
    if weights == NONE:
        return "none: random He-normal initialisation"
    if weights == "imagenet":
        return "imagenet: Keras' ImageNet file for the backbone version"
    if weights in PRETRAINED:
        entry = PRETRAINED[weights]
        return f"{entry.name}: {entry.description} ({entry.url})"
    return f"file {weights}"
