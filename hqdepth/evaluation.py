"""Published depth-evaluation protocols and the NumPy (float64) evaluator.

A `Protocol` is data: crop, valid ground-truth range, prediction handling, averaging. The presets
in `PROTOCOLS` reproduce the official evaluators (facts: specs/evaluation_and_data.md §1-3):

- `nyu-eigen`       BTS `eval_with_pngs.py`/`bts_eval.py` with `--eigen_crop` on NYU (also the Toolbox).
- `nyu-hqmd`        HQMD `test_nyu_depth_v2.py` + `metrics.compute_metrics_for_single_map`.
- `nyu-densedepth`  DenseDepth master `evaluate.py` (all pixels of all images pooled).
- `kitti-garg`      BTS KITTI with `--garg_crop` (also monodepth, Toolbox).
- `kitti-eigen`     BTS KITTI with `--eigen_crop` (monodepth's Eigen NIPS14 crop).
- `nyu-hu`          Hu et al. `test.py`/`util.py` and SARPN `evaluate.py`: 228x304 centre crop of the frame
                    scaled to 240x320, only NaN ground truth masked, no clipping, delta with `<=`,
                    RMSE = sqrt(mean of per-image MSE).
- `custom`          every field from options (`custom_protocol`).

A protocol also says how its official code runs a network on a test image (`Protocol.test_input`):
BTS on the whole frame (NYU) or the KITTI benchmark crop at native resolution with each frame's focal,
HQMD on the image resized to 289x385, Hu/SARPN on the 228x304 crop. `evaluate_model` (the
`hqdepth evaluate --model` command) and the trainer's test evaluation follow it through
`protocol_prediction`; a model trained on fixed-size crops is rebuilt with a free input size for that
(`hqdepth.models.inference.free_size_model`, weights shared).

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
DELTA_COMPARISONS = ("<", "<=")
MASKS = ("range", "nan")
# How a protocol's official test code gives an image to the network (see Protocol).
TEST_INPUTS = ("native", "kb_crop", "resize", "hqmd", "hu")
HU_SCALE = 240  # Hu et al. / SARPN Scale(240): shorter side to 240 px
HU_CROP = (228, 304)  # CenterCrop([304, 228]) = width 304, height 228
# Relative change of the aspect ratio (width / height) above which a resize is reported (or refused);
# below it the change is rounding to a model's size (HQMD's 289x385 for 480x640 frames: 0.09 %).
ASPECT_TOLERANCE = 0.005
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

    delta_comparison: how delta_k counts a pixel: "<" (max(d/g, g/d) < 1.25^k: BTS, HQMD, DenseDepth,
    Toolbox) or "<=" (Hu et al. / SARPN `torch.le`). The ratio is taken in float32 as the official
    code does. mask: "range" (the valid range above) or "nan" (Hu et al. `setNanToZero`/`nValid`: every
    ground-truth pixel that is not NaN counts, whatever its value). metrics: the metric names the
    result reports (None: `metric_names()`); "mae" = mean |d - g| is available besides those.

    test_input: how the protocol's official test code gives an image to the network, used when a model
    is evaluated (`protocol_prediction`; prediction files are taken as they are):

    - "native": the whole image at its own size (BTS NYU: 480x640; DenseDepth); a model trained on
      fixed-size crops is rebuilt with a free input size (weights shared).
    - "kb_crop": the KITTI benchmark crop 352x1216 at native resolution (BTS `--do_kb_crop`), each
      frame's own focal; the prediction is pasted into a zero canvas of the frame (`kb_crop`).
    - "resize": the image resized bilinearly (cv2 INTER_LINEAR) to the model's input size and the
      prediction resized back (the package's generic choice for the `custom` protocol).
    - "hqmd": HQMDE `test_nyu_depth_v2.py`: RGB resized to the model's input size (289x385) with TF1
      `tf.image.resize_images` (bilinear, align_corners=False, no half-pixel centres), prediction
      resized to the frame with `cv2.resize(..., INTER_LINEAR)`.
    - "hu": Hu et al. / SARPN: RGB scaled so its shorter side is 240 (PIL bilinear), centre crop
      228x304; the prediction is upsampled to 228x304 (bilinear, align_corners=True) and the metrics
      are computed on that grid: the ground truth is scaled to 240x320 with PIL nearest and centre
      cropped the same way. A prediction file at the full frame is cut to the crop's field of view
      (rows 12:468, cols 16:624 of 480x640) and resized to 228x304 (align_corners=True).
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
    delta_comparison: str = "<"
    mask: str = "range"
    metrics: tuple | None = None
    test_input: str = "native"
    description: str = ""
    used_by: str = ""

    def __post_init__(self):
        if self.averaging not in AVERAGINGS:
            raise ConfigError(f"averaging must be one of {', '.join(AVERAGINGS)}, got {self.averaging!r}.")
        if self.delta_comparison not in DELTA_COMPARISONS:
            raise ConfigError(f"delta_comparison must be one of {', '.join(repr(c) for c in DELTA_COMPARISONS)}, "
                              f"got {self.delta_comparison!r}.")
        if self.mask not in MASKS:
            raise ConfigError(f"mask must be one of {', '.join(MASKS)}, got {self.mask!r}.")
        if self.test_input not in TEST_INPUTS:
            raise ConfigError(f"test_input must be one of {', '.join(TEST_INPUTS)}, got {self.test_input!r}.")
        if self.metrics is not None:
            known = {"abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "d1", "d2", "d3", "mae"}
            unknown = [name for name in self.metrics if name not in known]
            if unknown:
                raise ConfigError(f"unknown metric(s) {', '.join(map(repr, unknown))}; "
                                  f"known: {', '.join(sorted(known))}.")
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

    def metric_keys(self):
        """The metric names this protocol reports, in order."""
        return tuple(self.metrics) if self.metrics is not None else metric_names()

    def valid(self, gt):
        """Pixels that count: finite gt inside the protocol's range (mask "range"), or every gt that is
        not NaN (mask "nan", Hu et al.)."""
        if self.mask == "nan":
            return ~np.isnan(gt)
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
        valid = "valid: every gt that is not NaN" if self.mask == "nan" else f"valid {self.min_depth:g} < gt{upper}"
        if self.test_input == "hu":
            crop = "centre 228x304 of the frame scaled to 240x320 (gt PIL nearest)"
        parts = [f"crop {crop}", valid]
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
        parts.append(f"delta: max(d/g, g/d) {self.delta_comparison} 1.25^k")
        parts.append(f"a model sees {TEST_INPUT_WORDS[self.test_input]}")
        parts.append(f"averaging {self.averaging}")
        return "; ".join(parts)


TEST_INPUT_WORDS = {
    "native": "the whole image at its own size",
    "kb_crop": "the KB crop 352x1216 at native resolution with the frame's focal",
    "resize": "the image resized to its input size (cv2 bilinear)",
    "hqmd": "the image resized to its input size (TF1 resize_images), depth resized back with cv2",
    "hu": "the 228x304 centre crop of the image scaled to 240x320 (PIL bilinear)",
}

PROTOCOLS = {
    "nyu-eigen": Protocol(
        "nyu-eigen", crop=CROPS["nyu-eigen"], min_depth=1e-3, max_depth=10.0, clip=(1e-3, 10.0),
        frame_size=NYU_FRAME, png_scale=1000.0, test_input="native",
        description="BTS NYU evaluation: Eigen crop 45:471, 41:601; 1e-3 < gt < 10; prediction clipped to [1e-3, 10]",
        used_by="BTS (Lee et al. 2019) utils/eval_with_pngs.py --eigen_crop; Monocular-Depth-Estimation-Toolbox; "
                "most PyTorch NYU code",
    ),
    "nyu-hqmd": Protocol(
        "nyu-hqmd", crop=CROPS["nyu-hqmd"], min_depth=0.01, max_depth=10.0, max_inclusive=True, clamp_floor=0.01,
        frame_size=NYU_FRAME, png_scale=1000.0, test_input="hqmd",
        description="HQMD code: crop 20:460, 25:617; 0.01 < gt <= 10; values <= 0.01 set to 0.01; no upper clip",
        used_by="HQMD (Jiang & Huang, ICIP 2019) HalleyJiang/HQMDE test_nyu_depth_v2.py + metrics.py",
    ),
    "nyu-densedepth": Protocol(
        "nyu-densedepth", crop=CROPS["nyu-densedepth"], min_depth=0.0, max_depth=None, clip=(0.1, 10.0),
        averaging="pooled", frame_size=NYU_FRAME, png_scale=1000.0, test_input="native",
        description="DenseDepth master: crop 20:460, 24:616; every pixel with gt > 0; prediction clipped to "
                    "[0.1, 10] (its predict()); all pixels of all images pooled",
        used_by="DenseDepth (Alhashim & Wonka 2018) ialhashim/DenseDepth evaluate.py, master since fdcef58",
    ),
    "kitti-garg": Protocol(
        "kitti-garg", crop=CROPS["kitti-garg"], min_depth=1e-3, max_depth=80.0, clip=(1e-3, 80.0), png_scale=256.0,
        test_input="kb_crop",
        description="BTS KITTI Eigen split: Garg crop (fractions of H, W); 1e-3 < gt < 80; prediction clipped",
        used_by="BTS --garg_crop (Lee et al. 2019); Garg et al. ECCV 2016; monodepth; Toolbox",
    ),
    "kitti-eigen": Protocol(
        "kitti-eigen", crop=CROPS["kitti-eigen"], min_depth=1e-3, max_depth=80.0, clip=(1e-3, 80.0), png_scale=256.0,
        test_input="kb_crop",
        description="BTS KITTI with --eigen_crop: Eigen NIPS14 crop (fractions of H, W); 1e-3 < gt < 80; "
                    "prediction clipped",
        used_by="Eigen et al. NIPS 2014 (crop as found by monodepth); BTS --eigen_crop on KITTI",
    ),
    "nyu-hu": Protocol(
        "nyu-hu", crop=None, min_depth=1e-3, max_depth=None, clip=None, mask="nan", averaging="rms_of_mse",
        delta_comparison="<=", metrics=("abs_rel", "rmse", "log10", "mae", "d1", "d2", "d3"),
        frame_size=NYU_FRAME, png_scale=1000.0, test_input="hu",
        description="Hu et al. / SARPN test: frame scaled to 240x320 (gt PIL nearest), centre crop 228x304, "
                    "prediction upsampled align_corners=True; only NaN gt masked; no clipping; delta <=; "
                    "per image, RMSE = sqrt(mean of per-image MSE)",
        used_by="Hu et al. (WACV 2019) JunjH/Revisiting_Single_Depth_Estimation test.py, util.py, loaddata.py; "
                "SARPN (Chen et al., IJCAI 2019) Xt-Chen/SARPN evaluate.py; MRPAN (Liu et al., ICPR 2020)",
    ),
    "custom": Protocol(
        "custom", crop=None, min_depth=1e-3, max_depth=None, clip=None, test_input="resize",
        description="crop, valid range, clipping and averaging from options",
        used_by="-",
    ),
}


def custom_protocol(crop=None, min_depth=1e-3, max_depth=None, max_inclusive=False, clip="range",
                    clamp_floor=None, averaging="per_image", densedepth_swap_bug=False, png_scale=None,
                    kb_crop=False, delta_comparison="<", test_input=None):
    """The `custom` protocol from options.

    crop: Crop, None, or text for `parse_crop`. clip: "range" (BTS clipping to [min_depth,
    max_depth], +inf -> max, NaN -> min; without max_depth only the lower bound and NaN -> min),
    "none", or (lo, hi). delta_comparison: "<" or "<=". test_input: how a model sees a test image
    (see `Protocol`; default "kb_crop" with kb_crop, else "resize").
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
        delta_comparison=delta_comparison,
        test_input=test_input if test_input is not None else ("kb_crop" if kb_crop else "resize"),
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


