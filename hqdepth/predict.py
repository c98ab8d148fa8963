"""Depth for users' photos: load a model, read images as a viewer shows them, predict metres, write outputs.

- `load(path)`: a `.keras` file, a SavedModel folder or a training run folder (`RUN/checkpoints/best.keras`,
  else `RUN/model.keras`, else `RUN/checkpoints/latest.keras`; `RUN/config.yaml` gives name and sizes).
- `predict(model, image)` (also `hqdepth.predict(model, image)`): metres, float32 (H, W) at the image's size,
  for a path, an array (H, W[, C]), a batch (N, H, W, C) or a list of those.
- `read_image(path)`: RGB uint8 with the EXIF orientation applied, grey/RGBA/16-bit converted.
- `predict_files(...)`: the `hqdepth predict` command: colourised PNG, 16-bit PNG, `.npy` and `.ply` per image.

An image is resized (bilinear, `tf.image.resize` as the data pipeline's test transform) to the size the model runs
at and the depth is resized back the same way; the SavedModel of `hqdepth.export` does the same inside. The size is
the one the run's recipe tests at (`DepthModel.run_size`): a model whose evaluation protocol runs the network at the
image's own resolution (BTS, DenseDepth, Hu/SARPN; `hqdepth.evaluation.Protocol.test_input`) is rebuilt with a free
input size (weights shared) and runs at the photo's size; a resize that changes the aspect ratio by more than 0.5 %
is reported with both sizes, never silent. (`hqdepth
evaluate --model`, through `predict_depth`, resizes with `cv2.resize` INTER_LINEAR like the HQMD evaluation code;
the two differ by float rounding of the sample positions, < 1e-3 of the pixel range.) Importing this module is
cheap (NumPy only): Keras/TensorFlow load with the model.
"""

import glob
import json
import math
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hqdepth.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                  ".pnm", ".pbm", ".jp2")
# Checkpoint preference inside a training run folder, with the word used to report which one was used.
RUN_MODELS = (("checkpoints/best.keras", "best checkpoint"), ("model.keras", "final model"),
              ("checkpoints/latest.keras", "latest checkpoint"))
COLORMAPS = ("plasma", "magma", "turbo", "gray")
FREE_SIZE_MULTIPLE = 32  # a model with a free input size runs at 32k+1 (like the paper's 289x385 = 32*9+1 x 32*12+1)
FREE_SIZE_MAX_SIDE = 1024  # ... after scaling the image down so that its longer side is at most this
FOV_GUESS_DEGREES = 60.0
ASPECT_TOLERANCE = 0.005  # = hqdepth.evaluation.ASPECT_TOLERANCE (not imported: keeps this module light)
SUMMARY_FILE = "predictions.json"


# --------------------------------------------------------------------------------------------- cameras


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels, OpenCV convention: pixel (u, v) = column, row of its centre, 0-based.

    `width`/`height` is the image size they belong to (None: the image they are used with).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int | None = None
    height: int | None = None
    source: str = "given"

    def for_image(self, height, width):
        """These intrinsics for an image of (height, width): scaled when they belong to another size."""
        if self.width is None or (self.width, self.height) == (width, height):
            return self
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5,
                          width, height, f"{self.source}, scaled from {self.width}x{self.height}")

    def to_dict(self):
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "source": self.source}


CAMERAS = {
    # NYU Depth v2 toolbox RGB camera (specs/evaluation_and_data.md §4.1), 640x480.
    "nyu": Intrinsics(518.8579, 519.46961, 325.58245, 253.73617, 640, 480, "NYU Depth v2 RGB camera"),
    # KITTI raw 2011_09_26 calibration, rectified left colour camera (P_rect_02), 1242x375. Other days differ by
    # up to 2 % (the Eigen split lists focal lengths 707-721).
    "kitti": Intrinsics(721.5377, 721.5377, 609.5593, 172.854, 1242, 375, "KITTI 2011_09_26 P_rect_02"),
}


