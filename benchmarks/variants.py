"""The package with one of its fused kernels switched back to Keras' code, to measure what each is worth.

The package runs batch norm as TensorFlow's FusedBatchNormV3 (`hqdepth.layers.FusedBatchNormalization`, in every
model) and Adam/AdamW as ResourceApplyAdam (`hqdepth.training.optimizers`, recipe field `optimizer.fused`, default
true). The benchmarks measure the package as it is; a variant (`cpu_step.py --variant NAME`, `train_ab.py
--b-variant`, `cpu_profile.py --variant`, `inference.py --variant`) undoes one change so that the tuning study still
shows its worth:

- `keras_bn`: `FusedBatchNormalization._can_fuse` returns False, so every batch norm (FrozenAffine ones included)
  runs `keras.layers.BatchNormalization.call` (moments + separate element-wise ops). A class patch: it changes what
  is traced from then on in this process.
- `keras_adam`: the recipe's optimizer built with `optimizer.fused=false` (Keras' own Adam/AdamW `update_step`, about
  nine element-wise passes per variable): a config override, returned by `apply` for `recipes.resolve_config`.
- `fcn_conv_bias`: fcn_autoencoder with a bias on every convolution (`model.options.conv_bias=true`, the layout
  before 2026-12-01; the bias before each batch norm is cancelled by it): a config override.
- `tf_kernel_gradients`: `train.kernel_gradients=tensorflow`, TensorFlow's own kernel gradients for the 1x1 and dilated
  convolutions that mixed_bfloat16 runs compute as matrix products (`hqdepth.layers.weight_gradients`); a config
  override (the `--check` below covers the first two; tests/test_weight_gradients.py covers this one).

`python benchmarks/variants.py --check`: each variant against the package default on random data (equal to float32
round-off), and the fused op present in the default's graph and absent from the variant's (a variant that changed
nothing would pass the numbers alone).
"""

VARIANTS = {
    "keras_bn": "batch norm by Keras' BatchNormalization.call instead of FusedBatchNormV3",
    "keras_adam": "Adam by Keras' update_step (optimizer.fused=false) instead of ResourceApplyAdam",
    "fcn_conv_bias": "fcn_autoencoder with a bias on every convolution, batch norm following or not",
    "tf_kernel_gradients": "TensorFlow's kernel gradients of 1x1 and dilated convolutions (train.kernel_gradients="
                           "tensorflow) instead of matrix products under mixed_bfloat16",
}


def _keras_batch_norm():
    from hqdepth.layers.normalization import FusedBatchNormalization

    FusedBatchNormalization._can_fuse = lambda self, inputs, mask: False


def apply(names):
    """Switch on the variants in `names` (a list or a comma-separated string); returns the recipe overrides
    (`--set` strings) they need. Empty: the package as it is."""
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",") if name.strip()]
    sets = []
    for name in names:
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
        if name == "keras_bn":
            _keras_batch_norm()
        elif name == "keras_adam":
            sets.append("optimizer.fused=false")
        elif name == "fcn_conv_bias":
            sets.append("model.options.conv_bias=true")
        elif name == "tf_kernel_gradients":
            sets.append("train.kernel_gradients=tensorflow")
    return sets


def check(seed=0):
    """{quantity: (max |variant - default|, max |default|, fused op in default graph, fused op in variant graph)}."""
    import keras
    import numpy as np
    import tensorflow as tf

    from hqdepth.layers.normalization import FusedBatchNormalization
    from hqdepth.training import recipes, trainer

    rng = np.random.default_rng(seed)
    x = rng.normal(2.0, 3.0, (4, 9, 11, 5)).astype("float32")
    weights = rng.normal(size=x.shape).astype("float32")  # per element: the gradients are not zero by symmetry

    def batch_norm():
        layer = FusedBatchNormalization(momentum=0.9, epsilon=1e-5)
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 2.0, 5))
        layer.beta.assign(np.linspace(-1.0, 1.0, 5))

        @tf.function
        def train(inputs):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                y = layer(inputs, training=True)
                value = tf.reduce_sum(y * weights)
            return [y, *tape.gradient(value, [inputs, layer.gamma, layer.beta])]

        ops = {op.type for op in train.get_concrete_function(tf.TensorSpec(x.shape)).graph.get_operations()}
        y, d_input, d_gamma, d_beta = train(tf.constant(x))
        values = {"train output": y, "moving mean": layer.moving_mean, "moving variance": layer.moving_variance,
                  "inference output": layer(x, training=False), "d input": d_input, "d gamma": d_gamma,
                  "d beta": d_beta}
        return values, "FusedBatchNormV3" in ops

    w0 = rng.normal(size=(7, 5)).astype("float32")
    gradients = [rng.normal(size=(7, 5)).astype("float32") for _ in range(5)]

    def adam(sets):
        # The recipe's optimizer as cpu_step.py builds it (hqmd_plus_full: Adam, its schedule), on one variable.
        config = recipes.resolve_config("hqmd_plus_full", sets=[*sets, "optimizer.learning_rate=0.01"])
        optimizer = trainer.build_optimizer(config, steps_per_epoch=2, total_steps=10)
        variable = keras.Variable(w0)
        optimizer.build([variable])
        step = tf.function(lambda g: optimizer.apply_gradients([(g, variable)]))
        ops = {op.type for op in step.get_concrete_function(tf.TensorSpec(w0.shape)).graph.get_operations()}
        for gradient in gradients:
            step(tf.constant(gradient))
        values = {"variable after 5 steps": variable, "first moment": optimizer._momentums[0],
                  "second moment": optimizer._velocities[0]}
        return values, "ResourceApplyAdam" in ops

    default = {"keras_bn": batch_norm(), "keras_adam": adam([])}
    sets = apply(["keras_bn", "keras_adam"])  # the two checked here
    variant = {"keras_bn": batch_norm(), "keras_adam": adam(sets)}
    report = {}
    for name, (values, fused) in default.items():
        other, other_fused = variant[name]
        for key, value in values.items():
            a, b = np.asarray(value), np.asarray(other[key])
            report[f"{name}: {key}"] = (float(np.abs(a - b).max()), float(np.abs(a).max()), fused, other_fused)
    return report


if __name__ == "__main__":
    import sys

    if "--check" not in sys.argv[1:]:
        raise SystemExit("usage: python benchmarks/variants.py --check")
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    worst, switched = 0.0, True
    for name, (difference, scale, fused, variant_fused) in check().items():
        print(f"{name:<36} max |variant - default| {difference:.2e} (values up to {scale:.3g}); fused op in graph: "
              f"default {fused}, variant {variant_fused}")
        worst = max(worst, difference / max(scale, 1.0))
        switched = switched and fused and not variant_fused
    print(("OK: equal to float32 round-off" if worst < 1e-5 else f"MISMATCH: relative {worst:.2e}")
          + ("; each variant replaces the fused op" if switched else "; a variant did NOT change the graph"))
    raise SystemExit(0 if worst < 1e-5 and switched else 1)
