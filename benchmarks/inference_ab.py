"""SavedModel against ONNX Runtime, interleaved in one process (issue 8, item 3).

    python benchmarks/inference_ab.py                      # hqmd_baseline_plus at 289x385, batch 1, 9 rounds
    python benchmarks/inference_ab.py --no-onnx --rounds 5

On a machine shared with other jobs, timings taken minutes apart are not comparable; here every variant is loaded
first and the calls are interleaved: each round calls every variant twice in a row (the second call timed), in an
order rotated from round to round, so all variants see the same load and none pays for following another runtime. Variants (same random weights, float32 RGB 0..255 at the model size, `serve` signature):
- `savedmodel`: `hqdepth export` as the package does it by default (weights as variables, batch norm as
  FusedBatchNormV3: grappler folds it into the convolutions);
- `savedmodel_frozen`: `export(..., freeze=True)` (`hqdepth export --freeze`): weights as graph constants;
- `onnxruntime`: `hqdepth export --format onnx` run by ONNX Runtime (CPUExecutionProvider).
Thread pools: TensorFlow intra = inter = `--cores`; ONNX Runtime intra = `--cores`. Reported per variant: median
and min wall ms per call, median process CPU ms per call, and the ratio of the medians to ONNX Runtime.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit  # noqa: E402


def main(argv=None):
    workdir = Path(tempfile.mkdtemp(prefix="hqdepth-ab-"))
    try:
        return run(argv, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # two SavedModels and an ONNX file: about 0.5 GB


def run(argv, workdir):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hqmd_baseline_plus")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--cores", type=int, default=None)
    parser.add_argument("--no-onnx", action="store_true")
    parser.add_argument("--inter", type=int, default=None, help="TF inter-op threads (default: --cores)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    cores = args.cores or len(os.sched_getaffinity(0))
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(cores)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter or cores)
    import keras

    import inference
    from hqdepth.export import export
    from hqdepth.models import get_entry
    from hqdepth.predict import DepthModel

    entry = get_entry(args.model)
    keras.utils.set_random_seed(0)
    model = entry.builder(input_shape=(*entry.input_size, 3))
    x = np.random.default_rng(0).uniform(0, 255, (1, *entry.input_size, 3)).astype(np.float32)
    inference.unsaturate(model, x)
    reference = np.asarray(model.predict(x, verbose=0))
    wrapped = DepthModel.from_keras(model)
    calls, keep, diffs = {}, [], {}

    for label, freeze in (("savedmodel", False), ("savedmodel_frozen", True)):
        export(wrapped, workdir / label, format="saved_model", overwrite=True, freeze=freeze)
        loaded = tf.saved_model.load(str(workdir / label))
        keep.append(loaded)  # owns the signature's resources
        calls[label] = lambda v, serve=loaded.signatures["serve"]: serve(images=tf.constant(v))["depth"].numpy()
    if not args.no_onnx:
        import onnxruntime

        export(wrapped, workdir / "onnx", format="onnx", overwrite=True)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = cores
        session = onnxruntime.InferenceSession(str(workdir / "onnx" / "model.onnx"), options,
                                               providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        calls["onnxruntime"] = lambda v: session.run(None, {name: v})[0]

    for label, call in calls.items():
        diffs[label] = float(np.abs(call(x) - reference).max())
        for _ in range(args.warmup - 1):
            call(x)
    wall = {label: [] for label in calls}
    cpu = {label: [] for label in calls}
    load_start = os.getloadavg()[0]
    labels = list(calls)
    for round_index in range(args.rounds):
        # Rotated order, and each timed call right after an untimed one of the same variant: the first call after
        # another runtime pays for waking its thread pool and refilling caches (measured: whichever SavedModel came
        # first in a fixed order was 0.1-0.2x of ORT slower), which a server answering one model never pays.
        for label in labels[round_index % len(labels):] + labels[:round_index % len(labels)]:
            calls[label](x)
            start, start_cpu = time.perf_counter(), time.process_time()
            calls[label](x)
            wall[label].append(time.perf_counter() - start)
            cpu[label].append(time.process_time() - start_cpu)
    rows = {}
    for label in calls:
        rows[label] = {"median_ms": 1000 * statistics.median(wall[label]), "min_ms": 1000 * min(wall[label]),
                       "cpu_ms_median": 1000 * statistics.median(cpu[label]), "max_abs_diff_vs_keras_m": diffs[label]}
    if "onnxruntime" in rows:
        ort = rows["onnxruntime"]
        for row in rows.values():
            row["over_ort_median"] = row["median_ms"] / ort["median_ms"]
            row["over_ort_min"] = row["min_ms"] / ort["min_ms"]
    for label, row in rows.items():
        print(f"{label:<28} median {row['median_ms']:7.1f} ms  min {row['min_ms']:7.1f} ms  CPU {row['cpu_ms_median']:7.1f} ms"
              + (f"  / ORT {row['over_ort_median']:.2f} (min {row['over_ort_min']:.2f})" if "over_ort_median" in row
                 else "") + f"  max diff {row['max_abs_diff_vs_keras_m']:.2g} m", flush=True)
    emit({"model": args.model, "input_size": list(entry.input_size), "batch": 1, "rounds": args.rounds,
          "order": "rotated", "cores": cores, "tf_threads": [cores, args.inter or cores], "rows": rows, "load_start": load_start,
          "load_end": os.getloadavg()[0]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