def guess_intrinsics(height, width, fov_degrees=FOV_GUESS_DEGREES):
    """A guess for a photo of unknown camera: horizontal field of view `fov_degrees`, square pixels, centre."""
    focal = (width / 2.0) / math.tan(math.radians(fov_degrees) / 2.0)
    return Intrinsics(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0, width, height,
                      f"guess: {fov_degrees:g}-degree horizontal field of view")


def camera_intrinsics(camera=None, fx=None, fy=None, cx=None, cy=None):
    """Intrinsics from `--camera` or `--fx/--fy/--cx/--cy` (fy defaults to fx, cx/cy to the image centre), or None."""
    given = {"fx": fx, "fy": fy, "cx": cx, "cy": cy}
    if camera is not None:
        if any(value is not None for value in given.values()):
            raise ConfigError("give either --camera or --fx/--fy/--cx/--cy, not both.")
        if camera not in CAMERAS:
            raise ConfigError(f"unknown camera {camera!r}; known: {', '.join(CAMERAS)}.")
        return CAMERAS[camera]
    if all(value is None for value in given.values()):
        return None
    if fx is None:
        raise ConfigError("--fy/--cx/--cy need --fx (the focal length in pixels).")
    for name, value in given.items():
        if value is not None and not math.isfinite(value):
            raise ConfigError(f"--{name} must be a finite number, got {value}.")
    if fx <= 0 or (fy is not None and fy <= 0):
        raise ConfigError(f"focal lengths must be positive, got fx={fx}, fy={fy}.")
    return _PartialIntrinsics(float(fx), float(fy if fy is not None else fx), cx, cy)


@dataclass(frozen=True)
class _PartialIntrinsics:
    """User-given focal lengths, principal point defaulting to the centre of each image (pixels of that image)."""

    fx: float
    fy: float
    cx: float | None
    cy: float | None

    def for_image(self, height, width):
        cx = (width - 1) / 2.0 if self.cx is None else float(self.cx)
        cy = (height - 1) / 2.0 if self.cy is None else float(self.cy)
        return Intrinsics(self.fx, self.fy, cx, cy, width, height, "given")


# ---------------------------------------------------------------------------------------------- models


def _read_config(path):
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text())
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


