"""Choose the training precision of this machine by measuring it, not by reading CPU flags.

A CPU flag says that an instruction exists, not that a training step is faster with it: a CPU with
AVX512-BF16 but without AMX (e.g. AMD Zen 4) multiplies bfloat16 at a rate close to float32 and pays for
the casts; one with AMX is much faster in bfloat16; one without either emulates bfloat16 slowly.
`probe_precision` therefore times a few training steps of a small network made of the layers the
package's models are built from (3x3 and dilated convolutions, fused batch norm, ReLU, bilinear
upsampling, Adam) in each candidate precision, interleaved so that a load change on a shared machine
affects both alike, and returns the faster one:

    >>> from hqdepth.training.precision import probe_precision
    >>> probe = probe_precision(size=(64, 96), batch=16)
    >>> probe.choice, probe.seconds          # e.g. ('mixed_bfloat16', {'float32': 0.061, ...})

bfloat16 must be at least `margin` (default 10%) faster to be chosen: it rounds activations to 8 bits
of mantissa, which a few percent of speed does not pay for. On a GPU use `mixed_float16` instead
(DESIGN.md, "Mixed precision"); this probe is for CPUs. It takes a few seconds (two small traces and
2 x (`warmup` + `steps`) steps).
"""

import statistics
import time
from dataclasses import dataclass, field

CANDIDATES = ("float32", "mixed_bfloat16")


@dataclass
class PrecisionProbe:
    """Result of `probe_precision`.

    choice: the precision to train in (one of `CANDIDATES`); seconds: median seconds of one probe step
    per precision; speedup: float32 seconds / mixed_bfloat16 seconds; reason: one line for a log;
    error: why a precision could not run (then it is not chosen), else None.
    """

    choice: str
    seconds: dict = field(default_factory=dict)
    speedup: float = float("nan")
    reason: str = ""
    error: str | None = None

    def to_dict(self):
        return {"choice": self.choice, "seconds": dict(self.seconds), "speedup": self.speedup,
                "reason": self.reason, "error": self.error}


def probe_network(policy, size=(64, 96), width=32):
    """A small fully convolutional depth-like network in dtype policy `policy`, compiled with Adam and MSE.

    Encoder: strided 3x3 conv-BN-ReLU blocks down to 1/8 with `width` to `4 * width` channels, a dilated
    3x3 block (rate 2, as in the atrous backbones), decoder: upsampling to 1/4, a 3x3 block, bilinear
    upsampling to the input and a float32 1x1 output (as the package's heads). Layers carry `policy`
    themselves, so the global Keras policy is not touched.
    """
    import keras
    from keras import layers

    from hqdepth.layers import BilinearResize, conv_bn_relu

    settings = dict(bn_momentum=0.9, weight_decay=0.0, dtype=policy)
    image = keras.Input((*size, 3))
    x = layers.Rescaling(1.0 / 255.0, dtype=policy)(image)
    x = conv_bn_relu(x, width, 3, "stem", **settings)
    skip = None
    for level, filters in enumerate((width, 2 * width, 4 * width), start=1):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, dtype=policy, name=f"down{level}")(x)
        x = conv_bn_relu(x, filters, 3, f"block{level}", **settings)
        if level == 2:
            skip = x
    x = conv_bn_relu(x, 4 * width, 3, "atrous", dilation_rate=2, **settings)
    x = BilinearResize(dtype=policy, name="up_skip")([x, skip])
    x = layers.Concatenate(dtype=policy)([x, skip])
    x = conv_bn_relu(x, 2 * width, 3, "decoder", **settings)
    x = BilinearResize(dtype=policy, name="up_image")([x, image])
    depth = layers.Conv2D(1, 1, dtype="float32", name="depth")(x)
    model = keras.Model(image, depth, name=f"precision_probe_{policy}")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    return model


def probe_precision(size=(64, 96), batch=8, steps=5, warmup=2, margin=0.10, candidates=CANDIDATES, width=32,
                    print_fn=None):
    """Time `steps` training steps of `probe_network` per precision (after `warmup` untimed ones) and choose.

    The precisions' steps alternate (A, B, A, B, ...) so that other jobs on a shared machine slow both
    alike; the median of each precision's steps is compared. Returns a `PrecisionProbe`; the choice is
    "mixed_bfloat16" only when it is at least `margin` faster than float32 and ran without error, else
    "float32". `print_fn` (e.g. print) gets one line with the result.
    """
    import numpy as np

    unknown = [c for c in candidates if c not in CANDIDATES]
    if unknown or "float32" not in candidates:
        raise ValueError(f"candidates must include float32 and be among {CANDIDATES}; got {candidates}")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, *size, 3)).astype("float32")
    y = rng.uniform(0.5, 9.0, (batch, *size, 1)).astype("float32")
    models, errors = {}, {}
    for policy in candidates:
        try:
            model = probe_network(policy, size, width)
            for _ in range(warmup):
                model.train_on_batch(x, y)
            models[policy] = model
        except Exception as error:  # noqa: BLE001 - a precision the CPU kernels cannot run is simply not chosen
            errors[policy] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    times = {policy: [] for policy in models}
    for _ in range(steps):
        for policy, model in models.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times[policy].append(time.perf_counter() - start)
    seconds = {policy: statistics.median(values) for policy, values in times.items()}
    bf16 = seconds.get("mixed_bfloat16")
    speedup = seconds["float32"] / bf16 if bf16 else float("nan")
    error = "; ".join(f"{p}: {e}" for p, e in errors.items()) or None
    if bf16 and speedup >= 1.0 + margin:
        choice = "mixed_bfloat16"
        reason = f"mixed_bfloat16 steps {speedup:.2f}x as fast as float32 (needs >= {1 + margin:.2f}x)"
    elif bf16:
        choice = "float32"
        reason = f"mixed_bfloat16 steps only {speedup:.2f}x as fast as float32 (needs >= {1 + margin:.2f}x)"
    else:
        choice = "float32"
        reason = "mixed_bfloat16 not measured" + (f" ({error})" if error else "")
    result = PrecisionProbe(choice, seconds, speedup, reason, error)
    if print_fn is not None:
        shown = ", ".join(f"{p} {1000 * s:.0f} ms" for p, s in seconds.items())
        print_fn(f"precision probe ({batch} x {size[0]}x{size[1]}, {steps} steps each: {shown}): {choice}; {reason}")
    return result
