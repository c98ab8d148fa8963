"""Two training-step variants interleaved in one process, so both see the same load (issue 8, item 2).

    python benchmarks/train_ab.py                                   # package vs keras_bn,keras_adam, 289x385 batch 8
    python benchmarks/train_ab.py --b-variant keras_bn --rounds 4 --precision mixed_bfloat16

A is the package as it is (fused batch norm and Adam), built, compiled and traced (one untimed step) first; then B,
the package with `--b-variant` (benchmarks/variants.py: kernels switched back to Keras' code), is built the same
way (a variant only changes what is traced from then on, so A's compiled step is unaffected). Then the steps
alternate A, B, A, B, ... for one untimed round and `--rounds` timed rounds; `a_speedup` = B's median step time /
A's: what the package's kernels are worth.
Reported per variant: median / min wall seconds per step, median process CPU seconds, achieved GFLOP/s (training
= 3x the analytic forward FLOPs). Peak RSS is the process's (both models).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cpu_step  # noqa: E402
from common import emit, peak_rss_mb  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hqmd_baseline_plus")
    parser.add_argument("--size", default=None)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--b-variant", default="keras_bn,keras_adam", help="benchmarks/variants.py names")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    runs = {}
    for label, variant in (("A", ""), ("B", args.b_variant)):
        step_args = argparse.Namespace(mode="train", model=args.model, recipe=None, size=args.size, batch=args.batch,
                                       precision=args.precision, jit=False, loss="recipe", metrics="recipe",
                                       upto=None, intra=None, inter=None, no_prebuild=False, variant=variant)
        model, timed, config, size, count = cpu_step.build(step_args)
        call = cpu_step.step_function("train", step_args, model, timed, config, size)
        start = time.perf_counter()
        call()
        runs[label] = {"call": call, "first_s": time.perf_counter() - start, "wall": [], "cpu": [],
                       "step_gflop": 3 * count.flops * args.batch / 1e9}
    for item in runs.values():
        item["call"]()  # untimed: A's first call after B was built and traced runs several times slower
    load_start = os.getloadavg()[0]
    for _ in range(args.rounds):
        for item in runs.values():
            start, start_cpu = time.perf_counter(), time.process_time()
            item["call"]()
            item["wall"].append(time.perf_counter() - start)
            item["cpu"].append(time.process_time() - start_cpu)
    rows = {}
    for label, item in runs.items():
        median = statistics.median(item["wall"])
        rows[label] = {"variant": None if label == "A" else args.b_variant, "seconds": item["wall"],
                       "cpu_seconds": item["cpu"], "median_s": median, "min_s": min(item["wall"]),
                       "first_step_s": item["first_s"], "achieved_gflops": item["step_gflop"] / median,
                       "achieved_gflops_best": item["step_gflop"] / min(item["wall"]),
                       "gflops_per_cpu_s": item["step_gflop"] / statistics.median(item["cpu"])}
        print(f"{label} ({rows[label]['variant'] or 'package as is'}): median {median:.2f} s, min "
              f"{min(item['wall']):.2f} s, CPU {statistics.median(item['cpu']):.1f} s per step; "
              f"{rows[label]['achieved_gflops']:.0f} GFLOP/s (best {rows[label]['achieved_gflops_best']:.0f}), "
              f"{rows[label]['gflops_per_cpu_s']:.0f} GFLOP per CPU-s", flush=True)
    emit({"model": args.model, "size": list(size), "batch": args.batch, "precision": args.precision,
          "rounds": args.rounds, "rows": rows, "a_speedup": rows["B"]["median_s"] / rows["A"]["median_s"],
          "load_start": load_start, "load_end": os.getloadavg()[0], "peak_rss_mb": peak_rss_mb()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
