"""Learning-rate schedules of the recipes, by name.

    constant      the optimizer's rate
    exponential   lr0 * decay_rate ** (step / decay_steps), floored with staircase (HQMD: 1e-4, x0.9 / 10k steps)
    step          lr0 * factor ** floor(step / (every_epochs * steps_per_epoch))   (MRPAN: x0.1 / 5 epochs)
    polynomial    (lr0 - end) * (1 - step / total_steps) ** power + end            (BTS: power 0.9 to 1e-5)
    cyclic        triangular cyclic rate (Smith 2017) between the optimizer's rate and max_learning_rate
    one_cycle     mmcv's OneCycle policy (the Depth Toolbox): the optimizer's rate up to max_learning_rate over
                  pct_start of the run, then down to the rate / final_div_factor, cosine (or linear) annealed

`exponential`, `step` and `polynomial` are Keras' own serializable schedules; the cyclic and one-cycle
rates have no core Keras class and are `TriangularCyclic` and `OneCycle` below (registered, so a
`.keras` file loads them back).
"""

import math

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


ANNEALING = ("cos", "linear")


@keras.saving.register_keras_serializable(package="hqdepth")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """mmcv's `OneCycleLrUpdaterHook` (two phases, `by_epoch=False`), which the Depth Toolbox trains with.

    With T = total_steps, the step t (0-based, as mmcv's `runner.iter`) gets
    - phase 1, t <= e1 = pct_start * T - 1: anneal(initial, max, t / e1);
    - phase 2, t > e1 (up to e2 = T - 1): anneal(max, initial / final_div_factor, (t - e1) / (e2 - e1)),
    where anneal(a, b, p) = b + (a - b) / 2 * (cos(pi p) + 1) ("cos", mmcv's default) or a + (b - a) p
    ("linear"). `initial` is mmcv's max_lr / div_factor: the optimizer's rate here. mmcv computes the
    phase ends in floating point (e1 need not be a whole step), and so does this class; past the last step the
    rate stays at its final value.
    """

    def __init__(self, initial_learning_rate, max_learning_rate, total_steps, pct_start=0.3, final_div_factor=1e4,
                 anneal="cos", name="one_cycle"):
        if total_steps < 1 or not 0.0 < pct_start < 1.0:
            raise ConfigError(f"one_cycle schedule: needs total_steps >= 1 and 0 < pct_start < 1, got total_steps="
                              f"{total_steps!r}, pct_start={pct_start!r}.")
        if anneal not in ANNEALING:
            raise ConfigError(f"one_cycle schedule: anneal must be one of {ANNEALING}, got {anneal!r}.")
        self.initial_learning_rate = float(initial_learning_rate)
        self.max_learning_rate = float(max_learning_rate)
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)
        self.final_div_factor = float(final_div_factor)
        self.anneal = anneal
        self.name = name

    def _anneal(self, start, end, done, left):
        """mmcv's annealing from `start` to `end` at fraction `done` (left = 1 - done, computed on its own):
        cos: end + (start - end) (cos(pi done) + 1) / 2 = start sin^2(pi left / 2) + end sin^2(pi done / 2), the
        form that keeps float32 accurate near both ends, where one term vanishes."""
        if self.anneal == "linear":
            return start * left + end * done
        return start * ops.square(ops.sin(0.5 * math.pi * left)) + end * ops.square(ops.sin(0.5 * math.pi * done))

    def __call__(self, step):
        t = ops.cast(step, "float32")
        rise_end = self.pct_start * self.total_steps - 1.0  # mmcv's phase ends, in floating point
        last = self.total_steps - 1.0
        # A run shorter than 1 / pct_start steps has no rise (rise_end < 0), as in mmcv.
        rise = max(rise_end, 1e-6)
        rising = self._anneal(self.initial_learning_rate, self.max_learning_rate, ops.clip(t / rise, 0.0, 1.0),
                              ops.clip((rise_end - t) / rise, 0.0, 1.0))
        fall = last - rise_end
        falling = self._anneal(self.max_learning_rate, self.initial_learning_rate / self.final_div_factor,
                               ops.clip((t - rise_end) / fall, 0.0, 1.0),  # past the last step: the final rate
                               ops.clip((last - t) / fall, 0.0, 1.0))
        return ops.where(t <= rise_end, rising, falling)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "max_learning_rate": self.max_learning_rate,
                "total_steps": self.total_steps, "pct_start": self.pct_start,
                "final_div_factor": self.final_div_factor, "anneal": self.anneal, "name": self.name}