class DepthModel:
    """A loaded depth model: float32 RGB 0..255 batch (N, H, W, 3) -> metres (N, H', W').

    Attributes: `path` (what was given), `loaded` (the file or folder loaded), `note` (which one, in words),
    `input_size` (the fixed (H, W) of the model input, or None when it takes any size), `config_size` (a run
    config's `data.input_size`), `max_depth` (metres, from the `ScaledSigmoid` head, the run config or export
    metadata; None if unknown), `name`, `config` (the run's resolved recipe or None), `keras_model` (None for a
    SavedModel), `metadata` (the export metadata of a SavedModel made by `hqdepth export`), `reference_focal` (the
    focal length in pixels a focal-aware Keras model's depth is relative to, else None), `trained_size` (the fixed
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
        import importlib

        import keras

        # register custom objects: layers, losses, metrics, and model classes (mrpan.DeepSupervisionModel)
        for module in ("hqdepth.layers", "hqdepth.losses", "hqdepth.metrics", "hqdepth.models.mrpan"):
            try:
                importlib.import_module(module)
            except ImportError:
                pass
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
        meta_file = path / "assets.extra" / "hqdepth.json"
        if meta_file.is_file():
            try:
                self.metadata = json.loads(meta_file.read_text())
            except (OSError, ValueError) as error:
                raise DataError(f"cannot read {meta_file}: {error}") from None
            self.max_depth = self.metadata.get("max_depth")
            self.name = self.metadata.get("model_name")
            if self.config is None and isinstance(self.metadata.get("recipe"), dict):
                self.config = self.metadata["recipe"]
        self.name = self.name or path.name

    def test_input(self):
        """How the run's recipe tests the model: its evaluation protocol's `test_input` ("native", "kb_crop",
        "resize", "hqmd", "hu"; see `hqdepth.evaluation.Protocol`), or None without a run configuration."""
        protocol = _nested(self.config, "evaluation", "protocol") if self.config else None
        if not protocol:
            return None
        from hqdepth.evaluation import PROTOCOLS

        options = _nested(self.config, "evaluation", "protocol_options") or {}
        if protocol == "custom":
            return options.get("test_input") or ("kb_crop" if options.get("kb_crop") else "resize")
        return options.get("test_input") or (PROTOCOLS[protocol].test_input if protocol in PROTOCOLS else None)

    def size_multiple(self):
        """What the model's input height and width must be multiples of (registry `size_multiple` of the run's
        model), or None when unknown."""
        name = _nested(self.config, "model", "name") if self.config else None
        if not name:
            return None
        from hqdepth.models import size_multiple

        try:
            return size_multiple(name, _nested(self.config, "model", "options") or {})
        except (ConfigError, TypeError):
            return None

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
        most 1024, rounded to the model's size multiple (`free_size`)."""
        if self.input_size is not None:
            return self.input_size
        if self.size_override is not None:
            return self.size_override
        mode = self.test_input()
        if self.config_size is not None and mode in (None, "resize", "hqmd"):
            return self.config_size
        if mode == "hu":
            scale = 240.0 / min(height, width)
            height, width = height * scale, width * scale
        multiple = self.size_multiple()
        if multiple and multiple > 1:
            return free_size(height, width, multiple, plus_one=False)
        return free_size(height, width)

    def for_photos(self):
        """The model `hqdepth predict` runs: rebuilt with a free input size (`at_free_size`) when the run's
        recipe tests at the image's own resolution ("native", "kb_crop", "hu"), else itself."""
        if self.input_size is not None and self.test_input() in ("native", "kb_crop", "hu"):
            return self.at_free_size()
        return self

    def describe(self):
        """One line: what was loaded, its name, size and depth range."""
        size = "x".join(map(str, self.input_size)) if self.input_size else (
            "free (" + ("run config " + "x".join(map(str, self.config_size)) if self.config_size
                        else f"image size, longer side <= {FREE_SIZE_MAX_SIDE}, rounded to {FREE_SIZE_MULTIPLE}k+1")
            + ")")
        depth = f"{self.max_depth:g} m" if self.max_depth is not None else "unknown"
        return f"{self.note}; model {self.name}, input {size}, max depth {depth}"

    def __call__(self, batch, focal=None):
        """Depth (N, H', W') float32 for a float32 batch (N, H, W, 3) of RGB 0..255; `focal` (pixels, a number
        or one per image) for a focal-aware Keras model, else ignored (the reference focal)."""
        batch = np.asarray(batch, dtype=np.float32)
        if focal is not None and self._focal_model is not None:
            focal = np.broadcast_to(np.asarray(focal, dtype=np.float32).reshape(-1), (len(batch),)).copy()
            out = self._focal_model([batch, focal], training=False)
        else:
            out = self._call(batch)
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
        return out


def load(path):
    """A `DepthModel` for a `.keras` file, a SavedModel folder or a training run folder."""
    return DepthModel(path)


def _as_model(model):
    if isinstance(model, DepthModel):
        return model
    if isinstance(model, (str, Path)):
        return DepthModel(model)
    if hasattr(model, "inputs") and hasattr(model, "layers"):
        return DepthModel.from_keras(model)
    raise ConfigError(f"expected a DepthModel, a keras.Model or a path to a model, got {type(model).__name__}.")


