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


_REGISTRY = {}


def register_model(name, input_size, description, paper):
    """Decorator: register a builder `fn(input_shape=..., **options) -> keras.Model` under `name`."""

    def decorator(builder):
        _REGISTRY[name] = ModelEntry(name, builder, tuple(input_size), description, paper)
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


def build_model(name, input_shape=None, **options):
    """Build a registered model. `input_shape` defaults to (None, None, 3): any image size."""
    entry = get_entry(name)
    return entry.builder(input_shape=input_shape or (None, None, 3), **options)