class _BadOption(ValueError):
    """A schedule option that is not a number (build_schedule names the schedule)."""


def _number(options, key, cast=float, default=KeyError):
    """`options[key]` removed and cast to a number (`default` when absent or null; KeyError: required)."""
    if options.get(key) is None and default is not KeyError:
        options.pop(key, None)
        return default
    value = options.pop(key)  # a missing required option: KeyError, which build_schedule reports
    try:
        return cast(value)
    except (TypeError, ValueError):
        raise _BadOption(f"option {key!r} must be {'an integer' if cast is int else 'a number'}, "
                         f"not {value!r}") from None


def _exponential(lr, options, steps_per_epoch, total_steps):
    return keras.optimizers.schedules.ExponentialDecay(
        lr, _number(options, "decay_steps", int), _number(options, "decay_rate"),
        staircase=bool(options.pop("staircase", False)))


def _step(lr, options, steps_per_epoch, total_steps):
    every = _number(options, "every_epochs", default=None)
    steps = _number(options, "every_steps", int, default=None)
    if (every is None) == (steps is None):
        raise ConfigError("step schedule: give exactly one of every_epochs and every_steps.")
    steps = steps if steps is not None else int(round(every * steps_per_epoch))
    return keras.optimizers.schedules.ExponentialDecay(lr, max(steps, 1), _number(options, "factor", default=0.1),
                                                       staircase=True)


def _polynomial(lr, options, steps_per_epoch, total_steps):
    decay_steps = _number(options, "decay_steps", int, default=None) or total_steps
    return keras.optimizers.schedules.PolynomialDecay(
        lr, int(decay_steps), _number(options, "end_learning_rate", default=1e-5),
        power=_number(options, "power", default=0.9))


def _cyclic(lr, options, steps_per_epoch, total_steps):
    half_epochs = _number(options, "step_size_epochs", default=None)
    step_size = _number(options, "step_size", default=None)
    if (half_epochs is None) == (step_size is None):
        given = "both" if step_size is not None else "neither"
        raise ConfigError(f"cyclic schedule: give exactly one of step_size (steps) and step_size_epochs ({given} "
                          "given; to replace a recipe's one by the other, set it to null: "
                          "--set schedule.options.step_size_epochs=null --set schedule.options.step_size=N).")
    step_size = step_size if step_size is not None else half_epochs * steps_per_epoch
    return TriangularCyclic(lr, _number(options, "max_learning_rate"), step_size)


def _one_cycle(lr, options, steps_per_epoch, total_steps):
    return OneCycle(lr, _number(options, "max_learning_rate"), total_steps,
                    pct_start=_number(options, "pct_start", default=0.3),
                    final_div_factor=_number(options, "final_div_factor", default=1e4),
                    anneal=options.pop("anneal", "cos"))


SCHEDULES = {"constant": None, "exponential": _exponential, "step": _step, "polynomial": _polynomial,
             "cyclic": _cyclic, "one_cycle": _one_cycle}


def build_schedule(name, learning_rate, options=None, steps_per_epoch=1, total_steps=1):
    """A `LearningRateSchedule` (or the float rate for `constant`) from a recipe's schedule section."""
    if name not in SCHEDULES:
        raise ConfigError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}.")
    options = dict(options or {})
    try:
        learning_rate = float(learning_rate)
    except (TypeError, ValueError):
        raise ConfigError(f"the learning rate must be a number, not {learning_rate!r}.") from None
    if SCHEDULES[name] is None:
        schedule = learning_rate
    else:
        try:
            schedule = SCHEDULES[name](learning_rate, options, steps_per_epoch, total_steps)
        except KeyError as error:
            raise ConfigError(f"{name} schedule needs option {error.args[0]!r}.") from None
        except _BadOption as error:
            raise ConfigError(f"{name} schedule: {error}.") from None
    if options:
        raise ConfigError(f"{name} schedule: unknown option(s) {', '.join(sorted(options))}.")
    return schedule
