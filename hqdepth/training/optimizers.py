"""Adam and AdamW whose per-variable update is TensorFlow's fused `ResourceApplyAdam` kernel.

Keras 3's `Adam.update_step` is about nine element-wise ops per variable (two `assign_add`s, an
`assign_sub`, a square, a square root, ...), each a pass over the variable's memory: for HQMD's 40 M
parameters about 1.5 GB of memory traffic per step on the CPU. `ResourceApplyAdam` applies the same
update in one multi-threaded pass. Same formulas (Kingma & Ba with Keras' epsilon placement):

    m <- m + (g - m)(1 - beta_1);  v <- v + (g^2 - v)(1 - beta_2)
    w <- w - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)

AdamW's decoupled weight decay is applied by Keras before the update, unchanged. Other backends,
amsgrad, sparse gradients and non-float32 variables take Keras' own `update_step`. Recipes choose with
`optimizer.fused` (default true; false = Keras' classes).

`l2_weight_decay` is PyTorch `Adam(weight_decay=...)`: it adds `l2_weight_decay * w` to each gradient
before the Adam step (L2 regularisation, coupled to the adaptive step), unlike Keras' `weight_decay`,
which shrinks the weights beside it (decoupled, AdamW). Both skip the variables given to
`exclude_from_weight_decay` (PyTorch: a parameter group with weight_decay 0). Papers trained with PyTorch
Adam and a weight decay (MRPAN, SARPN, Hu et al.) used the coupled form; it is what their numbers come from.

`epsilon_after_bias_correction` is PyTorch's epsilon placement (`torch.optim.Adam` / `AdamW`): epsilon is added to
sqrt(v / (1 - beta_2^t)), not to sqrt(v) (Keras, TF1), i.e. Keras' formula with epsilon * sqrt(1 - beta_2^t). The
two agree once beta_2^t is small; before that Keras' epsilon weighs up to 1 / sqrt(1 - beta_2) = 31.6x more
(beta_2 0.999, first step). It matters with a large epsilon: BTS trains with 1e-3, which Keras' placement makes
3.2e-3 at step 100 and 1.26e-3 at step 1000.
"""

import keras


class _FusedAdamUpdate:
    def __init__(self, *args, l2_weight_decay=0.0, one_pass=True, epsilon_after_bias_correction=False, **kwargs):
        super().__init__(*args, **kwargs)
        if not l2_weight_decay >= 0:
            raise ValueError(f"l2_weight_decay={l2_weight_decay!r} must be >= 0")
        self.l2_weight_decay = float(l2_weight_decay)
        self.one_pass = bool(one_pass)
        self.epsilon_after_bias_correction = bool(epsilon_after_bias_correction)

    def get_config(self):
        return {**super().get_config(), "l2_weight_decay": self.l2_weight_decay, "one_pass": self.one_pass,
                "epsilon_after_bias_correction": self.epsilon_after_bias_correction}

    def update_step(self, gradient, variable, learning_rate):
        if self.l2_weight_decay and self._use_weight_decay(variable):  # PyTorch Adam's: the moments see it
            gradient = gradient + keras.ops.cast(variable, gradient.dtype) * self.l2_weight_decay
        step = keras.ops.cast(self.iterations + 1, "float32")
        beta_2_power = keras.ops.power(keras.ops.cast(self.beta_2, "float32"), step)
        epsilon = self.epsilon
        if self.epsilon_after_bias_correction:  # PyTorch's placement as Keras' formula (module docstring)
            epsilon = epsilon * keras.ops.sqrt(1.0 - beta_2_power)
        if (not self.one_pass or keras.backend.backend() != "tensorflow" or self.amsgrad or
                keras.backend.standardize_dtype(variable.dtype) != "float32"):
            return self._keras_update_step(gradient, variable, learning_rate, epsilon)
        import tensorflow as tf  # only here: other backends must not need TensorFlow

        if isinstance(gradient, tf.IndexedSlices):
            return self._keras_update_step(gradient, variable, learning_rate, epsilon)
        index = self._get_variable_index(variable)
        beta_1 = tf.cast(self.beta_1, "float32")
        beta_2 = tf.cast(self.beta_2, "float32")
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle, v=self._velocities[index].handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=beta_2_power, lr=tf.cast(learning_rate, "float32"),
            beta1=beta_1, beta2=beta_2, epsilon=tf.cast(epsilon, "float32"), grad=tf.cast(gradient, "float32"),
            use_locking=False)

    def _keras_update_step(self, gradient, variable, learning_rate, epsilon):
        """Keras' `update_step`, which reads `self.epsilon` while it builds the update, with `epsilon` there."""
        configured, self.epsilon = self.epsilon, epsilon
        try:
            return super().update_step(gradient, variable, learning_rate)
        finally:
            self.epsilon = configured


@keras.saving.register_keras_serializable(package="hqdepth")
class FusedAdam(_FusedAdamUpdate, keras.optimizers.Adam):
    """`keras.optimizers.Adam` (same config, slots and results) with a one-pass update on TensorFlow
    (`one_pass=False`: Keras' update) and PyTorch Adam's coupled `l2_weight_decay`."""


@keras.saving.register_keras_serializable(package="hqdepth")
class FusedAdamW(_FusedAdamUpdate, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` (same config, slots and results) with a one-pass update on TensorFlow
    (`one_pass=False`: Keras' update) and PyTorch Adam's coupled `l2_weight_decay`."""


FUSED = {"adam": FusedAdam, "adamw": FusedAdamW}


def get_optimizer(name, config, fused=True):
    """The Keras optimizer `name` (as `keras.optimizers.get`) built from `config`; Adam and AdamW fused when
    asked. `config["l2_weight_decay"]` or `["epsilon_after_bias_correction"]` (Adam/AdamW only) keep our classes,
    with Keras' update when not fused."""
    cls = FUSED.get(name.lower())
    if cls is None or not (fused or "l2_weight_decay" in config or "epsilon_after_bias_correction" in config):
        return keras.optimizers.get({"class_name": name, "config": config})
    return cls.from_config({**config, "one_pass": fused})
