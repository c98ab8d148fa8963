"""`make bench`: every model measured against this machine's matmul rate; writes results.json and RESULTS.md.

    python benchmarks/run_all.py                      # the full run (about 15-20 minutes on 2 idle cores)
    python benchmarks/run_all.py --quick              # smoke run: hqmd_baseline_plus only, 1 timed step, no ONNX
    python benchmarks/run_all.py --models bts,mrpan --skip inference,scale

Stages, each measurement in a fresh subprocess (benchmarks/common.py `run_worker`):
  matmul     dense n x n `tf.linalg.matmul`, float32 and bfloat16, best of `--matmul-repeats` (cpu_step.py matmul)
  flops      forward FLOPs per image at the paper input size: analytic (hqdepth.flops) and TensorFlow's profiler
             on the frozen forward graph (flops_check.py)
  cpu        per model and precision (float32, mixed_bfloat16): inference then the recipe's training step in one
             process (cpu_step.py infer+train), images/s, achieved FLOP/s (training = 3x forward), peak RSS; a
             matmul of the precision's dtype is timed before every step and after the last, the reference of the
             step's ratio (see finalize_ratios)
  bf16check  the headline recipe's short run in float32 and mixed_bfloat16 from the same weights and data: loss curves
             compared step by step (bf16_check.py)
  pipeline   the TFRecord input pipeline's images/s (input_pipeline.py) beside the training consumption
  scale      training peak RSS and speed of hqmd_baseline_plus against batch size and input size
  stream     RSS over one epoch of a TFRecord set larger than the shuffle buffer (streaming.py)
  scenes     synthetic scene rendering speed on one core (synthetic_scenes.py, the data benchmark of issue 4)
  inference  the exported SavedModel (float32, the default; `--precision bfloat16`) against ONNX Runtime, batch-1
             latency and batch-8 throughput, calls interleaved, in a default and a serving-configured process, for
             hqmd_baseline_plus and bts (inference_ab.py; benchmarks/inference.py times the backends one after the
             other)
The package is measured as it is (fused batch norm and Adam); cpu_tuning.py measures it without them
(benchmarks/variants.py).
`benchmarks/tuning.json` (written by cpu_tuning.py, a separate, longer study) and `benchmarks/results_gpu.json`
(gpu.py on a GPU machine) are rendered into RESULTS.md when present.
"""

import argparse
import json
import os
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402
from common import HERE, ROOT, machine, now, run_worker, versions  # noqa: E402

STAGES = ("matmul", "flops", "cpu", "bf16check", "pipeline", "scale", "stream", "scenes", "inference")
PRECISIONS = ("float32", "mixed_bfloat16")
# Per model: batch (the recipe's, smaller where one step would take too long here) and timed steps (full run).
PLAN = {
    "hqmd_baseline_plus": {"batch": 8, "steps": 5},
    "hqmd_baseline": {"batch": 8, "steps": 2},
    "bts": {"batch": 4, "steps": 2},
    "fcn_autoencoder": {"batch": 16, "steps": 2},
    "resnet50_transposed": {"batch": 8, "steps": 2},
    "mrpan": {"batch": 2, "steps": 2},
}
HEADLINE = "hqmd_baseline_plus"
STREAM_SIZE = (300, 400)


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def stage_matmul(args, results, key="matmul"):
    results[key] = {}
    for dtype in ("float32", "bfloat16"):
        row = run_worker("cpu_step.py", ["matmul", "--dtype", dtype, "--n", args.matmul_n, "--warmup", 1,
                                         "--steps", args.matmul_repeats])
        results[key][dtype] = row
        if "gflops_best" in row:
            log(f"matmul {dtype}: {row['gflops_best']:.1f} GFLOP/s (best of {args.matmul_repeats}; median "
                f"{row['gflops_median']:.1f})")


