"""iBims-1 geometric error metrics: depth boundary, planarity and directed depth errors.

Koch et al., "Evaluation of CNN-based single-image depth estimation methods" (ECCV-W 2018), as the
official Python evaluation code computes them (`evaluate_ibims.py` + `evaluate_ibims_error_metrics.py`,
the widely copied "V2"; facts in the spec `evaluation_and_data.md`, section "iBims-1 geometric metrics"):

- `depth_boundary_errors`: predicted depth edges (scikit-image's Canny on the min-max normalised
  prediction, sigma sqrt(2), thresholds 0.15 / 0.30) against the true edge map. Accuracy = mean
  distance of predicted edges closer than 10 px to a true edge; completeness = symmetric chamfer
  distance truncated at 10 px (V2) or the directed, untruncated distance from true edges (V1, option).
  In pixels; NaN for an image without true edges; 10 / 10 when no predicted edge is within 10 px.
- `planarity_errors`: per plane of >= 5 % of the image (the official rule counts 5 % of 640x480, iBims'
  only size; smaller frames, e.g. synthetic scenes, use the same share), the prediction scaled by the
  median ratio on the plane, back-projected with the intrinsics, fitted by PCA: flatness = 100 x std of the
  point-plane distances (cm), orientation = angle to the true normal (degrees).
- `directed_depth_errors`: the fractions of pixels on the right side of the 3 m plane (eps_0), predicted
  in front while truly behind (eps_minus: underestimated) and behind while truly in front (eps_plus).

Per image, then averaged ignoring NaN (`GeometryEvaluator`); planes are pooled over all images.

Ground truth travels in a sample's `meta` under `GROUND_TRUTH_KEYS` (`edges` bool (H, W); `plane_ids`
int (H, W), 0 = no plane; `plane_normals` {id: normal in the frame x right, y forward, z up};
`intrinsics` (fx, fy, cx, cy) with 1-based pixel coordinates, i.e. cx = 0-based centre + 1), as the
`ibims` source (`hqdepth.data.ibims`) fills it; `ground_truth_from_meta` turns it into the arguments of
`GeometryEvaluator.add`. The true edge map marks the pixels a depth discontinuity runs along; which side
of a step carries it moves the boundary errors by about a pixel (the worked example marks the last near
column).

`hqdepth evaluate --geometry` runs `evaluate_pairs_with_geometry` (pairs files, optional edge-map column)
or `evaluate_model_with_geometry` (a model over a dataset): the standard metrics exactly as without
`--geometry`, and these on the whole frame (no crop, depth cap or clipping; 0 = no depth), as the iBims
driver computes them. Metrics without ground truth are reported as not computed; true edges are never
derived from the ground-truth depth.
"""

import math
from pathlib import Path

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
    if np.isnan(d).all():  # nothing predicted (e.g. a diverged run): no edge, as Canny finds on all-NaN input
        return np.zeros(d.shape, bool)
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


# 5 % of 640x480 = 15,360 pixels: the official rule (a plane with size / (640 * 480) < 0.05 is skipped)
PLANE_MIN_PIXELS = round(PLANE_MIN_FRACTION * PLANE_REFERENCE_PIXELS)


def plane_min_pixels_for(shape):
    """The 5 % rule on a frame of `shape` (H, W): the official count on 640x480 frames, the same share of
    smaller ones (iBims fixes the count; its frames are all 640x480)."""
    return PLANE_MIN_PIXELS * int(shape[0]) * int(shape[1]) / PLANE_REFERENCE_PIXELS


def plane_errors(prediction, gt, mask, gt_normal, intrinsics, min_pixels=PLANE_MIN_PIXELS):
    """(flatness cm, orientation deg) of one plane given by the boolean `mask`; NaN when it has fewer than
    `min_pixels` valid pixels (default: 5 % of a 640x480 image, the official rule)."""
    prediction, gt = np.asarray(prediction, np.float64), np.asarray(gt, np.float64)
    mask = np.asarray(mask, bool) & (gt > 0) & (prediction > 0)
    if mask.sum() < min_pixels:
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


