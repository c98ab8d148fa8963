"""File-based RGB-D sources: NYU labeled `.mat`, DenseDepth zip/CSV, list files, KITTI, folders, CSV.

Every source is a `hqdepth.data.base.Source`: indexable, `len()`, items are `Sample`s with
rgb uint8 (H, W, 3), depth float32 metres (H, W, 1) with 0 = no ground truth, and `meta`
("id" always, "focal" in pixels when known). Formats and constants: specs/evaluation_and_data.md §4.

SPEC grammar (README, "SPEC grammar")::

    KIND:PATH[@ROOT][?KEY=VALUE[&KEY=VALUE...]]

`PATH` is the file or folder the source reads, `@ROOT` (list-like sources only) the folder the
paths inside the list are relative to, and the query part sets options. Keyword options given to
`open_source(spec, split, **options)` override the ones in the SPEC string. `{split}` inside
PATH is replaced by the split name (e.g. `list:lists/{split}.txt@/data/nyu`).

Problems a user can cause raise `DataError` (file content) or `ConfigError` (bad option), naming
the file and, for lists, the 1-based line. Files named by a list are checked for existence when
the source is opened; decoding problems (corrupt image, size mismatch, NaN depth, 8-bit depth
where 16-bit is expected) are raised when the sample is read.
"""

import csv
import io
import logging
import re
import threading
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hqdepth.data.base import Sample, Source, register_source
from hqdepth.errors import ConfigError, DataError

log = logging.getLogger("hqdepth.data")

NYU_FOCAL = 518.8579  # NYU toolbox fx; BTS uses it for every NYU sample
KB_CROP = (352, 1216)  # KITTI benchmark crop (height, width): top = H - 352, left = (W - 1216) // 2
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".pnm", ".bmp", ".tif", ".tiff", ".webp")
_MISSING_SHOWN = 5  # how many missing files an error message lists


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


def _as_bool(name, value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"Option {name}={value!r} is not a boolean (use true/false).")


def _as_float(name, value, positive=True):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"Option {name}={value!r} is not a number.") from None
    if positive and not (np.isfinite(number) and number > 0):
        raise ConfigError(f"Option {name}={value!r} must be a positive number.")
    return number


def _as_choice(name, value, choices):
    text = str(value).strip().lower()
    if text not in choices:
        raise ConfigError(f"Option {name}={value!r} is not one of {', '.join(choices)}.")
    return text


def _merge_options(kind, spec_options, keyword_options, allowed):
    """SPEC-string options overridden by keyword options; unknown names are an error."""
    merged = dict(spec_options)
    merged.update({k: v for k, v in keyword_options.items() if v is not None})
    unknown = sorted(set(merged) - set(allowed))
    if unknown:
        raise ConfigError(
            f"Unknown option(s) {', '.join(unknown)} for dataset kind {kind!r}; accepted: {', '.join(sorted(allowed))}."
        )
    return merged


def _require_path(kind, path, what="PATH"):
    if not path:
        raise ConfigError(f"Dataset kind {kind!r} needs a path: {kind}:{what}.")
    return path


def _with_split(path, split):
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


# ----------------------------------------------------------------------------------------------
# Byte readers: plain files and zip members (read lazily, one handle per thread)


class _FileReader:
    def __init__(self, root=None):
        self.root = Path(root) if root else None

    def resolve(self, path, root=None, strip_prefix=None):
        """A list entry -> a path on disk. Absolute paths are used when they exist, otherwise
        joined to the root with their leading '/' removed (BTS lists contain both forms)."""
        text = str(path)
        if strip_prefix and text.startswith(strip_prefix):
            text = text[len(strip_prefix) :]
        root = Path(root) if root else self.root
        candidate = Path(text)
        if candidate.is_absolute():
            if root is None or candidate.exists():
                return candidate
            return root / text.lstrip("/\\")
        return (root / candidate) if root else candidate

    def exists(self, path):
        return Path(path).is_file()

    def read(self, path):
        """File bytes; OSError (e.g. FileNotFoundError) when it cannot be read."""
        with open(path, "rb") as handle:
            return handle.read()

    def describe(self, path):
        return str(path)


