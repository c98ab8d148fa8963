"""The cost of `train.deterministic` (TensorFlow op determinism + ordered input) on a training step.

    .venv/bin/python benchmarks/deterministic.py [--steps 20] [--repeats 3] [--out benchmarks/deterministic.md]

Each mode runs in its own process (op determinism is global to a process and cannot be turned off):
fcn_ssim_mse at 64x96, batch 16, on `synthetic:64?size=64x96`, the input pipeline and model built as
`hqdepth train` builds them (trainer.load_split / build_model / build_optimizer). After one warm-up
`fit` (tracing), `repeats` timed `fit` calls of `steps` steps each; the median time per step is
reported. The machine's CPU (lscpu) and load average are written beside the numbers: on a shared
machine the ratio is what to read, not the absolute times.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RECIPE, DATA = "fcn_ssim_mse", "synthetic:64?size=64x96"
SETS = ["data.input_size=[64, 96]", "evaluation.protocol=custom"]


def measure(deterministic, steps, repeats):
    import keras

    from hqdepth.training import recipes, trainer

    config = recipes.resolve_config(RECIPE, sets=SETS + [f"train.deterministic={str(deterministic).lower()}"])
    keras.utils.set_random_seed(0)
    trainer.set_determinism(config)
    plan = trainer.Plan(config, trainer.split_length(DATA, "train"), 1)
    dataset = trainer.load_split(config, DATA, "train", plan.global_batch, train=True)
    model = trainer.build_model(config)
    loss = trainer.build_loss(config)
    model.compile(optimizer=trainer.build_optimizer(config, plan.steps_per_epoch, plan.total_steps, model), loss=loss)
    model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)  # trace
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
        times.append((time.perf_counter() - start) / steps)
    return {"deterministic": deterministic, "step_s": statistics.median(times), "all_step_s": times,
            "global_batch": plan.global_batch}


def cpu_name():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).with_name("deterministic.md")))
    parser.add_argument("--child", choices=("on", "off"))
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(measure(args.child == "on", args.steps, args.repeats)))
        return
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    results = {}
    for mode in ("off", "on", "off", "on"):  # alternated, so a change in the machine's load hits both
        done = subprocess.run([sys.executable, __file__, "--child", mode, "--steps", str(args.steps), "--repeats",
                               str(args.repeats)], capture_output=True, text=True, env=env, check=True)
        line = next(l for l in done.stdout.splitlines() if l.startswith("RESULT "))
        results.setdefault(mode, []).append(json.loads(line[7:])["step_s"])
    off, on = min(results["off"]), min(results["on"])
    overlap = max(results["off"]) >= min(results["on"]) and max(results["on"]) >= min(results["off"])
    noise = (" - the per-process times of the two modes overlap: on this machine the difference is within "
             "its noise" if overlap else "")
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    text = f"""# Cost of `train.deterministic`

`benchmarks/deterministic.py` ({RECIPE} at 64x96, global batch 16, {DATA}; {args.steps} steps x {args.repeats}
timed fit calls per process, two processes per mode alternated, best process median shown).

- CPU: {cpu_name()} ({os.cpu_count()} logical CPUs visible), load average at the end {load[0]:.1f}
- TensorFlow op determinism off: {off * 1e3:.0f} ms/step (per process: {', '.join(f'{v * 1e3:.0f}' for v in results['off'])})
- TensorFlow op determinism on:  {on * 1e3:.0f} ms/step (per process: {', '.join(f'{v * 1e3:.0f}' for v in results['on'])})
- cost: x{on / off:.2f} per step (best of each mode){noise}

Both modes read the input in order (a seeded run does already); the difference is TensorFlow's op
determinism (`tf.config.experimental.enable_op_determinism`): some kernels take a deterministic path
and tf.data keeps its order. Not measured here: a GPU, where deterministic cuDNN algorithms are
expected to cost more; run this script there.
"""
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