def resize_bilinear_align_corners(image, height, width):
    """Bilinear resize of a 2-D map with align_corners=True (float64): output pixel i samples the input
    at i * (n_in - 1) / (n_out - 1), corners on corners, as PyTorch `F.interpolate(..., mode="bilinear",
    align_corners=True)` (SARPN) and PyTorch 0.3 `F.upsample(..., mode="bilinear")` (Hu et al.)."""
    image = np.asarray(image, dtype=np.float64)

    def axis_weights(n_in, n_out):
        pos = np.arange(n_out, dtype=np.float64) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        low = np.clip(np.floor(pos).astype(np.int64), 0, n_in - 1)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, pos - low

    r0, r1, fr = axis_weights(image.shape[0], int(height))
    c0, c1, fc = axis_weights(image.shape[1], int(width))
    rows = image[r0] * (1.0 - fr)[:, None] + image[r1] * fr[:, None]
    return rows[:, c0] * (1.0 - fc)[None, :] + rows[:, c1] * fc[None, :]


def resize_nearest_pil(image, height, width):
    """PIL `Image.resize(..., Image.NEAREST)` of a 2-D map: output pixel i takes input pixel
    floor((i + 0.5) * n_in / n_out) (for the 2x reduction of Hu et al.'s 480x640 -> 240x320: 2i + 1)."""
    image = np.asarray(image)
    rows = np.minimum(np.floor((np.arange(int(height)) + 0.5) * image.shape[0] / int(height)).astype(np.int64),
                      image.shape[0] - 1)
    cols = np.minimum(np.floor((np.arange(int(width)) + 0.5) * image.shape[1] / int(width)).astype(np.int64),
                      image.shape[1] - 1)
    return image[rows][:, cols]


