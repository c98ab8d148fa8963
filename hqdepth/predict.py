"""Depth for users' photos: load a model, read images as a viewer shows them, predict metres, write outputs.

- `load(path)`: a `.keras` file, a SavedModel folder or a training run folder (`RUN/checkpoints/best.keras`,
  else `RUN/model.keras`, else `RUN/checkpoints/latest.keras`; `RUN/config.yaml` gives name and sizes).
- `predict(model, image)` (also `hqdepth.predict(model, image)`): metres, float32 (H, W) at the image's size,
  for a path, an array (H, W[, C]), a batch (N, H, W, C) or a list of those.
- `read_image(path)`: RGB uint8 with the EXIF orientation applied, grey/RGBA/16-bit colour converted; a 16-bit
  grey file (a depth map) is refused (`NotAPhoto`).
- `predict_files(...)`: the `hqdepth predict` command: colourised PNG, 16-bit PNG, `.npy` and `.ply` per image.

This module runs models on photos; the pieces it uses live in their own modules and the names below are
re-exported here (the compatibility surface of `hqdepth.predict`): `hqdepth.depth_model` (`load`,
`DepthModel`, `resolve_model_path`, `free_size`), `hqdepth.camera` (`Intrinsics`, `CAMERAS`,
`camera_intrinsics`, `guess_intrinsics`), `hqdepth.images` (`read_image`, `colorize`, `depth_to_png16`,
`COLORMAPS`, `IMAGE_SUFFIXES`), `hqdepth.pointcloud` (`backproject`, `write_ply`), `hqdepth.inputs`
(`collect_inputs`) and `hqdepth.resample` (`resize_bilinear_tf`).

An image is resized (bilinear, `tf.image.resize`, `hqdepth.resample.resize_bilinear_tf` as the data pipeline's test transform) to the size the model runs
at and the depth is resized back the same way; the SavedModel of `hqdepth.export` does the same inside. The size is
the one the run's recipe tests at (`DepthModel.run_size`): a model whose evaluation protocol runs the network at the
image's own resolution (BTS, DenseDepth, Hu/SARPN; `hqdepth.protocols.Protocol.test_input`) is rebuilt with a free
input size (weights shared) and runs at the photo's size; a resize that changes the aspect ratio by more than 0.5 %
is reported with both sizes, never silent. (`hqdepth
evaluate --model`, through `hqdepth.model_testing.predict_depth`, resizes with `cv2.resize` INTER_LINEAR like the HQMD evaluation code;
the two differ by float rounding of the sample positions, < 1e-3 of the pixel range.) Importing this module is
cheap (NumPy only): Keras/TensorFlow load with the model.
"""

import math
import sys
import types
from pathlib import Path

import numpy as np

from hqdepth import strict_json
from hqdepth.camera import (  # noqa: F401  (re-exported)
    CAMERAS, FOV_GUESS_DEGREES, Intrinsics, camera_intrinsics, guess_intrinsics)
from hqdepth.depth_model import (  # noqa: F401  (re-exported)
    FREE_SIZE_MAX_SIDE, FREE_SIZE_MULTIPLE, RUN_MODELS, DepthModel, free_size, load, resolve_model_path)
from hqdepth.depth_model import as_model as _as_model
from hqdepth.errors import ConfigError, DataError
from hqdepth.images import (  # noqa: F401  (re-exported)
    COLORMAPS, IMAGE_SUFFIXES, NotAPhoto, colorize, depth_to_png16, read_image, write_image)
from hqdepth.images import image_float as _image_float
from hqdepth.inputs import collect_inputs  # noqa: F401  (re-exported)
from hqdepth.pointcloud import backproject, write_ply  # noqa: F401  (re-exported)
from hqdepth.protocols import ASPECT_TOLERANCE, aspect_change
from hqdepth.resample import resize_bilinear_tf

SUMMARY_FILE = "predictions.json"


def aspect_note(image_size, run_size):
    """A sentence naming both sizes when running an image of `image_size` at `run_size` changes its aspect
    ratio by more than `ASPECT_TOLERANCE` (0.5 %), else None."""
    change = aspect_change(run_size, image_size)
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


