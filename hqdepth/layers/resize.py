"""Bilinear resizing with TF1 `align_corners=True` semantics on every backend.

`keras.ops.image.resize` has no `align_corners`; the HQMD code resizes with it everywhere. Bilinear
interpolation is separable, so resizing is two small matrix products with "tent" weight matrices,
which works on every backend and for dynamic shapes (`resize_bilinear`).
"""

import keras
import numpy as np
from keras import ops


def _interpolation_matrix(in_size, out_size, align_corners, dtype):
    """(out_size, in_size) matrix of bilinear weights, as TF's ResizeBilinear computes them.

    With both sizes known when the graph is traced (a model built for a fixed size) the same float32 operations run
    in NumPy and the matrix enters the graph as one constant, instead of a dozen ops per resize (MRPAN's training run
    traces 754 of them: its test fixture took 40 s instead of 45 on a 2-core Xeon)."""
    static = isinstance(in_size, int) and isinstance(out_size, int)
    xp = np if static else ops
    float32 = (lambda v: np.asarray(v, "float32")) if static else (lambda v: ops.cast(v, "float32"))
    one, zero = float32(1.0), float32(0.0)
    in_f, out_f = float32(in_size), float32(out_size)
    dst = float32(xp.arange(out_size))
    if align_corners:
        scale = xp.where(out_f > one, (in_f - one) / xp.maximum(out_f - one, one), zero)
        src = dst * scale
    else:  # half-pixel centres, TF2 / keras.ops.image.resize convention
        half = float32(0.5)
        src = (dst + half) * (in_f / out_f) - half
    src = xp.clip(src, zero, in_f - one)
    grid = float32(xp.arange(in_size))
    weights = xp.maximum(zero, one - xp.abs(src[:, None] - grid[None, :]))
    return ops.cast(weights, dtype)


def resize_bilinear(images, size, align_corners=True):
    """Resize NHWC `images` to `size` = (height, width); sizes may be dynamic tensors.

    Two broadcast matrix products: the row weights (out_h, h) times each image viewed as (h, w * C), then the
    column weights (out_w, w) times each output row viewed as (w, C). Their gradients are matrix products too, with
    no transposes of the images: HQMD baseline+'s 19x25 -> 73x97 upsampling of 256 channels, batch 8, bfloat16,
    forward 22 -> 10 ms against the same products written as `einsum` (which TensorFlow runs with transposes), and
    gradient 6 ms against 33 for TensorFlow's `ResizeBilinearGrad` kernel (float32 only: casts both ways). The
    products also keep ONNX export exact: tf2onnx converts TensorFlow's own `ResizeBilinear` with align_corners
    with some output sizes rounded down (73 -> 72 on HQMD's decoder at 289x385).
    """
    _, height, width, channels = ops.shape(images)
    rows = _interpolation_matrix(height, size[0], align_corners, images.dtype)
    cols = _interpolation_matrix(width, size[1], align_corners, images.dtype)
    images = ops.matmul(rows, ops.reshape(images, (-1, height, width * channels)))
    if isinstance(channels, int) and channels == 1:
        # One channel (a depth or logits map): one product of all rows with the transposed column weights, instead
        # of a batch of out_h * N matrix-vector products (HQMD baseline+'s 73x97 -> 289x385 logits: 1.9 -> 0.2 ms).
        images = ops.matmul(ops.reshape(images, (-1, width)), ops.transpose(cols))
    else:
        images = ops.matmul(cols, ops.reshape(images, (-1, width, channels)))
    return ops.reshape(images, (-1, size[0], size[1], channels))


@keras.saving.register_keras_serializable(package="hqdepth")
class BilinearResize(keras.layers.Layer):
    """Bilinear resize to a fixed `size`, or to the spatial size of a reference tensor.

    Call as `layer(x)` with `size=(h, w)` set, or `layer([x, reference])` to match `reference`.
    `align_corners=True` reproduces TF1 `resize_bilinear(align_corners=True)` (HQMD, DeepLab);
    `False` gives half-pixel centres (TF2 `tf.image.resize`).
    """

    def __init__(self, size=None, align_corners=True, **kwargs):
        super().__init__(**kwargs)
        self.size = tuple(size) if size is not None else None
        self.align_corners = bool(align_corners)

    def _target_size(self, inputs):
        if isinstance(inputs, (list, tuple)):
            images, reference = inputs
            shape = ops.shape(reference)
            return images, (shape[1], shape[2])
        if self.size is None:
            raise ValueError("BilinearResize needs `size` or a reference tensor: layer([x, reference]).")
        return inputs, self.size

    def call(self, inputs):
        images, size = self._target_size(inputs)
        return resize_bilinear(images, size, self.align_corners)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)):
            images, reference = input_shape
            return (images[0], reference[1], reference[2], images[3])
        return (input_shape[0], self.size[0], self.size[1], input_shape[3])

    def get_config(self):
        return {**super().get_config(), "size": self.size, "align_corners": self.align_corners}
