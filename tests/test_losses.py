"""Losses against float64 NumPy references written here from the papers' and official codes' formulas."""

import os

import numpy as np
import pytest
import tensorflow as tf

from hqdepth import losses

RNG = np.random.default_rng(int(os.environ["HQDEPTH_TEST_SEED"]))


def np_sobel(x, padding="reflect"):
    """tf.image.sobel_edges by definition: 3x3 cross-correlation, unnormalised kernels."""
    ky = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float64)
    kx = ky.T
    mode = "reflect" if padding == "reflect" else "constant"
    p = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)), mode=mode)
    h, w = x.shape[1:3]
    dy = np.zeros(x.shape)
    dx = np.zeros(x.shape)
    for i in range(3):
        for j in range(3):
            window = p[:, i:i + h, j:j + w]
            dy += ky[i, j] * window
            dx += kx[i, j] * window
    return dy, dx


def np_grad_valid(valid, padding="reflect"):
    if padding == "reflect":
        p = np.pad(valid, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    else:
        p = np.pad(valid, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=True)
    h, w = valid.shape[1:3]
    ok = np.ones(valid.shape, bool)
    for i in range(3):
        for j in range(3):
            ok &= p[:, i:i + h, j:j + w]
    return ok


def make_batch(shape=(3, 12, 16, 1), invalid_fraction=0.15):
    gt = RNG.uniform(0.5, 10.0, shape)
    pred = gt + RNG.normal(0, 1.0, shape)
    pred = np.clip(pred, 0.1, None)
    holes = RNG.uniform(size=shape) < invalid_fraction
    gt[holes] = 0.0
    gt.flat[RNG.integers(gt.size)] = np.nan
    gt.flat[RNG.integers(gt.size)] = np.inf
    gt.flat[RNG.integers(gt.size)] = -1.0
    # c = 0 case: one pixel where prediction equals ground truth in every image of the batch
    pred[:, 3, 4, 0] = gt[:, 3, 4, 0] = 2.0
    return gt.astype(np.float32), pred.astype(np.float32)


def np_valid(gt, mask_invalid):
    if not mask_invalid:
        return np.ones(gt.shape, bool)
    with np.errstate(invalid="ignore"):
        return np.isfinite(gt) & (gt > 0)


def np_berhu(gt, pred, mask_invalid=True, per_pixel=True, ratio=0.2):
    gt, pred = gt.astype(np.float64), pred.astype(np.float64)
    valid = np_valid(gt, mask_invalid)
    r = np.where(valid, np.abs(pred - np.where(valid, gt, 0)), 0.0)
    c = ratio * (r.max(axis=0, keepdims=True) if per_pixel else r.max())
    c = np.maximum(c, 1e-6)
    c = np.broadcast_to(c, r.shape)
    value = np.where(r < c, r, (r**2 + c**2) / (2 * c))
    return value[valid].mean()


def np_gradients(gt, pred, mask_invalid=True, padding="reflect"):
    valid = np_valid(gt, mask_invalid)
    gt = np.where(valid, gt, 0.0).astype(np.float64)
    gy, gx = np_sobel(gt, padding)
    py, px = np_sobel(pred.astype(np.float64), padding)
    weight = np_grad_valid(valid, padding) if mask_invalid else valid
    return gy, gx, py, px, weight


def np_hqmd_terms(gt, pred, mask_invalid=True, per_pixel=True, reduction="mean"):
    gy, gx, py, px, ok = np_gradients(gt, pred, mask_invalid)
    mg = (np.abs(gy - py) + np.abs(gx - px))[ok].mean()
    dr = np.abs(gy * px - gx * py)[ok].mean()
    cos = (1 + gy * py + gx * px) / (np.sqrt(1 + gy**2 + gx**2) * np.sqrt(1 + py**2 + px**2))
    return {
        "l_depth": np_berhu(gt, pred, mask_invalid, per_pixel),
        "l_grad_mg": mg / 2 if reduction == "mean" else mg,
        "l_grad_dr": dr,
        "l_normal": (1 - cos)[ok].mean(),
    }


def np_hu_terms(gt, pred, mask_invalid=True):
    """Hu et al. train.py with their (negated) kernels and zero padding."""
    valid = np_valid(gt, mask_invalid)
    g = np.where(valid, gt, 0.0).astype(np.float64)
    d = pred.astype(np.float64)
    gy, gx = np_sobel(g, "zero")
    py, px = np_sobel(d, "zero")
    gy, gx, py, px = -gy, -gx, -py, -px  # Hu's kx = [[1,0,-1],...], ky = [[1,2,1],...]
    ok = np_grad_valid(valid, "zero") if mask_invalid else valid
    n_d = np.stack([-px, -py, np.ones_like(px)], -1)
    n_g = np.stack([-gx, -gy, np.ones_like(gx)], -1)
    cos = (n_d * n_g).sum(-1) / (np.linalg.norm(n_d, axis=-1) * np.linalg.norm(n_g, axis=-1))
    return {
        "l_depth": np.log(np.abs(d - g) + 0.5)[valid].mean(),
        "l_grad": np.log(np.abs(px - gx) + 0.5)[ok].mean() + np.log(np.abs(py - gy) + 0.5)[ok].mean(),
        "l_normal": np.abs(1 - cos)[ok].mean(),
    }


@pytest.mark.parametrize("padding", ["reflect", "zero"])
def test_sobel_matches_reference_and_tf_image(padding):
    x = RNG.normal(size=(2, 9, 13, 1)).astype(np.float32)
    dy, dx = losses.sobel(x, padding)
    ref_dy, ref_dx = np_sobel(x, padding)
    np.testing.assert_allclose(dy, ref_dy, atol=1e-5)
    np.testing.assert_allclose(dx, ref_dx, atol=1e-5)
    if padding == "reflect":  # the published behaviour the HQMD code relies on
        edges = tf.image.sobel_edges(tf.constant(x)).numpy()
        np.testing.assert_allclose(dy, edges[..., 0], atol=1e-5)
        np.testing.assert_allclose(dx, edges[..., 1], atol=1e-5)
    ramp = np.tile(np.arange(8, dtype=np.float32), (1, 6, 1))[..., None]
    assert np.allclose(losses.sobel(ramp, padding, normalize=True)[1][:, 1:-1, 1:-1], 1.0)


@pytest.mark.parametrize("mask_invalid", [True, False])
@pytest.mark.parametrize("threshold", ["batch_max_per_pixel", "batch_max"])
def test_berhu_matches_reference(mask_invalid, threshold):
    gt, pred = make_batch()
    if not mask_invalid:
        gt = np.nan_to_num(gt, nan=0.0, posinf=0.0)
    loss = losses.BerHu(threshold=threshold, mask_invalid=mask_invalid)
    expected = np_berhu(gt, pred, mask_invalid, threshold == "batch_max_per_pixel")
    assert float(loss(gt, pred)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("mask_invalid", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_hqmd_terms_match_reference(mask_invalid, reduction):
    gt, pred = make_batch()
    if not mask_invalid:
        gt = np.nan_to_num(gt, nan=0.0, posinf=0.0)
    loss = losses.HQMDLoss(grad_magnitude_reduction=reduction, normal_weight=0.5, mask_invalid=mask_invalid)
    expected = np_hqmd_terms(gt, pred, mask_invalid, reduction=reduction)
    terms = {k: float(v) for k, v in loss.terms(gt, pred).items()}
    for key in expected:
        assert terms[key] == pytest.approx(expected[key], rel=1e-5), key
    total = expected["l_depth"] + expected["l_grad_mg"] + expected["l_grad_dr"] + 0.5 * expected["l_normal"]
    assert float(loss(gt, pred)) == pytest.approx(total, rel=1e-5)
    # the single-term losses agree with the composite's terms
    assert float(losses.GradientMagnitude(reduction=reduction, mask_invalid=mask_invalid)(gt, pred)) == pytest.approx(
        expected["l_grad_mg"], rel=1e-5)
    assert float(losses.GradientDirection(mask_invalid=mask_invalid)(gt, pred)) == pytest.approx(
        expected["l_grad_dr"], rel=1e-5)
    assert float(losses.SurfaceNormal(mask_invalid=mask_invalid)(gt, pred)) == pytest.approx(
        expected["l_normal"], rel=1e-5)


@pytest.mark.parametrize("mask_invalid", [True, False])
def test_hu_loss_matches_reference(mask_invalid):
    gt, pred = make_batch()
    if not mask_invalid:
        gt = np.nan_to_num(gt, nan=0.0, posinf=0.0)
    loss = losses.HuLoss(mask_invalid=mask_invalid)
    expected = np_hu_terms(gt, pred, mask_invalid)
    terms = {k: float(v) for k, v in loss.terms(gt, pred).items()}
    for key in expected:
        assert terms[key] == pytest.approx(expected[key], rel=1e-5), key
    assert float(loss(gt, pred)) == pytest.approx(sum(expected.values()), rel=1e-5)


def test_zero_at_perfect_prediction_and_finite_gradients():
    gt, _ = make_batch()
    valid = np.isfinite(gt) & (gt > 0)
    pred = np.where(valid, gt, 1.0).astype(np.float32)
    for loss in (losses.BerHu(), losses.BerHu(threshold="batch_max"), losses.GradientMagnitude(),
                 losses.GradientDirection(), losses.SurfaceNormal(), losses.HQMDLoss(normal_weight=1.0)):
        assert abs(float(loss(gt, pred))) < 1e-6, loss.name
    # Hu's log terms have their minimum ln(0.5) at a perfect prediction
    assert float(losses.HuLoss(normal_weight=0.0)(gt, pred)) == pytest.approx(3 * np.log(0.5), abs=1e-6)
    # c = 0 everywhere (perfect prediction, unmasked): value 0, gradient finite
    for loss in (losses.HQMDLoss(mask_invalid=False), losses.BerHu(mask_invalid=False),
                 losses.HuLoss(mask_invalid=False)):
        clean = np.where(valid, gt, 0.0).astype(np.float32)
        variable = tf.Variable(clean)
        with tf.GradientTape() as tape:
            value = loss(clean, variable)
        grad = tape.gradient(value, variable).numpy()
        assert np.isfinite(float(value)) and np.all(np.isfinite(grad)), loss.name
    # invalid ground truth (NaN, inf, 0, negative) never reaches value or gradient
    _, pred = make_batch()
    variable = tf.Variable(pred)
    with tf.GradientTape() as tape:
        value = losses.HQMDLoss(normal_weight=1.0)(gt, variable) + losses.HuLoss()(gt, variable)
    grad = tape.gradient(value, variable).numpy()
    assert np.isfinite(float(value)) and np.all(np.isfinite(grad))
    assert np.all(grad[~np_grad_valid(valid) & ~valid] == 0.0)


def test_berhu_threshold_options_differ_and_stop_gradient():
    gt, pred = make_batch(invalid_fraction=0.0)
    gt = np.nan_to_num(gt, nan=1.0, posinf=1.0).clip(0.1)
    per_pixel = float(losses.BerHu()(gt, pred))
    scalar = float(losses.BerHu(threshold="batch_max")(gt, pred))
    assert per_pixel != pytest.approx(scalar, rel=1e-3)
    variable = tf.Variable(pred)
    grads = []
    for stop in (False, True):
        with tf.GradientTape() as tape:
            value = losses.BerHu(stop_gradient_threshold=stop)(gt, variable)
        grads.append(tape.gradient(value, variable).numpy())
    assert not np.allclose(grads[0], grads[1])


def test_term_metrics_and_serialization():
    import keras

    loss = losses.HQMDLoss(grad_direction_weight=0.5, berhu_threshold="batch_max", mask_invalid=False)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert restored.get_config() == loss.get_config()
    gt, pred = make_batch()
    gt = np.nan_to_num(gt, nan=0.0, posinf=0.0)
    metrics = loss.term_metrics()
    assert [m.name for m in metrics] == ["l_depth", "l_grad_mg", "l_grad_dr", "l_normal"]
    for metric in metrics:
        metric.update_state(gt, pred)
    expected = np_hqmd_terms(gt, pred, mask_invalid=False, per_pixel=False)
    for metric in metrics:
        assert float(metric.result()) == pytest.approx(expected[metric.name], rel=1e-5)
    clone = keras.metrics.deserialize(keras.metrics.serialize(metrics[1]))
    assert clone.term == "l_grad_mg" and clone.loss.get_config() == loss.get_config()
    with pytest.raises(ValueError, match="threshold"):
        losses.BerHu(threshold="median")