def predict_images(model, images, batch_size=8, warn=None, focals=None):
    """Depth maps (H, W) float32 for a list of float32 RGB images: each resized (`resize_bilinear_tf`) to
    `model.run_size`, batched by `batch_size` (images of the same run size in a chunk share a model call),
    the depth resized back to its image's size. A resize that changes the aspect ratio by more than 0.5 % is
    reported once per pair of sizes (`aspect_note`) through `warn` (a function of one string; default
    `warnings.warn`). `focals`: each image's focal length in its own pixels, given to a focal-aware model scaled
    to the run size, as the evaluation does (None: the model's reference focal at the run size)."""
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
            batch = np.stack([resize_bilinear_tf(images[index], *size) for index in members])
            if focals is not None and model.reference_focal is not None:
                outputs = model(batch, focal=[focals[index] * size[1] / images[index].shape[1] for index in members])
            else:
                outputs = model(batch)
            for index, depth in zip(members, outputs):
                results[index] = resize_bilinear_tf(depth, *images[index].shape[:2])
    return results


def predict(model, inputs, batch_size=8, focal=None):
    """Depth in metres, float32, at the size of each input image.

    model: a `DepthModel`, a `keras.Model` or a path (`.keras`, SavedModel, run folder).
    inputs: a path or an image array (H, W), (H, W, C) -> (H, W); a batch array (N, H, W, C) -> (N, H, W);
    a list/tuple of paths or images -> a list of (H, W) maps. uint8/uint16 arrays are converted as `read_image`
    does; float arrays are taken as RGB in 0..255. Paths get the EXIF orientation applied, arrays do not.
    focal: for a focal-aware model (BTS KITTI), the focal length in pixels of the photos (one value, or one per
    image), scaled to the size each runs at as `hqdepth predict --fx` does; None: the model's reference focal.
    """
    model = _as_model(model).for_photos()

    def run(images):
        focals = None
        if focal is not None:
            focals = np.asarray(focal, np.float64).reshape(-1)
            if focals.size not in (1, len(images)):
                raise ConfigError(f"focal: one value or one per image ({len(images)}), got {focals.size}.")
            focals = np.broadcast_to(focals, (len(images),))
        return predict_images(model, images, batch_size, focals=focals)

    if isinstance(inputs, (list, tuple)):
        return run([_image_float(item, f"input {i}") for i, item in enumerate(inputs)])
    if isinstance(inputs, (str, Path)):
        return run([_image_float(inputs, str(inputs))])[0]
    array = np.asarray(inputs)
    if array.ndim == 4:
        return np.stack(run([_image_float(item, f"batch item {i}") for i, item in enumerate(array)]))
    return run([_image_float(array, "image")])[0]


def output_paths(out, stem):
    """The files written for one image: colour PNG, 16-bit PNG, float32 .npy (metres) and .ply."""
    out = Path(out)
    return {"color": out / f"{stem}_depth_color.png", "png16": out / f"{stem}_depth.png",
            "npy": out / f"{stem}_depth.npy", "ply": out / f"{stem}.ply"}


def images_to_predict(inputs, recursive=False):
    """([(path, output stem)], [{"input", "error"}]) of the INPUT arguments (`collect_inputs`); DataError when no
    image is left, which `hqdepth predict` says before it spends seconds loading the model."""
    files, problems = collect_inputs(inputs, recursive)
    skipped = [{"input": argument, "error": problem} for argument, problem in problems]
    if not files:
        raise DataError("no image to predict: " + "; ".join(f"{s['input']}: {s['error']}" for s in skipped))
    return files, skipped


def default_png_scale(model):
    """The 16-bit PNG value per metre `predict_files` writes by default: 1000 (millimetres, NYU's convention), or
    256 (KITTI's) for a model whose depth range goes beyond millimetres' 65.535 m (KITTI recipes: 80 m)."""
    return 256.0 if model.max_depth is not None and model.max_depth > 65.535 else 1000.0


