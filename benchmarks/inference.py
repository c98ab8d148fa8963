"""Inference speed on the CPU: latency (batch 1) and throughput (batch 8) per registered model at its paper input
size, for Keras `model.predict`, the exported SavedModel (`serve` signature) and ONNX Runtime (when tf2onnx, onnx
and onnxruntime are installed: `pip install -e .[onnx]`).

    .venv/bin/python benchmarks/inference.py                                     # every registered model
    .venv/bin/python benchmarks/inference.py --models hqmd_baseline_plus --repeats 3 --record

Per model (random weights: speed does not depend on them), not timed: build at `list_models()[i].input_size`,
export with `hqdepth.export` (SavedModel; ONNX), load. Timed, per backend: `--warmup` untimed calls, then
`--repeats` calls of batch 1 (latency: median and min ms per call) and of batch `--batch` (throughput: images / s
from the median call). Inputs are float32 RGB 0..255 at the model's size, the same array for every backend. Also
reported: export times and max |backend - Keras| on the batch-1 input (the head's logits layer, when named
`logits`, is rescaled first so that depths are not saturated at 0 / max_depth by the random weights).

TensorFlow's and ONNX Runtime's thread pools are set to `--cores` (default: every core this process may use) and
the process is pinned to them. `--record` appends the run to benchmarks/RESULTS_inference.json and rewrites
benchmarks/RESULTS_inference.md from every recorded run.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import cpu_model  # noqa: E402  (benchmarks/common.py, beside this script)

HERE = Path(__file__).resolve().parent
RESULTS_JSON = HERE / "RESULTS_inference.json"
RESULTS_MD = HERE / "RESULTS_inference.md"
BACKENDS = ("keras", "savedmodel", "onnx")


def versions():
    import keras
    import numpy as np
    import tensorflow as tf

    from hqdepth import __version__

    found = {"python": platform.python_version(), "hqdepth": __version__, "tensorflow": tf.__version__,
             "keras": keras.__version__, "numpy": np.__version__}
    for module in ("onnxruntime", "tf2onnx", "onnx"):
        try:
            found[module] = __import__(module).__version__
        except ImportError:
            found[module] = None
    return found


def unsaturate(model, sample):
    """Rescale a `logits` layer so that the random model's depths spread over the range (for the differences)."""
    import keras
    import numpy as np

    try:
        layer = model.get_layer("logits")
    except ValueError:
        return False
    weights = layer.get_weights()
    if len(weights) != 2:
        return False
    values = np.asarray(keras.Model(model.input, layer.output)(sample, training=False))
    scale = 1.5 / max(float(values.std()), 1e-6)
    layer.set_weights([weights[0] * scale, (weights[1] - values.mean()) * scale])
    return True


