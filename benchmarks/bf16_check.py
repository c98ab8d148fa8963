"""Does mixed_bfloat16 train like float32? The same short run in both precisions, loss curves side by side (issue 17).

    python benchmarks/bf16_check.py                          # hqmd_plus_full, 96x128, batch 8, 60 steps
    python benchmarks/bf16_check.py --steps 8 --size 33x49   # a smoke run
    python benchmarks/bf16_check.py --follow                 # each bfloat16 step from the float32 weights

One model of the recipe (random weights; speed and this comparison do not need ImageNet ones; the recipe's frozen
layers kept) is built in float32; a second is built under `mixed_bfloat16` and given the same weights. Both train with
the recipe's loss and optimizer (as `hqdepth train` compiles them) on the same synthetic scenes in the same order, one
`train_on_batch` per step, the learning rate constant at `--lr` (the recipe's 1e-4 barely moves a random network in 60 steps).
Reported: both loss curves, the per-step relative difference |bf16 - f32| / f32 (median, largest) and the same for the
curves smoothed over `--window` steps, the relative change of the loss over the run (so the difference can be set
beside the learning signal), and both final models' abs_rel on a held-out batch of the same scenes.
With `--follow`, each bfloat16 step starts from the float32 run's weights (copied before the step): the per-step
difference is then one step's bfloat16 rounding, while free-running curves also drift apart chaotically (a random
network in batch-norm training mode: 8 steps at 33x49 measured 1-19 % apart, 0.1-1.5 % when following); the size of
each bfloat16 update over the float32 one is reported too (updates lost to rounding would make it small).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit  # noqa: E402


def curves(args):
    """({precision: [loss per step]}, {precision: held-out abs_rel}, the config, [per step: the size of the bfloat16
    update over the float32 one, both from the same weights] when `args.follow`, else [])."""
    import keras
    import numpy as np

    from cpu_step import build_optimizer, parse_size, with_random_backbone
    from hqdepth.data import open_source
    from hqdepth.training import recipes, trainer

    size = parse_size(args.size)
    config = recipes.resolve_config(args.recipe, sets=[f"data.input_size=[{size[0]}, {size[1]}]",
                                                       f"optimizer.learning_rate={args.lr}", "schedule.name=constant"])
    with_random_backbone(config)
    source = open_source(f"synthetic:{args.steps * args.batch + args.batch}?size={size[0]}x{size[1]}", split="train")
    samples = [source[i] for i in range(len(source))]
    images = np.stack([s.rgb for s in samples]).astype("float32")
    depths = np.stack([np.reshape(s.depth, (*size, 1)) for s in samples]).astype("float32")
    held_out, truth = images[-args.batch:], depths[-args.batch:]
    models, weights = {}, None
    try:
        for precision in ("float32", "mixed_bfloat16"):
            keras.config.set_dtype_policy(precision)
            keras.utils.set_random_seed(args.seed)
            model = trainer.build_model(config)
            if weights is None:
                weights = model.get_weights()
            else:
                model.set_weights(weights)
            optimizer = build_optimizer(trainer, config, model)
            model.compile(optimizer=optimizer, loss=trainer.build_loss(config))
            optimizer.build(model.trainable_variables)
            models[precision] = model
    finally:
        keras.config.set_dtype_policy("float32")
    losses, update_ratios = {precision: [] for precision in models}, []
    for step in range(args.steps):
        batch = slice(step * args.batch, (step + 1) * args.batch)
        if args.follow:  # the bfloat16 step starts from the float32 run's weights
            models["mixed_bfloat16"].set_weights(models["float32"].get_weights())
            before = _trainable(models["float32"])
        for precision, model in models.items():
            logs = model.train_on_batch(images[batch], depths[batch], return_dict=True)
            losses[precision].append(float(logs["loss"]))
        if args.follow:
            f32, bf16 = (np.linalg.norm(_trainable(models[p]) - before) for p in ("float32", "mixed_bfloat16"))
            update_ratios.append(float(bf16 / f32))
    predictions = {p: np.asarray(model.predict(held_out, verbose=0), "float32") for p, model in models.items()}
    valid = truth > 1e-3
    abs_rel = {p: float(np.mean(np.abs(d[valid] - truth[valid]) / truth[valid])) for p, d in predictions.items()}
    return losses, abs_rel, config, update_ratios


def _trainable(model):
    import numpy as np

    return np.concatenate([np.asarray(v, np.float64).ravel() for v in model.trainable_variables])


def summarise(losses, window):
    import numpy as np

    f32, bf16 = (np.asarray(losses[p], np.float64) for p in ("float32", "mixed_bfloat16"))
    relative = np.abs(bf16 - f32) / np.abs(f32)
    kernel = np.ones(window) / window
    smooth = [np.convolve(c, kernel, mode="valid") for c in (f32, bf16)]
    smooth_relative = np.abs(smooth[1] - smooth[0]) / np.abs(smooth[0])
    return {"relative_median": float(np.median(relative)), "relative_max": float(relative.max()),
            "smoothed_relative_median": float(np.median(smooth_relative)),
            "smoothed_relative_max": float(smooth_relative.max()),
            "float32_change": float((smooth[0][-1] - smooth[0][0]) / smooth[0][0]),
            "bfloat16_change": float((smooth[1][-1] - smooth[1][0]) / smooth[1][0])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="hqmd_plus_full")
    parser.add_argument("--size", default="96x128")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--window", type=int, default=10,
                        help="steps averaged for the smoothed curves (at most half the run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--follow", action="store_true",
                        help="start each bfloat16 step from the float32 run's weights: the difference is then one "
                             "step's rounding, not the two runs' paths drifting apart")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    losses, abs_rel, _, update_ratios = curves(args)
    window = min(args.window, max(1, args.steps // 2))  # at least two smoothed points
    summary = summarise(losses, window)
    if update_ratios:
        summary["update_size_ratio"] = update_ratios
    print(f"loss per step, float32:        {' '.join(f'{v:.3f}' for v in losses['float32'])}")
    print(f"loss per step, mixed_bfloat16: {' '.join(f'{v:.3f}' for v in losses['mixed_bfloat16'])}")
    print(f"|bf16 - f32| / f32 per step: median {summary['relative_median']:.4f}, max {summary['relative_max']:.4f}; "
          f"over {window}-step means: median {summary['smoothed_relative_median']:.4f}, max "
          f"{summary['smoothed_relative_max']:.4f}; loss change over the run: float32 {summary['float32_change']:+.3f}, "
          f"bfloat16 {summary['bfloat16_change']:+.3f}; held-out batch abs_rel: float32 {abs_rel['float32']:.4f}, "
          f"bfloat16 {abs_rel['mixed_bfloat16']:.4f}", flush=True)
    emit({"recipe": args.recipe, "size": args.size, "batch": args.batch, "steps": args.steps, "lr": args.lr,
          "window": window, "losses": losses, **summary, "held_out_abs_rel": abs_rel})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
