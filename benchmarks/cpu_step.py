"""One CPU measurement in this process: a model's training step or forward pass, or a dense matmul.

    python benchmarks/cpu_step.py train --model hqmd_baseline_plus --batch 8 --steps 3
    python benchmarks/cpu_step.py infer --model bts --precision mixed_bfloat16
    python benchmarks/cpu_step.py matmul --dtype bfloat16 --n 4096
    python benchmarks/cpu_step.py grad --model hqmd_baseline_plus --upto aspp     # encoder + ASPP only
    python benchmarks/cpu_step.py train --variant keras_bn,keras_adam            # without the fused kernels

Modes
- `train`: the training step as `hqdepth train` compiles it for the model's recipe (model, loss, optimizer with
  its schedule, compiled metrics; `--loss mse` / `--metrics none` swap in a plain MSE loss / drop the metrics),
  timed as `model.train_on_batch` on a fixed in-memory batch (random RGB 0..255, depth 0.5..9 m).
- `infer`: `model(x, training=False)` in a `tf.function` (the forward pass of `predict` without its loop).
- `grad`: forward (training=True) + backward to every trainable weight, no optimizer update, loss = mean(y^2)
  of the model's output or of layer `--upto`'s output (a prefix of the network, to split the step by part).
- `forward`: `model(x, training=True)` only.
- `infer+train`: both on the same model in this process, inference first (its peak RSS is reported before the
  training step raises it).
- `matmul`: best-of-`--repeats` `tf.linalg.matmul` of two n x n matrices in `--dtype`, 2 n^3 FLOPs per call.

`--warmup` untimed calls (the first one traces and optimises the graph), then `--steps` timed calls; reported:
every call's seconds, the median, images/s = batch / median, the analytic forward FLOPs per image of the timed
(sub)model (`hqdepth.flops`), the peak RSS of this process (`ru_maxrss`) after set-up and at the end, and the load
average. The last line is `RESULT {json}` (benchmarks/common.py). The package is measured as it is (fused batch
norm and Adam); `--variant` switches those kernels back to Keras' code (benchmarks/variants.py).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import current_rss_mb, emit, peak_rss_mb, reset_peak_rss  # noqa: E402

# The recipe each registered model is trained with (loss, optimizer, schedule, metrics).
MODEL_RECIPES = {
    "hqmd_baseline_plus": "hqmd_plus_full",
    "hqmd_baseline": "hqmd_baseline_ldepth",
    "bts": "bts_nyu",
    "fcn_autoencoder": "fcn_ssim_mse",
    "resnet50_transposed": "resnet50_transposed",
    "mrpan": "mrpan_nyu",
}


def parse_size(text):
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def configure_threads(args):
    import tensorflow as tf

    if args.intra is not None:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra)
    if args.inter is not None:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter)


def time_calls(fn, warmup, steps, probe=None):
    """(warm-up wall seconds, timed wall seconds, timed process CPU seconds, probe values) of `fn` calls.

    `probe` (optional, zero-argument): called before every timed call and once after the last, untimed: reference
    measurements interleaved with the timed calls (steps + 1 values).
    CPU seconds (all threads of this process, `time.process_time`) do not grow while other jobs hold the cores, so
    FLOPs per CPU-second compare runs taken under different load (they do include thread pools spinning)."""
    warm = []
    for _ in range(warmup):
        start = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - start)
    times, cpu, probed = [], [], []
    for _ in range(steps):
        if probe:
            probed.append(probe())
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    if probe:
        probed.append(probe())
    return warm, times, cpu, probed


def matmul_call(dtype, n, seeds):
    """A zero-argument callable running one n x n `tf.linalg.matmul` in `dtype` (synchronised: the result's corner
    converted to NumPy); the two matrices are drawn from `seeds`."""
    import tensorflow as tf

    a, b = (tf.cast(tf.random.stateless_normal((n, n), seed=seed), dtype) for seed in seeds)
    product = tf.function(lambda a, b: tf.reduce_sum(tf.cast(tf.linalg.matmul(a, b)[:1, :1], tf.float32)))
    return lambda: product(a, b).numpy()


def matmul(args):
    n = args.n
    warm, times, cpu, _ = time_calls(matmul_call(args.dtype, n, ((1, 2), (3, 4))), args.warmup, args.steps)
    flops = 2 * n ** 3
    return {"mode": "matmul", "dtype": args.dtype, "n": n, "seconds": times, "cpu_seconds": cpu, "warmup_s": warm,
            "gflops_best": flops / min(times) / 1e9, "gflops_median": flops / statistics.median(times) / 1e9,
            "gflops_per_cpu_s": flops / min(cpu) / 1e9}


def matmul_probe(dtype, n=4096):
    """A zero-argument callable: the GFLOP/s of one n x n matmul in `dtype` timed now, in this process (traced and
    warmed up here). Timed between a model's steps, it gives the rate available to them under the same load."""
    call = matmul_call(dtype, n, ((5, 6), (7, 8)))
    call()

    def probe():
        start = time.perf_counter()
        call()
        return 2 * n ** 3 / (time.perf_counter() - start) / 1e9

    return probe