def time_calls(fn, inputs, warmup, repeats):
    for _ in range(warmup):
        fn(inputs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(inputs)
        times.append(time.perf_counter() - start)
    return times


def measure(name, call, x1, x8, warmup, repeats):
    one = time_calls(call, x1, warmup, repeats)
    many = time_calls(call, x8, warmup, repeats)
    row = {"backend": name, "latency_ms_median": 1000 * statistics.median(one), "latency_ms_min": 1000 * min(one),
           "batch": len(x8), "throughput_img_s": len(x8) / statistics.median(many),
           "batch_ms_median": 1000 * statistics.median(many)}
    print(f"  {name:<11} batch 1: median {row['latency_ms_median']:8.1f} ms (min {row['latency_ms_min']:.1f})   "
          f"batch {len(x8)}: {row['throughput_img_s']:6.2f} img/s ({row['batch_ms_median']:.0f} ms per call)",
          flush=True)
    return row


def bench_model(entry, args, workdir):
    import keras
    import numpy as np

    from hqdepth.export import export
    from hqdepth.predict import DepthModel

    height, width = entry.input_size
    print(f"{entry.name} at {height}x{width}", flush=True)
    keras.utils.set_random_seed(0)
    model = entry.builder(input_shape=(height, width, 3))
    rng = np.random.default_rng(0)
    x8 = rng.uniform(0, 255, (args.batch, height, width, 3)).astype(np.float32)
    x1 = x8[:1]
    result = {"model": entry.name, "input_size": [height, width], "params": int(model.count_params()),
              "rows": [], "export_s": {}, "max_abs_diff_vs_keras_m": {}, "notes": []}
    unsaturated = unsaturate(model, x1)
    reference = np.asarray(model.predict(x1, verbose=0))
    if not unsaturated:
        result["notes"].append("no `logits` layer: differences measured on the saturated random head")
    wrapped = DepthModel.from_keras(model)
    if "keras" in args.backends:
        result["rows"].append(measure("keras", lambda x: model.predict(x, batch_size=len(x), verbose=0), x1, x8,
                                      args.warmup, args.repeats))
    if "savedmodel" in args.backends:
        import tensorflow as tf

        start = time.perf_counter()
        export(wrapped, workdir / f"{entry.name}_saved", format="saved_model", overwrite=True)
        result["export_s"]["savedmodel"] = time.perf_counter() - start
        loaded = tf.saved_model.load(str(workdir / f"{entry.name}_saved"))  # kept: it owns the signature
        serve = loaded.signatures["serve"]
        call = lambda x: serve(images=tf.constant(x))["depth"].numpy()  # noqa: E731
        result["max_abs_diff_vs_keras_m"]["savedmodel"] = float(np.abs(call(x1) - reference).max())
        result["rows"].append(measure("savedmodel", call, x1, x8, args.warmup, args.repeats))
        if args.frozen:
            export(wrapped, workdir / f"{entry.name}_frozen", format="saved_model", overwrite=True, freeze=True)
            kept = tf.saved_model.load(str(workdir / f"{entry.name}_frozen"))
            call = lambda x: kept.signatures["serve"](images=tf.constant(x))["depth"].numpy()  # noqa: E731
            result["max_abs_diff_vs_keras_m"]["savedmodel_frozen"] = float(np.abs(call(x1) - reference).max())
            result["rows"].append(measure("savedmodel_frozen", call, x1, x8, args.warmup, args.repeats))
    if "onnx" in args.backends:
        try:
            import onnxruntime
        except ImportError:
            result["notes"].append("onnx: onnxruntime not installed (pip install -e .[onnx])")
            print("  onnx: skipped (onnxruntime not installed)")
        else:
            from hqdepth.errors import HQDepthError

            start = time.perf_counter()
            try:
                export(wrapped, workdir / f"{entry.name}_onnx", format="onnx", overwrite=True)
            except HQDepthError as error:
                result["notes"].append(f"onnx export failed: {error}")
                print(f"  onnx: export failed: {error}")
            else:
                result["export_s"]["onnx"] = time.perf_counter() - start
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = args.cores
                session = onnxruntime.InferenceSession(str(workdir / f"{entry.name}_onnx" / "model.onnx"), options,
                                                       providers=["CPUExecutionProvider"])
                name = session.get_inputs()[0].name
                call = lambda x: session.run(None, {name: x})[0]  # noqa: E731
                result["max_abs_diff_vs_keras_m"]["onnx"] = float(np.abs(call(x1) - reference).max())
                result["rows"].append(measure("onnxruntime", call, x1, x8, args.warmup, args.repeats))
    for backend, seconds in result["export_s"].items():
        print(f"  export {backend}: {seconds:.1f} s; max |{backend} - keras| = "
              f"{result['max_abs_diff_vs_keras_m'].get(backend, float('nan')):.3g} m")
    keras.backend.clear_session()
    return result


def render_markdown(runs):
    lines = [
        "# Inference benchmarks (issue #7)",
        "",
        "Generated by `benchmarks/inference.py --record` from `RESULTS_inference.json` (every recorded run, newest "
        "last). Random weights at each model's paper input size, float32 RGB input at that size, CPU only. "
        "Latency = median wall time of one batch-1 call; throughput = batch size / median time of one batch call. "
        "Keras = `model.predict(x, batch_size=len(x))` (includes its per-call set-up); SavedModel = the `serve` "
        "signature of `hqdepth export` (float32 at the model size, weights as variables; `savedmodel_frozen`: "
        "`--freeze`); ONNX Runtime = `hqdepth export --format onnx` "
        "run by `onnxruntime.InferenceSession` (CPUExecutionProvider). Differences: max |backend - Keras| in metres "
        "on the batch-1 input, with the random head rescaled so that depths are not saturated.",
        "",
    ]
    for run in runs:
        machine = run["machine"]
        lines += [
            f"## {run['date']}: `{run['command']}`",
            "",
            f"Machine: {machine['cpu']}, {machine['cores_used']} core(s) used of {machine['nproc']} "
            f"(threads = {machine['cores_used']}; 1-minute load average before / after: "
            f"{machine['load_before']:.2f} / {machine['load_after']:.2f}). "
            + ", ".join(f"{k} {v}" for k, v in run["versions"].items() if v) + ".",
            f"Warm-up calls {run['warmup']}, timed calls {run['repeats']} per batch size.",
            "",
            "| model | input | params | backend | latency batch 1 (ms, median / min) | throughput batch "
            f"{run['batch']} (img/s) | export (s) | max diff vs Keras (m) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for result in run["results"]:
            size = "x".join(map(str, result["input_size"]))
            for row in result["rows"]:
                key = {"onnxruntime": "onnx"}.get(row["backend"], row["backend"])
                export_s = result["export_s"].get(key)
                diff = result["max_abs_diff_vs_keras_m"].get(key)
                lines.append(
                    f"| {result['model']} | {size} | {result['params']:,} | {row['backend']} | "
                    f"{row['latency_ms_median']:.0f} / {row['latency_ms_min']:.0f} | {row['throughput_img_s']:.2f} | "
                    f"{'-' if export_s is None else f'{export_s:.0f}'} | {'-' if diff is None else f'{diff:.2g}'} |")
            for note in result["notes"]:
                lines.append(f"\n{result['model']}: {note}")
        if run.get("remark"):
            lines += ["", run["remark"]]
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated model names (default: every registered model)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated subset of {BACKENDS}")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per batch size (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    parser.add_argument("--batch", type=int, default=8, help="throughput batch size (default 8)")
    parser.add_argument("--cores", type=int, default=None, help="cores to use (default: all allowed)")
    parser.add_argument("--variant", default="", help="package kernels switched back to Keras' code before building "
                        "(benchmarks/variants.py, e.g. keras_bn)")
    parser.add_argument("--frozen", action="store_true",
                        help="also time `export(..., freeze=True)` (weights as graph constants) as `savedmodel_frozen`")
    parser.add_argument("--record", action="store_true", help="append to RESULTS_inference.json and rewrite .md")
    parser.add_argument("--remark", help="a sentence stored with the recorded run")
    args = parser.parse_args(argv)
    allowed = sorted(os.sched_getaffinity(0))
    args.cores = min(args.cores or len(allowed), len(allowed))
    os.sched_setaffinity(0, allowed[:args.cores])
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}; choose from {BACKENDS}")

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.cores)
    tf.config.threading.set_inter_op_parallelism_threads(args.cores)
    warnings.simplefilter("ignore", FutureWarning)
    if args.variant:
        import variants

        variants.apply(args.variant)
    from hqdepth.models import list_models

    entries = list_models()
    if args.models:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        known = {e.name: e for e in entries}
        missing = [n for n in names if n not in known]
        if missing:
            parser.error(f"unknown models {missing}; registered: {', '.join(known)}")
        entries = [known[n] for n in names]
    command = shlex.join(["python", "benchmarks/inference.py", *(argv if argv is not None else sys.argv[1:])])
    load_before = os.getloadavg()[0]
    machine = {"cpu": cpu_model(), "nproc": os.cpu_count(), "cores_used": args.cores, "load_before": load_before}
    print(f"machine: {machine['cpu']}, nproc {machine['nproc']}, using {args.cores} core(s); "
          f"load average {load_before:.2f}")
    print(f"command: {command.strip()}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="hqdepth-bench-") as workdir:
        for entry in entries:
            results.append(bench_model(entry, args, Path(workdir)))
    machine["load_after"] = os.getloadavg()[0]
    run = {"date": datetime.date.today().isoformat(), "command": command.strip(), "machine": machine,
           "versions": versions(), "warmup": args.warmup, "repeats": args.repeats, "batch": args.batch,
           "results": results, "remark": args.remark, "variant": args.variant or None}
    if args.record:
        runs = json.loads(RESULTS_JSON.read_text())["runs"] if RESULTS_JSON.is_file() else []
        runs.append(run)
        RESULTS_JSON.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
        RESULTS_MD.write_text(render_markdown(runs))
        print(f"recorded in {RESULTS_JSON} and {RESULTS_MD}")
    else:
        print(json.dumps(run, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
