"""Datasets: sources (selected by SPEC strings), augmentation and tf.data pipelines."""

from hqdepth.data.base import Sample, Source, open_source, parse_spec, register_source

__all__ = ["Sample", "Source", "open_source", "parse_spec", "register_source"]
