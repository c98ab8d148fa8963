"""Dataset tools behind `hqdepth data ...` and `data_tools/`: convert, verify, stats, synthetic.

- `convert(spec, out_dir, split=...)`: any SPEC -> sharded TFRecords + manifest (see
  `hqdepth.data.tfrecord`), encoded in parallel worker processes (spawn context: safe when
  TensorFlow is loaded), resumable: a shard whose file matches the sha256 in the manifest is kept.
- `verify(directory)`: re-reads every shard with TensorFlow (record CRCs), decodes every record,
  compares counts, sizes, scale and sha256 with the manifest; returns the list of problems.
- `stats(spec)`: depth histogram, valid fraction, depth range/mean, mean RGB, image sizes, and the
  geometric ground truth when samples carry it (edges, planes: `geometry_stats`).
- `write_synthetic(...)`: synthetic scenes as TFRecord shards, or as PNG pairs plus a list file.
"""

import importlib
import json
import math
import multiprocessing
import os
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from hqdepth.data.base import open_source, parse_spec
from hqdepth.data.tfrecord import (
    FORMAT,
    FORMAT_VERSION,
    decode_example,
    decode_record,
    encode_sample,
    read_manifest,
    record_offsets,
    sha256_file,
    write_manifest,
)
from hqdepth.errors import ConfigError, DataError, HQDepthError

DEFAULT_SHARD_SIZE = 256
CHUNK = 16  # samples per worker task


def default_depth_scale(spec):
    """Depth PNG scale for a SPEC: 256 for KITTI (its own encoding, ~256 m range), the source's own PNG scale when
    the SPEC gives one for integer-coded depth (`folder:DIR?scale=256`: its depths fit 16 bits at that scale; not
    with `bits=any`, where `scale` divides float values), else 1000 (mm)."""
    from hqdepth.data.common import split_argument

    kind, argument = parse_spec(spec)
    if kind == "kitti":
        return 256.0
    options = split_argument(argument)[2] if argument else {}
    scale = options.get("scale") if options.get("bits", "16") in ("16", "8") else None
    try:
        return float(scale) if scale is not None and 0 < float(scale) <= 65535 else 1000.0
    except ValueError:  # the source itself refuses it, naming it
        return 1000.0


def default_workers():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _progress(total, desc, enabled, unit="img"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, file=sys.stderr)


# ------------------------------------------------------------------------------------- workers

_WORKER_SOURCES = {}


def _worker_source(spec, split, options, module=None):
    key = (spec, split, tuple(sorted(options.items())))
    if key not in _WORKER_SOURCES:
        if module and module != "__main__" and module not in sys.modules:
            importlib.import_module(module)  # a source registered outside hqdepth (plugin)
        _WORKER_SOURCES.clear()
        _WORKER_SOURCES[key] = open_source(spec, split=split, **options)
    return _WORKER_SOURCES[key]


# Manifest name of each geometric ground truth a record can store, and the meta key / record feature that holds
# it ("planes": a plane id map).
GEOMETRY_IN_MANIFEST = {"edges": "edges", "planes": "plane_ids", "intrinsics": "intrinsics"}


def _geometry_names(mapping):
    """The `GEOMETRY_IN_MANIFEST` names stored in `mapping` (a sample's meta, or a record's features)."""
    return [name for name, key in GEOMETRY_IN_MANIFEST.items() if mapping.get(key) is not None]


def _shard_geometry(path):
    """{name: records} of the geometry a written shard stores, read from its records (for shards kept from a
    manifest that did not count them)."""
    counts = Counter()
    with open(path, "rb") as handle:
        for offset, length in record_offsets(path):
            handle.seek(offset)
            counts.update(_geometry_names(decode_example(handle.read(length))))
    return dict(counts)


