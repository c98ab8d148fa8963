"""Exported SavedModel against ONNX Runtime, interleaved, in a default and in a serving-configured process (issue 17).

    python benchmarks/inference_ab.py                                   # hqmd_baseline_plus at 289x385
    python benchmarks/inference_ab.py --model bts --size 288x384        # BTS needs multiples of 32

This process builds the model (random weights, the head rescaled so that depths are not saturated), computes
Keras' reference output and exports three variants to a temporary folder:
- `savedmodel`: `hqdepth export` as the package does it by default (float32, weights as variables);
- `savedmodel_bfloat16`: `hqdepth export --precision bfloat16` (bfloat16 arithmetic, float32 head and output);
- `onnxruntime`: `hqdepth export --format onnx` run by ONNX Runtime (CPUExecutionProvider), float32.
Then it times them in two fresh processes that only load and call the exports (`--time DIR`):
- `default`: TensorFlow as it starts;
- `serving`: with `TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1`, TensorFlow's switch for processes whose weights never change:
  oneDNN then reorders each convolution's weights into its blocked layout once and keeps them, instead of on
  every call. Safe only where weights never change (a server of SavedModels); a process that trains, or runs two
  convolutions of the same shape eagerly, gets wrong results from it (`docs/predict-export.md`).
In each timing process every variant is loaded first; then `--rounds` rounds call each variant twice in a row at
batch 1 (the second call timed) in an order rotated from round to round, so that all see the same load and none pays
for waking its thread pool after another runtime; then `--batch-rounds` rounds of batch-`--batch` calls likewise
(throughput). Thread pools: TensorFlow intra = inter = `--cores`; ONNX Runtime intra = `--cores`.
Each batch-1 row also has the process's CPU time during the timed call, the share of the cores it kept busy, its
system time and its voluntary / involuntary context switches (threads parking / preempted): where a runtime's
kernels are level with the other's, these say where the rest of its time goes.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, run_worker  # noqa: E402

PROCESSES = {"default": {}, "serving": {"TF_ONEDNN_ASSUME_FROZEN_WEIGHTS": "1"}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hqmd_baseline_plus")
    parser.add_argument("--size", default=None, help="HxW (default: the model's input size)")
    parser.add_argument("--rounds", type=int, default=9, help="batch-1 rounds")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batch-rounds", type=int, default=3, help="rounds of batch --batch calls (0: none)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--cores", type=int, default=None)
    parser.add_argument("--no-onnx", action="store_true")
    parser.add_argument("--processes", default=",".join(PROCESSES), help="comma-separated: default, serving")
    parser.add_argument("--time", metavar="DIR", help=argparse.SUPPRESS)  # internal: the timing child
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    args.cores = args.cores or len(os.sched_getaffinity(0))
    if args.time:
        return time_exports(args, Path(args.time))
    workdir = Path(tempfile.mkdtemp(prefix="hqdepth-ab-"))
    try:
        return export_and_time(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # two SavedModels and an ONNX file: about 0.5 GB


def export_and_time(args, workdir):
    size = export_all(args, workdir)
    result = {"model": args.model, "input_size": list(size), "batch": 1, "throughput_batch": args.batch,
              "rounds": args.rounds, "batch_rounds": args.batch_rounds, "order": "rotated", "cores": args.cores,
              "tf_threads": [args.cores, args.cores], "processes": {}}
    child_args = ["--time", workdir, "--rounds", args.rounds, "--batch", args.batch, "--batch-rounds",
                  args.batch_rounds, "--warmup", args.warmup, "--cores", args.cores]
    for name in args.processes.split(","):
        row = run_worker("inference_ab.py", child_args, env=PROCESSES[name], label=f"inference_ab {name}")
        result["processes"][name] = {"env": PROCESSES[name], **row}
    emit(result)
    return 0


def export_all(args, workdir):
    """Build, rescale the head, compute Keras' output on the inputs, export the variants; returns the size."""
    import numpy as np

    set_threads(args.cores)
    import keras

    import inference
    from cpu_step import parse_size
    from hqdepth.export import export
    from hqdepth.models import get_entry
    from hqdepth.predict import DepthModel

    entry = get_entry(args.model)
    size = parse_size(args.size) if args.size else tuple(entry.input_size)
    keras.utils.set_random_seed(0)
    model = entry.builder(input_shape=(*size, 3))
    rng = np.random.default_rng(0)
    x1 = rng.uniform(0, 255, (1, *size, 3)).astype(np.float32)
    xb = rng.uniform(0, 255, (args.batch, *size, 3)).astype(np.float32)
    inference.unsaturate(model, x1)
    np.savez(workdir / "inputs.npz", x1=x1, xb=xb, reference=np.asarray(model.predict(x1, verbose=0)))
    wrapped = DepthModel.from_keras(model)
    export(wrapped, workdir / "savedmodel", format="saved_model", overwrite=True)
    export(wrapped, workdir / "savedmodel_bfloat16", format="saved_model", overwrite=True, precision="bfloat16")
    if not args.no_onnx:
        export(wrapped, workdir / "onnx", format="onnx", overwrite=True)
    return size