class _ZipReader:
    """Reads members of a (possibly 4 GB) zip one at a time; each thread gets its own handle."""

    def __init__(self, zip_path):
        self.zip_path = Path(zip_path)
        self._local = threading.local()
        try:
            with zipfile.ZipFile(self.zip_path) as archive:
                self.names = set(archive.namelist())
        except (OSError, zipfile.BadZipFile) as error:
            raise DataError(f"{zip_path}: cannot open zip file ({error}).") from None

    def _archive(self):
        archive = getattr(self._local, "archive", None)
        if archive is None:
            archive = self._local.archive = zipfile.ZipFile(self.zip_path)
        return archive

    def resolve(self, path, root=None, strip_prefix=None):
        text = str(path).replace("\\", "/")
        if strip_prefix and text.startswith(strip_prefix):
            text = text[len(strip_prefix) :]
        return text.lstrip("/")

    def exists(self, name):
        return name in self.names

    def read(self, name):
        """Member bytes; OSError when it is absent or unreadable."""
        try:
            return self._archive().read(name)
        except KeyError:
            raise FileNotFoundError(f"no member {name!r} in the zip") from None
        except (zipfile.BadZipFile, EOFError, zlib.error) as error:
            raise OSError(f"corrupt zip member ({error})") from None

    def describe(self, name):
        return f"{self.zip_path}!{name}"


# ----------------------------------------------------------------------------------------------
# Pair sources: a list of (rgb, depth) entries decoded on access


@dataclass
class PairEntry:
    rgb: object  # path (files) or member name (zip)
    depth: object
    focal: float | None = None
    line: int | None = None  # 1-based line in the list file, when read from one
    id: str = ""


class PairSource(Source):
    """A list of RGB/depth file pairs with one depth encoding (metres = value / scale).

    Subclasses fill `entries`, `reader`, `scale`, `bits`, `listing` (the list file, for messages)
    and may set `crop_kb`. `skipped` counts list lines dropped on purpose (ground truth "None").
    """

    scale = 1.0
    bits = "16"
    crop_kb = False
    listing = None

    def __init__(self):
        self.entries = []
        self.skipped = 0
        self.reader = _FileReader()

    def __len__(self):
        return len(self.entries)

    def _where(self, entry, what, ref):
        place = f"{self.listing}:{entry.line}: " if (self.listing and entry.line) else ""
        return f"{place}{what} {self.reader.describe(ref)}"

    def _read(self, entry, what, ref):
        try:
            return self.reader.read(ref)
        except OSError as error:
            reason = error.strerror or str(error)
            raise DataError(f"{self._where(entry, what, ref)}: cannot read ({reason}).") from None

    def decode_depth(self, data, entry):
        return decode_depth(data, self._where(entry, "depth", entry.depth), self.scale, self.bits)

    def __getitem__(self, index):
        if not -len(self.entries) <= index < len(self.entries):
            raise IndexError(f"sample {index} out of range for {len(self.entries)} samples")
        entry = self.entries[index]
        rgb = decode_rgb(self._read(entry, "rgb", entry.rgb), self._where(entry, "rgb", entry.rgb))
        depth = self.decode_depth(self._read(entry, "depth", entry.depth), entry)
        if rgb.shape[:2] != depth.shape[:2]:
            raise DataError(
                f"{self._where(entry, 'pair', entry.rgb)}: RGB size {rgb.shape[0]}x{rgb.shape[1]} differs from "
                f"depth size {depth.shape[0]}x{depth.shape[1]} ({self.reader.describe(entry.depth)})."
            )
        meta = {"id": entry.id or str(entry.rgb)}
        if entry.focal is not None:
            meta["focal"] = float(entry.focal)
        if self.crop_kb:
            rgb, depth, (top, left) = kb_crop(rgb, depth, self._where(entry, "rgb", entry.rgb))
            meta["crop"] = (top, left)
        return Sample(rgb=rgb, depth=depth, meta=meta)

    # -- helpers for subclasses --------------------------------------------------------------

    def _check_files(self):
        """Every file named by the entries must exist; report the first few missing ones."""
        missing = []
        for entry in self.entries:
            for what, ref in (("rgb", entry.rgb), ("depth", entry.depth)):
                if not self.reader.exists(ref):
                    missing.append(self._where(entry, what, ref))
        if missing:
            shown = "\n  ".join(missing[:_MISSING_SHOWN])
            more = f"\n  ... and {len(missing) - _MISSING_SHOWN} more" if len(missing) > _MISSING_SHOWN else ""
            hint = ""
            if any(Path(str(e.rgb)).is_absolute() for e in self.entries[:1]):
                hint = "\n(absolute paths in the list: set ROOT with '@ROOT' and strip_prefix=... to remap them)"
            raise DataError(f"{len(missing)} file(s) named in {self.listing or 'the dataset'} do not exist:\n  {shown}{more}{hint}")

    def _require_entries(self):
        if not self.entries:
            extra = f" ({self.skipped} line(s) without ground truth skipped)" if self.skipped else ""
            raise DataError(f"{self.listing or 'dataset'}: no samples{extra}.")
        if self.skipped:
            log.warning("%s: %d line(s) without ground truth skipped, %d samples kept.", self.listing, self.skipped, len(self.entries))


