"""What every dataset source yields, and the SPEC-string registry that selects a source.

A SPEC is `<kind>:<argument>` (e.g. `nyu-mat:PATH`, `list:FILE@ROOT`, `tfrecord:DIR`) or a bare
kind (`synthetic`). Each source module registers its kind with `@register_source("kind")`.
"""

from dataclasses import dataclass, field

import numpy as np

from hqdepth.errors import ConfigError


@dataclass
class Sample:
    """One RGB-D pair: rgb uint8 (H, W, 3); depth float32 metres (H, W, 1), 0 = no ground truth."""

    rgb: np.ndarray
    depth: np.ndarray
    meta: dict = field(default_factory=dict)  # "id" always; "focal" (pixels) when known


class Source:
    """A finite, indexable collection of samples of one split. Subclasses set `kind`; `without_ground_truth` lists
    where each entry the source dropped for lack of ground truth is (e.g. "list.txt:12"; evaluations count them
    as skipped)."""

    kind = None
    without_ground_truth = ()

    def __len__(self):
        raise NotImplementedError

    def __getitem__(self, index) -> Sample:
        raise NotImplementedError

    def lines_without_ground_truth(self, count):
        """`without_ground_truth` when the first `count` samples are all of them, else [] (a part of the source
        says nothing of where the dropped lines fall)."""
        return list(self.without_ground_truth) if count == len(self) else []

    def depth_sample(self, index) -> Sample:
        """Sample `index` for a training pipeline, which reads rgb, depth and meta's id and focal only; a
        source whose other meta (e.g. geometric ground truth) costs work may leave it out."""
        return self[index]

    def __iter__(self):
        for index in range(len(self)):
            yield self[index]

    def sample_names(self):
        """The files (or names) of the samples without reading them, for telling whether two splits share
        samples (a folder or list without splits gives the same ones for every split); None when unknown."""
        return None


_SOURCES = {}


def register_source(kind):
    """Class decorator: `kind` -> factory `cls(argument, split=..., **options)`."""

    def decorator(cls):
        cls.kind = kind
        _SOURCES[kind] = cls
        return cls

    return decorator


def parse_spec(spec):
    """'kind:argument' -> (kind, argument); a bare 'kind' has argument None."""
    kind, _, argument = str(spec).partition(":")
    return kind, (argument or None)


def open_source(spec, split="train", **options):
    """The Source a SPEC string names, for `split` ("train", "val" or "test")."""
    from hqdepth.data import _register_all  # noqa: F401  (imports every source module)

    kind, argument = parse_spec(spec)
    if kind not in _SOURCES:
        raise ConfigError(f"Unknown dataset kind {kind!r} in SPEC {spec!r}; known: {', '.join(sorted(_SOURCES))}.")
    return _SOURCES[kind](argument, split=split, **options)
