"""Sharded TFRecord datasets written by `hqdepth data convert`: record format, manifest, readers.

Layout of a converted directory::

    DIR/manifest.json
    DIR/<split>-00000-of-00012.tfrecord ...

Each record is a `tf.train.Example` with the features

    rgb          bytes   PNG, 8-bit RGB
    depth        bytes   PNG, 16-bit grey: value = round(metres * depth_scale), 0 = no ground truth
    height,width int64   image size (RGB and depth have the same size)
    depth_scale  float   the split's depth scale (also in the manifest)
    focal        float   focal length in pixels, 0 when unknown
    id           bytes   the source's sample id (UTF-8)

and, when the sample's `meta` carries geometric ground truth (`hqdepth.geometry`: the `ibims` and
`synthetic` sources), also

    edges              bytes   PNG, 8-bit grey 0/1: true occlusion edges (meta["edges"], bool (H, W))
    plane_ids          bytes   PNG, 16-bit grey: plane id per pixel, 0 = no plane (meta["plane_ids"], int32)
    plane_normal_ids   int64   the plane ids of meta["plane_normals"] ...
    plane_normals      float   ... and their normals, 3 per id in that order (iBims frame: x right, y forward, z up)
    plane_equation_ids int64   the plane ids of meta["plane_equations"] ...
    plane_equations    float   ... and (nx, ny, nz, d) per id (n . X + d = 0, metres)
    plane_type_ids     int64   the plane ids of meta["plane_types"] ...
    plane_types        bytes   ... and their types (UTF-8, e.g. wall / table / floor)
    intrinsics         float   (fx, fy, cx, cy), 1-based pixel coordinates (meta["intrinsics"])

Each is written only when the sample has it, so shards of older versions (and of sources without
geometry) read as before. Floats are float32 (TFRecord float lists): the values read back are the
float32 roundings of those written. `tfrecord_dataset` (training) ignores these features;
`TFRecordSource` returns them in `Sample.meta` under the same keys and types the sources use
(normals and equations as float64 arrays of the stored values, intrinsics a tuple of 4 floats), so
`hqdepth.geometry.ground_truth_from_meta` works on a sample read back.

`manifest.json` holds, per split: the source SPEC, sample count, records written, skipped samples
(index and error), shard size, depth scale, the image-size histogram, `geometry` (how many records
carry edges / planes / intrinsics; absent names: none), `complete`, and for every shard its file
name, first sample index, sample count, record count, size histogram, geometry counts and sha256.

Two readers:

- `tfrecord_dataset(DIR, ...)`: a `tf.data.Dataset` of (rgb uint8 (H, W, 3), depth float32
  metres (H, W, 1)) straight from the shards, decoded in parallel — what training pipelines use.
- `TFRecordSource` (SPEC `tfrecord:DIR`): random access `Source` in pure Python (no TensorFlow),
  for tools and inspection.

Neither imports TensorFlow at module import time.
"""

import hashlib
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np

from hqdepth.data.base import Sample, Source, register_source
from hqdepth.errors import ConfigError, DataError

MANIFEST = "manifest.json"
FORMAT = "hqdepth-tfrecord"
FORMAT_VERSION = 1
AUTOTUNE = -1  # the value of tf.data.AUTOTUNE, without importing TensorFlow


# ------------------------------------------------------------------------- protobuf encoding
# tf.train.Example is tiny: Example{1: Features{1: map<string, Feature>}};
# Feature{1: BytesList{1: bytes*}, 2: FloatList{1: packed float}, 3: Int64List{1: packed int64}}.


