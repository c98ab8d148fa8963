"""`ibims:PATH`: the iBims-1 test set (Koch et al., ECCV-W 2018) with its geometric ground truth.

The release ("ibims1_core_mat") is one MATLAB v5 `.mat` file per image plus `imagelist.txt`, the image
names one per line (without `.mat`). Each file holds one 1x1 struct `data` (read with
`scipy.io.loadmat`, as the official `evaluate_ibims.py` does) with the fields:

| field | content | in the `Sample` |
|---|---|---|
| `rgb` | uint8 (H, W, 3) | `rgb` |
| `depth` | float (H, W), metres, 0 = missing | `depth` (H, W, 1) float32, masked (below) |
| `edges` | binary (H, W): true depth edges | `meta["edges"]` bool (H, W) |
| `calib` | 3x3 intrinsics stored transposed (MATLAB): fx = calib[0,0], fy = calib[1,1], cx = calib[2,0], cy = calib[2,1] | `meta["intrinsics"]` (fx, fy, cx, cy), `meta["focal"]` = fx |
| `mask_invalid`, `mask_transp` | binary (H, W), **1 = use the pixel** (despite the names) | multiplied into `depth` |
| `mask_wall`, `mask_table`, `mask_floor` | plane labels (H, W): 0 = none, j = plane j of that type | `meta["plane_ids"]` int32 (H, W), merged |
| `mask_wall_paras`, ... | one row per plane; columns 4..6 (0-based) = the plane's true normal | `meta["plane_normals"]` {id: (3,)} |

Depth is masked as the official driver masks it: `depth * mask_transp * mask_invalid`, so 0 (no ground
truth) also marks transparent and invalid pixels. The intrinsics keep the file's values, which use
MATLAB's 1-based pixel coordinates (pixel (row, col) is at u = col + 1, v = row + 1), the convention
`hqdepth.geometry.back_project` expects.

Plane ids are merged over the three types: the wall planes get ids 1..n_wall (row j of
`mask_wall_paras` is label j + 1), then the table planes, then the floor planes; `meta["plane_types"]`
names each id's type. The official driver evaluates the three types separately; merging gives the same
planes unless two types label the same pixel, which is reported as a warning (the earlier type keeps
it). A label without a parameter row cannot be scored (no normal); the driver ignores it, so does this
source, with a warning.

Layouts accepted for PATH (the copies of the evaluation code use all three):

- a folder with `imagelist.txt` and the `.mat` files (the official driver's layout),
- a folder with `imagelist.txt` and the files in `ibims1_core_mat/` or `gt_depth/` below it,
- a folder of `.mat` files without a list (all `*.mat` except predictions `*_results.mat`, sorted),
- the list file itself (`ibims:/data/ibims/imagelist.txt`).

iBims-1 has a single split: `test` (alias `val`, `all`) gives every listed image; `train` is refused.
Problems raise `DataError` naming the file and the field (missing field, wrong shape or type, labels
and masks that are not what the format says).
"""

import logging
import os
import re
from pathlib import Path

import numpy as np

from hqdepth.data.base import Sample, Source, register_source
from hqdepth.data.common import split_argument
from hqdepth.errors import ConfigError, DataError

log = logging.getLogger("hqdepth.data")

LIST_NAME = "imagelist.txt"
SUBFOLDERS = ("", "ibims1_core_mat", "gt_depth")
PLANE_TYPES = ("wall", "table", "floor")
FIELDS = ("rgb", "depth", "edges", "calib", "mask_invalid", "mask_transp") + tuple(
    f"mask_{kind}{suffix}" for kind in PLANE_TYPES for suffix in ("", "_paras"))
SPLITS = ("test", "val", "all")
_MISSING_SHOWN = 5


def read_ibims_mat(path):
    """The `data` struct of one iBims-1 `.mat` file as {field: array} (all of `FIELDS`), checked."""
    import scipy.io

    path = Path(path)
    try:
        content = scipy.io.loadmat(str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: file does not exist.") from None
    except Exception as error:  # noqa: BLE001 - scipy raises several types for bad or v7.3 files
        raise DataError(f"{path}: cannot read as a MATLAB v5 .mat file ({type(error).__name__}: {error}).") from None
    if "data" not in content:
        found = ", ".join(k for k in content if not k.startswith("__")) or "none"
        raise DataError(f"{path}: no variable 'data' (an iBims-1 file holds one struct 'data'; variables found: {found}).")
    data = content["data"]
    names = getattr(getattr(data, "dtype", None), "names", None)
    if not names or data.size != 1:
        raise DataError(f"{path}: variable 'data' is not a 1x1 struct (got {getattr(data, 'dtype', type(data))}, "
                        f"shape {getattr(data, 'shape', '?')}).")
    missing = [name for name in FIELDS if name not in names]
    if missing:
        raise DataError(f"{path}: field(s) {', '.join('data.' + m for m in missing)} missing (iBims-1 files have "
                        f"{', '.join(FIELDS)}).")
    record = data.reshape(-1)[0]
    return {name: np.asarray(record[name]) for name in FIELDS}


def _numeric(path, name, array):
    if array.dtype == bool or np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating):
        return array
    raise DataError(f"{path}: field data.{name} has type {array.dtype} (expected numbers).")


