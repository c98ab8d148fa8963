"""Model registry: name -> builder, default input size and a one-line description."""

from dataclasses import dataclass

from hqdepth.errors import ConfigError


@dataclass(frozen=True)
class ModelEntry:
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
    trainer can refuse a size before building anything."""

    def decorator(builder):
        _REGISTRY[name] = ModelEntry(name, builder, tuple(input_size), description, paper, decoder_variables,
                                     size_multiple)
        return builder

    return decorator


def _load_families():
    # Importing a family module registers its builders.
    from hqdepth.models import bts, deeplab, fcn, mrpan, transposed  # noqa: F401


def list_models():
    _load_families()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_entry(name):
    _load_families()
    if name not in _REGISTRY:
        raise ConfigError(f"Unknown model {name!r}; registered models: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name]


def size_multiple(name, options=None):
    """What the input height and width of model `name` (built with `options`) must be multiples of; 1 = any."""
    multiple = get_entry(name).size_multiple
    return int(multiple(**(options or {})) if callable(multiple) else multiple)


def build_model(name, input_shape=None, **options):
    """Build a registered model. `input_shape` defaults to (None, None, 3): any image size."""
    entry = get_entry(name)
    return entry.builder(input_shape=input_shape or (None, None, 3), **options)