def hu_scaled_size(height, width, size=HU_SCALE):
    """Hu et al. `Scale(240)`: the shorter side becomes 240, the other `int(240 * long / short)`."""
    if min(height, width) == size:
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def hu_crop_box(height, width, crop=HU_CROP):
    """Hu et al. `CenterCrop`: (top, left) = (int(round((H - 228) / 2)), int(round((W - 304) / 2)))."""
    return int(round((height - crop[0]) / 2.0)), int(round((width - crop[1]) / 2.0))


def hu_ground_truth(gt):
    """Ground truth on the Hu/SARPN metric grid: scaled to 240 on its shorter side with PIL nearest,
    then the centre 228x304 (480x640 -> gt[1::2, 1::2][6:234, 8:312])."""
    height, width = hu_scaled_size(*gt.shape)
    scaled = resize_nearest_pil(gt, height, width) if (height, width) != gt.shape else gt
    top, left = hu_crop_box(height, width)
    return scaled[top:top + HU_CROP[0], left:left + HU_CROP[1]]


def hu_rgb(rgb):
    """The network input of Hu et al. / SARPN for an RGB image (uint8 H x W x 3): scaled to 240 on the
    shorter side with PIL bilinear (Pillow's resize, antialiased when reducing), centre 228x304."""
    rgb = np.asarray(rgb)
    height, width = hu_scaled_size(*rgb.shape[:2])
    if (height, width) != rgb.shape[:2]:
        rgb = _pil_bilinear(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), height, width)
    top, left = hu_crop_box(height, width)
    return rgb[top:top + HU_CROP[0], left:left + HU_CROP[1]]


