"""SSIMMSE, SILog and MultiScaleDepthLoss against float64 NumPy references written from their formulas
(specs/other_models.md §1, §3.6, §4.2) on random data."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from hqdepth import losses

RNG = np.random.default_rng(int(os.environ["HQDEPTH_TEST_SEED"]))


def make_batch(shape=(3, 24, 28, 1), invalid_fraction=0.15, low=0.05, high=10.0):
    gt = RNG.uniform(low, high, shape)
    pred = np.clip(gt + RNG.normal(0, 1.0, shape), 0.05, None)
    gt[RNG.uniform(size=shape) < invalid_fraction] = 0.0
    gt.flat[RNG.integers(gt.size)] = np.nan
    gt.flat[RNG.integers(gt.size)] = -1.0
    return gt.astype(np.float32), pred.astype(np.float32)


def np_valid(gt):
    with np.errstate(invalid="ignore"):
        return np.isfinite(gt) & (gt > 0)


# --- SSIM + MSE -------------------------------------------------------------------------------------------

def np_ssim_map(x, y, max_val, size=11, sigma=1.5, k1=0.01, k2=0.03):
    """tf.image.ssim before its spatial mean: 2-D Gaussian window (softmax of -r^2 / 2 sigma^2), VALID."""
    coords = np.arange(size) - (size - 1) / 2
    g = -0.5 * (coords[:, None] ** 2 + coords[None, :] ** 2) / sigma**2
    window = np.exp(g) / np.exp(g).sum()
    x, y = x.astype(np.float64), y.astype(np.float64)
    h, w = x.shape[1] - size + 1, x.shape[2] - size + 1

    def filt(a):
        out = np.zeros((a.shape[0], h, w, a.shape[3]))
        for i in range(size):
            for j in range(size):
                out += window[i, j] * a[:, i:i + h, j:j + w]
        return out

    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    return (2 * mx * my + c1) / (mx**2 + my**2 + c1) * (2 * sxy + c2) / (sxx + syy + c2)


def np_ssim_mse(gt, pred, ssim_weight=1.0, mse_weight=1.0, max_val=10.0, mask_invalid=True):
    gt, pred = gt.astype(np.float64), pred.astype(np.float64)
    valid = np_valid(gt) if mask_invalid else np.ones(gt.shape, bool)
    g = np.where(valid, gt, pred if mask_invalid else gt)  # holes take the prediction's value
    ssim = np_ssim_map(g, pred, max_val)
    centre = valid[:, 5:5 + ssim.shape[1], 5:5 + ssim.shape[2]]
    l_ssim = (1 - ssim[centre].mean()) / 2
    l_mse = ((pred - np.where(valid, gt, 0)) ** 2)[valid].mean()
    return ssim_weight * l_ssim + mse_weight * l_mse, l_ssim, l_mse


def test_ssim_mse_matches_numpy_reference_with_holes():
    gt, pred = make_batch()
    loss = losses.SSIMMSE(ssim_weight=0.7, mse_weight=0.3, max_val=10.0)
    expected, l_ssim, l_mse = np_ssim_mse(gt, pred, 0.7, 0.3)
    terms = loss.terms(gt, pred)
    assert float(terms["l_ssim"]) == pytest.approx(l_ssim, rel=1e-4, abs=1e-6)
    assert float(terms["l_mse"]) == pytest.approx(l_mse, rel=1e-5)
    assert float(loss(gt, pred)) == pytest.approx(expected, rel=1e-4)


def test_ssim_mse_without_holes_equals_tf_image_ssim():
    gt = RNG.uniform(0.5, 80.0, (2, 20, 33, 1)).astype(np.float32)
    pred = np.clip(gt + RNG.normal(0, 5.0, gt.shape), 0.1, None).astype(np.float32)
    reference = float(tf.reduce_mean(tf.image.ssim(gt, pred, max_val=80.0)))
    for mask_invalid in (True, False):
        loss = losses.SSIMMSE(ssim_weight=1.0, mse_weight=0.0, ssim_scale=1.0, max_val=80.0, mask_invalid=mask_invalid)
        assert float(loss(gt, pred)) == pytest.approx(1.0 - reference, abs=2e-6)
    unmasked, _, _ = np_ssim_mse(gt, pred, mask_invalid=False, max_val=80.0)
    assert float(losses.SSIMMSE(max_val=80.0, mask_invalid=False)(gt, pred)) == pytest.approx(unmasked, rel=1e-5)


def test_ssim_mse_zero_at_perfect_prediction_finite_gradient():
    gt, _ = make_batch((2, 16, 16, 1))
    pred = tf.Variable(np.where(np_valid(gt), gt, 3.0).astype(np.float32))
    loss = losses.SSIMMSE()
    with tf.GradientTape() as tape:
        value = loss(gt, pred)
    assert float(value) == pytest.approx(0.0, abs=1e-6)
    assert np.isfinite(tape.gradient(value, pred).numpy()).all()


# --- SILog -------------------------------------------------------------------------------------------------

def np_silog(gt, pred, variance_focus=0.85, scale=10.0, min_depth=0.1, max_depth=None, offset=0.0, unbiased=False):
    gt, pred = gt.astype(np.float64), pred.astype(np.float64)
    with np.errstate(invalid="ignore"):
        keep = np_valid(gt) & (gt > min_depth)
        if max_depth is not None:
            keep &= gt < max_depth
    d = np.log(pred[keep] + offset) - np.log(gt[keep] + offset)
    if unbiased:  # Toolbox SigLoss: torch.var (N - 1) + 0.15 mean^2
        return scale * np.sqrt(d.var(ddof=1) + (1 - variance_focus) * d.mean() ** 2)
    return scale * np.sqrt((d**2).mean() - variance_focus * d.mean() ** 2)  # BTS silog_loss


@pytest.mark.parametrize("options", [
    {},  # BTS NYU
    {"min_depth": 1.0, "max_depth": 80.0},  # BTS KITTI mask
    {"offset": 1e-3, "unbiased": True, "scale": 1.0, "min_depth": 0.0},  # Toolbox SigLoss
])
def test_silog_matches_reference(options):
    gt, pred = make_batch((2, 9, 13, 1), high=30.0)
    assert float(losses.SILog(**options)(gt, pred)) == pytest.approx(np_silog(gt, pred, **options), rel=2e-5)


def test_batch_groups_average_the_loss_of_each_group():
    """`batch_groups` (the trainer sets it from train.batch_groups): the loss of each equal part of the batch, averaged,
    as DistributedDataParallel optimises it; a batch that does not divide is split as evenly as it goes, empty parts
    left out (a last validation batch)."""
    options = {"offset": 1e-3, "unbiased": True, "scale": 1.0, "min_depth": 0.0}  # the Toolbox's SigLoss
    gt, pred = make_batch((4, 9, 13, 1), high=30.0)
    pred[2:] *= 1.5  # the halves' log errors centred apart: pooling them adds their spread to the variance
    loss = losses.SILog(**options)
    loss.batch_groups = 2
    halves = [np_silog(gt[i:i + 2], pred[i:i + 2], **options) for i in (0, 2)]
    assert float(loss(gt, pred)) == pytest.approx(np.mean(halves), rel=2e-5)
    assert abs(np.mean(halves) - np_silog(gt, pred, **options)) > 1e-3 * np.mean(halves)  # pooled differs
    assert float(loss(gt[:3], pred[:3])) == pytest.approx(
        np.mean([np_silog(gt[:1], pred[:1], **options), np_silog(gt[1:3], pred[1:3], **options)]), rel=2e-5)
    assert float(loss(gt[:1], pred[:1])) == pytest.approx(np_silog(gt[:1], pred[:1], **options), rel=2e-5)


def test_silog_is_scale_invariant_in_the_limit_and_safe():
    gt, pred = make_batch((2, 8, 8, 1))
    loss = losses.SILog(variance_focus=1.0)
    assert float(loss(gt, pred * 3.0)) == pytest.approx(float(loss(gt, pred)), rel=1e-4)  # lambda = 1: pure variance
    perfect = tf.Variable(np.where(np_valid(gt), gt, 1.0).astype(np.float32))
    with tf.GradientTape() as tape:
        value = losses.SILog()(gt, perfect)
    assert float(value) == pytest.approx(0.0, abs=1e-4)
    assert np.isfinite(tape.gradient(value, perfect).numpy()).all()
    assert float(losses.SILog()(np.zeros_like(gt), pred)) == 0.0  # no valid pixel


# --- multi-scale (MRPAN / SARPN) ---------------------------------------------------------------------------

def np_resize_align_corners(x, out_h, out_w):
    """Bilinear, align_corners=True, separable (float64)."""
    def matrix(n_in, n_out):
        src = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        return np.maximum(0, 1 - np.abs(src[:, None] - np.arange(n_in)[None, :]))

    return np.einsum("oh,bhwc,pw->bopc", matrix(x.shape[1], out_h), x, matrix(x.shape[2], out_w))


def np_hu_terms(gt, pred, valid):
    """Hu et al.: ln(|e| + 0.5) on depth and zero-padded Sobel gradients, |1 - cos| of the normals."""
    def sobel(a):
        p = np.pad(a, ((0, 0), (1, 1), (1, 1), (0, 0)))
        h, w = a.shape[1:3]
        win = lambda i, j: p[:, i:i + h, j:j + w]  # noqa: E731
        gx = win(0, 0) + 2 * win(1, 0) + win(2, 0) - win(0, 2) - 2 * win(1, 2) - win(2, 2)
        gy = win(0, 0) + 2 * win(0, 1) + win(0, 2) - win(2, 0) - 2 * win(2, 1) - win(2, 2)
        return gx, gy

    g = np.where(valid, gt, 0.0)
    gx, gy = sobel(g)
    px, py = sobel(pred)
    pv = np.pad(valid, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=True)
    ok = np.ones(valid.shape, bool)
    for i in range(3):
        for j in range(3):
            ok &= pv[:, i:i + valid.shape[1], j:j + valid.shape[2]]
    cos = (px * gx + py * gy + 1) / np.sqrt((px**2 + py**2 + 1) * (gx**2 + gy**2 + 1))
    return (np.log(np.abs(pred - g) + 0.5)[valid].mean()
            + np.log(np.abs(px - gx) + 0.5)[ok].mean() + np.log(np.abs(py - gy) + 0.5)[ok].mean()
            + np.abs(1 - cos)[ok].mean())


def np_multi_scale(gt, predictions):
    gt = gt.astype(np.float64)
    valid = np_valid(gt).astype(np.float64)
    g = np.where(valid > 0, gt, 0.0)
    total = 0.0
    for p in predictions:
        h, w = p.shape[1:3]
        weight = np_resize_align_corners(valid, h, w)
        g_s = np_resize_align_corners(g * valid, h, w) / np.maximum(weight, 1e-6)
        v_s = weight > 1 - 1e-4  # every contributing pixel valid
        total += np_hu_terms(np.where(v_s, g_s, 0.0), p.astype(np.float64), v_s)
    return total


def test_multi_scale_loss_equals_manual_sum_over_scales():
    gt, _ = make_batch((2, 33, 41, 1), invalid_fraction=0.02)
    predictions = [RNG.uniform(0.5, 10.0, (2, h, w, 1)).astype(np.float32) for h, w in ((17, 21), (9, 11), (5, 6))]
    loss = losses.MultiScaleDepthLoss()
    expected = np_multi_scale(gt, predictions)
    assert float(loss(gt, predictions)) == pytest.approx(expected, rel=1e-4)
    per_scale = sum(float(loss(gt, p)) for p in predictions)  # how Keras applies it to each output
    assert per_scale == pytest.approx(expected, rel=1e-4)
    dense = np.where(np_valid(gt), gt, 1.0).astype(np.float32)  # no holes: plain bilinear resize of the GT
    manual = sum(float(losses.HuLoss()(np.asarray(
        tf.compat.v1.image.resize_bilinear(dense, p.shape[1:3], align_corners=True)), p)) for p in predictions)
    assert float(loss(dense, predictions)) == pytest.approx(manual, rel=1e-4)


def test_multi_scale_loss_unmasked_is_sarpns_total_loss():
    """mask_invalid=False (the mrpan_nyu recipe) is SARPN's `total_loss`: the raw ground truth, zeros included (the
    rotation's filled corners), resized bilinearly (align_corners) to each scale and every pixel counted."""
    gt = RNG.uniform(0.5, 10.0, (2, 33, 41, 1))
    gt[:, :8, :10] = 0.0  # zero-filled corners
    predictions = [RNG.uniform(0.5, 10.0, (2, h, w, 1)).astype(np.float32) for h, w in ((17, 21), (9, 11))]
    expected = 0.0
    for p in predictions:
        scaled = np_resize_align_corners(gt, *p.shape[1:3])
        expected += np_hu_terms(scaled, p.astype(np.float64), np.ones(scaled.shape, bool))
    got = float(losses.MultiScaleDepthLoss(mask_invalid=False)(gt.astype(np.float32), predictions))
    assert got == pytest.approx(expected, rel=1e-5)
    masked = float(losses.MultiScaleDepthLoss()(gt.astype(np.float32), predictions))
    assert masked == pytest.approx(np_multi_scale(gt, predictions), rel=1e-4)  # the default masks those pixels out


