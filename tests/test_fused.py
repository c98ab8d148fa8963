"""Fused kernels the package uses on TensorFlow: `FusedBatchNormalization` and `FusedAdam`/`FusedAdamW` against
float64 NumPy references of Keras' formulas, against Keras' own layer/optimizer, and that the fused ops are really
in the traced graphs (a silent fall back to Keras' code would pass the numerical checks)."""


import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from hqdepth.layers import FrozenAffineBatchNormalization, FusedBatchNormalization
from hqdepth.training.optimizers import FusedAdam, FusedAdamW, get_optimizer


def graph_ops(function, *specs):
    return {op.type for op in tf.function(function).get_concrete_function(*specs).graph.get_operations()}


def batch_norm_reference(x, gamma, beta, moving_mean, moving_variance, momentum, epsilon):
    """Keras' BatchNormalization in float64: batch statistics (biased variance) and moving-average update."""
    x = x.astype(np.float64)
    mean, variance = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    train = (x - mean) / np.sqrt(variance + epsilon) * gamma + beta
    new_mean = moving_mean * momentum + mean * (1 - momentum)
    new_variance = moving_variance * momentum + variance * (1 - momentum)
    infer = (x - new_mean) / np.sqrt(new_variance + epsilon) * gamma + beta
    return train, new_mean, new_variance, infer


def batch_norm_gradients(x, gamma, epsilon, upstream):
    """d sum(train * upstream) / d (input, gamma, beta) of the training-mode batch norm, in float64."""
    x, upstream = x.astype(np.float64), upstream.astype(np.float64)
    axes = (0, 1, 2)
    scale = np.sqrt(x.var(axis=axes) + epsilon)
    normalized = (x - x.mean(axis=axes)) / scale
    d_input = gamma / scale * (upstream - upstream.mean(axis=axes)
                               - normalized * (upstream * normalized).mean(axis=axes))
    return d_input, (upstream * normalized).sum(axis=axes), upstream.sum(axis=axes)


@pytest.mark.parametrize("epsilon", [1e-5, 1e-3])  # 1e-5: below the tf.nn wrapper's 1.001e-5 floor, used as given
def test_fused_batch_norm_against_numpy_and_keras(rng, epsilon):
    mean, spread = rng.uniform(-3, 3), rng.uniform(0.01, 4)
    x = rng.normal(mean, spread, (3, 7, 9, 6)).astype(np.float32)
    x[..., 0] *= 1e-3  # a channel with a variance near epsilon
    weights = rng.normal(size=x.shape).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 2, 6), rng.normal(size=6)
    moving_mean, moving_variance = rng.normal(size=6), rng.uniform(0.5, 2, 6)
    results = {}
    for cls in (FusedBatchNormalization, keras.layers.BatchNormalization):
        layer = cls(momentum=0.8, epsilon=epsilon)
        layer.build(x.shape)
        layer.set_weights([gamma, beta, moving_mean, moving_variance])
        inputs = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            train = layer(inputs, training=True)
            value = tf.reduce_sum(train * weights)
        gradients = tape.gradient(value, [inputs, layer.gamma, layer.beta])
        results[cls] = [train, layer.moving_mean, layer.moving_variance, layer(x, training=False), *gradients]
    want = batch_norm_reference(x, gamma, beta, moving_mean, moving_variance, 0.8, epsilon)
    fused, keras_bn = results[FusedBatchNormalization], results[keras.layers.BatchNormalization]
    # float32 loses the normalised values' low bits in x - mean when the mean is large beside the spread (up to
    # 300x here): the training output and the gradients are held to that conditioning, which a float32 sum
    # cannot beat (a fixed 2e-6 failed about 1 seed in 100: mean -2.04, spread 0.011 -> 4.6 % off); oneDNN's fused
    # backward pass also loses eps * (mean / spread)^2 (d gamma 2e-4 off at mean 1.36, spread 0.077; 1 seed in 500)
    ratio = abs(mean) / spread
    relative = 1e-5 + 8 * np.finfo(np.float32).eps * (ratio + ratio**2)
    for name, got, expected in zip(("train", "moving mean", "moving variance", "inference"), fused, want):
        scale = np.abs(expected).max()
        tolerance = max(2e-6, 8 * np.finfo(np.float32).eps * ratio * gamma.max()) if name == "train" else 2e-6
        np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=tolerance * max(scale, 1.0), err_msg=name)
    for name, ours, theirs, expected in zip(("d input", "d gamma", "d beta"), fused[4:], keras_bn[4:],
                                            batch_norm_gradients(x, gamma, epsilon, weights)):
        for got in (ours, theirs):
            np.testing.assert_allclose(np.asarray(got), expected, rtol=0,
                                       atol=relative * max(np.abs(expected).max(), 1.0), err_msg=name)
    layer = FusedBatchNormalization()
    layer.build((None, 4, 4, 3))
    spec = tf.TensorSpec((2, 4, 4, 3))
    assert "FusedBatchNormV3" in graph_ops(lambda v: layer(v, training=True), spec)
    assert "FusedBatchNormV3" in graph_ops(lambda v: layer(v, training=False), spec)