def _read_text_lines(path):
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: list file does not exist.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read list file ({error}).") from None
    return text.splitlines()


def _parse_focal(value, where):
    try:
        focal = float(value)
    except ValueError:
        raise DataError(f"{where}: focal length {value!r} is not a number.") from None
    if not (np.isfinite(focal) and focal > 0):
        raise DataError(f"{where}: focal length {value!r} must be positive.")
    return focal


def _is_none(value):
    return value is None or str(value).strip().lower() in ("", "none", "nan", "null")


# ----------------------------------------------------------------------------------------------
# list:FILE@ROOT  (HQMD "rgb depth" and BTS "rgb depth focal")

_LIST_OPTIONS = ("format", "dataset", "scale", "bits", "depth_root", "strip_prefix", "check_files", "kb_crop")
_DATASET_SCALE = {"nyu": 1000.0, "kitti": 256.0}


@register_source("list")
class ListSource(PairSource):
    """Whitespace-separated list file: `rgb depth` (HQMD, depth PNG / 256) or `rgb depth focal` (BTS).

    Options: format = auto | hqmd | bts (auto: 2 columns -> hqmd, 3 -> bts); dataset = nyu | kitti
    (BTS depth scale 1000 / 256); scale (stored value per metre, overrides the default); bits = 16 | 8 | any;
    depth_root (folder of the depth paths, default ROOT: BTS KITTI keeps them apart); strip_prefix
    (removed from every path, for lists with absolute author paths); check_files (default true);
    kb_crop (KITTI benchmark crop at read time). Lines whose depth is `None` are skipped and counted.
    Blank lines and lines starting with '#' are ignored.
    """

    default_format = "auto"
    default_dataset = None

    def __init__(self, argument, split="train", **options):
        super().__init__()
        path, root, spec_options = split_argument(argument)
        options = _merge_options(self.kind, spec_options, options, _LIST_OPTIONS)
        self.listing = Path(_with_split(_require_path(self.kind, path, "FILE@ROOT"), split))
        self.root = Path(root) if root else self.listing.parent
        self.depth_root = Path(options["depth_root"]) if "depth_root" in options else self.root
        self.strip_prefix = options.get("strip_prefix")
        self.format = _as_choice("format", options.get("format", self.default_format), ("auto", "hqmd", "bts"))
        dataset = options.get("dataset", self.default_dataset)
        self.dataset = _as_choice("dataset", dataset, tuple(_DATASET_SCALE)) if dataset else None
        self.bits = _as_choice("bits", options.get("bits", "16"), ("16", "8", "any"))
        self.crop_kb = _as_bool("kb_crop", options.get("kb_crop", False))
        self._explicit_scale = _as_float("scale", options["scale"]) if "scale" in options else None
        self.reader = _FileReader(self.root)
        self._parse(_read_text_lines(self.listing))
        self._require_entries()
        if _as_bool("check_files", options.get("check_files", True)):
            self._check_files()

    def _scale_for(self, fmt, where):
        if self._explicit_scale is not None:
            return self._explicit_scale
        if self.dataset:
            return _DATASET_SCALE[self.dataset]
        if fmt == "hqmd":
            return 256.0
        raise ConfigError(
            f"{where}: BTS-format list (rgb depth focal) needs the depth encoding: "
            "dataset=nyu (value / 1000), dataset=kitti (value / 256) or scale=VALUE_PER_METRE."
        )

    def _parse_line(self, fields, where):
        """-> (rgb, depth or None, focal or None, format) for one list line."""
        if len(fields) == 2:
            return fields[0], fields[1], None, "hqmd"
        if len(fields) == 3:
            return fields[0], fields[1], _parse_focal(fields[2], where), "bts"
        raise DataError(f"{where}: expected 2 columns (rgb depth) or 3 (rgb depth focal), found {len(fields)}.")

    def _parse(self, lines):
        seen_format = None
        for number, line in enumerate(lines, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            where = f"{self.listing}:{number}"
            rgb, depth, focal, fmt = self._parse_line(text.split(), where)
            if self.format != "auto" and fmt != self.format:
                raise DataError(f"{where}: line is in {fmt} format but format={self.format} was requested.")
            if seen_format is None:
                seen_format = fmt
                self.scale = self._scale_for(fmt, where)
            elif fmt != seen_format:
                raise DataError(f"{where}: line is in {fmt} format, earlier lines are {seen_format}.")
            if _is_none(depth):
                self.skipped += 1
                continue
            self.entries.append(
                PairEntry(
                    rgb=self.reader.resolve(rgb, self.root, self.strip_prefix),
                    depth=self.reader.resolve(depth, self.depth_root, self.strip_prefix),
                    focal=focal if focal is not None else self._default_focal(),
                    line=number,
                    id=rgb,
                )
            )
        self.format_found = seen_format

    def _default_focal(self):
        return NYU_FOCAL if self.dataset == "nyu" else None


# ----------------------------------------------------------------------------------------------
# kitti:LIST@ROOT


def _kitti_calib_focal(root, date, camera, cache):
    """fx of the rectified colour camera (P_rect_02 / P_rect_03) from ROOT/<date>/calib_cam_to_cam.txt, if present."""
    key = (date, camera)
    if key not in cache:
        cache[key] = None
        path = Path(root) / date / "calib_cam_to_cam.txt"
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.startswith(f"P_rect_{camera[-2:]}:"):
                    cache[key] = float(line.split()[1])
                    break
    return cache[key]


@register_source("kitti")
class KittiSource(ListSource):
    """KITTI depth layout: 16-bit PNG / 256, 0 = invalid. LIST is one of

    - BTS `rgb depth focal` (e.g. eigen_train_files_with_gt.txt; `None` ground truth skipped), or `rgb depth`;
    - monodepth2 `<date>/<drive>_sync <frame> l|r`: rgb = ROOT/<date>/<drive>_sync/image_0{2,3}/data/<frame:010d>.png
      (or .jpg), depth = DEPTH_ROOT[/train|/val]/<drive>_sync/proj_depth/groundtruth/image_0{2,3}/<frame:010d>.png;
      lines whose depth file is absent are skipped and counted (Eigen test: 697 -> 652); focal from
      ROOT/<date>/calib_cam_to_cam.txt (P_rect_02 / P_rect_03) when present.

    Options as `list` (scale defaults to 256), plus kb_crop (default false).
    """

    default_dataset = "kitti"

    def _parse_line(self, fields, where):
        if len(fields) == 3 and fields[2] in ("l", "r") and fields[1].isdigit():
            return self._monodepth2_line(fields, where)
        return super()._parse_line(fields, where)

    def _monodepth2_line(self, fields, where):
        folder, frame, side = fields
        camera = "image_02" if side == "l" else "image_03"
        name = f"{int(frame):010d}"
        rgb = None
        for ext in (".png", ".jpg"):
            candidate = f"{folder}/{camera}/data/{name}{ext}"
            rgb = candidate
            if (self.root / candidate).is_file():
                break
        drive = folder.rstrip("/").split("/")[-1]
        depth = None
        for sub in ("", "train/", "val/"):
            candidate = f"{sub}{drive}/proj_depth/groundtruth/{camera}/{name}.png"
            if (self.depth_root / candidate).is_file():
                depth = candidate
                break
        date = folder.split("/")[0]
        focal = _kitti_calib_focal(self.root, date, camera, self.__dict__.setdefault("_calib", {}))
        return rgb, depth, focal, "bts"

    def _default_focal(self):
        return None


# ----------------------------------------------------------------------------------------------
# csv:FILE[@ROOT] and folder:DIR


_PAIR_OPTIONS = ("scale", "bits", "check_files", "kb_crop")


def _need_scale(kind, options):
    if "scale" not in options:
        raise ConfigError(
            f"Dataset kind {kind!r} needs the depth encoding: scale=VALUE_PER_METRE "
            "(e.g. 1000 for millimetre PNGs, 256 for KITTI-style PNGs, 1 for .npy in metres)."
        )
    return _as_float("scale", options["scale"])


def _looks_like_header(fields):
    return not any(f.strip().lower().endswith(IMAGE_EXTENSIONS + (".npy",)) for f in fields[:2])


@register_source("csv")
class CsvSource(PairSource):
    """Comma-separated `rgb,depth[,focal]` rows (header line optional), paths relative to ROOT
    (default: the CSV's folder). Options: scale (required), bits = 16 | 8 | any, check_files, kb_crop."""

    def __init__(self, argument, split="train", **options):
        super().__init__()
        path, root, spec_options = split_argument(argument)
        options = _merge_options(self.kind, spec_options, options, _PAIR_OPTIONS)
        self.listing = Path(_with_split(_require_path(self.kind, path, "FILE"), split))
        self.scale = _need_scale(self.kind, options)
        self.bits = _as_choice("bits", options.get("bits", "16"), ("16", "8", "any"))
        self.crop_kb = _as_bool("kb_crop", options.get("kb_crop", False))
        self.root = Path(root) if root else self.listing.parent
        self.reader = _FileReader(self.root)
        for number, fields in _csv_rows(self.listing, _read_text_lines(self.listing)):
            where = f"{self.listing}:{number}"
            if len(fields) not in (2, 3):
                raise DataError(f"{where}: expected 2 columns (rgb,depth) or 3 (rgb,depth,focal), found {len(fields)}.")
            if _is_none(fields[1]):
                self.skipped += 1
                continue
            focal = _parse_focal(fields[2], where) if len(fields) == 3 and not _is_none(fields[2]) else None
            self.entries.append(
                PairEntry(self.reader.resolve(fields[0]), self.reader.resolve(fields[1]), focal, number, fields[0])
            )
        self._require_entries()
        if _as_bool("check_files", options.get("check_files", True)):
            self._check_files()


def _csv_rows(path, lines):
    """(1-based line number, stripped fields) for each data row; a first row without image paths is a header."""
    rows = []
    first = True
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            fields = [f.strip() for f in next(csv.reader([line]))]
        except csv.Error as error:
            raise DataError(f"{path}:{number}: cannot parse CSV line ({error}).") from None
        if first and _looks_like_header(fields):
            first = False
            continue
        first = False
        rows.append((number, fields))
    return rows


def _number_key(stem):
    digits = re.findall(r"\d+", stem)
    return int(digits[-1]) if digits else None


@register_source("folder")
class FolderSource(PairSource):
    """DIR/rgb/* paired with DIR/depth/* (or DIR/<split>/rgb, DIR/<split>/depth when present).

    Pairing by file stem (rgb/0001.jpg <-> depth/0001.png); when no stems match, by the last number in
    the stem (rgb/rgb_00050.jpg <-> depth/sync_depth_00050.png). Unpaired files are an error.
    Options: scale (required), bits = 16 | 8 | any, rgb_dir (default rgb), depth_dir (default depth), kb_crop.
    """

    def __init__(self, argument, split="train", **options):
        super().__init__()
        path, _, spec_options = split_argument(argument)
        options = _merge_options(self.kind, spec_options, options, ("scale", "bits", "kb_crop", "rgb_dir", "depth_dir"))
        base = Path(_require_path(self.kind, path, "DIR"))
        rgb_dir, depth_dir = options.get("rgb_dir", "rgb"), options.get("depth_dir", "depth")
        if (base / str(split) / rgb_dir).is_dir():
            base = base / str(split)
        self.listing = base
        self.scale = _need_scale(self.kind, options)
        self.bits = _as_choice("bits", options.get("bits", "16"), ("16", "8", "any"))
        self.crop_kb = _as_bool("kb_crop", options.get("kb_crop", False))
        for sub in (rgb_dir, depth_dir):
            if not (base / sub).is_dir():
                raise DataError(f"{base / sub}: folder does not exist (folder:DIR expects DIR/{rgb_dir} and DIR/{depth_dir}).")
        rgbs = _image_files(base / rgb_dir, IMAGE_EXTENSIONS)
        depths = _image_files(base / depth_dir, IMAGE_EXTENSIONS + (".npy",))
        self.entries = self._pair(rgbs, depths, base)
        self._require_entries()

    def _pair(self, rgbs, depths, base):
        by_stem = {p.stem: p for p in depths}
        if any(p.stem in by_stem for p in rgbs):
            keys_rgb = {p: p.stem for p in rgbs}
            keyed_depth = by_stem
        else:
            keys_rgb = {p: _number_key(p.stem) for p in rgbs}
            keyed_depth = {}
            for p in depths:
                key = _number_key(p.stem)
                if key is None or key in keyed_depth:
                    raise DataError(f"{base}: cannot pair files by stem or number ({p.name} is ambiguous).")
                keyed_depth[key] = p
            if len(set(keys_rgb.values())) != len(rgbs) or None in keys_rgb.values():
                raise DataError(f"{base}: cannot pair RGB files by stem or number (duplicate or missing numbers).")
        entries, unpaired = [], []
        for p in rgbs:
            depth = keyed_depth.get(keys_rgb[p])
            if depth is None:
                unpaired.append(str(p))
            else:
                entries.append(PairEntry(p, depth, None, None, str(p.relative_to(base))))
        used = {e.depth for e in entries}
        unpaired += [str(p) for p in depths if p not in used]
        if unpaired:
            shown = "\n  ".join(unpaired[:_MISSING_SHOWN])
            raise DataError(f"{base}: {len(unpaired)} file(s) without a partner:\n  {shown}")
        return entries


def _image_files(folder, extensions):
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in extensions)


