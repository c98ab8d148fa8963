"""Input pipeline throughput from TFRecord shards and from a PNG/JPEG list: images/s on N cores.

    .venv/bin/python benchmarks/input_pipeline.py                    # 2 cores, 300x400, both sources
    .venv/bin/python benchmarks/input_pipeline.py --size 480x640     # NYU-sized records
    .venv/bin/python benchmarks/input_pipeline.py --source list      # image files only

1. (not timed) writes `--count` synthetic scenes of `--size` into `--dir` (kept between runs;
   default a temporary folder): `--source tfrecord` as TFRecord shards of `--shard-size`,
   `--source list` as HQMD image pairs in DIR/list (RGB JPEG quality 95 like NYU, 16-bit depth
   PNG = metres * 256) with an HQMD list `rgb depth` (`list:FILE@ROOT?format=hqmd`); `both` (default)
   does both;
2. pins the process to the first `--cores` allowed cores (`os.sched_setaffinity`, same as
   `taskset`) and sets TensorFlow's intra/inter-op pools to that many threads;
3. times `tfrecord_dataset(dir, shuffle_files=True)` -> augmentation -> batch(`--batch`) ->
   prefetch for `--epochs` passes, after one warm-up batch. Augmentation: the `hqmd` train recipe
   of `hqdepth.data.augment` (scale 1-1.5, rotation, 289x385 crop, colour, flip) when it exists,
   else decode + a random 289x385 crop (`--recipe crop` forces that). `--recipe none` = decode only.
   The list is timed through `hqdepth.data.load(spec, "train", recipe="hqmd" (or "none"),
   batch_size=--batch, repeat=--epochs)` (parallel `numpy_function` decode with OpenCV) with the
   same loop; `--recipe crop` exists for TFRecords only.

Target (issue #4): >= 40 images/s on 2 cores. `--append FILE` adds a Markdown row to FILE.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import datetime  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import cpu_model  # noqa: E402  (benchmarks/common.py, beside this script)

from hqdepth.data import tools  # noqa: E402
from hqdepth.data.synthetic import parse_size  # noqa: E402
from hqdepth.data.tfrecord import read_manifest, tfrecord_dataset  # noqa: E402

CROP = (289, 385)


def augmentation(name):
    """(label, fn(rgb, depth, seed) -> (rgb, depth)) for --recipe."""
    import tensorflow as tf

    if name in ("auto", "hqmd"):
        try:
            from hqdepth.data.augment import get_recipe

            recipe = get_recipe("hqmd", mode="train", size=CROP)
            return "hqmd train recipe (hqdepth.data.augment)", lambda rgb, depth, seed: recipe(rgb, depth, seed)
        except (ImportError, Exception) as error:  # noqa: BLE001 - report and fall back
            if name == "hqmd":
                raise
            print(f"note: hqdepth.data.augment hqmd recipe unavailable ({error}); measuring decode + random crop")
    if name in ("auto", "crop"):

        def crop(rgb, depth, seed):
            stacked = tf.concat([tf.cast(rgb, tf.float32), depth], axis=-1)
            out = tf.image.stateless_random_crop(stacked, (*CROP, 4), seed=seed)
            return out[..., :3], out[..., 3:]

        return f"decode + random {CROP[0]}x{CROP[1]} crop", crop
    if name == "none":
        return "decode only", None
    raise SystemExit(f"unknown --recipe {name}")


def write_list(directory, count, size, workers):
    """Synthetic scenes as HQMD pairs (JPEG q95 RGB, 16-bit PNG depth / 256) -> (list SPEC, bytes per pair)."""
    import cv2

    report = tools.write_synthetic(directory, count, size, fmt="png", depth_scale=256.0, workers=workers, overwrite=True)
    lines, total = [], 0
    for line in Path(report["list"]).read_text().splitlines():  # BTS lines: rgb.png depth.png focal
        rgb, depth = line.split()[:2]
        jpeg = rgb[: -len(".png")] + ".jpg"  # re-encoded every run: not timed, and never stale
        if not cv2.imwrite(str(directory / jpeg), cv2.imread(str(directory / rgb)), [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise SystemExit(f"cannot write {directory / jpeg}")
        lines.append(f"{jpeg} {depth}")
        total += (directory / jpeg).stat().st_size + (directory / depth).stat().st_size
    listing = directory / "train-hqmd.txt"
    listing.write_text("\n".join(lines) + "\n")
    return f"list:{listing}@{directory}?format=hqmd", total / len(lines)


def throughput(dataset):
    """(images, timed images, images/s) over one pass of a batched dataset, after one warm-up batch."""
    iterator = iter(dataset)
    images = int(next(iterator)[0].shape[0])  # warm-up batch, not timed
    timed = 0
    start = time.perf_counter()
    for rgb, _ in iterator:
        timed += int(rgb.shape[0])
    return timed + images, timed, timed / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=256, help="records to write (default 256)")
    parser.add_argument("--size", default="300x400", help="stored image size HxW (default 300x400)")
    parser.add_argument("--shard-size", type=int, default=32)
    parser.add_argument("--dir", default=None, help="shard folder (reused when it already holds the data)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--recipe", default="auto", choices=("auto", "hqmd", "crop", "none"))
    parser.add_argument("--source", default="both", choices=("tfrecord", "list", "both"), help="what to time (default both)")
    parser.add_argument("--append", default=None, help="append a Markdown table row to this file")
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    sources = ("tfrecord", "list") if args.source == "both" else (args.source,)
    if args.recipe == "crop" and "list" in sources:
        raise SystemExit("--recipe crop is measured from TFRecords only; add --source tfrecord")

    allowed = sorted(os.sched_getaffinity(0))
    cores = allowed[: args.cores]
    if len(cores) < args.cores:
        print(f"note: only {len(allowed)} core(s) allowed; using {len(cores)}")
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="hqdepth-bench-"))
    spec = tools.synthetic_spec(args.count, size)
    manifest = read_manifest(directory, missing_ok=True)
    section = (manifest or {}).get("splits", {}).get("train")
    stored = {}  # source -> (description, bytes per sample)
    if "tfrecord" in sources:
        if not (section and section.get("complete") and section.get("source") == spec and section.get("shard_size") == args.shard_size):
            print(f"writing {args.count} synthetic scenes at {size[0]}x{size[1]} to {directory} ...")
            tools.convert(spec, directory, shard_size=args.shard_size, workers=len(allowed), overwrite=True, progress=True)
        stored["tfrecord"] = (f"shards of {args.shard_size}", sum(p.stat().st_size for p in directory.glob("train-*.tfrecord")) / args.count)
    if "list" in sources:
        print(f"writing {args.count} synthetic scenes at {size[0]}x{size[1]} as HQMD image pairs to {directory / 'list'} ...")
        list_spec, pair_bytes = write_list(directory / "list", args.count, size, len(allowed))
        stored["list"] = ("JPEG q95 + 16-bit PNG pairs", pair_bytes)

    os.sched_setaffinity(0, set(cores))
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(len(cores))
    tf.config.threading.set_inter_op_parallelism_threads(len(cores))
    results = []
    for source in sources:
        if source == "tfrecord":
            label, augment = augmentation(args.recipe)
            dataset = tfrecord_dataset(directory, shuffle_files=True, seed=0).repeat(args.epochs)
            if augment is not None:
                dataset = dataset.enumerate().map(
                    lambda i, pair: augment(pair[0], pair[1], tf.stack([i, tf.constant(7, tf.int64)])),
                    num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=False,
                )
            dataset = dataset.batch(args.batch).prefetch(tf.data.AUTOTUNE)
            label = f"tfrecord_dataset -> {label}"
        else:
            from hqdepth.data import load

            recipe = "none" if args.recipe == "none" else "hqmd"
            dataset = load(list_spec, "train", recipe=recipe, batch_size=args.batch, size=None if recipe == "none" else CROP, seed=0, repeat=args.epochs)
            label = f"hqdepth.data.load(list:...?format=hqmd, recipe={recipe})" + ("" if recipe == "none" else f" -> {CROP[0]}x{CROP[1]}")
        results.append((source, label, *throughput(dataset)))

    command = "python benchmarks/input_pipeline.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"machine: nproc {os.cpu_count()} ({len(allowed)} allowed), {cpu_model()}, pinned to cores {cores}, TF {tf.__version__}")
    print(f"command: {command.strip()}")
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}, load average {os.getloadavg()[0]:.2f} (1 min; other processes share the cores)")
    for source, label, images, timed, rate in results:
        what, per_sample = stored[source]
        print(f"{source}: {args.count} at {size[0]}x{size[1]}, {per_sample / 1024:.0f} KiB/sample, {what}; pipeline: {label} -> batch {args.batch}")
        print(f"{source}: {images} images ({timed} timed): {rate:.1f} images/s on {len(cores)} core(s)")
        if args.append:
            with open(args.append, "a") as handle:
                handle.write(f"| {datetime.date.today()} | {size[0]}x{size[1]} ({source}) | {label} | {len(cores)} | {args.batch} | {timed} | {rate:.1f} |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