@pytest.mark.parametrize("shape", [(8, 1, 1, 5), (3, 2, 3, 4), (6, 7)])  # 4-D: fused kernel; 2-D: keras.ops
def test_unbiased_moving_variance_as_tf1_fused_and_pytorch(rng, shape):
    """`unbiased_moving_variance=True` averages sum / (n - 1) into the moving variance (TF1's fused batch norm,
    PyTorch), normalising the batch as before; n = 8 is HQMD's image-pooling branch (one value per image)."""
    x = rng.normal(rng.uniform(-2, 2), rng.uniform(0.5, 3), shape).astype(np.float32)
    channels, axes = shape[-1], tuple(range(len(shape) - 1))
    gamma, beta = rng.uniform(0.5, 2, channels), rng.normal(size=channels)
    moving_mean, moving_variance = rng.normal(size=channels), rng.uniform(0.5, 2, channels)
    x64 = x.astype(np.float64)
    n = x64.size // channels
    biased = x64.var(axis=axes)
    want_train = (x64 - x64.mean(axis=axes)) / np.sqrt(biased + 1e-5) * gamma + beta
    got = {}
    for unbiased in (True, False):
        layer = FusedBatchNormalization(momentum=0.8, epsilon=1e-5, unbiased_moving_variance=unbiased)
        layer.build(shape)
        layer.set_weights([gamma, beta, moving_mean, moving_variance])
        train = np.asarray(layer(tf.constant(x), training=True))
        np.testing.assert_allclose(train, want_train, atol=2e-5 * np.abs(want_train).max())
        np.testing.assert_allclose(np.asarray(layer.moving_mean), moving_mean * 0.8 + x64.mean(axis=axes) * 0.2,
                                   atol=1e-6 * max(np.abs(moving_mean).max(), 1))
        got[unbiased] = np.asarray(layer.moving_variance, np.float64)
    np.testing.assert_allclose(got[True], moving_variance * 0.8 + biased * n / (n - 1) * 0.2, rtol=2e-6)
    np.testing.assert_allclose(got[False], moving_variance * 0.8 + biased * 0.2, rtol=2e-6)
    restored = FusedBatchNormalization.from_config(FusedBatchNormalization(unbiased_moving_variance=True).get_config())
    assert restored.unbiased_moving_variance is True