def with_random_backbone(config):
    """`config` with a pretrained backbone replaced by random weights (speed does not depend on them, and nothing is
    downloaded); the recipe's frozen layers are kept, so the step trains what the recipe trains."""
    from hqdepth.weights import pretrained

    if pretrained.has_backbone(config["model"]["name"], config["model"]["options"]):
        config["model"]["options"]["backbone_weights"] = pretrained.NONE
    return config


def build(args):
    """(model, timed model, config, forward FLOPs per image of the timed model)."""
    import keras

    import variants
    from hqdepth.flops import count_flops
    from hqdepth.training import recipes, trainer

    sets = variants.apply(args.variant)  # before the model is built and traced
    keras.config.set_dtype_policy(args.precision)
    keras.utils.set_random_seed(0)
    recipe = args.recipe or MODEL_RECIPES.get(args.model)
    if recipe is None:
        raise SystemExit(f"no recipe known for {args.model}; pass --recipe")
    config = recipes.resolve_config(recipe, sets=sets)
    if args.model and config["model"]["name"] != args.model:
        config["model"] = {"name": args.model, "options": {}}
    size = parse_size(args.size) if args.size else tuple(config["data"]["input_size"])
    config["data"]["input_size"] = list(size)
    model = trainer.build_model(with_random_backbone(config))
    timed = model
    if args.upto:
        timed = keras.Model(model.inputs, model.get_layer(args.upto).output, name=f"{model.name}_upto_{args.upto}")
    count = count_flops(timed, input_size=size)  # a BTS recipe's model takes any size
    return model, timed, config, size, count


def build_optimizer(trainer, config, model):
    """The recipe's optimizer as `hqdepth train` builds it (1000 steps per epoch, 10000 in all for its schedule)."""
    import inspect

    extra = {"model": model} if "model" in inspect.signature(trainer.build_optimizer).parameters else {}
    return trainer.build_optimizer(config, steps_per_epoch=1000, total_steps=10000, **extra)


def inputs(size, batch, with_focal=False):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (batch, *size, 3)).astype("float32"))
    y = tf.constant(rng.uniform(0.5, 9.0, (batch, *size, 1)).astype("float32"))
    if with_focal:
        x = (x, tf.fill((batch,), 518.8579))
    return x, y


def step_function(mode, args, model, timed, config, size):
    """A zero-argument callable running one timed call (synchronised: results converted to NumPy)."""
    import keras
    import tensorflow as tf

    from hqdepth.training import trainer

    x, y = inputs(size, args.batch, config["data"]["with_focal"])
    if mode == "train":
        if args.loss == "recipe":
            loss = trainer.build_loss(config)
        else:
            loss = keras.losses.MeanSquaredError()
        metrics = trainer.compile_metrics(loss, config) if args.metrics == "recipe" else None
        optimizer = build_optimizer(trainer, config, model)
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=bool(args.jit))
        if not args.no_prebuild:
            # Create the optimizer's slots now: otherwise the first step creates them inside the traced function,
            # which makes tf.function trace the whole step twice (about 5x longer first step here).
            optimizer.build(model.trainable_variables)
        return lambda: model.train_on_batch(x, y, return_dict=True)
    if mode == "infer":
        forward = tf.function(lambda x: timed(x, training=False), jit_compile=bool(args.jit))
        return lambda: tf.nest.map_structure(lambda t: t.numpy(), forward(x))
    if mode == "forward":
        forward = tf.function(lambda x: timed(x, training=True), jit_compile=bool(args.jit))
        return lambda: tf.nest.map_structure(lambda t: t.numpy(), forward(x))
    if mode == "grad":
        variables = timed.trainable_variables

        @tf.function(jit_compile=bool(args.jit))
        def gradients(x):
            with tf.GradientTape() as tape:
                outputs = tf.nest.flatten(timed(x, training=True))
                value = tf.add_n([tf.reduce_mean(tf.square(tf.cast(o, tf.float32))) for o in outputs])
            grads = tape.gradient(value, variables)
            return value + tf.add_n([tf.reduce_sum(tf.cast(g[..., :1], tf.float32)) for g in grads if g is not None])

        return lambda: gradients(x).numpy()
    raise SystemExit(f"unknown mode {mode}")


