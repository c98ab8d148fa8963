"""BTS planar-guidance layers, MRPAN attention layers and the frozen-affine batch norm, against float64
NumPy implementations of their formulas (specs/other_models.md §3.4-3.5, §4.3) on random inputs."""

import math
import os

import keras
import numpy as np
import pytest

from hqdepth.layers import (FocalScaling, FrozenAffineBatchNormalization, LocalPlanarGuidance, PlaneCoefficients,
                            PositionAttention, ScaleAttention)

RNG = np.random.default_rng(int(os.environ["HQDEPTH_TEST_SEED"]))


def np_planes(raw, max_depth, theta_max):
    sig = 1.0 / (1.0 + np.exp(-raw.astype(np.float64)))
    theta, phi, dist = sig[..., 0] * theta_max, sig[..., 1] * 2 * math.pi, sig[..., 2] * max_depth
    return np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta), dist], -1)


def np_lpg(planes, k, min_denominator=None, with_condition=False):
    """The CUDA kernel's loop: output pixel (r, c) uses the plane of (r // k, c // k).

    with_condition also returns (|n1 u| + |n2 v| + |n3|) / |den|: how much float32 rounding in the
    denominator's sum is amplified in the output (large where the plane is nearly edge-on)."""
    b, h, w, _ = planes.shape
    out = np.zeros((b, h * k, w * k, 1))
    condition = np.ones_like(out)
    for r in range(h * k):
        v = ((r % k) - (k - 1) / 2) / k
        for c in range(w * k):
            u = ((c % k) - (k - 1) / 2) / k
            n1, n2, n3, n4 = np.moveaxis(planes[:, r // k, c // k].astype(np.float64), -1, 0)
            den = n1 * u + n2 * v + n3
            if min_denominator is not None:
                den = np.maximum(den, min_denominator)
            out[:, r, c, 0] = n4 / den
            condition[:, r, c, 0] = (np.abs(n1 * u) + np.abs(n2 * v) + np.abs(n3)) / np.abs(den)
    return (out, condition) if with_condition else out


def assert_within_float32_bound(actual, expected, condition):
    """A few float32 ulps, amplified where the denominator is a small difference of larger terms."""
    tolerance = 4 * np.finfo(np.float32).eps * (1 + condition) * np.abs(expected)
    excess = np.abs(actual - expected) / tolerance
    assert (excess <= 1).all(), f"{(excess > 1).sum()} elements beyond the bound, worst x{excess.max():.2f}"


def random_planes(shape, theta_max_deg, max_depth=10.0):
    theta = np.radians(RNG.uniform(0, theta_max_deg, shape))
    phi = RNG.uniform(0, 2 * math.pi, shape)
    dist = RNG.uniform(0.1, max_depth, shape)
    return np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta), dist], -1)