@pytest.mark.parametrize("groups,shape", [(2, (6, 3, 4, 5)), (3, (6, 2, 2, 3)), (2, (4, 5))])
def test_batch_groups_normalise_each_group_and_average_the_first(rng, groups, shape):
    """`batch_groups`: each of the equal groups of the batch normalised by its own statistics (as that many GPUs with
    plain batch norm); the moving averages take the first group's, biased or unbiased; inference is unchanged."""
    x = rng.normal(rng.uniform(-2, 2), rng.uniform(0.5, 3), shape).astype(np.float32)
    channels, axes = shape[-1], tuple(range(len(shape) - 1))
    gamma, beta = rng.uniform(0.5, 2, channels), rng.normal(size=channels)
    moving_mean, moving_variance = rng.normal(size=channels), rng.uniform(0.5, 2, channels)
    parts = np.split(x.astype(np.float64), groups)
    want = np.concatenate([(p - p.mean(axis=axes)) / np.sqrt(p.var(axis=axes) + 1e-5) * gamma + beta for p in parts])
    n = parts[0].size // channels
    for unbiased in (False, True):
        layer = FusedBatchNormalization(momentum=0.8, epsilon=1e-5, unbiased_moving_variance=unbiased,
                                        batch_groups=groups)
        layer.build(shape)
        layer.set_weights([gamma, beta, moving_mean, moving_variance])
        got = np.asarray(layer(tf.constant(x), training=True))
        np.testing.assert_allclose(got, want, atol=2e-5 * np.abs(want).max())
        np.testing.assert_allclose(np.asarray(layer.moving_mean), moving_mean * 0.8 + parts[0].mean(axis=axes) * 0.2,
                                   atol=1e-6 * max(np.abs(moving_mean).max(), 1))
        first_variance = parts[0].var(axis=axes) * (n / (n - 1) if unbiased else 1.0)
        np.testing.assert_allclose(np.asarray(layer.moving_variance), moving_variance * 0.8 + first_variance * 0.2,
                                   rtol=2e-6)
        # the whole batch's statistics give another result: the groups are used
        whole = (x - x.mean(axis=axes)) / np.sqrt(x.var(axis=axes) + 1e-5) * gamma + beta
        assert np.abs(got - whole).max() > 1e-3
        inference = np.asarray(layer(tf.constant(x), training=False))
        np.testing.assert_allclose(inference, (x - layer.moving_mean) / np.sqrt(layer.moving_variance + 1e-5) * gamma
                                   + beta, atol=2e-5 * np.abs(inference).max())
    assert FusedBatchNormalization.from_config(layer.get_config()).batch_groups == groups


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_fused_batch_norm_half_precision(rng, policy):
    x = rng.normal(1.0, 2.0, (2, 5, 5, 4)).astype(np.float32)
    outputs = []
    for cls in (FusedBatchNormalization, keras.layers.BatchNormalization):
        layer = cls(dtype=policy)
        outputs.append(layer(x, training=True))
    assert outputs[0].dtype == outputs[1].dtype == keras.mixed_precision.Policy(policy).compute_dtype
    tolerance = 1e-2 if policy == "mixed_float16" else 5e-2  # one rounding of the output to 11 / 8 bits
    np.testing.assert_allclose(np.asarray(outputs[0], np.float32), np.asarray(outputs[1], np.float32),
                               atol=tolerance * np.abs(np.asarray(outputs[1], np.float32)).max())


def test_frozen_affine_is_fused_and_keeps_gamma_beta_fixed(rng):
    layer = FrozenAffineBatchNormalization()
    layer.build((None, 3, 3, 2))
    assert [v.name for v in layer.trainable_weights] == []
    assert "FusedBatchNormV3" in graph_ops(lambda v: layer(v, training=True), tf.TensorSpec((2, 3, 3, 2)))
    x = rng.normal(3.0, 1.0, (2, 3, 3, 2)).astype(np.float32)
    layer(x, training=True)  # statistics still update (PyTorch semantics)
    np.testing.assert_allclose(np.asarray(layer.moving_mean), 0.01 * x.mean(axis=(0, 1, 2)), rtol=1e-5)


def adam_reference(w, gradients, rates, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0, l2=0.0,
                   float32_betas=True):
    """Keras' Adam / AdamW in float64 (decoupled decay applied before the update, as Keras does), with
    PyTorch Adam's weight_decay as `l2` (added to the gradient). The fused kernel takes the betas as float32
    constants (`float32_betas`): 1 - float32(0.999) is 1.3e-5 away from 0.001, which shows in the second
    moment; Keras' own update computes 1 - beta in Python."""
    if float32_betas:
        beta_1, beta_2 = float(np.float32(beta_1)), float(np.float32(beta_2))
    w = w.astype(np.float64)
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, (g, lr) in enumerate(zip(gradients, rates), start=1):
        g = g + l2 * w
        w = w - lr * weight_decay * w
        m = m + (g - m) * (1 - beta_1)
        v = v + (g * g - v) * (1 - beta_2)
        w = w - lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t) * m / (np.sqrt(v) + epsilon)
    return w, m, v


@pytest.mark.parametrize("name,weight_decay,l2,fused", [("adam", 0.0, 0.0, True), ("AdamW", 0.05, 0.0, True),
                                                        ("adam", 0.0, 0.3, True), ("adam", 0.0, 0.3, False)])
