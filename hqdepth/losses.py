"""Depth losses: HQMD (BerHu + gradient magnitude + gradient direction [+ normal]) and Hu et al.

Every loss is a registered `keras.losses.Loss` computing in float32 with `keras.ops` only. Invalid
ground truth (<= 0 or non-finite) is ignored unless `mask_invalid=False`, which reproduces the
official codes' unmasked behaviour (every pixel counts, zeros included). A gradient (Sobel) value
counts only where its whole 3x3 neighbourhood is valid.

Paper vs official code (HalleyJiang/HQMDE `losses.py`), defaults follow the code:
- BerHu threshold c: code = 0.2 * max over the batch axis, one c per pixel ("batch_max_per_pixel");
  paper eq. (2) = 0.2 * max over the whole batch, one scalar ("batch_max").
- Gradient magnitude: code = mean over both Sobel components ("mean") = 1/2 of paper eq. (5) ("sum").
- Sobel: `tf.image.sobel_edges` (unnormalised 3x3 kernels, REFLECT padding); Hu et al. pad with zeros.
"""

import functools

import keras
from keras import ops

from hqdepth.errors import ConfigError


def _check_choice(name, value, choices):
    if value not in choices:
        raise ConfigError(f"{name} must be one of {choices}, got {value!r}.")
    return value


def prepare(y_true, y_pred, mask_invalid=True):
    """float32 (gt, pred, valid weight); invalid gt is replaced by 0 so no NaN reaches a gradient."""
    gt = ops.cast(y_true, "float32")
    pred = ops.cast(y_pred, "float32")
    if mask_invalid:
        valid = ops.logical_and(ops.isfinite(gt), gt > 0.0)
        return ops.where(valid, gt, 0.0), pred, ops.cast(valid, "float32")
    return gt, pred, ops.ones_like(gt)


def masked_mean(values, weight):
    """Mean of `values` over the pixels where `weight` is 1 (0 when there are none)."""
    weight = ops.broadcast_to(weight, ops.shape(values))
    return ops.sum(values * weight) / ops.maximum(ops.sum(weight), 1.0)


def sobel(images, padding="reflect", normalize=False):
    """(dy, dx) of NHWC images with `tf.image.sobel_edges` semantics.

    dy kernel [[-1,-2,-1],[0,0,0],[1,2,1]], dx = its transpose, cross-correlation, padding by 1
    ("reflect" as tf.image.sobel_edges, "zero" as Hu et al.'s conv). `normalize` divides by 8
    so that a unit-slope ramp has gradient 1. Hu et al.'s kernels are the negatives; every loss
    below is invariant to that sign.
    """
    _check_choice("sobel padding", padding, ("reflect", "zero"))
    mode = "reflect" if padding == "reflect" else "constant"
    p = ops.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode=mode)
    # One depthwise convolution with both kernels, as tf.image.sobel_edges computes it (its gradient is one
    # convolution too; shifted slices of the full-size depth maps cost a zero-filled copy each backwards).
    scale = 1.0 / 8.0 if normalize else 1.0
    kernel_dy = [[-scale, -2 * scale, -scale], [0.0, 0.0, 0.0], [scale, 2 * scale, scale]]
    kernel = ops.stack([ops.convert_to_tensor(kernel_dy), ops.transpose(ops.convert_to_tensor(kernel_dy))], axis=-1)
    channels = images.shape[-1]
    kernel = ops.cast(ops.tile(kernel[:, :, None, :], (1, 1, channels, 1)), images.dtype)  # (3, 3, C, 2)
    both = ops.depthwise_conv(p, kernel, strides=1, padding="valid")  # channel 2c: dy of c, 2c + 1: dx of c
    shape = ops.shape(images)
    dy, dx = ops.unstack(ops.reshape(both, (shape[0], shape[1], shape[2], channels, 2)), axis=-1)
    return dy, dx


