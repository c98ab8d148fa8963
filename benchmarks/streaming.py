"""Does the training input pipeline stream? RSS over one epoch of a TFRecord set larger than its shuffle buffer.

    python benchmarks/streaming.py                       # 512 synthetic scenes at 300x400, shuffle buffer 64
    python benchmarks/streaming.py --dir /tmp/set --count 1024 --buffer 128

1. (not measured) writes `--count` synthetic scenes at `--size` as TFRecord shards with `hqdepth.data.tools.convert`
   (kept in `--dir` when given and complete, else a temporary folder);
2. iterates one epoch of `hqdepth.data.load("tfrecord:DIR", "train", recipe="hqmd", size=289x385,
   batch_size=--batch, shuffle_buffer=--buffer)`, reading this process's RSS (/proc/self/status VmRSS) after every
   batch. Decoded, the set is count x H x W x (3 + 4) bytes (512 x 300 x 400 x 7 = 430 MB): were it held in
   memory, RSS would grow by that much over the epoch; streaming keeps it flat after the shuffle buffer has filled.
Reported: RSS at the first batch, the middle and the end of the epoch, the maximum and the growth from the first
quarter to the end, with images/s of the pass.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import current_rss_mb, emit, peak_rss_mb  # noqa: E402


def ensure_records(directory, count, size, shard_size=32):
    """Write the synthetic set unless `directory` already holds it complete; returns bytes on disk."""
    from hqdepth.data import tools
    from hqdepth.data.tfrecord import read_manifest

    spec = tools.synthetic_spec(count, size)
    manifest = read_manifest(directory, missing_ok=True)
    section = (manifest or {}).get("splits", {}).get("train")
    if not (section and section.get("complete") and section.get("source") == spec
            and section.get("shard_size") == shard_size):
        print(f"writing {count} synthetic scenes at {size[0]}x{size[1]} to {directory} ...", flush=True)
        tools.convert(spec, directory, shard_size=shard_size, workers=len(os.sched_getaffinity(0)), overwrite=True)
    return sum(p.stat().st_size for p in Path(directory).glob("train-*.tfrecord"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None)
    parser.add_argument("--count", type=int, default=512)
    parser.add_argument("--size", default="300x400")
    parser.add_argument("--buffer", type=int, default=64, help="shuffle buffer (samples)")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    from hqdepth.data.synthetic import parse_size

    size = parse_size(args.size)
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="hqdepth-stream-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        return measure(args, size, directory)
    finally:
        if not args.dir:
            shutil.rmtree(directory, ignore_errors=True)


def measure(args, size, directory):
    from hqdepth.data import load

    disk = ensure_records(directory, args.count, size)
    dataset = load(f"tfrecord:{directory}", "train", recipe="hqmd", batch_size=args.batch, size=(289, 385),
                   shuffle_buffer=args.buffer, seed=0, repeat=False)
    rss_before = current_rss_mb()
    samples, images = [], 0
    start = time.perf_counter()
    for image, _ in dataset:
        images += int(image.shape[0])
        samples.append((images, current_rss_mb()))
    seconds = time.perf_counter() - start
    decoded_mb = args.count * size[0] * size[1] * 7 / 2 ** 20
    quarter = samples[len(samples) // 4][1]
    result = {
        "records": args.count, "record_size": list(size), "disk_mb": disk / 2 ** 20,
        "decoded_set_mb": decoded_mb, "shuffle_buffer": args.buffer, "batch": args.batch, "images": images,
        "rss_before_mb": rss_before, "rss_first_batch_mb": samples[0][1],
        "rss_middle_mb": samples[len(samples) // 2][1], "rss_end_mb": samples[-1][1],
        "rss_max_mb": max(rss for _, rss in samples), "rss_growth_quarter_to_end_mb": samples[-1][1] - quarter,
        "rss_trace": samples[:: max(len(samples) // 16, 1)], "images_per_s": images / seconds,
        "peak_rss_mb": peak_rss_mb(), "load_average": os.getloadavg()[0], "dir": str(directory),
    }
    result["streams"] = result["rss_growth_quarter_to_end_mb"] < 0.1 * decoded_mb
    print(f"{images} images, {args.count} records ({disk / 2 ** 20:.0f} MB on disk, {decoded_mb:.0f} MB decoded), "
          f"shuffle buffer {args.buffer}: RSS first batch {samples[0][1]:.0f} MB, middle "
          f"{result['rss_middle_mb']:.0f} MB, end {samples[-1][1]:.0f} MB, max {result['rss_max_mb']:.0f} MB; "
          f"{result['images_per_s']:.1f} images/s")
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