def planarity_errors(prediction, gt, plane_ids, plane_normals, intrinsics, min_pixels=PLANE_MIN_PIXELS):
    """[(flatness cm, orientation deg)] for each plane id > 0 in `plane_ids` (H, W); `plane_normals`:
    {id: true normal in the iBims frame}."""
    plane_ids = np.asarray(plane_ids)
    return [plane_errors(prediction, gt, plane_ids == pid, plane_normals[pid], intrinsics, min_pixels)
            for pid in sorted(int(i) for i in np.unique(plane_ids) if i > 0)]


GEOMETRY_METRICS = ("dbe_acc", "dbe_comp", "dde_0", "dde_minus", "dde_plus", "pe_plan", "pe_orie")


class GeometryEvaluator:
    """Accumulates the iBims-1 geometric metrics over images: `add(...)` per image, `result()` the means.

    Boundary and directed errors are averaged over images (ignoring NaN), planarity over all planes of
    all images, as the official driver does. `plane_min_pixels`: planes with fewer valid pixels are not
    scored; the default (None) is 5 % of each image's frame, the official 15,360 pixels on iBims' 640x480
    frames and the same share of smaller ones (synthetic scenes at reduced size).
    """

    def __init__(self, version="v2", dde_reference=DDE_REFERENCE, plane_min_pixels=None):
        self.version = _version(version)
        self.dde_reference = dde_reference
        self.plane_min_pixels = None if plane_min_pixels is None else float(plane_min_pixels)
        self.per_image = {name: [] for name in GEOMETRY_METRICS[:5]}
        self.planes = []
        self.images = 0              # images added
        self.images_with_edges = 0   # ... that had a true edge map
        self.images_with_planes = 0  # ... that had plane ground truth

    def add(self, prediction, gt, edges=None, plane_ids=None, plane_normals=None, intrinsics=None):
        """One image: `edges` (H, W) binary true depth edges, `plane_ids` (H, W) with `plane_normals` and
        `intrinsics` (fx, fy, cx, cy) for planarity; metrics without their ground truth are skipped.

        `prediction` is the unmasked prediction on the ground truth's grid (NaN / 0 = none), `gt` the
        ground truth with 0 where it is missing or masked (as the `ibims` source gives it). Returns this
        image's values ({metric: value} for the metrics it had ground truth for; pe_* = mean over its planes),
        e.g. for a per-image table."""
        prediction = np.nan_to_num(np.asarray(prediction, np.float64), nan=0.0)
        gt = np.asarray(gt, np.float64)
        for what, array in (("prediction", prediction), ("edges", edges), ("plane_ids", plane_ids)):
            if array is not None and np.shape(array) != gt.shape:
                raise ConfigError(f"{what} has shape {np.shape(array)} but the ground truth {gt.shape}.")
        if plane_ids is not None and (intrinsics is None or plane_normals is None):
            raise ConfigError("planarity errors need the plane normals and the camera intrinsics.")
        masked = np.where((gt > 0) & (prediction > 0), prediction, 0.0)
        self.images += 1
        image = {}
        if edges is not None:
            self.images_with_edges += 1
            image["dbe_acc"], image["dbe_comp"] = depth_boundary_errors(prediction, edges, self.version)
        image.update(zip(("dde_0", "dde_minus", "dde_plus"), directed_depth_errors(masked, gt, self.dde_reference)))
        for name, value in image.items():
            self.per_image[name].append(value)
        if plane_ids is not None:
            self.images_with_planes += 1
            min_pixels = plane_min_pixels_for(gt.shape) if self.plane_min_pixels is None else self.plane_min_pixels
            planes = planarity_errors(masked, gt, plane_ids, plane_normals, intrinsics, min_pixels)
            self.planes += planes
            image["pe_plan"] = _nanmean([p[0] for p in planes])
            image["pe_orie"] = _nanmean([p[1] for p in planes])
        return image

    def result(self):
        """{metric: mean} over what was added; NaN where nothing counted."""
        out = {name: _nanmean(values) for name, values in self.per_image.items()}
        out["pe_plan"] = _nanmean([p[0] for p in self.planes])
        out["pe_orie"] = _nanmean([p[1] for p in self.planes])
        return out

    def not_computed(self):
        """{metric: reason} for the metrics no added image had the ground truth for (they are not 0, not NaN:
        they do not exist). True edges are never derived from the ground-truth depth."""
        missing = {}
        if self.images_with_edges == 0:
            reason = ("no true edge map (a dataset with edges such as ibims:DIR, or a third column "
                      "'<prediction> <ground truth> <edges.png>' in a pairs file; edges are not guessed from the depth)")
            missing.update(dict.fromkeys(("dbe_acc", "dbe_comp"), reason))
        if self.images_with_planes == 0:
            reason = "no plane ground truth (plane masks, normals and intrinsics, e.g. from ibims:DIR; pairs files carry none)"
            missing.update(dict.fromkeys(("pe_plan", "pe_orie"), reason))
        return missing

    def to_dict(self):
        """The JSON section: settings, counts and metrics (None where not computed or NaN)."""
        missing = self.not_computed()
        metrics = {key: (None if key in missing or not math.isfinite(value) else value)
                   for key, value in self.result().items()}
        return {"version": self.version, "canny": f"scikit-image {_skimage_version()}",
                "dde_reference_m": self.dde_reference, "plane_min_pixels": self.plane_min_pixels, "images": self.images,
                "images_with_edges": self.images_with_edges, "images_with_planes": self.images_with_planes,
                "planes": len(self.planes), "planes_scored": int(sum(math.isfinite(p[0]) for p in self.planes)),
                "metrics": metrics, "not_computed": missing}

    def format_table(self):
        """Human-readable block: the metrics (n/a where not computed) and why any is missing."""
        result, missing = self.result(), self.not_computed()
        scored = int(sum(math.isfinite(p[0]) for p in self.planes))
        rule = "5 % of the frame" if self.plane_min_pixels is None else f"{self.plane_min_pixels:.0f} pixels"
        planes = f" ({scored} of {len(self.planes)} planes scored, >= {rule})" if self.images_with_planes else ""
        lines = [
            f"iBims-1 geometric errors (official code {self.version}, Canny: scikit-image {_skimage_version()}): "
            f"{self.images} images, true edges for {self.images_with_edges}, planes for {self.images_with_planes}"
            + planes,
            "  dbe in px (mean over images), dde fractions at 3 m, pe_plan cm and pe_orie degrees (mean over planes)",
            " ".join(f"{key:>9}" for key in GEOMETRY_METRICS),
            " ".join(f"{'n/a':>9}" if key in missing else f"{result[key]:>9.4f}" for key in GEOMETRY_METRICS),
        ]
        for reason in dict.fromkeys(missing.values()):
            keys = ", ".join(key for key, why in missing.items() if why == reason)
            lines.append(f"  {keys}: not computed, {reason}.")
        if 0 < self.images_with_edges < self.images:
            lines.append(f"  dbe_acc, dbe_comp: over the {self.images_with_edges} of {self.images} images that have a "
                         "true edge map.")
        return "\n".join(lines)