def predict_depth(model, rgb, flip=False, kb_crop=False, focal=None):
    """Depth (H, W) float32 for one RGB image with a `DepthModel` (the "resize" way of
    `hqdepth.evaluation.protocol_prediction`, which is what the evaluators call).

    With kb_crop the image is first cut to the KITTI benchmark window and the result covers that
    window (the evaluator pastes it back). A fixed-size model gets the image resized bilinearly
    (`cv2.resize` INTER_LINEAR) to its input and the prediction resized back. flip: mean with the
    un-mirrored prediction of the mirrored image. focal: the image's focal length in pixels for a
    focal-aware model (scaled with the image's width when it is resized).
    """
    from hqdepth.evaluation import KB_CROP_SIZE
    from hqdepth.evaluation import resize_bilinear as cv2_resize

    image = np.asarray(rgb, dtype=np.float32)
    if kb_crop:
        height, width = image.shape[:2]
        if height < KB_CROP_SIZE[0] or width < KB_CROP_SIZE[1]:
            raise DataError(f"--kb-crop needs images of at least 352x1216, got {height}x{width}.")
        top, left = height - KB_CROP_SIZE[0], (width - KB_CROP_SIZE[1]) // 2
        image = image[top:top + KB_CROP_SIZE[0], left:left + KB_CROP_SIZE[1]]
    height, width = image.shape[:2]
    images = [image, image[:, ::-1]] if flip else [image]
    if model.input_size is not None and model.input_size != (height, width):
        images = [cv2_resize(x, *model.input_size) for x in images]
        focal = None if focal is None else focal * model.input_size[1] / width
    outputs = model(np.stack(images)) if focal is None else model(np.stack(images), focal=focal)
    preds = [p if p.shape == (height, width) else cv2_resize(p, height, width) for p in outputs]
    if flip:
        return 0.5 * preds[0] + 0.5 * preds[1][:, ::-1]
    return preds[0]


# ---------------------------------------------------------------------------------------------- images


def _to_rgb(image, where):
    """uint8 RGB (H, W, 3) from grey (H, W) / (H, W, 1), RGB, RGBA (alpha dropped); uint16 -> round(v / 257)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise DataError(f"{where}: expected an image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {image.shape}.")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    image = image[..., :3]
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(v / 257)
    elif image.dtype != np.uint8:
        raise DataError(f"{where}: pixels are {image.dtype}; expected 8- or 16-bit integers.")
    return np.ascontiguousarray(image)


def read_image(path):
    """A photo as a viewer shows it: RGB uint8 (H, W, 3).

    The EXIF orientation is applied (cv2 decoding does that for every flag but IMREAD_UNCHANGED); grey becomes
    three equal channels; an alpha channel is dropped (like PIL's convert("RGB")); 16-bit becomes round(v / 257).
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if data.size == 0:
        raise DataError(f"{path} is empty.")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if image is None:
        raise DataError(f"cannot decode {path} as an image (corrupt or unsupported format).")
    if image.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{path}: {image.dtype} pixels are not supported; expected an 8- or 16-bit image.")
    return _to_rgb(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), str(path))


def _image_float(image, where):
    """float32 RGB 0..255 (H, W, 3) from a path or an array; float arrays are taken as RGB 0..255."""
    if isinstance(image, (str, Path)):
        return read_image(image).astype(np.float32)
    array = np.asarray(image)
    if np.issubdtype(array.dtype, np.floating):
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
            raise DataError(f"{where}: expected an image (H, W[, C]), got {array.shape}.")
        array = np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array[..., :3]
        return array.astype(np.float32)
    return _to_rgb(array, where).astype(np.float32)


def resize_bilinear(image, height, width):
    """Bilinear resize of an (H, W) map or (H, W, C) image to (height, width), float32: `tf.image.resize`
    (half-pixel centres, no antialiasing), the op of the data pipeline's test-time resize and of the exported
    SavedModel, so `hqdepth predict` and the SavedModel agree to float rounding. Same size: returned as is."""
    image = np.asarray(image, dtype=np.float32)
    if image.shape[:2] == (height, width):
        return image
    import tensorflow as tf

    planes = image[..., None] if image.ndim == 2 else image
    out = tf.image.resize(planes, (int(height), int(width)), method="bilinear").numpy()
    return out[..., 0] if image.ndim == 2 else out