def stage_flops(args, results, models):
    extra = ["--no-profiler"] if args.quick else []
    row = run_worker("flops_check.py", ["--models", ",".join(models), *extra])
    results["flops"] = row.get("models", {})
    if "error" in row:
        results["flops_error"] = row["error"]
    for name, item in results["flops"].items():
        log(f"flops {name}: {item['gflops']:.2f} GFLOPs analytic"
            + (f", profiler {item['profiler_total_flops'] / 1e9:.2f} G (comparable ratio "
               f"{item['ratio_comparable']:.4f})" if "profiler_total_flops" in item else ""))


def stage_cpu(args, results, models):
    cpu = results.setdefault("cpu", {})
    for name in models:
        plan = PLAN.get(name, {"batch": 4, "steps": 2})
        steps = 1 if args.quick else plan["steps"]
        entry = cpu.setdefault(name, {})
        for precision in args.precisions:
            row = run_worker("cpu_step.py", ["infer+train", "--model", name, "--batch", plan["batch"], "--precision",
                                             precision, "--steps", steps, "--warmup", 1, "--local-matmul"],
                             label=f"{name} {precision}")
            entry[precision] = row
            if "modes" not in row:
                continue
            for mode, item in row["modes"].items():
                log(f"{name} {precision} {mode}: {item['images_per_s']:.2f} img/s (batch {row['batch']}, "
                    f"{item['achieved_gflops']:.1f} GFLOP/s = {item.get('local_flops_ratio', float('nan')):.2f} x "
                    f"the matmuls timed between its steps), peak RSS {item['peak_rss_mb']:.0f} MB")


def git_commit():
    """The checkout's commit, "+" when it has uncommitted changes; None outside a git checkout."""
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+" if dirty else "")

def finalize_ratios(results):
    """Every CPU measurement's ratios to the matmul rate of its dtype.

    - `flops_ratio` (the figure issue 17 sets targets for): the median step's rate over the median of the matmuls
      timed between the steps in the same process (one before each step and one after the last: `cpu_step.py
      --local-matmul`). Step and reference see the same load, as the interleaved serving comparison does. On
      cores shared with other jobs the rate available moves by 2-3x within a run (Intel AMX VM: bfloat16 matmul
      about 340-1190 GFLOP/s, with no change to our code), so a reference timed at another moment measures the
      neighbours, not the step.
    - `flops_ratio_vs_best_matmul`: the median step over the best matmul of the whole run (both reference stages and
      every matmul timed between steps), the rate the machine reached at its least loaded moment; `flops_ratio_best`:
      the fastest step over the same. A lower bound, and a biased one: the more matmuls a run times, the higher its
      best, while the step is a median.
    - `flops_ratio_per_cpu_s`: FLOPs per CPU-second over the start stage matmul's."""
    reference = {}
    for dtype in ("float32", "bfloat16"):
        seen = []
        for key in ("matmul", "matmul_end"):
            best = results.get(key, {}).get(dtype, {}).get("gflops_best")
            if best:
                seen.append((best, f"{key} stage"))
        for name, entry in results.get("cpu", {}).items():
            for precision, row in entry.items():
                if not isinstance(row, dict) or ("bfloat16" in precision) != (dtype == "bfloat16"):
                    continue
                for mode, item in row.get("modes", {}).items():
                    for value in item.get("local_matmul_gflops", []):
                        seen.append((value, f"beside {name} {precision} {mode}"))
        if seen:
            best, source = max(seen)
            reference[dtype] = {"gflops": best, "source": source, "measurements": len(seen)}
    results["matmul_reference"] = reference
    for name, entry in results.get("cpu", {}).items():
        for precision, row in entry.items():
            if not isinstance(row, dict) or "modes" not in row:
                continue
            dtype = "bfloat16" if precision == "mixed_bfloat16" else "float32"
            ref = reference.get(dtype)
            cpu_rate = results.get("matmul", {}).get(dtype, {}).get("gflops_per_cpu_s")
            for item in row["modes"].values():
                if ref:
                    item["flops_ratio_vs_best_matmul"] = item["achieved_gflops"] / ref["gflops"]
                    item["flops_ratio_best"] = item["achieved_gflops_best"] / ref["gflops"]
                if "local_flops_ratio" in item:
                    item["flops_ratio"] = item["local_flops_ratio"]
                if cpu_rate:
                    item["flops_ratio_per_cpu_s"] = item["gflops_per_cpu_s"] / cpu_rate
        for precision, suffix in (("float32", ""), ("mixed_bfloat16", "_bf16")):
            train = entry.get(precision, {}).get("modes", {}).get("train", {})
            for key, field in (("", "flops_ratio"), ("_vs_best_matmul", "flops_ratio_vs_best_matmul"),
                               ("_best_step", "flops_ratio_best"), ("_per_cpu_s", "flops_ratio_per_cpu_s")):
                if field in train:
                    entry[f"train_flops_ratio{suffix}{key}"] = train[field]
        bf16 = entry.get("mixed_bfloat16", {}).get("modes", {}).get("train", {})
        if "achieved_gflops" in bf16 and "float32" in reference:
            entry["train_flops_ratio_bf16_vs_f32_matmul"] = bf16["achieved_gflops"] / reference["float32"]["gflops"]


