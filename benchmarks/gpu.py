"""GPU training throughput without TensorFlow: our HQMD baseline+ on Keras/JAX beside torchvision's DeepLabv3.

    KERAS_BACKEND=jax python benchmarks/gpu.py                        # 289x385, batch 8, writes benchmarks/results_gpu.json
    KERAS_BACKEND=jax python benchmarks/gpu.py --size 33x49 --batch 2 --steps 2 --warmup 1 --out /tmp/gpu.json  # smoke test

Needs JAX (with CUDA for a GPU), Keras >= 3.10, PyYAML, NumPy and this repository (`hqdepth` is imported from the
checkout; TensorFlow is not needed and is refused with `--block-tensorflow`). PyTorch + torchvision are needed for
the peer; without them that part is skipped with a message.

Measured, each in its own subprocess (clean device memory):
- ours, `--precision float32` and `mixed_float16`: the `hqmd_plus_full` training step as `hqdepth train` compiles it
  (hqmd_baseline_plus + HQMDLoss + Adam with its schedule + compiled metrics; `--metrics none` drops the metrics;
  random backbone weights, the recipe's frozen layers kept: the GPU machine has no network for the ImageNet file),
  `model.train_on_batch` on a fixed NumPy batch (random RGB 0..255, depth 0.5..9 m);
- peer: torchvision `deeplabv3_resnet50(num_classes=1, aux_loss=False)` (ResNet-50 at output stride 8, ASPP),
  channels_last, Adam, L1 loss on the bilinearly upsampled output, with AMP (`torch.autocast` float16 + GradScaler)
  and in float32, at the same size and batch.
Reported per run: images/s over `--steps` timed steps after `--warmup` (compilation), step time, peak device memory
(JAX: `memory_stats()["peak_bytes_in_use"]`; PyTorch: `torch.cuda.max_memory_allocated()`), the device, and for
the peer its forward FLOPs per image (`torch.utils.flop_counter`) beside our analytic count (`hqdepth.flops`).
Targets (issue 8): ours >= the peer's images/s; mixed_float16 >= 2x float32.

TF32 (Ampere and later): each float32 run records which products may use it (`tf32`). JAX's default matmul
precision lets XLA use TF32 for float32 convolutions and products; PyTorch's defaults allow it for cuDNN
convolutions and not for matrix products. Both are left at their defaults, so the float32 rows compare what each
framework does out of the box; `hqdepth train` in float32 turns TF32 off instead (`train.tf32`), as the papers'
GPUs computed, which is slower on such GPUs than these rows.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULT_PREFIX = "RESULT "


def block_tensorflow():
    """Make `import tensorflow` fail, as on a machine without it."""
    import importlib.abc

    class _Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ImportError(f"{name} is blocked (--block-tensorflow): this run must not need TensorFlow")
            return None

    sys.meta_path.insert(0, _Blocker())


def parse_size(text):
    return tuple(int(v) for v in text.lower().split("x"))


def timed_steps(step, warmup, steps, sync):
    warm = []
    for _ in range(warmup):
        start = time.perf_counter()
        step()
        sync()
        warm.append(time.perf_counter() - start)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return warm, times


def ours(args):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax
    import keras
    import numpy as np

    from cpu_step import build_optimizer, with_random_backbone  # the CPU benchmark's; it imports no TensorFlow
    from hqdepth.flops import count_flops
    from hqdepth.training import recipes, trainer

    size = parse_size(args.size)
    keras.config.set_dtype_policy(args.precision)
    keras.utils.set_random_seed(0)
    config = recipes.resolve_config("hqmd_plus_full")
    config["data"]["input_size"] = list(size)
    with_random_backbone(config)  # the GPU machine reaches no network for the recipe's ImageNet file
    model = trainer.build_model(config)
    loss = trainer.build_loss(config)
    metrics = trainer.compile_metrics(loss, config) if args.metrics == "recipe" else None
    optimizer = build_optimizer(trainer, config, model)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=True)
    optimizer.build(model.trainable_variables)  # one trace instead of two (variables exist before the first step)
    rng = np.random.default_rng(0)
    device = jax.devices()[0]
    # NumPy in (about 10 MB copied per step at 289x385 x 8): committed jax.device_put arrays made Keras' jitted
    # step compile a second time on the next call, as the state's placement changed after the first.
    x = rng.uniform(0, 255, (args.batch, *size, 3)).astype("float32")
    y = rng.uniform(0.5, 9.0, (args.batch, *size, 1)).astype("float32")
    logs = {}

    def step():
        logs.update(model.train_on_batch(x, y, return_dict=True))  # returns Python floats: synchronised

    warm, times = timed_steps(step, args.warmup, args.steps, lambda: None)
    stats = device.memory_stats() or {}
    median = statistics.median(times)
    return {"what": "ours", "backend": keras.backend.backend(), "keras": keras.__version__, "jax": jax.__version__,
            "device": str(device), "device_kind": device.device_kind, "precision": args.precision,
            "metrics": args.metrics, "size": list(size), "batch": args.batch,
            "forward_gflops_per_image": count_flops(model).gflops, "warmup_s": warm, "seconds": times,
            "median_s": median, "images_per_s": args.batch / median, "loss": float(logs.get("loss", float("nan"))),
            "peak_device_memory_mb": stats.get("peak_bytes_in_use", 0) / 2 ** 20 or None,
            "tf32": f"jax_default_matmul_precision={jax.config.jax_default_matmul_precision} (None: XLA's default, "
                    "TF32 for float32 on Ampere+)",
            "tensorflow_imported": "tensorflow" in sys.modules}


def peer(args):
    try:
        import torch
        import torchvision
    except ImportError as error:
        return {"what": "peer", "skipped": f"PyTorch/torchvision not installed ({error}); peer not measured"}
    from torchvision.models.segmentation import deeplabv3_resnet50

    size = parse_size(args.size)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.manual_seed(0)
    model = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=1, aux_loss=False)
    model = model.to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    amp = args.peer_precision == "amp" and cuda
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    x = (torch.rand(args.batch, 3, *size, device=device) * 255.0).contiguous(memory_format=torch.channels_last)
    y = torch.rand(args.batch, 1, *size, device=device) * 8.5 + 0.5

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            out = model(x / 255.0)["out"]
            loss = torch.nn.functional.l1_loss(out.float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    warm, times = timed_steps(step, args.warmup, args.steps, sync)
    peak = torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else None
    flops = None
    try:
        from torch.utils.flop_counter import FlopCounterMode

        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x[:1] / 255.0)
        flops = counter.get_total_flops() / 1e9
    except Exception as error:  # noqa: BLE001 - FLOPs are informative only
        flops = f"not counted: {error}"
    median = statistics.median(times)
    return {"what": "peer", "model": "torchvision deeplabv3_resnet50 (output stride 8), channels_last, Adam, L1",
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "device": torch.cuda.get_device_name() if cuda else "cpu", "precision": "amp_float16" if amp else "float32",
            "size": list(size), "batch": args.batch, "forward_gflops_per_image": flops, "warmup_s": warm,
            "seconds": times, "median_s": median, "images_per_s": args.batch / median, "peak_device_memory_mb": peak,
            "tf32": {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                     "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32}}


def run_child(what, args, extra):
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", what, "--size", args.size, "--batch",
               str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup), "--metrics", args.metrics,
               *extra] + (["--block-tensorflow"] if args.block_tensorflow else [])
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    print("$", " ".join(command[1:]), flush=True)
    process = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    for line in reversed(process.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
            break
    else:
        tail = "\n".join((process.stdout + process.stderr).strip().splitlines()[-20:])
        result = {"what": what, "error": f"exit status {process.returncode}: {tail}"}
    print("  ", {k: v for k, v in result.items() if k not in ("seconds", "warmup_s")}, flush=True)
    return result


def summarise(runs):
    by = {(r.get("what"), r.get("precision")): r for r in runs if "images_per_s" in r}
    f32, f16 = by.get(("ours", "float32")), by.get(("ours", "mixed_float16"))
    peer_amp = by.get(("peer", "amp_float16"))
    summary = {}
    if f32 and f16:
        summary["ours_mixed_float16_over_float32"] = f16["images_per_s"] / f32["images_per_s"]
    if f16 and peer_amp:
        summary["ours_mixed_float16_over_peer_amp"] = f16["images_per_s"] / peer_amp["images_per_s"]
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="289x385")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--metrics", default="recipe", choices=("recipe", "none"))
    parser.add_argument("--out", default=str(HERE / "results_gpu.json"))
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--block-tensorflow", action="store_true", help="fail if anything imports TensorFlow")
    parser.add_argument("--worker", choices=("ours", "peer"), help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--peer-precision", default="amp", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.block_tensorflow:
        block_tensorflow()
    sys.path.insert(0, str(ROOT))
    if args.worker:
        result = ours(args) if args.worker == "ours" else peer(args)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    runs = [run_child("ours", args, ["--precision", p]) for p in ("float32", "mixed_float16")]
    if not args.skip_peer:
        runs += [run_child("peer", args, ["--peer-precision", p]) for p in ("amp", "float32")]
    info = {"date": started, "command": "KERAS_BACKEND=jax python benchmarks/gpu.py " + " ".join(argv or sys.argv[1:]),
            "load_average": os.getloadavg()[0], "runs": runs, "summary": summarise(runs)}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = smi.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["nvidia_smi"] = None
    Path(args.out).write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info["summary"], indent=1))
    print(f"wrote {args.out}")
    return 0 if all("error" not in r for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
