"""Published depth-evaluation protocols: what each official evaluator crops, masks, clips and averages, and how
its test code gives an image to the network.

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

The evaluator that applies a protocol is `hqdepth.evaluator`; running a model as a protocol's test code does is
`hqdepth.model_testing`. NumPy only.
"""

import math
from dataclasses import dataclass, replace

import numpy as np

from hqdepth.errors import ConfigError, DataError
from hqdepth.resample import resize_bilinear_pil, resize_nearest_pil

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
NYU_FRAME = (480, 640)
DELTA_METRICS = ("d1", "d2", "d3")


def metric_names():
    """The metric keys of every result, in the order `hqdepth.metrics.METRIC_NAMES` gives them (imported on
    first use: `hqdepth.metrics` imports Keras)."""
    from hqdepth.metrics import METRIC_NAMES

    return tuple(METRIC_NAMES)


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
            try:
                if isinstance(self.clip, str):
                    raise TypeError
                lo, hi = (float(value) for value in self.clip)
            except (TypeError, ValueError):
                raise ConfigError(f"prediction clip must be two numbers (lo, hi) in metres, got {self.clip!r}"
                                  + (" ('range' is an option of the custom protocol only)." if self.clip == "range"
                                     else ".")) from None
            object.__setattr__(self, "clip", (lo, hi))  # as numbers, whatever sequence gave them
            if not lo < hi:
                raise ConfigError(f"prediction clip range must have lo < hi, got {self.clip}.")
            if lo <= 0:
                raise ConfigError(f"prediction clip lower bound must be > 0 (logs of the prediction), got {lo}.")
        if self.png_scale is not None and not self.png_scale > 0:
            raise ConfigError(f"png_scale must be > 0, got {self.png_scale}.")

    def with_options(self, **changes):
        """A copy with some fields changed (e.g. `kb_crop=True`)."""
        return replace(self, **changes)

    @property
    def crops_in_fractions(self):
        """Whether the crop is in fractions of the frame (BTS's KITTI crops), so right only on full KITTI frames."""
        return self.crop is not None and self.crop.mode == "fraction"

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
            parts.append("a KB-crop prediction pasted into the full frame (one of the frame's size used as it is)")
        if self.densedepth_swap_bug:
            parts.append("DenseDepth argument-swap bug (rel errors divide by the prediction)")
        parts.append(f"delta: max(d/g, g/d) {self.delta_comparison} 1.25^k")
        parts.append(f"a network tested under it sees {TEST_INPUT_WORDS[self.test_input]}")
        parts.append(f"averaging {self.averaging}")
        return "; ".join(parts)


TEST_INPUT_WORDS = {
    "native": "the whole image at its own size",
    "kb_crop": "the KB crop 352x1216 at native resolution (a focal-aware model with the frame's focal, if known)",
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


# ------------------------------------------------------------------------------------ sizes and crops


def aspect_change(a, b):
    """How much two sizes (H, W) differ in aspect ratio: larger width/height ratio over the smaller, minus 1
    (416x544 vs 480x640: 0.0196)."""
    ra, rb = a[1] / a[0], b[1] / b[0]
    return max(ra, rb) / min(ra, rb) - 1.0


def aspect_differs(a, b, tolerance=ASPECT_TOLERANCE):
    """Whether two sizes (H, W) differ in aspect ratio by more than `tolerance` (`aspect_change`)."""
    return aspect_change(a, b) > tolerance


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
        rgb = resize_bilinear_pil(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), height, width)
    top, left = hu_crop_box(height, width)
    return rgb[top:top + HU_CROP[0], left:left + HU_CROP[1]]
