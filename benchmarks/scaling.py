"""Scaling on paper: a model of the `hqmd_plus_full` step time against GPUs and machines, and a localhost check.

    python benchmarks/scaling.py                 # the model's tables (pure arithmetic) -> benchmarks/scaling.json
    python benchmarks/scaling.py --count         # also rebuild the model: trainable parameters, exact training FLOPs
    python benchmarks/scaling.py --measure       # also train on localhost with 1 and 2 workers and compare

The model (docs/scaling.md explains every term):

    step(N) = compute + gradient all-reduce + synchronised batch norm          (no overlap, what the package does)
    step(N) = forward + max(backward, all-reduce - tail) + tail + batch norm    (packs overlapping the backward)

    compute     = train_factor x forward FLOPs/image x batch per replica / (peak x utilisation)
    all-reduce  = hierarchical ring of the trainable gradients (float32):
                  2 (g-1)/g x S / B_nvlink + 2 (M-1)/M x S / B_network + 2 (g-1) a_nvlink + 2 (M-1) a_network
                  (g GPUs per machine, M machines; g = 1 or M = 1 is the plain ring 2 (N-1)/N x S / B + 2 (N-1) a)
    batch norm  = 5 small all-reduces per trainable batch-norm layer (Keras' synchronized moments: sum, sum of
                  squares and count forward, two gradients backward), each launch + 2 log2(g) a_nvlink
                  + 2 log2(M) a_network (a tree, as NCCL does for small messages); 0 on one device
    efficiency  = step(1) / step(N): per-replica batch fixed, so N x the images per step (weak scaling)

Peak rates, utilisations, bandwidths and latencies are assumptions (`GPUS`, `NETWORKS`, `LATENCY`), stated in the
JSON with the numbers; the forward FLOPs (hqdepth.flops, `benchmarks/results.json`), the parameter counts and the
CPU figures are measured. `--measure` runs `MultiWorkerMirroredStrategy` on localhost exactly as
`hqdepth.training.multiworker` builds its step (the recipe's model, loss, metrics, fused Adam, synchronised batch
norm with more than one replica, the package's `DistributedStep`), on a fixed random batch, and sets the
measured step times beside the model's CPU prediction.
"""

import argparse
import datetime
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_JSON = HERE / "results.json"
OUT_JSON = HERE / "scaling.json"
RESULT_PREFIX = "RESULT "

RECIPE = "hqmd_plus_full"
MODEL = "hqmd_baseline_plus"
SIZE = (289, 385)
BATCH = 8  # per replica (train.batch_size, batch_size_is_global false)
TOTAL_STEPS = 300_000  # train.total_steps of the recipe
DECAY_STEPS = 10_000  # schedule.options.decay_steps

# Counted from the model (python benchmarks/scaling.py --count; tests/test_scaling.py checks them):
TRAINABLE_PARAMS = 40_162_321  # recipe options: freeze stem_block1 (stem and first-stage convolutions frozen)
ALL_PARAMS = 40_435_473  # incl. frozen kernels and batch-norm moving statistics (not all-reduced)
SYNC_BN_LAYERS = 59  # trainable BatchNormalization layers, all synchronised when replicas > 1
FORWARD_GFLOPS_FALLBACK = 61.346442976  # results.json flops.hqmd_baseline_plus.gflops (2026-11-22)
TRAIN_FACTOR = 3.0  # training FLOPs / forward FLOPs: the convention of benchmarks/results.json

# Assumptions (not measured here). Peak = dense fp16/bf16 tensor-core rate of the vendor's data sheet;
# utilisation = the fraction a Keras/TensorFlow mixed-precision convolutional training step is assumed to sustain
# (lower on the H100 than the A100: its peak grew ~3x, its memory bandwidth ~1.7x, and batch norm, activations,
# the loss and Adam are memory-bound);
# nvlink = achievable all-reduce bus bandwidth inside one machine (NCCL busbw), bytes/s.
GPUS = {
    "H100/H200 SXM": {"peak_tflops": 989.0, "utilisation": 0.15, "nvlink_GBps": 400.0, "gpus_per_node": 8},
    "A100 SXM": {"peak_tflops": 312.0, "utilisation": 0.25, "nvlink_GBps": 240.0, "gpus_per_node": 8},
}
UTILISATION_RANGE = (0.10, 0.40)  # the sensitivity rows of the summary
# Between machines: one NIC per machine at line rate x 0.9 (protocol overhead), bytes/s.
NETWORKS = {"400 Gb/s": 400e9 / 8 * 0.9, "100 Gb/s": 100e9 / 8 * 0.9, "25 Gb/s": 25e9 / 8 * 0.9}
LATENCY = {"nvlink_s": 5e-6, "network_s": 20e-6, "launch_s": 10e-6}  # alpha per ring step; per collective launch
PACK_BYTES = 25 * 2 ** 20  # CommunicationOptions(bytes_per_pack=...) for the overlap variant (package default: 0)
EFFICIENCY_FLOOR = 0.80