def aspect_note(image_size, run_size):
    """A sentence naming both sizes when running an image of `image_size` at `run_size` changes its aspect
    ratio by more than `ASPECT_TOLERANCE` (0.5 %), else None."""
    ratios = (run_size[1] / run_size[0], image_size[1] / image_size[0])
    change = max(ratios) / min(ratios) - 1.0  # = hqdepth.evaluation.aspect_change
    if change <= ASPECT_TOLERANCE:
        return None
    return (f"images of {image_size[0]}x{image_size[1]} run at {run_size[0]}x{run_size[1]}: the aspect ratio "
            f"changes by {100 * change:.2f} % (the depth is resized back to the image)")


def _warn_aspect(model, image_size, run_size, warn):
    note = aspect_note(image_size, run_size)
    seen = model.__dict__.setdefault("_aspect_warned", set())
    if note is not None and (image_size, run_size) not in seen:
        seen.add((image_size, run_size))
        if warn is None:
            import warnings

            warnings.warn(note, stacklevel=3)
        else:
            warn(f"warning: {note}")


def predict_images(model, images, batch_size=8, warn=None):
    """Depth maps (H, W) float32 for a list of float32 RGB images: each resized (`resize_bilinear`) to
    `model.run_size`, batched by `batch_size` (images of the same run size in a chunk share a model call),
    the depth resized back to its image's size. A resize that changes the aspect ratio by more than 0.5 % is
    reported once per pair of sizes (`aspect_note`) through `warn` (a function of one string; default
    `warnings.warn`)."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}.")
    results = [None] * len(images)
    for start in range(0, len(images), batch_size):
        chunk = list(range(start, min(start + batch_size, len(images))))
        groups = {}
        for index in chunk:
            height, width = images[index].shape[:2]
            groups.setdefault(tuple(model.run_size(height, width)), []).append(index)
        for size, members in groups.items():
            for index in members:
                _warn_aspect(model, tuple(images[index].shape[:2]), tuple(size), warn)
            batch = np.stack([resize_bilinear(images[index], *size) for index in members])
            outputs = model(batch)
            for index, depth in zip(members, outputs):
                results[index] = resize_bilinear(depth, *images[index].shape[:2])
    return results


def predict(model, inputs, batch_size=8):
    """Depth in metres, float32, at the size of each input image.

    model: a `DepthModel`, a `keras.Model` or a path (`.keras`, SavedModel, run folder).
    inputs: a path or an image array (H, W), (H, W, C) -> (H, W); a batch array (N, H, W, C) -> (N, H, W);
    a list/tuple of paths or images -> a list of (H, W) maps. uint8/uint16 arrays are converted as `read_image`
    does; float arrays are taken as RGB in 0..255. Paths get the EXIF orientation applied, arrays do not.
    """
    model = _as_model(model).for_photos()
    if isinstance(inputs, (list, tuple)):
        images = [_image_float(item, f"input {i}") for i, item in enumerate(inputs)]
        return predict_images(model, images, batch_size)
    if isinstance(inputs, (str, Path)):
        return predict_images(model, [_image_float(inputs, str(inputs))], batch_size)[0]
    array = np.asarray(inputs)
    if array.ndim == 4:
        images = [_image_float(item, f"batch item {i}") for i, item in enumerate(array)]
        return np.stack(predict_images(model, images, batch_size))
    return predict_images(model, [_image_float(array, "image")], batch_size)[0]


# --------------------------------------------------------------------------------------------- outputs


def colorize(depth, colormap="plasma", value_range=None):
    """RGB uint8 (H, W, 3) picture of a depth map: `value_range` (lo, hi) in metres maps to the two ends of the
    colour map (near = dark end); None = the map's finite min..max. Non-finite pixels are black."""
    import cv2

    depth = np.asarray(depth, dtype=np.float32)
    finite = np.isfinite(depth)
    if value_range is None:
        lo, hi = (float(depth[finite].min()), float(depth[finite].max())) if finite.any() else (0.0, 1.0)
    else:
        lo, hi = (float(v) for v in value_range)
    span = hi - lo if hi > lo else 1.0
    scaled = np.clip((np.where(finite, depth, lo) - lo) / span, 0.0, 1.0)
    grey = np.rint(scaled * 255.0).astype(np.uint8)
    if colormap == "gray":
        rgb = np.repeat(grey[..., None], 3, axis=-1)
    elif colormap in COLORMAPS:
        code = {"plasma": cv2.COLORMAP_PLASMA, "magma": cv2.COLORMAP_MAGMA, "turbo": cv2.COLORMAP_TURBO}[colormap]
        rgb = cv2.cvtColor(cv2.applyColorMap(grey, code), cv2.COLOR_BGR2RGB)
    else:
        raise ConfigError(f"unknown colour map {colormap!r}; choose one of {', '.join(COLORMAPS)}.")
    rgb[~finite] = 0
    return rgb


