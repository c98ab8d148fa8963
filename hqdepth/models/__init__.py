"""Model families, one module each; `registry` maps names to builders."""

from hqdepth.models.registry import build_model, get_entry, list_models, register_model

__all__ = ["build_model", "get_entry", "list_models", "register_model"]