def time_exports(args, workdir):
    """The timing child: load every export, interleave batch-1 then batch-N calls; emit the rows."""
    import numpy as np
    import tensorflow as tf

    set_threads(args.cores)
    with np.load(workdir / "inputs.npz") as stored:
        x1, xb, reference = stored["x1"], stored["xb"], stored["reference"]
    calls, keep = {}, []
    for label in ("savedmodel", "savedmodel_bfloat16"):
        loaded = tf.saved_model.load(str(workdir / label))
        keep.append(loaded)  # owns the signature's resources
        calls[label] = lambda v, serve=loaded.signatures["serve"]: serve(images=tf.constant(v))["depth"].numpy()
    if (workdir / "onnx").is_dir():
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.cores
        session = onnxruntime.InferenceSession(str(workdir / "onnx" / "model.onnx"), options,
                                               providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        calls["onnxruntime"] = lambda v: session.run(None, {name: v})[0]
    diffs = {}
    for label, call in calls.items():
        diffs[label] = float(np.abs(call(x1) - reference).max())
        for _ in range(args.warmup - 1):
            call(x1)
    load_start = os.getloadavg()[0]
    latency = interleave(calls, x1, args.rounds)
    throughput = interleave(calls, xb, args.batch_rounds) if args.batch_rounds else {}
    rows = {}
    for label in calls:
        timed = latency[label]
        rows[label] = {"median_ms": 1000 * statistics.median(timed["wall"]), "min_ms": 1000 * min(timed["wall"]),
                       "cpu_ms_median": 1000 * statistics.median(timed["cpu"]),
                       # share of the cores' time spent computing (or spinning) during a call
                       "cores_busy_median": statistics.median(c / (w * args.cores) for c, w in zip(timed["cpu"],
                                                                                                    timed["wall"])),
                       "system_ms_median": 1000 * statistics.median(timed["system"]),
                       "context_switches_median": {kind: statistics.median(timed[kind])
                                                   for kind in ("voluntary", "involuntary")},
                       "max_abs_diff_vs_keras_m": diffs[label]}
        if label in throughput:
            rows[label]["batch_images_per_s"] = len(xb) / statistics.median(throughput[label]["wall"])
    if "onnxruntime" in rows:
        ort = rows["onnxruntime"]
        for row in rows.values():
            row["over_ort_median"] = row["median_ms"] / ort["median_ms"]
            row["over_ort_min"] = row["min_ms"] / ort["min_ms"]
            if "batch_images_per_s" in row:
                row["throughput_over_ort"] = row["batch_images_per_s"] / ort["batch_images_per_s"]
    for label, row in rows.items():
        switches = row["context_switches_median"]
        print(f"{label:<22} median {row['median_ms']:7.1f} ms  min {row['min_ms']:7.1f} ms  CPU "
              f"{row['cpu_ms_median']:7.1f} ms (cores busy {row['cores_busy_median']:.0%}, system "
              f"{row['system_ms_median']:.1f} ms, switches {switches['voluntary']:g} + {switches['involuntary']:g})" + (f"  / ORT {row['over_ort_median']:.2f}" if "over_ort_median" in row
                                                   else "")
              + (f"  batch {len(xb)}: {row['batch_images_per_s']:.2f} img/s" if "batch_images_per_s" in row else "")
              + f"  max diff {row['max_abs_diff_vs_keras_m']:.2g} m", flush=True)
    emit({"rows": rows, "load_start": load_start, "load_end": os.getloadavg()[0],
          "assume_frozen_weights": os.environ.get("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS")})
    return 0


def set_threads(cores):
    """TensorFlow's intra- and inter-op pools at `cores` (before TensorFlow runs anything)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(cores)
    tf.config.threading.set_inter_op_parallelism_threads(cores)


def interleave(calls, x, rounds):
    """{label: {"wall", "cpu", "system", "voluntary", "involuntary": one value per round}} of `rounds` rotated
    rounds, each timing the second of two calls: wall and process CPU seconds, system CPU seconds and the process's
    voluntary / involuntary context switches during the call (threads parking / being preempted)."""
    fields = ("wall", "cpu", "system", "voluntary", "involuntary")
    measured = {label: {field: [] for field in fields} for label in calls}
    labels = list(calls)
    for round_index in range(rounds):
        # Rotated order, and each timed call right after an untimed one of the same variant: the first call after
        # another runtime pays for waking its thread pool and refilling caches (measured: whichever SavedModel came
        # first in a fixed order was 0.1-0.2x of ORT slower), which a server answering one model never pays.
        for label in labels[round_index % len(labels):] + labels[:round_index % len(labels)]:
            calls[label](x)
            usage, start, start_cpu = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), time.process_time()
            calls[label](x)
            wall, cpu, after = time.perf_counter() - start, time.process_time() - start_cpu, resource.getrusage(
                resource.RUSAGE_SELF)
            for field, value in zip(fields, (wall, cpu, after.ru_stime - usage.ru_stime, after.ru_nvcsw - usage.ru_nvcsw,
                                             after.ru_nivcsw - usage.ru_nivcsw)):
                measured[label][field].append(value)
    return measured


if __name__ == "__main__":
    raise SystemExit(main())