def _map(path, name, array, shape):
    array = _numeric(path, name, array)
    if array.shape != shape:
        raise DataError(f"{path}: field data.{name} has shape {array.shape} (expected {shape[0]}x{shape[1]}, the "
                        f"size of data.depth).")
    if not np.all(np.isfinite(array)):
        raise DataError(f"{path}: field data.{name} contains NaN/inf values.")
    return array


def _binary(path, name, array, shape):
    array = _map(path, name, array, shape)
    if not np.all((array == 0) | (array == 1)):
        bad = np.unique(array[(array != 0) & (array != 1)])[:3]
        raise DataError(f"{path}: field data.{name} is not binary (values such as {', '.join(f'{v:g}' for v in bad)}; "
                        "expected 0 and 1).")
    return array.astype(bool)


def _labels(path, name, array, shape):
    array = _map(path, name, array, shape)
    if np.any(array < 0) or np.any(array != np.round(array)):
        raise DataError(f"{path}: field data.{name} must hold plane labels (non-negative integers).")
    return array.astype(np.int64)


def _paras(path, name, array):
    array = _numeric(path, name, array)
    if array.size == 0:
        return np.zeros((0, 7))
    if array.ndim == 1:  # one plane, squeezed (the official code expands it the same way)
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] < 7:
        raise DataError(f"{path}: field data.{name} has shape {array.shape} (expected one row of at least 7 values "
                        "per plane; columns 4..6 are the normal).")
    if not np.all(np.isfinite(array[:, 4:7])):
        raise DataError(f"{path}: field data.{name} has NaN/inf in its normals (columns 4..6).")
    return array.astype(np.float64)


def decode_ibims(fields, path):
    """(rgb, masked depth (H, W, 1) float32, meta without "id") from `read_ibims_mat`'s fields."""
    depth = _numeric(path, "depth", fields["depth"])
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
        raise DataError(f"{path}: field data.depth has shape {depth.shape} and type {depth.dtype} (expected a "
                        "floating-point H x W map in metres).")
    if not np.all(np.isfinite(depth)):
        raise DataError(f"{path}: field data.depth contains {int(np.sum(~np.isfinite(depth)))} NaN/inf values.")
    if np.any(depth < 0):
        raise DataError(f"{path}: field data.depth has negative values (min {float(depth.min()):g}).")
    shape = depth.shape
    rgb = fields["rgb"]
    if rgb.dtype != np.uint8 or rgb.shape != shape + (3,):
        raise DataError(f"{path}: field data.rgb has shape {rgb.shape} and type {rgb.dtype} (expected uint8 "
                        f"{shape[0]}x{shape[1]}x3).")
    usable = _binary(path, "mask_invalid", fields["mask_invalid"], shape) & \
        _binary(path, "mask_transp", fields["mask_transp"], shape)
    edges = _binary(path, "edges", fields["edges"], shape)
    calib = _numeric(path, "calib", fields["calib"])
    if calib.shape != (3, 3) or not np.all(np.isfinite(calib)):
        raise DataError(f"{path}: field data.calib has shape {calib.shape} (expected finite 3x3 intrinsics).")
    fx, fy, cx, cy = (float(calib[0, 0]), float(calib[1, 1]), float(calib[2, 0]), float(calib[2, 1]))
    if not (fx > 0 and fy > 0):
        raise DataError(f"{path}: field data.calib has focal lengths fx={fx:g}, fy={fy:g} (expected positive; the "
                        "matrix is stored transposed: fx, fy on the diagonal, cx, cy in the last row).")
    plane_ids, normals, types = _merge_planes(fields, path, shape)
    meta = {"focal": fx, "intrinsics": (fx, fy, cx, cy), "edges": edges, "plane_ids": plane_ids,
            "plane_normals": normals, "plane_types": types}
    masked = np.where(usable, depth, 0.0).astype(np.float32)
    return np.ascontiguousarray(rgb), masked[:, :, None], meta


