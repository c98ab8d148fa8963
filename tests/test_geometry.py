"""iBims-1 geometric metrics against the spec's worked example and a brute-force NumPy reference."""

import math

import numpy as np
import pytest

from hqdepth.errors import ConfigError
from hqdepth.geometry import (GeometryEvaluator, depth_boundary_errors, directed_depth_errors, plane_errors,
                              predicted_edges)


def step(column, size=64, far=4.0, extra=None):
    depth = np.full((size, size), far)
    depth[:, :column] = 2.0
    if extra is not None:
        depth[:, extra:] = 6.0
    return depth


GT_EDGES = np.zeros((64, 64), bool)
GT_EDGES[:, 31] = True  # the last near column of the true step at 32


@pytest.mark.parametrize("prediction,version,acc,comp", [
    (step(35), "v2", 190 / 62, 385.78 / 126),             # spec: scikit-image 0.26, shift +3
    (step(35), "v1", 190 / 62, 195.78 / 64),
    (step(35, extra=52), "v2", 190 / 62, 6.4749),         # a spurious step at column 52
    (step(35, extra=52), "v1", 190 / 62, 195.78 / 64),
    (step(42), "v2", 10.0, 10.0),                          # shift +10 (and beyond): the fallback
])
def test_depth_boundary_errors_match_the_worked_example(prediction, version, acc, comp):
    got = depth_boundary_errors(prediction, GT_EDGES, version)
    assert got == pytest.approx((acc, comp), abs=1e-4)


def brute_force_dbe(edges, gt_edges, theta=10.0):
    """Both chamfer terms by explicit pairwise distances (float64), as spec section 4 states them."""
    p, g = np.argwhere(edges).astype(float), np.argwhere(gt_edges).astype(float)
    if len(g) == 0:
        return math.nan, math.nan
    d_pg = np.sqrt(((p[:, None, :] - g[None, :, :]) ** 2).sum(-1)) if len(p) else np.zeros((0, len(g)))
    to_gt = d_pg.min(axis=1) if len(p) else np.zeros(0)
    near = to_gt < theta
    if not near.any():
        return theta, theta
    to_pred = d_pg.min(axis=0)
    comp = (np.minimum(to_gt, theta).sum() + np.minimum(to_pred, theta).sum()) / (len(p) + len(g))
    return to_gt[near].mean(), comp


def test_depth_boundary_errors_equal_a_brute_force_reference_on_random_scenes(rng):
    for _ in range(4):
        depth = np.full((48, 56), rng.uniform(3, 6))
        gt_edges = np.zeros(depth.shape, bool)
        for _ in range(3):  # random boxes in front: their outlines are the true edges
            top, left = rng.integers(2, 30), rng.integers(2, 36)
            h, w = rng.integers(6, 16), rng.integers(6, 18)
            depth[top:top + h, left:left + w] = rng.uniform(1, 2.5)
        gt_edges[:, 1:] |= depth[:, 1:] != depth[:, :-1]
        gt_edges[1:, :] |= depth[1:, :] != depth[:-1, :]
        prediction = depth * rng.uniform(0.9, 1.1) + rng.normal(0, 0.02, depth.shape)
        prediction = np.roll(prediction, int(rng.integers(-2, 3)), axis=1)
        got = depth_boundary_errors(prediction, gt_edges)
        want = brute_force_dbe(predicted_edges(prediction), gt_edges)
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_no_true_edges_give_nan_and_nan_is_ignored_in_the_mean():
    assert all(math.isnan(v) for v in depth_boundary_errors(step(35), np.zeros((64, 64), bool)))
    evaluator = GeometryEvaluator()
    evaluator.add(step(35), step(32), edges=GT_EDGES)
    evaluator.add(step(35), step(32), edges=np.zeros((64, 64), bool))
    assert evaluator.result()["dbe_acc"] == pytest.approx(190 / 62, abs=1e-4)
    with pytest.raises(ConfigError, match="'v2'"):
        GeometryEvaluator(version="v3")