# ----------------------------------------------------------------------------------------------
# densedepth:PATH  (nyu_data.zip or its extracted folder)


@register_source("densedepth")
class DenseDepthSource(PairSource):
    """DenseDepth / Hu et al. `nyu_data.zip` (or the folder it extracts to), read through its CSVs.

    split train -> data/nyu2_train.csv, test -> data/nyu2_test.csv (option csv= names another CSV inside
    the zip/folder, or a CSV file on disk). Paths in the CSV are relative to the zip root / folder.
    Depth: 8-bit PNG -> value / 255 * 10 m (training set), 16-bit PNG -> value / 1000 m (test set).
    Zip members are read one at a time; the zip is never loaded whole.
    """

    CSV_NAMES = {"train": "nyu2_train.csv", "test": "nyu2_test.csv"}

    def __init__(self, argument, split="train", **options):
        super().__init__()
        path, _, spec_options = split_argument(argument)
        options = _merge_options(self.kind, spec_options, options, ("csv", "check_files"))
        path = Path(_require_path(self.kind, path, "PATH"))
        self.bits = "any"
        if not path.exists():
            raise DataError(f"{path}: DenseDepth data not found (expected nyu_data.zip or its extracted folder).")
        is_zip = path.is_file()
        self.reader = _ZipReader(path) if is_zip else _FileReader(path)
        csv_name = options.get("csv")
        if csv_name is None:
            if split not in self.CSV_NAMES:
                raise ConfigError(f"densedepth has splits train and test, not {split!r}.")
            csv_name = self.CSV_NAMES[split]
        text, self.listing = self._find_csv(path, is_zip, csv_name)
        for number, fields in _csv_rows(self.listing, text.splitlines()):
            where = f"{self.listing}:{number}"
            if len(fields) != 2:
                raise DataError(f"{where}: expected 2 columns (rgb_path,depth_path), found {len(fields)}.")
            self.entries.append(PairEntry(self.reader.resolve(fields[0]), self.reader.resolve(fields[1]), NYU_FOCAL, number, fields[0]))
        self._require_entries()
        if _as_bool("check_files", options.get("check_files", True)):
            self._check_files()

    def _find_csv(self, path, is_zip, csv_name):
        candidates = [csv_name, f"data/{csv_name}"]
        if is_zip:
            names = self.reader.names
            found = next((c for c in candidates if c in names), None)
            if found is None:
                found = next((n for n in sorted(names) if n.endswith("/" + csv_name)), None)
            if found is None:
                raise DataError(f"{path}: no {csv_name} in the zip (looked for {', '.join(candidates)}).")
            try:
                text = self.reader.read(found).decode("utf-8-sig")
            except (OSError, UnicodeDecodeError) as error:
                raise DataError(f"{path}!{found}: cannot read CSV ({error}).") from None
            return text, f"{path}!{found}"
        on_disk = [path / c for c in candidates] + [Path(csv_name)]
        found = next((p for p in on_disk if p.is_file()), None)
        if found is None:
            raise DataError(f"{path}: no {csv_name} (looked for {', '.join(str(p) for p in on_disk)}).")
        return found.read_text(encoding="utf-8-sig"), found

    def decode_depth(self, data, entry):
        where = self._where(entry, "depth", entry.depth)
        raw = decode_depth_raw(data, where)
        if raw.dtype == np.uint8:  # training set: 0..255 <-> 0..10 m
            return (raw.astype(np.float32) * np.float32(10.0 / 255.0))[:, :, None]
        if raw.dtype == np.uint16:  # test set: millimetres
            return (raw.astype(np.float32) / np.float32(1000.0))[:, :, None]
        raise DataError(f"{where}: {raw.dtype} depth; expected an 8-bit (train) or 16-bit (test) PNG.")