def _encode_chunk(task):
    """Worker: encode samples [start, stop) of a source. Returns (records, sizes, geometry, skipped):
    `geometry` lists, per record, the names of `GEOMETRY_IN_MANIFEST` it carries.

    A user-caused error is returned as ("error", message) so that it crosses the process boundary."""
    spec, split, options, module, start, stop, depth_scale, skip_errors = task
    try:
        source = _worker_source(spec, split, options, module)
        records, sizes, geometry, skipped = [], [], [], []
        for index in range(start, stop):
            sample = None
            try:
                sample = source[index]
                records.append(encode_sample(sample, depth_scale))
                sizes.append(f"{sample.rgb.shape[0]}x{sample.rgb.shape[1]}")
                geometry.extend(_geometry_names(sample.meta or {}))
            except DataError as error:
                if skip_errors:
                    skipped.append({"index": index, "error": str(error)})
                elif sample is None:  # a sample that cannot be read (not one that cannot be encoded)
                    raise DataError(f"{str(error).rstrip('.')}; --skip-errors (skip_errors=True) leaves unreadable "
                                    "samples out.") from None
                else:
                    raise
        return "ok", (records, sizes, geometry, skipped)
    except HQDepthError as error:
        return "error", (type(error).__name__, str(error))


def _map_chunks(tasks, workers):
    """Yield results of `_encode_chunk` in task order, in-process or in a spawn pool."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield _encode_chunk(task)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(tasks))) as pool:
        yield from pool.imap(_encode_chunk, tasks)


def _raise_worker_error(payload):
    name, message = payload
    raise {"ConfigError": ConfigError}.get(name, DataError)(message)


# ------------------------------------------------------------------------------------- convert


def shard_name(split, index, total):
    return f"{split}-{index:05d}-of-{total:05d}.tfrecord"


def convert(
    spec,
    out_dir,
    split="train",
    shard_size=DEFAULT_SHARD_SIZE,
    workers=1,
    depth_scale=None,
    limit=None,
    overwrite=False,
    skip_errors=False,
    progress=False,
    source_options=None,
):
    """Convert split `split` of SPEC into TFRecord shards in `out_dir` (resumable).

    Returns a report {"split", "records", "shards", "converted": [files], "kept": [files],
    "geometry": {"edges"/"planes"/"intrinsics": records carrying it}, "skipped": [{"index", "error"}],
    "without_ground_truth": ["list:line" of each list line the source dropped, e.g. KITTI's None ground truth],
    "manifest": path}. A re-run with the same arguments keeps
    every shard whose sha256 matches the manifest and converts only missing or damaged ones; a
    re-run with different arguments for an existing split needs `overwrite=True`.
    """
    import tensorflow as tf

    source_options = json.loads(json.dumps(dict(source_options or {})))  # as the manifest stores them
    out = Path(out_dir)
    if shard_size < 1:
        raise ConfigError(f"Shard size must be >= 1, got {shard_size}.")
    depth_scale = float(depth_scale or default_depth_scale(spec))
    if not 0 < depth_scale * 1.0 <= 65535:
        raise ConfigError(f"Depth scale {depth_scale:g} must be in (0, 65535].")
    source = open_source(spec, split=split, **source_options)
    count = len(source)
    if limit is not None:
        count = min(count, int(limit))
    if count == 0:
        raise DataError(f"SPEC {spec!r} split {split!r} has no samples to convert.")
    without_ground_truth = source.lines_without_ground_truth(count)
    module = type(source).__module__
    del source  # workers open their own copy
    out.mkdir(parents=True, exist_ok=True)

    num_shards = math.ceil(count / shard_size)
    plan = {
        "source": str(spec),
        "source_options": source_options,
        "count": count,
        "shard_size": int(shard_size),
        "depth_scale": depth_scale,
        "skip_errors": bool(skip_errors),
    }
    manifest = read_manifest(out, missing_ok=True) or {"format": FORMAT, "version": FORMAT_VERSION, "splits": {}}
    old = manifest["splits"].get(split)
    written = old is not None and any(shard.get("sha256") or (out / shard["file"]).exists()
                                      for shard in old.get("shards", []))
    if old is not None and any(old.get(key) != value for key, value in plan.items()):
        if not overwrite and written:  # a conversion that stopped before its first shard holds nothing to keep
            differing = [key for key, value in plan.items() if old.get(key) != value]
            raise ConfigError(
                f"{out} already holds split {split!r} converted with different settings ({', '.join(differing)}: "
                f"{', '.join(repr(old.get(key)) for key in differing)}); pass --overwrite to replace it."
            )
        for shard in old.get("shards", []):
            (out / shard["file"]).unlink(missing_ok=True)
        old = None
    old_shards = {shard["file"]: shard for shard in (old or {}).get("shards", [])}

    shards, todo, kept = [], [], []
    for index in range(num_shards):
        start = index * shard_size
        entry = {"file": shard_name(split, index, num_shards), "start": start, "count": min(shard_size, count - start)}
        previous = old_shards.get(entry["file"])
        path = out / entry["file"]
        if previous and previous.get("sha256") and path.exists() and sha256_file(path) == previous["sha256"]:
            if "geometry" not in previous:  # kept from a manifest that did not count it
                previous["geometry"] = _shard_geometry(path)
            shards.append(previous)
            kept.append(entry["file"])
            continue
        entry.update(records=None, sha256=None, sizes={}, geometry={}, skipped=[])
        shards.append(entry)
        todo.append(index)
    section = dict(plan, complete=False, records=None, sizes={}, geometry={}, skipped=[],
                   without_ground_truth=without_ground_truth, shards=shards)
    manifest["splits"][split] = section
    write_manifest(out, manifest)

    tasks, owners = [], []
    for index in todo:
        entry = shards[index]
        for start in range(entry["start"], entry["start"] + entry["count"], CHUNK):
            stop = min(start + CHUNK, entry["start"] + entry["count"])
            tasks.append((str(spec), split, source_options, module, start, stop, depth_scale, bool(skip_errors)))
            owners.append(index)

    converted = []
    bar = _progress(sum(shards[i]["count"] for i in todo), f"convert {split}", progress)
    writer = current = None
    sizes, geometry, skipped, records = Counter(), Counter(), [], 0
    results = _map_chunks(tasks, workers)
    try:
        for owner, (status, payload) in zip(owners, results):
            if status == "error":
                _raise_worker_error(payload)
            entry = shards[owner]
            path = out / entry["file"]
            tmp = path.with_name(path.name + ".tmp")
            if current != owner:
                writer = tf.io.TFRecordWriter(str(tmp))
                current, sizes, geometry, skipped, records = owner, Counter(), Counter(), [], 0
            chunk_records, chunk_sizes, chunk_geometry, chunk_skipped = payload
            for record in chunk_records:
                writer.write(record)
            records += len(chunk_records)
            sizes.update(chunk_sizes)
            geometry.update(chunk_geometry)
            skipped.extend(chunk_skipped)
            bar.update(len(chunk_records) + len(chunk_skipped))
            if records + len(skipped) == entry["count"]:  # shard complete
                writer.close()
                writer = current = None
                os.replace(tmp, path)
                entry.update(records=records, sha256=sha256_file(path), sizes=dict(sizes), geometry=dict(geometry),
                             skipped=skipped)
                converted.append(entry["file"])
                write_manifest(out, manifest)
    finally:
        results.close()  # stops the worker pool at once on an error or Ctrl-C
        bar.close()
        if writer is not None:
            writer.close()

    total_sizes, total_geometry = Counter(), Counter()
    for entry in shards:
        total_sizes.update(entry["sizes"])
        total_geometry.update(entry["geometry"])
    all_skipped = [item for entry in shards for item in entry["skipped"]]
    section.update(
        complete=True,
        records=sum(entry["records"] for entry in shards),
        sizes=dict(sorted(total_sizes.items())),
        geometry={name: total_geometry[name] for name in GEOMETRY_IN_MANIFEST if total_geometry[name]},
        skipped=all_skipped,
    )
    write_manifest(out, manifest)
    return {
        "split": split,
        "records": section["records"],
        "shards": len(shards),
        "converted": converted,
        "kept": kept,
        "geometry": section["geometry"],
        "skipped": all_skipped,
        "without_ground_truth": without_ground_truth,
        "manifest": str(out / "manifest.json"),
    }


# -------------------------------------------------------------------------------------- verify


def verify(directory, split=None, progress=False):
    """Check every shard of `directory` (all splits, or one). Returns a report
    {"splits": {...}, "shards": n, "records": n, "problems": [{"split", "shard", "record", "problem"}]}.
    """
    import tensorflow as tf

    directory = Path(directory)
    manifest = read_manifest(directory)
    splits = manifest["splits"]
    if split is not None and split not in splits:
        raise ConfigError(f"{directory} has no split {split!r}; it holds: {', '.join(sorted(splits)) or '(none)'}.")
    names = [split] if split is not None else sorted(splits)
    problems, checked_shards, checked_records = [], 0, 0

    def problem(split_name, shard, record, text):
        problems.append({"split": split_name, "shard": shard, "record": record, "problem": text})

    total = sum((splits[name].get("records") or 0) for name in names)
    bar = _progress(total, "verify", progress, unit="rec")
    try:
        for name in names:
            section = splits[name]
            if not section.get("complete"):
                problem(name, None, None, "conversion incomplete (rerun the convert command)")
            scale = float(section["depth_scale"])
            for shard in section["shards"]:
                path = directory / shard["file"]
                checked_shards += 1
                if shard.get("sha256") is None:
                    problem(name, shard["file"], None, "shard not written yet")
                    continue
                if not path.exists():
                    problem(name, shard["file"], None, "file missing")
                    continue
                if sha256_file(path) != shard["sha256"]:
                    problem(name, shard["file"], None, "sha256 differs from the manifest")
                count, sizes, geometry = 0, Counter(), Counter()
                try:
                    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
                        try:
                            sample = decode_record(record, scale, where=f"{path} record {count}")
                            sizes[f"{sample.rgb.shape[0]}x{sample.rgb.shape[1]}"] += 1
                            geometry.update(_geometry_names(sample.meta))
                        except DataError as error:
                            problem(name, shard["file"], count, str(error))
                        count += 1
                        bar.update(1)
                except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as error:
                    problem(name, shard["file"], count, f"corrupt or truncated record ({_tf_message(error)})")
                checked_records += count
                if count != shard["records"]:
                    problem(name, shard["file"], None, f"{count} readable records, the manifest says {shard['records']}")
                elif dict(sizes) != shard.get("sizes", dict(sizes)):
                    problem(name, shard["file"], None, f"image sizes {dict(sizes)} differ from the manifest's {shard['sizes']}")
                elif dict(geometry) != shard.get("geometry", dict(geometry)):
                    problem(name, shard["file"], None, f"geometry counts {dict(geometry)} differ from the manifest's "
                                                      f"{shard['geometry']}")
    finally:
        bar.close()
    known = {shard["file"] for name in splits for shard in splits[name]["shards"]}
    extra = sorted(p.name for p in directory.glob("*.tfrecord") if p.name not in known)
    return {
        "splits": {name: splits[name].get("records") for name in names},
        "shards": checked_shards,
        "records": checked_records,
        "problems": problems,
        "unlisted_files": extra,
    }


def _tf_message(error):
    """The readable part of a TensorFlow error message (no function-node or op decorations; TensorFlow's
    "truncated record at N' failed with ..." loses its stray quote)."""
    text = re.sub(r"\{\{[^}]*\}\}", "", error.message.splitlines()[0])
    text = re.sub(r"record at (\d+)' failed with ", r"record at byte \1: ", text)
    return re.sub(r"\s*\[Op:[^\]]*\].*$", "", text).strip()


# --------------------------------------------------------------------------------------- stats


def stats(spec, split="train", limit=None, bins=20, max_depth=None, progress=False, source_options=None):
    """Depth histogram (`bins` bins over [0, max_depth] m of valid pixels, plus a count above; max_depth None:
    80 for a KITTI source or PNGs in KITTI's metres x 256, else 10), valid fraction, depth min/max/mean, mean RGB
    and image sizes of (the first `limit` samples of) a SPEC, and the list lines it dropped for lack of ground truth
    (`without_ground_truth`)."""
    source = open_source(spec, split=split, **(source_options or {}))
    count = len(source) if limit is None else min(len(source), int(limit))
    if max_depth is None:
        kitti = getattr(source, "dataset", None) == "kitti" or getattr(source, "scale", None) == 256
        max_depth = 80.0 if kitti else 10.0
    if bins < 1 or max_depth <= 0:
        raise ConfigError(f"stats needs bins >= 1 and max_depth > 0, got {bins} and {max_depth}.")
    edges = np.linspace(0.0, float(max_depth), int(bins) + 1)
    histogram = np.zeros(int(bins), dtype=np.int64)
    above = pixels = valid = 0
    depth_sum = 0.0
    depth_min, depth_max = math.inf, -math.inf
    rgb_sum = np.zeros(3, dtype=np.float64)
    sizes, focals = Counter(), Counter()
    geometry = GeometryTally()
    bar = _progress(count, f"stats {split}", progress)
    try:
        for index in range(count):
            sample = source[index]
            depth = np.asarray(sample.depth, dtype=np.float64).reshape(-1)
            good = depth[np.isfinite(depth) & (depth > 0)]
            pixels += depth.size
            valid += good.size
            if good.size:
                depth_sum += good.sum()
                depth_min = min(depth_min, good.min())
                depth_max = max(depth_max, good.max())
                histogram += np.histogram(good, edges)[0]
                above += int((good > max_depth).sum())
            rgb_sum += np.asarray(sample.rgb, dtype=np.float64).reshape(-1, 3).mean(axis=0)
            sizes[f"{sample.rgb.shape[0]}x{sample.rgb.shape[1]}"] += 1
            if sample.meta.get("focal"):
                focals[round(float(sample.meta["focal"]), 4)] += 1
            geometry.add(sample.meta)
            bar.update(1)
    finally:
        bar.close()
    return {
        "spec": str(spec),
        "split": split,
        "samples": count,
        "sizes": dict(sizes),
        "focal": {str(k): v for k, v in sorted(focals.items())},
        "valid_fraction": valid / pixels if pixels else 0.0,
        "depth_min": depth_min if valid else None,
        "depth_max": depth_max if valid else None,
        "depth_mean": depth_sum / valid if valid else None,
        "depth_histogram": {"edges": edges.tolist(), "counts": histogram.tolist(), "above": above},
        "mean_rgb": (rgb_sum / count).tolist() if count else None,
        "geometry": geometry.report(),
        "without_ground_truth": source.lines_without_ground_truth(count),
    }


class GeometryTally:
    """The geometric ground truth of `stats`: per sample meta (`hqdepth.geometry.GROUND_TRUTH_KEYS`)."""

    def __init__(self):
        self.with_edges = self.with_planes = self.with_intrinsics = self.planes = 0
        self.edge_fraction = self.plane_fraction = 0.0
        self.plane_shares = []

    def add(self, meta):
        edges = meta.get("edges")
        if edges is not None:
            edges = np.asarray(edges)
            self.with_edges += 1
            self.edge_fraction += float(np.count_nonzero(edges)) / max(edges.size, 1)
        plane_ids = meta.get("plane_ids")
        if plane_ids is not None:
            plane_ids = np.asarray(plane_ids)
            ids, counts = np.unique(plane_ids[plane_ids > 0], return_counts=True)
            self.with_planes += 1
            self.planes += len(ids)
            self.plane_fraction += float(counts.sum()) / max(plane_ids.size, 1)
            self.plane_shares.extend((counts / max(plane_ids.size, 1)).tolist())
        if meta.get("intrinsics") is not None:
            self.with_intrinsics += 1

    def report(self):
        """None when no sample had edges, planes or intrinsics; else the counts and means:
        edge_pixel_fraction (mean over the samples with edges of their edge-pixel fraction), planes_per_image
        and plane_pixel_fraction (pixels on any plane) over the samples with plane ids, plane_share_mean (the
        mean pixel fraction of one plane, over all planes)."""
        if not (self.with_edges or self.with_planes or self.with_intrinsics):
            return None
        return {
            "samples_with_edges": self.with_edges,
            "edge_pixel_fraction": self.edge_fraction / self.with_edges if self.with_edges else None,
            "samples_with_planes": self.with_planes,
            "planes": self.planes,
            "planes_per_image": self.planes / self.with_planes if self.with_planes else None,
            "plane_pixel_fraction": self.plane_fraction / self.with_planes if self.with_planes else None,
            "plane_share_mean": float(np.mean(self.plane_shares)) if self.plane_shares else None,
            "samples_with_intrinsics": self.with_intrinsics,
        }


def format_stats(report):
    lines = [
        f"{report['spec']} [{report['split']}]: {report['samples']} samples, sizes {report['sizes']}"
        + (f"; {len(report['without_ground_truth'])} list line(s) without ground truth left out"
           if report.get("without_ground_truth") else ""),
        f"focal: {report['focal'] or 'unknown'}",
        f"valid depth fraction: {report['valid_fraction']:.4f}",
    ]
    if report["depth_mean"] is not None:
        lines.append(f"depth: min {report['depth_min']:.3f} m, mean {report['depth_mean']:.3f} m, max {report['depth_max']:.3f} m")
    if report["mean_rgb"] is not None:
        lines.append("mean RGB: " + ", ".join(f"{v:.2f}" for v in report["mean_rgb"]))
    hist = report["depth_histogram"]
    total = max(sum(hist["counts"]) + hist["above"], 1)
    lines.append("depth histogram (valid pixels):")
    for lo, hi, n in zip(hist["edges"][:-1], hist["edges"][1:], hist["counts"]):
        lines.append(f"  {lo:6.2f}-{hi:6.2f} m {n:>12d} {100 * n / total:6.2f}% {'#' * int(round(50 * n / total))}")
    lines.append(f"  > {hist['edges'][-1]:.2f} m   {hist['above']:>12d} {100 * hist['above'] / total:6.2f}%")
    geometry = report.get("geometry")
    if geometry:
        samples = report["samples"]
        line = f"geometric ground truth: edges in {geometry['samples_with_edges']} of {samples} samples"
        if geometry["edge_pixel_fraction"] is not None:
            line += f" (mean edge-pixel fraction {geometry['edge_pixel_fraction']:.4f})"
        lines.append(line)
        line = f"  planes in {geometry['samples_with_planes']} of {samples} samples"
        if geometry["planes_per_image"] is not None:
            share = geometry["plane_share_mean"]
            line += (f": {geometry['planes_per_image']:.2f} planes per image covering {geometry['plane_pixel_fraction']:.4f} "
                     f"of the pixels, mean pixel share of one plane {'n/a' if share is None else f'{share:.4f}'}")
        lines.append(line)
        lines.append(f"  intrinsics in {geometry['samples_with_intrinsics']} of {samples} samples")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- synthetic


def synthetic_spec(count, size, seed=0):
    from hqdepth.data.synthetic import parse_size

    height, width = parse_size(size)
    return f"synthetic:{int(count)},size={height}x{width},seed={int(seed)}"


def _write_png_chunk(task):
    spec, split, start, stop, out_dir, depth_scale = task
    import cv2

    try:
        source = _worker_source(spec, split, {}, "hqdepth.data.synthetic")
        lines = []
        for index in range(start, stop):
            name = f"{index:07d}.png"
            rgb_rel, depth_rel = f"{split}/rgb/{name}", f"{split}/depth/{name}"
            rgb_path, depth_path = Path(out_dir) / rgb_rel, Path(out_dir) / depth_rel
            sample = source[index]
            if not (rgb_path.exists() and depth_path.exists()):
                depth = np.round(sample.depth[..., 0].astype(np.float64) * depth_scale)
                if depth.max(initial=0) > 65535:
                    raise DataError(f"Synthetic scene {index}: depth does not fit 16 bits at scale {depth_scale:g}.")
                for path, image in ((depth_path, depth.astype(np.uint16)), (rgb_path, np.ascontiguousarray(sample.rgb[..., ::-1]))):
                    tmp = path.with_name(".tmp-" + path.name)
                    if not cv2.imwrite(str(tmp), image):
                        raise DataError(f"Cannot write {tmp}.")
                    os.replace(tmp, path)
            lines.append(f"{rgb_rel} {depth_rel} {sample.meta['focal']:.4f}")
        return "ok", lines
    except HQDepthError as error:
        return "error", (type(error).__name__, str(error))


def write_synthetic(out_dir, count, size=(240, 320), split="train", seed=0, fmt="tfrecord", shard_size=DEFAULT_SHARD_SIZE, workers=1, depth_scale=1000.0, overwrite=False, progress=False):
    """Write `count` synthetic scenes of `split`.

    fmt "tfrecord": shards + manifest in out_dir (same as `convert`).
    fmt "ibims": the scenes as an iBims-1 release in out_dir (one `.mat` per scene with its edges, planes and
    intrinsics, `imagelist.txt`), read by `ibims:out_dir` and by the official iBims-1 evaluation code.
    fmt "png": out_dir/<split>/rgb/NNNNNNN.png (8-bit RGB), out_dir/<split>/depth/NNNNNNN.png
    (16-bit, metres * depth_scale, default millimetres) and out_dir/<split>.txt with lines
    `<split>/rgb/N.png <split>/depth/N.png <focal>` (the BTS list format). A re-run keeps the
    pairs already written; other settings for the same split need `overwrite=True`.
    """
    spec = synthetic_spec(count, size, seed)
    if fmt == "tfrecord":
        return convert(spec, out_dir, split=split, shard_size=shard_size, workers=workers, depth_scale=depth_scale, overwrite=overwrite, progress=progress)
    if fmt == "ibims":
        return _write_synthetic_ibims(spec, out_dir, split, overwrite, progress)
    if fmt != "png":
        raise ConfigError(f"Unknown synthetic output format {fmt!r}; use tfrecord, png or ibims.")
    open_source(spec, split=split)  # validates count/size/seed/split
    out = Path(out_dir)
    settings = {"source": spec, "split": split, "depth_scale": float(depth_scale)}
    record = out / f"{split}.synthetic.json"
    if record.exists() and json.loads(record.read_text()) != settings:
        if not overwrite:
            raise ConfigError(f"{out} already holds {split} scenes written with other settings ({record.read_text().strip()}); pass --overwrite.")
        for folder in ("rgb", "depth"):
            for path in (out / split / folder).glob("*.png"):
                path.unlink()
    for folder in ("rgb", "depth"):
        (out / split / folder).mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(settings) + "\n")
    tasks = [(spec, split, start, min(start + CHUNK, int(count)), str(out), float(depth_scale)) for start in range(0, int(count), CHUNK)]
    lines = []
    bar = _progress(int(count), f"synthetic {split}", progress)
    try:
        if workers <= 1 or len(tasks) <= 1:
            results = map(_write_png_chunk, tasks)
            pool = None
        else:
            pool = multiprocessing.get_context("spawn").Pool(min(workers, len(tasks)))
            results = pool.imap(_write_png_chunk, tasks)
        try:
            for status, payload in results:
                if status == "error":
                    _raise_worker_error(payload)
                lines.extend(payload)
                bar.update(len(payload))
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    finally:
        bar.close()
    list_file = out / f"{split}.txt"
    list_file.write_text("\n".join(lines) + "\n")
    return {"split": split, "records": len(lines), "list": str(list_file), "depth_scale": float(depth_scale)}


def _write_synthetic_ibims(spec, out_dir, split, overwrite, progress):
    """fmt "ibims" of `write_synthetic`: a re-run with the same scenes writes them again; a release of other
    scenes in `out_dir` needs `overwrite` (its listed files are removed first)."""
    from hqdepth.data.ibims import LIST_NAME, _read_list, write_ibims_release

    source = open_source(spec, split=split)
    out = Path(out_dir)
    listing, record = out / LIST_NAME, out / "synthetic.json"
    settings = {"source": spec, "split": split}
    if listing.exists() and not (record.exists() and json.loads(record.read_text()) == settings):
        if not overwrite:
            held = record.read_text().strip() if record.exists() else "not written by `hqdepth data synthetic`"
            raise ConfigError(f"{out} already holds another iBims-1 release ({held}); pass --overwrite to replace it.")
        try:
            old = _read_list(listing)
        except DataError:  # an interrupted release lists nothing
            old = []
        for name in old:
            (out / f"{name}.mat").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(settings) + "\n")
    bar = _progress(len(source), f"synthetic {split} (iBims-1)", progress)
    try:
        count = write_ibims_release(out, source, progress=bar.update)
    finally:
        bar.close()
    return {"split": split, "records": count, "list": str(listing)}