def depth_to_png16(depth, scale=1000.0):
    """uint16 map round(depth * scale) (1000 = millimetres, 256 = KITTI), 0 for non-finite or <= 0 depth,
    clipped at 65535. Returns (array, number of clipped pixels)."""
    depth = np.asarray(depth, dtype=np.float64)
    value = np.where(np.isfinite(depth) & (depth > 0), depth * float(scale), 0.0)
    clipped = int(np.count_nonzero(value > 65535.0))
    return np.rint(np.clip(value, 0.0, 65535.0)).astype(np.uint16), clipped


def backproject(depth, intrinsics, step=1):
    """Points (N, 3) float32 in metres, camera frame x right, y down, z forward (OpenCV), and their pixel
    (rows, cols): X = (u - cx) Z / fx, Y = (v - cy) Z / fy, Z = depth[v, u] (z-depth). Invalid depth is left out;
    `step` takes every step-th row and column."""
    depth = np.asarray(depth, dtype=np.float32)
    rows, cols = np.mgrid[0:depth.shape[0]:step, 0:depth.shape[1]:step]
    z = depth[rows, cols]
    keep = np.isfinite(z) & (z > 0)
    rows, cols, z = rows[keep], cols[keep], z[keep].astype(np.float64)
    x = (cols - intrinsics.cx) * z / intrinsics.fx
    y = (rows - intrinsics.cy) * z / intrinsics.fy
    return np.stack([x, y, z], axis=-1).astype(np.float32), (rows, cols)


