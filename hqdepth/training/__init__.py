"""Training: recipes (data), learning-rate schedules, callbacks and the `model.fit` engine."""

from hqdepth.training.recipes import get_recipe, list_recipes, resolve_config  # noqa: F401
from hqdepth.training.schedules import build_schedule  # noqa: F401