def test_fused_adam_against_numpy(rng, name, weight_decay, l2, fused):
    w0 = rng.normal(size=(6, 5)).astype(np.float32)
    # small gradients beside the weights: the L2 term is then a large part of what the moments see
    gradients = [rng.normal(scale=rng.uniform(0.01, 3 - 2.9 * bool(l2)), size=w0.shape).astype(np.float32)
                 for _ in range(6)]
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, 2, 0.5, staircase=True)
    rates = [float(schedule(step)) for step in range(len(gradients))]
    config = {"learning_rate": schedule, "epsilon": 1e-7, **({"weight_decay": weight_decay} if weight_decay else {}),
              **({"l2_weight_decay": l2} if l2 else {})}
    optimizer = get_optimizer(name, config, fused=fused)
    assert isinstance(optimizer, FusedAdamW if weight_decay else FusedAdam) and optimizer.one_pass == fused
    variable = keras.Variable(w0)
    optimizer.build([variable])
    step = tf.function(lambda g: optimizer.apply_gradients([(g, variable)]))
    assert fused == ("ResourceApplyAdam" in {op.type for op in step.get_concrete_function(
        tf.TensorSpec(w0.shape)).graph.get_operations()})
    for gradient in gradients:
        step(tf.constant(gradient))
    w, m, v = adam_reference(w0, gradients, rates, weight_decay=weight_decay, l2=l2, float32_betas=fused)
    if l2:  # the coupled decay is not the decoupled one, nor nothing
        for other in (adam_reference(w0, gradients, rates)[0], adam_reference(w0, gradients, rates, weight_decay=l2)[0]):
            assert np.abs(other - w).max() > 1e-4
    np.testing.assert_allclose(np.asarray(variable), w, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(optimizer._momentums[0]), m, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(optimizer._velocities[0]), v, rtol=1e-5, atol=1e-9)
    assert np.abs(np.asarray(variable) - w0).max() > 1e-3  # the steps moved the weights


def pytorch_adam_reference(w, gradients, rates, beta_1, beta_2, epsilon, weight_decay=0.0):
    """`torch.optim.AdamW` (Adam when weight_decay is 0) as its documentation writes it, in float64: decay, moments,
    bias-corrected moments, epsilon added to sqrt of the corrected second moment."""
    w = w.astype(np.float64)
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, (g, lr) in enumerate(zip(gradients, rates), start=1):
        w = w * (1 - lr * weight_decay)
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        w = w - lr * (m / (1 - beta_1**t)) / (np.sqrt(v / (1 - beta_2**t)) + epsilon)
    return w


@pytest.mark.parametrize("name,weight_decay", [("adamw", 1e-2), ("adam", 0.0)])
@pytest.mark.parametrize("fused", [True, False])
def test_pytorch_epsilon_placement_against_torch_formula(rng, name, weight_decay, fused):
    """BTS's AdamW(eps=1e-3) with gradients near epsilon, where the placements differ most (first steps)."""
    w0 = rng.normal(size=(4, 3)).astype(np.float32)
    gradients = [rng.normal(scale=2e-3, size=w0.shape).astype(np.float32) for _ in range(5)]
    rates = [1e-2] * len(gradients)
    config = {"learning_rate": 1e-2, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-3,
              "epsilon_after_bias_correction": True, **({"weight_decay": weight_decay} if weight_decay else {})}
    optimizer = get_optimizer(name, config, fused=fused)
    variable = keras.Variable(w0)
    optimizer.build([variable])
    step = tf.function(lambda g: optimizer.apply_gradients([(g, variable)]))
    for gradient in gradients:
        step(tf.constant(gradient))
    betas = (float(np.float32(0.9)), float(np.float32(0.999))) if fused else (0.9, 0.999)
    want = pytorch_adam_reference(w0, gradients, rates, *betas, 1e-3, weight_decay)
    keras_placement = adam_reference(w0, gradients, rates, epsilon=1e-3, weight_decay=weight_decay,
                                     float32_betas=fused)[0]
    assert np.abs(keras_placement - want).max() > 1e-3  # the placements differ here by far more than round-off
    np.testing.assert_allclose(np.asarray(variable), want, rtol=0, atol=2e-6)
    restored = type(optimizer).from_config(optimizer.get_config())
    assert restored.epsilon_after_bias_correction is True and restored.epsilon == pytest.approx(1e-3)


def test_unfused_optimizer_is_keras_and_config_round_trips():
    assert type(get_optimizer("adam", {"learning_rate": 1e-3}, fused=False)) is keras.optimizers.Adam
    assert type(get_optimizer("sgd", {"learning_rate": 1e-3})) is keras.optimizers.SGD
    fused = get_optimizer("adamw", {"learning_rate": 1e-3, "weight_decay": 0.01})
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(fused))
    assert type(restored) is FusedAdamW and restored.weight_decay == 0.01
    coupled = get_optimizer("adam", {"learning_rate": 1e-3, "l2_weight_decay": 1e-4}, fused=False)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(coupled))
    assert type(restored) is FusedAdam and (restored.l2_weight_decay, restored.one_pass) == (1e-4, False)
    zero = get_optimizer("adam", {"learning_rate": 1e-3, "l2_weight_decay": 0.0}, fused=False)  # an ablation's value
    assert type(zero) is FusedAdam and not zero.one_pass
    with pytest.raises(ValueError, match="l2_weight_decay"):
        get_optimizer("adam", {"learning_rate": 1e-3, "l2_weight_decay": -1.0})
    with pytest.raises(ValueError, match="l2_weight_decay"):  # only Adam/AdamW take it
        get_optimizer("sgd", {"learning_rate": 1e-3, "l2_weight_decay": 1e-4})