def predict_files(model, inputs, out, recursive=False, batch_size=4, colormap="plasma", value_range=None,
                  side_by_side=False, png_scale=None, ply=False, intrinsics=None, ply_step=1, progress=True,
                  log=print):
    """Predict every input image and write its outputs under `out` (see `output_paths`); `png_scale`: the 16-bit
    PNG value per metre (None: `default_png_scale`).

    intrinsics: an `Intrinsics` (scaled to each image when it names another size, as `CAMERAS` entries do), the
    result of `camera_intrinsics`, or None (a 60-degree horizontal field of view is assumed for the PLY and
    said through `log`); a focal-aware model (BTS KITTI) is given its fx, scaled to the run size, else runs at its
    reference focal. Unreadable files are skipped and listed; 16-bit grey images (depth maps) are listed apart
    (`not_photos`). Returns the summary dict that is also written to `out/predictions.json`.
    """
    from tqdm import tqdm

    if colormap not in COLORMAPS:
        raise ConfigError(f"unknown colour map {colormap!r}; choose one of {', '.join(COLORMAPS)}.")
    if value_range is not None and not float(value_range[1]) > float(value_range[0]):
        raise ConfigError(f"depth range must be MIN,MAX with MIN < MAX, got {value_range[0]},{value_range[1]}.")
    if png_scale is not None and not (png_scale > 0 and math.isfinite(png_scale)):
        raise ConfigError(f"PNG scale must be a positive number, got {png_scale}.")
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}.")
    if ply_step < 1:
        raise ConfigError(f"PLY step must be >= 1, got {ply_step}.")
    files, skipped = images_to_predict(inputs, recursive)
    model = _as_model(model).for_photos()
    if png_scale is None:
        png_scale = default_png_scale(model)
        if png_scale != 1000.0:
            log(f"note: 16-bit PNGs store metres x {png_scale:g} (KITTI's convention): the model predicts up to "
                f"{model.max_depth:g} m, beyond millimetres' 65.535 m (--png-scale to choose).")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if ply and intrinsics is None:
        log(f"note: no intrinsics given (--camera or --fx/--fy/--cx/--cy): the point clouds assume a "
            f"{FOV_GUESS_DEGREES:g}-degree horizontal field of view (fx = fy = {0.5 / math.tan(math.radians(30)):.4f}"
            f" x image width, principal point at the image centre).")
    records, clipped_total, depth_maps = [], 0, []

    def above_the_bar(message):  # a line of its own, not glued to the progress bar
        with tqdm.external_write_mode():
            log(message)

    stretched = set()  # image sizes whose point clouds the given camera's intrinsics stretch, said once each

    with tqdm(total=len(files), desc="predict", unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(files), batch_size):
            batch = []
            for path, stem in files[start:start + batch_size]:
                try:
                    batch.append((path, stem, read_image(path)))
                except NotAPhoto:
                    depth_maps.append(str(path))
                    bar.update()
                except DataError as error:
                    skipped.append({"input": str(path), "error": str(error)})
                    bar.update()
            if not batch:
                continue
            focals = None if intrinsics is None else [intrinsics.for_image(*rgb.shape[:2]).fx
                                                      for _, _, rgb in batch]
            depths = predict_images(model, [rgb.astype(np.float32) for _, _, rgb in batch], batch_size,
                                    warn=above_the_bar, focals=focals)
            for (path, stem, rgb), depth in zip(batch, depths):
                note = ply and intrinsics is not None and intrinsics.stretch_note(*rgb.shape[:2])
                if note and rgb.shape[:2] not in stretched:
                    stretched.add(rgb.shape[:2])
                    above_the_bar(f"warning: {note}")
                record, clipped = _write_outputs(out, path, stem, rgb, depth, colormap, value_range, side_by_side,
                                                 png_scale, ply, intrinsics, ply_step)
                record["run_size"] = list(model.run_size(*rgb.shape[:2]))
                clipped_total += clipped
                records.append(record)
                bar.update()
    if depth_maps:
        log(f"note: {len(depth_maps)} 16-bit grey image(s), as depth maps are stored, were not taken for photos "
            f"(e.g. {depth_maps[0]}); predictions.json lists them under not_photos.")
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
        "not_photos": depth_maps,
    }
    (out / SUMMARY_FILE).write_text(strict_json.dumps(summary, indent=1) + "\n")
    return summary


def _write_outputs(out, path, stem, rgb, depth, colormap, value_range, side_by_side, png_scale, ply, intrinsics,
                   ply_step):
    paths = output_paths(out, stem)
    paths["npy"].parent.mkdir(parents=True, exist_ok=True)
    np.save(paths["npy"], depth.astype(np.float32))
    png, clipped = depth_to_png16(depth, png_scale)
    write_image(paths["png16"], png)
    picture = colorize(depth, colormap, value_range)
    if side_by_side:
        picture = np.concatenate([rgb, picture], axis=1)
    write_image(paths["color"], picture)
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
    def __call__(self, model, inputs, *args, **kwargs):
        return predict(model, inputs, *args, **kwargs)

    __call__.__doc__ = predict.__doc__


sys.modules[__name__].__class__ = _CallableModule