LAYOUTS = [(1, 1), (2, 1), (4, 1), (8, 1), (1, 2), (1, 4), (8, 2), (8, 4), (8, 8), (8, 16)]  # (g per node, M nodes)


# ------------------------------------------------------------------------------------------- the arithmetic


def ring_allreduce_s(nbytes, n, bandwidth, alpha=0.0):
    """Ring all-reduce of `nbytes` over `n` members: reduce-scatter + all-gather, 2 (n-1) steps of nbytes/n."""
    if n <= 1:
        return 0.0
    return 2 * (n - 1) / n * nbytes / bandwidth + 2 * (n - 1) * alpha


def hierarchical_allreduce_s(nbytes, gpus_per_node, nodes, bw_intra, bw_inter, alpha_intra=0.0, alpha_inter=0.0):
    """Reduce-scatter inside each machine, a ring across machines of every GPU's 1/g shard (the g shards share
    the machine's network link, so the link carries 2 (M-1)/M x nbytes), all-gather inside each machine."""
    g, m = gpus_per_node, nodes
    inside = 2 * (g - 1) / g * nbytes / bw_intra + 2 * (g - 1) * alpha_intra if g > 1 else 0.0
    across = 2 * (m - 1) / m * nbytes / bw_inter + 2 * (m - 1) * alpha_inter if m > 1 else 0.0
    return inside + across


def small_allreduce_s(gpus_per_node, nodes, latency=LATENCY):
    """One latency-bound all-reduce (a batch-norm moment): launch + a tree up and down each level."""
    if gpus_per_node * nodes <= 1:
        return 0.0
    return (latency["launch_s"] + 2 * math.ceil(math.log2(gpus_per_node)) * latency["nvlink_s"]
            + 2 * math.ceil(math.log2(nodes)) * latency["network_s"])


def step_model(compute_s, allreduce_s, syncbn_s, train_factor=TRAIN_FACTOR, tail_fraction=0.0):
    """(step without overlap, step with the gradient all-reduce overlapping the backward pass)."""
    forward = compute_s / train_factor
    backward = compute_s - forward
    plain = compute_s + allreduce_s + syncbn_s
    tail = allreduce_s * tail_fraction  # the last pack starts after the last gradient
    overlapped = forward + max(backward, allreduce_s - tail) + tail + syncbn_s
    return plain, overlapped


def gpu_rows(forward_gflops, train_factor=TRAIN_FACTOR, params=TRAINABLE_PARAMS, bn_layers=SYNC_BN_LAYERS,
             gpus=GPUS, networks=NETWORKS, layouts=LAYOUTS, utilisation=None):
    nbytes = 4 * params
    tail = min(1.0, PACK_BYTES / nbytes)
    rows = []
    for gpu, spec in gpus.items():
        util = spec["utilisation"] if utilisation is None else utilisation
        rate = spec["peak_tflops"] * 1e12 * util
        compute = train_factor * forward_gflops * 1e9 * BATCH / rate
        for network, bw_inter in networks.items():
            for g, m in layouts:
                if m == 1 and network != next(iter(networks)):
                    continue  # one machine: the network does not matter; listed once
                n = g * m
                allreduce = hierarchical_allreduce_s(nbytes, g, m, spec["nvlink_GBps"] * 1e9, bw_inter,
                                                     LATENCY["nvlink_s"], LATENCY["network_s"])
                syncbn = 5 * bn_layers * small_allreduce_s(g, m)
                plain, overlapped = step_model(compute, allreduce, syncbn, train_factor, tail)
                rows.append({
                    "gpu": gpu, "network": network if m > 1 else "one machine", "gpus_per_node": g, "nodes": m,
                    "gpus": n, "global_batch": BATCH * n, "utilisation": util,
                    "compute_ms": 1e3 * compute, "allreduce_ms": 1e3 * allreduce, "syncbn_ms": 1e3 * syncbn,
                    "step_ms": 1e3 * plain, "step_overlap_ms": 1e3 * overlapped,
                    "efficiency": compute / plain, "efficiency_overlap": compute / overlapped,
                    "efficiency_no_syncbn": compute / (plain - syncbn),
                    "step_best_ms": 1e3 * (overlapped - syncbn), "efficiency_best": compute / (overlapped - syncbn),
                    "images_per_s": BATCH * n / plain, "images_per_s_overlap": BATCH * n / overlapped,
                    "hours_300k_steps": TOTAL_STEPS * plain / 3600,
                    "hours_2_4M_images": TOTAL_STEPS * BATCH / (BATCH * n / plain) / 3600,
                })
    return rows


