"""Training: recipes (data), learning-rate schedules, callbacks and the `model.fit` engine.

Importing the package loads nothing heavy: `hqdepth.training.recipes` is plain Python (no Keras), so
`hqdepth recipes` answers without TensorFlow; `build_schedule` loads Keras on first use.
"""

from hqdepth.training.recipes import get_recipe, list_recipes, resolve_config  # noqa: F401


def __getattr__(name):  # PEP 562: `hqdepth.training.build_schedule` imports the schedules (Keras) on first use
    if name == "build_schedule":
        from hqdepth.training.schedules import build_schedule

        return build_schedule
    raise AttributeError(f"module 'hqdepth.training' has no attribute {name!r}")
