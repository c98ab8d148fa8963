"""Bilinear resizing with TF1 `align_corners=True` semantics on every backend.

`keras.ops.image.resize` has no `align_corners`; the HQMD code resizes with it everywhere. Bilinear
interpolation is separable, so resizing is two small matrix products with "tent" weight matrices,
which works on every backend and for dynamic shapes; on TensorFlow the gradient is its one-pass
`ResizeBilinearGrad` kernel (`resize_bilinear`).
"""

import keras
from keras import ops


def _interpolation_matrix(in_size, out_size, align_corners, dtype):
    """(out_size, in_size) matrix of bilinear weights, as TF's ResizeBilinear computes them."""
    in_f = ops.cast(in_size, "float32")
    out_f = ops.cast(out_size, "float32")
    dst = ops.cast(ops.arange(out_size), "float32")
    if align_corners:
        scale = ops.where(out_f > 1.0, (in_f - 1.0) / ops.maximum(out_f - 1.0, 1.0), 0.0)
        src = dst * scale
    else:  # half-pixel centres, TF2 / keras.ops.image.resize convention
        src = (dst + 0.5) * (in_f / out_f) - 0.5
    src = ops.clip(src, 0.0, in_f - 1.0)
    grid = ops.cast(ops.arange(in_size), "float32")
    weights = ops.maximum(0.0, 1.0 - ops.abs(src[:, None] - grid[None, :]))
    return ops.cast(weights, dtype)


def resize_bilinear(images, size, align_corners=True):
    """Resize NHWC `images` to `size` = (height, width); sizes may be dynamic tensors.

    On TensorFlow the gradient is TensorFlow's `ResizeBilinearGrad` kernel (the adjoint of the same interpolation,
    one pass), not the two products' gradients, which TensorFlow computes with transposes around batched matrix
    products (MRPAN training step at 228x304: 1.9 s of its 11 s). The forward pass stays the two products: ONNX
    conversion of TensorFlow's `ResizeBilinear` op with align_corners rounds some output sizes down (73 -> 72 on
    HQMD's decoder at 289x385).
    """
    if keras.backend.backend() == "tensorflow":
        return _resize_with_kernel_gradient(images, size, align_corners)
    return _resize_by_products(images, size, align_corners)


def _resize_with_kernel_gradient(images, size, align_corners):
    import tensorflow as tf

    @tf.custom_gradient
    def resize(x):
        def gradient(upstream):
            return tf.raw_ops.ResizeBilinearGrad(grads=tf.cast(upstream, "float32"), original_image=x,
                                                 align_corners=align_corners, half_pixel_centers=not align_corners)

        return _resize_by_products(x, size, align_corners), gradient

    return resize(images)


def _resize_by_products(images, size, align_corners):
    shape = ops.shape(images)
    rows = _interpolation_matrix(shape[1], size[0], align_corners, images.dtype)
    cols = _interpolation_matrix(shape[2], size[1], align_corners, images.dtype)
    images = ops.einsum("oh,bhwc->bowc", rows, images)
    return ops.einsum("pw,bowc->bopc", cols, images)


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
