"""The NumPy (float64) protocol evaluator: `Evaluator` scores (prediction, ground truth) pairs under a
`hqdepth.protocols.Protocol`, `evaluate_arrays` does it for lists of maps, `EvaluationResult` holds the averages
and the per-image rows; `depth_ssim` is SSIM of depth maps as `tf.image.ssim` computes it.

Per-image formulas come from `hqdepth.metrics.per_image_errors` (the single implementation, shared with the
streaming Keras metrics), evaluated here in float64; `hqdepth.metrics` is imported on first use (it imports Keras).
Warnings go to the `hqdepth.evaluation` logger.
"""

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from hqdepth.errors import ConfigError, DataError
from hqdepth.protocols import (
    HU_CROP, KB_CROP_SIZE, Protocol, aspect_change, aspect_differs, get_protocol, hu_crop_box, hu_ground_truth,
    hu_scaled_size)
from hqdepth.resample import resize_bilinear_align_corners, resize_bilinear_cv2

log = logging.getLogger("hqdepth.evaluation")

ROOT_METRICS = ("rmse", "rmse_log")  # square roots of a mean: averaged differently by rms_of_mse/pooled


# ---------------------------------------------------------------------------------------------- SSIM


def _gaussian_1d(size, sigma):
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-0.5 * coords**2 / sigma**2)
    return g / g.sum()


def depth_ssim(pred, gt, max_val, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03):
    """SSIM of two depth maps (H, W) in float64, the same computation as `tf.image.ssim`.

    Gaussian window 11x11, sigma 1.5 (separable, normalised), VALID filtering, C1 = (k1 max_val)^2,
    C2 = (k2 max_val)^2, mean of the SSIM map. `max_val` is the dynamic range of depth (the
    protocol's cap: 10 m for NYU, 80 m for KITTI); tf.image.ssim needs it set, its default is none.
    """
    pred = np.asarray(pred, dtype=np.float64).squeeze()
    gt = np.asarray(gt, dtype=np.float64).squeeze()
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"depth_ssim needs two maps of the same (H, W) shape, got {pred.shape} and {gt.shape}.")
    if min(gt.shape) < filter_size:
        raise ValueError(f"depth_ssim needs images of at least {filter_size}x{filter_size}, got {gt.shape}.")
    window = _gaussian_1d(filter_size, filter_sigma)

    def blur(x):
        x = np.lib.stride_tricks.sliding_window_view(x, filter_size, axis=0) @ window
        return np.lib.stride_tricks.sliding_window_view(x, filter_size, axis=1) @ window

    c1 = (k1 * max_val) ** 2
    c2 = (k2 * max_val) ** 2
    mu_x, mu_y = blur(pred), blur(gt)
    num0 = 2.0 * mu_x * mu_y
    den0 = mu_x**2 + mu_y**2
    luminance = (num0 + c1) / (den0 + c1)
    contrast_structure = (2.0 * blur(pred * gt) - num0 + c2) / (blur(pred**2 + gt**2) - den0 + c2)
    return float(np.mean(luminance * contrast_structure))


# ----------------------------------------------------------------------------------------- evaluator


def _as_map(array, what):
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise DataError(f"{what} must be a single-channel map (H, W) or (H, W, 1), got shape {array.shape}.")
    return array


