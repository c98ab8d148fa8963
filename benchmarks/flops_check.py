"""Forward FLOPs per image of registered models: the analytic count (hqdepth.flops) beside TensorFlow's profiler.

    python benchmarks/flops_check.py                          # every registered model at its paper input size
    python benchmarks/flops_check.py --models hqmd_baseline_plus --no-profiler

Per model (built with its training recipe's options, as `cpu_step.py` times it; random weights, float32,
batch 1): `count_flops(model)` (MACs by layer type and by part, element-wise
FLOPs) and `profiler_flops(model)` (tf.compat.v1.profiler, float_operation, on the frozen inference graph). The
profiler has no FLOP statistics for Einsum, which our attention layers use, so the ratio is given both for the
totals and for the comparable part (convolutions and matrix products outside those layers). BilinearResize's two
products are BatchMatMuls the profiler counts as dense products while the analytic count takes the interpolation's
7 FLOPs per output element, so resize-heavy models compare below 1 (MRPAN 0.98, HQMD 0.998).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit  # noqa: E402
from cpu_step import MODEL_RECIPES, with_random_backbone  # noqa: E402


def build_as_recipe(entry):
    """`entry`'s model at its paper input size with its recipe's options (MRPAN's recipe: SENet-154, the builder's
    default: ResNet-50), so that this table counts the network whose steps the CPU stage times; the builder's
    defaults for a model without a recipe. No weights are loaded."""
    from hqdepth.models import build_model
    from hqdepth.training import recipes
    from hqdepth.weights import pretrained

    input_shape = (*entry.input_size, 3)
    recipe = MODEL_RECIPES.get(entry.name)
    if recipe is None:
        return entry.builder(input_shape=input_shape)
    config = with_random_backbone(recipes.resolve_config(recipe))
    return build_model(entry.name, input_shape=input_shape, **pretrained.model_options(config))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated names (default: all registered)")
    parser.add_argument("--no-profiler", action="store_true", help="analytic count only")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    import keras

    from hqdepth.flops import count_flops, default_parts, profiler_flops
    from hqdepth.models import list_models

    entries = list_models()
    if args.models:
        wanted = [n.strip() for n in args.models.split(",") if n.strip()]
        entries = [e for e in entries if e.name in wanted]
    results = {}
    for entry in entries:
        keras.backend.clear_session()
        model = build_as_recipe(entry)
        start = time.perf_counter()
        count = count_flops(model)
        row = {"input_size": list(entry.input_size), "recipe": MODEL_RECIPES.get(entry.name),
               "params": int(model.count_params()), **count.as_dict(),
               "macs_by_part": count.by_part(default_parts()), "analytic_s": time.perf_counter() - start}
        if not args.no_profiler:
            start = time.perf_counter()
            profile = profiler_flops(model)
            row.update(profiler_total_flops=profile["total"], profiler_matmul_flops=profile["matmul_flops"],
                       profiler_by_op=profile["by_op"], profiler_s=time.perf_counter() - start,
                       ratio_total=row["total_flops"] / profile["total"],
                       ratio_comparable=row["profiler_comparable_flops"] / profile["matmul_flops"])
        print(f"{entry.name:<20} {'x'.join(map(str, entry.input_size)):>8}  {count.gflops:8.2f} GFLOPs "
              f"(2 x {count.macs / 1e9:.2f} G MACs)" + ("" if args.no_profiler else
              f"  profiler {profile['total'] / 1e9:8.2f} G total, {profile['matmul_flops'] / 1e9:8.2f} G conv/matmul;"
              f" ratio comparable {row['ratio_comparable']:.4f}"), flush=True)
        results[entry.name] = row
    emit({"models": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
