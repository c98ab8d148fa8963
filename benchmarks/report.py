"""Render benchmarks/RESULTS.md from results.json (+ tuning.json, results_gpu.json when present).

    python benchmarks/report.py      # re-render after cpu_tuning.py or gpu.py wrote their JSON
"""

import json
import re
import statistics
from pathlib import Path

GPU_COMMAND = ("pip install --no-index --find-links wheels/ keras pyyaml  # only where Keras 3 is missing\n"
               "KERAS_BACKEND=jax python benchmarks/gpu.py --block-tensorflow   # -> benchmarks/results_gpu.json")


def read_analysis(folder):
    path = Path(folder) / "ANALYSIS.md"
    return path.read_text() if path.is_file() else None


def read_json(path):
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def fmt(value, digits=2, unit=""):
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:.{digits}f}{unit}"


def one_line(text, limit=160):
    """A failure message fit for a table cell: its most telling line, no pipes or line breaks."""
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    telling = [line for line in lines if not line.startswith(("File ", "^", "[[", "Traceback", "exit status"))]
    line = (telling or lines or ["?"])[-1]
    return line.replace("|", "/")[:limit]


def size_of(row):
    size = row.get("size") or row.get("input_size")
    return "x".join(map(str, size)) if size else "-"


def machine_lines(results):
    machine, versions = results["machine"], results["versions"]
    load = machine["load_average"]
    return [
        f"- Date: {results['date']}; command: `{results['command']}` (`make bench`); duration "
        f"{results.get('duration_s', 0) / 60:.1f} min; CPU time of all measurement processes "
        f"{results.get('children_cpu_s', 0) / 60:.1f} min (what the run costs whatever else runs: on "
        f"{results['machine']['nproc']} idle cores its wall time lies between this / {results['machine']['nproc']} "
        "and this).",
        f"- Machine: {machine['cpu']} ({'VM, ' if machine.get('hypervisor') else ''}{machine['nproc']} cores, "
        f"{machine['cores_allowed']} allowed, {machine['memory_gib']} GiB), flags "
        f"{', '.join(machine['cpu_flags'])}.",
        f"- Load average at the start (1/5/15 min): {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; at the end: "
        + " / ".join(f"{v:.2f}" for v in results.get("load_average_end", [])) + ". Other jobs shared the two cores "
        "unless the 15-minute figure is near 0.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + ".",
    ]


def reference_rate(results, dtype):
    """The best matmul GFLOP/s of the run (results["matmul_reference"]) or, in older results, the start stage's."""
    ref = results.get("matmul_reference", {}).get(dtype)
    if ref:
        return ref["gflops"]
    return results.get("matmul", {}).get(dtype, {}).get("gflops_best")


def beside_rate(item):
    """The median of the matmuls timed between a measurement's steps (GFLOP/s), or None."""
    values = item.get("local_matmul_gflops")
    return statistics.median(values) if values else None


def headline(results, gpu):
    lines = ["## Headline", ""]
    cpu = results.get("cpu", {}).get("hqmd_baseline_plus", {})
    for precision, suffix, label in (("float32", "", "float32"), ("mixed_bfloat16", "_bf16", "mixed_bfloat16")):
        train = cpu.get(precision, {}).get("modes", {}).get("train")
        if not train or f"train_flops_ratio{suffix}" not in cpu:
            continue
        dtype = "bfloat16" if suffix else "float32"
        ratio = cpu[f"train_flops_ratio{suffix}"]
        lines.append(
            f"- **CPU training, hqmd_plus_full (baseline+ + HQMDLoss + Adam), batch {cpu[precision]['batch']}, "
            f"289x385, {label}: {train['images_per_s']:.2f} images/s = {train['achieved_gflops']:.0f} GFLOP/s = "
            f"{ratio:.2f} x the {dtype} matmul rate** (`cpu.hqmd_baseline_plus.train_flops_ratio{suffix}`; target "
            f">= 0.60): the median of {len(train['seconds'])} steps over the median of the matmuls timed between them "
            f"in the same process ({fmt(beside_rate(train), 0)} GFLOP/s). Over the "
            f"best matmul of the whole run ({reference_rate(results, dtype):.0f} GFLOP/s, a lower bound): "
            f"{fmt(cpu.get(f'train_flops_ratio{suffix}_vs_best_matmul'))}, fastest step "
            f"{fmt(cpu.get(f'train_flops_ratio{suffix}_best_step'))}; per CPU-second: "
            f"{fmt(cpu.get(f'train_flops_ratio{suffix}_per_cpu_s'))}."
            + (f" Against the float32 matmul: {cpu['train_flops_ratio_bf16_vs_f32_matmul']:.2f}."
               if suffix and "train_flops_ratio_bf16_vs_f32_matmul" in cpu else "")
            + executed_note(results, ratio))
    lines += inference_headline(results)
    if gpu and gpu.get("summary"):
        lines.append("- GPU: " + ", ".join(f"{k} {v:.2f}" for k, v in gpu["summary"].items()) + " (section GPU).")
    else:
        lines.append("- GPU: not measured (no GPU machine was lent to this work); the ready command is in section GPU.")
    return lines + [""]