def delta_fractions(pred, gt, valid, comparison="<"):
    """{"d1", "d2", "d3"}: the fraction of valid pixels with max(d/g, g/d) < 1.25^k (or <= with
    comparison "<="), the ratio taken on float32 values as the official evaluators do."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p32, g32 = np.asarray(pred, dtype=np.float32), np.asarray(gt, dtype=np.float32)
        ratio = np.maximum(p32 / g32, g32 / p32)
    count = max(int(np.count_nonzero(valid)), 1)
    compare = np.less if comparison == "<" else np.less_equal
    return {f"d{k}": np.count_nonzero(compare(ratio, np.float32(1.25**k)) & valid) / count for k in (1, 2, 3)}


@dataclass
class EvaluationResult:
    """Averaged metrics with the per-image rows they came from.

    `count`: images that entered the average; `excluded`: names of images without a valid pixel;
    `skipped`: names of inputs without ground truth (e.g. BTS KITTI lines with GT "None") or, with `skip_bad`,
    that could not be read.
    """

    protocol: Protocol
    count: int
    metrics: dict
    rows: list
    excluded: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    def to_dict(self):
        """The `--json` document (metrics as floats, inf/NaN included; `strict_json` writes those as null)."""
        return {
            "protocol": self.protocol.name,
            "count": self.count,
            "metrics": {key: float(value) for key, value in self.metrics.items()},
            "averaging": self.protocol.averaging,
            "excluded": len(self.excluded),
            "skipped": len(self.skipped),
            "settings": self.protocol.summary(),
        }

    def to_frame(self):
        """Per-image rows as a pandas DataFrame (the `--csv` file)."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def format_table(self):
        """Human-readable table of the averaged metrics."""
        keys = list(self.metrics)
        header = " ".join(f"{key:>9}" for key in keys)
        values = " ".join(f"{self.metrics[key]:>9.4f}" for key in keys)
        lines = [
            f"protocol {self.protocol.name}: {self.count} images evaluated, {len(self.excluded)} excluded "
            f"(no valid pixel), {len(self.skipped)} skipped (no ground truth or unreadable)",
            f"  {self.protocol.summary()}",
            header,
            values,
        ]
        return "\n".join(lines)