def last_above(rows, key, floor=EFFICIENCY_FLOOR):
    """{(gpu, family): (largest GPU count with `key` >= floor, smallest count below it)}; a family is one
    machine (1-8 GPUs on NVLink) or a network with a fixed number of GPUs per machine (machines grow)."""
    out = {}
    for row in rows:
        family = ("one machine" if row["nodes"] == 1 else
                  f"{row['network']}, {row['gpus_per_node']} GPU{'s' * (row['gpus_per_node'] > 1)} per machine")
        group = out.setdefault((row["gpu"], family), {"last_ok": None, "first_below": None})
        if row[key] >= floor:
            if group["last_ok"] is None or row["gpus"] > group["last_ok"]:
                group["last_ok"] = row["gpus"]
        elif group["first_below"] is None or row["gpus"] < group["first_below"]:
            group["first_below"] = row["gpus"]
    return out


def forward_gflops_from_results():
    try:
        return json.loads(RESULTS_JSON.read_text())["flops"][MODEL]["gflops"], "benchmarks/results.json"
    except (OSError, KeyError, ValueError):
        return FORWARD_GFLOPS_FALLBACK, "constant in benchmarks/scaling.py"


def cpu_reference():
    """float32 matmul rate and the float32 training ratio of hqmd_plus_full recorded by `make bench`."""
    try:
        data = json.loads(RESULTS_JSON.read_text())
        train = data["cpu"][MODEL]["float32"]["modes"]["train"]
        return {"matmul_gflops": data["matmul"]["float32"]["gflops_best"], "train_ratio": train["flops_ratio"],
                "train_images_per_s": train["images_per_s"], "source": "benchmarks/results.json",
                "date": data.get("date"), "machine": data.get("machine", {}).get("cpu")}
    except (OSError, KeyError, ValueError):
        return {"matmul_gflops": 338.9, "train_ratio": 0.71, "train_images_per_s": 1.42,
                "source": "RESULTS.md 2026-11-22 (constants)"}


# -------------------------------------------------------------------------------- counting from the model


def trainable_count(model):
    import numpy as np

    return int(sum(int(np.prod(v.shape)) for v in model.trainable_variables))


def sync_bn_layers(model):
    import keras

    return sum(1 for layer in model._flatten_layers(include_self=False, recursive=True)
               if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable)


def _find_layer(model, name):
    parts = name.split("/")
    layer = model.get_layer(parts[0])
    for part in parts[1:]:
        layer = next(sub for sub in layer._flatten_layers(include_self=False, recursive=True) if sub.name == part)
    return layer


def training_flops(model, count):
    """Forward + input-gradient + weight-gradient FLOPs per image of the products `count` lists.

    Each product layer's backward costs its forward FLOPs once for the input gradient (skipped while no trainable
    layer lies before it: the frozen stem's input is the image) and once for the weight gradient (only for trainable
    kernels). Layers are taken in the graph order of `count` (the frozen layers of these models form a prefix)."""
    forward = input_grad = weight_grad = 0
    seen_trainable = False
    for entry in count.layers:
        layer = _find_layer(model, entry.name)
        flops = 2 * entry.macs
        if flops:
            forward += flops
            if seen_trainable:
                input_grad += flops
            if layer.trainable and any("kernel" in w.path or "weight" in w.path for w in layer.trainable_weights):
                weight_grad += flops
        if layer.trainable_weights:
            seen_trainable = True
    return {"forward": forward, "input_grad": input_grad, "weight_grad": weight_grad,
            "factor": (forward + input_grad + weight_grad) / forward}


