"""NumPy resizes of images and depth maps, each reproducing one reference implementation exactly (the
package's single home for them; the Keras resize op for models is `hqdepth.layers.resize.resize_bilinear`):

- `resize_bilinear_tf`: `tf.image.resize` bilinear (half-pixel centres): `hqdepth predict`, the SavedModel.
- `resize_bilinear_cv2`: `cv2.resize` INTER_LINEAR (the HQMD evaluation code): the evaluator, `evaluate --model`.
- `resize_bilinear_tf1`: TF1 `tf.image.resize_images` (no half-pixel centres): HQMDE's test input.
- `resize_bilinear_align_corners`: PyTorch bilinear with align_corners=True (Hu et al., SARPN).
- `resize_nearest_pil`, `resize_bilinear_pil`: Pillow NEAREST / BILINEAR (Hu et al.'s loader).

TensorFlow, OpenCV and Pillow are imported by the function that needs them.
"""

import numpy as np


def resize_bilinear_cv2(image, height, width):
    """Bilinear resize of a 2-D map as `cv2.resize(..., INTER_LINEAR)` (the HQMD code), dtype kept."""
    import cv2

    image = np.ascontiguousarray(image)
    if image.dtype not in (np.float32, np.float64):
        image = image.astype(np.float64)
    return cv2.resize(image, (int(width), int(height)), interpolation=cv2.INTER_LINEAR)


def resize_bilinear_tf(image, height, width):
    """Bilinear resize of an (H, W) map or (H, W, C) image to (height, width), float32: `tf.image.resize`
    (half-pixel centres, no antialiasing), the op of the data pipeline's test-time resize and of the exported
    SavedModel, so `hqdepth predict` and the SavedModel agree to float rounding. Same size: returned as is."""
    image = np.asarray(image, dtype=np.float32)
    if image.shape[:2] == (height, width):
        return image
    import tensorflow as tf

    planes = image[..., None] if image.ndim == 2 else image
    out = tf.image.resize(planes, (int(height), int(width)), method="bilinear").numpy()
    return out[..., 0] if image.ndim == 2 else out


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


def resize_bilinear_pil(rgb, height, width):
    """Pillow `Image.resize((width, height), Image.BILINEAR)` of a uint8 RGB image, as Hu et al.'s loader."""
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((int(width), int(height)), Image.BILINEAR))
