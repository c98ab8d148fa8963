"""Loading depth models: `load(path)` gives a `DepthModel` for a `.keras` file, a SavedModel folder or a training
run folder (`RUN/checkpoints/best.keras`, else `RUN/model.keras`, else `RUN/checkpoints/latest.keras`;
`RUN/config.yaml` gives name and sizes), and the size each image runs at (`DepthModel.run_size`, `free_size`).
Importing this module is cheap (NumPy only): Keras/TensorFlow load with the model."""

import copy
import json
import math
from pathlib import Path

import numpy as np

from hqdepth.errors import ConfigError, DataError
from hqdepth.protocols import PROTOCOLS

# Checkpoint preference inside a training run folder, with the word used to report which one was used.
RUN_MODELS = (("checkpoints/best.keras", "best checkpoint"), ("model.keras", "final model"),
              ("checkpoints/latest.keras", "latest checkpoint"))
FREE_SIZE_MULTIPLE = 32  # a model with a free input size runs at 32k+1 (like the paper's 289x385 = 32*9+1 x 32*12+1)
FREE_SIZE_MAX_SIDE = 1024  # ... after scaling the image down so that its longer side is at most this
KITTI_MAX_SIDE = 1280  # ... at most this for a recipe that tests KITTI frames at their own size (KB crop): up to 1242