def _skimage_version():
    try:
        import skimage
    except ImportError:
        return "not installed"
    return skimage.__version__


# ------------------------------------------------------------------------- ground truth from data


GROUND_TRUTH_KEYS = ("edges", "plane_ids", "plane_normals", "intrinsics")


def ground_truth_from_meta(meta):
    """The keyword arguments of `GeometryEvaluator.add` that a sample's `meta` provides (keys
    `GROUND_TRUTH_KEYS`, as the `ibims` source fills them); planes only with normals and intrinsics."""
    found = {key: meta[key] for key in GROUND_TRUTH_KEYS if meta.get(key) is not None}
    if "plane_ids" in found and not ("plane_normals" in found and "intrinsics" in found):
        for key in ("plane_ids", "plane_normals"):
            found.pop(key, None)
    return found


def read_edge_map(path, shape=None, where=None):
    """A true edge map file as bool (H, W): a single-channel (or grey RGB) PNG / image where non-zero marks
    an edge, or a `.npy` array; `shape` (H, W) is checked when given (an edge map cannot be resized)."""
    from hqdepth.errors import DataError

    path = Path(path)
    prefix = f"{where}: " if where else ""
    if not path.is_file():
        raise DataError(f"{prefix}edge map not found: {path}")
    if path.suffix.lower() == ".npy":
        try:
            edges = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DataError(f"{prefix}{path}: cannot read edge map ({error}).") from None
    else:
        import cv2

        edges = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if edges is None:
            raise DataError(f"{prefix}{path}: cannot decode edge map (corrupt or unsupported image).")
        if edges.ndim == 3:
            if not all(np.array_equal(edges[..., 0], edges[..., c]) for c in range(1, min(edges.shape[2], 3))):
                raise DataError(f"{prefix}{path}: edge map has {edges.shape[2]} different channels (expected one).")
            edges = edges[..., 0]
    if edges.ndim != 2:
        raise DataError(f"{prefix}{path}: edge map has shape {edges.shape} (expected H x W).")
    if shape is not None and edges.shape != tuple(shape):
        raise DataError(f"{prefix}{path}: edge map is {edges.shape[0]}x{edges.shape[1]} but the ground truth is "
                        f"{shape[0]}x{shape[1]}.")
    return edges != 0


