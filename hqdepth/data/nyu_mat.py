"""The `nyu-mat` source: `nyu-mat:PATH`, the NYU Depth v2 labeled set (`nyu_depth_v2_labeled.mat`, MATLAB
v7.3 = HDF5) with the official 795 / 654 split."""

import threading
from pathlib import Path

import numpy as np

from hqdepth.data.base import Sample, Source, register_source
from hqdepth.data.common import NYU_FOCAL, as_choice, merge_options, require_path, split_argument
from hqdepth.errors import ConfigError, DataError

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
        options = merge_options(self.kind, spec_options, dict(options, depth=depth, splits=splits), ("depth", "splits"))
        self.path = Path(require_path(self.kind, path))
        kind = as_choice("depth", options.get("depth", "filled"), ("filled", "raw"))
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
