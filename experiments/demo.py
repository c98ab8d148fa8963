"""End-to-end demo on the built-in synthetic scenes (no download, CPU friendly): what `make demo` runs.

Five stages, each through the package's public path:

1. precision: a few timed training steps of a small network in float32 and in mixed_bfloat16
   (`hqdepth.training.precision.probe_precision`); the faster one is used (bfloat16 needs a 10% gain).
   No CPU flag is read: AVX512-BF16 without AMX and AMX behave differently, the probe sees which.
2. training: the `fcn_ssim_mse` recipe (a ~0.5 M-parameter encoder-decoder with an SSIM + MSE loss) from
   random weights through the training engine (`hqdepth train`): run folder, TensorBoard, checkpoints,
   validation, results.json with the test evaluation. `--recipe hqmd_plus_full` trains HQMD baseline+
   (ResNet-50 DeepLabv3+) instead, 500 steps by default.
3. held-out evaluation: `--test-scenes` test scenes (disjoint seeds) beside the constant predictor
   (the training-set mean depth, estimated on the first 2000 training scenes).
4. export a SavedModel and predict every test photo with it via `hqdepth predict` (PNG files in, .npy out).
5. do the predictions show the objects? `hqdepth.data.synthetic.object_measures` on those .npy files: the
   median ratio of predicted to true depth contrast between each box/sphere and the band 2 pixels
   around it (1 = the object stands out as in the ground truth; a smooth layout gives ~0), beside the
   layout-only predictor (the exact empty room), and the RMSE on object pixels; and the boundary accuracy
   and completeness (iBims-1 depth boundary errors, `hqdepth.geometry`) of the predictions against the
   scenes' exact occlusion edges, beside the layout-only predictor and the ground truth itself. Then the
   picture to look at first, `OUT/summary.png` (photo | ground truth | prediction | absolute error of test
   scenes 0-3 on shared colour scales, the true edges drawn white over truth and prediction, and the
   loss/RMSE curves; `hqdepth.visualize.summary_figure`).

Why the small model: in the 10 minutes a 2-core CPU has, HQMD baseline+ from random weights gets 500
steps of 16 (0.65 s each); measured on this Xeon: test RMSE 0.836 vs 1.269 for the constant predictor
(34% lower) and object contrast ratio 0.09, i.e. smooth layouts without objects. The FCN takes a step in
a fraction of that time; 1500 steps of 16 gave 0.543 m (57% lower) and contrast ratio 0.28 (boxes and
spheres show as blobs) in less time. HQMD needs ImageNet weights and far more steps (the paper: 300k).

Measured (`make demo`, 2-core Intel Xeon with AMX, 2026-12-01 19:31 UTC, load 1-2): 371 s wall (the job had 1.71
of the 2 cores; 632 CPU-seconds), peak RSS 1.11 GB; probe chose mixed_bfloat16 (1.61x); held-out RMSE 0.543 m vs
1.269 m constant (57% lower); object contrast ratio 0.31 vs 0.00 for the layout-only predictor, 23% of 104 objects
at >= half their true contrast, RMSE on object pixels 0.61 m vs 1.79 m. Boxes and spheres show as soft blobs, not
sharp shapes. Boundary errors: accuracy 3.46 px, completeness 5.50 px, against 5.28 / 7.68 for the layout-only
predictor and 0.91 / 2.18 for Canny on the true depth (the limit of the measure at 64x96). Earlier runs: an hour
before, with Keras' Adam epsilon instead of PyTorch's, 419 s under load, RMSE 0.541 m, contrast 0.32, boundaries
3.30 / 5.30 px; 2026-11-29, before the FCN's convolutions into batch norm lost their bias, 455 s, RMSE 0.543 m,
contrast 0.29, boundaries 3.36 / 5.72 px.

Settings, and why: 64x96 input; batch 16, 2000 steps, Adam 2e-3 decaying linearly to 1e-5; every training
scene rendered fresh and seen once (steps x batch scenes; scenes seen ten times over-fit); no augmentation
(fresh scenes are cheaper than augmented ones); for HQMD also BN momentum 0.9 and no frozen stem;
validation and checkpoints twice per run, not every 150 steps (each checkpoint writes the model and Adam
state, seconds each for ResNet-50).

    python experiments/demo.py [--recipe fcn_ssim_mse] [--steps 2000] [--batch 16] [--lr 2e-3] [--size 64x96]
                               [--precision probe|float32|mixed_bfloat16] [--test-scenes 48] [--out demo_output]
"""

import argparse
import math
import os
import shutil
import time
from pathlib import Path

# The demo never touches the network: pretrained files are only read from the cache (hqdepth.weights.pretrained);
# its runs start from random weights (backbone_weights=none, nothing frozen).
os.environ["HQDEPTH_OFFLINE"] = "1"