def stage_stream(args, results, workdir):
    if "stream" in results:  # already run for the pipeline stage's records
        return
    count = 192 if args.quick else 512
    row = run_worker("streaming.py", ["--dir", workdir / "records", "--count", count,
                                      "--size", "x".join(map(str, STREAM_SIZE)), "--buffer", 64])
    results["stream"] = row
    if "rss_end_mb" in row:
        log(f"stream: RSS first batch {row['rss_first_batch_mb']:.0f} MB, middle {row['rss_middle_mb']:.0f} MB, "
            f"end {row['rss_end_mb']:.0f} MB over {row['images']} images ({row['decoded_set_mb']:.0f} MB decoded)")


def stage_pipeline(args, results, workdir):
    count = 192 if args.quick else 512
    records = workdir / "records"
    if not (records / "manifest.json").exists():  # normally written by the stream stage
        run_worker("streaming.py", ["--dir", records, "--count", count, "--size", "x".join(map(str, STREAM_SIZE))])
    row = run_worker("input_pipeline.py", ["--dir", records, "--count", count, "--size",
                                           "x".join(map(str, STREAM_SIZE)), "--source", "tfrecord", "--epochs", 1,
                                           "--shard-size", 32], keep_stdout=True)
    text = row.get("error", "")
    result = {"command": row.get("command"), "records": count, "record_size": list(STREAM_SIZE)}
    match = re.search(r"tfrecord: (\d+) images \((\d+) timed\): ([\d.]+) images/s on (\d+) core", row.get("stdout", text))
    if match:
        result.update(images=int(match[1]), timed=int(match[2]), images_per_s=float(match[3]), cores=int(match[4]))
    else:
        result["error"] = row.get("error") or "no rate in the output"
    train = results.get("cpu", {}).get(HEADLINE, {}).get("float32", {}).get("modes", {}).get("train")
    if train and "images_per_s" in result:
        result["training_images_per_s"] = train["images_per_s"]
        result["pipeline_over_training"] = result["images_per_s"] / train["images_per_s"]
    results["pipeline"] = result
    if "images_per_s" in result:
        log(f"pipeline: {result['images_per_s']:.1f} images/s"
            + (f" = {result['pipeline_over_training']:.0f}x what float32 training consumes"
               if "pipeline_over_training" in result else ""))