def _merge_planes(fields, path, shape):
    plane_ids = np.zeros(shape, np.int32)
    normals, types = {}, {}
    next_id = 1
    for kind in PLANE_TYPES:
        labels = _labels(path, f"mask_{kind}", fields[f"mask_{kind}"], shape)
        paras = _paras(path, f"mask_{kind}_paras", fields[f"mask_{kind}_paras"])
        rows = paras.shape[0]
        unscored = np.unique(labels[labels > rows])
        if unscored.size:
            log.warning("%s: data.mask_%s has label(s) %s without a row in data.mask_%s_paras (%d rows); ignored, as "
                        "the official evaluation ignores them.", path, kind, ", ".join(map(str, unscored[:5])), kind, rows)
        for row in range(rows):
            here = labels == row + 1
            taken = here & (plane_ids > 0)
            if taken.any():
                log.warning("%s: %d pixel(s) of data.mask_%s plane %d are already labelled by another plane type; they "
                            "keep the earlier label.", path, int(taken.sum()), kind, row + 1)
            plane_ids[here & ~taken] = next_id
            normals[next_id] = paras[row, 4:7].copy()
            types[next_id] = kind
            next_id += 1
    return plane_ids, normals, types


def encode_ibims(sample):
    """The `data` fields of one iBims-1 `.mat` file for a `Sample` (the inverse of `decode_ibims`). Needs
    `edges` and `intrinsics` in its meta, and for planes (`plane_ids`) a normal and a class of `PLANE_TYPES` per
    plane (`plane_normals`, `plane_types`). Writes depth in metres (0 = none), `calib` stored transposed, both
    masks all 1 (no transparent or invalid pixels beyond depth 0), and per class the label map (plane j =
    label j) with one parameter row per plane, its normal in columns 4..6 (the columns the official code
    reads; the rest 0). Planes not in the image are left out."""
    meta = sample.meta or {}
    where = f"Sample {meta.get('id', '?')!r}"
    missing = [key for key in ("edges", "intrinsics") if meta.get(key) is None]
    if missing:
        raise DataError(f"{where}: no {' and no '.join(missing)} in its meta; the iBims-1 format needs both.")
    depth = np.asarray(sample.depth, np.float32)
    depth = depth[..., 0] if depth.ndim == 3 and depth.shape[-1] == 1 else depth
    if depth.ndim != 2 or not np.all(np.isfinite(depth)) or np.any(depth < 0):
        raise DataError(f"{where}: depth must be a finite, non-negative (H, W) map in metres (shape {depth.shape}).")
    shape = depth.shape
    rgb = np.asarray(sample.rgb)
    edges = np.asarray(meta["edges"])
    plane_ids = np.zeros(shape, np.int64) if meta.get("plane_ids") is None else np.asarray(meta["plane_ids"])
    for name, array, want in (("rgb", rgb, shape + (3,)), ("edges", edges, shape), ("plane_ids", plane_ids, shape)):
        if array.shape != want:
            raise DataError(f"{where}: {name} has shape {array.shape}, expected {want} (the depth's size).")
    fx, fy, cx, cy = (float(v) for v in meta["intrinsics"])
    fields = {"rgb": rgb.astype(np.uint8), "depth": depth, "edges": (edges != 0).astype(np.uint8),
              "calib": np.array([[fx, 0.0, 0.0], [0.0, fy, 0.0], [cx, cy, 1.0]]),
              "mask_invalid": np.ones(shape, np.uint8), "mask_transp": np.ones(shape, np.uint8)}
    present = sorted(int(i) for i in np.unique(plane_ids) if i > 0)
    normals, types = meta.get("plane_normals") or {}, meta.get("plane_types") or {}
    untyped = [pid for pid in present if types.get(pid) not in PLANE_TYPES or pid not in normals]
    if untyped:
        raise DataError(f"{where}: plane(s) {', '.join(map(str, untyped[:5]))} lack a normal or a class of "
                        f"{', '.join(PLANE_TYPES)} in meta['plane_normals'] / meta['plane_types'].")
    for kind in PLANE_TYPES:
        ids = [pid for pid in present if types[pid] == kind]
        labels, paras = np.zeros(shape, np.uint16), np.zeros((len(ids), 7))
        for row, pid in enumerate(ids):
            labels[plane_ids == pid] = row + 1
            paras[row, 4:7] = normals[pid]
        fields[f"mask_{kind}"], fields[f"mask_{kind}_paras"] = labels, paras
    return fields


