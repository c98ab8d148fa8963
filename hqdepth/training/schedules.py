"""Learning-rate schedules of the recipes, by name.

    constant      the optimizer's rate
    exponential   lr0 * decay_rate ** (step / decay_steps), floored with staircase (HQMD: 1e-4, x0.9 / 10k steps)
    step          lr0 * factor ** floor(step / (every_epochs * steps_per_epoch))   (MRPAN: x0.9 / 5 epochs)
    polynomial    (lr0 - end) * (1 - step / total_steps) ** power + end            (BTS: power 0.9 to 1e-5)
    cyclic        triangular cyclic rate (Smith 2017) between the optimizer's rate and max_learning_rate

`exponential`, `step` and `polynomial` are Keras' own serializable schedules; the cyclic rate has no
core Keras class and is `TriangularCyclic` below (registered, so a `.keras` file loads it back).
"""

import keras
from keras import ops

from hqdepth.errors import ConfigError


@keras.saving.register_keras_serializable(package="hqdepth")
class TriangularCyclic(keras.optimizers.schedules.LearningRateSchedule):
    """lr(t) = min + (max - min) * max(0, 1 - |2 * cycle - 1 - t / step_size|), cycle = floor(1 + t / (2 step_size)).

    Smith, "Cyclical Learning Rates for Training Neural Networks" (WACV 2017), triangular policy, as
    quoted by seed 004. `step_size` = iterations per half cycle; the rate starts at `min`.
    """

    def __init__(self, min_learning_rate, max_learning_rate, step_size, name="triangular_cyclic"):
        if step_size <= 0:
            raise ConfigError(f"cyclic schedule: step_size={step_size!r} must be positive.")
        if max_learning_rate < min_learning_rate:
            raise ConfigError(f"cyclic schedule: max_learning_rate {max_learning_rate} < min {min_learning_rate}.")
        self.min_learning_rate = float(min_learning_rate)
        self.max_learning_rate = float(max_learning_rate)
        self.step_size = float(step_size)
        self.name = name

    def __call__(self, step):
        # t / step_size - 2 * cycle + 1 == (t mod 2 step_size) / step_size - 1, which keeps float32 exact
        # for late steps (the cycle formula cancels large terms).
        position = ops.mod(ops.cast(step, "float32"), 2.0 * self.step_size)
        x = ops.abs(position / self.step_size - 1.0)
        return self.min_learning_rate + (self.max_learning_rate - self.min_learning_rate) * ops.maximum(0.0, 1.0 - x)

    def get_config(self):
        return {"min_learning_rate": self.min_learning_rate, "max_learning_rate": self.max_learning_rate,
                "step_size": self.step_size, "name": self.name}


def _exponential(lr, options, steps_per_epoch, total_steps):
    return keras.optimizers.schedules.ExponentialDecay(
        lr, int(options.pop("decay_steps")), float(options.pop("decay_rate")),
        staircase=bool(options.pop("staircase", False)))


def _step(lr, options, steps_per_epoch, total_steps):
    every = options.pop("every_epochs", None)
    steps = options.pop("every_steps", None)
    if (every is None) == (steps is None):
        raise ConfigError("step schedule: give exactly one of every_epochs and every_steps.")
    steps = int(steps) if steps is not None else int(round(float(every) * steps_per_epoch))
    return keras.optimizers.schedules.ExponentialDecay(lr, max(steps, 1), float(options.pop("factor", 0.1)),
                                                       staircase=True)


def _polynomial(lr, options, steps_per_epoch, total_steps):
    decay_steps = options.pop("decay_steps", None) or total_steps
    return keras.optimizers.schedules.PolynomialDecay(
        lr, int(decay_steps), float(options.pop("end_learning_rate", 1e-5)), power=float(options.pop("power", 0.9)))


def _cyclic(lr, options, steps_per_epoch, total_steps):
    half_epochs = options.pop("step_size_epochs", None)
    step_size = options.pop("step_size", None)
    if (half_epochs is None) == (step_size is None):
        raise ConfigError("cyclic schedule: give exactly one of step_size (steps) and step_size_epochs.")
    step_size = float(step_size) if step_size is not None else float(half_epochs) * steps_per_epoch
    return TriangularCyclic(lr, float(options.pop("max_learning_rate")), step_size)


SCHEDULES = {"constant": None, "exponential": _exponential, "step": _step, "polynomial": _polynomial,
             "cyclic": _cyclic}


def build_schedule(name, learning_rate, options=None, steps_per_epoch=1, total_steps=1):
    """A `LearningRateSchedule` (or the float rate for `constant`) from a recipe's schedule section."""
    if name not in SCHEDULES:
        raise ConfigError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}.")
    options = dict(options or {})
    if SCHEDULES[name] is None:
        schedule = float(learning_rate)
    else:
        try:
            schedule = SCHEDULES[name](float(learning_rate), options, steps_per_epoch, total_steps)
        except KeyError as error:
            raise ConfigError(f"{name} schedule needs option {error.args[0]!r}.") from None
    if options:
        raise ConfigError(f"{name} schedule: unknown option(s) {', '.join(sorted(options))}.")
    return schedule