def _pil_bilinear(rgb, height, width):
    """Pillow `Image.resize((width, height), Image.BILINEAR)` of a uint8 RGB image, as Hu et al.'s loader."""
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((int(width), int(height)), Image.BILINEAR))


def aspect_change(a, b):
    """How much two sizes (H, W) differ in aspect ratio: larger width/height ratio over the smaller, minus 1
    (416x544 vs 480x640: 0.0196)."""
    ra, rb = a[1] / a[0], b[1] / b[0]
    return max(ra, rb) / min(ra, rb) - 1.0


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


def _aspect_differs(a, b, tolerance=ASPECT_TOLERANCE):
    return aspect_change(a, b) > tolerance


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
                pred = resize_bilinear(pred, *KB_CROP_SIZE)
            top, left = height - KB_CROP_SIZE[0], (width - KB_CROP_SIZE[1]) // 2
            canvas = np.zeros(gt_shape, dtype=np.float64)
            canvas[top:top + KB_CROP_SIZE[0], left:left + KB_CROP_SIZE[1]] = pred
            return canvas
        if pred.shape != gt_shape:
            self._check_aspect(pred.shape, gt_shape, name, "the ground truth")
            pred = resize_bilinear(pred, *gt_shape)
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
        if not _aspect_differs(shape, target):
            return
        change = f"prediction is {shape[0]}x{shape[1]} but {what} is {target[0]}x{target[1]}; the aspect ratios " \
                 f"differ by {100 * aspect_change(shape, target):.2f} %"
        if not self.resize_any:
            hint = " (pass --kb-crop if the predictions are KITTI benchmark crops)" if shape == KB_CROP_SIZE else ""
            raise DataError(f"{name}: {change}, so a resize would distort it{hint}. Use --resize-any to resize anyway.")
        if (shape, target) not in self._warned:
            self._warned.add((shape, target))
            log.warning("%s: %s; resized anyway (--resize-any).", name, change)

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
        if self.protocol.densedepth_swap_bug:  # DenseDepth calls compute_errors(pred, gt) against (gt, pred)
            pred, gt = gt, pred
        keys = self.protocol.metric_keys()
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            errors, counts = _formulas().per_image_errors(pred[None], gt[None], valid[None], xp=np)
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
        names = self.protocol.metric_keys() + (("ssim",) if self.ssim else ())
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
    """One line of a pairs file: line number, first and second path (second None for a 'None' entry), and the
    extra columns (e.g. a BTS focal length)."""

    where: str
    first: Path
    second: Path | None
    extra: tuple = ()


