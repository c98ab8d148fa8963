"""Pair sources: a list of (RGB, depth) entries decoded on access (`PairSource`), the byte readers for plain files
and zip members, and the list/CSV line helpers the pair readers share."""

import csv
import logging
import os
import threading
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hqdepth.data.base import Sample, Source
from hqdepth.data.common import IMAGE_EXTENSIONS, as_float, decode_depth, decode_rgb, kb_crop
from hqdepth.errors import ConfigError, DataError

log = logging.getLogger("hqdepth.data")

MISSING_SHOWN = 5  # how many missing files an error message lists
_SKIPS_REPORTED = set()  # (list file, skipped, kept) already reported: a run opens its sources many times


# ----------------------------------------------------------------------------------------------
# Byte readers: plain files and zip members (read lazily, one handle per thread)


class FileReader:
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

    def identity(self, path):
        """The file, the same however it was named (`PairSource.sample_names`)."""
        return os.path.abspath(path)


class ZipReader:
    """Reads members of a (possibly 4 GB) zip one at a time; each thread gets its own handle."""

    def __init__(self, zip_path):
        self.zip_path = Path(zip_path)
        self._local = threading.local()
        try:
            with zipfile.ZipFile(self.zip_path) as archive:
                self.names = set(archive.namelist())
        except (OSError, zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as error:
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
        except (zipfile.BadZipFile, EOFError, zlib.error, ValueError, NotImplementedError) as error:
            # NotImplementedError: a corrupt header naming an unknown compression method
            raise OSError(f"corrupt zip member ({error})") from None

    def describe(self, name):
        return f"{self.zip_path}!{name}"

    def identity(self, name):
        return f"{os.path.abspath(self.zip_path)}!{name}"


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
    and may set `crop_kb`. `without_ground_truth`: where ("list:line") each list line dropped on purpose is (ground
    truth "None", or a KITTI depth file that does not exist), `skipped` their count; `skip_note` says where their
    ground truth was looked for; `absolute_paths`: the list names absolute paths.
    """

    scale = 1.0
    bits = "16"
    crop_kb = False
    listing = None
    skip_note = ""
    absolute_paths = False

    def __init__(self):
        self.entries = []
        self.without_ground_truth = []
        self.reader = FileReader()

    @property
    def skipped(self):
        return len(self.without_ground_truth)

    def __len__(self):
        return len(self.entries)

    def sample_names(self):
        return [self.reader.identity(entry.rgb) for entry in self.entries]

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
        missing, kinds = [], set()
        for entry in self.entries:
            for what, ref in (("rgb", entry.rgb), ("depth", entry.depth)):
                if not self.reader.exists(ref):
                    missing.append(self._where(entry, what, ref))
                    kinds.add(what)
        if missing:
            shown = "\n  ".join(missing[:MISSING_SHOWN])
            more = f"\n  ... and {len(missing) - MISSING_SHOWN} more" if len(missing) > MISSING_SHOWN else ""
            raise DataError(f"{len(missing)} file(s) named in {self.listing or 'the dataset'} do not exist:\n  "
                            f"{shown}{more}{self._missing_hint(kinds)}")

    def _missing_hint(self, kinds):
        """Lines that may explain missing files of the `kinds` ("rgb", "depth") named; "" when none applies."""
        if self.absolute_paths:
            return "\n(absolute paths in the list: set ROOT with '@ROOT' and strip_prefix=... to remap them)"
        return ""

    def _require_entries(self):
        """No samples is an error; skipped lines are reported once per list file and counts in a process."""
        if not self.entries:
            extra = f" ({self.skipped} line(s) without ground truth skipped{self.skip_note})" if self.skipped else ""
            raise DataError(f"{self.listing or 'dataset'}: no samples{extra}.")
        key = (os.path.abspath(str(self.listing)), self.skipped, len(self.entries))
        if self.skipped and key not in _SKIPS_REPORTED:
            _SKIPS_REPORTED.add(key)
            log.warning("%s: %d line(s) without ground truth skipped, %d samples kept.", self.listing, self.skipped,
                        len(self.entries))


def read_text_lines(path):
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: list file does not exist.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read list file ({error}).") from None
    return text.splitlines()


def parse_focal(value, where):
    try:
        focal = float(value)
    except ValueError:
        raise DataError(f"{where}: focal length {value!r} is not a number.") from None
    if not (np.isfinite(focal) and focal > 0):
        raise DataError(f"{where}: focal length {value!r} must be a positive number of pixels.")
    return focal


def is_none(value):
    return value is None or str(value).strip().lower() in ("", "none", "nan", "null")


def need_scale(kind, options):
    if "scale" not in options:
        raise ConfigError(
            f"Dataset kind {kind!r} needs the depth encoding: scale=VALUE_PER_METRE "
            "(e.g. 1000 for millimetre PNGs, 256 for KITTI-style PNGs, 1 for .npy in metres)."
        )
    return as_float("scale", options["scale"])


def _looks_like_header(fields):
    return not any(f.strip().lower().endswith(IMAGE_EXTENSIONS + (".npy",)) for f in fields[:2])


def csv_rows(path, lines):
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
