"""Where a CPU training step's time goes: TensorFlow profiler op statistics grouped by part of the step.

    python benchmarks/cpu_profile.py --size 145x193 --batch 4            # hqmd_plus_full step, 2 profiled steps
    python benchmarks/cpu_profile.py --variant keras_bn                  # batch norm by Keras' code (variants.py)

Builds the step exactly as `cpu_step.py train` (same options), runs `--warmup` steps, then profiles `--steps` steps
with `tf.profiler.experimental` and reads the per-op self times ("framework_op_stats" of the profiler plugin).
Ops are grouped by
- stage: forward (model ops), backward (`gradient_tape/` model ops), loss, metrics, optimizer, gradient
  aggregation and L2 penalties (unscoped AddN/Square/Sum ops), idle (no op running on the host threads);
- part (model ops only): encoder / ASPP / decoder by layer name (`hqdepth.flops.default_parts`);
- kind: convolution (oneDNN conv, forward and both backward kernels), matmul/einsum, everything else
  (element-wise and reductions: batch norm, ReLU, adds, casts, Adam's updates).
Times are per step, in ms. Self times of ops running in parallel on different threads add up, so the sum can
exceed the wall time; "idle" is the profiler's IDLE row (time the executor's host threads ran no op).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import collections  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cpu_step  # noqa: E402
from common import emit, peak_rss_mb  # noqa: E402

CONV_TYPES = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "FusedConv2D", "PadWithConv2D",
              "PadWithFusedConv2D", "Conv2DBackpropFilterWithBias", "DepthwiseConv2dNative")
MATMUL_TYPES = ("MatMul", "BatchMatMul", "Einsum", "FusedMatMul")


def op_rows(xplane):
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    data, ok = plugin.xspace_to_tools_data([xplane], "framework_op_stats")
    if not ok:
        raise RuntimeError(f"profiler plugin: {data[:200]!r}")
    table = json.loads(data)[0]
    columns = [column["id"] for column in table["cols"]]
    return [dict(zip(columns, [cell.get("v") for cell in row["c"]])) for row in table["rows"]]


def kind_of(op_type):
    bare = op_type.replace("_MklNative", "").replace("_Mkl", "").lstrip("_")
    if bare in CONV_TYPES or bare.startswith("Conv2D"):
        return "conv"
    if bare in MATMUL_TYPES:
        return "matmul"
    return "other"


def classify(rows, model_name, optimizer_name):
    from hqdepth.flops import default_parts

    parts = default_parts()
    stages = collections.Counter()
    by_part = collections.Counter()
    by_kind = collections.Counter()
    by_type = collections.Counter()
    for row in rows:
        micros = row["total_self_time"]
        name, op_type = row["operation"], row["type"]
        if op_type == "IDLE":
            stages["idle"] += micros
            continue
        scopes = name.split("/")
        backward = scopes[0] == "gradient_tape"
        if backward:
            scopes = scopes[1:]
        top = scopes[0]
        kind = kind_of(op_type)
        by_type[op_type] += micros
        by_kind[kind] += micros
        if top.startswith(model_name) and len(scopes) > 1:
            stage = "backward" if backward else "forward"
            layer = scopes[1][:-2] if scopes[1].endswith("_1") else scopes[1]
            part = next(p for p, matches in parts.items() if matches(layer))
            by_part[f"{part} {stage} {kind}"] += micros
        elif top.startswith("compile_loss"):
            stage = "loss (+ its gradient)"
        elif top.startswith(("compile_metrics", "metrics")) or "metric" in top:
            stage = "metrics"
        elif top == optimizer_name or top.startswith(optimizer_name + "_"):
            stage = "optimizer"
        else:
            stage = "gradient aggregation, L2 penalties, other"
        stages[stage] += micros
    return stages, by_part, by_kind, by_type


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hqmd_baseline_plus")
    parser.add_argument("--recipe", default=None)
    parser.add_argument("--size", default=None)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--steps", type=int, default=2, help="profiled steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--loss", default="recipe", choices=("recipe", "mse"))
    parser.add_argument("--metrics", default="recipe", choices=("recipe", "none"))
    parser.add_argument("--variant", default="", help="benchmarks/variants.py names (default: the package as is)")
    parser.add_argument("--intra", type=int, default=None)
    parser.add_argument("--inter", type=int, default=None)
    parser.add_argument("--top", type=int, default=15, help="op types listed")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import tensorflow as tf

    step_args = argparse.Namespace(mode="train", model=args.model, recipe=args.recipe, size=args.size,
                                   batch=args.batch, precision=args.precision, jit=False, loss=args.loss,
                                   metrics=args.metrics, upto=None, intra=args.intra, inter=args.inter,
                                   no_prebuild=False, variant=args.variant)
    cpu_step.configure_threads(step_args)
    model, timed, config, size, count = cpu_step.build(step_args)
    call = cpu_step.step_function("train", step_args, model, timed, config, size)
    for _ in range(args.warmup):
        call()
    with tempfile.TemporaryDirectory(prefix="hqdepth-profile-") as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        for _ in range(args.steps):
            call()
        wall = (time.perf_counter() - start) / args.steps
        tf.profiler.experimental.stop()
        rows = op_rows(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[-1])
    stages, by_part, by_kind, by_type = classify(rows, model.name, model.optimizer.name)
    per_step = lambda counter: {k: round(v / 1000 / args.steps, 1) for k, v in counter.most_common()}  # noqa: E731
    step_gflop = 3 * count.flops * args.batch / 1e9
    result = {"model": args.model, "recipe": config["name"], "size": list(size), "batch": args.batch,
              "precision": args.precision, "variant": args.variant or None, "loss": args.loss, "metrics": args.metrics,
              "wall_ms_per_step": round(wall * 1000, 1), "achieved_gflops": step_gflop / wall,
              "stages_ms": per_step(stages), "model_ms_by_part": per_step(by_part), "kind_ms": per_step(by_kind),
              "top_op_types_ms": dict(list(per_step(by_type).items())[:args.top]),
              "load_average": os.getloadavg()[0], "peak_rss_mb": peak_rss_mb()}
    print(json.dumps({k: v for k, v in result.items() if k.endswith("_ms") or k.endswith("step")}, indent=1))
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