def stage_scale(args, results):
    rows = []
    main = results.get("cpu", {}).get(HEADLINE, {}).get("float32", {})
    configs = [((289, 385), 1), ((289, 385), 2), ((289, 385), 4), ((289, 385), 8), ((145, 193), 8), ((145, 193), 1)]
    if args.quick:
        configs = [((145, 193), 1), ((145, 193), 4)]
    for size, batch in configs:
        if size == (289, 385) and batch == 8 and "modes" in main:
            row = {**main["modes"]["train"], "size": list(size), "batch": batch, "reused": "cpu stage"}
        else:
            out = run_worker("cpu_step.py", ["train", "--model", HEADLINE, "--size", f"{size[0]}x{size[1]}",
                                             "--batch", batch, "--steps", 1, "--warmup", 1])
            row = {**out, "size": list(size), "batch": batch}
        rows.append(row)
        if "peak_rss_mb" in row and "images_per_s" in row:
            log(f"scale {size[0]}x{size[1]} batch {batch}: peak RSS {row['peak_rss_mb']:.0f} MB, "
                f"{row['images_per_s']:.2f} img/s")
    results["scale"] = rows


def stage_bf16check(args, results):
    """bf16_check.py: the headline recipe's short run in float32 and mixed_bfloat16 from the same weights and data."""
    row = run_worker("bf16_check.py", ["--steps", 4, "--size", "33x49"] if args.quick else [])
    results["bf16_check"] = row
    if "relative_median" in row:
        log(f"bf16 check: loss |bf16 - f32| / f32 per step median {row['relative_median']:.4f}, over "
            f"{row['window']}-step means max {row['smoothed_relative_max']:.4f}")


def stage_scenes(args, results):
    row = run_worker("synthetic_scenes.py", ["--count", 50 if args.quick else 200], keep_stdout=True)
    match = re.search(r"(\d+) scenes at (\d+)x(\d+): ([\d.]+) scenes/s \(median ([\d.]+) ms", row.get("stdout", ""))
    if match:
        results["scenes"] = {"command": row["command"], "scenes": int(match[1]), "size": [int(match[2]), int(match[3])],
                             "scenes_per_s": float(match[4]), "median_ms": float(match[5])}
        log(f"scenes: {results['scenes']['scenes_per_s']:.1f} scenes/s at {match[2]}x{match[3]} on one core")
    else:
        results["scenes"] = {"error": row.get("error") or "no rate in the output"}


INFERENCE_MODELS = {HEADLINE: None, "bts": "288x384"}  # model -> size (BTS needs multiples of 32: 289x385 rounded down)


