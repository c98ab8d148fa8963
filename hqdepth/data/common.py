"""What the file-based RGB-D sources share: SPEC argument and option parsing, byte decoders, the KITTI crop.

Every source is a `hqdepth.data.base.Source`: indexable, `len()`, items are `Sample`s with
rgb uint8 (H, W, 3), depth float32 metres (H, W, 1) with 0 = no ground truth, and `meta`
("id" always, "focal" in pixels when known). Formats and constants: specs/evaluation_and_data.md §4.

SPEC grammar (docs/datasets.md, "SPEC grammar")::

    KIND:PATH[@ROOT][?KEY=VALUE[&KEY=VALUE...]]

`PATH` is the file or folder the source reads, `@ROOT` (list-like sources only) the folder the
paths inside the list are relative to, and the query part sets options. Keyword options given to
`open_source(spec, split, **options)` override the ones in the SPEC string. `{split}` inside
PATH is replaced by the split name (e.g. `list:lists/{split}.txt@/data/nyu`).

Problems a user can cause raise `DataError` (file content) or `ConfigError` (bad option), naming
the file and, for lists, the 1-based line. Files named by a list are checked for existence when
the source is opened; decoding problems (corrupt image, size mismatch, NaN depth, 8-bit depth
where 16-bit is expected) are raised when the sample is read.

Each reader is one module: `hqdepth.data.lists` (list), `kitti`, `csvfile` (csv), `folder`, `densedepth`,
`nyu_mat` (nyu-mat); pair readers build on `hqdepth.data.pair_source.PairSource`.
"""

import io

import numpy as np

from hqdepth.errors import ConfigError, DataError

NYU_FOCAL = 518.8579  # NYU toolbox fx; BTS uses it for every NYU sample
KB_CROP = (352, 1216)  # KITTI benchmark crop (height, width): top = H - 352, left = (W - 1216) // 2
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".pnm", ".bmp", ".tif", ".tiff", ".webp")


# ----------------------------------------------------------------------------------------------
# SPEC argument and option parsing


def split_argument(argument):
    """'PATH[@ROOT][?k=v&...]' -> (path, root or None, {k: v}) with string values."""
    if argument is None:
        return None, None, {}
    text, _, query = str(argument).partition("?")
    options = {}
    for item in filter(None, query.split("&")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"Bad option {item!r} in {argument!r}: expected KEY=VALUE.")
        options[key.strip()] = value.strip()
    path, sep, root = text.rpartition("@")
    if not sep:
        path, root = text, None
    return (path or None), (root or None), options


def as_bool(name, value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"Option {name}={value!r} is not a boolean (use true/false).")


def as_float(name, value, positive=True):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"Option {name}={value!r} is not a number.") from None
    if positive and not (np.isfinite(number) and number > 0):
        raise ConfigError(f"Option {name}={value!r} must be a positive number.")
    return number


def as_choice(name, value, choices):
    text = str(value).strip().lower()
    if text not in choices:
        raise ConfigError(f"Option {name}={value!r} is not one of {', '.join(choices)}.")
    return text


def merge_options(kind, spec_options, keyword_options, allowed):
    """SPEC-string options overridden by keyword options; unknown names are an error."""
    merged = dict(spec_options)
    merged.update({k: v for k, v in keyword_options.items() if v is not None})
    unknown = sorted(set(merged) - set(allowed))
    if unknown:
        raise ConfigError(
            f"Unknown option(s) {', '.join(unknown)} for dataset kind {kind!r}; accepted: {', '.join(sorted(allowed))}."
        )
    return merged


def require_path(kind, path, what="PATH"):
    if not path:
        raise ConfigError(f"Dataset kind {kind!r} needs a path: {kind}:{what}.")
    return path


def with_split(path, split):
    return path.replace("{split}", str(split)) if path and "{split}" in path else path


# ----------------------------------------------------------------------------------------------
# Decoding (bytes -> arrays), shared by every file-based source