def _varint(value):
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number, payload):
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _feature(value):
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":  # typed by the dtype, also when empty
        if value.dtype.kind == "f":
            return _field(2, _field(1, struct.pack(f"<{value.size}f", *value.ravel().tolist())))
        return _field(3, _field(1, b"".join(_varint(int(v)) for v in value.ravel().tolist())))
    if isinstance(value, (list, tuple, np.ndarray)):  # a list feature: all bytes, all ints or all floats
        items = list(np.asarray(value).ravel()) if isinstance(value, np.ndarray) else list(value)
        if all(isinstance(v, (bytes, bytearray, str)) for v in items):
            return _field(1, b"".join(_field(1, v.encode("utf-8") if isinstance(v, str) else bytes(v)) for v in items))
        if all(isinstance(v, (bool, int, np.integer)) for v in items):
            return _field(3, _field(1, b"".join(_varint(int(v)) for v in items)))
        if all(isinstance(v, (bool, int, float, np.integer, np.floating)) for v in items):
            return _field(2, _field(1, struct.pack(f"<{len(items)}f", *(float(v) for v in items))))
        raise TypeError("a list feature must hold only bytes, only ints or only floats")
    if isinstance(value, (bytes, bytearray)):
        return _field(1, _field(1, bytes(value)))
    if isinstance(value, str):
        return _field(1, _field(1, value.encode("utf-8")))
    if isinstance(value, (bool, int, np.integer)):
        return _field(3, _field(1, _varint(int(value))))
    if isinstance(value, (float, np.floating)):
        return _field(2, _field(1, struct.pack("<f", float(value))))
    raise TypeError(f"unsupported feature value {type(value).__name__}")


def encode_example(features):
    """Serialize {name: bytes | str | int | float | list of one of them} as a `tf.train.Example` (no
    TensorFlow needed)."""
    entries = b"".join(_field(1, _field(1, name.encode("utf-8")) + _field(2, _feature(value))) for name, value in features.items())
    return _field(1, entries)


def _read_varint(buf, pos):
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf):
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            if pos + length > end:
                raise ValueError("truncated field")
            value = buf[pos : pos + length]
            pos += length
        elif wire == 5:
            value = buf[pos : pos + 4]
            pos += 4
        elif wire == 1:
            value = buf[pos : pos + 8]
            pos += 8
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("truncated field")
        yield number, wire, value


def decode_example(buf):
    """Parse a serialized `tf.train.Example` into {name: list of bytes | float | int} (pure Python)."""
    buf = memoryview(bytes(buf))
    features = {}
    for number, wire, message in _fields(buf):
        if number != 1 or wire != 2:
            continue
        for entry_number, entry_wire, entry in _fields(message):
            if entry_number != 1 or entry_wire != 2:
                continue
            name, feature = None, b""
            for n, w, v in _fields(entry):
                if n == 1 and w == 2:
                    name = bytes(v).decode("utf-8")
                elif n == 2 and w == 2:
                    feature = v
            if name is None:
                raise ValueError("feature without a name")
            values = []
            for kind, kind_wire, body in _fields(feature):
                if kind_wire != 2:
                    continue
                for n, w, v in _fields(body):
                    if n != 1:
                        continue
                    if kind == 1:
                        values.append(bytes(v))
                    elif kind == 2:
                        raw = bytes(v)
                        values.extend(struct.unpack(f"<{len(raw) // 4}f", raw) if w == 2 else struct.unpack("<f", raw))
                    elif kind == 3:
                        items = []
                        if w == 2:
                            pos = 0
                            while pos < len(v):
                                item, pos = _read_varint(v, pos)
                                items.append(item)
                        else:
                            items.append(v)
                        values.extend(i - (1 << 64) if i >= 1 << 63 else i for i in items)
            features[name] = values
    return features


# ------------------------------------------------------------------------------ PNG encoding


def _cv2():
    import cv2

    return cv2


