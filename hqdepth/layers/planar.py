"""BTS local planar guidance (Lee et al., arXiv 1907.10326; `cleinc/bts` `pytorch/bts.py`).

`PlaneCoefficients` turns 3 raw channels into a plane (n1, n2, n3, n4): theta = sigmoid(x0) * theta_max,
phi = sigmoid(x1) * 2 pi, n4 = sigmoid(x2) * max_depth, n = (sin theta cos phi, sin theta sin phi, cos theta).
`LocalPlanarGuidance` expands every plane to a k x k patch of the full-resolution map with the
ray-plane intersection depth = n4 / (n1 u + n2 v + n3), u and v the pixel offsets inside the patch.
Both compute in float32 whatever the mixed-precision policy (the division is ill-conditioned).
"""

import math

import keras
from keras import ops

# Mean focal length of the KITTI Eigen training set; BTS scales its KITTI output by focal / this value.
KITTI_MEAN_FOCAL = 715.0873


@keras.saving.register_keras_serializable(package="hqdepth")
class PlaneCoefficients(keras.layers.Layer):
    """(B, h, w, 3) raw values -> (B, h, w, 4) planes [n1, n2, n3, n4] (BTS `reduction_1x1`, not final).

    theta_max: pi/3 in the PyTorch code and the Toolbox, pi/6 in the TF1 code. The unit normal is
    re-normalised as in the code (`F.normalize`, a no-op up to rounding: the vector is already unit).
    """

    def __init__(self, max_depth=10.0, theta_max=math.pi / 3, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.max_depth = float(max_depth)
        self.theta_max = float(theta_max)

    def call(self, raw):
        raw = ops.cast(raw, self.compute_dtype)
        theta = ops.sigmoid(raw[..., 0]) * self.theta_max
        phi = ops.sigmoid(raw[..., 1]) * (2.0 * math.pi)
        dist = ops.sigmoid(raw[..., 2]) * self.max_depth
        normal = ops.stack([ops.sin(theta) * ops.cos(phi), ops.sin(theta) * ops.sin(phi), ops.cos(theta)], axis=-1)
        norm = ops.sqrt(ops.sum(normal * normal, axis=-1, keepdims=True))
        normal = normal / ops.maximum(norm, 1e-12)  # torch F.normalize eps
        return ops.concatenate([normal, dist[..., None]], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 4)

    def get_config(self):
        return {**super().get_config(), "max_depth": self.max_depth, "theta_max": self.theta_max}


def planar_offsets(size, upratio, dtype="float32"):
    """((i mod k) - (k - 1) / 2) / k for i = 0..size-1: the offset of pixel i inside its k-patch."""
    k = int(upratio)
    remainder = ops.cast(ops.mod(ops.arange(size), k), "float32")
    offsets = (remainder - (k - 1.0) / 2.0) / float(k)
    return ops.cast(offsets, dtype)


@keras.saving.register_keras_serializable(package="hqdepth")
class LocalPlanarGuidance(keras.layers.Layer):
    """(B, h, w, 4) planes -> (B, h*k, w*k, 1) depth, depth(r, c) = n4 / (n1 u + n2 v + n3).

    u = ((c mod k) - (k-1)/2) / k (horizontal), v = ((r mod k) - (k-1)/2) / k (vertical): the
    plane of the coarse pixel (r // k, c // k), exactly the CUDA kernel's and the PyTorch
    repeat-interleave formulation. The focal length the official op receives is unused, so it is
    not an input here.

    Guard (ours): with theta_max = pi/3 the denominator reaches 0 for k = 8 once theta > 58.25 deg,
    giving inf or negative depth; it is clamped to >= `min_denominator` (None: the exact formula).
    `max_output` optionally clips the result to [0, max_output]. Autodiff gives the exact
    gradient (the TF1 hand-written gradient, which drops n4 in d/dn1..3, is not reproduced).
    """

    def __init__(self, upratio=8, min_denominator=1e-3, max_output=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.upratio = int(upratio)
        if self.upratio < 1:
            raise ValueError(f"upratio must be >= 1, got {upratio!r}.")
        self.min_denominator = None if min_denominator is None else float(min_denominator)
        self.max_output = None if max_output is None else float(max_output)

    def call(self, planes):
        planes = ops.cast(planes, self.compute_dtype)
        k = self.upratio
        expanded = ops.repeat(ops.repeat(planes, k, axis=1), k, axis=2)
        shape = ops.shape(expanded)
        u = planar_offsets(shape[2], k, self.compute_dtype)[None, None, :]
        v = planar_offsets(shape[1], k, self.compute_dtype)[None, :, None]
        n1, n2, n3, n4 = (expanded[..., i] for i in range(4))
        denominator = n1 * u + n2 * v + n3
        if self.min_denominator is not None:
            denominator = ops.maximum(denominator, self.min_denominator)
        depth = n4 / denominator
        if self.max_output is not None:
            depth = ops.clip(depth, 0.0, self.max_output)
        return depth[..., None]

    def compute_output_shape(self, input_shape):
        batch, height, width = input_shape[:3]
        scale = lambda n: None if n is None else n * self.upratio  # noqa: E731
        return (batch, scale(height), scale(width), 1)

    def get_config(self):
        return {**super().get_config(), "upratio": self.upratio, "min_denominator": self.min_denominator,
                "max_output": self.max_output}


@keras.saving.register_keras_serializable(package="hqdepth")
class FocalScaling(keras.layers.Layer):
    """[depth (B, H, W, 1), focal (B,)] -> depth * focal / reference_focal (BTS on KITTI, 715.0873)."""

    def __init__(self, reference_focal=KITTI_MEAN_FOCAL, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.reference_focal = float(reference_focal)

    def call(self, inputs):
        depth, focal = inputs
        depth = ops.cast(depth, self.compute_dtype)
        focal = ops.reshape(ops.cast(focal, self.compute_dtype), (-1, 1, 1, 1))
        return depth * focal / self.reference_focal

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "reference_focal": self.reference_focal}
