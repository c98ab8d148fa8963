"""Published depth-evaluation protocols and the NumPy (float64) evaluator.

A `Protocol` is data: crop, valid ground-truth range, prediction handling, averaging. The presets
in `PROTOCOLS` reproduce the official evaluators (facts: specs/evaluation_and_data.md §1-3):

- `nyu-eigen`       BTS `eval_with_pngs.py`/`bts_eval.py` with `--eigen_crop` on NYU (also the Toolbox).
- `nyu-hqmd`        HQMD `test_nyu_depth_v2.py` + `metrics.compute_metrics_for_single_map`.
- `nyu-densedepth`  DenseDepth master `evaluate.py` (all pixels of all images pooled).
- `kitti-garg`      BTS KITTI with `--garg_crop` (also monodepth, Toolbox).
- `kitti-eigen`     BTS KITTI with `--eigen_crop` (monodepth's Eigen NIPS14 crop).
- `custom`          every field from options (`custom_protocol`).

Per-image formulas come from `hqdepth.metrics.per_image_errors` (the single implementation, shared
with the streaming Keras metrics), evaluated here in float64. `hqdepth.metrics` re-exports this
module's API; it is imported lazily below because it imports this module at its end.
"""

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hqdepth.errors import ConfigError, DataError
from hqdepth.predict import DepthModel, predict_depth  # noqa: F401  (model loading lives there; re-exported)

log = logging.getLogger(__name__)

KB_CROP_SIZE = (352, 1216)  # KITTI benchmark crop: rows H-352:H, cols (W-1216)//2 + [0, 1216)
AVERAGINGS = ("per_image", "pooled", "rms_of_mse")
ROOT_METRICS = ("rmse", "rmse_log")  # square roots of a mean: averaged differently by rms_of_mse/pooled
NYU_FRAME = (480, 640)
DELTA_METRICS = ("d1", "d2", "d3")


def _formulas():
    """`hqdepth.metrics` (imported on first use: it re-exports this module at its end)."""
    from hqdepth import metrics

    return metrics


def metric_names():
    """The metric keys of every result, in the order `hqdepth.metrics.METRIC_NAMES` gives them."""
    return tuple(_formulas().METRIC_NAMES)


# --------------------------------------------------------------------------------------------- crops


@dataclass(frozen=True)
class Crop:
    """Evaluation window of an image.

    mode "index": `rows`/`cols` are Python slice bounds (a negative bound counts from the end, as
    HQMD's `[-460:-20]`); mode "fraction": BTS KITTI crops, `int(fraction * size)` for each bound.
    """

    rows: tuple
    cols: tuple
    mode: str = "index"

    def bounds(self, height, width):
        """(row_start, row_stop, col_start, col_stop) for an image of this size; DataError if it does not fit."""
        if self.mode == "fraction":
            r0, r1 = int(self.rows[0] * height), int(self.rows[1] * height)
            c0, c1 = int(self.cols[0] * width), int(self.cols[1] * width)
        else:
            r0, r1 = (b + height if b < 0 else b for b in self.rows)
            c0, c1 = (b + width if b < 0 else b for b in self.cols)
        if not (0 <= r0 < r1 <= height and 0 <= c0 < c1 <= width):
            raise DataError(f"crop {self} does not fit an image of {height}x{width}.")
        return r0, r1, c0, c1

    def __str__(self):
        if self.mode == "fraction":
            return f"rows {self.rows[0]}H:{self.rows[1]}H, cols {self.cols[0]}W:{self.cols[1]}W"
        return f"rows {self.rows[0]}:{self.rows[1]}, cols {self.cols[0]}:{self.cols[1]}"


CROPS = {
    # BTS eval_mask[45:471, 41:601] (one pixel smaller on top/left than the NYU toolbox mask).
    "nyu-eigen": Crop((45, 471), (41, 601)),
    # HQMD crop = [-460, -20, 25, 617], applied as [crop[0]:crop[1], crop[2]:crop[3]].
    "nyu-hqmd": Crop((-460, -20), (25, 617)),
    # DenseDepth's widely copied [20, 459, 24, 615] (inclusive).
    "nyu-densedepth": Crop((20, 460), (24, 616)),
    # BTS/monodepth fractions of the full KITTI frame.
    "kitti-garg": Crop((0.40810811, 0.99189189), (0.03594771, 0.96405229), "fraction"),
    "kitti-eigen": Crop((0.3324324, 0.91351351), (0.0359477, 0.96405229), "fraction"),
}