def encode_sample(sample, depth_scale):
    """A `Sample` -> serialized Example bytes. Depth is quantised to round(metres * depth_scale)."""
    cv2 = _cv2()
    sample_id = str(sample.meta.get("id", ""))
    rgb, depth = np.asarray(sample.rgb), np.asarray(sample.depth)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DataError(f"Sample {sample_id!r}: RGB must be uint8 HxWx3, got {rgb.dtype} {rgb.shape}.")
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2 or depth.shape != rgb.shape[:2]:
        raise DataError(f"Sample {sample_id!r}: depth shape {np.asarray(sample.depth).shape} does not match RGB {rgb.shape}.")
    depth = depth.astype(np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    scaled = np.where(valid, np.round(np.where(valid, depth, 0) * depth_scale), 0)
    if scaled.max(initial=0) > 65535:
        raise DataError(
            f"Sample {sample_id!r}: depth {depth[valid].max():.3f} m does not fit 16 bits at depth scale "
            f"{depth_scale:g} (max {65535 / depth_scale:.2f} m); use a smaller --depth-scale (e.g. 256)."
        )
    scaled[valid & (scaled < 1)] = 1  # a valid depth stays valid after quantisation
    ok_rgb, rgb_png = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    ok_depth, depth_png = cv2.imencode(".png", scaled.astype(np.uint16))
    if not (ok_rgb and ok_depth):
        raise DataError(f"Sample {sample_id!r}: PNG encoding failed.")
    features = {
        "rgb": rgb_png.tobytes(),
        "depth": depth_png.tobytes(),
        "height": int(rgb.shape[0]),
        "width": int(rgb.shape[1]),
        "depth_scale": float(depth_scale),
        "focal": float(sample.meta.get("focal") or 0.0),
        "id": sample_id,
    }
    features.update(encode_geometry(sample.meta, rgb.shape[:2], sample_id))
    return encode_example(features)


GEOMETRY_FEATURES = ("edges", "plane_ids", "plane_normal_ids", "plane_normals", "plane_equation_ids",
                     "plane_equations", "plane_type_ids", "plane_types", "intrinsics")


def _plane_table(meta, key, width, sample_id):
    """{id: values} of meta[key] -> (ids, flat float list), each entry `width` finite floats."""
    table = meta.get(key)
    if table is None:
        return None
    ids, values = [], []
    for pid in sorted(table, key=int):
        row = np.asarray(table[pid], dtype=np.float64).ravel()
        if int(pid) < 1 or row.shape != (width,) or not np.all(np.isfinite(row)):
            raise DataError(f"Sample {sample_id!r}: meta[{key!r}][{pid!r}] must be {width} finite numbers of a plane id "
                            f">= 1, got {table[pid]!r}.")
        ids.append(int(pid))
        values.extend(float(v) for v in row)
    return np.asarray(ids, np.int64), np.asarray(values, np.float32)


def encode_geometry(meta, size, sample_id=""):
    """The geometric ground truth a sample's meta carries as Example features (see the module docstring);
    {} when it carries none. Raises DataError for a map of the wrong size or values that do not fit."""
    cv2 = _cv2()
    features = {}
    edges = meta.get("edges")
    if edges is not None:
        edges = np.asarray(edges)
        if edges.shape != tuple(size):
            raise DataError(f"Sample {sample_id!r}: edge map shape {edges.shape} does not match the image {tuple(size)}.")
        ok, png = cv2.imencode(".png", (edges != 0).astype(np.uint8))
        if not ok:
            raise DataError(f"Sample {sample_id!r}: PNG encoding of the edge map failed.")
        features["edges"] = png.tobytes()
    plane_ids = meta.get("plane_ids")
    if plane_ids is not None:
        plane_ids = np.asarray(plane_ids)
        if plane_ids.shape != tuple(size):
            raise DataError(f"Sample {sample_id!r}: plane id map shape {plane_ids.shape} does not match the image "
                            f"{tuple(size)}.")
        if plane_ids.size and (plane_ids.min() < 0 or plane_ids.max() > 65535 or not np.array_equal(plane_ids, np.round(plane_ids))):
            raise DataError(f"Sample {sample_id!r}: plane ids must be integers in 0..65535 (16-bit PNG), got "
                            f"{plane_ids.min()}..{plane_ids.max()}.")
        ok, png = cv2.imencode(".png", plane_ids.astype(np.uint16))
        if not ok:
            raise DataError(f"Sample {sample_id!r}: PNG encoding of the plane ids failed.")
        features["plane_ids"] = png.tobytes()
    for key, width in (("plane_normals", 3), ("plane_equations", 4)):
        table = _plane_table(meta, key, width, sample_id)
        if table is not None:
            features[key[:-1] + "_ids"], features[key] = table
    types = meta.get("plane_types")
    if types is not None:
        ids = sorted(types, key=int)
        features["plane_type_ids"], features["plane_types"] = np.asarray(ids, np.int64), [str(types[i]) for i in ids]
    intrinsics = meta.get("intrinsics")
    if intrinsics is not None:
        values = np.asarray(intrinsics, dtype=np.float64).ravel()
        if values.shape != (4,) or not np.all(np.isfinite(values)):
            raise DataError(f"Sample {sample_id!r}: meta['intrinsics'] must be 4 finite numbers (fx, fy, cx, cy), got "
                            f"{intrinsics!r}.")
        features["intrinsics"] = values.astype(np.float32)
    return features


def decode_geometry(features, size, where="record"):
    """The meta entries of the geometric features of a decoded Example (see `encode_geometry`)."""
    cv2 = _cv2()
    meta = {}
    for key, dtype in (("edges", np.uint8), ("plane_ids", np.uint16)):
        if key not in features:
            continue
        if len(features[key]) != 1 or not isinstance(features[key][0], bytes):
            raise DataError(f"{where}: feature {key!r} is not one PNG.")
        image = cv2.imdecode(np.frombuffer(features[key][0], np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None or image.dtype != dtype or image.ndim != 2:
            raise DataError(f"{where}: the {key} PNG does not decode as {np.dtype(dtype).itemsize * 8}-bit grey.")
        if image.shape != tuple(size):
            raise DataError(f"{where}: the {key} map is {image.shape} but the record's size is {tuple(size)}.")
        meta[key] = image != 0 if key == "edges" else image.astype(np.int32)
    for key, width in (("plane_normals", 3), ("plane_equations", 4)):
        ids_key = key[:-1] + "_ids"
        if ids_key not in features and key not in features:
            continue
        ids, values = features.get(ids_key, []), features.get(key, [])
        if len(values) != width * len(ids) or not all(isinstance(i, int) for i in ids):
            raise DataError(f"{where}: {len(values)} values in {key!r} for {len(ids)} plane ids (expected {width} each).")
        meta[key] = {pid: np.array(values[width * n:width * (n + 1)], np.float64) for n, pid in enumerate(ids)}
    if "plane_type_ids" in features or "plane_types" in features:
        ids, names = features.get("plane_type_ids", []), features.get("plane_types", [])
        if len(ids) != len(names):
            raise DataError(f"{where}: {len(names)} plane types for {len(ids)} plane ids.")
        try:
            meta["plane_types"] = {pid: name.decode("utf-8") for pid, name in zip(ids, names)}
        except (UnicodeDecodeError, AttributeError):
            raise DataError(f"{where}: the plane types are not UTF-8 text.") from None
    if "intrinsics" in features:
        values = features["intrinsics"]
        if len(values) != 4 or not all(isinstance(v, float) for v in values):
            raise DataError(f"{where}: feature 'intrinsics' has {len(values)} values (expected fx, fy, cx, cy).")
        meta["intrinsics"] = tuple(values)
    return meta


def decode_record(record, depth_scale=None, where="record"):
    """Serialized Example -> `Sample`. `where` names the record in error messages."""
    cv2 = _cv2()
    try:
        features = decode_example(record)
    except (ValueError, IndexError, KeyError, TypeError, UnicodeDecodeError, struct.error) as error:
        raise DataError(f"{where}: not a valid tf.train.Example ({type(error).__name__}: {error}).") from None
    for name in ("rgb", "depth", "height", "width"):
        if len(features.get(name, [])) != 1:
            raise DataError(f"{where}: feature {name!r} is missing.")
    rgb = cv2.imdecode(np.frombuffer(features["rgb"][0], np.uint8), cv2.IMREAD_COLOR)
    raw = cv2.imdecode(np.frombuffer(features["depth"][0], np.uint8), cv2.IMREAD_UNCHANGED)
    if rgb is None:
        raise DataError(f"{where}: the RGB PNG does not decode.")
    if raw is None or raw.dtype != np.uint16 or raw.ndim != 2:
        raise DataError(f"{where}: the depth PNG does not decode as 16-bit grey.")
    size = (features["height"][0], features["width"][0])
    if rgb.shape[:2] != size or raw.shape != size:
        raise DataError(f"{where}: RGB {rgb.shape[:2]} / depth {raw.shape} do not match the recorded size {size}.")
    record_scale = features.get("depth_scale", [None])[0]
    scale = depth_scale if depth_scale is not None else record_scale
    if scale is None or scale <= 0:
        raise DataError(f"{where}: no depth scale.")
    if record_scale is not None and depth_scale is not None and not np.isclose(record_scale, depth_scale):
        raise DataError(f"{where}: depth scale {record_scale:g} differs from the manifest's {depth_scale:g}.")
    depth = (raw.astype(np.float32) / np.float32(scale))[..., None]
    try:
        meta = {"id": features.get("id", [b""])[0].decode("utf-8")}
    except (UnicodeDecodeError, AttributeError):
        raise DataError(f"{where}: the sample id is not UTF-8 text.") from None
    focal = features.get("focal", [0.0])[0]
    if focal > 0:
        meta["focal"] = float(focal)
    meta.update(decode_geometry(features, size, where))
    return Sample(np.ascontiguousarray(rgb[..., ::-1]), depth, meta)


# ----------------------------------------------------------------------------- TFRecord framing
# record = uint64 length, uint32 masked crc32c(length), data, uint32 masked crc32c(data)

_CRC_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data):
    """CRC-32C (Castagnoli), pure Python (~10 MB/s): record headers, and record data in `TFRecordSource`."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record_offsets(path):
    """[(offset of data, length)] of every record of a TFRecord file; checks the header CRCs.

    Raises DataError naming the file and byte offset of a truncated or corrupt header."""
    entries = []
    path = Path(path)
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise DataError(f"Cannot open TFRecord shard {path}: {error.strerror}.") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        pos = 0
        while pos < size:
            handle.seek(pos)
            header = handle.read(12)
            if len(header) < 12:
                raise DataError(f"{path}: truncated record header at byte {pos} (record {len(entries)}).")
            length, crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != crc:
                raise DataError(f"{path}: corrupt record header at byte {pos} (record {len(entries)}).")
            if pos + 12 + length + 4 > size:
                raise DataError(f"{path}: truncated record at byte {pos} (record {len(entries)}).")
            entries.append((pos + 12, length))
            pos += 12 + length + 4
    return entries


# ------------------------------------------------------------------------------------ manifest


def sha256_file(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory, missing_ok=False):
    path = Path(directory) / MANIFEST
    if not path.exists():
        if missing_ok:
            return None
        if not Path(directory).is_dir():
            raise DataError(f"TFRecord directory {directory} does not exist.")
        raise DataError(f"{path} does not exist: {directory} is not a converted dataset (run `hqdepth data convert`).")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"{path} is not readable JSON: {error}.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("splits"), dict):
        raise DataError(f"{path} is not an {FORMAT} manifest.")
    return manifest


def write_manifest(directory, manifest):
    """Atomic write (temporary file + rename)."""
    path = Path(directory) / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


def split_section(directory, split=None, require_complete=True):
    """(split name, manifest section) of a converted directory. `split=None` picks the only split."""
    manifest = read_manifest(directory)
    splits = manifest["splits"]
    if split is None:
        if len(splits) != 1:
            raise ConfigError(f"{directory} holds the splits {', '.join(sorted(splits)) or '(none)'}; name one.")
        split = next(iter(splits))
    if split not in splits:
        raise ConfigError(f"{directory} has no split {split!r}; it holds: {', '.join(sorted(splits)) or '(none)'}.")
    section = splits[split]
    if require_complete and not section.get("complete"):
        done = sum(1 for shard in section["shards"] if shard.get("sha256"))
        raise DataError(
            f"The conversion of split {split!r} in {directory} is incomplete ({done} of {len(section['shards'])} shards); "
            "rerun the `hqdepth data convert` command that wrote it (once what stopped it is fixed) to finish it."
        )
    return split, section


# -------------------------------------------------------------------------------------- Source


@register_source("tfrecord")
class TFRecordSource(Source):
    """SPEC `tfrecord:DIR`: the records of one split of a converted directory, by index.

    Pure Python (NumPy + OpenCV): record headers and data are CRC-checked (CRC-32C in pure Python,
    ~10 MB/s: this is the inspection reader; training reads through `tfrecord_dataset`, whose CRCs
    TensorFlow checks natively), payloads also through PNG/zlib checksums and the recorded sizes.
    A bad record raises DataError naming shard and record.
    """

    def __init__(self, argument=None, split="train"):
        if not argument:
            raise ConfigError("SPEC tfrecord needs a directory: tfrecord:DIR.")
        self.directory = Path(argument)
        self.split, self.section = split_section(self.directory, split)
        self.depth_scale = float(self.section["depth_scale"])
        # the list lines its source dropped (`data convert` records them), counted by evaluations as skipped
        self.without_ground_truth = list(self.section.get("without_ground_truth", ()))
        self._index = None

    def _build_index(self):
        index = []
        for shard in self.section["shards"]:
            path = self.directory / shard["file"]
            offsets = record_offsets(path)
            if len(offsets) != shard["records"]:
                raise DataError(f"{path}: {len(offsets)} records, the manifest says {shard['records']}.")
            index.extend((path, i, offset, length) for i, (offset, length) in enumerate(offsets))
        self._index = index

    def __len__(self):
        return int(self.section["records"])

    def __getitem__(self, index):
        if self._index is None:
            self._build_index()
        if index < 0:
            index += len(self._index)
        if not 0 <= index < len(self._index):
            raise IndexError(f"tfrecord {self.split} index {index} out of range ({len(self._index)} records)")
        path, number, offset, length = self._index[index]
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                record = handle.read(length + 4)
        except OSError as error:
            raise DataError(f"Cannot read {path}: {error.strerror}.") from None
        if len(record) != length + 4:
            raise DataError(f"{path}: record {number} is truncated.")
        record, (crc,) = record[:length], struct.unpack("<I", record[length:])
        if masked_crc32c(record) != crc:  # id, focal and sizes have no checksum of their own
            raise DataError(f"{path}: record {number} is corrupt (its data CRC does not match).")
        sample = decode_record(record, self.depth_scale, where=f"{path} record {number}")
        sample.meta.update(shard=path.name, record=number)
        return sample

    def __repr__(self):
        return f"TFRecordSource({str(self.directory)!r}, split={self.split!r}, records={len(self)})"


# ------------------------------------------------------------------------------------- tf.data


def tfrecord_dataset(directory, split=None, shuffle_files=False, num_parallel_reads=AUTOTUNE, *, seed=None, with_meta=False, skip_bad_records=False):
    """A `tf.data.Dataset` of (rgb uint8 (H, W, 3), depth float32 metres (H, W, 1)) from the shards.

    directory: a folder written by `hqdepth data convert` (or `hqdepth data synthetic`).
    split: the split to read; None reads the only split the directory holds.
    shuffle_files: shuffle the shard order each epoch (with `seed`); records within a shard keep
        their order, so add `.shuffle(buffer)` for sample-level shuffling. With shuffling, the
        interleave is non-deterministic for speed.
    num_parallel_reads: shards read and decoded at the same time (`tf.data.AUTOTUNE` = one per
        core; 1 or None reads them one after the other in order). Each shard is also decoded with
        a parallel map, so one shard still uses several cores.
    with_meta: also yield a dict {"id": string, "focal": float32 (0 = unknown)} as a third element.
    skip_bad_records: by default a corrupt, truncated or undecodable record raises
        `InvalidArgumentError` naming the shard (after the shard's good records were yielded);
        with True bad records are dropped and a warning naming the shard is printed.

    The static shape is set when every sample of the split has the same size. Depth 0 = no
    ground truth. The dataset is finite (one pass); add `.repeat()` for more epochs.
    An incomplete conversion, a missing manifest or missing shard files raise DataError here.
    """
    import tensorflow as tf

    directory = Path(directory)
    split, section = split_section(directory, split)
    shards = [shard for shard in section["shards"] if shard["records"] > 0]
    if not shards:
        raise DataError(f"Split {split!r} of {directory} has no records.")
    missing = [shard["file"] for shard in shards if not (directory / shard["file"]).is_file()]
    if missing:
        raise DataError(f"{len(missing)} shard(s) of split {split!r} are missing in {directory}: {', '.join(missing[:5])}.")
    scale = float(section["depth_scale"])
    sizes = list(section.get("sizes", {}))
    static = tuple(int(v) for v in sizes[0].split("x")) if len(sizes) == 1 else (None, None)
    parallel = tf.data.AUTOTUNE if num_parallel_reads in (AUTOTUNE, tf.data.AUTOTUNE) else int(num_parallel_reads or 1)
    if parallel < 1 and parallel != tf.data.AUTOTUNE:
        raise ConfigError(f"num_parallel_reads={num_parallel_reads!r} must be >= 1 or tf.data.AUTOTUNE.")
    spec = {
        "rgb": tf.io.FixedLenFeature([], tf.string),
        "depth": tf.io.FixedLenFeature([], tf.string),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "width": tf.io.FixedLenFeature([], tf.int64),
        "id": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "focal": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    }

    def decode(record):
        features = tf.io.parse_single_example(record, spec)
        rgb = tf.io.decode_png(features["rgb"], channels=3, dtype=tf.uint8)
        raw = tf.io.decode_png(features["depth"], channels=1, dtype=tf.uint16)
        size = tf.stack([features["height"], features["width"]])
        with tf.control_dependencies(
            [
                tf.debugging.assert_equal(tf.shape(rgb, out_type=tf.int64)[:2], size, message="RGB size differs from the record"),
                tf.debugging.assert_equal(tf.shape(raw, out_type=tf.int64)[:2], size, message="depth size differs from the record"),
            ]
        ):
            depth = tf.cast(raw, tf.float32) / tf.constant(scale, tf.float32)
        rgb = tf.ensure_shape(rgb, (*static, 3))
        depth = tf.ensure_shape(depth, (*static, 1))
        if with_meta:
            return rgb, depth, {"id": features["id"], "focal": features["focal"]}
        return rgb, depth

    def sentinel():
        empty = (tf.zeros((0, 0, 3), tf.uint8), tf.zeros((0, 0, 1), tf.float32))
        if with_meta:
            empty = (*empty, {"id": tf.constant(""), "focal": tf.constant(0.0)})
        return empty

    def read_shard(path, expected):
        records = tf.data.TFRecordDataset(path)
        decoded = records.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        decoded = decoded.ignore_errors(log_warning=True)
        # Count the records that decoded; at the end of the shard compare with the manifest.
        tagged = decoded.map(lambda *item: (item, False))
        tagged = tagged.concatenate(tf.data.Dataset.from_tensors((sentinel(), True)))

        def check(count, element):
            item, is_end = element
            bad = tf.logical_and(is_end, tf.not_equal(count, expected))
            if skip_bad_records:

                def warn():
                    message = tf.print("hqdepth: WARNING: skipped", expected - count, "bad record(s) in shard", path, output_stream=sys.stderr)
                    with tf.control_dependencies([message]):
                        return tf.constant(True)

                op = tf.cond(bad, warn, lambda: tf.constant(True))
            else:
                # one value, "hqdepth: <message>": `hqdepth.errors.error_from_tensorflow` reads it back
                message = tf.strings.join([
                    "hqdepth: bad record(s) in TFRecord shard ", path, ": decoded ", tf.strings.as_string(count),
                    " of ", tf.strings.as_string(expected), " records (`hqdepth data verify` finds them; skip_bad "
                    "drops them)"])
                op = tf.debugging.Assert(tf.logical_not(bad), [message])
            with tf.control_dependencies([op]):
                new_count = count + tf.cast(tf.logical_not(is_end), tf.int64)
            return new_count, element

        def restore_shape(item, is_end):  # the empty sentinel made the shapes unknown
            return (tf.ensure_shape(item[0], (*static, 3)), tf.ensure_shape(item[1], (*static, 1)), *item[2:])

        checked = tagged.scan(tf.constant(0, tf.int64), check)
        return checked.filter(lambda item, is_end: tf.logical_not(is_end)).map(restore_shape)

    files = tf.data.Dataset.from_tensor_slices(
        ([str(directory / shard["file"]) for shard in shards], tf.constant([shard["records"] for shard in shards], tf.int64))
    )
    if shuffle_files:
        files = files.shuffle(len(shards), seed=seed, reshuffle_each_iteration=True)
    if parallel == 1:
        cycle, calls = 1, None
    elif parallel == tf.data.AUTOTUNE:
        cycle, calls = tf.data.AUTOTUNE, tf.data.AUTOTUNE
    else:
        cycle, calls = min(len(shards), parallel), parallel
    return files.interleave(read_shard, cycle_length=cycle, block_length=1, num_parallel_calls=calls, deterministic=not shuffle_files)