def stage_inference(args, results):
    """inference_ab.py per model: batch-1 latency and batch-8 throughput of the SavedModel (float32, bfloat16) against
    ONNX Runtime, in a default and a serving-configured process. Headline: the float32 SavedModel of HEADLINE in the
    serving process (`inference.savedmodel_over_ort_latency`)."""
    result = {"models": {}}
    for model, size in INFERENCE_MODELS.items():
        if args.models and model not in args.models.split(","):
            continue
        row = run_worker("inference_ab.py", ["--model", model, "--rounds", args.inference_repeats, "--warmup", 2]
                         + (["--size", size] if size else []))
        result["models"][model] = row
        for process, timed in row.get("processes", {}).items():
            rows = timed.get("rows", {})
            if "over_ort_median" not in rows.get("savedmodel", {}):
                log(f"inference: {model} {process}: {timed.get('error') or row.get('error') or 'no ONNX Runtime row'}")
                continue
            line = " ".join(f"{label} {r['median_ms']:.0f} ms ({r['over_ort_median']:.2f}x)" for label, r in rows.items())
            log(f"inference: {model}, {process} process, batch 1: {line}")
    headline = result["models"].get(HEADLINE, {}).get("processes", {})
    for key, process in (("savedmodel_over_ort_latency", "serving"),
                         ("savedmodel_over_ort_latency_default_process", "default")):
        row = headline.get(process, {}).get("rows", {}).get("savedmodel", {})
        if "over_ort_median" in row:
            result[key] = row["over_ort_median"]
    results["inference"] = result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="hqmd_baseline_plus only, 1 step, small scale set, "
                        "no profiler, no ONNX; writes to a temporary folder unless --out-dir is given")
    parser.add_argument("--models", default=None, help="comma-separated registered models (default: all)")
    parser.add_argument("--skip", default="", help=f"comma-separated stages to skip: {', '.join(STAGES)}")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--matmul-n", type=int, default=4096)
    parser.add_argument("--matmul-repeats", type=int, default=6)
    parser.add_argument("--inference-repeats", type=int, default=9, help="interleaved rounds of batch-1 calls")
    parser.add_argument("--out-dir", default=None, help="where results.json and RESULTS.md go (default benchmarks/)")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(STAGES)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; stages: {', '.join(STAGES)}")
    if args.quick:
        skip.add("inference")
    sys.path.insert(0, str(ROOT))
    from hqdepth.models import list_models

    registered = [entry.name for entry in list_models()]
    models = registered if not args.models else [m.strip() for m in args.models.split(",") if m.strip()]
    if args.quick and not args.models:
        models = [HEADLINE]
    missing = [m for m in models if m not in registered]
    if missing:
        parser.error(f"unknown models {missing}; registered: {', '.join(registered)}")
    models = sorted(models, key=lambda m: (m != HEADLINE, m))
    out_dir = Path(args.out_dir) if args.out_dir else (Path(tempfile.mkdtemp(prefix="hqdepth-bench-quick-"))
                                                        if args.quick else HERE)
    out_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    command = shlex.join(["python", "benchmarks/run_all.py", *argv])
    results = {"date": now(), "command": command, "quick": args.quick, "models": models, "skipped": sorted(skip),
               "machine": machine(), "versions": versions(), "commit": git_commit()}
    log(f"{command}: {results['machine']['cpu']}, {results['machine']['nproc']} cores, load average "
        f"{results['machine']['load_average']}")
    with tempfile.TemporaryDirectory(prefix="hqdepth-bench-") as workdir:
        workdir = Path(workdir)
        for stage in STAGES:
            if stage in skip or (stage == "stream" and "stream" in results):  # stream runs inside pipeline
                continue
            log(f"stage {stage}")
            t0 = time.perf_counter()
            if stage == "matmul":
                stage_matmul(args, results)
            elif stage == "flops":
                stage_flops(args, results, models)
            elif stage == "cpu":
                stage_cpu(args, results, models)
            elif stage == "stream":
                stage_stream(args, results, workdir)
            elif stage == "pipeline":
                if "stream" not in skip:
                    stage_stream(args, results, workdir)  # writes the records the pipeline reads
                stage_pipeline(args, results, workdir)
            elif stage == "scenes":
                stage_scenes(args, results)
            elif stage == "bf16check":
                stage_bf16check(args, results)
            elif stage == "scale":
                stage_scale(args, results)
            elif stage == "inference":
                stage_inference(args, results)
            results.setdefault("stage_s", {})[stage] = round(time.perf_counter() - t0, 1)
        if "matmul" not in skip and "cpu" not in skip:
            log("stage matmul (again, at the end)")
            stage_matmul(args, results, key="matmul_end")
    finalize_ratios(results)
    results["duration_s"] = round(time.perf_counter() - started, 1)
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU time of every measurement: with 2 idle cores the run needs at least this / 2 of wall time.
    results["children_cpu_s"] = round(children.ru_utime + children.ru_stime, 1)
    results["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    json_path = out_dir / "results.json"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    if not (args.quick or args.models or args.skip) and out_dir == HERE:  # a full run: also kept per machine kind
        machine_path = report.machine_file(HERE, results)
        machine_path.parent.mkdir(exist_ok=True)
        machine_path.write_text(json.dumps(results, indent=1) + "\n")
    md_path = out_dir / "RESULTS.md"
    md_path.write_text(report.render(results, tuning=report.read_json(HERE / "tuning.json"),
                                     gpu=report.read_json(HERE / "results_gpu.json"),
                                     analysis=report.read_analysis(HERE), machines=report.read_machines(HERE)))
    log(f"done in {results['duration_s'] / 60:.1f} min: {json_path}, {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