def write_ply(path, depth, rgb, intrinsics, step=1):
    """Binary little-endian PLY of coloured points (x, y, z float32 metres; red, green, blue uint8) from a
    depth map and its RGB image of the same size. Returns the number of points."""
    points, (rows, cols) = backproject(depth, intrinsics, step)
    colours = np.asarray(rgb, dtype=np.uint8)[rows, cols]
    vertex = np.empty(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                          ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    vertex["x"], vertex["y"], vertex["z"] = points[:, 0], points[:, 1], points[:, 2]
    vertex["red"], vertex["green"], vertex["blue"] = colours[:, 0], colours[:, 1], colours[:, 2]
    header = "\n".join([
        "ply", "format binary_little_endian 1.0",
        "comment hqdepth point cloud: metres, camera frame x right, y down, z forward (OpenCV)",
        f"comment intrinsics fx {intrinsics.fx!r} fy {intrinsics.fy!r} cx {intrinsics.cx!r} cy {intrinsics.cy!r} "
        f"({intrinsics.source})",
        f"element vertex {len(vertex)}",
        "property float x", "property float y", "property float z",
        "property uchar red", "property uchar green", "property uchar blue",
        "end_header",
    ]) + "\n"
    with open(path, "wb") as handle:
        handle.write(header.encode("ascii"))
        handle.write(vertex.tobytes())
    return len(vertex)


def _write_image(path, image_rgb_or_grey):
    import cv2

    image = image_rgb_or_grey
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(path.suffix, image)
    if not ok:
        raise DataError(f"cannot encode {path}.")
    encoded.tofile(path)


# ----------------------------------------------------------------------------------------------- files


_GLOB_CHARS = set("*?[")


def _is_image(path):
    return path.suffix.lower() in IMAGE_SUFFIXES


def collect_inputs(inputs, recursive=False):
    """Expand INPUT arguments: a folder gives its image files (sorted; subfolders with `recursive`, their
    relative path kept in the output name), a glob its matching image files, a file itself (whatever its
    suffix). Returns ([(path, output stem)], [(argument, problem)]); a folder without images raises."""
    found, problems, seen = [], [], set()

    def add(path, stem):
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append((path, stem))

    for argument in inputs:
        path = Path(argument)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(p for p in path.glob(pattern) if p.is_file() and _is_image(p))
            if not files:
                hint = "" if recursive or not any(p.is_dir() for p in path.iterdir()) else \
                    " (it has subfolders: add --recursive to include them)"
                raise DataError(f"folder {path} has no image files ({', '.join(IMAGE_SUFFIXES)}){hint}.")
            for file in files:
                add(file, file.relative_to(path).with_suffix("").as_posix())
        elif path.is_file():
            add(path, path.stem)
        elif _GLOB_CHARS & set(str(argument)):
            matches = sorted(Path(p) for p in glob.glob(str(argument), recursive=True))
            files = [p for p in matches if p.is_file() and _is_image(p)]
            if not files:
                problems.append((str(argument), "no image file matches this pattern"))
            for file in files:
                add(file, file.stem)
        else:
            problems.append((str(argument), "file not found"))
    # Different inputs with the same output name (a.jpg and a.png, or the same name in two folders).
    counts = {}
    for _, stem in found:
        counts[stem] = counts.get(stem, 0) + 1
    used, result = set(), []
    for path, stem in found:
        if counts[stem] > 1:
            stem = f"{stem}_{path.suffix.lstrip('.').lower() or 'file'}"
        base, number = stem, 2
        while stem in used:
            stem, number = f"{base}-{number}", number + 1
        used.add(stem)
        result.append((path, stem))
    return result, problems


def output_paths(out, stem):
    """The files written for one image: colour PNG, 16-bit PNG, float32 .npy (metres) and .ply."""
    out = Path(out)
    return {"color": out / f"{stem}_depth_color.png", "png16": out / f"{stem}_depth.png",
            "npy": out / f"{stem}_depth.npy", "ply": out / f"{stem}.ply"}


def predict_files(model, inputs, out, recursive=False, batch_size=4, colormap="plasma", value_range=None,
                  side_by_side=False, png_scale=1000.0, ply=False, intrinsics=None, ply_step=1, progress=True,
                  log=print):
    """Predict every input image and write its outputs under `out` (see `output_paths`).

    intrinsics: an `Intrinsics` (scaled to each image when it names another size, as `CAMERAS` entries do), the
    result of `camera_intrinsics`, or None (a 60-degree horizontal field of view is assumed for the PLY and
    said through `log`). Unreadable files are skipped and listed. Returns the summary dict that is also written
    to `out/predictions.json`.
    """
    from tqdm import tqdm

    if colormap not in COLORMAPS:
        raise ConfigError(f"unknown colour map {colormap!r}; choose one of {', '.join(COLORMAPS)}.")
    if value_range is not None and not float(value_range[1]) > float(value_range[0]):
        raise ConfigError(f"depth range must be MIN,MAX with MIN < MAX, got {value_range[0]},{value_range[1]}.")
    if not png_scale > 0 or not math.isfinite(png_scale):
        raise ConfigError(f"PNG scale must be a positive number, got {png_scale}.")
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}.")
    if ply_step < 1:
        raise ConfigError(f"PLY step must be >= 1, got {ply_step}.")
    files, problems = collect_inputs(inputs, recursive)
    skipped = [{"input": argument, "error": problem} for argument, problem in problems]
    if not files:
        raise DataError("no image to predict: " + "; ".join(f"{s['input']}: {s['error']}" for s in skipped))
    model = _as_model(model).for_photos()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if ply and intrinsics is None:
        log(f"note: no intrinsics given (--camera or --fx/--fy/--cx/--cy): the point clouds assume a "
            f"{FOV_GUESS_DEGREES:g}-degree horizontal field of view (fx = fy = {0.5 / math.tan(math.radians(30)):.4f}"
            f" x image width, principal point at the image centre).")
    records, clipped_total = [], 0
    with tqdm(total=len(files), desc="predict", unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(files), batch_size):
            batch = []
            for path, stem in files[start:start + batch_size]:
                try:
                    batch.append((path, stem, read_image(path)))
                except DataError as error:
                    skipped.append({"input": str(path), "error": str(error)})
                    bar.update()
            if not batch:
                continue
            depths = predict_images(model, [rgb.astype(np.float32) for _, _, rgb in batch], batch_size, warn=log)
            for (path, stem, rgb), depth in zip(batch, depths):
                record, clipped = _write_outputs(out, path, stem, rgb, depth, colormap, value_range, side_by_side,
                                                 png_scale, ply, intrinsics, ply_step)
                record["run_size"] = list(model.run_size(*rgb.shape[:2]))
                clipped_total += clipped
                records.append(record)
                bar.update()
    if clipped_total:
        log(f"warning: {clipped_total} pixel(s) beyond {65535 / png_scale:g} m were clipped in the 16-bit PNGs "
            f"(value = metres x {png_scale:g}); the .npy files keep them.")
    summary = {
        "model": {"note": model.note, "name": model.name, "input_size": model.input_size,
                  "config_input_size": model.config_size, "max_depth": model.max_depth},
        "outputs": {"npy": "float32 metres", "png16": f"uint16 = round(metres x {png_scale:g}), 0 = no depth",
                    "color": f"{colormap}, " + (f"{value_range[0]:g}..{value_range[1]:g} m" if value_range
                                                else "per-image min..max") + (", photo | depth" if side_by_side
                                                                              else ""),
                    "ply": "binary, metres, x right, y down, z forward" if ply else None},
        "images": records,
        "skipped": skipped,
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _write_outputs(out, path, stem, rgb, depth, colormap, value_range, side_by_side, png_scale, ply, intrinsics,
                   ply_step):
    paths = output_paths(out, stem)
    paths["npy"].parent.mkdir(parents=True, exist_ok=True)
    np.save(paths["npy"], depth.astype(np.float32))
    png, clipped = depth_to_png16(depth, png_scale)
    _write_image(paths["png16"], png)
    picture = colorize(depth, colormap, value_range)
    if side_by_side:
        picture = np.concatenate([rgb, picture], axis=1)
    _write_image(paths["color"], picture)
    finite = depth[np.isfinite(depth)]
    record = {"input": str(path), "size": list(depth.shape),
              "depth_min": float(finite.min()) if finite.size else None,
              "depth_max": float(finite.max()) if finite.size else None,
              "outputs": {key: str(value) for key, value in paths.items() if key != "ply"}}
    if ply:
        height, width = depth.shape
        camera = (intrinsics or guess_intrinsics(height, width)).for_image(height, width)
        if camera.width is None:
            camera = Intrinsics(camera.fx, camera.fy, camera.cx, camera.cy, width, height, camera.source)
        record["points"] = write_ply(paths["ply"], depth, rgb, camera, ply_step)
        record["outputs"]["ply"] = str(paths["ply"])
        record["intrinsics"] = camera.to_dict()
    return record, clipped


# `hqdepth.predict` is this module (Python sets the attribute when the submodule is imported), and calling it
# calls `predict`: `hqdepth.predict(model, image)` works whether or not the module was imported before.
class _CallableModule(types.ModuleType):
    def __call__(self, model, inputs, batch_size=8):
        return predict(model, inputs, batch_size=batch_size)


sys.modules[__name__].__class__ = _CallableModule
