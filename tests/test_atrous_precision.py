"""Dilated convolutions in every compute dtype on every x86-64 CPU (`hqdepth.layers.conv`).

Which kernels run depends on the CPU and the dtype: TensorFlow hands a float16 convolution to oneDNN
only on CPUs with native float16 arithmetic, otherwise to Eigen, whose CPU kernels have no dilated
backward pass. On an AMD Zen 4 that made a `mixed_float16` step of every atrous model fail while
float32 trained. Here (whatever this CPU is) that condition is reproduced with
`TF_ENABLE_ONEDNN_OPTS=0` (Eigen kernels for every dtype) and float32 declared native, as on a Zen 4.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from hqdepth.layers import conv
from hqdepth.layers.conv import AtrousConv2D
from hqdepth.models import registry

RNG = np.random.default_rng(int(os.environ["HQDEPTH_TEST_SEED"]))
DTYPES = ("float32", "float16", "bfloat16")


def kernels_differentiate(dtype):
    """The ground truth the probe must report: a dilated conv and its gradients, the ordinary way (tape)."""
    x = tf.constant(RNG.normal(size=(1, 9, 9, 2)), dtype)
    kernel = tf.constant(RNG.normal(size=(3, 3, 2, 2)), dtype)
    try:
        with tf.device("/CPU:0"), tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = tf.nn.conv2d(x, kernel, 1, "SAME", dilations=3)
        tape.gradient(y, [x, kernel])
        return True
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.NotFoundError):
        return False


def dilated_convs(function, *args):
    """Rates of the dilated Conv2D ops and whether SpaceToBatchND appears, in the traced graph of `function`."""
    graph = tf.function(function).get_concrete_function(*args).graph
    rates = [op.get_attr("dilations") for op in graph.get_operations() if op.type == "Conv2D"]
    return [r for r in rates if max(r) > 1], any(op.type == "SpaceToBatchND" for op in graph.get_operations())


@pytest.mark.parametrize("dtype", DTYPES)
def test_probe_reports_what_the_kernels_do_even_when_first_asked_while_tracing(dtype, monkeypatch):
    monkeypatch.setattr(conv, "_native_support", {})
    expected = kernels_differentiate(dtype)

    @tf.function
    def traced(x):
        answers.append(conv.native_dilated_conv_available(dtype))  # first asked inside a graph being traced
        return x

    answers = []
    traced(tf.ones(1))
    assert answers == [expected]
    assert conv._native_support == {dtype: expected}  # measured once, cached per dtype
    assert conv.native_dilated_conv_available(tf.as_dtype(dtype)) is expected


@pytest.mark.parametrize("rate", [2, 6])
def test_float16_takes_keras_path_when_only_its_probe_fails(monkeypatch, rate):
    """The Zen 4 situation, simulated: float32 native, float16 not. Each dtype gets its own path, and the
    float16 fallback computes the same convolution and gradients as `keras.layers.Conv2D` in float16."""
    monkeypatch.setattr(conv, "_native_support", {"float32": True, "float16": False})
    x = RNG.normal(size=(2, 7, 9, 3)).astype(np.float32)
    layers = {}
    for dtype in ("float32", "mixed_float16"):
        layer = AtrousConv2D(4, 3, padding="same", dilation_rate=rate, dtype=dtype)
        layer.build(x.shape)
        layers[dtype] = layer
    layers["mixed_float16"].set_weights(layers["float32"].get_weights())

    assert layers["float32"].uses_native_kernel() and not layers["mixed_float16"].uses_native_kernel()
    native, space_to_batch = dilated_convs(layers["float32"], tf.constant(x))
    assert native == [[1, rate, rate, 1]] and not space_to_batch
    native, space_to_batch = dilated_convs(layers["mixed_float16"], tf.constant(x))
    assert native == [] and space_to_batch

    reference = keras.layers.Conv2D(4, 3, padding="same", dilation_rate=rate, dtype="mixed_float16")
    reference.build(x.shape)
    reference.set_weights(layers["float32"].get_weights())
    xt = tf.constant(x)
    results = []
    for layer in (layers["mixed_float16"], reference, layers["float32"]):
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt)
            loss = tf.reduce_sum(tf.sin(tf.cast(y, tf.float32)))
        results.append([np.asarray(y, np.float32), *(np.asarray(g, np.float32) for g in
                                                      tape.gradient(loss, [xt, *layer.trainable_weights]))])
    assert results[0][0].dtype == np.float32 and layers["mixed_float16"].compute_dtype == "float16"
    for ours, keras_fp16, fp32 in zip(*results):
        np.testing.assert_array_equal(ours, keras_fp16)  # literally Keras' own float16 computation
        np.testing.assert_allclose(ours, fp32, rtol=2e-2, atol=2e-2)  # and the float32 function, to fp16 precision


EIGEN_SCRIPT = """
import json, sys
import keras, numpy as np, tensorflow as tf
from hqdepth import losses
from hqdepth.layers import conv
from hqdepth.models import build_model, size_multiple