# ------------------------------------------------------------------- with the standard evaluation


def _require_full_frame(protocol):
    if protocol.kb_crop or protocol.test_input in ("hu", "kb_crop"):
        raise ConfigError(f"--geometry needs predictions of the whole ground-truth frame; protocol {protocol.name} "
                          "predicts a crop (KB crop / Hu centre crop). Use a full-frame protocol such as custom.")


def _on_frame(prediction, shape, resize_any=False, where="image"):
    """The prediction on the ground truth's grid (bilinear, as the standard evaluator resizes)."""
    from hqdepth.errors import DataError
    from hqdepth.protocols import ASPECT_TOLERANCE, aspect_change
    from hqdepth.resample import resize_bilinear_cv2

    prediction = np.asarray(prediction, np.float64)
    if prediction.shape == tuple(shape):
        return prediction
    if aspect_change(prediction.shape, shape) > ASPECT_TOLERANCE and not resize_any:
        raise DataError(f"{where}: prediction {prediction.shape} and ground truth {shape} differ in aspect ratio.")
    return np.asarray(resize_bilinear_cv2(prediction, *shape), np.float64)


def evaluate_pairs_with_geometry(pairs_file, protocol, pred_scale=None, gt_scale=None, version="v2", ssim=False,
                                 ssim_max_val=None, resize_any=False, progress=True):
    """`hqdepth evaluate --pairs FILE --geometry`: (standard `EvaluationResult`, `GeometryEvaluator`); the
    result's per-image rows (`--csv`) carry each image's geometric values too.

    Lines are `<prediction> <ground truth> [<edge map>]`; the optional third column is the true edge map
    (see `read_edge_map`; `None` for a line without one). The standard metrics are computed exactly as
    `hqdepth.evaluation.evaluate_pairs` computes them; the geometric ones on the whole frame, as the iBims
    driver does (no crop, no depth cap, no clipping; 0 = no depth). DBE needs the edge map: lines without
    one do not count for it, and true edges are never derived from the ground-truth depth. Pairs files
    carry no planes, so the planarity errors are not computed.
    """
    from hqdepth.evaluator import Evaluator
    from hqdepth.pairs import pair_maps, read_pairs
    from hqdepth.protocols import get_protocol

    protocol = get_protocol(protocol)
    _require_full_frame(protocol)
    pairs = read_pairs(pairs_file, extra_columns=1)
    standard = Evaluator(protocol, ssim=ssim, ssim_max_val=ssim_max_val, resize_any=resize_any)
    geometry = GeometryEvaluator(version)
    for pair, pred, gt in pair_maps(pairs, protocol, pred_scale, gt_scale, progress, standard.skip):
        edge_file = pair.extra[0] if pair.extra and pair.extra[0] != "None" else None
        edges = None
        if edge_file is not None:
            edges = read_edge_map(Path(pairs_file).parent / edge_file, gt.shape, f"{pair.where} (edge map)")
        row = standard.add(pred, gt, pair.where, prediction=str(pair.first), ground_truth=str(pair.second))
        row.update(geometry.add(_on_frame(pred, gt.shape, resize_any, pair.where), gt, edges=edges))
    return standard.result(), geometry