import common

SUMMARY_SCENES = 4
DEFAULT_STEPS = {"fcn_ssim_mse": 2000}  # others: 500 (HQMD: 0.65 s per step here)
CONSTANT_SCENES = 2000


def validation_period(steps, count=2):
    """Steps between validations: about `steps / count` and a divisor of `steps`, so that every Keras epoch
    (one validation period) has the same length and the log counts "Epoch 1/n" ... "Epoch n/n"."""
    target = max(math.ceil(steps / count), 1)
    for period in range(target, max(target // 2, 1) - 1, -1):
        if steps % period == 0:
            return period
    return steps  # no divisor near: one validation, at the end


def demo_sets(args, size, precision):
    """The recipe overrides of the demo run (see the module doc for the reasons)."""
    period = validation_period(args.steps, args.validations)
    return common.quick_sets(size, args.steps, args.batch) + [
        f"train.precision={precision}", "data.cache=false", f"evaluation.test_samples={args.test_scenes}",
        "data.augmentation=none", f"optimizer.learning_rate={args.lr}", "schedule.name=polynomial",
        "schedule.options={end_learning_rate: 1.0e-5, power: 1.0}", f"train.validation_every_steps={period}",
        f"train.checkpoint_every_steps={period}", f"train.total_steps={args.steps}", *args.sets]


def training_curves(run, test_rmse, constant_rmse, loss_name="loss"):
    """`summary_figure` curve panels from the run's TensorBoard logs: loss, and RMSE with the test RMSE and the
    constant predictor's as lines. The training values are what Keras logs every `train.log_every_steps`: the
    running mean since the start of the epoch (one validation period), so each epoch's curve starts afresh."""
    import numpy as np

    from hqdepth.visualize import COLORS, read_scalars

    scalars = read_scalars(Path(run) / "logs")
    train, validation = scalars.get("train", {}), scalars.get("validation", {})
    empty = (np.zeros(0), np.zeros(0))

    def series(source, tag, label, colour, style="line"):
        steps, values = source.get(tag, empty)
        return (label, steps, values, colour, style)

    loss = {"title": f"training loss ({loss_name}, log scale)", "ylabel": "loss", "log_y": True,
            "series": [series(train, "loss", "training (running mean of each epoch)", COLORS["train"]),
                       series(validation, "loss", "validation", COLORS["validation"], "points")]}
    rmse = {"title": "RMSE (m)", "ylabel": "m",
            "series": [series(train, "rmse", "training (running mean of each epoch)", COLORS["train"]),
                       series(validation, "rmse", "validation (2 batches)", COLORS["validation"], "points")],
            "hlines": [("constant predictor, test", constant_rmse, COLORS["reference"]),
                       ("trained, test", test_rmse, COLORS["test"])]}
    return [loss, rmse]


def against_constant(gain):
    """'57% lower' (or, for a run worse than the constant predictor, '46% higher')."""
    return f"{100 * abs(gain):.0f}% {'lower' if gain >= 0 else 'higher'}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: 2000 for the FCN, 500 for "
                        "other recipes)")
    parser.add_argument("--batch", type=int, default=16, help="batch size")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate at the first step (-> 1e-5)")
    parser.add_argument("--size", default="64x96", help="input size HxW")
    parser.add_argument("--train-scenes", type=int, default=None, help="default: steps x batch (each seen once)")
    parser.add_argument("--precision", default="probe", choices=("probe", "auto", "float32", "mixed_bfloat16"),
                        help="probe (= auto): time float32 and mixed_bfloat16 steps here and take the faster")
    parser.add_argument("--test-scenes", type=int, default=48)
    parser.add_argument("--validations", type=int, default=2, help="validations (and checkpoints) per run")
    parser.add_argument("--recipe", default="fcn_ssim_mse", help="training recipe (e.g. hqmd_plus_full)")
    parser.add_argument("--set", action="append", default=[], dest="sets", help="extra recipe override, repeatable")
    parser.add_argument("--out", default="demo_output")
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = DEFAULT_STEPS.get(args.recipe, 500)

    start = time.time()
    import cv2
    import numpy as np

    from hqdepth.cli import main as hqdepth
    from hqdepth.data import open_source, synthetic
    from hqdepth.evaluation import evaluate_arrays
    from hqdepth.geometry import GeometryEvaluator, ground_truth_from_meta
    from hqdepth.training import recipes
    from hqdepth.training.precision import probe_precision
    from hqdepth.training.trainer import protocol_of
    from hqdepth import strict_json
    from hqdepth.visualize import summary_figure, write_png

    out = Path(args.out)
    size = common.parse_size(args.size)
    train_scenes = args.train_scenes or args.steps * args.batch
    data = common.synthetic_spec(train_scenes, size)
    run = out / "run"
    times = {"start-up": time.time() - start}

    print(f"[1/5] precision: {args.precision}")
    mark = time.time()
    probe = None
    if args.precision in ("probe", "auto"):
        probe = probe_precision(size=size, print_fn=lambda line: print("      " + line))
        precision = probe.choice
    else:
        precision = args.precision
    times["precision probe"] = time.time() - mark

    print(f"\n[2/5] train {args.recipe} on {data} ({args.steps} steps of {args.batch}, Adam {args.lr:g} -> 1e-5 "
          f"linearly, {precision}, validation every {validation_period(args.steps, args.validations)} steps)")
    mark = time.time()
    deeplab = recipes.resolve_config(args.recipe)["model"]["name"].startswith("hqmd")
    sets = demo_sets(args, size, precision)
    if not deeplab:
        sets = [s for s in sets if not s.startswith("model.options.")]
    results = common.train_recipe(args.recipe, data, run, sets)
    times["training (hqdepth train)"] = time.time() - mark
    if results["status"] != "finished" or None in results["test"]["metrics"].values():
        from hqdepth.errors import HQDepthError

        raise HQDepthError(f"the demo run did not train to finite test metrics (status: {results['status']}; "
                           f"{run / 'results.json'}); nothing to compare.")

    print(f"\n[3/5] held-out evaluation: {args.test_scenes} test scenes (disjoint seeds), beside the constant predictor")
    mark = time.time()
    train_source = open_source(data, split="train")
    depth_sum, depth_count = 0.0, 0
    for i in range(min(CONSTANT_SCENES, len(train_source))):
        depth = train_source[i].depth
        depth_sum += float(depth[depth > 0].sum())
        depth_count += int((depth > 0).sum())
    constant = depth_sum / depth_count
    test = open_source(data, split="test")
    samples = [test[i] for i in range(args.test_scenes)]
    gts = [s.depth[..., 0] for s in samples]
    config = recipes.resolve_config(run / "config.yaml")
    protocol = protocol_of(config)
    baseline = evaluate_arrays([np.full_like(g, constant) for g in gts], gts, protocol).metrics
    ours = results["test"]["metrics"]
    print(f"      {'':<30}{'rmse':>8}{'abs_rel':>9}{'d1':>8}")
    print(f"      {args.recipe + ' (trained)':<30}{ours['rmse']:>8.3f}{ours['abs_rel']:>9.3f}{ours['d1']:>8.3f}")
    print(f"      {f'constant {constant:.2f} m':<30}{baseline['rmse']:>8.3f}{baseline['abs_rel']:>9.3f}"
          f"{baseline['d1']:>8.3f}")
    gain = 1.0 - ours["rmse"] / baseline["rmse"]
    verdict = "meets" if gain >= 0.4 else "does NOT meet"
    print(f"      RMSE {against_constant(gain)} than the constant predictor's ({verdict} the 40% target)")
    times["held-out evaluation"] = time.time() - mark

    print(f"\n[4/5] export a SavedModel (uint8 images of any size -> metres) and predict the {args.test_scenes} test "
          "photos with it")
    mark = time.time()
    # The final model (the one results.json evaluated), not the best of two 2-batch validations.
    hqdepth(["export", str(run / "model.keras"), "--out", str(out / "saved_model"), "--overwrite"])
    photos = out / "photos"
    shutil.rmtree(photos, ignore_errors=True)
    photos.mkdir(parents=True)
    names = [f"test_{i:02d}" for i in range(args.test_scenes)]
    for name, sample in zip(names, samples):
        cv2.imwrite(str(photos / f"{name}.png"), cv2.cvtColor(sample.rgb, cv2.COLOR_RGB2BGR))
    predictions = out / "predictions"
    shutil.rmtree(predictions, ignore_errors=True)
    hqdepth(["predict", str(out / "saved_model"), str(photos), "--out", str(predictions), "--range", "0,10"])
    preds = [np.load(predictions / f"{name}_depth.npy") for name in names]
    times["export + predict"] = time.time() - mark

    print("\n[5/5] do the predictions show the objects? (boxes and spheres: contrast to the 2-pixel band around "
          "each, vs the layout-only predictor)")
    mark = time.time()
    views = [synthetic.object_views("test", i, size) for i in range(args.test_scenes)]
    objects = synthetic.object_measures(preds, gts, [v[0] for v in views], [v[1] for v in views])
    check = evaluate_arrays(preds, gts, protocol).metrics["rmse"]
    print(f"      {'':<34}{'contrast ratio':>15}{'objects seen':>14}{'RMSE on objects':>17}")
    print(f"      {'trained (from the SavedModel)':<34}{objects['contrast_ratio']:>15.2f}"
          f"{100 * objects['objects_seen']:>13.0f}%{objects['rmse_objects']:>15.3f} m")
    print(f"      {'layout only (exact empty room)':<34}{objects['contrast_ratio_layout']:>15.2f}"
          f"{100 * objects['objects_seen_layout']:>13.0f}%{objects['rmse_objects_layout']:>15.3f} m")
    print(f"      {objects['objects']} objects with a true contrast >= 0.2 m; contrast ratio = median of predicted / "
          "true (ring - object) depth step, 1 = as in the ground truth; seen = ratio >= 0.5")
    print(f"      (SavedModel predictions: RMSE {check:.3f} m over the {args.test_scenes} scenes, "
          f"the engine's test evaluation {ours['rmse']:.3f} m)")
    boundaries = {name: GeometryEvaluator() for name in ("trained", "layout", "truth")}
    for pred, gt, sample, view in zip(preds, gts, samples, views):
        truth = ground_truth_from_meta(sample.meta)
        for name, depth in (("trained", pred), ("layout", view[1]), ("truth", gt)):
            boundaries[name].add(depth, gt, **truth)
    boundary = {name: evaluator.result() for name, evaluator in boundaries.items()}
    print("      object boundaries (iBims-1 depth boundary errors against the exact occlusion edges; Canny edges of "
          "each depth map, px, lower is better):")
    print(f"      {'':<34}{'accuracy':>10}{'completeness':>14}{'RMSE':>9}")
    for name, label, rmse in (("trained", "trained (from the SavedModel)", check),
                              ("layout", "layout only (exact empty room)",
                               evaluate_arrays([v[1] for v in views], gts, protocol).metrics["rmse"]),
                              ("truth", "ground truth itself", 0.0)):
        print(f"      {label:<34}{boundary[name]['dbe_acc']:>10.2f}{boundary[name]['dbe_comp']:>14.2f}{rmse:>9.3f} m")
    shown = list(range(min(SUMMARY_SCENES, args.test_scenes)))
    title = (f"{args.recipe}, {args.steps} steps of {args.batch} at {size[0]}x{size[1]}, {precision}: test RMSE "
             f"{ours['rmse']:.3f} m vs {baseline['rmse']:.3f} m constant ({against_constant(gain)}); object contrast "
             f"ratio {objects['contrast_ratio']:.2f}; boundary accuracy {boundary['trained']['dbe_acc']:.1f} px")
    figure = summary_figure([samples[i].rgb for i in shown], [gts[i] for i in shown], [preds[i] for i in shown],
                            names=[f"test scene {i}" for i in shown], title=title,
                            edges=[samples[i].meta["edges"] for i in shown],
                            curves=training_curves(run, ours["rmse"], baseline["rmse"], config["loss"]["name"]))
    summary = write_png(out / "summary.png", figure)
    times["objects + summary"] = time.time() - mark

    total = time.time() - start
    report = {"seconds": round(total, 1), "stage_seconds": {k: round(v, 1) for k, v in times.items()},
              "precision": precision, "probe": probe.to_dict() if probe else None, "steps": args.steps,
              "batch": args.batch, "size": list(size), "learning_rate": args.lr, "train_scenes": train_scenes,
              "test_scenes": args.test_scenes, "test_rmse": ours["rmse"], "constant": constant,
              "constant_rmse": baseline["rmse"], "gain": gain, "objects": objects, "savedmodel_rmse": check,
              "boundaries": boundary}
    (out / "demo.json").write_text(strict_json.dumps(report, indent=1))
    print(f"\ndone in {total:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + ")")
    print(f"  LOOK FIRST      {summary}  (photo | truth | prediction | error for test scenes 0-"
          f"{len(shown) - 1}, and the curves)")
    print(f"  held-out RMSE   {ours['rmse']:.3f} m vs constant predictor {baseline['rmse']:.3f} m "
          f"({against_constant(gain)}); object contrast ratio {objects['contrast_ratio']:.2f} (layout only "
          f"{objects['contrast_ratio_layout']:.2f}); boundary accuracy {boundary['trained']['dbe_acc']:.2f} px, "
          f"completeness {boundary['trained']['dbe_comp']:.2f} px (ground truth {boundary['truth']['dbe_acc']:.2f} / "
          f"{boundary['truth']['dbe_comp']:.2f})")
    print(f"  run folder      {run}  (config.yaml, metrics.csv, checkpoints/, results.json)")
    print(f"  TensorBoard     tensorboard --logdir {run / 'logs'}")
    print(f"  SavedModel      {out / 'saved_model'}")
    print(f"  predictions     {predictions}  (colour PNG, 16-bit mm PNG, .npy metres); numbers in {out / 'demo.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(common.run(main))
