"""Model families, one module each; `registry` maps names to builders; `depth_model` is the one-output
inference view of any of them (`inference`)."""

from hqdepth.models.inference import depth_model
from hqdepth.models.registry import build_model, get_entry, list_models, register_model, size_multiple

__all__ = ["build_model", "depth_model", "get_entry", "list_models", "register_model", "size_multiple"]