def executed_note(results, ratio, model="hqmd_baseline_plus"):
    """" In the products that run ...": the ratio rescaled from the network's FLOPs to the profiler's count of what
    the package executes, where the two differ by more than 1 % (layers computed with fewer products)."""
    flops = results.get("flops", {}).get(model, {})
    network, run = flops.get("gflops"), flops.get("profiler_matmul_flops")
    if not network or not run or abs(run / 1e9 / network - 1) < 0.01:
        return ""
    return (f" In the products that run ({run / 1e9:.1f} of the network's {network:.1f} GFLOP per image, TensorFlow's "
            f"profiler): {ratio * run / 1e9 / network:.2f}.")


def machine_file(folder, results):
    """benchmarks/machines/<CPU model>.json: the last full `make bench` on each kind of machine."""
    slug = re.sub(r"[^a-z0-9]+", "-", results["machine"]["cpu"].lower()).strip("-")
    return Path(folder) / "machines" / f"{slug}.json"


def read_machines(folder):
    return [read_json(path) for path in sorted((Path(folder) / "machines").glob("*.json"))]


def train_ratios(results, model, precision):
    """"beside (vs best)" for one model's training step: over the matmuls timed beside its steps, and over the run's
    best matmul. Derived from the stored rates, so that runs recorded before and after the headline moved from the
    second to the first read alike."""
    train = results.get("cpu", {}).get(model, {}).get(precision, {}).get("modes", {}).get("train", {})
    best = results.get("matmul_reference", {}).get("bfloat16" if "bfloat16" in precision else "float32", {})
    vs_best = train["achieved_gflops"] / best["gflops"] if "achieved_gflops" in train and best else None
    return f"{fmt(train.get('local_flops_ratio'))} ({fmt(vs_best)})"


def machines_section(machines):
    """One row per machine kind's last full run: the figures issue 17 sets targets for."""
    if not machines:
        return []
    models = sorted({name for results in machines for name in results.get("cpu", {})})
    lines = ["## Across machines", "",
             "The last full `make bench` on each kind of machine (`benchmarks/machines/`; this page's other tables are "
             "the latest run's). Training: the step over the matmuls of the same dtype timed between the steps in the "
             "same process, and in parentheses over the run's best matmul (runs before 2026-12-01 16:00 UTC timed those "
             "matmuls before and after all the steps, not between them); serving: float32 SavedModel over ONNX "
             "Runtime, batch 1, serving process.", "",
             "| machine | date (commit) | hqmd_baseline_plus bf16 | serving hqmd_baseline_plus / bts | "
             + " | ".join(f"{name} f32" for name in models) + " |",
             "|---|---|---|---|" + "---|" * len(models)]
    for results in machines:
        serving = []
        for model in ("hqmd_baseline_plus", "bts"):
            rows = results.get("inference", {}).get("models", {}).get(model, {}).get("processes", {})
            serving.append(fmt(rows.get("serving", {}).get("rows", {}).get("savedmodel", {}).get("over_ort_median")))
        lines.append(f"| {results['machine']['cpu']} | {results['date'][:16]} ({results.get('commit') or '-'}) | "
                     f"{train_ratios(results, 'hqmd_baseline_plus', 'mixed_bfloat16')} | {' / '.join(serving)} | "
                     + " | ".join(train_ratios(results, name, "float32") for name in models) + " |")
    return lines + [""]


