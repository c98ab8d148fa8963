"""iBims-1 geometric error metrics: depth boundary, planarity and directed depth errors.

Koch et al., "Evaluation of CNN-based single-image depth estimation methods" (ECCV-W 2018), as the
official Python evaluation code computes them (`evaluate_ibims.py` + `evaluate_ibims_error_metrics.py`,
the widely copied "V2"; facts in the spec `evaluation_and_data.md`, section "iBims-1 geometric metrics"):

- `depth_boundary_errors`: predicted depth edges (scikit-image's Canny on the min-max normalised
  prediction, sigma sqrt(2), thresholds 0.15 / 0.30) against the true edge map. Accuracy = mean
  distance of predicted edges closer than 10 px to a true edge; completeness = symmetric chamfer
  distance truncated at 10 px (V2) or the directed, untruncated distance from true edges (V1, option).
  In pixels; NaN for an image without true edges; 10 / 10 when no predicted edge is within 10 px.
- `planarity_errors`: per plane of >= 5 % of a 640x480 image, the prediction scaled by the median ratio
  on the plane, back-projected with the intrinsics, fitted by PCA: flatness = 100 x std of the
  point-plane distances (cm), orientation = angle to the true normal (degrees).
- `directed_depth_errors`: the fractions of pixels on the right side of the 3 m plane (eps_0), predicted
  in front while truly behind (eps_minus: underestimated) and behind while truly in front (eps_plus).

Per image, then averaged ignoring NaN (`GeometryEvaluator`); planes are pooled over all images.
"""

import math

import numpy as np

from hqdepth.errors import ConfigError

THETA = 10.0            # DBE truncation (px)
DDE_REFERENCE = 3.0     # DDE plane (m)
PLANE_MIN_FRACTION = 0.05
PLANE_REFERENCE_PIXELS = 640 * 480  # the official code's fixed image size for the 5 % rule
CANNY_THRESHOLDS = {"v2": (0.15, 0.30), "v1": (0.10, 0.20)}


def predicted_edges(prediction, version="v2"):
    """Binary depth edges of a prediction as the iBims-1 code finds them (scikit-image Canny, sigma sqrt 2)."""
    from skimage import feature

    low, high = CANNY_THRESHOLDS[_version(version)]
    d = np.asarray(prediction, dtype=np.float32).copy()
    d[~np.isfinite(d)] = 0
    d[d == 0] = np.nan
    d = d - np.nanmin(d)
    d = d / np.nanmax(d)
    return feature.canny(d, sigma=math.sqrt(2), low_threshold=low, high_threshold=high)


def _version(version):
    if version not in CANNY_THRESHOLDS:
        raise ConfigError(f"iBims DBE version must be 'v2' (official default) or 'v1', got {version!r}.")
    return version


def depth_boundary_errors(prediction, gt_edges, version="v2", theta=THETA):
    """(accuracy, completeness) in pixels for one image; (nan, nan) when `gt_edges` has no edge.

    `prediction`: depth (H, W), unmasked (0 / NaN = no prediction); `gt_edges`: binary (H, W).
    """
    from scipy import ndimage

    gt_edges = np.asarray(gt_edges) > 0
    if not gt_edges.any():
        return math.nan, math.nan
    edges = predicted_edges(prediction, version)
    dist_gt = ndimage.distance_transform_edt(~gt_edges)
    near = edges & (dist_gt < theta)
    if not near.any():
        return float(theta), float(theta)
    accuracy = float(dist_gt[near].mean())
    dist_pred = ndimage.distance_transform_edt(~edges) if edges.any() else np.full(edges.shape, np.inf)
    if _version(version) == "v1":
        completeness = float(dist_pred[gt_edges].mean())
    else:
        total = np.minimum(dist_gt[edges], theta).sum() + np.minimum(dist_pred[gt_edges], theta).sum()
        completeness = float(total / (edges.sum() + gt_edges.sum()))
    return accuracy, completeness


def directed_depth_errors(prediction, gt, reference=DDE_REFERENCE):
    """(eps_0, eps_minus, eps_plus) over pixels where both are > 0: same side of the `reference` plane,
    predicted in front though behind (underestimated), predicted behind though in front (overestimated)."""
    prediction, gt = np.asarray(prediction, np.float64), np.asarray(gt, np.float64)
    valid = (gt > 0) & (prediction > 0) & np.isfinite(gt) & np.isfinite(prediction)
    if not valid.any():
        return math.nan, math.nan, math.nan
    g, p = gt[valid] <= reference, prediction[valid] <= reference
    n = valid.sum()
    return float((p == g).sum() / n), float((p & ~g).sum() / n), float((~p & g).sum() / n)