def parse_crop(text):
    """'none', a preset crop name, or 'R0:R1,C0:C1' (slice bounds, negatives from the end) -> Crop | None."""
    text = str(text).strip()
    if text.lower() == "none":
        return None
    if text in CROPS:
        return CROPS[text]
    try:
        rows, cols = text.split(",")
        r0, r1 = (int(v) for v in rows.split(":"))
        c0, c1 = (int(v) for v in cols.split(":"))
    except ValueError:
        raise ConfigError(
            f"Bad crop {text!r}: expected 'none', one of {', '.join(CROPS)}, or 'R0:R1,C0:C1' (e.g. 45:471,41:601)."
        ) from None
    return Crop((r0, r1), (c0, c1))


# ----------------------------------------------------------------------------------------- protocols


@dataclass(frozen=True)
class Protocol:
    """How one published evaluator turns (prediction, ground truth) into metrics.

    crop: evaluation window (None = whole image). Valid pixels: finite gt with min_depth < gt and
    gt < max_depth (gt <= max_depth if max_inclusive; no upper bound if max_depth is None).
    clip (lo, hi): prediction clipped to [lo, hi], +inf -> hi, NaN -> lo (BTS). clamp_floor f:
    prediction and gt values <= f set to f, nothing else touched, so +inf/NaN propagate (HQMD).
    averaging: "per_image" (metric per image, mean over images), "pooled" (all valid pixels of all
    images as one set), "rms_of_mse" (per image, but rmse/rmse_log = sqrt(mean of per-image squares)).
    densedepth_swap_bug: evaluate compute_errors(pred, gt) as DenseDepth master does (abs_rel and
    sq_rel divide by the prediction). frame_size: the ground-truth size the crop is defined for
    (checked). png_scale: default PNG value per metre. kb_crop: the prediction covers only the KITTI
    benchmark window 352x1216 and is pasted into a zero canvas of the ground-truth size (BTS
    `--do_kb_crop`) before clipping, as `bts_eval.py` and the BTS online evaluation do.
    """

    name: str
    crop: Crop | None = None
    min_depth: float = 1e-3
    max_depth: float | None = None
    max_inclusive: bool = False
    clip: tuple | None = None
    clamp_floor: float | None = None
    averaging: str = "per_image"
    densedepth_swap_bug: bool = False
    frame_size: tuple | None = None
    png_scale: float | None = None
    kb_crop: bool = False
    description: str = ""
    used_by: str = ""

    def __post_init__(self):
        if self.averaging not in AVERAGINGS:
            raise ConfigError(f"averaging must be one of {', '.join(AVERAGINGS)}, got {self.averaging!r}.")
        if self.max_depth is not None and not self.max_depth > self.min_depth:
            raise ConfigError(f"max_depth ({self.max_depth}) must be greater than min_depth ({self.min_depth}).")
        if self.clip is not None:
            lo, hi = self.clip
            if not lo < hi:
                raise ConfigError(f"prediction clip range must have lo < hi, got {self.clip}.")
            if lo <= 0:
                raise ConfigError(f"prediction clip lower bound must be > 0 (logs of the prediction), got {lo}.")
        if self.png_scale is not None and not self.png_scale > 0:
            raise ConfigError(f"png_scale must be > 0, got {self.png_scale}.")

    def with_options(self, **changes):
        """A copy with some fields changed (e.g. `kb_crop=True`)."""
        return replace(self, **changes)

    def valid(self, gt):
        """Pixels that count: finite gt inside the protocol's range."""
        valid = np.isfinite(gt) & (gt > self.min_depth)
        if self.max_depth is not None:
            valid &= (gt <= self.max_depth) if self.max_inclusive else (gt < self.max_depth)
        return valid

    def handle_prediction(self, pred):
        """Prediction clipping/clamping of the protocol (a new array)."""
        if self.clip is not None:
            lo, hi = self.clip
            pred = np.where(np.isnan(pred), lo, np.clip(pred, lo, hi))
        if self.clamp_floor is not None:
            pred = np.where(pred <= self.clamp_floor, self.clamp_floor, pred)
        return pred

    def summary(self):
        """One line: crop, valid range, prediction handling, averaging."""
        upper = "" if self.max_depth is None else (" <= " if self.max_inclusive else " < ") + f"{self.max_depth:g}"
        crop = str(self.crop or "none")
        if self.crop is not None and self.frame_size is not None:
            r0, r1, c0, c1 = self.crop.bounds(*self.frame_size)
            crop = f"rows {r0}:{r1}, cols {c0}:{c1} of {self.frame_size[0]}x{self.frame_size[1]}"
        parts = [f"crop {crop}", f"valid {self.min_depth:g} < gt{upper}"]
        if self.clip is not None:
            parts.append(f"prediction clipped to [{self.clip[0]:g}, {self.clip[1]:g}] (+inf->max, NaN->min)")
        if self.clamp_floor is not None:
            parts.append(f"gt and prediction <= {self.clamp_floor:g} set to {self.clamp_floor:g}, no upper clip")
        if self.clip is None and self.clamp_floor is None:
            parts.append("prediction used as is")
        if self.kb_crop:
            parts.append("KB-crop prediction pasted into the full frame")
        if self.densedepth_swap_bug:
            parts.append("DenseDepth argument-swap bug (rel errors divide by the prediction)")
        parts.append(f"averaging {self.averaging}")
        return "; ".join(parts)


