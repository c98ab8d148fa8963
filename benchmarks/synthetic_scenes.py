"""Synthetic scene rendering speed: scenes/s at 240x320 on one core.

    .venv/bin/python benchmarks/synthetic_scenes.py                  # 200 scenes, 240x320, core 0
    taskset -c 0 .venv/bin/python benchmarks/synthetic_scenes.py     # same pinning done by the shell

The script limits BLAS/OpenMP threads to 1 (NumPy's element-wise work is single-threaded anyway)
and pins itself to one core (`os.sched_setaffinity`, the same as `taskset -c CORE`), then times
`random_scene(seed)` + `render(scene, size)` for consecutive train seeds after a short warm-up.
Target (issue #4): >= 50 scenes/s at 240x320. `--append FILE` adds a Markdown row to FILE.
"""

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import cpu_model  # noqa: E402  (benchmarks/common.py, beside this script)

from hqdepth.data.synthetic import parse_size, random_scene, render  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", default="240x320")
    parser.add_argument("--core", type=int, default=None, help="pin to this core (default: the first allowed)")
    parser.add_argument("--append", default=None, help="append a Markdown table row to this file")
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    allowed = sorted(os.sched_getaffinity(0))
    core = allowed[0] if args.core is None else args.core
    os.sched_setaffinity(0, {core})

    for seed in range(5):  # warm-up (ray cache, allocator)
        render(random_scene(seed), size)
    times = []
    start = time.perf_counter()
    for seed in range(args.count):
        t0 = time.perf_counter()
        render(random_scene(10_000 + seed), size)
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    times.sort()
    rate = args.count / total
    median_ms = 1000 * times[len(times) // 2]
    p95_ms = 1000 * times[int(0.95 * (len(times) - 1))]
    command = "python benchmarks/synthetic_scenes.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"machine: nproc {os.cpu_count()} ({len(allowed)} allowed), {cpu_model()}, pinned to core {core}, 1 thread")
    print(f"command: {command.strip()}")
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}, load average {os.getloadavg()[0]:.2f} (1 min; other processes share the cores)")
    print(f"{args.count} scenes at {size[0]}x{size[1]}: {rate:.1f} scenes/s (median {median_ms:.1f} ms, p95 {p95_ms:.1f} ms per scene)")
    if args.append:
        with open(args.append, "a") as handle:
            handle.write(f"| {datetime.date.today()} | {size[0]}x{size[1]} | 1 (core {core}) | {args.count} | {rate:.1f} | {median_ms:.1f} | {p95_ms:.1f} |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