def test_directed_depth_errors_match_the_toy_example(rng):
    got = directed_depth_errors(np.array([1.5, 3.5, 2.9, 3.0, 6]), np.array([1, 2, 3, 4, 5.0]))
    assert got == pytest.approx((0.6, 0.2, 0.2))
    gt, pred = rng.uniform(0.5, 6, 1000), rng.uniform(0.5, 6, 1000)
    gt[:50] = 0  # invalid pixels do not count
    e0, em, ep = directed_depth_errors(pred, gt)
    valid = gt > 0
    assert e0 == pytest.approx(((pred[valid] <= 3) == (gt[valid] <= 3)).mean())
    assert em == pytest.approx(((pred[valid] <= 3) & (gt[valid] > 3)).mean())
    assert ep == pytest.approx(((pred[valid] > 3) & (gt[valid] <= 3)).mean())


def floor_depth(tilt_degrees, height=1.5, fx=525.0, fy=525.0, cx=320.5, cy=240.5):
    """Depth (480x640) of a floor `height` m below the camera tilted about the x axis, iBims frame
    (x right, y forward, z up; 1-based pixel coordinates)."""
    v, u = np.mgrid[1:481, 1:641].astype(float)
    rays = np.stack([(u - cx) / fx, np.ones_like(u), -(v - cy) / fy], axis=-1)
    t = math.radians(tilt_degrees)
    normal = np.array([0.0, math.sin(t), math.cos(t)])
    denominator = rays @ normal
    depth = np.where(denominator < -1e-3, -height / np.minimum(denominator, -1e-3), 0.0)
    return depth


def test_planarity_errors_match_the_toy_example(rng):
    intrinsics = (525.0, 525.0, 320.5, 240.5)
    gt = floor_depth(0.0)
    mask = np.zeros(gt.shape, bool)
    mask[300:, :] = True  # 180 x 640 = 37.5 % of the image
    tilted = 0.5 * floor_depth(5.0)
    flatness, orientation = plane_errors(tilted, gt, mask, (0, 0, 1), intrinsics)
    assert flatness == pytest.approx(0.0, abs=1e-6) and orientation == pytest.approx(5.0, abs=1e-3)
    noisy = tilted * (1 + 0.01 * rng.standard_normal(tilted.shape))
    flatness, orientation = plane_errors(noisy, gt, mask, (0, 0, 1), intrinsics)
    assert 0.8 < flatness < 1.4 and orientation == pytest.approx(5.0, abs=0.05)  # spec: 1.09 cm, 5.004 deg
    small = np.zeros(gt.shape, bool)
    small[470:, :200] = True  # < 5 % of 640 x 480
    assert all(math.isnan(v) for v in plane_errors(tilted, gt, small, (0, 0, 1), intrinsics))
    # the official rule skips size / (640 * 480) < 0.05: exactly 15,360 pixels count, one fewer does not
    edge = np.zeros(gt.shape, bool)
    edge[-24:, :] = True  # 24 x 640 = 15,360
    assert not math.isnan(plane_errors(tilted, gt, edge, (0, 0, 1), intrinsics)[0])
    edge[-1, 0] = False
    assert math.isnan(plane_errors(tilted, gt, edge, (0, 0, 1), intrinsics)[0])


def test_plane_size_rule_scales_with_the_frame():
    from hqdepth.geometry import GeometryEvaluator, plane_min_pixels_for

    assert plane_min_pixels_for((480, 640)) == 15360 and plane_min_pixels_for((240, 320)) == 3840
    gt = floor_depth(0.0)[::2, ::2]  # the same floor seen at 240 x 320 (the principal point halves too)
    intrinsics = (262.5, 262.5, 160.5, 120.5)
    plane_ids = np.zeros(gt.shape, np.int32)
    plane_ids[-16:, :] = 1  # 5,120 pixels: 6.7 % of this frame, 1.7 % of 640 x 480
    kwargs = dict(plane_ids=plane_ids, plane_normals={1: (0, 0, 1)}, intrinsics=intrinsics)
    assert math.isfinite(GeometryEvaluator().add(gt, gt, **kwargs)["pe_plan"])
    assert math.isnan(GeometryEvaluator(plane_min_pixels=15360).add(gt, gt, **kwargs)["pe_plan"])
