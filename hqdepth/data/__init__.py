"""Datasets: sources (selected by SPEC strings), augmentation and tf.data pipelines."""

from hqdepth.data.base import Sample, Source, open_source, parse_spec, register_source

__all__ = ["Sample", "Source", "open_source", "parse_spec", "register_source"]
__all__ += ["load"]


def __getattr__(name):  # `load` imports TensorFlow, so it is resolved on first use (PEP 562)
    if name == "load":
        from hqdepth.data.pipeline import load

        return load
    raise AttributeError(f"module 'hqdepth.data' has no attribute {name!r}")
