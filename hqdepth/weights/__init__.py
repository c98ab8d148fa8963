"""Weights from other frameworks: converters that turn published checkpoints into files this package loads.

`hqdepth weights convert --from FORMAT SRC OUT` calls `convert(FORMAT, SRC, OUT)`. Formats:

| format | source | writes |
|---|---|---|
| `slim-resnet50-v2` | TF-slim `resnet_v2_50` checkpoint (`resnet_v2_50_2017_04_14`, what HQMDE `train.py` restores) | `OUT.weights.h5` for `resnet50(version="v2", weights=OUT)` / `backbone_weights=OUT` |
| `hqmde` | HQMDE's trained TF1 checkpoint of the whole network (HalleyJiang/HQMDE) | `OUT.keras`: `hqmd_baseline_plus` (or `hqmd_baseline`) |
| `torchvision-resnet50` | torchvision ResNet-50 state dict | see `hqdepth.weights.torch` |
| `bts` | BTS trained PyTorch model | see `hqdepth.weights.torch` |
| `cadene-senet154` | Cadene `pretrainedmodels` SENet-154 state dict (SARPN's / MRPAN's backbone) | `OUT.weights.h5` for `senet154(weights=OUT)` / `mrpan(backbone="senet154", backbone_weights=OUT)` |

Every converter checks the source against the official variable names and shapes both ways: a
variable the target needs and the file lacks, a variable the file has and nothing uses, or a shape
that differs is an error naming the file and the variables (`WeightsFileError`). Variables that are
known not to belong to the network (optimizer slots, step counters, the ImageNet classifier) are
skipped and listed in the returned `ConversionReport`.

The converters run offline; reading TF checkpoints needs only TensorFlow (no TF-slim).
"""

import dataclasses
import importlib

from hqdepth.errors import ConfigError, DataError


class WeightsFileError(DataError):
    """A weights file is missing, unreadable, or does not match the network it is converted to.

    The message names the file and the offending variables.
    """


@dataclasses.dataclass
class ConversionReport:
    """What a converter did.

    Attributes:
        source: the file read.
        out: the file written.
        target: the network the weights are for, in words.
        tensors: number of variables copied.
        values: number of scalar values copied.
        skipped: {reason: [variable names]} for variables of the source that are not network weights.
    """

    source: str
    out: str
    target: str
    tensors: int
    values: int
    skipped: dict = dataclasses.field(default_factory=dict)

    def summary(self):
        """A few lines for the command line."""
        lines = [f"wrote {self.out}: {self.target}",
                 f"  {self.tensors} variables, {self.values:,} values from {self.source}"]
        for reason, names in self.skipped.items():
            shown = ", ".join(names[:3]) + (f", ... ({len(names)} in all)" if len(names) > 3 else "")
            lines.append(f"  skipped {len(names)} ({reason}): {shown}")
        return "\n".join(lines)


# format -> (module, function). The torch converters live in another module that may be absent.
CONVERTERS = {
    "slim-resnet50-v2": ("hqdepth.weights.slim", "convert_slim_resnet_v2_50"),
    "hqmde": ("hqdepth.weights.slim", "convert_hqmde"),
    "torchvision-resnet50": ("hqdepth.weights.torch", "convert_torchvision_resnet50"),
    "bts": ("hqdepth.weights.torch", "convert_bts"),
    "cadene-senet154": ("hqdepth.weights.torch", "convert_senet154"),
}
FORMATS = tuple(CONVERTERS)


def get_converter(source_format):
    """The converter function for `source_format` (imported only now)."""
    if source_format not in CONVERTERS:
        raise ConfigError(f"unknown weights format {source_format!r}; choose one of {', '.join(FORMATS)}.")
    module_name, function_name = CONVERTERS[source_format]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name not in (module_name, None):
            raise ConfigError(f"the {source_format!r} converter needs the Python package {error.name!r}, "
                              f"which is not installed ({error}).") from None
        raise ConfigError(f"the {source_format!r} converter is not available in this installation "
                          f"({module_name} is missing).") from None
    function = getattr(module, function_name, None)
    if function is None:
        raise ConfigError(f"the {source_format!r} converter is not available in this installation "
                          f"({module_name} has no {function_name}).")
    return function


def convert(source_format, src, out, **options):
    """Convert `src` (a file of `source_format`, see the table above) into `out`; extra options go to the converter."""
    return get_converter(source_format)(src, out, **options)


__all__ = ["CONVERTERS", "FORMATS", "ConversionReport", "WeightsFileError", "convert", "get_converter"]