def matmul_section(results):
    mm = results.get("matmul")
    if not mm:
        return []
    lines = ["## Reference: dense matmul on this CPU", "",
             "`tf.linalg.matmul` of two n x n matrices in a `tf.function` (`benchmarks/cpu_step.py matmul`), "
             "2 n^3 FLOPs per call, best and median of the timed calls after one warm-up, at the start and the end of "
             "the run (float32 runs are compared with the float32 rate, mixed_bfloat16 with the bfloat16 rate). "
             "Per CPU-second: FLOPs over the process CPU time (all threads) of the fastest call: the rate one busy "
             "core sustains, independent of other jobs.",
             "", "| dtype | n | best GFLOP/s | median GFLOP/s | GFLOP per CPU-second |", "|---|---|---|---|---|"]
    for key, label in (("matmul", "start"), ("matmul_end", "end")):
        for dtype, row in results.get(key, {}).items():
            if "gflops_best" in row:
                lines.append(f"| {dtype} ({label} of the run) | {row['n']} | {row['gflops_best']:.1f} | "
                             f"{row['gflops_median']:.1f} | {fmt(row.get('gflops_per_cpu_s'), 1)} |")
    reference = results.get("matmul_reference")
    if reference:
        lines += ["", "The ratios below divide the median training or inference call by the median of the matmuls "
                  "timed between the calls in the same process (`cpu_step.py --local-matmul`): the rate the cores "
                  "gave at those moments. The best matmul of the whole run (these two stages and every matmul timed "
                  "between steps), a lower bound's denominator: " + "; ".join(
                      f"{dtype} **{ref['gflops']:.0f} GFLOP/s** (of {ref['measurements']} timings, {ref['source']})"
                      for dtype, ref in reference.items()) + "."]
    return lines + [""]