PROTOCOLS = {
    "nyu-eigen": Protocol(
        "nyu-eigen", crop=CROPS["nyu-eigen"], min_depth=1e-3, max_depth=10.0, clip=(1e-3, 10.0),
        frame_size=NYU_FRAME, png_scale=1000.0,
        description="BTS NYU evaluation: Eigen crop 45:471, 41:601; 1e-3 < gt < 10; prediction clipped to [1e-3, 10]",
        used_by="BTS (Lee et al. 2019) utils/eval_with_pngs.py --eigen_crop; Monocular-Depth-Estimation-Toolbox; "
                "most PyTorch NYU code",
    ),
    "nyu-hqmd": Protocol(
        "nyu-hqmd", crop=CROPS["nyu-hqmd"], min_depth=0.01, max_depth=10.0, max_inclusive=True, clamp_floor=0.01,
        frame_size=NYU_FRAME, png_scale=1000.0,
        description="HQMD code: crop 20:460, 25:617; 0.01 < gt <= 10; values <= 0.01 set to 0.01; no upper clip",
        used_by="HQMD (Jiang & Huang, ICIP 2019) HalleyJiang/HQMDE test_nyu_depth_v2.py + metrics.py",
    ),
    "nyu-densedepth": Protocol(
        "nyu-densedepth", crop=CROPS["nyu-densedepth"], min_depth=0.0, max_depth=None, clip=(0.1, 10.0),
        averaging="pooled", frame_size=NYU_FRAME, png_scale=1000.0,
        description="DenseDepth master: crop 20:460, 24:616; every pixel with gt > 0; prediction clipped to "
                    "[0.1, 10] (its predict()); all pixels of all images pooled",
        used_by="DenseDepth (Alhashim & Wonka 2018) ialhashim/DenseDepth evaluate.py, master since fdcef58",
    ),
    "kitti-garg": Protocol(
        "kitti-garg", crop=CROPS["kitti-garg"], min_depth=1e-3, max_depth=80.0, clip=(1e-3, 80.0), png_scale=256.0,
        description="BTS KITTI Eigen split: Garg crop (fractions of H, W); 1e-3 < gt < 80; prediction clipped",
        used_by="BTS --garg_crop (Lee et al. 2019); Garg et al. ECCV 2016; monodepth; Toolbox",
    ),
    "kitti-eigen": Protocol(
        "kitti-eigen", crop=CROPS["kitti-eigen"], min_depth=1e-3, max_depth=80.0, clip=(1e-3, 80.0), png_scale=256.0,
        description="BTS KITTI with --eigen_crop: Eigen NIPS14 crop (fractions of H, W); 1e-3 < gt < 80; "
                    "prediction clipped",
        used_by="Eigen et al. NIPS 2014 (crop as found by monodepth); BTS --eigen_crop on KITTI",
    ),
    "custom": Protocol(
        "custom", crop=None, min_depth=1e-3, max_depth=None, clip=None,
        description="crop, valid range, clipping and averaging from options",
        used_by="-",
    ),
}