def decode_rgb(data, name):
    """Image bytes -> uint8 (H, W, 3) RGB. Grey is replicated, alpha dropped, 16-bit reduced to 8-bit.

    EXIF orientation is ignored (depth maps carry none, so applying it would misalign the pair).
    """
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if len(data) else None
    if image is None or image.size == 0:
        raise DataError(f"{name}: cannot decode image (corrupt, truncated or unsupported format).")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise DataError(f"{name}: RGB image has unsupported pixel type {image.dtype} (expected 8-bit).")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    channels = image.shape[2]
    if channels == 1:
        return np.repeat(image, 3, axis=2)
    if channels == 3:
        return np.ascontiguousarray(image[:, :, ::-1])  # BGR -> RGB
    if channels == 4:
        return np.ascontiguousarray(image[:, :, 2::-1])  # BGRA -> RGB, alpha dropped
    raise DataError(f"{name}: RGB image has {channels} channels (expected 1, 3 or 4).")


def decode_depth_raw(data, name):
    """Depth bytes -> the stored (H, W) array (uint8, uint16 or float), unscaled."""
    import cv2

    if str(name).lower().endswith(".npy"):
        try:
            raw = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as error:  # noqa: BLE001 - numpy raises several types for bad files
            raise DataError(f"{name}: cannot read .npy depth ({error}).") from None
    else:
        raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if len(data) else None
        if raw is None or raw.size == 0:
            raise DataError(f"{name}: cannot decode depth image (corrupt, truncated or unsupported format).")
    if raw.ndim == 3 and raw.shape[2] == 1:
        raw = raw[:, :, 0]
    if raw.ndim == 3 and raw.shape[2] in (3, 4):
        # Grey depth saved as an RGB(A) file: accept only when the colour channels are identical.
        if not (np.array_equal(raw[:, :, 0], raw[:, :, 1]) and np.array_equal(raw[:, :, 0], raw[:, :, 2])):
            raise DataError(f"{name}: depth has {raw.shape[2]} different channels (expected a single-channel image).")
        raw = raw[:, :, 0]
    if raw.ndim != 2:
        raise DataError(f"{name}: depth has shape {raw.shape} (expected H x W).")
    return raw


def decode_depth(data, name, scale, bits="16"):
    """Depth bytes -> float32 (H, W, 1) metres = stored value / scale; 0 stays 0 (no ground truth).

    bits: "16" requires a 16-bit image, "8" an 8-bit one, "any" accepts 8/16-bit and float
    (float TIFF, `.npy`). Float depth must be finite and non-negative.
    """
    raw = decode_depth_raw(data, name)
    bits = str(bits)
    if bits == "16" and raw.dtype != np.uint16:
        found = "8-bit" if raw.dtype == np.uint8 else str(raw.dtype)
        raise DataError(
            f"{name}: {found} depth where 16-bit is expected (depth = value / {scale:g} m). "
            "If this file is really 8-bit, pass bits=8 (or bits=any) with the matching scale."
        )
    if bits == "8" and raw.dtype != np.uint8:
        raise DataError(f"{name}: {raw.dtype} depth where 8-bit is expected.")
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)):
            raise DataError(f"{name}: depth contains {int(np.sum(~np.isfinite(raw)))} NaN/inf values.")
        if np.any(raw < 0):
            raise DataError(f"{name}: depth contains negative values (min {float(raw.min()):g}).")
    elif raw.dtype.kind not in "u":
        raise DataError(f"{name}: depth has unsupported pixel type {raw.dtype}.")
    depth = raw.astype(np.float32) / np.float32(scale)
    return depth[:, :, None]


def kb_crop(rgb, depth, name="", size=KB_CROP):
    """KITTI benchmark crop: height 352 from the bottom, width 1216 centred. Returns (rgb, depth, (top, left))."""
    height, width = rgb.shape[:2]
    crop_h, crop_w = size
    if height < crop_h or width < crop_w:
        raise DataError(f"{name}: image {height}x{width} is smaller than the KB crop {crop_h}x{crop_w}.")
    top, left = height - crop_h, (width - crop_w) // 2
    return rgb[top:, left : left + crop_w], depth[top:, left : left + crop_w], (top, left)