# ----------------------------------------------------------------------------------------------
# nyu-mat:PATH  (nyu_depth_v2_labeled.mat, MATLAB v7.3 = HDF5)

_SPLITS_HELP = (
    "The official NYU Depth v2 split (795 train / 654 test) needs splits.mat (keys trainNdxs, testNdxs; "
    "1-based frame numbers). It ships with the NYU Depth v2 labeled dataset page and as utils/splits.mat "
    "in github.com/cleinc/bts. Pass nyu-mat:PATH?splits=/path/to/splits.mat (or put splits.mat next to the "
    ".mat file), or use split='all' for all 1449 frames."
)


@register_source("nyu-mat")
class NyuMatSource(Source):
    """NYU Depth v2 labeled set. Options: depth = filled (`depths`, default) | raw (`rawDepths`, holes 0);
    splits = path to splits.mat (default: splits.mat beside the .mat). Splits: train, test, all.

    h5py sees MATLAB's column-major arrays reversed: images (N, 3, W, H), depths (N, W, H); each frame is
    transposed back to (H, W, 3) / (H, W). Frames are read one at a time.
    """

    def __init__(self, argument, split="train", depth=None, splits=None, **options):
        path, _, spec_options = split_argument(argument)
        options = _merge_options(self.kind, spec_options, dict(options, depth=depth, splits=splits), ("depth", "splits"))
        self.path = Path(_require_path(self.kind, path))
        kind = _as_choice("depth", options.get("depth", "filled"), ("filled", "raw"))
        self.depth_key = "depths" if kind == "filled" else "rawDepths"
        self._lock = threading.Lock()
        self._file = None
        handle = self._open()
        try:
            self._check_layout(handle)
        except DataError:
            self.close()
            raise
        except Exception as error:  # noqa: BLE001 - h5py raises many types for a damaged file
            self.close()
            raise DataError(f"{self.path}: damaged HDF5 file ({type(error).__name__}: {error}).") from None
        self.indices = self._split_indices(split, options.get("splits"))

    def _check_layout(self, handle):
        """The variables and their shapes (h5py raises on a damaged file; the caller names the file)."""
        for key in ("images", self.depth_key):
            if key not in handle:
                raise DataError(f"{self.path}: no variable {key!r} (is this nyu_depth_v2_labeled.mat?).")
        images, depths = handle["images"], handle[self.depth_key]
        if images.ndim != 4 or images.shape[1] != 3 or depths.ndim != 3 or depths.shape[0] != images.shape[0]:
            raise DataError(
                f"{self.path}: unexpected shapes images {images.shape}, {self.depth_key} {depths.shape} "
                "(expected (N, 3, W, H) and (N, W, H) as h5py reads MATLAB v7.3)."
            )
        if depths.shape[1:] != images.shape[2:]:
            raise DataError(f"{self.path}: image size {images.shape[2:]} and depth size {depths.shape[1:]} differ.")
        self.total = images.shape[0]

    def _open(self):
        import h5py

        if self._file is None:
            if not self.path.is_file():
                raise DataError(f"{self.path}: file does not exist.")
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as error:
                raise DataError(
                    f"{self.path}: cannot open as MATLAB v7.3 / HDF5 ({error}); nyu_depth_v2_labeled.mat is a v7.3 file."
                ) from None
        return self._file

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def _split_indices(self, split, splits_path):
        if split == "all":
            return np.arange(self.total)
        if split not in ("train", "test"):
            raise ConfigError(f"nyu-mat has splits train, test and all, not {split!r}.")
        if splits_path is None:
            beside = self.path.parent / "splits.mat"
            if not beside.is_file():
                raise ConfigError(_SPLITS_HELP)
            splits_path = beside
        import scipy.io

        try:
            mat = scipy.io.loadmat(splits_path)
        except FileNotFoundError:
            raise DataError(f"{splits_path}: splits file does not exist. {_SPLITS_HELP}") from None
        except Exception as error:  # noqa: BLE001 - scipy raises several types for bad files
            raise DataError(f"{splits_path}: cannot read splits file ({error}).") from None
        key = "trainNdxs" if split == "train" else "testNdxs"
        if key not in mat:
            raise DataError(f"{splits_path}: no variable {key!r} (expected trainNdxs and testNdxs).")
        one_based = np.asarray(mat[key]).astype(np.int64).ravel()
        bad = one_based[(one_based < 1) | (one_based > self.total)]
        if bad.size:
            raise DataError(f"{splits_path}: {key} has values outside 1..{self.total} (e.g. {int(bad[0])}); indices are 1-based.")
        return one_based - 1

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        frame = int(self.indices[index])
        where = f"{self.path} frame {frame + 1}"
        with self._lock:
            try:
                handle = self._open()
                rgb = np.ascontiguousarray(np.asarray(handle["images"][frame]).T)  # (3, W, H) -> (H, W, 3)
                depth = np.ascontiguousarray(np.asarray(handle[self.depth_key][frame]).T)  # (W, H) -> (H, W)
            except DataError:
                raise
            except Exception as error:  # noqa: BLE001 - h5py raises many types for a damaged file
                raise DataError(f"{where}: cannot read ({type(error).__name__}: {error}).") from None
        if rgb.dtype != np.uint8:
            raise DataError(f"{where}: images are {rgb.dtype}, expected uint8.")
        depth = depth.astype(np.float32)
        if not np.all(np.isfinite(depth)):
            raise DataError(f"{where}: {self.depth_key} contains NaN/inf values.")
        if np.any(depth < 0):
            raise DataError(f"{where}: {self.depth_key} contains negative values (min {float(depth.min()):g}).")
        return Sample(rgb=rgb, depth=depth[:, :, None], meta={"id": f"{frame + 1:04d}", "focal": NYU_FOCAL, "frame": frame + 1})

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"], state["_lock"] = None, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