def test_new_losses_serialize():
    for loss in (losses.SSIMMSE(ssim_weight=0.2, max_val=80.0, mask_invalid=False),
                 losses.SILog(min_depth=1.0, unbiased=True, offset=1e-3),
                 losses.MultiScaleDepthLoss(grad_weight=0.5)):
        restored = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
    metrics = losses.SSIMMSE().term_metrics() + losses.MultiScaleDepthLoss().term_metrics()
    assert [m.name for m in metrics] == ["l_ssim", "l_mse", "l_depth", "l_grad", "l_normal"]


@pytest.mark.parametrize("loss", [losses.HQMDLoss(normal_weight=0.3), losses.HuLoss(), losses.SSIMMSE(),
                                  losses.MultiScaleDepthLoss()], ids=lambda loss: type(loss).__name__)
def test_terms_asked_for_by_name_equal_the_full_set(loss):
    """A term metric computes its own term only (`terms(names=...)`); each one equals the full set's value."""
    gt, pred = make_batch()
    if isinstance(loss, losses.MultiScaleDepthLoss):
        pred = [pred, pred[:, ::2, ::2], pred[:, ::4, ::4]]
    full = {name: float(value) for name, value in loss.terms(gt, pred).items()}
    assert list(full) == list(loss.term_names) and all(np.isfinite(list(full.values())))
    for name in loss.term_names:
        alone = loss.terms(gt, pred, names=(name,))
        assert list(alone) == [name] and float(alone[name]) == full[name]
    with pytest.raises(ValueError, match="no term.*l_unknown"):
        loss.terms(gt, pred, names=("l_unknown",))