def gradient_validity(valid, padding="reflect"):
    """1 where all 9 pixels under the Sobel window are valid; outside the image counts as valid
    for zero padding (Hu et al. treat the border as depth 0 by design) and as its mirror for reflect."""
    if padding == "reflect":
        p = ops.pad(valid, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
    else:
        p = ops.pad(valid, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="constant", constant_values=1.0)
    rows = p[:, :-2] + p[:, 1:-1] + p[:, 2:]
    total = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]
    return ops.cast(total > 8.5, "float32")


class _Gradients:
    """Sobel gradients of ground truth and prediction, with the weight of valid gradient pixels."""

    def __init__(self, gt, pred, valid, padding, normalize, mask_invalid):
        self.dy_gt, self.dx_gt = sobel(gt, padding, normalize)
        self.dy_pd, self.dx_pd = sobel(pred, padding, normalize)
        self.weight = gradient_validity(valid, padding) if mask_invalid else valid


def berhu_term(gt, pred, valid, threshold="batch_max_per_pixel", ratio=0.2, stop_gradient=False, epsilon=1e-6):
    """Reverse Huber: |e| below c, (e^2 + c^2) / 2c above; c from the batch's largest |e|.

    c is clamped to >= `epsilon` so that where every residual is 0 (c = 0) the value is 0 and the
    gradient finite (the official code divides by c = 0 there).
    """
    residual = ops.abs(pred - gt) * valid
    if threshold == "batch_max_per_pixel":
        c = ratio * ops.max(residual, axis=0, keepdims=True)
    else:
        c = ratio * ops.max(residual)
    if stop_gradient:
        c = ops.stop_gradient(c)
    c = ops.maximum(c, epsilon)
    loss = ops.where(residual < c, residual, (residual * residual + c * c) / (2.0 * c))
    return masked_mean(loss, valid)


def grad_magnitude_term(grads, reduction="mean"):
    diff = ops.abs(grads.dy_gt - grads.dy_pd) + ops.abs(grads.dx_gt - grads.dx_pd)
    value = masked_mean(diff, grads.weight)
    return value / 2.0 if reduction == "mean" else value


def grad_direction_term(grads):
    cross = grads.dy_gt * grads.dx_pd - grads.dx_gt * grads.dy_pd
    return masked_mean(ops.abs(cross), grads.weight)


def normal_term(grads):
    dot = 1.0 + grads.dy_gt * grads.dy_pd + grads.dx_gt * grads.dx_pd
    norm_gt = ops.sqrt(1.0 + grads.dy_gt * grads.dy_gt + grads.dx_gt * grads.dx_gt)
    norm_pd = ops.sqrt(1.0 + grads.dy_pd * grads.dy_pd + grads.dx_pd * grads.dx_pd)
    return masked_mean(1.0 - dot / (norm_gt * norm_pd), grads.weight)