@pytest.mark.parametrize("fused", [True, False])
def test_l2_weight_decay_skips_excluded_variables(rng, fused):
    """exclude_from_weight_decay (BTS-style decay_encoder_only) exempts a variable from the coupled L2 term too:
    it then moves exactly as under plain Adam, while its neighbour gets the term."""
    w0 = rng.normal(size=(4, 3)).astype(np.float32)
    gradients = [rng.normal(scale=0.05, size=w0.shape).astype(np.float32) for _ in range(4)]
    optimizer = get_optimizer("adam", {"learning_rate": 1e-2, "l2_weight_decay": 0.5}, fused=fused)
    decayed, exempt = keras.Variable(w0, name="decayed"), keras.Variable(w0, name="exempt")
    optimizer.exclude_from_weight_decay(var_list=[exempt])
    optimizer.build([decayed, exempt])
    step = tf.function(lambda g: optimizer.apply_gradients([(g, decayed), (g, exempt)]))
    for gradient in gradients:
        step(tf.constant(gradient))
    rates = [1e-2] * len(gradients)
    np.testing.assert_allclose(np.asarray(exempt), adam_reference(w0, gradients, rates, float32_betas=fused)[0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(decayed), adam_reference(w0, gradients, rates, l2=0.5, float32_betas=fused)[0],
                               atol=1e-6)


def test_hqmd_batch_norms_average_the_unbiased_variance_as_tf_slim_fused():
    """HQMD's TF-slim batch norms are fused (unbiased moving variance): every batch norm of baseline+, the ASPP's
    included, does the same by default; the option switches all of them to Keras' average."""
    from hqdepth.models import get_entry

    for unbiased in (True, False):
        model = get_entry("hqmd_baseline_plus").builder(input_shape=(33, 49, 3), bn_unbiased_moving_variance=unbiased)
        norms = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
                 if isinstance(layer, FusedBatchNormalization)]
        assert len(norms) > 50 and "image_pooling_bn" in {layer.name for layer in norms}
        assert {layer.unbiased_moving_variance for layer in norms} == {unbiased}
    aspp = model.get_layer("aspp")
    assert type(aspp).from_config(aspp.get_config()).bn_unbiased_moving_variance is False


SYNCHRONIZED_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from hqdepth.layers import FusedBatchNormalization
    x = np.random.default_rng(int(sys.argv[1])).normal(1.0, 2.0, (4, 2, 3, 5)).astype(np.float32)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        layer = FusedBatchNormalization(momentum=0.8, unbiased_moving_variance=True, synchronized=True)
        layer.build(x.shape)
    dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices(x).batch(4))
    outputs = strategy.run(tf.function(lambda batch: layer(batch, training=True)), args=(next(iter(dataset)),))
    print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                      "outputs": np.concatenate([np.asarray(o) for o in strategy.experimental_local_results(outputs)]).tolist(),
                      "moving_mean": np.asarray(layer.moving_mean).tolist(),
                      "moving_variance": np.asarray(layer.moving_variance).tolist()}))
""")


def test_unbiased_moving_variance_over_replicas(rng):
    """Under a strategy (the trainer sets `synchronized` on every batch norm) the statistics and the count n of
    the unbiased average are the global batch's: two replicas of 2 images each equal one batch of 4."""
    seed = int(rng.integers(1 << 30))
    done = subprocess.run([sys.executable, "-c", SYNCHRONIZED_SCRIPT, str(seed)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    x = np.random.default_rng(seed).normal(1.0, 2.0, (4, 2, 3, 5)).astype(np.float32).astype(np.float64)
    mean, variance = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(result["outputs"], (x - mean) / np.sqrt(variance + 1e-3), atol=2e-5)
    np.testing.assert_allclose(result["moving_mean"], 0.2 * mean, atol=1e-6)
    np.testing.assert_allclose(result["moving_variance"], 0.8 + 0.2 * variance * 24 / 23, rtol=2e-6)