def _read_config(path):
    import yaml

    from hqdepth.training.recipes import load_yaml

    try:
        config = load_yaml(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise DataError(f"cannot read the run configuration {path}: {error}") from None
    if not isinstance(config, dict):
        raise DataError(f"run configuration {path} is not a mapping of keys to values.")
    return config


def _is_run_folder(path):
    return (path / "config.yaml").is_file() or (path / "checkpoints").is_dir() or (path / "model.keras").is_file()


def resolve_model_path(path):
    """(what to load, run folder or None, a sentence saying what was chosen) for a model argument."""
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return path, None, f"SavedModel {path}"
        exported = (path / "model.keras").is_file() and (path / EXPORT_METADATA).is_file()
        if exported and not (path / "config.yaml").is_file():
            return path / "model.keras", None, f"Keras export {path}"
        if _is_run_folder(path):
            for relative, what in RUN_MODELS:
                if (path / relative).is_file():
                    return path / relative, path, f"run {path}: {what} {path / relative}"
            raise DataError(f"{path} is a training run folder without a model: none of "
                            f"{', '.join(relative for relative, _ in RUN_MODELS)} exists.")
        raise DataError(f"{path} is a folder without saved_model.pb, not a SavedModel nor a training run folder "
                        f"(config.yaml, checkpoints/best.keras, model.keras).")
    if path.is_file():
        if path.suffix != ".keras":
            raise DataError(f"{path}: expected a .keras model file, a SavedModel folder or a training run folder.")
        # A checkpoint inside a run folder (RUN/model.keras, RUN/checkpoints/*.keras) takes the run's config.
        run = next((folder for folder in (path.parent, path.parent.parent) if (folder / "config.yaml").is_file()),
                   None)
        return path, run, f"Keras model {path}"
    raise DataError(f"model not found: {path}")


EXPORT_METADATA = "hqdepth.json"  # hqdepth.export.METADATA_FILE, beside an exported model.keras / in assets.extra


def _nested(config, *keys):
    for key in keys:
        if not isinstance(config, dict):
            return None
        config = config.get(key)
    return config


def _config_size(config, where):
    size = _nested(config, "data", "input_size")
    if size is None:
        return None
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise DataError(f"{where}: data.input_size must be [H, W], got {size!r}.") from None
    return height, width


def _fixed_size(shape):
    shape = tuple(shape)
    if len(shape) != 4 or shape[-1] not in (3, None):
        raise DataError(f"model input shape {shape} is not an RGB batch (N, H, W, 3).")
    height, width = shape[1], shape[2]
    return (int(height), int(width)) if height is not None and width is not None else None


def free_size(height, width, multiple=FREE_SIZE_MULTIPLE, max_side=FREE_SIZE_MAX_SIDE, plus_one=True):
    """The size a model with a free input size runs an image at when nothing else says: the image scaled down
    so that its longer side is at most `max_side`, each side then rounded to the nearest k * multiple + 1
    (at least multiple + 1), or with `plus_one=False` to the nearest k * multiple (at least multiple: models
    whose registry `size_multiple` asks for it, e.g. BTS 32). The exported SavedModel computes the default in
    its graph."""
    scale = min(1.0, max_side / max(height, width))
    offset = 1 if plus_one else 0
    return tuple(max(1, int(math.floor((side * scale - offset) / multiple + 0.5))) * multiple + offset
                 for side in (height, width))


def _find_max_depth(model):
    from hqdepth.layers.heads import ScaledSigmoid

    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        if isinstance(layer, ScaledSigmoid):
            return float(layer.max_depth)
        stack.extend(getattr(layer, "layers", []))
    return None


SERIALIZABLE_MODULES = ("hqdepth.layers", "hqdepth.losses", "hqdepth.metrics", "hqdepth.models.mrpan",
                        "hqdepth.training.optimizers", "hqdepth.training.schedules")


def register_keras_objects():
    """Register hqdepth's serializable Keras objects (layers, losses, metrics, MRPAN's model class, the optimizer
    and schedules of a training checkpoint), so that `keras.models.load_model` reads hqdepth's `.keras` files.
    Importing a module registers its objects; `import hqdepth` alone does not (it does not import Keras)."""
    import importlib

    for module in SERIALIZABLE_MODULES:
        importlib.import_module(module)


class DepthModel:
    """A loaded depth model: float32 RGB 0..255 batch (N, H, W, 3) -> metres (N, H', W').

    Attributes: `path` (what was given), `loaded` (the file or folder loaded), `note` (which one, in words),
    `input_size` (the fixed (H, W) of the model input, or None when it takes any size), `config_size` (a run
    config's `data.input_size`), `max_depth` (metres, from the `ScaledSigmoid` head, the run config or export
    metadata; None if unknown), `name`, `config` (the run's resolved recipe or None), `keras_model` (None for a
    SavedModel), `metadata` (the export metadata of a SavedModel made by `hqdepth export`), `reference_focal` (the
    focal length in pixels a focal-aware model's depth is relative to, from the Keras model or an export's metadata,
    else None), `trained_size` (the fixed
    input size the model was built with before `at_free_size`, else its `input_size`).

    Calling it with `focal=` (pixels, one value or one per image) runs a focal-aware model with that focal length
    (BTS KITTI: depth x focal / 715.0873); without it, or for a model without a focal input, the reference focal
    (the depth is not rescaled).
    """

    _keras_source = None  # the Keras model as loaded (all outputs and inputs), None for a SavedModel
    _focal_model = None  # its (image, focal) -> depth view, for focal-aware models
    reference_focal = None
    trained_size = None
    size_override = None  # `hqdepth predict --input-size`: the size a free-size model runs every image at

    def __init__(self, path):
        path = Path(path)
        self.path = path
        self.loaded, self.run, self.note = resolve_model_path(path)
        self.config = _read_config(self.run / "config.yaml") if self.run and (self.run / "config.yaml").is_file() \
            else None
        self.keras_model = None
        self.metadata = None
        self.max_depth = None
        self.name = None
        if self.loaded.is_dir():
            self._load_saved_model(self.loaded)
        else:
            self._load_keras(self.loaded)
            if self.config is None:  # an exported model.keras: its metadata carries the run's recipe
                self._use_metadata(self.loaded.parent / EXPORT_METADATA)
        self._finish()

    @classmethod
    def from_keras(cls, model, config=None, note=None):
        """Wrap an in-memory `keras.Model` (optionally with a run config dict)."""
        self = cls.__new__(cls)
        self.path = self.loaded = self.run = None
        self.note = note or f"in-memory Keras model {model.name!r}"
        self.config, self.metadata = config, None
        self._use_keras(model)
        self._finish()
        return self

    def _finish(self):
        where = self.run / "config.yaml" if self.run else "run configuration"
        self.config_size = _config_size(self.config, where) if self.config else None
        if self.metadata and self.input_size is None and self.metadata.get("input_size"):
            self.config_size = tuple(self.metadata["input_size"])
        if self.max_depth is None and self.config:
            value = _nested(self.config, "model", "options", "max_depth") or _nested(
                self.config, "evaluation", "max_depth")
            self.max_depth = float(value) if value is not None else None
        if self.config and (_nested(self.config, "name") or _nested(self.config, "model", "name")):
            self.name = str(_nested(self.config, "name") or _nested(self.config, "model", "name"))

    def _load_keras(self, path):
        import keras

        register_keras_objects()
        try:
            model = keras.saving.load_model(path, compile=False)
        except Exception as error:  # keras raises many types for a bad file
            raise DataError(f"cannot load the Keras model {path}: {error}") from None
        self._use_keras(model, path)

    def _use_keras(self, model, path=None):
        from hqdepth.models.inference import depth_model, reference_focal

        focal = reference_focal(model) if len(model.inputs) > 1 else None
        if focal is not None:
            self.note += f" (focal input: depth x focal / {focal:g} px; {focal:g} px when no focal is given)"
        if len(model.outputs) > 1:
            self.note += f" (finest of {len(model.outputs)} outputs, resized to the input)"
        self._keras_source, self.reference_focal = model, focal
        try:
            self._focal_model = depth_model(model) if focal is not None else None
            model = depth_model(model, fix_focal=True)  # one image in, the final depth out
        except ConfigError as error:
            raise DataError(f"{path or model.name}: {error}") from None
        self.keras_model = model
        self.input_size = _fixed_size(model.inputs[0].shape)
        self.trained_size = self.input_size
        self.max_depth = _find_max_depth(model)
        self.name = model.name
        self._call = lambda batch: model(batch, training=False)

    def _load_saved_model(self, path):
        import tensorflow as tf

        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as error:
            raise DataError(f"cannot load the SavedModel {path}: {error}") from None
        serve = getattr(loaded, "serve", None)
        if serve is not None and getattr(serve, "input_signature", None):
            spec = serve.input_signature[0]
            self._call = serve
        elif "serving_default" in loaded.signatures:
            signature = loaded.signatures["serving_default"]
            specs = signature.structured_input_signature[1]
            if len(specs) != 1:
                raise DataError(f"{path}: serving signature takes {len(specs)} inputs, expected one RGB batch.")
            (key, spec), = specs.items()
            if spec.dtype != tf.float32:
                raise DataError(f"{path}: its serving_default takes {spec.dtype.name}, and it has no float32 `serve` "
                                "endpoint.")
            self._call = lambda batch: signature(**{key: tf.constant(batch)})
        else:
            raise DataError(f"{path}: SavedModel has neither a `serve` endpoint nor a serving_default signature.")
        self._keep = loaded
        self.input_size = _fixed_size(spec.shape)
        self._use_metadata(path / "assets.extra" / EXPORT_METADATA)
        self.name = self.name or path.name

    def _use_metadata(self, meta_file):
        """Take name, max depth and run config from an export's metadata file (`hqdepth export`), if there is one."""
        if not meta_file.is_file():
            return
        try:
            self.metadata = json.loads(meta_file.read_text())
        except (OSError, ValueError) as error:
            raise DataError(f"cannot read {meta_file}: {error}") from None
        if not isinstance(self.metadata, dict):
            raise DataError(f"{meta_file}: expected a JSON object, as `hqdepth export` writes.")
        self.max_depth = self.metadata.get("max_depth", self.max_depth)
        self.name = self.metadata.get("model_name") or self.name
        focal = self.metadata.get("reference_focal")
        if focal and self.reference_focal is None:  # an export of a focal-aware model: scaled by `__call__`'s focal
            self.reference_focal = float(focal)
            self.note += f" (focal-aware: depth x focal / {focal:g} px; {focal:g} px when no focal is given)"
        if self.config is None and isinstance(self.metadata.get("recipe"), dict):
            self.config = self.metadata["recipe"]

    def test_input(self):
        """How the run's recipe tests the model: its evaluation protocol's `test_input` ("native", "kb_crop",
        "resize", "hqmd", "hu"; see `hqdepth.protocols.Protocol`), or None without a run configuration."""
        protocol = _nested(self.config, "evaluation", "protocol") if self.config else None
        if not protocol:
            return None
        options = _nested(self.config, "evaluation", "protocol_options") or {}
        if protocol == "custom":
            return options.get("test_input") or ("kb_crop" if options.get("kb_crop") else "resize")
        return options.get("test_input") or (PROTOCOLS[protocol].test_input if protocol in PROTOCOLS else None)

    def family(self):
        """The registered model family this model is: the run config's `model.name`, else the model's own name
        when a family has it (a converted or saved `.keras` file without a run beside it: bts, fcn_autoencoder,
        ...), else None."""
        from hqdepth.models import registry

        name = _nested(self.config, "model", "name") if self.config else None
        if name:
            return name
        return self.name if self.name in {entry.name for entry in registry.list_models()} else None

    def size_multiple(self):
        """What the model's input height and width must be multiples of (registry `size_multiple` of its family,
        `family`; without a run config, at the family's default options), or None when unknown."""
        name = self.family()
        if not name:
            return None
        from hqdepth.models import size_multiple

        try:
            return size_multiple(name, (_nested(self.config, "model", "options") if self.config else None) or {})
        except (ConfigError, TypeError):
            return None

    def check_size(self, height, width, what):
        """ConfigError starting with `what` (e.g. "--input-size 375x1242") when this model, with a free input size,
        cannot run at (height, width): the run's model needs multiples (BTS: 32, its decoder joins features of 1/2
        to 1/32 of the size), rather than a shape error from inside the network."""
        multiple = self.size_multiple()
        if self.input_size is not None or not multiple or multiple <= 1 or not (height % multiple or width % multiple):
            return
        near = "x".join(str(max(multiple, int(side / multiple + 0.5) * multiple)) for side in (height, width))
        raise ConfigError(f"{what}: {self.family()} needs sides that are multiples of "
                          f"{multiple} (nearest {near}).")

    def at_free_size(self):
        """This model taking images of any size (weights shared, `hqdepth.models.inference.free_size_model`);
        itself when its input size is already free. A SavedModel with a fixed input size cannot be rebuilt:
        DataError naming the size."""
        if self.input_size is None:
            return self
        if self._keras_source is None:
            raise DataError(f"{self.loaded}: this SavedModel takes {self.input_size[0]}x{self.input_size[1]} images "
                            "only and cannot be rebuilt with a free input size; evaluate its .keras file (or run "
                            "folder), or export it with a free size.")
        from hqdepth.models.inference import free_size_model

        try:
            free = free_size_model(self._keras_source)
        except ConfigError as error:
            raise DataError(f"{self.loaded or free.name}: {error}") from None
        other = DepthModel.from_keras(free, config=self.config, note=(
            f"{self.note.split(' (')[0]} (rebuilt with a free input size from {self.input_size[0]}x"
            f"{self.input_size[1]}, weights shared)"))
        other.path, other.loaded, other.run, other.metadata = self.path, self.loaded, self.run, self.metadata
        other.trained_size = self.input_size
        other.max_depth = self.max_depth if other.max_depth is None else other.max_depth
        if other.config_size is None:
            other.config_size = self.input_size
        return other

    def run_size(self, height, width):
        """The (H, W) an image of (height, width) is run at: the fixed input size; for a model with a free
        size, the run config's `data.input_size` when the recipe tests on resized images ("resize", "hqmd" or no
        protocol), else the image's own size (scaled so that its shorter side is 240 for "hu"), longer side at
        most 1024 (1280 for KITTI recipes), rounded to the model's size multiple (`free_size`, `free_size_rule`)."""
        if self.input_size is not None:
            return self.input_size
        if self.size_override is not None:
            return self.size_override
        if self._runs_at_config_size():
            return self.config_size
        if self.test_input() == "hu":
            scale = 240.0 / min(height, width)
            height, width = height * scale, width * scale
        multiple, plus_one, max_side = self.free_size_rule()
        return free_size(height, width, multiple, max_side=max_side, plus_one=plus_one)

    def _runs_at_config_size(self):
        return self.config_size is not None and self.test_input() in (None, "resize", "hqmd")

    def free_size_rule(self):
        """(multiple, plus_one, max_side) of `free_size` for this model: k x its size multiple when the run names a
        model that needs one (BTS: 32), else the default 32k+1; the longer side at most 1280 when the recipe tests
        KITTI frames at native resolution (the KB crop: a 375x1242 frame runs at 384x1248, not scaled to 1024
        wide), else 1024. The SavedModel of a free-size export rounds as this does."""
        multiple = self.size_multiple()
        max_side = KITTI_MAX_SIDE if self.test_input() == "kb_crop" else FREE_SIZE_MAX_SIDE
        return (multiple, False, max_side) if multiple and multiple > 1 else (FREE_SIZE_MULTIPLE, True, max_side)

    def for_photos(self):
        """The model `hqdepth predict` runs: rebuilt with a free input size (`at_free_size`) when the run's
        recipe tests at the image's own resolution ("native", "kb_crop", "hu"), else itself. A SavedModel of
        fixed size, which cannot be rebuilt, runs every photo at that size as its serving_default does, and its
        note (printed with the model line) says so and where the recipe's way is."""
        if self.input_size is not None and self.test_input() in ("native", "kb_crop", "hu"):
            if self._keras_source is None:
                other = copy.copy(self)  # the caller's model keeps its note, however often it predicts
                other.note = (f"{self.note} (runs every image at its export size {self.input_size[0]}x"
                              f"{self.input_size[1]}; its recipe tests at the image's own size: predict from the "
                              ".keras file or run folder for that)")
                return other
            return self.at_free_size()
        return self

    def describe(self):
        """One line: what was loaded, its name, size and depth range."""
        multiple, plus_one, max_side = self.free_size_rule()
        if self.input_size:
            size = "x".join(map(str, self.input_size))
        elif self.size_override:
            size = "free (run at {}x{}, as asked)".format(*self.size_override)
        elif self._runs_at_config_size():
            size = "free (run config {}x{})".format(*self.config_size)
        else:
            size = f"free (image size, longer side <= {max_side}, rounded to {multiple}k{'+1' * plus_one})"
        depth = f"{self.max_depth:g} m" if self.max_depth is not None else "unknown"
        return f"{self.note}; model {self.name}, input {size}, max depth {depth}"

    def __call__(self, batch, focal=None):
        """Depth (N, H', W') float32 for a float32 batch (N, H, W, 3) of RGB 0..255; `focal` (pixels, a number
        or one per image) for a focal-aware model (Keras, or a SavedModel of one), else ignored (the reference
        focal)."""
        batch = np.asarray(batch, dtype=np.float32)
        if focal is not None and self.reference_focal is not None:
            focal = np.broadcast_to(np.asarray(focal, dtype=np.float32).reshape(-1), (len(batch),)).copy()
        else:
            focal = None
        scale = None
        if focal is not None and self._focal_model is not None:
            out = self._focal_model([batch, focal], training=False)
        else:
            out = self._call(batch)
            if focal is not None:  # a SavedModel of a focal-aware model: scaled as its FocalScaling layer scales
                scale = focal / np.float32(self.reference_focal)
        if isinstance(out, dict):
            if len(out) != 1:
                raise DataError(f"{self.loaded}: model returns {len(out)} outputs ({', '.join(out)}); "
                                "expected one depth map.")
            out = next(iter(out.values()))
        if isinstance(out, (list, tuple)):
            if len(out) != 1:
                raise DataError(f"{self.loaded}: model returns {len(out)} outputs; expected one depth map.")
            out = out[0]
        out = np.asarray(out, dtype=np.float32)
        if out.ndim == 4 and out.shape[-1] == 1:
            out = out[..., 0]
        if out.ndim != 3:
            raise DataError(f"{self.loaded}: model output has shape {out.shape}; expected (N, H, W, 1) depth.")
        return out if scale is None else out * scale[:, None, None]


def load(path):
    """A `DepthModel` for a `.keras` file, a SavedModel folder or a training run folder."""
    return DepthModel(path)


def as_model(model):
    """`model` as a `DepthModel`: itself, a path loaded, or a `keras.Model` wrapped."""
    if isinstance(model, DepthModel):
        return model
    if isinstance(model, (str, Path)):
        return DepthModel(model)
    if hasattr(model, "inputs") and hasattr(model, "layers"):
        return DepthModel.from_keras(model)
    raise ConfigError(f"expected a DepthModel, a keras.Model or a path to a model, got {type(model).__name__}.")