class Evaluator:
    """Streaming protocol evaluator: `add` one (prediction, ground truth) pair at a time, then `result`.

    Per image: the prediction is brought to the ground truth's grid: resized bilinearly if its size
    differs (cv2.resize INTER_LINEAR, as the HQMD code), with `kb_crop` a 352x1216 prediction pasted
    into a zero canvas of the frame, with the `nyu-hu` protocol brought to the 228x304 metric grid
    (`Protocol.test_input` "hu"); the protocol's prediction handling, crop and valid mask are applied;
    metrics come from `hqdepth.metrics.per_image_errors` in float64 (delta_k from the float32 ratio with
    the protocol's comparison). An image with no valid pixel is excluded with a warning and listed in
    the result. A resize that changes the aspect ratio by more than `ASPECT_TOLERANCE` (0.5 %) is
    refused, naming both sizes (usually a forgotten `--kb-crop` or a wrong pairing); with
    `resize_any=True` it is done with a warning naming both sizes. `ssim=True` adds `depth_ssim` per
    image over the crop (invalid ground-truth pixels take the prediction's value, so for dense ground
    truth it is exactly tf.image.ssim); `ssim_max_val` defaults to the protocol's max depth.
    """

    def __init__(self, protocol, ssim=False, ssim_max_val=None, resize_any=False):
        self.protocol = get_protocol(protocol)
        self.resize_any = resize_any
        self.ssim = ssim
        if ssim and ssim_max_val is None:
            p = self.protocol
            ssim_max_val = p.max_depth or (p.clip[1] if p.clip and math.isfinite(p.clip[1]) else None)
            if ssim_max_val is None:
                raise ConfigError(f"protocol {p.name} has no max depth: give the SSIM max_val explicitly.")
        self.ssim_max_val = ssim_max_val
        self.rows = []
        self.excluded = []
        self.skipped = []
        self._mean_log = []  # per-image mean of ln d - ln g, for the pooled silog
        self._warned = set()

    def _fit_prediction(self, pred, gt_shape, name):
        p = self.protocol
        if p.test_input == "hu":
            return self._fit_hu(pred, gt_shape, name)
        if p.kb_crop and pred.shape != tuple(gt_shape):
            height, width = gt_shape
            if height < KB_CROP_SIZE[0] or width < KB_CROP_SIZE[1]:
                raise DataError(f"{name}: --kb-crop needs ground truth of at least 352x1216, got {height}x{width}.")
            if pred.shape != KB_CROP_SIZE:
                self._check_aspect(pred.shape, KB_CROP_SIZE, name, "the KB crop 352x1216")
                pred = resize_bilinear_cv2(pred, *KB_CROP_SIZE)
            top, left = height - KB_CROP_SIZE[0], (width - KB_CROP_SIZE[1]) // 2
            canvas = np.zeros(gt_shape, dtype=np.float64)
            canvas[top:top + KB_CROP_SIZE[0], left:left + KB_CROP_SIZE[1]] = pred
            return canvas
        if pred.shape != gt_shape:
            self._check_aspect(pred.shape, gt_shape, name, "the ground truth")
            pred = resize_bilinear_cv2(pred, *gt_shape)
        return pred

    def _fit_hu(self, pred, gt_shape, name):
        """A prediction on the Hu/SARPN 228x304 grid: as is; at the full frame: its field of view of the
        crop; otherwise (e.g. the network's 114x152): the whole map; resized with align_corners=True."""
        if pred.shape == HU_CROP:
            return pred.astype(np.float64)
        if pred.shape == tuple(gt_shape):
            height, width = hu_scaled_size(*gt_shape)
            top, left = hu_crop_box(height, width)
            sy, sx = gt_shape[0] / height, gt_shape[1] / width
            r0, c0 = int(round(top * sy)), int(round(left * sx))
            r1, c1 = int(round((top + HU_CROP[0]) * sy)), int(round((left + HU_CROP[1]) * sx))
            pred = pred[r0:r1, c0:c1]
        else:
            self._check_aspect(pred.shape, HU_CROP, name, "the 228x304 Hu/SARPN crop")
        return resize_bilinear_align_corners(pred, *HU_CROP)

    def _check_aspect(self, shape, target, name, what):
        if not aspect_differs(shape, target):
            return
        change = f"prediction is {shape[0]}x{shape[1]} but {what} is {target[0]}x{target[1]}; the aspect ratios " \
                 f"differ by {100 * aspect_change(shape, target):.2f} %"
        if not self.resize_any:
            hint = " (pass --kb-crop if the predictions are KITTI benchmark crops)" if shape == KB_CROP_SIZE else ""
            raise DataError(f"{name}: {change}, so a resize would distort it{hint}. Use --resize-any to resize anyway.")
        if (shape, target) not in self._warned:
            self._warned.add((shape, target))
            log.warning("%s: %s; resized anyway (--resize-any).", name, change)

    def check_ground_truth(self, shape, name="image", advice=None):
        """DataError when ground truth of `shape` (H, W) is not what the protocol's crop is defined on: another
        frame size than its `frame_size` (NYU's 480x640); for a crop in fractions of the full KITTI frame (Garg,
        Eigen), a frame whose shape is not KITTI's (e.g. NYU's, whose millimetre PNGs would also be read as / 256),
        or the 352x1216 KB crop, which would then cut another region than the published one. `advice`
        replaces what the message tells an `evaluate` user to do."""
        p = self.protocol
        shape = tuple(shape[:2])
        if p.frame_size is not None and shape != tuple(p.frame_size):
            raise DataError(
                f"{name}: ground truth is {shape[0]}x{shape[1]} but protocol {p.name} is defined on "
                f"{p.frame_size[0]}x{p.frame_size[1]} frames (its crop is in pixels of that size)."
                + (f" {advice}" if advice else "")
            )
        if not p.crops_in_fractions:
            return
        if not 2.8 <= shape[1] / max(shape[0], 1) <= 3.8:
            raise DataError(
                f"{name}: ground truth is {shape[0]}x{shape[1]}, not a KITTI frame (about 375x1242, 3.3 times as wide "
                f"as high): protocol {p.name}'s crop is a fraction of the full KITTI frame (and its PNG depth is "
                "read as value / 256). " + (advice or "Use a protocol for this data (e.g. nyu-eigen, or custom).")
            )
        if shape == KB_CROP_SIZE:
            raise DataError(
                f"{name}: ground truth is 352x1216, the KITTI benchmark (KB) crop, but protocol {p.name}'s crop is a "
                "fraction of the full frame (about 375x1242), as in BTS's evaluation. "
                + (advice or "Score the full frames (a SPEC without kb_crop=true), into which predictions of the KB "
                              "crop are pasted (with --pairs: --kb-crop).")
            )

    def prepare(self, pred, gt, name="image"):
        """(prediction, ground truth, valid) of one image after fitting, handling and crop, float64."""
        p = self.protocol
        gt = _as_map(gt, f"{name}: ground truth").astype(np.float64)
        pred = _as_map(pred, f"{name}: prediction")
        self.check_ground_truth(gt.shape, name)
        pred = self._fit_prediction(pred, gt.shape, name).astype(np.float64)
        if p.test_input == "hu":
            gt = hu_ground_truth(gt)
        pred = p.handle_prediction(pred)
        valid = p.valid(gt)
        if p.clamp_floor is not None:
            gt = np.where(gt <= p.clamp_floor, p.clamp_floor, gt)
        if p.crop is not None:
            r0, r1, c0, c1 = p.crop.bounds(*gt.shape)
            pred, gt, valid = pred[r0:r1, c0:c1], gt[r0:r1, c0:c1], valid[r0:r1, c0:c1]
        return pred, gt, valid

    def add(self, pred, gt, name=None, **info):
        """Evaluate one image; returns its row (name, info, valid_pixels, excluded, metrics)."""
        name = name if name is not None else f"image {len(self.rows) + 1}"
        pred, gt, valid = self.prepare(pred, gt, name)
        ssim = None
        if self.ssim and valid.any():
            ssim = depth_ssim(pred, np.where(valid, gt, pred), self.ssim_max_val)
        prepared = pred, gt
        if self.protocol.densedepth_swap_bug:  # DenseDepth calls compute_errors(pred, gt) against (gt, pred)
            pred, gt = gt, pred
        from hqdepth.metrics import per_image_errors

        keys = self.protocol.metric_keys()
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            errors, counts = per_image_errors(pred[None], gt[None], valid[None], xp=np)
            count = int(counts[0])
            errors = {key: float(value[0]) for key, value in errors.items()}
            if "mae" in keys:
                errors["mae"] = float(np.sum(np.abs(pred - gt)[valid]) / max(count, 1))
            # delta_k: the official evaluators divide float32 maps; quantised PNG depth puts many pixels
            # exactly on 1.25^k, where only the float32 quotient decides as they do. Counts stay exact.
            errors.update(delta_fractions(pred, gt, valid, self.protocol.delta_comparison))
            mean_log = math.nan
            if self.protocol.averaging == "pooled" and count > 0:
                mean_log = float(np.mean(np.log(pred[valid]) - np.log(gt[valid])))
        row = {"name": name, **info, "valid_pixels": count, "excluded": count == 0}
        if count == 0:
            log.warning("%s: no valid ground-truth pixel under protocol %s; excluded from the average.",
                        name, self.protocol.name)
            self.excluded.append(name)
            row.update({key: math.nan for key in keys})
        else:
            row.update({key: errors[key] for key in keys})
            if self.protocol.averaging == "pooled" and "silog" in keys and "rmse_log" not in keys:
                row["rmse_log"] = errors["rmse_log"]
            bad = [key for key in keys if not math.isfinite(row[key])]
            if bad:
                log.warning("%s: %s not finite: %s.", name, ", ".join(bad), self._not_finite_cause(*prepared, valid))
        if self.ssim:
            row["ssim"] = math.nan if ssim is None else ssim
        self._mean_log.append(mean_log)
        self.rows.append(row)
        return row

    def _not_finite_cause(self, pred, gt, valid):
        """Which side of a valid pixel made a metric inf/NaN: a prediction the protocol does not clip, or a
        ground truth of zero that it counts (`nyu-hu`, as Hu et al.'s code)."""
        name = self.protocol.name
        causes = []
        with np.errstate(invalid="ignore"):
            if not np.all(np.isfinite(pred[valid]) & (pred[valid] > 0)):
                causes.append(f"the prediction has inf/NaN/non-positive values that protocol {name} does not clip")
            if not np.all(np.isfinite(gt[valid]) & (gt[valid] > 0)):
                causes.append(f"the ground truth has zero, negative or infinite depth that protocol {name} counts "
                              "as valid (as its official code does)")
        return " and ".join(causes) or "overflow in the metric"

    def skip(self, name, reason="no ground truth", warn=True):
        """Record an input that could not be evaluated (counted in the result); `warn`: log it."""
        if warn:
            log.warning("%s: %s; skipped.", name, reason)
        self.skipped.append(name)

    def result(self):
        """Average the rows with the protocol's averaging."""
        names = self.protocol.metric_keys() + (("ssim",) if self.ssim else ())
        used = [i for i, row in enumerate(self.rows) if not row["excluded"]]
        if not used:
            raise DataError(
                f"no image could be evaluated under protocol {self.protocol.name}: {len(self.rows)} without a "
                f"valid pixel, {len(self.skipped)} without ground truth or unreadable."
            )
        values = {key: np.array([self.rows[i][key] for i in used], dtype=np.float64) for key in names}
        counts = np.array([self.rows[i]["valid_pixels"] for i in used], dtype=np.float64)
        averaging = self.protocol.averaging
        metrics = {}
        for key in names:
            if averaging == "pooled" and key != "ssim":
                if key in ROOT_METRICS:
                    metrics[key] = math.sqrt(np.sum(values[key] ** 2 * counts) / counts.sum())
                elif key != "silog":
                    metrics[key] = float(np.sum(values[key] * counts) / counts.sum())
            elif averaging == "rms_of_mse" and key in ROOT_METRICS:
                metrics[key] = math.sqrt(np.mean(values[key] ** 2))
            else:
                metrics[key] = float(np.mean(values[key]))
        if averaging == "pooled" and "silog" in names:  # silog = 100 sqrt(E[e^2] - E[e]^2) over the pooled pixels
            mean_log = np.array([self._mean_log[i] for i in used])
            rmse_log = np.array([self.rows[i]["rmse_log"] for i in used], dtype=np.float64)
            e2 = np.sum(rmse_log ** 2 * counts) / counts.sum()
            e1 = np.sum(mean_log * counts) / counts.sum()
            metrics["silog"] = 100.0 * math.sqrt(max(e2 - e1 * e1, 0.0)) if np.isfinite(e2 - e1 * e1) else math.nan
            metrics = {key: metrics[key] for key in names}
        return EvaluationResult(self.protocol, len(used), metrics, list(self.rows), list(self.excluded),
                                list(self.skipped))


def evaluate_arrays(preds, gts, protocol="nyu-eigen", names=None, ssim=False, ssim_max_val=None, resize_any=False):
    """Evaluate sequences of prediction and ground-truth maps (metres) under a protocol."""
    evaluator = Evaluator(protocol, ssim=ssim, ssim_max_val=ssim_max_val, resize_any=resize_any)
    names = list(names) if names is not None else [None] * len(gts)
    if not (len(preds) == len(gts) == len(names)):
        raise DataError(f"got {len(preds)} predictions, {len(gts)} ground truths and {len(names)} names.")
    for pred, gt, name in zip(preds, gts, names):
        evaluator.add(pred, gt, name)
    return evaluator.result()