def custom_protocol(crop=None, min_depth=1e-3, max_depth=None, max_inclusive=False, clip="range",
                    clamp_floor=None, averaging="per_image", densedepth_swap_bug=False, png_scale=None,
                    kb_crop=False):
    """The `custom` protocol from options.

    crop: Crop, None, or text for `parse_crop`. clip: "range" (BTS clipping to [min_depth,
    max_depth], +inf -> max, NaN -> min; without max_depth only the lower bound and NaN -> min),
    "none", or (lo, hi).
    """
    if isinstance(crop, str):
        crop = parse_crop(crop)
    if isinstance(clip, str):
        if clip == "range":
            lo = min_depth if min_depth > 0 else None
            if lo is None:
                raise ConfigError("clip 'range' needs min_depth > 0 (the prediction's logs); use clip 'none' or LO,HI.")
            clip = (lo, math.inf if max_depth is None else max_depth)
        elif clip == "none":
            clip = None
        else:
            raise ConfigError(f"clip must be 'range', 'none' or (lo, hi), got {clip!r}.")
    elif clip is not None:
        clip = tuple(float(v) for v in clip)
    return PROTOCOLS["custom"].with_options(
        crop=crop, min_depth=float(min_depth), max_depth=None if max_depth is None else float(max_depth),
        max_inclusive=bool(max_inclusive), clip=clip, clamp_floor=None if clamp_floor is None else float(clamp_floor),
        averaging=averaging, densedepth_swap_bug=bool(densedepth_swap_bug),
        png_scale=None if png_scale is None else float(png_scale), kb_crop=bool(kb_crop),
    )


def get_protocol(protocol, **changes):
    """A Protocol from a name in PROTOCOLS (or a Protocol), with optional field changes."""
    if isinstance(protocol, Protocol):
        return protocol.with_options(**changes) if changes else protocol
    if protocol not in PROTOCOLS:
        raise ConfigError(f"Unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}.")
    return PROTOCOLS[protocol].with_options(**changes) if changes else PROTOCOLS[protocol]


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


def resize_bilinear(image, height, width):
    """Bilinear resize of a 2-D map as `cv2.resize(..., INTER_LINEAR)` (the HQMD code), dtype kept."""
    import cv2

    image = np.ascontiguousarray(image)
    if image.dtype not in (np.float32, np.float64):
        image = image.astype(np.float64)
    return cv2.resize(image, (int(width), int(height)), interpolation=cv2.INTER_LINEAR)


def _as_map(array, what):
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise DataError(f"{what} must be a single-channel map (H, W) or (H, W, 1), got shape {array.shape}.")
    return array


def _aspect_differs(a, b, tolerance=0.02):
    return abs((a[1] / a[0]) / (b[1] / b[0]) - 1.0) > tolerance


@dataclass
class EvaluationResult:
    """Averaged metrics with the per-image rows they came from.

    `count`: images that entered the average; `excluded`: names of images without a valid pixel;
    `skipped`: names of inputs without ground truth (e.g. BTS KITTI lines with GT "None").
    """

    protocol: Protocol
    count: int
    metrics: dict
    rows: list
    excluded: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    def to_dict(self):
        """The `--json` document."""
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
            f"(no valid pixel), {len(self.skipped)} skipped (no ground truth)",
            f"  {self.protocol.summary()}",
            header,
            values,
        ]
        return "\n".join(lines)