def release_name(sample_id, number, taken):
    """The file name (without `.mat`) of sample `number` with id `sample_id`: characters other than letters,
    digits, `.`, `_` and `-` become `_`, a trailing `.mat` goes, an empty name becomes `image_<number>`, a
    name already in the set `taken` gets `_2`, `_3`, ...; the name is added to `taken`."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(sample_id).strip())
    name = re.sub(r"\.mat$", "", name, flags=re.IGNORECASE) or f"image_{number:05d}"
    unique, copy = name, 1
    while unique in taken:
        copy += 1
        unique = f"{name}_{copy}"
    taken.add(unique)
    return unique


def write_ibims_release(folder, samples, progress=None):
    """Write `samples` (see `encode_ibims` for what their meta needs) as an iBims-1 release that `ibims:FOLDER`
    and the official evaluation code read: `FOLDER/<name>.mat` (one `data` struct; names from the sample ids,
    `release_name`) and `FOLDER/imagelist.txt`. Until the last file is written the list names no image, so an
    interrupted release is refused by the reader instead of read in part. Returns the number written.
    `progress`: called with 1 per sample."""
    import scipy.io

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    listing = folder / LIST_NAME
    listing.write_text("# incomplete: hqdepth is still writing this release\n")
    names, taken = [], set()
    for number, sample in enumerate(samples):
        name = release_name((sample.meta or {}).get("id", ""), number, taken)
        scipy.io.savemat(str(folder / f"{name}.mat"), {"data": encode_ibims(sample)}, do_compression=True)
        names.append(name)
        if progress:
            progress(1)
    partial = listing.with_name(LIST_NAME + ".tmp")
    partial.write_text("".join(f"{name}\n" for name in names))
    os.replace(partial, listing)
    return len(names)


def _read_list(path):
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read the image list ({error}).") from None
    names = []
    for line in lines:
        name = line.strip()
        if name and not name.startswith("#"):
            names.append(name[:-4] if name.lower().endswith(".mat") else name)
    if not names:
        raise DataError(f"{path}: the image list names no image.")
    return names


@register_source("ibims")
class IbimsSource(Source):
    """iBims-1 `.mat` files (see the module docstring for the fields and layouts); `ibims:PATH`.

    Each `Sample` has rgb uint8 (H, W, 3), depth float32 (H, W, 1) masked as the official driver (0 = no
    ground truth, transparent or invalid) and meta: `id` (image name), `file`, `focal` (fx, pixels),
    `intrinsics` (fx, fy, cx, cy; 1-based pixel coordinates), `edges` (bool), `plane_ids` (int32, 0 = no
    plane), `plane_normals` ({id: true normal}), `plane_types` ({id: "wall" | "table" | "floor"}) -- the
    inputs of `hqdepth.geometry.GeometryEvaluator.add`.
    """

    def __init__(self, argument, split="test", **options):
        path, root, spec_options = split_argument(argument)
        if options or spec_options or root:
            given = sorted(set(options) | set(spec_options)) or ["@" + str(root)]
            raise ConfigError(f"Dataset kind 'ibims' takes no options (got {', '.join(given)}): ibims:PATH.")
        if not path:
            raise ConfigError("Dataset kind 'ibims' needs a path: ibims:DIR (the folder with imagelist.txt).")
        if split not in SPLITS:
            raise ConfigError(f"iBims-1 is a test set with one split; use split test (or val, all), not {split!r}.")
        self.path = Path(path)
        self.files = self._find_files()

    def _find_files(self):
        base = self.path
        if base.is_file():
            listing, base = base, base.parent
        elif base.is_dir():
            listing = next((base / sub / LIST_NAME for sub in SUBFOLDERS if (base / sub / LIST_NAME).is_file()), None)
        else:
            raise DataError(f"{base}: iBims-1 folder does not exist.")
        if listing is None:
            found = sorted(p for p in base.glob("*.mat") if not p.name.endswith("_results.mat"))
            if not found:
                raise DataError(f"{base}: no {LIST_NAME} and no .mat files (expected the iBims-1 release, e.g. "
                                "ibims1_core_mat/ with imagelist.txt).")
            self.listing = None
            return found
        self.listing = listing
        names = _read_list(listing)
        folders = [listing.parent / sub for sub in SUBFOLDERS] + [base / sub for sub in SUBFOLDERS]
        folders = list(dict.fromkeys(folders))
        files, missing = [], []
        for name in names:
            found = next((f / f"{name}.mat" for f in folders if (f / f"{name}.mat").is_file()), None)
            (files if found else missing).append(found or name)
        if missing:
            shown = "\n  ".join(f"{name}.mat" for name in missing[:_MISSING_SHOWN])
            more = f"\n  ... and {len(missing) - _MISSING_SHOWN} more" if len(missing) > _MISSING_SHOWN else ""
            where = ", ".join(str(f) for f in folders)
            raise DataError(f"{len(missing)} image(s) named in {listing} have no .mat file (looked in {where}):\n"
                            f"  {shown}{more}")
        return files

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        if not -len(self.files) <= index < len(self.files):
            raise IndexError(f"sample {index} out of range for {len(self.files)} samples")
        path = self.files[index]
        rgb, depth, meta = decode_ibims(read_ibims_mat(path), path)
        return Sample(rgb=rgb, depth=depth, meta={"id": path.stem, "file": str(path), **meta})