def back_project(depth, intrinsics, rows, cols):
    """3-D points in the iBims frame (x right, y = depth forward, z up) of pixels (rows, cols); 1-based
    pixel coordinates as the MATLAB-born code. `intrinsics`: (fx, fy, cx, cy)."""
    fx, fy, cx, cy = intrinsics
    u, v = cols + 1.0, rows + 1.0
    return np.stack([(u - cx) * depth / fx, depth, -(v - cy) * depth / fy], axis=1)


def fit_plane(points):
    """(unit normal, offset) of the least-squares plane: the axis of least variance (PCA) through the centroid."""
    centroid = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centroid, full_matrices=False)
    normal = vt[2]
    return normal, -float(normal @ centroid)


def plane_errors(prediction, gt, mask, gt_normal, intrinsics):
    """(flatness cm, orientation deg) of one plane given by the boolean `mask`; NaN when it is smaller
    than 5 % of a 640x480 image (the official rule)."""
    prediction, gt = np.asarray(prediction, np.float64), np.asarray(gt, np.float64)
    mask = np.asarray(mask, bool) & (gt > 0) & (prediction > 0)
    if mask.sum() / PLANE_REFERENCE_PIXELS < PLANE_MIN_FRACTION:
        return math.nan, math.nan
    rows, cols = np.nonzero(mask)
    scale = np.median(prediction[mask]) / np.median(gt[mask])
    points = back_project(prediction[mask] / scale, intrinsics, rows, cols)
    normal, offset = fit_plane(points)
    flatness = 100.0 * float(np.std(points @ normal + offset))
    gt_normal = np.asarray(gt_normal, np.float64)
    if normal @ gt_normal < 0:
        normal = -normal
    orientation = math.degrees(math.atan2(np.linalg.norm(np.cross(gt_normal, normal)), gt_normal @ normal))
    return flatness, orientation


def planarity_errors(prediction, gt, plane_ids, plane_normals, intrinsics):
    """[(flatness cm, orientation deg)] for each plane id > 0 in `plane_ids` (H, W); `plane_normals`:
    {id: true normal in the iBims frame}."""
    plane_ids = np.asarray(plane_ids)
    return [plane_errors(prediction, gt, plane_ids == pid, plane_normals[pid], intrinsics)
            for pid in sorted(int(i) for i in np.unique(plane_ids) if i > 0)]


GEOMETRY_METRICS = ("dbe_acc", "dbe_comp", "dde_0", "dde_minus", "dde_plus", "pe_plan", "pe_orie")


class GeometryEvaluator:
    """Accumulates the iBims-1 geometric metrics over images: `add(...)` per image, `result()` the means.

    Boundary and directed errors are averaged over images (ignoring NaN), planarity over all planes of
    all images, as the official driver does.
    """

    def __init__(self, version="v2", dde_reference=DDE_REFERENCE):
        self.version = _version(version)
        self.dde_reference = dde_reference
        self.per_image = {name: [] for name in GEOMETRY_METRICS[:5]}
        self.planes = []

    def add(self, prediction, gt, edges=None, plane_ids=None, plane_normals=None, intrinsics=None):
        """One image: `edges` (H, W) binary true depth edges, `plane_ids` (H, W) with `plane_normals` and
        `intrinsics` (fx, fy, cx, cy) for planarity; metrics without their ground truth are skipped."""
        prediction = np.nan_to_num(np.asarray(prediction, np.float64), nan=0.0)
        gt = np.asarray(gt, np.float64)
        masked = np.where((gt > 0) & (prediction > 0), prediction, 0.0)
        if edges is not None:
            acc, comp = depth_boundary_errors(prediction, edges, self.version)
            self.per_image["dbe_acc"].append(acc)
            self.per_image["dbe_comp"].append(comp)
        for name, value in zip(("dde_0", "dde_minus", "dde_plus"),
                               directed_depth_errors(masked, gt, self.dde_reference)):
            self.per_image[name].append(value)
        if plane_ids is not None:
            if intrinsics is None or plane_normals is None:
                raise ConfigError("planarity errors need the plane normals and the camera intrinsics.")
            self.planes += planarity_errors(masked, gt, plane_ids, plane_normals, intrinsics)

    def result(self):
        """{metric: mean} over what was added; NaN where nothing counted."""
        out = {name: _nanmean(values) for name, values in self.per_image.items()}
        out["pe_plan"] = _nanmean([p[0] for p in self.planes])
        out["pe_orie"] = _nanmean([p[1] for p in self.planes])
        return out


def _nanmean(values):
    values = np.asarray(values, np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
