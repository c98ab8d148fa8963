"""Depth metrics: one per-image formula set, used by the streaming Keras metrics (keras.ops, float32)
and by the NumPy protocol evaluator (float64).

All published protocols we reproduce (BTS, HQMD, Toolbox) compute each metric per image over its
valid pixels, then average over images; the streaming metrics do the same.
"""

import functools

import keras
import numpy as np
from keras import ops

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "d1", "d2", "d3")


def per_image_errors(pred, gt, valid, xp=np, names=METRIC_NAMES):
    """Per-image metrics over the `valid` pixels of each image.

    `pred`, `gt`, `valid` have shape (N, ...) with the image index first; `xp` is `numpy` (float64
    evaluation) or `keras.ops` (streaming metrics). Prediction and ground truth must be > 0 where
    valid (protocols clip or clamp the prediction first). `names`: the metrics to compute (each
    streaming metric traces its own formula only, not all nine). Returns (errors, counts): a dict of
    metric name -> (N,) values, and the (N,) number of valid pixels; an image with no valid pixel
    gets 0 for every metric and count 0, so callers can exclude it.
    """
    unknown = set(names) - set(METRIC_NAMES)
    if unknown:
        raise ValueError(f"Unknown depth metric(s) {sorted(unknown)}; known: {', '.join(METRIC_NAMES)}.")
    axes = tuple(range(1, len(gt.shape)))
    weight = xp.where(valid, 1.0, 0.0)
    count = xp.sum(weight, axis=axes)
    safe_count = xp.maximum(count, 1.0)
    gt = xp.where(valid, gt, 1.0)
    pred = xp.where(valid, pred, 1.0)

    def mean(values):
        return xp.sum(values * weight, axis=axes) / safe_count

    @functools.cache
    def diff():
        return pred - gt

    @functools.cache
    def log_diff():
        return xp.log(pred) - xp.log(gt)

    @functools.cache
    def ratio():
        return xp.maximum(pred / gt, gt / pred)

    def silog():
        mean_log_diff = mean(log_diff())
        return 100.0 * xp.sqrt(xp.maximum(mean(log_diff() * log_diff()) - mean_log_diff * mean_log_diff, 0.0))

    formulas = {
        "abs_rel": lambda: mean(xp.abs(diff()) / gt),
        "sq_rel": lambda: mean(diff() * diff() / gt),
        "rmse": lambda: xp.sqrt(mean(diff() * diff())),
        "rmse_log": lambda: xp.sqrt(mean(log_diff() * log_diff())),
        "log10": lambda: mean(xp.abs(xp.log10(pred) - xp.log10(gt))),
        "silog": silog,
        **{f"d{k}": (lambda k=k: mean(xp.where(ratio() < 1.25**k, 1.0, 0.0))) for k in (1, 2, 3)},
    }
    return {name: formulas[name]() for name in names}, count


def valid_mask(gt, min_depth=1e-3, max_depth=None, xp=np):
    """Finite ground truth with min_depth < gt (< max_depth when given)."""
    valid = xp.logical_and(xp.isfinite(gt), gt > min_depth)
    if max_depth is not None:
        valid = xp.logical_and(valid, gt < max_depth)
    return valid


class PerImageDepthMetric(keras.metrics.Metric):
    """Streaming mean over images of one per-image metric; images with no valid pixel are skipped.

    Valid pixels: finite ground truth with `min_depth < gt` (and `< max_depth` if set); the
    prediction is clipped to [min_depth, max_depth] first (BTS convention) so logs stay finite.
    `sample_weight` is not supported: every image counts once.
    """

    metric_key = None

    def __init__(self, min_depth=1e-3, max_depth=None, name=None, dtype="float32", **kwargs):
        super().__init__(name=name or self.metric_key, dtype=dtype, **kwargs)
        self.min_depth = float(min_depth)
        self.max_depth = None if max_depth is None else float(max_depth)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total", dtype=dtype)
        self.images = self.add_variable(shape=(), initializer="zeros", name="images", dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(f"{self.__class__.__name__} averages per image and takes no sample_weight.")
        total, images = self.batch_sums(y_true, y_pred)
        self.total.assign_add(total)
        self.images.assign_add(images)

    def batch_sums(self, y_true, y_pred):
        """(sum of the per-image metric over images with valid pixels, number of such images) for a batch."""
        gt = ops.cast(y_true, self.dtype)
        pred = ops.cast(y_pred, self.dtype)
        pred = ops.maximum(ops.where(ops.isnan(pred), self.min_depth, pred), self.min_depth)
        if self.max_depth is not None:
            pred = ops.minimum(pred, self.max_depth)
        valid = valid_mask(gt, self.min_depth, self.max_depth, xp=ops)
        errors, count = per_image_errors(pred, gt, valid, xp=ops, names=(self.metric_key,))
        has_pixels = ops.cast(count > 0, self.dtype)
        return ops.sum(errors[self.metric_key] * has_pixels), ops.sum(has_pixels)

    def result(self):
        return self.total / ops.maximum(self.images, 1.0)

    def get_config(self):
        return {**super().get_config(), "min_depth": self.min_depth, "max_depth": self.max_depth}


def _metric_class(class_name, key, doc):
    cls = type(class_name, (PerImageDepthMetric,), {"metric_key": key, "__doc__": doc, "__module__": __name__})
    return keras.saving.register_keras_serializable(package="hqdepth")(cls)


AbsRel = _metric_class("AbsRel", "abs_rel", "Mean |d - g| / g per image, averaged over images.")
SqRel = _metric_class("SqRel", "sq_rel", "Mean (d - g)^2 / g per image, averaged over images.")
RMSE = _metric_class("RMSE", "rmse", "Per-image RMSE, averaged over images (BTS/HQMD convention).")
RMSELog = _metric_class("RMSELog", "rmse_log", "Per-image RMSE of ln depth, averaged over images.")
Log10 = _metric_class("Log10", "log10", "Mean |log10 d - log10 g| per image, averaged over images.")
SILog = _metric_class("SILog", "silog", "100 * sqrt(mean(e^2) - mean(e)^2), e = ln d - ln g, per image (BTS eval).")


@keras.saving.register_keras_serializable(package="hqdepth")
class Delta(PerImageDepthMetric):
    """Fraction of pixels with max(d/g, g/d) < 1.25^k per image, averaged over images."""

    def __init__(self, k=1, name=None, **kwargs):
        if k not in (1, 2, 3):
            raise ValueError(f"Delta threshold exponent k must be 1, 2 or 3, got {k!r}.")
        self.k = int(k)
        self.metric_key = f"d{self.k}"
        super().__init__(name=name or self.metric_key, **kwargs)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


def depth_metrics(min_depth=1e-3, max_depth=None):
    """The full streaming set, for `model.compile(metrics=...)`."""
    kwargs = {"min_depth": min_depth, "max_depth": max_depth}
    return [AbsRel(**kwargs), SqRel(**kwargs), RMSE(**kwargs), RMSELog(**kwargs), Log10(**kwargs),
            SILog(**kwargs), Delta(1, **kwargs), Delta(2, **kwargs), Delta(3, **kwargs)]