def evaluate_model_with_geometry(model, data, protocol, split="test", flip=False, gt_scale=None, version="v2",
                                 ssim=False, ssim_max_val=None, resize_any=False, progress=True):
    """`hqdepth evaluate --model M --data SPEC --geometry`: (standard `EvaluationResult`, `GeometryEvaluator`);
    per-image rows as in `evaluate_pairs_with_geometry`.

    Each image is predicted once, as `hqdepth.evaluation.evaluate_model` predicts it (the protocol's test
    input, the sample's focal), and scored by both evaluators; the geometric ground truth comes from the
    samples' meta (`ground_truth_from_meta`: the `ibims` source gives edges, planes and intrinsics). A
    pairs file of RGB / ground truth carries no geometric ground truth: only the directed depth errors.
    """
    from hqdepth.evaluator import Evaluator
    from hqdepth.model_testing import model_for_protocol, protocol_prediction
    from hqdepth.pairs import png_scale, progress_bar
    from hqdepth.protocols import get_protocol

    protocol = get_protocol(protocol)
    _require_full_frame(protocol)
    total, samples = _model_samples(data, split, png_scale(gt_scale, protocol))
    model = model_for_protocol(model, protocol)
    standard = Evaluator(protocol, ssim=ssim, ssim_max_val=ssim_max_val, resize_any=resize_any)
    geometry = GeometryEvaluator(version)
    with progress_bar(total, "predict+evaluate", progress) as bar:
        for where, rgb, gt, focal, meta in samples:
            if gt is None:
                standard.skip(where)
            else:
                pred = protocol_prediction(model, rgb, protocol, focal=focal, flip=flip)
                row = standard.add(pred, gt, where)
                row.update(geometry.add(_on_frame(pred, gt.shape, resize_any, where), gt, **ground_truth_from_meta(meta)))
            bar.update()
    return standard.result(), geometry


def _model_samples(data, split, gt_scale):
    """(count, iterator of (where, rgb, gt, focal, meta)) for a pairs file (meta empty) or a dataset SPEC."""
    from hqdepth.data import open_source
    from hqdepth.model_testing import data_samples

    if Path(data).is_file() or ":" not in str(data):
        total, samples = data_samples(data, split, gt_scale)
        return total, ((where, rgb, gt, focal, {}) for where, rgb, gt, focal in samples)
    source = open_source(data, split=split)

    def iterate():
        for index in range(len(source)):
            sample = source[index]
            depth = None if sample.depth is None else np.asarray(sample.depth)
            if depth is not None and depth.ndim == 3:
                depth = depth[..., 0]
            yield f"{data} sample {sample.meta.get('id', index)}", sample.rgb, depth, sample.meta.get("focal"), sample.meta

    return len(source), iterate()


def _nanmean(values):
    values = np.asarray(values, np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