class Evaluator:
    """Streaming protocol evaluator: `add` one (prediction, ground truth) pair at a time, then `result`.

    Per image: the prediction is resized to the ground truth if its size differs (bilinear, as
    cv2.resize INTER_LINEAR in the HQMD code) or, with `kb_crop`, pasted into the full frame; the
    protocol's prediction handling, crop and valid mask are applied; metrics come from
    `hqdepth.metrics.per_image_errors` in float64. An image with no valid pixel is excluded with
    a warning and listed in the result. `resize_any=False` refuses to resize between aspect ratios
    that differ by more than 2 % (usually a forgotten `--kb-crop` or a wrong pairing).
    `ssim=True` adds `depth_ssim` per image over the crop (invalid ground-truth pixels take the
    prediction's value, so for dense ground truth it is exactly tf.image.ssim); `ssim_max_val`
    defaults to the protocol's max depth.
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

    def _fit_prediction(self, pred, gt_shape, name):
        p = self.protocol
        if p.kb_crop:
            height, width = gt_shape
            if height < KB_CROP_SIZE[0] or width < KB_CROP_SIZE[1]:
                raise DataError(f"{name}: --kb-crop needs ground truth of at least 352x1216, got {height}x{width}.")
            if pred.shape != KB_CROP_SIZE:
                self._check_aspect(pred.shape, KB_CROP_SIZE, name, "the KB crop 352x1216")
                pred = resize_bilinear(pred, *KB_CROP_SIZE)
            top, left = height - KB_CROP_SIZE[0], (width - KB_CROP_SIZE[1]) // 2
            canvas = np.zeros(gt_shape, dtype=np.float64)
            canvas[top:top + KB_CROP_SIZE[0], left:left + KB_CROP_SIZE[1]] = pred
            return canvas
        if pred.shape != gt_shape:
            self._check_aspect(pred.shape, gt_shape, name, "the ground truth")
            pred = resize_bilinear(pred, *gt_shape)
        return pred

    def _check_aspect(self, shape, target, name, what):
        if not self.resize_any and _aspect_differs(shape, target):
            hint = " (pass --kb-crop if the predictions are KITTI benchmark crops)" if shape == KB_CROP_SIZE else ""
            raise DataError(
                f"{name}: prediction is {shape[0]}x{shape[1]} but {what} is {target[0]}x{target[1]}; the aspect "
                f"ratios differ, so a resize would distort it{hint}. Use --resize-any to resize anyway."
            )

    def prepare(self, pred, gt, name="image"):
        """(prediction, ground truth, valid) of one image after fitting, handling and crop, float64."""
        p = self.protocol
        gt = _as_map(gt, f"{name}: ground truth").astype(np.float64)
        pred = _as_map(pred, f"{name}: prediction")
        if p.frame_size is not None and gt.shape != tuple(p.frame_size):
            raise DataError(
                f"{name}: ground truth is {gt.shape[0]}x{gt.shape[1]} but protocol {p.name} is defined on "
                f"{p.frame_size[0]}x{p.frame_size[1]} frames (its crop is in pixels of that size)."
            )
        pred = self._fit_prediction(pred, gt.shape, name).astype(np.float64)
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
        if self.protocol.densedepth_swap_bug:  # DenseDepth calls compute_errors(pred, gt) against (gt, pred)
            pred, gt = gt, pred
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            errors, counts = _formulas().per_image_errors(pred[None], gt[None], valid[None], xp=np)
            # delta_k: the official evaluators divide float32 maps; quantised PNG depth puts many pixels
            # exactly on 1.25^k, where only the float32 quotient decides as they do. Counts stay exact.
            errors32, _ = _formulas().per_image_errors(
                pred.astype(np.float32)[None], gt.astype(np.float32)[None], valid[None], xp=np)
            errors.update({key: errors32[key] for key in DELTA_METRICS})
            mean_log = math.nan
            if self.protocol.averaging == "pooled" and counts[0] > 0:
                mean_log = float(np.mean(np.log(pred[valid]) - np.log(gt[valid])))
        count = int(counts[0])
        row = {"name": name, **info, "valid_pixels": count, "excluded": count == 0}
        if count == 0:
            log.warning("%s: no valid ground-truth pixel under protocol %s; excluded from the average.",
                        name, self.protocol.name)
            self.excluded.append(name)
            row.update({key: math.nan for key in errors})
        else:
            row.update({key: float(value[0]) for key, value in errors.items()})
            bad = [key for key in errors if not math.isfinite(row[key])]
            if bad:
                log.warning("%s: %s not finite: the prediction has inf/NaN/non-positive values that protocol %s "
                            "does not clip.", name, ", ".join(bad), self.protocol.name)
        if self.ssim:
            row["ssim"] = math.nan if ssim is None else ssim
        self._mean_log.append(mean_log)
        self.rows.append(row)
        return row

    def skip(self, name, reason="no ground truth"):
        """Record an input that could not be evaluated (counted in the result)."""
        log.warning("%s: %s; skipped.", name, reason)
        self.skipped.append(name)

    def result(self):
        """Average the rows with the protocol's averaging."""
        names = metric_names() + (("ssim",) if self.ssim else ())
        used = [i for i, row in enumerate(self.rows) if not row["excluded"]]
        if not used:
            raise DataError(
                f"no image could be evaluated under protocol {self.protocol.name}: {len(self.rows)} without a "
                f"valid pixel, {len(self.skipped)} without ground truth."
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
        if averaging == "pooled":  # silog = 100 sqrt(E[e^2] - E[e]^2) over the pooled pixels
            mean_log = np.array([self._mean_log[i] for i in used])
            e2 = np.sum(values["rmse_log"] ** 2 * counts) / counts.sum()
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


# ------------------------------------------------------------------------------------------- files


def read_depth(path, scale=None, where=None):
    """A depth map in metres (float64, H x W): `.png` 8- or 16-bit single channel = value / scale; `.npy` = metres."""
    path = Path(path)
    where = f"{where}: " if where else ""
    if not path.is_file():
        raise DataError(f"{where}file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DataError(f"{where}cannot read {path}: {error}") from None
        array = np.squeeze(array) if array.ndim > 2 else array
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise DataError(f"{where}{path} must hold one numeric (H, W) depth map, got {array.dtype} {array.shape}.")
        return array.astype(np.float64)
    if suffix == ".png":
        import cv2

        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise DataError(f"{where}cannot read {path} as a PNG image.")
        if image.ndim != 2:
            raise DataError(f"{where}{path} has {image.shape[2]} channels; a depth PNG must be single-channel.")
        if image.dtype not in (np.uint8, np.uint16):
            raise DataError(f"{where}{path} is {image.dtype}; expected an 8- or 16-bit depth PNG.")
        if scale is None:
            raise ConfigError(f"{where}{path}: the protocol has no default PNG scale; pass --pred-scale/--gt-scale.")
        return image.astype(np.float64) / float(scale)
    raise DataError(f"{where}{path}: unsupported depth file type {suffix!r} (use a 16-bit .png or a .npy in metres).")


def read_rgb(path, where=None):
    """An RGB image, uint8 (H, W, 3)."""
    import cv2

    path = Path(path)
    where = f"{where}: " if where else ""
    if not path.is_file():
        raise DataError(f"{where}file not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{where}cannot read {path} as an image.")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class PairLine:
    """One line of a pairs file: line number, first and second path (second None for a 'None' entry)."""

    where: str
    first: Path
    second: Path | None


def read_pairs(pairs_file, extra_columns=0):
    """Lines `<first> <second>` (plus up to `extra_columns` ignored columns, e.g. a BTS focal length).

    Paths are relative to the pairs file's folder; blank lines and `#` comments are skipped; a second
    entry `None` (BTS KITTI lines without ground truth) gives `second=None`.
    """
    pairs_file = Path(pairs_file)
    if not pairs_file.is_file():
        raise DataError(f"pairs file not found: {pairs_file}")
    try:
        lines = pairs_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read pairs file {pairs_file}: {error}") from None
    root = pairs_file.parent
    pairs = []
    for number, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        where = f"{pairs_file} line {number}"
        if not 2 <= len(tokens) <= 2 + extra_columns:
            expected = "2" if not extra_columns else f"2 to {2 + extra_columns}"
            raise DataError(f"{where}: expected {expected} whitespace-separated paths, got {len(tokens)}: {line!r}")
        second = None if tokens[1] == "None" else root / tokens[1]
        pairs.append(PairLine(where, root / tokens[0], second))
    if not pairs:
        raise DataError(f"pairs file {pairs_file} lists no image.")
    return pairs


def _png_scale(explicit, protocol):
    return float(explicit) if explicit is not None else protocol.png_scale


def _progress(total, desc, progress):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not progress, dynamic_ncols=True)


def evaluate_pairs(pairs_file, protocol, pred_scale=None, gt_scale=None, ssim=False, ssim_max_val=None,
                   resize_any=False, progress=True):
    """Evaluate a pairs file of `<prediction> <ground truth>` lines under a protocol."""
    protocol = get_protocol(protocol)
    pairs = read_pairs(pairs_file)
    evaluator = Evaluator(protocol, ssim=ssim, ssim_max_val=ssim_max_val, resize_any=resize_any)
    pred_scale, gt_scale = _png_scale(pred_scale, protocol), _png_scale(gt_scale, protocol)
    warned_8bit = False
    with _progress(len(pairs), "evaluate", progress) as bar:
        for pair in pairs:
            if pair.second is None:
                evaluator.skip(pair.where)
                bar.update()
                continue
            if not warned_8bit:
                warned_8bit = _warn_8bit(pair, pred_scale, gt_scale)
            pred = read_depth(pair.first, pred_scale, f"{pair.where} (prediction)")
            gt = read_depth(pair.second, gt_scale, f"{pair.where} (ground truth)")
            evaluator.add(pred, gt, pair.where, prediction=str(pair.first), ground_truth=str(pair.second))
            bar.update()
    return evaluator.result()


def _warn_8bit(pair, pred_scale, gt_scale):
    """Warn once when an 8-bit PNG is read: its value/scale meaning depends on the writer."""
    import cv2

    for path, scale in ((pair.first, pred_scale), (pair.second, gt_scale)):
        if path.suffix.lower() == ".png" and path.is_file():
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if image is not None and image.dtype == np.uint8:
                log.warning("%s: %s is an 8-bit PNG, read as value / %g m (max %.3f m); set --pred-scale/--gt-scale "
                            "if it was written with another scale (DenseDepth's 8-bit depth is value / 25.5).",
                            pair.where, path, scale, 255 / scale)
                return True
    return False


def _samples(data, split, gt_scale):
    """(length, iterator of (where, rgb, gt or None)) for a pairs file of RGB/GT paths or a dataset SPEC."""
    path = Path(data)
    if not path.is_file() and ":" not in str(data) and ("/" in str(data) or path.suffix):
        raise DataError(f"data pairs file not found: {path}")
    if path.is_file() and path.suffix.lower() not in (".txt", ".lst", ".list", ""):
        raise ConfigError(f"--data {data}: a pairs file must be a text list (.txt); for a dataset file give a SPEC "
                          f"such as nyu-mat:{data} or csv:{data}.")
    if path.is_file():
        pairs = read_pairs(path, extra_columns=1)

        def iterate():
            for pair in pairs:
                rgb = read_rgb(pair.first, f"{pair.where} (image)")
                gt = None if pair.second is None else read_depth(pair.second, gt_scale, f"{pair.where} (ground truth)")
                yield pair.where, rgb, gt

        return len(pairs), iterate()
    from hqdepth.data import open_source

    source = open_source(data, split=split)

    def iterate():
        for index in range(len(source)):
            sample = source[index]
            yield f"{data} sample {sample.meta.get('id', index)}", sample.rgb, sample.depth

    return len(source), iterate()


def evaluate_model(model, data, protocol, split="test", flip=False, gt_scale=None, ssim=False, ssim_max_val=None,
                   resize_any=False, progress=True):
    """Run a model (path or DepthModel) over a dataset (pairs file of RGB/GT paths, or a SPEC) and evaluate."""
    protocol = get_protocol(protocol)
    model = model if isinstance(model, DepthModel) else DepthModel(model)
    evaluator = Evaluator(protocol, ssim=ssim, ssim_max_val=ssim_max_val, resize_any=resize_any)
    total, samples = _samples(data, split, _png_scale(gt_scale, protocol))
    with _progress(total, "predict+evaluate", progress) as bar:
        for where, rgb, gt in samples:
            if gt is None:
                evaluator.skip(where)
            else:
                pred = predict_depth(model, rgb, flip=flip, kb_crop=protocol.kb_crop)
                evaluator.add(pred, gt, where)
            bar.update()
    return evaluator.result()