def measure_model(args):
    """Every mode of `args.mode` ("infer+train": inference first, so its memory peak is its own) on one model."""
    import tensorflow as tf

    start = time.perf_counter()
    model, timed, config, size, count = build(args)
    build_s = time.perf_counter() - start
    common = {
        "model": args.model, "recipe": config["name"], "upto": args.upto, "size": list(size), "batch": args.batch,
        "precision": args.precision, "jit": bool(args.jit), "variant": args.variant or None,
        "intra": args.intra, "inter": args.inter, "onednn_env": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "tf_threads": [tf.config.threading.get_intra_op_parallelism_threads(),
                       tf.config.threading.get_inter_op_parallelism_threads()],
        "params": int(model.count_params()), "forward_gflops_per_image": count.flops / 1e9, "build_s": build_s,
        "rss_after_build_mb": current_rss_mb(),
    }
    results = {}
    matmul_dtype = "bfloat16" if args.precision == "mixed_bfloat16" else "float32"
    probe = matmul_probe(matmul_dtype) if args.local_matmul else None
    for mode in args.mode.split("+"):
        call = step_function(mode, args, model, timed, config, size)
        peak_reset = reset_peak_rss()  # the peak below is this mode's (not the matmul's or an earlier mode's)
        warm, times, cpu, local = time_calls(call, args.warmup, args.steps, probe)
        peak = peak_rss_mb()
        median = statistics.median(times)
        # A training step (forward + backward to activations and weights) counts as 3x the forward FLOPs.
        step_flops = count.flops * args.batch * (3 if mode in ("train", "grad") else 1)
        row = {"mode": mode, "warmup_s": warm, "seconds": times, "cpu_seconds": cpu, "median_s": median,
               "min_s": min(times), "images_per_s": args.batch / median, "achieved_gflops": step_flops / median / 1e9,
               "achieved_gflops_best": step_flops / min(times) / 1e9,
               "gflops_per_cpu_s": step_flops / statistics.median(cpu) / 1e9, "peak_rss_mb": peak,
               "peak_rss_scope": "this mode" if peak_reset else "whole process"}
        if local:
            # The median step over the median of the matmuls timed between the steps (the same load); medians,
            # because a single matmul call can catch a neighbour's burst or stall.
            row.update(local_matmul_gflops=local, local_flops_ratio=row["achieved_gflops"] / statistics.median(local))
        if mode == "train":
            row.update(loss=args.loss, metrics=args.metrics, optimizer_prebuilt=not args.no_prebuild)
        results[mode] = row
    if len(results) == 1:
        return {**common, **next(iter(results.values()))}
    return {**common, "mode": args.mode, "modes": results}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("train", "infer", "infer+train", "grad", "forward", "matmul"))
    parser.add_argument("--model", default="hqmd_baseline_plus")
    parser.add_argument("--recipe", default=None, help="training recipe (default: the model's, see MODEL_RECIPES)")
    parser.add_argument("--size", default=None, help="HxW (default: the recipe's input size)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16", "mixed_float16"))
    parser.add_argument("--steps", type=int, default=3, help="timed calls")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (the first traces)")
    parser.add_argument("--intra", type=int, default=None, help="TF intra-op threads (default: TF's choice)")
    parser.add_argument("--inter", type=int, default=None, help="TF inter-op threads (default: TF's choice)")
    parser.add_argument("--jit", action="store_true", help="XLA: compile(jit_compile=True) / tf.function(jit_compile)")
    parser.add_argument("--loss", default="recipe", choices=("recipe", "mse"))
    parser.add_argument("--metrics", default="recipe", choices=("recipe", "none"))
    parser.add_argument("--no-prebuild", action="store_true",
                        help="train: let the first step build the optimizer (Keras' default; traces twice)")
    parser.add_argument("--upto", default=None, help="grad/forward/infer: time the prefix ending at this layer")
    parser.add_argument("--variant", default="", help="comma-separated variants: package kernels switched back to "
                        "Keras' code (benchmarks/variants.py: keras_bn, keras_adam)")
    parser.add_argument("--local-matmul", action="store_true",
                        help="also time a 4096 matmul (the precision's dtype) before every timed step and after "
                        "the last")
    parser.add_argument("--dtype", default="float32", help="matmul dtype")
    parser.add_argument("--n", type=int, default=4096, help="matmul size")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    load = os.getloadavg()[0]
    configure_threads(args)
    result = matmul(args) if args.mode == "matmul" else measure_model(args)
    result.update(load_start=load, load_end=os.getloadavg()[0])
    result.setdefault("peak_rss_mb", peak_rss_mb())
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