def recipe_model(size):
    """The recipe's model with random weights (same shapes and frozen layers as with the paper's weights)."""
    from hqdepth.models import build_model
    from hqdepth.training import recipes

    config = recipes.resolve_config(RECIPE, sets=[f"data.input_size=[{size[0]}, {size[1]}]"])
    options = dict(config["model"]["options"], backbone_weights=None)
    return config, build_model(config["model"]["name"], input_shape=(*size, 3), **options)


def count(size=SIZE):
    from hqdepth.flops import count_flops

    _, model = recipe_model(size)
    flops = count_flops(model)
    train = training_flops(model, flops)
    return {"size": list(size), "all_params": int(model.count_params()), "trainable_params": trainable_count(model),
            "sync_bn_layers": sync_bn_layers(model), "forward_gflops": flops.gflops,
            "train_gflops_exact": (train["forward"] + train["input_grad"] + train["weight_grad"]) / 1e9,
            "train_factor_exact": train["factor"]}


# ----------------------------------------------------------------------------------------- localhost run


def worker_main(args):
    """One member of the localhost cluster: choose a port, read TF_CONFIG, build the package's step, time it."""
    import tensorflow as tf  # noqa: F401  (the slow import before the port is chosen)

    probe = socket.socket()
    probe.bind(("localhost", 0))
    print(f"port {probe.getsockname()[1]}", flush=True)
    os.environ["TF_CONFIG"] = sys.stdin.readline().strip()
    probe.close()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any other TensorFlow op

    import keras
    import numpy as np

    from hqdepth.flops import count_flops
    from hqdepth.training.multiworker import DistributedStep
    from hqdepth.training.trainer import build_loss, build_optimizer, compile_metrics, synchronize_batchnorm

    size, batch = tuple(args.size), args.batch
    replicas = strategy.num_replicas_in_sync
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    keras.utils.set_random_seed(0)
    with strategy.scope():
        config, model = recipe_model(size)
        synced = synchronize_batchnorm(model) if (replicas > 1 or args.sync_bn) else 0
        loss = build_loss(config)
        metrics = compile_metrics(loss, config)
        model.compile(optimizer=build_optimizer(config, 1000, TOTAL_STEPS, model), loss=loss, jit_compile=False)
        model.optimizer.build(model.trainable_variables)
    flops = count_flops(model)
    rng = np.random.default_rng(strategy.cluster_resolver.task_id)
    x = rng.uniform(0, 255, (batch, *size, 3)).astype("float32")
    y = rng.uniform(0.5, 9.0, (batch, *size, 1)).astype("float32")
    data = strategy.distribute_datasets_from_function(
        lambda context: tf.data.Dataset.from_tensors((x, y)).repeat())  # per-replica batch: one worker, one replica
    iterator = iter(data)
    step = DistributedStep(strategy, model, loss, metrics, replicas)

    def one_step():
        return float(step.train(iterator)["loss"])

    # Count the replica-context all-reduces the traced step makes (forward batch-norm moments, their gradients,
    # the optimizer's gradient all-reduce): the model's 5 per synchronised batch norm + 1.
    from tensorflow.python.distribute import distribute_lib

    calls, original = {}, distribute_lib.ReplicaContext.all_reduce

    def counting(self, reduce_op, value, options=None):
        size = len(tf.nest.flatten(value))
        calls[size] = calls.get(size, 0) + 1
        return original(self, reduce_op, value, options)

    distribute_lib.ReplicaContext.all_reduce = counting
    try:
        start = time.perf_counter()
        one_step()
        first = time.perf_counter() - start
    finally:
        distribute_lib.ReplicaContext.all_reduce = original
    times, cpu = [], []
    for _ in range(args.steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        one_step()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)

    # The collectives alone: one pack of the trainable gradients (as the optimizer all-reduces them), and a
    # one-value all-reduce (the latency of one synchronised batch-norm moment).
    def reducer(elements):
        values = tf.ones((elements,), tf.float32)

        @tf.function
        def run():
            def replica():
                return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, values)

            return strategy.experimental_local_results(strategy.run(replica))[0][0]

        return run

    params = trainable_count(model)
    big, small = reducer(params), reducer(1)
    big(), small()
    big_times, big_cpu = [], []
    for _ in range(3):
        start, start_cpu = time.perf_counter(), time.process_time()
        big().numpy()
        big_times.append(time.perf_counter() - start)
        big_cpu.append(time.process_time() - start_cpu)
    small_times, small_cpu = [], []
    for _ in range(20):
        start, start_cpu = time.perf_counter(), time.process_time()
        small().numpy()
        small_times.append(time.perf_counter() - start)
        small_cpu.append(time.process_time() - start_cpu)

    matmul = None
    if args.matmul and strategy.cluster_resolver.task_id == 0:
        n = 4096
        a = tf.random.stateless_normal((n, n), seed=(1, 2))
        b = tf.random.stateless_normal((n, n), seed=(3, 4))
        product = tf.function(lambda a, b: tf.reduce_sum(tf.linalg.matmul(a, b)[:1, :1]))
        product(a, b).numpy()
        m_times = []
        for _ in range(3):
            start = time.perf_counter()
            product(a, b).numpy()
            m_times.append(time.perf_counter() - start)
        matmul = {"n": n, "seconds": m_times, "gflops_best": 2 * n ** 3 / min(m_times) / 1e9,
                  "gflops_median": 2 * n ** 3 / statistics.median(m_times) / 1e9}
    result = {"task": strategy.cluster_resolver.task_id, "replicas": replicas, "size": list(size), "batch": batch,
              "sync_bn_layers": synced, "all_reduce_calls_by_tensors": calls, "trainable_params": params,
              "forward_gflops": flops.gflops,
              "first_step_s": first, "seconds": times, "cpu_seconds": cpu, "median_s": statistics.median(times),
              "min_s": min(times), "allreduce_params_s": big_times, "allreduce_params_median_s":
              statistics.median(big_times), "allreduce_one_median_s": statistics.median(small_times),
              "allreduce_params_cpu_median_s": statistics.median(big_cpu),
              "allreduce_one_cpu_median_s": statistics.median(small_cpu),
              "matmul": matmul, "process_cpu_s": time.process_time() - cpu_start,
              "process_wall_s": time.perf_counter() - wall_start, "load_end": [round(v, 2) for v in os.getloadavg()]}
    _barrier(strategy)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