def read_pairs(pairs_file, extra_columns=0):
    """Lines `<first> <second>` (plus up to `extra_columns` columns kept in `PairLine.extra`, e.g. a BTS focal).

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
        pairs.append(PairLine(where, root / tokens[0], second, tuple(tokens[2:])))
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
    """(length, iterator of (where, rgb, gt or None, focal or None)) for a pairs file of RGB/GT paths (an
    optional third column is the focal length in pixels, as BTS lists) or a dataset SPEC (the sample's
    `meta["focal"]`, e.g. the KITTI source's list column or calibration file)."""
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
                yield pair.where, rgb, gt, _focal(pair.extra[0], pair.where) if pair.extra else None

        return len(pairs), iterate()
    from hqdepth.data import open_source

    source = open_source(data, split=split)
    return len(source), _source_samples(source, f"{data} sample")


def _focal(text, where):
    try:
        focal = float(text)
    except ValueError:
        raise DataError(f"{where}: focal length {text!r} is not a number.") from None
    if not (math.isfinite(focal) and focal > 0):
        raise DataError(f"{where}: focal length {text!r} must be a positive number of pixels.")
    return focal


def _source_samples(source, prefix, limit=None):
    count = len(source) if limit is None else min(int(limit), len(source))
    for index in range(count):
        sample = source[index]
        depth = None if sample.depth is None else np.asarray(sample.depth)
        if depth is not None and depth.ndim == 3:
            depth = depth[..., 0]
        yield f"{prefix} {sample.meta.get('id', index)}", sample.rgb, depth, sample.meta.get("focal")


# ------------------------------------------------------------------------------- models at test time


def resize_bilinear_tf1(image, height, width):
    """TF1 `tf.image.resize_images(image, [height, width])` (bilinear, align_corners=False, without
    half-pixel centres: output pixel i samples the input at i * n_in / n_out), as HQMDE's test input
    pipeline resizes the RGB image; (H, W) or (H, W, C), float32."""
    image = np.asarray(image, dtype=np.float64)

    def axis_weights(n_in, n_out):
        pos = np.arange(n_out, dtype=np.float64) * (n_in / n_out)
        low = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
        return low, np.minimum(low + 1, n_in - 1), pos - low

    r0, r1, fr = axis_weights(image.shape[0], int(height))
    c0, c1, fc = axis_weights(image.shape[1], int(width))
    extra = (None,) * (image.ndim - 2)
    fr, fc = fr[(slice(None), None, *extra)], fc[(None, slice(None), *extra)]
    rows = image[r0] * (1.0 - fr) + image[r1] * fr
    return (rows[:, c0] * (1.0 - fc) + rows[:, c1] * fc).astype(np.float32)


def _required_size(protocol):
    """The one input size a protocol runs every image at, if any (the KB crop, the Hu crop)."""
    return {"kb_crop": KB_CROP_SIZE, "hu": HU_CROP}.get(protocol.test_input)


def model_for_protocol(model, protocol):
    """The model as the protocol's test runs it (a `DepthModel`; a path or a `keras.Model` is loaded or
    wrapped first): rebuilt with a free input size (`DepthModel.at_free_size`, weights shared) when the
    protocol runs the network at the image's own resolution ("native", "kb_crop", "hu") and the model was
    built for another fixed size; itself otherwise ("resize", "hqmd": the image is resized to the
    model's input)."""
    from hqdepth.predict import _as_model

    model = _as_model(model)
    protocol = get_protocol(protocol)
    if protocol.test_input in ("resize", "hqmd") or model.input_size is None:
        return model
    if model.input_size == _required_size(protocol):
        return model
    return model.at_free_size()


class _Notes:
    """Warnings said once per evaluation (per pair of sizes, per missing focal)."""

    def __init__(self):
        self.said = set()

    def once(self, key, message, *args):
        if key not in self.said:
            self.said.add(key)
            log.warning(message, *args)


def _run(model, images, focal, notes):
    """The model on a list of equally sized float32 images (the original and, for flip, its mirror)."""
    if model.reference_focal is not None and focal is None:
        notes.once("focal", "no focal length for the test images: the focal-aware model runs at its reference "
                            "focal %g px (depth not rescaled per frame)", model.reference_focal)
    size = images[0].shape[:2]
    if model.input_size is not None and model.input_size != tuple(size):
        raise DataError(f"model {model.name} takes {model.input_size[0]}x{model.input_size[1]} images only; the test "
                        f"image is {size[0]}x{size[1]}.")
    batch = np.stack(images)
    return model(batch) if focal is None else model(batch, focal=focal)


def _with_flip(model, image, focal, flip, notes):
    images = [image, image[:, ::-1]] if flip else [image]
    outputs = _run(model, images, focal, notes)
    return 0.5 * outputs[0] + 0.5 * outputs[1][:, ::-1] if flip else outputs[0]


def protocol_prediction(model, rgb, protocol, focal=None, flip=False, notes=None):
    """The prediction the protocol's `Evaluator` takes for one test image, computed the way the protocol's
    official test code runs its network (`Protocol.test_input`).

    model: a `DepthModel` as `model_for_protocol` returns it. rgb: (H, W, 3) RGB 0..255. focal: the image's
    focal length in pixels (used by focal-aware models; scaled with the image when it is resized).
    flip: mean with the un-mirrored prediction of the mirrored image (the official codes do not flip).
    Returns a map at the image's size ("native", "resize", "hqmd"), the 352x1216 KB-crop prediction
    ("kb_crop", pasted into the frame by the evaluator) or the 228x304 Hu/SARPN crop ("hu").
    """
    protocol = get_protocol(protocol)
    notes = notes or _Notes()
    mode = protocol.test_input
    image = np.asarray(rgb, dtype=np.float32)
    height, width = image.shape[:2]
    if mode == "resize":
        if model.input_size is not None and _aspect_differs((height, width), model.input_size):
            notes.once(("aspect", (height, width), model.input_size),
                       "images of %dx%d are resized to the model's input %dx%d: the aspect ratio changes by %.2f %%",
                       height, width, *model.input_size, 100 * aspect_change((height, width), model.input_size))
        return predict_depth(model, image, flip=flip, kb_crop=protocol.kb_crop, focal=focal)
    if mode == "kb_crop":
        if height < KB_CROP_SIZE[0] or width < KB_CROP_SIZE[1]:
            raise DataError(f"protocol {protocol.name} runs the network on the KB crop 352x1216; the test image is "
                            f"{height}x{width}.")
        top, left = height - KB_CROP_SIZE[0], (width - KB_CROP_SIZE[1]) // 2
        crop = image[top:top + KB_CROP_SIZE[0], left:left + KB_CROP_SIZE[1]]
        pred = _with_flip(model, crop, focal, flip, notes)
        return pred if pred.shape == KB_CROP_SIZE else resize_bilinear(pred, *KB_CROP_SIZE)
    if mode == "native":
        pred = _with_flip(model, image, focal, flip, notes)
        return pred if pred.shape == (height, width) else resize_bilinear(pred, height, width)
    if mode == "hu":
        crop = hu_rgb(image).astype(np.float32)
        scale = hu_scaled_size(height, width)[1] / width
        pred = _with_flip(model, crop, None if focal is None else focal * scale, flip, notes)
        return pred if pred.shape == HU_CROP else resize_bilinear_align_corners(pred, *HU_CROP)
    # "hqmd": RGB resized to the model's input with TF1 resize_images, depth back with cv2 INTER_LINEAR.
    size = model.input_size or model.config_size or (height, width)
    if _aspect_differs((height, width), size):
        notes.once(("aspect", (height, width), size),
                   "images of %dx%d are resized to the model's input %dx%d: the aspect ratio changes by %.2f %%",
                   height, width, *size, 100 * aspect_change((height, width), size))
    small = resize_bilinear_tf1(image, *size) if tuple(size) != (height, width) else image
    pred = _with_flip(model, small, None if focal is None else focal * size[1] / width, flip, notes)
    return pred if pred.shape == (height, width) else resize_bilinear(pred, height, width)


def evaluate_source(model, source, protocol, *, name="sample", limit=None, flip=False, ssim=False,
                    ssim_max_val=None, resize_any=False, progress=False):
    """Run a model over a `hqdepth.data` source (its first `limit` samples) and evaluate under a protocol,
    each image run as the protocol's official test runs it (`model_for_protocol`, `protocol_prediction`), with
    each sample's focal length (`meta["focal"]`). This is the trainer's test evaluation."""
    count = len(source) if limit is None else min(int(limit), len(source))
    return _evaluate(model, _source_samples(source, name, limit), count, protocol, flip=flip, ssim=ssim,
                     ssim_max_val=ssim_max_val, resize_any=resize_any, progress=progress)


def evaluate_model(model, data, protocol, split="test", flip=False, gt_scale=None, ssim=False, ssim_max_val=None,
                   resize_any=False, progress=True):
    """Run a model (path, `DepthModel` or `keras.Model`) over a dataset (pairs file of RGB/GT paths with an
    optional focal column, or a SPEC) and evaluate; each image is run as the protocol's official test runs
    it (`protocol_prediction`) with its own focal length when the data gives one."""
    protocol = get_protocol(protocol)
    total, samples = _samples(data, split, _png_scale(gt_scale, protocol))
    return _evaluate(model, samples, total, protocol, flip=flip, ssim=ssim, ssim_max_val=ssim_max_val,
                     resize_any=resize_any, progress=progress)


def _evaluate(model, samples, total, protocol, flip, ssim, ssim_max_val, resize_any, progress):
    protocol = get_protocol(protocol)
    model = model_for_protocol(model, protocol)
    scoring = protocol.with_options(kb_crop=True) if protocol.test_input == "kb_crop" else protocol
    evaluator = Evaluator(scoring, ssim=ssim, ssim_max_val=ssim_max_val, resize_any=resize_any)
    notes = _Notes()
    with _progress(total, "predict+evaluate", progress) as bar:
        for where, rgb, gt, focal in samples:
            if gt is None:
                evaluator.skip(where)
            else:
                pred = protocol_prediction(model, rgb, protocol, focal=focal, flip=flip, notes=notes)
                evaluator.add(pred, gt, where)
            bar.update()
    return evaluator.result()
