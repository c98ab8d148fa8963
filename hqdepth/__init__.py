"""hqdepth: supervised monocular depth estimation (HQMD and its family) in Keras 3.

Importing the package is cheap: Keras/TensorFlow load only when a submodule that needs them is used.

    model = hqdepth.load("runs/hqmd")            # a run folder, a .keras file or a SavedModel
    depth = hqdepth.predict(model, "photo.jpg")  # metres, float32 (H, W) at the photo's size
"""

__version__ = "0.1.0"

__all__ = ["Recipe", "__version__", "load", "predict", "recipe", "register_keras_objects"]


def recipe(source, overrides=None, sets=(), config_files=()):
    """A paper recipe (name, YAML/JSON file or dict) as Keras pieces: `build_model`, `compile`, `datasets`,
    `callbacks`, `evaluate`, `train` (`hqdepth.training.api.Recipe`)."""
    from hqdepth.training.api import recipe as _recipe

    return _recipe(source, overrides=overrides, sets=sets, config_files=config_files)


def load(path):
    """A depth model (`hqdepth.predict.DepthModel`) for a `.keras` file, a SavedModel or a training run folder
    (`RUN/checkpoints/best.keras`, else `RUN/model.keras`, else `RUN/checkpoints/latest.keras`)."""
    from hqdepth.predict import load as _load

    return _load(path)


def __getattr__(name):  # PEP 562: `hqdepth.predict` is the callable module `hqdepth.predict` (imported on first use)
    if name == "predict":
        import importlib

        return importlib.import_module("hqdepth.predict")
    if name == "Recipe":
        from hqdepth.training.api import Recipe

        return Recipe
    if name == "register_keras_objects":  # what `keras.models.load_model` needs for hqdepth's .keras files
        from hqdepth.depth_model import register_keras_objects

        return register_keras_objects
    raise AttributeError(f"module 'hqdepth' has no attribute {name!r}")