def test_plane_coefficients_match_formula():
    raw = RNG.normal(0, 2, (2, 5, 7, 3)).astype(np.float32)
    for theta_max in (math.pi / 3, math.pi / 6):
        out = np.asarray(PlaneCoefficients(max_depth=80.0, theta_max=theta_max)(raw))
        np.testing.assert_allclose(out, np_planes(raw, 80.0, theta_max), rtol=2e-6, atol=2e-6)
        np.testing.assert_allclose(np.linalg.norm(out[..., :3], axis=-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("k", [8, 4, 2])
def test_lpg_matches_numpy_loop_exactly_where_denominator_is_safe(k):
    planes = random_planes((2, 3, 4), theta_max_deg=50.0)  # denominator >= cos50 - sin50 * 0.62 > 0
    out = np.asarray(LocalPlanarGuidance(k, min_denominator=None)(planes.astype(np.float32)))
    assert out.shape == (2, 3 * k, 4 * k, 1)
    assert_within_float32_bound(out, *np_lpg(planes.astype(np.float32), k, with_condition=True))


def test_lpg_guard_clamps_vanishing_denominator():
    planes = random_planes((2, 4, 4), theta_max_deg=60.0)
    s = math.sin(math.radians(60)) / math.sqrt(2)  # theta 60 deg > 58.25, phi 45 deg: den < 0 at u = v = -0.4375
    planes[0, 0, 0] = [s, s, math.cos(math.radians(60)), 5.0]
    exact = np_lpg(planes, 8)
    assert (exact <= 0).any() or not np.isfinite(exact).all()  # the official formula goes wrong here
    planes32 = planes.astype(np.float32)
    guarded = np.asarray(LocalPlanarGuidance(8, min_denominator=1e-3)(planes32))
    assert_within_float32_bound(guarded, *np_lpg(planes32, 8, 1e-3, with_condition=True))
    assert np.isfinite(guarded).all() and guarded.min() > 0
    clipped = np.asarray(LocalPlanarGuidance(8, max_output=20.0)(planes.astype(np.float32)))
    assert clipped.max() <= 20.0


def test_lpg_gradient_includes_n4_factor():
    """Autodiff: d depth / d n3 = -n4 / den^2 (the TF1 hand-written gradient drops n4)."""
    import tensorflow as tf

    planes = tf.constant(random_planes((1, 1, 1), 30.0, max_depth=7.0).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(planes)
        depth = LocalPlanarGuidance(2, min_denominator=None)(planes)[0, 0, 0, 0]
    grad = tape.gradient(depth, planes).numpy()[0, 0, 0]
    n1, n2, n3, n4 = planes.numpy()[0, 0, 0]
    den = n1 * -0.25 + n2 * -0.25 + n3
    np.testing.assert_allclose(grad, [n4 * 0.25 / den**2, n4 * 0.25 / den**2, -n4 / den**2, 1 / den], rtol=1e-5)


def test_focal_scaling():
    depth = RNG.uniform(1, 80, (3, 4, 5, 1)).astype(np.float32)
    focal = np.array([707.0912, 715.0873, 721.5377], np.float32)
    out = np.asarray(FocalScaling()([depth, focal]))
    np.testing.assert_allclose(out, depth * focal[:, None, None, None] / 715.0873, rtol=1e-6)


def test_planar_layers_serialize():
    for layer in (PlaneCoefficients(80.0, math.pi / 6), LocalPlanarGuidance(4, None, 20.0), FocalScaling(700.0)):
        clone = layer.__class__.from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_position_attention_matches_danet_formula():
    x = RNG.normal(0, 1, (2, 3, 5, 16)).astype(np.float32)
    layer = PositionAttention(reduction=8)
    layer(x)
    weights = [RNG.normal(0, 0.3, w.shape).astype(np.float32) for w in layer.weights]
    layer.set_weights(weights)
    wq, bq, wk, bk, wv, bv, gamma = [w.astype(np.float64) for w in weights]
    tokens = x.reshape(2, 15, 16).astype(np.float64)
    attention = _softmax((tokens @ wq + bq) @ np.swapaxes(tokens @ wk + bk, 1, 2), axis=-1)
    expected = (gamma * attention @ (tokens @ wv + bv) + tokens).reshape(x.shape)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-5)
    fresh = PositionAttention()
    np.testing.assert_array_equal(np.asarray(fresh(x)), x)  # gamma starts at 0: identity


def test_scale_attention_matches_formula():
    target = RNG.normal(0, 1, (2, 4, 3, 6)).astype(np.float32)
    sources = [RNG.normal(0, 1, (2, 4, 3, c)).astype(np.float32) for c in (5, 2, 7)]
    layer = ScaleAttention(key_channels=4)
    layer([target, *sources])
    weights = [RNG.normal(0, 0.4, w.shape).astype(np.float32) for w in layer.weights]
    layer.set_weights(weights)
    w = [v.astype(np.float64) for v in weights]
    q = target @ w[0] + w[1]
    logits, values = [], []
    for s, source in enumerate(sources):
        kk, kb, vk, vb = w[2 + 4 * s: 6 + 4 * s]
        logits.append(((source @ kk + kb) * q).sum(-1))
        values.append(source @ vk + vb)
    a = _softmax(np.stack(logits, -1) / 2.0, axis=-1)
    expected = target + w[-1] * sum(a[..., s:s + 1] * values[s] for s in range(3))
    np.testing.assert_allclose(np.asarray(layer([target, *sources])), expected, rtol=1e-5, atol=1e-5)


def test_frozen_affine_batch_norm_trains_statistics_not_affine():
    x = RNG.normal(3.0, 2.0, (8, 4, 4, 5)).astype(np.float32)
    plain = keras.layers.BatchNormalization(momentum=0.5)
    frozen = FrozenAffineBatchNormalization(momentum=0.5)
    plain(x)
    frozen(x)
    values = [RNG.uniform(0.5, 2.0, 5).astype(np.float32) for _ in range(4)]
    plain.set_weights(values)
    frozen.set_weights(values)  # same order: gamma, beta, moving mean, moving variance
    np.testing.assert_allclose(np.asarray(frozen(x, training=False)), np.asarray(plain(x, training=False)), atol=1e-5)
    assert frozen.trainable_weights == [] and len(frozen.non_trainable_weights) == 4
    frozen.trainable = False
    frozen.trainable = True  # does not unfreeze gamma/beta
    assert frozen.trainable_weights == []
    np.testing.assert_allclose(np.asarray(frozen(x, training=True)), np.asarray(plain(x, training=True)), atol=1e-5)
    np.testing.assert_allclose(frozen.moving_mean.numpy(), plain.moving_mean.numpy(), rtol=1e-6)
    assert not np.allclose(frozen.moving_mean.numpy(), values[2])  # statistics moved (train mode)
    np.testing.assert_array_equal(frozen.gamma.numpy(), values[0])
    clone = FrozenAffineBatchNormalization.from_config(frozen.get_config())
    clone(x)
    assert clone.trainable_weights == []