def scale_for_replicas(value):
    """Divide a batch-mean loss by the replicas in sync under a TensorFlow distribution strategy.

    Keras scales a loss this way only when it reduces per-sample values itself; these losses return
    the batch mean directly, so they do it here. The summed replica gradients are then the gradient
    of the global-batch mean, and `fit` logs (which multiply back) show the true value.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            value = value / replicas
    return value


class DepthLoss(keras.losses.Loss):
    """Base: float32, masking of invalid ground truth, config plumbing, optional named terms.

    `batch_groups` (an attribute, default 1; the trainer sets it from `train.batch_groups`): the loss is computed
    on each of that many consecutive, equal parts of the batch and the results averaged, which is what
    DistributedDataParallel over that many GPUs optimises (each GPU's loss on its part, gradients averaged). It
    matters for losses that pool over the batch (SILog, BerHu's batch threshold). A batch that does not divide
    evenly (a last validation batch) is split as evenly as it goes; empty parts are left out."""

    term_names = ()
    batch_groups = 1

    def __init__(self, mask_invalid=True, name=None, reduction="sum_over_batch_size", dtype="float32"):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.mask_invalid = bool(mask_invalid)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if self.batch_groups > 1:
            return scale_for_replicas(self._in_groups(y_true, y_pred, sample_weight))
        return scale_for_replicas(super().__call__(y_true, y_pred, sample_weight))

    def _in_groups(self, y_true, y_pred, sample_weight):
        def take(value, rows):
            if value is None:
                return None
            if isinstance(value, (list, tuple)):
                return type(value)(ops.take(v, rows, axis=0) for v in value)
            return ops.take(value, rows, axis=0)

        first = y_pred[0] if isinstance(y_pred, (list, tuple)) else y_pred
        batch = ops.shape(first)[0]
        total, parts = 0.0, 0.0
        for group in range(self.batch_groups):
            start, stop = group * batch // self.batch_groups, (group + 1) * batch // self.batch_groups
            rows = ops.arange(start, stop)
            value = keras.losses.Loss.__call__(self, take(y_true, rows), take(y_pred, rows), take(sample_weight, rows))
            filled = stop > start
            total = total + ops.where(filled, value, 0.0)
            parts = parts + ops.cast(filled, "float32")
        return total / ops.maximum(parts, 1.0)

    def terms(self, y_true, y_pred, names=None):
        """Unweighted loss terms by name (for logging); `names`: only these (each term metric traces its own)."""
        names = self.term_names if names is None else names
        unknown = [name for name in names if name not in self.term_names]
        if unknown:
            raise ValueError(f"{type(self).__name__} has no term {unknown}; its terms: {self.term_names}.")
        formulas = self.term_formulas(y_true, y_pred)
        return {name: formulas[name]() for name in names}

    def term_formulas(self, y_true, y_pred):
        """{term name: function computing it}; what several terms share is computed once, when first needed."""
        raise NotImplementedError

    def term_metrics(self):
        """One metric per term, so `fit` logs show them separately (pass to `compile(metrics=...)`)."""
        return [LossTerm(self, term, name=term) for term in self.term_names]

    def get_config(self):
        return {**super().get_config(), "mask_invalid": self.mask_invalid}


class _GradientLoss(DepthLoss):
    def __init__(self, sobel_padding="reflect", sobel_normalize=False, **kwargs):
        super().__init__(**kwargs)
        self.sobel_padding = _check_choice("sobel_padding", sobel_padding, ("reflect", "zero"))
        self.sobel_normalize = bool(sobel_normalize)

    def _gradients(self, y_true, y_pred):
        gt, pred, valid = prepare(y_true, y_pred, self.mask_invalid)
        return _Gradients(gt, pred, valid, self.sobel_padding, self.sobel_normalize, self.mask_invalid)

    def get_config(self):
        return {**super().get_config(), "sobel_padding": self.sobel_padding, "sobel_normalize": self.sobel_normalize}


@keras.saving.register_keras_serializable(package="hqdepth")
class BerHu(DepthLoss):
    """BerHu depth loss (HQMD eq. 1-2). threshold: "batch_max_per_pixel" (code) | "batch_max" (paper)."""

    def __init__(self, threshold="batch_max_per_pixel", ratio=0.2, stop_gradient_threshold=False, epsilon=1e-6,
                 name="berhu", **kwargs):
        super().__init__(name=name, **kwargs)
        self.threshold = _check_choice("threshold", threshold, ("batch_max_per_pixel", "batch_max"))
        self.ratio = float(ratio)
        self.stop_gradient_threshold = bool(stop_gradient_threshold)
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        gt, pred, valid = prepare(y_true, y_pred, self.mask_invalid)
        return berhu_term(gt, pred, valid, self.threshold, self.ratio, self.stop_gradient_threshold, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold, "ratio": self.ratio,
                "stop_gradient_threshold": self.stop_gradient_threshold, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="hqdepth")
class GradientMagnitude(_GradientLoss):
    """L1 between Sobel gradients over the (dy, dx) components.

    reduction: "mean" (code: mean over both components = 1/2 eq. 5) | "sum" (paper eq. 5: per-pixel
    sum of both). The loss is a scalar, so Keras' own batch reduction does not apply.
    """

    def __init__(self, reduction="mean", name="grad_magnitude", **kwargs):
        super().__init__(name=name, **kwargs)
        self.component_reduction = _check_choice("reduction", reduction, ("mean", "sum"))

    def call(self, y_true, y_pred):
        return grad_magnitude_term(self._gradients(y_true, y_pred), self.component_reduction)

    def get_config(self):
        return {**super().get_config(), "reduction": self.component_reduction}


@keras.saving.register_keras_serializable(package="hqdepth")
class GradientDirection(_GradientLoss):
    """HQMD eq. 6: mean |gy_gt * gx_pred - gx_gt * gy_pred| (3rd component of the normals' cross product)."""

    def __init__(self, name="grad_direction", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return grad_direction_term(self._gradients(y_true, y_pred))


@keras.saving.register_keras_serializable(package="hqdepth")
class SurfaceNormal(_GradientLoss):
    """Cosine normal loss: mean 1 - cos(n_gt, n_pred), n = (-dx, -dy, 1) (HQMD code's normal_loss)."""

    def __init__(self, name="surface_normal", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return normal_term(self._gradients(y_true, y_pred))


@keras.saving.register_keras_serializable(package="hqdepth")
class HQMDLoss(_GradientLoss):
    """l_depth (BerHu) + w_mg * l_grad_mg + w_dr * l_grad_dr + w_n * l_normal (HQMD eq. 7, code defaults)."""

    term_names = ("l_depth", "l_grad_mg", "l_grad_dr", "l_normal")

    def __init__(self, depth_weight=1.0, grad_magnitude_weight=1.0, grad_direction_weight=1.0, normal_weight=0.0,
                 berhu_threshold="batch_max_per_pixel", berhu_ratio=0.2, berhu_stop_gradient=False,
                 berhu_epsilon=1e-6, grad_magnitude_reduction="mean", name="hqmd_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.depth_weight = float(depth_weight)
        self.grad_magnitude_weight = float(grad_magnitude_weight)
        self.grad_direction_weight = float(grad_direction_weight)
        self.normal_weight = float(normal_weight)
        self.berhu_threshold = _check_choice("berhu_threshold", berhu_threshold, ("batch_max_per_pixel", "batch_max"))
        self.berhu_ratio = float(berhu_ratio)
        self.berhu_stop_gradient = bool(berhu_stop_gradient)
        self.berhu_epsilon = float(berhu_epsilon)
        self.grad_magnitude_reduction = _check_choice("grad_magnitude_reduction", grad_magnitude_reduction,
                                                      ("mean", "sum"))

    def term_formulas(self, y_true, y_pred):
        gt, pred, valid = prepare(y_true, y_pred, self.mask_invalid)
        grads = functools.cache(lambda: _Gradients(gt, pred, valid, self.sobel_padding, self.sobel_normalize,
                                                   self.mask_invalid))
        return {
            "l_depth": lambda: berhu_term(gt, pred, valid, self.berhu_threshold, self.berhu_ratio,
                                          self.berhu_stop_gradient, self.berhu_epsilon),
            "l_grad_mg": lambda: grad_magnitude_term(grads(), self.grad_magnitude_reduction),
            "l_grad_dr": lambda: grad_direction_term(grads()),
            "l_normal": lambda: normal_term(grads()),
        }

    def call(self, y_true, y_pred):
        weights = {"l_grad_mg": self.grad_magnitude_weight, "l_grad_dr": self.grad_direction_weight,
                   "l_normal": self.normal_weight}
        terms = self.terms(y_true, y_pred, names=["l_depth"] + [key for key, weight in weights.items() if weight])
        total = self.depth_weight * terms.pop("l_depth")
        for key, value in terms.items():
            total = total + weights[key] * value
        return total

    def get_config(self):
        return {**super().get_config(), "depth_weight": self.depth_weight,
                "grad_magnitude_weight": self.grad_magnitude_weight,
                "grad_direction_weight": self.grad_direction_weight, "normal_weight": self.normal_weight,
                "berhu_threshold": self.berhu_threshold, "berhu_ratio": self.berhu_ratio,
                "berhu_stop_gradient": self.berhu_stop_gradient, "berhu_epsilon": self.berhu_epsilon,
                "grad_magnitude_reduction": self.grad_magnitude_reduction}


@keras.saving.register_keras_serializable(package="hqdepth")
class HuLoss(_GradientLoss):
    """Hu et al. (WACV 2019): ln(|e| + a) on depth and on both Sobel gradients, plus |1 - cos| of normals.

    From JunjH/Revisiting_Single_Depth_Estimation `train.py`: a = 0.5, zero-padded Sobel, weights 1;
    the value can be negative (minimum ln 0.5 per log term).
    """

    term_names = ("l_depth", "l_grad", "l_normal")

    def __init__(self, depth_weight=1.0, grad_weight=1.0, normal_weight=1.0, alpha=0.5, sobel_padding="zero",
                 name="hu_loss", **kwargs):
        super().__init__(sobel_padding=sobel_padding, name=name, **kwargs)
        self.depth_weight = float(depth_weight)
        self.grad_weight = float(grad_weight)
        self.normal_weight = float(normal_weight)
        self.alpha = float(alpha)

    def term_formulas(self, y_true, y_pred):
        gt, pred, valid = prepare(y_true, y_pred, self.mask_invalid)
        grads = functools.cache(lambda: _Gradients(gt, pred, valid, self.sobel_padding, self.sobel_normalize,
                                                   self.mask_invalid))
        log_l1 = lambda a, b: ops.log(ops.abs(a - b) + self.alpha)  # noqa: E731

        def l_normal():
            g = grads()
            dot = 1.0 + g.dy_gt * g.dy_pd + g.dx_gt * g.dx_pd
            norms = ops.sqrt(1.0 + g.dy_gt**2 + g.dx_gt**2) * ops.sqrt(1.0 + g.dy_pd**2 + g.dx_pd**2)
            return masked_mean(ops.abs(1.0 - dot / norms), g.weight)

        def l_grad():
            g = grads()
            return masked_mean(log_l1(g.dx_pd, g.dx_gt), g.weight) + masked_mean(log_l1(g.dy_pd, g.dy_gt), g.weight)

        return {"l_depth": lambda: masked_mean(log_l1(pred, gt), valid), "l_grad": l_grad, "l_normal": l_normal}

    def call(self, y_true, y_pred):
        terms = self.terms(y_true, y_pred)
        return (self.depth_weight * terms["l_depth"] + self.grad_weight * terms["l_grad"]
                + self.normal_weight * terms["l_normal"])

    def get_config(self):
        return {**super().get_config(), "depth_weight": self.depth_weight, "grad_weight": self.grad_weight,
                "normal_weight": self.normal_weight, "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="hqdepth")
class LossTerm(keras.metrics.Mean):
    """Running mean of one named term of a composite loss (shown as e.g. `l_grad_mg` in fit logs)."""

    def __init__(self, loss, term, name=None, **kwargs):
        super().__init__(name=name or term, **kwargs)
        self.loss = keras.losses.get(loss) if isinstance(loss, dict) else loss
        if term not in self.loss.term_names:
            raise ConfigError(f"{self.loss.__class__.__name__} has no term {term!r}; terms: {self.loss.term_names}.")
        self.term = term

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(self.loss.terms(y_true, y_pred, names=(self.term,))[self.term])

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "term": self.term,
                "loss": keras.saving.serialize_keras_object(self.loss)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)


# --- Losses of the other models of the family (specs/other_models.md) -----------------------------------


def _gaussian_taps(size, sigma):
    """1-D taps of `tf.image.ssim`'s window: exp(-x^2 / 2 sigma^2) normalised, x centred on the window."""
    import math

    coords = [i - (size - 1) / 2.0 for i in range(size)]
    weights = [math.exp(-(c * c) / (2.0 * sigma * sigma)) for c in coords]
    total = sum(weights)
    return [w / total for w in weights]


def _gaussian_filter(images, taps):
    """VALID separable Gaussian filtering of NHWC images, channels filtered independently."""
    size = len(taps)
    shape = ops.shape(images)
    channels = images.shape[-1]
    x = ops.reshape(ops.transpose(images, (0, 3, 1, 2)), (-1, shape[1], shape[2], 1)) if channels != 1 else images
    kernel = ops.convert_to_tensor(taps, "float32")
    x = ops.conv(x, ops.reshape(kernel, (size, 1, 1, 1)), padding="valid")
    x = ops.conv(x, ops.reshape(kernel, (1, size, 1, 1)), padding="valid")
    if channels != 1:
        out = ops.shape(x)
        x = ops.transpose(ops.reshape(x, (shape[0], channels, out[1], out[2])), (0, 2, 3, 1))
    return x


def ssim_map(x, y, max_val, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03):
    """Per-window SSIM of NHWC images, as `tf.image.ssim` computes it before averaging.

    Gaussian window `filter_size` x `filter_sigma`, VALID (output (H - size + 1, W - size + 1)),
    c1 = (k1 max_val)^2, c2 = (k2 max_val)^2, ssim = luminance * contrast-structure with
    (2 mu_x mu_y + c1) / (mu_x^2 + mu_y^2 + c1) * (2 cov + c2) / (var_x + var_y + c2).
    """
    taps = _gaussian_taps(int(filter_size), float(filter_sigma))
    c1 = (k1 * max_val) ** 2
    c2 = (k2 * max_val) ** 2
    mean_x = _gaussian_filter(x, taps)
    mean_y = _gaussian_filter(y, taps)
    mean_xy = mean_x * mean_y
    luminance = (2.0 * mean_xy + c1) / (mean_x * mean_x + mean_y * mean_y + c1)
    cross = 2.0 * _gaussian_filter(x * y, taps)
    squares = _gaussian_filter(x * x + y * y, taps)
    contrast_structure = (cross - 2.0 * mean_xy + c2) / (squares - mean_x * mean_x - mean_y * mean_y + c2)
    return luminance * contrast_structure


@keras.saving.register_keras_serializable(package="hqdepth")
class SSIMMSE(DepthLoss):
    """FCN autoencoder loss (seed 001): ssim_weight * (1 - SSIM) * ssim_scale + mse_weight * MSE.

    The report gives a weighted sum of an SSIM-derived term and the MSE, with the formula and weights
    only in a figure, so both are options: defaults ssim_weight = mse_weight = 1 (our choice) and
    ssim_scale = 0.5, i.e. the common (1 - SSIM) / 2. SSIM is `tf.image.ssim` (11x11 Gaussian,
    sigma 1.5, k1 0.01, k2 0.03) with max_val = `max_val` (set it to the depth range: 10 m NYU).

    Masking (mask_invalid=True): the MSE averages valid pixels; for SSIM, invalid ground-truth
    pixels are filled with the (gradient-stopped) prediction and the SSIM map is averaged over the
    windows whose centre pixel is valid. With every pixel valid this equals tf.image.ssim averaged
    over the batch. mask_invalid=False: plain SSIM and MSE over every pixel.
    The image must be at least `filter_size` pixels high and wide.
    """

    term_names = ("l_ssim", "l_mse")

    def __init__(self, ssim_weight=1.0, mse_weight=1.0, ssim_scale=0.5, max_val=10.0, filter_size=11,
                 filter_sigma=1.5, k1=0.01, k2=0.03, name="ssim_mse", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ssim_weight = float(ssim_weight)
        self.mse_weight = float(mse_weight)
        self.ssim_scale = float(ssim_scale)
        self.max_val = float(max_val)
        self.filter_size = int(filter_size)
        self.filter_sigma = float(filter_sigma)
        self.k1 = float(k1)
        self.k2 = float(k2)

    def term_formulas(self, y_true, y_pred):
        gt, pred, valid = prepare(y_true, y_pred, self.mask_invalid)

        def l_ssim():
            filled = ops.where(valid > 0, gt, ops.stop_gradient(pred)) if self.mask_invalid else gt
            ssim = ssim_map(filled, pred, self.max_val, self.filter_size, self.filter_sigma, self.k1, self.k2)
            trim = (self.filter_size - 1) // 2
            centre = valid[:, trim:trim + ops.shape(ssim)[1], trim:trim + ops.shape(ssim)[2], :]
            return (1.0 - masked_mean(ssim, centre)) * self.ssim_scale

        return {"l_ssim": l_ssim, "l_mse": lambda: masked_mean(ops.square(pred - gt), valid)}

    def call(self, y_true, y_pred):
        weights = {"l_ssim": self.ssim_weight, "l_mse": self.mse_weight}
        terms = self.terms(y_true, y_pred, names=[key for key, weight in weights.items() if weight])
        total = 0.0
        for key, value in terms.items():
            total = total + weights[key] * value
        return total

    def get_config(self):
        return {**super().get_config(), "ssim_weight": self.ssim_weight, "mse_weight": self.mse_weight,
                "ssim_scale": self.ssim_scale, "max_val": self.max_val, "filter_size": self.filter_size,
                "filter_sigma": self.filter_sigma, "k1": self.k1, "k2": self.k2}


@keras.saving.register_keras_serializable(package="hqdepth")
class SILogLoss(DepthLoss):
    """BTS scale-invariant log loss: scale * sqrt(mean(d^2) - variance_focus * mean(d)^2).

    d = ln(pred + offset) - ln(gt + offset) over the valid pixels of the whole batch pooled (BTS
    `silog_loss`). Valid: finite gt > min_depth (BTS trains with 0.1 m on NYU, 1.0 m on KITTI) and,
    if given, gt < max_depth. Defaults = official BTS: variance_focus 0.85, scale 10, offset 0.
    Toolbox `SigLoss` = offset 1e-3, unbiased=True (variance with N - 1), scale 1, min_depth 0:
    sqrt(var(d) + (1 - variance_focus) mean(d)^2). The prediction is clamped to >= `epsilon`
    before the log and the radicand to >= 1e-12 (zero loss and gradient at a perfect prediction).
    """

    def __init__(self, variance_focus=0.85, scale=10.0, min_depth=0.1, max_depth=None, offset=0.0, unbiased=False,
                 epsilon=1e-6, name="silog", **kwargs):
        super().__init__(name=name, **kwargs)
        self.variance_focus = float(variance_focus)
        self.scale = float(scale)
        self.min_depth = float(min_depth)
        self.max_depth = None if max_depth is None else float(max_depth)
        self.offset = float(offset)
        self.unbiased = bool(unbiased)
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        gt, pred, valid = prepare(y_true, y_pred, self.mask_invalid)
        keep = gt > self.min_depth
        if self.max_depth is not None:
            keep = ops.logical_and(keep, gt < self.max_depth)
        weight = valid * ops.cast(keep, "float32")
        safe_gt = ops.where(weight > 0, gt, 1.0)
        d = ops.log(ops.maximum(pred + self.offset, self.epsilon)) - ops.log(safe_gt + self.offset)
        d = d * weight
        count = ops.sum(weight)
        mean = ops.sum(d) / ops.maximum(count, 1.0)
        mean_sq = ops.sum(d * d) / ops.maximum(count, 1.0)
        variance = mean_sq - mean * mean
        if self.unbiased:
            variance = variance * count / ops.maximum(count - 1.0, 1.0)
        radicand = variance + (1.0 - self.variance_focus) * mean * mean
        return self.scale * ops.sqrt(ops.maximum(radicand, 1e-12)) * ops.cast(count > 0, "float32")

    def get_config(self):
        return {**super().get_config(), "variance_focus": self.variance_focus, "scale": self.scale,
                "min_depth": self.min_depth, "max_depth": self.max_depth, "offset": self.offset,
                "unbiased": self.unbiased, "epsilon": self.epsilon}


def resize_ground_truth(gt, valid, size, align_corners=True):
    """Bilinear resize of masked ground truth: R(gt * v) / R(v), valid only where every contributing
    pixel is valid (R(v) = 1). Without holes it is the plain bilinear resize (SARPN, align_corners)."""
    from hqdepth.layers.resize import resize_bilinear

    weight = resize_bilinear(valid, size, align_corners)
    total = resize_bilinear(gt * valid, size, align_corners)
    valid_out = ops.cast(weight > 1.0 - 1e-4, "float32")
    return ops.where(valid_out > 0, total / ops.maximum(weight, 1e-6), 0.0), valid_out


# `SILog` is also the metric's name (hqdepth.metrics.SILog); the loss registers as SILogLoss.
SILog = SILogLoss


@keras.saving.register_keras_serializable(package="hqdepth")
class MultiScaleDepthLoss(DepthLoss):
    """MRPAN / SARPN deep supervision: sum over scales of (l_depth + l_grad + l_normal).

    Per scale the ground truth is resized to the prediction's size (bilinear, align_corners=True,
    as SARPN; masked: see `resize_ground_truth`) and the Hu et al. terms are computed there
    (`HuLoss`: ln(|e| + alpha) on depth and both zero-padded Sobel gradients, |1 - cos| of normals).
    Call with a list of predictions (any order) to get the sum over them, or with one prediction to
    get its scale's term: Keras applies the loss to each output of a `DeepSupervisionModel`, and
    `fit` reports the sum. Weight the scales with `compile(loss_weights=[...])` if wanted (MRPAN: 1).
    """

    term_names = ("l_depth", "l_grad", "l_normal")

    def __init__(self, depth_weight=1.0, grad_weight=1.0, normal_weight=1.0, alpha=0.5, sobel_padding="zero",
                 align_corners=True, name="multi_scale_depth", **kwargs):
        super().__init__(name=name, **kwargs)
        self.depth_weight = float(depth_weight)
        self.grad_weight = float(grad_weight)
        self.normal_weight = float(normal_weight)
        self.alpha = float(alpha)
        self.sobel_padding = _check_choice("sobel_padding", sobel_padding, ("reflect", "zero"))
        self.align_corners = bool(align_corners)
        self._hu = HuLoss(alpha=self.alpha, sobel_padding=self.sobel_padding, mask_invalid=self.mask_invalid)

    def _scale_terms(self, y_true, y_pred, names):
        gt, pred, valid = prepare(y_true, y_pred, self.mask_invalid)
        shape = ops.shape(pred)
        gt_scaled, _ = resize_ground_truth(gt, valid, (shape[1], shape[2]), self.align_corners)
        return self._hu.terms(gt_scaled, pred, names)

    def terms(self, y_true, y_pred, names=None):
        predictions = list(y_pred) if isinstance(y_pred, (list, tuple)) else [y_pred]
        names = self.term_names if names is None else names
        totals = {name: 0.0 for name in names}
        for prediction in predictions:
            for name, value in self._scale_terms(y_true, prediction, names).items():
                totals[name] = totals[name] + value
        return totals

    def call(self, y_true, y_pred):
        terms = self.terms(y_true, y_pred)
        return (self.depth_weight * terms["l_depth"] + self.grad_weight * terms["l_grad"]
                + self.normal_weight * terms["l_normal"])

    def __call__(self, y_true, y_pred, sample_weight=None):
        if isinstance(y_pred, (list, tuple)):  # Keras' Loss.__call__ expects one tensor
            return scale_for_replicas(self.call(y_true, y_pred))
        return super().__call__(y_true, y_pred, sample_weight)

    def get_config(self):
        return {**super().get_config(), "depth_weight": self.depth_weight, "grad_weight": self.grad_weight,
                "normal_weight": self.normal_weight, "alpha": self.alpha, "sobel_padding": self.sobel_padding,
                "align_corners": self.align_corners}