def models_section(results):
    flops, cpu = results.get("flops", {}), results.get("cpu", {})
    names = list(dict.fromkeys(list(cpu) + list(flops)))
    if not names:
        return []
    lines = ["## Models: FLOPs, CPU speed, memory", "",
             "Forward GFLOPs per image at the paper input size: analytic = 2 x multiply-adds of convolutions, "
             "transposed convolutions, dense layers and matrix products (`hqdepth.flops.count_flops`); profiler = "
             "`tf.compat.v1.profiler` float_operation on the frozen inference graph (all ops it has statistics for, "
             "element-wise ones included; none for Einsum); ratio = analytic / profiler over the ops both count "
             "(convolutions and matmuls outside Einsum layers; the profiler also counts BilinearResize's tent-matrix "
             "products as dense BatchMatMuls, which the analytic count takes as 7 FLOPs per output element: "
             "resize-heavy models compare below 1).", "",
             "| model | input | params | analytic GFLOPs | of which element-wise | profiler GFLOPs (total) | "
             "ratio (comparable ops) |", "|---|---|---|---|---|---|---|"]
    for name in names:
        f = flops.get(name)
        if not f:
            continue
        lines.append(f"| {name} | {size_of(f)} | {f['params']:,} | {f['gflops']:.2f} | {f['other_flops'] / 1e9:.2f} "
                     f"| {fmt(f.get('profiler_total_flops') and f['profiler_total_flops'] / 1e9)} | "
                     f"{fmt(f.get('ratio_comparable'), 4)} |")
    lines += ["", "Training = the model's recipe step as `hqdepth train` compiles it (loss, optimizer with schedule, "
              "compiled metrics), `train_on_batch` on a fixed batch, the optimizer's slots built before the first "
              "step; inference = `model(x, training=False)` in a `tf.function` at the same batch; both in one "
              "subprocess per model and precision (model built once). Median of the timed calls after one untimed "
              "(tracing) call. Achieved GFLOP/s counts a training step as 3x the forward FLOPs. Three ratios: "
              "/ matmul = the median call over the median of the matmuls of the same dtype timed between the calls "
              "in the same process (the rate available under the same load); / best = the "
              "median call over the run's best matmul (section above); per CPU-s = FLOPs per CPU-second (all "
              "threads) over the start matmul's. "
              "Peak RSS = the process's high-water mark during that mode's calls (VmHWM reset before them), "
              "including TensorFlow (~0.7 GB) and the model.", "",
              "| model | input | batch | precision | train img/s | train GFLOP/s | train / matmul, / best, per CPU-s | "
              "first step (s) | infer img/s | infer GFLOP/s | infer / matmul, / best, per CPU-s | "
              "peak RSS infer / train (MB) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        for precision, row in cpu.get(name, {}).items():
            if not isinstance(row, dict) or "batch" not in row:
                continue
            if "modes" not in row:
                lines.append(f"| {name} | - | - | {precision} | failed: {one_line(row.get('error'))} | | | | | | | |")
                continue
            t, i = row["modes"].get("train", {}), row["modes"].get("infer", {})
            lines.append(
                f"| {name} | {size_of(row)} | {row['batch']} | {precision} | {fmt(t.get('images_per_s'))} | "
                f"{fmt(t.get('achieved_gflops'), 0)} | {fmt(t.get('flops_ratio'))}, "
                f"{fmt(t.get('flops_ratio_vs_best_matmul'))}, {fmt(t.get('flops_ratio_per_cpu_s'))} | "
                f"{fmt(t.get('warmup_s', [None])[0], 0)} | {fmt(i.get('images_per_s'))} | "
                f"{fmt(i.get('achieved_gflops'), 0)} | {fmt(i.get('flops_ratio'))}, "
                f"{fmt(i.get('flops_ratio_vs_best_matmul'))}, {fmt(i.get('flops_ratio_per_cpu_s'))} | "
                f"{fmt(i.get('peak_rss_mb'), 0)} / {fmt(t.get('peak_rss_mb'), 0)} |")
    return lines + [""]


def pipeline_section(results):
    p, s = results.get("pipeline"), results.get("stream")
    lines = []
    if p:
        lines += ["## Input pipeline beside training", ""]
        if "images_per_s" in p:
            lines.append(
                f"`benchmarks/input_pipeline.py` (TFRecords, {p['records']} synthetic scenes at "
                f"{'x'.join(map(str, p['record_size']))}, `hqmd` train augmentation to 289x385, batch 8, one epoch, "
                f"{p.get('cores', 2)} cores): **{p['images_per_s']:.1f} images/s**"
                + (f", {p['pipeline_over_training']:.0f}x the {p['training_images_per_s']:.2f} images/s float32 "
                   f"training consumes (hqmd_plus_full, batch 8, 289x385)." if "pipeline_over_training" in p else "."))
        else:
            lines.append(f"failed: {p.get('error')}")
        lines.append("")
    scenes = results.get("scenes")
    if scenes and "scenes_per_s" in scenes:
        lines += [f"Synthetic scene rendering (`benchmarks/synthetic_scenes.py`, one core): "
                  f"**{scenes['scenes_per_s']:.1f} scenes/s** at {'x'.join(map(str, scenes['size']))} (median "
                  f"{scenes['median_ms']:.1f} ms per scene; target of issue 4: >= 50).", ""]
    if s and "rss_end_mb" in s:
        lines += ["## Streaming check: memory over one epoch", "",
                  f"`benchmarks/streaming.py`: {s['records']} records at {'x'.join(map(str, s['record_size']))} "
                  f"({s['disk_mb']:.0f} MB of TFRecords, {s['decoded_set_mb']:.0f} MB decoded) through "
                  f"`hqdepth.data.load(\"tfrecord:DIR\", recipe=\"hqmd\", shuffle_buffer={s['shuffle_buffer']}, "
                  f"batch_size={s['batch']})`, one epoch, RSS read after every batch:", "",
                  "| point | images read | RSS (MB) |", "|---|---|---|",
                  f"| before the first batch | 0 | {s['rss_before_mb']:.0f} |",
                  f"| first batch | {s['batch']} | {s['rss_first_batch_mb']:.0f} |",
                  f"| middle | {s['images'] // 2} | {s['rss_middle_mb']:.0f} |",
                  f"| end | {s['images']} | {s['rss_end_mb']:.0f} |",
                  f"| maximum | - | {s['rss_max_mb']:.0f} |", "",
                  f"Growth from the first quarter to the end: {s['rss_growth_quarter_to_end_mb']:.0f} MB against "
                  f"{s['decoded_set_mb']:.0f} MB for the decoded set: "
                  + ("**the pipeline streams** (memory flat once the shuffle buffer is full)." if s.get("streams")
                     else "**memory grew**: check the pipeline for caching."), ""]
    return lines


def scale_section(results):
    rows = results.get("scale")
    if not rows:
        return []
    lines = ["## Scale: training memory against batch size and input size (hqmd_plus_full, float32)", "",
             "Peak RSS of a process that builds the model and runs the training step (one untimed and one timed "
             "step; the 289x385 batch-8 row is the main measurement above). It includes about 0.7 GB for "
             "TensorFlow itself and about 1.2 GB after the model is built.", "",
             "| input | batch | peak RSS (MB) | per extra image (MB) | img/s | step GFLOP/s |", "|---|---|---|---|---|---|"]
    base = {}
    for row in sorted(rows, key=lambda r: (r["size"], r["batch"])):
        if "peak_rss_mb" not in row:
            lines.append(f"| {size_of(row)} | {row['batch']} | failed | | | |")
            continue
        key = tuple(row["size"])
        per = None
        if key in base and row["batch"] > base[key][0]:
            per = (row["peak_rss_mb"] - base[key][1]) / (row["batch"] - base[key][0])
        base.setdefault(key, (row["batch"], row["peak_rss_mb"]))
        lines.append(f"| {size_of(row)} | {row['batch']} | {row['peak_rss_mb']:.0f} | {fmt(per, 0)} | "
                     f"{fmt(row.get('images_per_s'))} | {fmt(row.get('achieved_gflops'), 0)} |")
    return lines + [""]


def inference_headline(results):
    """Headline bullets: the SavedModel against ONNX Runtime, per model, serving and default process."""
    lines = []
    for model, row in results.get("inference", {}).get("models", {}).items():
        processes = row.get("processes", {})
        serving, default = (processes.get(p, {}).get("rows", {}) for p in ("serving", "default"))
        if "over_ort_median" not in serving.get("savedmodel", {}):
            continue
        sm, bf, ort = serving["savedmodel"], serving.get("savedmodel_bfloat16", {}), serving["onnxruntime"]
        size = "x".join(map(str, row.get("input_size", [])))
        lines.append(
            f"- **Serving {model} ({size}, batch 1, interleaved with ONNX Runtime): the float32 SavedModel in a serving "
            f"process (`TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1`) {sm['median_ms']:.0f} ms vs {ort['median_ms']:.0f} ms = "
            f"{sm['over_ort_median']:.2f}x** (target <= 1.0; fastest calls {sm['over_ort_min']:.2f}x)"
            + (f"; in a default TensorFlow process {default['savedmodel']['over_ort_median']:.2f}x"
               if "over_ort_median" in default.get("savedmodel", {}) else "")
            + (f"; `--precision bfloat16` {bf['median_ms']:.0f} ms = {bf['over_ort_median']:.2f}x" if bf else "")
            + (f". Batch {row.get('throughput_batch')}: {sm['batch_images_per_s']:.2f} images/s vs ONNX Runtime's "
               f"{ort['batch_images_per_s']:.2f} ({sm['throughput_over_ort']:.2f}x)"
               + (f", bfloat16 {bf['batch_images_per_s']:.2f} ({bf['throughput_over_ort']:.2f}x)" if bf else "")
               if "batch_images_per_s" in sm else "") + ".")
    return lines


def inference_section(results):
    inf = results.get("inference")
    if not inf:
        return []
    lines = ["## Inference: exported SavedModel against ONNX Runtime", "",
             "`benchmarks/inference_ab.py` (one run per model, commands below): one process builds the model (random "
             "weights, the head rescaled so that depths are not saturated), computes Keras' output and exports the "
             "float32 SavedModel (the default), the `--precision bfloat16` SavedModel and the ONNX model; then two fresh "
             "processes only load and call them: `default` (TensorFlow as it starts) and `serving` "
             "(`TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1`: oneDNN keeps each convolution's reordered weights instead of "
             "reordering them on every call; only for processes whose weights never change, "
             "`docs/predict-export.md`). In each, rounds of batch-1 calls, then of batch-8 calls: a round calls each variant twice in a row and times the "
             "second call, in an order rotated from round to round (all see the same load; none pays for waking its "
             "thread pool after another runtime). TensorFlow intra/inter-op threads = ONNX Runtime intra-op threads = "
             "cores; float32 RGB 0..255 at the model size. `benchmarks/inference.py` (issue 7) times the backends one "
             "after another.", ""]
    for model, row in inf.get("models", {}).items():
        size = "x".join(map(str, row.get("input_size", [])))
        lines += [f"### {model}, {size}", "", f"`{row.get('command')}`", ""]
        if "processes" not in row:
            lines += [f"failed: {row.get('error')}", ""]
            continue
        lines += ["| process | variant | batch 1: median ms | min ms | CPU ms per call | cores busy | median / ORT | "
                  f"batch {row.get('throughput_batch')}: images/s | / ORT | max diff vs Keras (m) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for process, timed in row["processes"].items():
            if "rows" not in timed:
                lines.append(f"| {process} | failed: {timed.get('error')} | | | | | | | | |")
                continue
            for label, r in timed["rows"].items():
                busy = r.get("cores_busy_median")
                lines.append(f"| {process} | {label} | {r['median_ms']:.0f} | {r['min_ms']:.0f} | {r['cpu_ms_median']:.0f} "
                             f"| {fmt(None if busy is None else 100 * busy, 0, ' %')} "
                             f"| {fmt(r.get('over_ort_median'))} | {fmt(r.get('batch_images_per_s'))} | "
                             f"{fmt(r.get('throughput_over_ort'))} | {r['max_abs_diff_vs_keras_m']:.2g} |")
        lines.append("")
    return lines


def tuning_section(tuning):
    if not tuning:
        return ["## CPU tuning study", "", "Not run yet: `python benchmarks/cpu_tuning.py` writes "
                "benchmarks/tuning.json, rendered here.", ""]
    lines = [f"## CPU tuning study (hqmd_plus_full training step, {tuning['size']}, batch {tuning['batch']})", "",
             f"`{tuning['command']}`, {tuning['date']}, load average at the start "
             f"{tuning['load_average_start']:.2f}, end {tuning['load_average_end']:.2f}; matmul reference "
             f"{tuning['matmul_gflops']:.0f} GFLOP/s, {tuning['matmul_gflops_per_cpu_s']:.0f} GFLOP per CPU-second "
             f"(float32, measured first). Each row is its own subprocess, {tuning['steps']} timed steps after one "
             "untimed step; `best` is the fastest step (least disturbed by other jobs), median the typical one; "
             "per CPU-s = FLOPs per second of process CPU time (all threads) over the matmul's, which other jobs on "
             "the cores do not dilute (thread pools spinning count against it)."
             + (" This study ran before fused batch norm and fused Adam became package defaults: its `default` is the "
                "package of that time (Keras' batch norm and Adam), and the `fused_*` rows and the second profile "
                "are the prototypes (`benchmarks/patches.py`, since replaced by `variants.py`) of what the package "
                "now does. `python benchmarks/cpu_tuning.py` re-measures it the other way round (`keras_*` rows)."
                if any("patches" in row for row in tuning["rows"]) else ""), "",
             "| variant | what changes | batch | img/s (median) | GFLOP/s median / best | / matmul (median / best) | "
             "per CPU-s / matmul | first step (s) | peak RSS (MB) |", "|---|---|---|---|---|---|---|---|---|"]
    for row in tuning["rows"]:
        if "median_s" not in row:
            lines.append(f"| {row['name']} | {row['description']} | - | failed: {one_line(row.get('error'))} | | | | | |")
            continue
        lines.append(
            f"| {row['name']} | {row['description']} | {row['batch']} | {row['images_per_s']:.2f} | "
            f"{row['achieved_gflops']:.0f} / {row['achieved_gflops_best']:.0f} | {row['ratio']:.2f} / "
            f"{row['ratio_best']:.2f} | {fmt(row.get('ratio_cpu'))} | {row['warmup_s'][0]:.0f} | "
            f"{row['peak_rss_mb']:.0f} |")
    for profile in tuning.get("profiles", []):
        if "stages_ms" not in profile:
            continue
        lines += ["", f"Profile, {profile['label']} (`benchmarks/cpu_profile.py`, ms per step of op self time "
                  f"summed over threads; wall {profile['wall_ms_per_step']:.0f} ms per step):", "",
                  "| stage | ms |", "|---|---|"]
        lines += [f"| {k} | {v:.0f} |" for k, v in profile["stages_ms"].items()]
        lines += ["", "| model part, direction, kind | ms |", "|---|---|"]
        lines += [f"| {k} | {v:.0f} |" for k, v in list(profile["model_ms_by_part"].items())[:12]]
        lines += ["", "| op type | ms |", "|---|---|"]
        lines += [f"| {k} | {v:.0f} |" for k, v in profile["top_op_types_ms"].items()]
    ab = tuning.get("train_ab")
    if ab and "rows" in ab:
        lines += ["", f"Interleaved A/B (`benchmarks/train_ab.py`, both variants in one process, steps alternating, "
                  f"{ab['rounds']} rounds, load average {ab['load_start']:.1f} -> {ab['load_end']:.1f}):", "",
                  "| variant | median s / step | min s | CPU s / step | GFLOP/s median (best) | GFLOP per CPU-s |",
                  "|---|---|---|---|---|---|"]
        for label, row in ab["rows"].items():
            lines.append(f"| {label}: {ab_label(row)} | {row['median_s']:.2f} | {row['min_s']:.2f} "
                         f"| {sorted(row['cpu_seconds'])[len(row['cpu_seconds']) // 2]:.1f} | "
                         f"{row['achieved_gflops']:.0f} ({row['achieved_gflops_best']:.0f}) | "
                         f"{row['gflops_per_cpu_s']:.0f} |")
    if tuning.get("conclusions"):
        lines += ["", *tuning["conclusions"]]
    return lines + [""]


def ab_label(row):
    """What a train_ab.py variant ran; runs before the fused kernels became defaults name patches instead."""
    if "patches" in row:
        return (f"patches {row['patches']} (now the package's default)" if row["patches"] else
                "package of that time (Keras' batch norm and Adam)")
    return f"variant {row['variant']} (Keras' code)" if row.get("variant") else "package as is"


def gpu_section(gpu):
    lines = ["## GPU (Keras on JAX, no TensorFlow) beside torchvision DeepLabv3", ""]
    if not gpu:
        return lines + [
            "Not measured: no GPU machine was lent to this work. On a machine with JAX (CUDA) and PyTorch + "
            "torchvision, from the repository root (Keras >= 3.10 and PyYAML are the only other needs; carry their "
            "wheels where the machine is offline, e.g. `pip download keras pyyaml -d wheels/` beforehand):", "",
            "```", GPU_COMMAND, "```", "",
            "It trains `hqmd_plus_full` (baseline+ + HQMDLoss + Adam, compiled metrics) at 289x385 batch 8 with "
            "`KERAS_BACKEND=jax` in float32 and mixed_float16, then torchvision `deeplabv3_resnet50` (output stride 8, "
            "channels_last, Adam, AMP float16 and float32) at the same size and batch, each in its own process, and "
            "records images/s, step time, peak device memory and the device; `--block-tensorflow` makes the run fail "
            "if anything imports TensorFlow. Checked here on the CPU with JAX (`--size 33x49 --batch 2 --steps 2 "
            "--block-tensorflow`): our model, loss, metrics and optimizer run without TensorFlow; the peer part "
            "reports \"PyTorch/torchvision not installed\" and is skipped. Targets: ours >= the peer's images/s; "
            "mixed_float16 >= 2x float32.", ""]
    lines += [f"`{gpu['command']}`, {gpu['date']}, {gpu.get('nvidia_smi') or ''}", "",
              "| run | precision | images/s | step (ms) | peak device memory (MB) | forward GFLOPs/image |",
              "|---|---|---|---|---|---|"]
    for run in gpu["runs"]:
        if "images_per_s" not in run:
            lines.append(f"| {run.get('what')} | - | {run.get('skipped') or one_line(run.get('error'))} | | | |")
            continue
        label = "ours (Keras/JAX)" if run["what"] == "ours" else "torchvision deeplabv3_resnet50"
        lines.append(f"| {label} | {run['precision']} | {run['images_per_s']:.1f} | {run['median_s'] * 1000:.0f} | "
                     f"{fmt(run.get('peak_device_memory_mb'), 0)} | {fmt(run.get('forward_gflops_per_image'), 1)} |")
    lines += ["", "Summary: " + ", ".join(f"{k} = {v:.2f}" for k, v in gpu.get("summary", {}).items()), ""]
    return lines


def bf16_check_section(results):
    check = results.get("bf16_check")
    if not check:
        return []
    lines = ["## mixed_bfloat16 against float32: the same short run", "", f"`{check.get('command')}`: "
             "`hqmd_plus_full` (random weights, the recipe's frozen layers kept) built in float32 and again under "
             "mixed_bfloat16 with the same weights, trained with the recipe's loss and Adam on the same synthetic scenes "
             "in the same order, one `train_on_batch` per step (`benchmarks/bf16_check.py`).", ""]
    if "relative_median" not in check:
        return lines + [f"failed: {check.get('error')}", ""]
    abs_rel = check.get("held_out_abs_rel", {})
    lines += [f"{check['steps']} steps at {check['size']}, batch {check['batch']}, learning rate {check['lr']}: "
              f"|bf16 - f32| / f32 of the loss per step median **{check['relative_median']:.3f}** (largest "
              f"{check['relative_max']:.3f}); of the {check['window']}-step means median "
              f"{check['smoothed_relative_median']:.3f}, largest **{check['smoothed_relative_max']:.3f}**. Over the run "
              f"the loss fell by {-100 * check['float32_change']:.1f} % in float32 and {-100 * check['bfloat16_change']:.1f} % "
              f"in bfloat16; held-out batch abs_rel {fmt(abs_rel.get('float32'), 4)} (float32) vs "
              f"{fmt(abs_rel.get('mixed_bfloat16'), 4)} (bfloat16). Tolerance we hold it to (`tests/test_training_runs.py` "
              "on a shorter run): per-step median below 5 %, every step below 35 %, the run's mean loss within 5 %.", "",
              "| step | float32 loss | mixed_bfloat16 loss |", "|---|---|---|"]
    f32, bf16 = check["losses"]["float32"], check["losses"]["mixed_bfloat16"]
    every = max(1, len(f32) // 12)
    lines += [f"| {i + 1} | {f32[i]:.3f} | {bf16[i]:.3f} |" for i in range(0, len(f32), every)]
    return lines + [""]


def render(results, tuning=None, gpu=None, analysis=None, machines=None):
    """RESULTS.md: the run's tables, with `analysis` (benchmarks/ANALYSIS.md: profiles and their reading, written by
    hand with the commands that measured them) after the model and bfloat16 sections."""
    lines = ["# Benchmarks (issue 8)", "",
             "Written by `make bench` (`benchmarks/run_all.py`) from `benchmarks/results.json`; numbers from one run "
             "on this machine, each measurement in its own subprocess. Random weights (speed does not depend on "
             "them).", "", *machine_lines(results), ""]
    lines += headline(results, gpu)
    lines += machines_section(machines)
    lines += matmul_section(results)
    lines += models_section(results)
    lines += bf16_check_section(results)
    if analysis:
        lines += [analysis.rstrip(), ""]
    lines += pipeline_section(results)
    lines += scale_section(results)
    lines += inference_section(results)
    lines += tuning_section(tuning)
    lines += gpu_section(gpu)
    if results.get("stage_s"):
        lines += ["## Run time per stage", "", ", ".join(f"{k} {v:.0f} s" for k, v in results["stage_s"].items()), ""]
    return "\n".join(lines) + "\n"


def main():
    """Re-render benchmarks/RESULTS.md from the JSON files (e.g. after cpu_tuning.py or gpu.py wrote theirs)."""
    here = Path(__file__).resolve().parent
    results = read_json(here / "results.json")
    if results is None:
        raise SystemExit("benchmarks/results.json not found: run `make bench` first.")
    (here / "RESULTS.md").write_text(render(results, tuning=read_json(here / "tuning.json"),
                                            gpu=read_json(here / "results_gpu.json"), analysis=read_analysis(here),
                                            machines=read_machines(here)))
    print(f"wrote {here / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
