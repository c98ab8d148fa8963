"""Experimental speed patches measured by the benchmarks (`cpu_step.py --patch NAME`), not used by the package.

They exist to measure a change to files outside benchmarks/ before it is made there; RESULTS.md says which ones
helped and what the package change would be.

- `fused_bn`: Keras 3's `BatchNormalization` on TensorFlow computes batch statistics with `tf.nn.moments` and
  normalises with `tf.nn.batch_normalization`: about six element-wise passes forward and more backward, none
  fused with the convolution. This patch runs `tf.compat.v1.nn.fused_batch_norm` (FusedBatchNormV3, oneDNN on the
  CPU, cuDNN on a GPU) instead, in training (batch statistics, the moving averages updated exactly as Keras does,
  Bessel's correction of the fused op undone) and in inference (moving statistics), for channels-last 4-D inputs
  without a mask; everything else goes to Keras' own code. In inference graphs grappler can then fuse
  Conv2D + FusedBatchNorm (+ ReLU) into one oneDNN convolution.
- `fused_adam`: Keras 3's `Adam.update_step` is nine element-wise ops per variable (two assign_adds, an
  assign_sub, square, sqrt, ...), each a pass over the variable's memory: for HQMD's 40 M parameters about
  1.5 GB of traffic per step. This patch runs TensorFlow's `ResourceApplyAdam` kernel (the same formulas, one pass,
  multi-threaded) on the TensorFlow backend for float32 variables without amsgrad; otherwise Keras' code.
"""

import keras

_ORIGINAL = {}


def _fused_call(self, inputs, training=None, mask=None):
    import tensorflow as tf

    axis = self.axis if isinstance(self.axis, int) else self.axis[0]
    if (mask is not None or len(inputs.shape) != 4 or axis not in (-1, 3) or self.renorm or self.synchronized
            or keras.backend.backend() != "tensorflow"):
        return _ORIGINAL["call"](self, inputs, training=training, mask=mask)
    x = tf.cast(inputs, "float32")
    channels = x.shape[-1]
    gamma = tf.cast(self.gamma, "float32") if self.scale else tf.ones((channels,), "float32")
    beta = tf.cast(self.beta, "float32") if self.center else tf.zeros((channels,), "float32")
    if training and self.trainable:
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=self.epsilon, is_training=True)
        # FusedBatchNormV3 returns the unbiased (n / (n - 1)) variance; Keras' moving average uses the biased one.
        count = tf.cast(tf.size(x) // channels, "float32")
        variance = variance * tf.maximum(count - 1.0, 1.0) / tf.maximum(count, 1.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
    else:
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, mean=tf.cast(self.moving_mean, "float32"),
            variance=tf.cast(self.moving_variance, "float32"), epsilon=self.epsilon, is_training=False)
    return tf.cast(y, self.compute_dtype)


def fused_bn():
    cls = keras.layers.BatchNormalization
    if "call" not in _ORIGINAL:
        _ORIGINAL["call"] = cls.call
        cls.call = _fused_call


def _fused_adam_update_step(self, gradient, variable, learning_rate):
    import tensorflow as tf

    if (keras.backend.backend() != "tensorflow" or self.amsgrad or variable.dtype != "float32"
            or isinstance(gradient, tf.IndexedSlices)):
        return _ORIGINAL["adam"](self, gradient, variable, learning_rate)
    index = self._get_variable_index(variable)
    step = tf.cast(self.iterations + 1, "float32")
    beta_1 = tf.cast(self.beta_1, "float32")
    beta_2 = tf.cast(self.beta_2, "float32")
    tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=self._momentums[index].handle, v=self._velocities[index].handle,
        beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
        lr=tf.cast(learning_rate, "float32"), beta1=beta_1, beta2=beta_2,
        epsilon=tf.cast(self.epsilon, "float32"), grad=tf.cast(gradient, "float32"), use_locking=False)


def fused_adam():
    cls = keras.optimizers.Adam
    if "adam" not in _ORIGINAL:
        _ORIGINAL["adam"] = cls.update_step
        cls.update_step = _fused_adam_update_step


PATCHES = {"fused_bn": fused_bn, "fused_adam": fused_adam}


def apply(names):
    for name in names:
        if name not in PATCHES:
            raise SystemExit(f"unknown patch {name!r}; known: {', '.join(PATCHES)}")
        PATCHES[name]()


def check(seed=0):
    """Each patch against Keras' own code on random data: max |difference| per quantity (float32 round-off)."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = rng.normal(2.0, 3.0, (4, 9, 11, 5)).astype("float32")
    weights = rng.normal(size=x.shape).astype("float32")  # per element: the gradients are not zero by symmetry

    def batch_norm():
        keras.utils.set_random_seed(seed)
        layer = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 2.0, 5))
        layer.beta.assign(np.linspace(-1.0, 1.0, 5))
        inputs = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            y = layer(inputs, training=True)
            value = tf.reduce_sum(y * weights)
        grads = tape.gradient(value, [inputs, layer.gamma, layer.beta])
        return {"train output": y, "moving mean": layer.moving_mean, "moving variance": layer.moving_variance,
                "inference output": layer(x, training=False), "d input": grads[0], "d gamma": grads[1],
                "d beta": grads[2]}

    w0 = rng.normal(size=(7, 5)).astype("float32")
    gradients = [rng.normal(size=(7, 5)).astype("float32") for _ in range(5)]

    def adam():
        variable = keras.Variable(w0)
        optimizer = keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(1e-2, 2, 0.5), epsilon=1e-7)
        optimizer.build([variable])
        step = tf.function(lambda g: optimizer.apply_gradients([(g, variable)]))
        for gradient in gradients:
            step(tf.constant(gradient))
        return {"variable after 5 steps": variable, "first moment": optimizer.variables[1],
                "second moment": optimizer.variables[2]}

    before = {"fused_bn": batch_norm(), "fused_adam": adam()}
    apply(["fused_bn", "fused_adam"])
    after = {"fused_bn": batch_norm(), "fused_adam": adam()}
    report = {}
    for patch in before:
        for key, value in before[patch].items():
            a, b = np.asarray(value), np.asarray(after[patch][key])
            report[f"{patch}: {key}"] = (float(np.abs(a - b).max()), float(np.abs(a).max()))
    return report


if __name__ == "__main__":
    import sys

    if "--check" not in sys.argv[1:]:
        raise SystemExit("usage: python benchmarks/patches.py --check")
    worst = 0.0
    for name, (difference, scale) in check().items():
        print(f"{name:<40} max |patched - keras| {difference:.2e} (values up to {scale:.3g})")
        worst = max(worst, difference / max(scale, 1.0))
    print("OK: equal to float32 round-off" if worst < 1e-5 else f"MISMATCH: relative {worst:.2e}")
    raise SystemExit(0 if worst < 1e-5 else 1)
