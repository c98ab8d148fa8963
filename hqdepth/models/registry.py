"""Model registry: name -> builder, default input size, description and sizes.

Two halves, so that listing the models costs nothing:

- `CATALOG` is data: for every model shipped with the package, the module that defines it, the
  paper's input size, a one-line description, its parameter counts at the default options and
  whether it uses dilated convolutions. `hqdepth models` prints it without importing Keras,
  TensorFlow or any model module. `tests/test_registry.py` builds every model and checks each
  stored number against the built one, so the data cannot drift from the code.
- `register_model` (a decorator in each family module) attaches the builder and the family's
  hooks (decoder variables, size multiple). `get_entry(name)` imports only the module `CATALOG`
  names for that model; models registered outside the catalog (plugins, tests) are found by
  importing every family.
"""

import importlib
import numbers
import re
from dataclasses import dataclass

from hqdepth.errors import ConfigError


@dataclass(frozen=True)
class ModelInfo:
    """What is known about a shipped model without building it (one row of `hqdepth models`).

    `params` / `trainable_params`: `model.count_params()` and the trainable part when built with the
    default options at `input_size` (batch-norm moving statistics and frozen layers are in `params`
    only). `atrous`: whether the default model has dilated convolutions (`AtrousConv2D`), the layers
    whose kernels depend on the CPU and the compute dtype (see `hqdepth.layers.conv`).
    """

    name: str
    module: str
    input_size: tuple  # (height, width) the paper uses
    description: str
    params: int
    trainable_params: int
    atrous: bool


CATALOG = {info.name: info for info in (
    ModelInfo("bts", "hqdepth.models.bts", (416, 544),
              "BTS: ResNet-50 + dense ASPP + local planar guidance (DenseNet-161 option)",
              47_575_344, 47_453_616, True),
    ModelInfo("fcn_autoencoder", "hqdepth.models.fcn", (480, 640),
              "FCN encoder-decoder, ~0.5 M params, SSIM+MSE loss (reconstructed)",
              509_681, 508_337, False),
    ModelInfo("hqmd_baseline", "hqdepth.models.deeplab", (289, 385),
              "HQMD baseline: DeepLabv3+ R50-v2 OS16, logits upsampled from 1/4",
              40_398_785, 40_125_665, True),
    ModelInfo("hqmd_baseline_plus", "hqdepth.models.deeplab", (289, 385),
              "HQMD baseline+: DeepLabv3+ R50-v2 OS16, decoding at image size",
              40_435_473, 40_162_321, True),
    ModelInfo("mrpan", "hqdepth.models.mrpan", (228, 304),
              "MRPAN: SARPN residual pyramid + attention (SAM/GAM) + improved RRM, five outputs "
              "(reconstructed parts)",
              172_298_813, 172_214_877, False),
    ModelInfo("resnet50_transposed", "hqdepth.models.transposed", (224, 224),
              "ResNet-50 (frozen stem..conv4) + 5 stride-2 transposed convs, 224x224",
              43_122_305, 34_508_673, False),
)}

# The modules that register models (every module named in CATALOG, plus any family without an entry yet).
FAMILY_MODULES = ("hqdepth.models.bts", "hqdepth.models.deeplab", "hqdepth.models.fcn", "hqdepth.models.mrpan",
                  "hqdepth.models.transposed")


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its builder and the hooks the trainer needs (from `register_model`)."""

    name: str
    builder: object
    input_size: tuple  # (height, width) the paper uses
    description: str
    paper: str
    # model -> its decoder's trainable variables (for `optimizer.decay_encoder_only`), or None
    decoder_variables: object = None
    # what input height and width must be multiples of: an int, or fn(**options) -> int
    size_multiple: object = 1


_REGISTRY = {}


def register_model(name, input_size, description, paper, decoder_variables=None, size_multiple=1):
    """Decorator: register a builder `fn(input_shape=..., **options) -> keras.Model` under `name`.

    `decoder_variables(model)`, when the family has one, lists the decoder's trainable variables
    (everything else is the encoder): the trainer exempts them from weight decay when a recipe sets
    `optimizer.decay_encoder_only` (BTS decays the encoder only). `size_multiple`: what the input
    height and width must be multiples of (an int, or a function of the builder's options), so the
    trainer can refuse a size before building anything. A model shipped with the package also needs
    its row in `CATALOG` (the test suite checks that both agree)."""

    def decorator(builder):
        _REGISTRY[name] = ModelEntry(name, builder, tuple(input_size), description, paper, decoder_variables,
                                     size_multiple)
        return builder

    return decorator


def _load_families():
    # Importing a family module registers its builders.
    for module in FAMILY_MODULES:
        importlib.import_module(module)


def model_catalog():
    """Every shipped model's `ModelInfo`, sorted by name. Imports nothing: no Keras, no TensorFlow."""
    return [CATALOG[name] for name in sorted(CATALOG)]


def list_models():
    """Every registered `ModelEntry` (builders included), sorted by name. Imports every model family."""
    _load_families()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_entry(name):
    """The `ModelEntry` of model `name`, importing only its family module when the catalog names it.

    Raises `ConfigError` listing the known names when there is no such model."""
    if name not in _REGISTRY:
        if name in CATALOG:
            importlib.import_module(CATALOG[name].module)
        else:
            _load_families()
    if name not in _REGISTRY:
        known = sorted(set(_REGISTRY) | set(CATALOG))
        raise ConfigError(f"Unknown model {name!r}; registered models: {', '.join(known)}.")
    return _REGISTRY[name]


def size_multiple(name, options=None):
    """What the input height and width of model `name` (built with `options`) must be multiples of; 1 = any."""
    multiple = get_entry(name).size_multiple
    return int(multiple(**(options or {})) if callable(multiple) else multiple)


def check_options(name, options):
    """`ConfigError` now for an option (a recipe's model.options, a --set) that model `name`'s builder does not
    take, before any data is read or anything built. A builder that forwards **options names the function that
    takes them as its `options_from` (and those it sets itself as `fixed_options`); one that does not is checked
    when it runs (`build_model`)."""
    import inspect

    entry = get_entry(name)
    parameters = inspect.signature(getattr(entry.builder, "options_from", entry.builder)).parameters
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
        return
    fixed = ("input_shape", *getattr(entry.builder, "fixed_options", ()))
    for option in options or {}:
        if option not in parameters or option in fixed:
            raise _unknown_option(name, entry, option)


def _unknown_option(name, entry, option):
    builder = f"{entry.builder.__module__}.{entry.builder.__name__}"
    return ConfigError(f"model {name!r} has no option {option!r} (model.options); its builder {builder} lists the "
                       f"options it takes.")


def build_model(name, input_shape=None, **options):
    """Build a registered model. `input_shape` defaults to (None, None, 3): any image size."""
    entry = get_entry(name)
    depth = options.get("max_depth")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, numbers.Real) or not depth > 0):
        raise ConfigError(f"model {name!r}: max_depth={depth!r} must be a positive number of metres (model.options).")
    try:
        return entry.builder(input_shape=input_shape or (None, None, 3), **options)
    except TypeError as error:  # an option the family does not have: a recipe's model.options, a --set
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(error))
        fixed = re.search(r"multiple values for keyword argument '(\w+)'", str(error))
        if fixed is not None and fixed.group(1) in options:
            raise ConfigError(f"model {name!r} sets {fixed.group(1)} itself; it is not one of its options "
                              "(model.options).") from None
        if unknown is None or unknown.group(1) not in options:
            raise
        raise _unknown_option(name, entry, unknown.group(1)) from None