def _barrier(strategy):
    import tensorflow as tf

    @tf.function
    def run():
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)

    run()


def run_cluster(workers, size, batch, steps, sync_bn=False, matmul=False, timeout=900):
    """Start `workers` copies of this script as one localhost cluster; their RESULT dicts, task order."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "KERAS_BACKEND": "tensorflow",
           "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--size", str(size[0]), str(size[1]),
               "--batch", str(batch), "--steps", str(steps)] + ["--sync-bn"] * sync_bn + ["--matmul"] * matmul
    processes = [subprocess.Popen(command, env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, cwd=ROOT) for _ in range(workers)]
    deadline = time.time() + timeout
    try:
        ports = []
        for process in processes:
            line = ""
            while not line.startswith("port "):
                line = process.stdout.readline()
                if not line:
                    raise RuntimeError("a worker ended before choosing its port")
            ports.append(int(line.split()[1]))
        cluster = {"worker": [f"localhost:{port}" for port in ports]}
        for index, process in enumerate(processes):
            process.stdin.write(json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}) + "\n")
            process.stdin.close()
            process.stdin = None  # communicate() must not flush it
        outputs = [process.communicate(timeout=max(deadline - time.time(), 1))[0] for process in processes]
    finally:
        for process in processes:  # only the processes started here, by their objects
            if process.poll() is None:
                process.kill()
                process.wait(timeout=60)
    results = []
    for process, output in zip(processes, outputs):
        found = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
        if process.returncode != 0 or not found:
            raise RuntimeError(f"worker failed (exit {process.returncode}):\n" + "\n".join(output.splitlines()[-20:]))
        results.append(json.loads(found[-1][len(RESULT_PREFIX):]))
    return sorted(results, key=lambda r: r["task"])


def cpu_prediction(one, two, matmul_gflops, ratio, train_factor):
    """The model's CPU figures for the runs: compute from FLOPs / (matmul rate x ratio) (a priori) or from the
    1-worker step (calibrated); two workers on the same cores run twice the FLOPs on them, plus the measured
    collectives (gradient pack + 5 moments per synchronised batch norm, serial)."""
    flops_step = train_factor * one["forward_gflops"] * 1e9 * one["batch"]
    compute_a_priori = flops_step / (matmul_gflops * 1e9 * ratio)
    collectives = two["allreduce_params_median_s"] + 5 * two["sync_bn_layers"] * two["allreduce_one_median_s"]
    return {"compute_1_worker_s": compute_a_priori, "step_1_worker_s": compute_a_priori,
            "step_2_workers_a_priori_s": 2 * compute_a_priori + collectives,
            "step_2_workers_calibrated_s": 2 * one["median_s"] + collectives, "collectives_s": collectives,
            "allreduce_bandwidth_GBps": ring_bytes_per_s(4 * two["trainable_params"], 2,
                                                         two["allreduce_params_median_s"]) / 1e9}


def ring_bytes_per_s(nbytes, n, seconds):
    """The bus bandwidth B that makes the ring formula give `seconds` (latency neglected)."""
    return 2 * (n - 1) / n * nbytes / seconds


def machine():
    def lscpu_model():
        try:
            text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
            return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name"))
        except (OSError, StopIteration):
            return "unknown"

    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return {"cpu": lscpu_model(), "cores": len(os.sched_getaffinity(0)), "uptime": uptime,
            "load_average": [round(v, 2) for v in os.getloadavg()]}


def measure(args, train_factor):
    size, batch, steps = tuple(args.size), args.batch, args.steps
    start_machine = machine()
    print(f"machine: {start_machine['cpu']}, {start_machine['cores']} cores; {start_machine['uptime']}", flush=True)
    runs = {}
    plan = [("1_worker", 1, False, True), ("1_worker_sync_bn", 1, True, False), ("2_workers", 2, False, False)]
    for name, workers, sync_bn, matmul in plan:
        if args.runs and name not in args.runs:
            continue
        started = time.perf_counter()
        print(f"run {name}: {workers} worker(s), {size[0]}x{size[1]}, batch {batch} per worker, {steps} steps"
              f"{', synchronised batch norm forced' if sync_bn else ''} ...", flush=True)
        runs[name] = run_cluster(workers, size, batch, steps, sync_bn=sync_bn, matmul=matmul)
        chief = runs[name][0]
        print(f"  median step {chief['median_s']:.2f} s (min {chief['min_s']:.2f}), gradient all-reduce "
              f"{chief['allreduce_params_median_s'] * 1e3:.1f} ms, one-value all-reduce "
              f"{chief['allreduce_one_median_s'] * 1e6:.0f} us; {time.perf_counter() - started:.0f} s, "
              f"load {chief['load_end']}", flush=True)
    out = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "command": " ".join(["python"] + sys.argv),
           "size": list(size), "batch_per_worker": batch, "steps": steps, "machine_start": start_machine,
           "machine_end": machine(), "runs": runs}
    one, two = runs.get("1_worker", [None])[0], runs.get("2_workers", [None])[0]
    if one and two:
        matmul = one["matmul"]["gflops_median"] if one.get("matmul") else cpu_reference()["matmul_gflops"]
        ratio = cpu_reference()["train_ratio"]
        prediction = cpu_prediction(one, two, matmul, ratio, train_factor)
        prediction.update(matmul_gflops=matmul, train_ratio=ratio)
        synced = runs.get("1_worker_sync_bn", [None])[0]
        if synced:  # the same collectives on top of twice the 1-worker step with Keras' (synchronised) batch norm
            prediction["step_2_workers_calibrated_sync_bn_s"] = 2 * synced["median_s"] + prediction["collectives_s"]
        measured_two = max(r["median_s"] for r in runs["2_workers"])
        out["comparison"] = {
            "prediction": prediction,
            "measured_1_worker_s": one["median_s"], "measured_2_workers_s": measured_two,
            "measured_1_worker_sync_bn_s": runs.get("1_worker_sync_bn", [{}])[0].get("median_s"),
            "a_priori_over_measured_1": prediction["step_1_worker_s"] / one["median_s"],
            "a_priori_over_measured_2": prediction["step_2_workers_a_priori_s"] / measured_two,
            "calibrated_over_measured_2": prediction["step_2_workers_calibrated_s"] / measured_two,
            "calibrated_sync_bn_over_measured_2": (prediction.get("step_2_workers_calibrated_sync_bn_s") or math.nan)
            / measured_two,
            "throughput_2_over_1": (2 * batch / measured_two) / (batch / one["median_s"]),
            # process CPU seconds per step (all threads): what the step costs whatever else holds the cores
            "cpu_s_per_step": {name: statistics.median(r["cpu_seconds"]) for name, rs in runs.items() for r in rs[:1]},
            "train_gflop_per_cpu_s_1_worker": train_factor * one["forward_gflops"] * batch
            / statistics.median(one["cpu_seconds"]),
        }
        # In CPU-seconds per worker and step, which the load does not stretch: the 1-worker step (with synchronised
        # batch norm where measured) + the CPU time of the collectives measured alone.
        base = synced or one
        collectives_cpu = (two.get("allreduce_params_cpu_median_s", math.nan)
                           + 5 * two["sync_bn_layers"] * two.get("allreduce_one_cpu_median_s", math.nan))
        cpu_two = statistics.median(c for r in runs["2_workers"] for c in r["cpu_seconds"])
        out["comparison"]["cpu_seconds"] = {
            "one_worker_step": statistics.median(base["cpu_seconds"]), "collectives": collectives_cpu,
            "predicted_2_workers_per_worker": statistics.median(base["cpu_seconds"]) + collectives_cpu,
            "measured_2_workers_per_worker": cpu_two,
            "predicted_over_measured": (statistics.median(base["cpu_seconds"]) + collectives_cpu) / cpu_two,
        }
    return out


# ------------------------------------------------------------------------------------------------ output


def fmt_table(rows):
    """Markdown table of model rows (docs/scaling.md shows these)."""
    lines = ["| GPUs | machines x GPUs | global batch | link between machines | compute ms | gradient all-reduce ms | "
             "sync BN ms | step ms | efficiency | + overlap | local BN | overlap + local BN |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['gpus']} | {r['nodes']} x {r['gpus_per_node']} | {r['global_batch']} | {r['network']} | "
            f"{r['compute_ms']:.1f} | {r['allreduce_ms']:.1f} | {r['syncbn_ms']:.1f} | {r['step_ms']:.1f} | "
            f"{100 * r['efficiency']:.0f} % | {100 * r['efficiency_overlap']:.0f} % | "
            f"{100 * r['efficiency_no_syncbn']:.0f} % | {100 * r['efficiency_best']:.0f} % |")
    return "\n".join(lines)


VARIANTS = {"efficiency": "package today (no overlap, synchronised batch norm)",
            "efficiency_overlap": "gradient packs overlapping the backward",
            "efficiency_no_syncbn": "local batch norm",
            "efficiency_best": "overlap + local batch norm"}


def build_model_tables(forward_gflops, train_factor):
    rows = gpu_rows(forward_gflops, train_factor)
    sensitivity = {f"{u:.2f}": gpu_rows(forward_gflops, train_factor, utilisation=u) for u in UTILISATION_RANGE}
    return rows, sensitivity


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", action="store_true", help="rebuild the model to count parameters and FLOPs")
    parser.add_argument("--measure", action="store_true", help="train on localhost with 1 and 2 workers")
    parser.add_argument("--runs", nargs="*", help="subset of 1_worker, 1_worker_sync_bn, 2_workers")
    parser.add_argument("--size", type=int, nargs=2, default=[145, 193], help="input size of --measure")
    parser.add_argument("--batch", type=int, default=4, help="batch per worker of --measure")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per run of --measure")
    parser.add_argument("--out", default=str(OUT_JSON))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sync-bn", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--matmul", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args)

    out_path = Path(args.out)
    previous = json.loads(out_path.read_text()) if out_path.exists() else {}
    forward_gflops, forward_source = forward_gflops_from_results()
    counted = previous.get("counted")
    if args.count:
        counted = count()
        print(f"counted at {SIZE[0]}x{SIZE[1]}: {counted['trainable_params']:,} trainable parameters "
              f"({counted['all_params']:,} in all), {counted['sync_bn_layers']} trainable batch norms, forward "
              f"{counted['forward_gflops']:.2f} GFLOPs, training {counted['train_gflops_exact']:.2f} GFLOPs "
              f"= {counted['train_factor_exact']:.3f} x forward")
        if counted["trainable_params"] != TRAINABLE_PARAMS or counted["sync_bn_layers"] != SYNC_BN_LAYERS:
            print("WARNING: the constants of benchmarks/scaling.py differ from the model's count", file=sys.stderr)
    rows, sensitivity = build_model_tables(forward_gflops, TRAIN_FACTOR)
    nbytes = 4 * TRAINABLE_PARAMS
    print(f"{RECIPE}: {MODEL} at {SIZE[0]}x{SIZE[1]}, batch {BATCH} per replica; forward {forward_gflops:.2f} GFLOPs "
          f"per image ({forward_source}), training x{TRAIN_FACTOR:g}; gradients {TRAINABLE_PARAMS:,} float32 = "
          f"{nbytes / 1e6:.1f} MB")
    for gpu in GPUS:
        print(f"\n{gpu}: peak {GPUS[gpu]['peak_tflops']:g} TFLOP/s x utilisation {GPUS[gpu]['utilisation']:g} "
              f"(assumed); NVLink all-reduce {GPUS[gpu]['nvlink_GBps']:g} GB/s (assumed)")
        print(fmt_table([r for r in rows if r["gpu"] == gpu]))
    floors = {key: {f"{gpu} | {net}": value for (gpu, net), value in last_above(rows, key).items()}
              for key in VARIANTS}
    print(f"\nlargest GPU count at >= {EFFICIENCY_FLOOR:.0%} efficiency (smallest below it):")
    for key, label in VARIANTS.items():
        print(f"  {label}:")
        for group, v in floors[key].items():
            print(f"    {group}: {v['last_ok']} ({v['first_below']})")

    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/scaling.py"] + (argv if argv is not None else sys.argv[1:])),
        "recipe": RECIPE, "model": MODEL, "input_size": list(SIZE), "batch_per_replica": BATCH,
        "measured": {"forward_gflops_per_image": forward_gflops, "forward_source": forward_source,
                     "trainable_params": TRAINABLE_PARAMS, "all_params": ALL_PARAMS,
                     "sync_bn_layers": SYNC_BN_LAYERS, "gradient_bytes": nbytes, "cpu": cpu_reference()},
        "assumptions": {"train_factor": TRAIN_FACTOR, "gpus": GPUS, "networks_bytes_per_s": NETWORKS,
                        "latency": LATENCY, "pack_bytes_overlap": PACK_BYTES, "efficiency_floor": EFFICIENCY_FLOOR},
        "rows": rows, "sensitivity_utilisation": sensitivity,
        "largest_gpus_at_floor": floors, "variants": VARIANTS,
        "counted": counted,
        "localhost": previous.get("localhost"),
        "localhost_earlier": previous.get("localhost_earlier", []),
    }
    if args.measure:
        factor = (counted or {}).get("train_factor_exact") or TRAIN_FACTOR
        if previous.get("localhost"):  # keep every earlier measurement (the machine's load differs run to run)
            result["localhost_earlier"] = result["localhost_earlier"] + [previous["localhost"]]
        result["localhost"] = measure(args, TRAIN_FACTOR)
        result["localhost"]["train_factor_used"] = TRAIN_FACTOR
        result["localhost"]["train_factor_exact_289x385"] = factor
        comparison = result["localhost"].get("comparison")
        if comparison:
            p = comparison["prediction"]
            print(f"\nlocalhost: 1 worker measured {comparison['measured_1_worker_s']:.2f} s, model (matmul "
                  f"{p['matmul_gflops']:.0f} GFLOP/s x {p['train_ratio']:.2f}) {p['step_1_worker_s']:.2f} s; "
                  f"2 workers measured {comparison['measured_2_workers_s']:.2f} s, model a priori "
                  f"{p['step_2_workers_a_priori_s']:.2f} s, calibrated on 1 worker "
                  f"{p['step_2_workers_calibrated_s']:.2f} s, on 1 worker with synchronised batch norm "
                  f"{p.get('step_2_workers_calibrated_sync_bn_s', math.nan):.2f} s "
                  f"(collectives {p['collectives_s'] * 1e3:.0f} ms, "
                  f"all-reduce bus bandwidth {p['allreduce_bandwidth_GBps']:.2f} GB/s)")
            c = comparison["cpu_seconds"]
            print(f"CPU-seconds per worker and step: 2 workers measured {c['measured_2_workers_per_worker']:.2f}, "
                  f"model {c['predicted_2_workers_per_worker']:.2f} (1-worker step {c['one_worker_step']:.2f} + "
                  f"collectives {c['collectives']:.2f})")
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