names = json.loads(sys.argv[1])
conv._native_support["float32"] = True  # as on a Zen 4: oneDNN differentiates float32 dilated convs
report = {"float16_probe": conv.native_dilated_conv_available("float16"), "models": {}}

# Control: the native float16 path, which the old float32-only probe chose, fails here as on a Zen 4.
conv._native_support["float16"] = True
try:
    keras.config.set_dtype_policy("mixed_float16")
    layer = conv.AtrousConv2D(2, 3, dilation_rate=2, padding="same")
    x = tf.ones((1, 8, 8, 2))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    tape.gradient(y, x)
    report["control"] = "trained"
except tf.errors.InvalidArgumentError as error:
    report["control"] = str(error)
del conv._native_support["float16"]  # measured again: the real probe decides from here on

for name in names:
    keras.backend.clear_session()
    keras.config.set_dtype_policy("mixed_float16")  # clear_session resets the policy
    keras.utils.set_random_seed(0)
    side = max(32, size_multiple(name))
    model = build_model(name, input_shape=(side, side, 3))
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=losses.HQMDLoss(), run_eagerly=True)
    x = np.random.default_rng(0).uniform(0, 255, (1, side, side, 3)).astype(np.float32)
    y = np.random.default_rng(1).uniform(0.5, 9.0, (1, side, side, 1)).astype(np.float32)
    loss = model.train_on_batch(x, y)
    atrous = [l for l in model._flatten_layers(include_self=False, recursive=True) if isinstance(l, conv.AtrousConv2D)]
    report["models"][name] = {"loss": float(loss), "output_dtype": keras.backend.standardize_dtype(model(x).dtype),
                              "compute_dtypes": sorted({l.compute_dtype for l in atrous}),
                              "native": any(l.uses_native_kernel() for l in atrous)}
print("REPORT " + json.dumps(report))
"""


@pytest.mark.slow  # float16 on Eigen is slow: about 30 s per model at 32x32 on 2 cores
def test_mixed_float16_trains_every_atrous_model_on_eigen_cpu_kernels():
    """Every model with dilated convolutions trains a mixed_float16 step where float16 runs on Eigen."""
    names = [info.name for info in registry.model_catalog() if info.atrous]
    assert {"hqmd_baseline", "hqmd_baseline_plus", "bts"} <= set(names)
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", EIGEN_SCRIPT, json.dumps(names)], capture_output=True, text=True,
                          env=env, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT "):])
    assert report["float16_probe"] is False
    assert "do not yet support dilation rates larger than 1" in report["control"]
    assert set(report["models"]) == set(names)
    for name, result in report["models"].items():
        assert np.isfinite(result["loss"]), name
        assert result["output_dtype"] == "float32" and result["compute_dtypes"] == ["float16"], name
        assert result["native"] is False, name
