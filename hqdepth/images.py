"""Image files and pictures of depth: reading photos as a viewer shows them (`read_image`), RGB and depth
files for evaluation (`read_rgb`, `read_depth`), colour maps (`colorize`), 16-bit depth PNGs (`depth_to_png16`)
and writing images (`write_image`). OpenCV is imported by the function that needs it."""

from pathlib import Path

import numpy as np

from hqdepth.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                  ".pnm", ".pbm", ".jp2")
COLORMAPS = ("plasma", "magma", "turbo", "gray")


def to_rgb(image, where):
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


class NotAPhoto(DataError):
    """A file `read_image` refuses because it holds depth, not a photo (a 16-bit grey image)."""


def read_image(path):
    """A photo as a viewer shows it: RGB uint8 (H, W, 3).

    The EXIF orientation is applied (cv2 decoding does that for every flag but IMREAD_UNCHANGED); grey becomes
    three equal channels; an alpha channel is dropped (like PIL's convert("RGB")); 16-bit becomes round(v / 257).
    A 16-bit grey image is refused (DataError): that is how depth maps are stored (NYU, KITTI, `hqdepth predict`'s
    own outputs), and a folder of photos often holds them beside the photos.
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
    image = cv2.imdecode(data, cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH)  # grey stays one channel
    if image is None:
        raise DataError(f"cannot decode {path} as an image (corrupt or unsupported format).")
    if image.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{path}: {image.dtype} pixels are not supported; expected an 8- or 16-bit image.")
    if image.ndim == 2 and image.dtype == np.uint16:
        raise NotAPhoto(f"{path} is a 16-bit grey image, as depth maps are stored, not a photo (8-bit, or 16-bit "
                        "colour); convert it to 8 bits if it is a photo.")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[-1] == 4 else cv2.COLOR_BGR2RGB)
    return to_rgb(image, str(path))


def image_float(image, where):
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
    return to_rgb(array, where).astype(np.float32)


def read_rgb(path, where=None):
    """An RGB image, uint8 (H, W, 3)."""
    import cv2

    path = Path(path)
    where = f"{where}: " if where else ""
    if not path.is_file():
        raise DataError(f"{where}file not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{where}cannot read {path} as an image.")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_depth(path, scale=None, where=None):
    """A depth map in metres (float64, H x W): `.png` 8- or 16-bit single channel = value / scale; `.npy` = metres."""
    path = Path(path)
    where = f"{where}: " if where else ""
    if not path.is_file():
        raise DataError(f"{where}file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DataError(f"{where}cannot read {path}: {error}") from None
        array = np.squeeze(array) if array.ndim > 2 else array
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise DataError(f"{where}{path} must hold one numeric (H, W) depth map, got {array.dtype} {array.shape}.")
        return array.astype(np.float64)
    if suffix == ".png":
        import cv2

        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise DataError(f"{where}cannot read {path} as a PNG image.")
        if image.ndim != 2:
            raise DataError(f"{where}{path} has {image.shape[2]} channels; a depth PNG must be single-channel.")
        if image.dtype not in (np.uint8, np.uint16):
            raise DataError(f"{where}{path} is {image.dtype}; expected an 8- or 16-bit depth PNG.")
        if scale is None:
            raise ConfigError(f"{where}{path}: the protocol has no default PNG scale; pass --pred-scale/--gt-scale.")
        return image.astype(np.float64) / float(scale)
    raise DataError(f"{where}{path}: unsupported depth file type {suffix!r} (use a 16-bit .png or a .npy in metres).")


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
    """uint16 map round(depth * scale) (1000 = millimetres, 256 = KITTI), 0 ("no depth", as datasets store it)
    for non-finite or <= 0 depth, at least 1 for a positive one (a depth under half a unit is not "no depth"),
    clipped at 65535. Returns (array, number of clipped pixels)."""
    depth = np.asarray(depth, dtype=np.float64)
    positive = np.isfinite(depth) & (depth > 0)
    value = np.where(positive, depth * float(scale), 0.0)
    clipped = int(np.count_nonzero(value > 65535.0))
    return np.where(positive, np.rint(np.clip(value, 1.0, 65535.0)), 0.0).astype(np.uint16), clipped


def write_image(path, image_rgb_or_grey):
    """Write an RGB (H, W, 3) or single-channel image, encoded by the path's suffix."""
    import cv2

    image = image_rgb_or_grey
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(path.suffix, image)
    if not ok:
        raise DataError(f"cannot encode {path}.")
    encoded.tofile(path)
