"""How far does `hqdepth export --precision bfloat16` move the depth from the float32 export? (issue 17, item 3)

    python benchmarks/bf16_export_accuracy.py                       # hqmd_plus_full, 96x128, 200 steps, 48 scenes
    python benchmarks/bf16_export_accuracy.py --steps 20 --scenes 8   # a smoke run
    python benchmarks/bf16_export_accuracy.py --out benchmarks/bf16_export_accuracy.json   # the recorded figures

A random-weight network says little here (its depths hang on a few saturated logits), so the recipe's network is
first trained briefly in float32 on synthetic scenes (random backbone, the recipe's frozen layers kept, constant
learning rate `--lr`, as `bf16_check.py` does; batch-norm momentum `--bn-momentum` 0.9, as `make demo` trains HQMD).
The trained model is exported twice through `hqdepth.export.export`, float32 and `precision="bfloat16"`, both
SavedModels are loaded back and called (`serve`) on `--scenes` held-out test scenes (the synthetic test split's
seeds, disjoint from training). Reported: |bfloat16 - float32| over every pixel
(mean, 99th percentile, largest, in metres) and each export's abs_rel and RMSE against the scenes' true depth.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, machine, now  # noqa: E402


def train(args, size):
    """The recipe's model trained `args.steps` steps in float32 on synthetic training scenes."""
    import keras
    import numpy as np

    from cpu_step import build_optimizer, with_random_backbone
    from hqdepth.data import open_source
    from hqdepth.training import recipes, trainer

    # The recipe's batch-norm momentum (0.9997 for HQMD) would leave the moving statistics, which the exports use,
    # at their initial values after a few hundred steps; `make demo` trains HQMD with 0.9 for the same reason.
    config = recipes.resolve_config(args.recipe, sets=[f"data.input_size=[{size[0]}, {size[1]}]",
                                                       f"optimizer.learning_rate={args.lr}", "schedule.name=constant",
                                                       f"model.options.bn_momentum={args.bn_momentum}"])
    with_random_backbone(config)
    keras.utils.set_random_seed(args.seed)
    model = trainer.build_model(config)
    model.compile(optimizer=build_optimizer(trainer, config, model), loss=trainer.build_loss(config))
    source = open_source(f"synthetic:{args.steps * args.batch}?size={size[0]}x{size[1]}", split="train")
    started, losses = time.perf_counter(), []
    for step in range(args.steps):
        samples = [source[i] for i in range(step * args.batch, (step + 1) * args.batch)]
        images = np.stack([s.rgb for s in samples]).astype("float32")
        depths = np.stack([np.reshape(s.depth, (*size, 1)) for s in samples]).astype("float32")
        losses.append(float(model.train_on_batch(images, depths, return_dict=True)["loss"]))
        if (step + 1) % max(1, args.steps // 5) == 0:
            print(f"step {step + 1}/{args.steps}: loss {losses[-1]:.4f} ({time.perf_counter() - started:.0f} s)",
                  flush=True)
    return model, config, losses


def compare(args, model, size, workdir):
    """{"difference_m": ..., "float32": {...}, "bfloat16": {...}} on the held-out scenes."""
    import numpy as np
    import tensorflow as tf

    from hqdepth.data import open_source
    from hqdepth.export import export
    from hqdepth.predict import DepthModel

    source = open_source(f"synthetic:{args.scenes}?size={size[0]}x{size[1]}", split="test")
    samples = [source[i] for i in range(len(source))]
    images = np.stack([s.rgb for s in samples]).astype("float32")
    truth = np.stack([np.reshape(s.depth, size) for s in samples]).astype("float64")
    wrapped = DepthModel.from_keras(model)
    depths = {}
    for precision in ("float32", "bfloat16"):
        path = workdir / precision
        export(wrapped, path, format="saved_model", precision=precision, overwrite=True)
        serve = tf.saved_model.load(str(path)).signatures["serve"]
        depths[precision] = np.concatenate([serve(images=tf.constant(images[i:i + 8]))["depth"].numpy()[..., 0]
                                            for i in range(0, len(images), 8)]).astype("float64")
    difference = np.abs(depths["bfloat16"] - depths["float32"])
    valid = truth > 1e-3
    result = {"difference_m": {"mean": float(difference.mean()), "p99": float(np.percentile(difference, 99)),
                               "max": float(difference.max()), "pixels": int(difference.size)}}
    for precision, depth in depths.items():
        error = depth[valid] - truth[valid]
        result[precision] = {"abs_rel": float(np.mean(np.abs(error) / truth[valid])),
                             "rmse_m": float(np.sqrt(np.mean(error ** 2)))}
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="hqmd_plus_full")
    parser.add_argument("--size", default="96x128")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--scenes", type=int, default=48, help="held-out test scenes")
    parser.add_argument("--bn-momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the result (with the machine) to this JSON file")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    from cpu_step import parse_size

    size = parse_size(args.size)
    model, config, losses = train(args, size)
    workdir = Path(tempfile.mkdtemp(prefix="hqdepth-bf16-export-"))
    try:
        result = compare(args, model, size, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    diff = result["difference_m"]
    print(f"|bfloat16 - float32| over {diff['pixels']} pixels: mean {1000 * diff['mean']:.1f} mm, 99th percentile "
          f"{1000 * diff['p99']:.1f} mm, largest {diff['max']:.3f} m; abs_rel float32 {result['float32']['abs_rel']:.4f}"
          f", bfloat16 {result['bfloat16']['abs_rel']:.4f}; RMSE {result['float32']['rmse_m']:.3f} / "
          f"{result['bfloat16']['rmse_m']:.3f} m", flush=True)
    row = {"date": now(), "command": " ".join(["python benchmarks/bf16_export_accuracy.py", *(argv or sys.argv[1:])]),
           "machine": machine(), "recipe": args.recipe, "model": config["model"]["name"], "size": list(size),
           "batch": args.batch, "steps": args.steps, "lr": args.lr, "bn_momentum": args.bn_momentum,
           "scenes": args.scenes, "loss_first_last": [losses[0], losses[-1]], **result}
    if args.out:
        Path(args.out).write_text(json.dumps(row, indent=1) + "\n")
    emit(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
