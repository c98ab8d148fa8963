"""Joint RGB/depth augmentation recipes as TensorFlow ops (run inside `tf.data` map).

A recipe is built with `get_recipe(name, mode, size=None, **options)` and called per example:
`recipe(rgb, depth, seed) -> (rgb, depth)` with rgb float32 (H, W, 3) in [0, 255], depth float32
(H, W, 1) metres, seed an int32/int64 tensor of shape [2] (stateless random ops: the same seed
gives the same result, whatever the thread). `recipe.transform(...)` also returns `zoom`, the
horizontal factor by which the image was resized (a focal length scales by it).

Modes: "train" (random augmentation), "val" (deterministic joint transform so a loss can compare
image and depth; HQMD keeps its official random crop), "test" (evaluation input: only the RGB is
transformed, depth is the untouched ground truth for the evaluator).

Rules every recipe keeps (but `hu`, whose rotation interpolates depth as Hu et al.'s): depth is resampled with
NEAREST only (never averaged or invented);
pixels a geometric op brings in from outside the image are depth 0 = invalid (RGB 0); colour
ops touch only the RGB. Constants and order: specs/hqmd.md §5, specs/other_models.md (BTS §3.8,
FCN §1, ResNet transposed §2, DenseDepth §6), evaluation_and_data.md §4.4 (Hu / SARPN).

`size` (H, W) = output size. Each recipe has a published size (hqmd 289x385, bts 416x544 NYU /
352x704 KITTI, resnet_transposed 224x224); a smaller size scales the recipe's geometry with it
(see each recipe) so that quick CPU runs see the same field of view.
"""

import math

import numpy as np
import tensorflow as tf

from hqdepth.data.densedepth import TRAIN_DEPTH_STEP
from hqdepth.errors import ConfigError, DataError

MODES = ("train", "val", "test")
HQMD_PI = 3.14  # the official HQMD code converts degrees with pi ~ 3.14 (specs/hqmd.md §5)
NYU_BTS_BOX = (45, 472, 43, 608)  # rows 45:472, cols 43:608 -> 427 x 565 (BTS registration border)
KB_CROP = (352, 1216)


# ----------------------------------------------------------------------------------------------
# Building blocks (each takes and returns an (rgb, depth) pair)


def _size_of(image):
    shape = tf.shape(image)
    return shape[0], shape[1]


def _seeds(seed, count):
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=count))


def _uniform(seed, low, high, shape=()):
    return tf.random.stateless_uniform(shape, seed=seed, minval=low, maxval=high, dtype=tf.float32)


def resize_rgb(rgb, size):
    """Bilinear resize (half-pixel centres, TF2 default), float32 out."""
    return tf.image.resize(tf.cast(rgb, tf.float32), size, method="bilinear")


def resize_depth(depth, size):
    """Nearest resize: every output value is a source value (no depth is invented)."""
    return tf.image.resize(depth, size, method="nearest")


def resize_pair(rgb, depth, size):
    return resize_rgb(rgb, size), resize_depth(depth, size)


def resize_rgb_tf1(rgb, size):
    """TF1 `tf.image.resize_images` bilinear (align_corners=False, no half-pixel centres: output pixel i samples
    the input at i * n_in / n_out), as HQMDE's `dataloader.py` resizes; float32 out."""
    rgb = tf.cast(rgb, tf.float32)[None]
    return tf.raw_ops.ResizeBilinear(images=rgb, size=size, align_corners=False, half_pixel_centers=False)[0]


def resize_depth_tf1(depth, size):
    """TF1 `resize_images(..., NEAREST_NEIGHBOR)`: output pixel i takes input floor(i * n_in / n_out)."""
    return tf.raw_ops.ResizeNearestNeighbor(images=depth[None], size=size, align_corners=False,
                                            half_pixel_centers=False)[0]


def resize_pair_tf1(rgb, depth, size):
    return resize_rgb_tf1(rgb, size), resize_depth_tf1(depth, size)


def scale_pair(rgb, depth, s, base_size, resize=resize_pair):
    """HQMD scale augmentation: resize to floor(base * s) (RGB bilinear, depth nearest, by `resize`), depth / s."""
    s = tf.cast(s, tf.float32)
    height = tf.cast(tf.floor(tf.cast(base_size[0], tf.float32) * s), tf.int32)
    width = tf.cast(tf.floor(tf.cast(base_size[1], tf.float32) * s), tf.int32)
    rgb, depth = resize(rgb, depth, tf.stack([height, width]))
    return rgb, depth / s


def rotation_transform(angle, height, width):
    """The projective transform (output -> input coordinates) of a rotation by `angle` radians
    (counter-clockwise on screen) about the image centre, as `tf.contrib.image.rotate` used."""
    angle = tf.cast(angle, tf.float32)
    w = tf.cast(width, tf.float32) - 1.0
    h = tf.cast(height, tf.float32) - 1.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    x_offset = (w - (cos * w - sin * h)) / 2.0
    y_offset = (h - (sin * w + cos * h)) / 2.0
    return tf.reshape(tf.stack([cos, -sin, x_offset, sin, cos, y_offset, 0.0, 0.0]), [1, 8])


def _project(image, transform, interpolation):
    height, width = _size_of(image)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform,
        output_shape=tf.stack([height, width]),
        fill_value=tf.constant(0.0, tf.float32),
        interpolation=interpolation,
        fill_mode="CONSTANT",
    )
    return out[0]


def rotate_pair(rgb, depth, angle):
    """Rotate both by `angle` radians about the centre: RGB bilinear, depth nearest, outside = 0."""
    height, width = _size_of(rgb)
    transform = rotation_transform(angle, height, width)
    rgb = _project(tf.cast(rgb, tf.float32), transform, "BILINEAR")
    depth = _project(depth, transform, "NEAREST")
    return rgb, depth


def crop_pair(rgb, depth, top, left, height, width):
    return (
        rgb[top : top + height, left : left + width],
        depth[top : top + height, left : left + width],
    )


def _check_fits(rgb, size, what):
    height, width = _size_of(rgb)
    return tf.debugging.assert_greater_equal(
        tf.stack([height, width]),
        tf.constant(size, tf.int32),
        message=f"{what}: image smaller than the crop size {size[0]}x{size[1]}; choose a smaller size",
    )


def random_crop_pair(rgb, depth, size, seed, what="random crop"):
    """Uniform random window of `size` (same window for both)."""
    height, width = _size_of(rgb)
    with tf.control_dependencies([_check_fits(rgb, size, what)]):
        seed_top, seed_left = _seeds(seed, 2)
        top = tf.random.stateless_uniform([], seed_top, 0, height - size[0] + 1, dtype=tf.int32)
        left = tf.random.stateless_uniform([], seed_left, 0, width - size[1] + 1, dtype=tf.int32)
    rgb, depth = crop_pair(rgb, depth, top, left, size[0], size[1])
    return tf.ensure_shape(rgb, [size[0], size[1], 3]), tf.ensure_shape(depth, [size[0], size[1], 1])


def flip_pair(rgb, depth):
    """Left-right mirror of both."""
    return tf.reverse(rgb, axis=[1]), tf.reverse(depth, axis=[1])


def random_flip_pair(rgb, depth, seed, p=0.5):
    do_flip = _uniform(seed, 0.0, 1.0) < p
    return tf.cond(do_flip, lambda: flip_pair(rgb, depth), lambda: (rgb, depth))


def color_jitter(rgb, depth, seed, gamma, brightness, colour, gamma_on_uint8=False):
    """Monodepth-style colour augmentation on RGB/255: img^gamma, x brightness, x per-channel
    colour, clip [0, 1], x 255. Ranges are (low, high) of uniform draws. Depth is returned as is.
    `gamma_on_uint8`: the power of the 0..255 values instead, clipped at 255 (the Toolbox's `ColorAug`,
    which receives uint8 images: gamma 1.1 saturates every value above 155)."""
    seed_gamma, seed_brightness, seed_colour = _seeds(seed, 3)
    scale = 1.0 if gamma_on_uint8 else 255.0
    image = tf.cast(rgb, tf.float32) / scale
    image = image ** _uniform(seed_gamma, *gamma)
    image = image * _uniform(seed_brightness, *brightness)
    image = image * _uniform(seed_colour, *colour, shape=[3])
    return tf.clip_by_value(image, 0.0, 255.0 / scale) * scale, depth


def color_hqmd(rgb, depth, seed):
    """HQMD `augment_color`: gamma U[0.8, 1.2], brightness U[0.8, 1.25], colour U[0.8, 1.2]^3, always."""
    return color_jitter(rgb, depth, seed, (0.8, 1.2), (0.8, 1.25), (0.8, 1.2))


def color_bts(rgb, depth, seed, dataset="nyu", p=0.5, gamma_on_uint8=False):
    """BTS `augment_image` with probability p: gamma U(0.9, 1.1), brightness U(0.75, 1.25) NYU /
    U(0.9, 1.1) KITTI, colour U(0.9, 1.1)^3, clip (`gamma_on_uint8`: the Toolbox's, `color_jitter`)."""
    seed_p, seed_jitter = _seeds(seed, 2)
    brightness = (0.75, 1.25) if dataset == "nyu" else (0.9, 1.1)
    apply = _uniform(seed_p, 0.0, 1.0) < p
    return tf.cond(
        apply,
        lambda: color_jitter(rgb, depth, seed_jitter, (0.9, 1.1), brightness, (0.9, 1.1), gamma_on_uint8),
        lambda: (tf.cast(rgb, tf.float32), depth),
    )


def gaussian_noise(rgb, depth, seed, std):
    """Zero-mean Gaussian noise of `std` (0..255 units) on the RGB, clipped to [0, 255]."""
    noise = tf.random.stateless_normal(tf.shape(rgb), seed=seed, stddev=std, dtype=tf.float32)
    return tf.clip_by_value(tf.cast(rgb, tf.float32) + noise, 0.0, 255.0), depth


_PERMUTATIONS = tf.constant([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]], tf.int32)


def channel_swap(rgb, depth, seed, p=0.5):
    """DenseDepth: with probability p, one of the 6 channel orders (identity included) at random."""
    seed_p, seed_choice = _seeds(seed, 2)
    choice = tf.random.stateless_uniform([], seed_choice, 0, 6, dtype=tf.int32)
    order = tf.where(_uniform(seed_p, 0.0, 1.0) < p, _PERMUTATIONS[choice], _PERMUTATIONS[0])
    return tf.gather(rgb, order, axis=2), depth


# Hu et al. / SARPN colour (JunjH `nyu_transform.py`, Xt-Chen/SARPN `dataloader/`): on RGB / 255, no clipping.
HU_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)  # ImageNet PCA of `Lighting(0.1, ...)`
HU_PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def pca_lighting(rgb, alpha):
    """Hu et al. `Lighting`: every pixel plus eigvec @ (alpha * eigval) (AlexNet's PCA noise; alpha ~ N(0, 0.1)
    per component), in 0..255 units here; no clipping."""
    offset = tf.linalg.matvec(tf.constant(HU_PCA_EIGVEC, tf.float32), alpha * tf.constant(HU_PCA_EIGVAL, tf.float32))
    return tf.cast(rgb, tf.float32) + 255.0 * offset


def _gray(rgb):
    return tf.reduce_sum(rgb * tf.constant(GRAY_WEIGHTS, tf.float32), axis=-1, keepdims=True)


def hu_color_jitter(rgb, alphas):
    """Hu et al. `ColorJitter`: brightness, contrast and saturation (alphas[0..2], each U(-0.4, 0.4)), each as
    img + alpha * (target - img) (torch `lerp`) with target 0 / the mean gray level / the pixel's gray level; no
    clipping. They apply the three in a random order, which changes nothing: the maps commute (the gray weights
    sum to 1), so this applies them in one."""
    rgb = tf.cast(rgb, tf.float32)
    for index, target in enumerate((
        lambda img: tf.zeros_like(img),
        lambda img: tf.reduce_mean(_gray(img)),
        lambda img: _gray(img),
    )):
        rgb = rgb + alphas[index] * (target(rgb) - rgb)
    return rgb


def hu_geometry(rgb, depth, flip, angle, scale, crop, depth_size, depth_order=2, depth_resample="nearest",
                depth_8bit=False):
    """NumPy: Hu et al.'s geometric steps with the libraries their loader calls. `Scale(scale)` (the shorter side
    to `scale`, `hqdepth.protocols.hu_scaled_size`; RGB as uint8 with Pillow BILINEAR, depth Pillow NEAREST) ->
    mirror if `flip` -> `scipy.ndimage.rotate` by `angle` degrees (reshape=False, fill 0; RGB uint8 order 2,
    depth float order `depth_order`, clipped at 0 as their uint8 depth is; None: no rotation) -> `CenterCrop` to
    `crop` -> depth resized to `depth_size` with Pillow (`depth_resample`: nearest, Pillow < 7's default that
    their code ran with, or bicubic, Pillow >= 7's). `depth_8bit`: the depth held as their 8-bit PNG holds it
    (levels of `TRAIN_DEPTH_STEP` m, 0..255, the densedepth reader's decoding) through every step, so the
    rotation rounds and clamps as their uint8 arrays do: an 8-bit source gives exactly their values.
    Returns (RGB, depth, zoom = the Scale's horizontal factor)."""
    from PIL import Image
    from scipy import ndimage

    from hqdepth.protocols import hu_crop_box, hu_scaled_size
    from hqdepth.resample import resize_bilinear_pil, resize_nearest_pil

    image = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    depth = np.asarray(depth, np.float32)[..., 0]
    if depth_8bit:  # their PNG: value / 255 * 10 m
        depth = np.clip(np.floor(depth / np.float32(TRAIN_DEPTH_STEP) + 0.5), 0, 255).astype(np.uint8)
    if depth.shape != image.shape[:2]:
        raise DataError(f"hu augmentation: the depth map is {depth.shape[0]}x{depth.shape[1]}, the image "
                        f"{image.shape[0]}x{image.shape[1]}; they must be the same size.")
    scaled_size = hu_scaled_size(*image.shape[:2], size=int(scale))
    if scaled_size[0] < crop[0] or scaled_size[1] < crop[1]:
        raise DataError(f"hu augmentation: a {image.shape[0]}x{image.shape[1]} image scaled to {scaled_size[0]}x"
                        f"{scaled_size[1]} (Scale: shorter side {min(scaled_size)}) is smaller than the centre crop "
                        f"{crop[0]}x{crop[1]}; the recipe expects landscape frames such as NYU's 480x640.")
    zoom = np.float32(scaled_size[1] / image.shape[1])
    if image.shape[:2] != scaled_size:
        image = resize_bilinear_pil(image, *scaled_size)
        depth = resize_nearest_pil(depth, *scaled_size)
    if flip:
        image, depth = image[:, ::-1], depth[:, ::-1]
    if angle is not None:
        image = ndimage.rotate(image, float(angle), reshape=False, order=2)
        depth = np.maximum(ndimage.rotate(depth, float(angle), reshape=False, order=int(depth_order)), 0)
    top, left = hu_crop_box(*image.shape[:2], crop=tuple(crop))
    image = image[top:top + crop[0], left:left + crop[1]]
    depth = depth[top:top + crop[0], left:left + crop[1]]
    if depth.shape != tuple(depth_size) and depth_resample == "nearest":
        depth = resize_nearest_pil(depth, *depth_size)
    elif depth.shape != tuple(depth_size):
        depth = np.asarray(Image.fromarray(np.ascontiguousarray(depth)).resize(tuple(depth_size)[::-1], Image.BICUBIC))
    depth = depth.astype(np.float32) * np.float32(TRAIN_DEPTH_STEP) if depth_8bit else depth
    return image.astype(np.float32), depth[..., None].astype(np.float32), zoom


# ----------------------------------------------------------------------------------------------
# Recipes


def _pair_size(value, name="size"):
    if value is None:
        return None
    if isinstance(value, int):
        value = (value, value)
    try:
        height, width = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} must be (height, width).") from None
    if height <= 0 or width <= 0:
        raise ConfigError(f"{name}={value!r} must be positive.")
    return height, width


class Recipe:
    """Base: subclasses implement `_train`, `_val`, `_test` returning (rgb, depth, zoom)."""

    name = None
    default_size = None  # (H, W) of the published setting, or None (keep the input size)
    # True where validation keeps whole frames whose size is not the training crop's (BTS): the model that trains
    # on the crops must then take any input size (`hqdepth.training.trainer.build_model`)
    whole_frame_validation = False

    def __init__(self, mode="train", size=None, **options):
        if mode not in MODES:
            raise ConfigError(f"Augmentation mode {mode!r} is not one of {', '.join(MODES)}.")
        self.mode = mode
        self.size = _pair_size(size) or self.default_size
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ConfigError(
                f"Unknown option(s) {', '.join(unknown)} for augmentation {self.name!r}; "
                f"accepted: {', '.join(self.options) or 'none'}."
            )
        self.config = {**self.options, **options}

    options = {}

    def __call__(self, rgb, depth, seed=(0, 0)):
        rgb, depth, _ = self.transform(rgb, depth, seed)
        return rgb, depth

    def transform(self, rgb, depth, seed=(0, 0)):
        rgb = tf.cast(rgb, tf.float32)
        depth = tf.cast(depth, tf.float32)
        seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
        rgb, depth, zoom = getattr(self, f"_{self.mode}")(rgb, depth, seed)
        return rgb, depth, tf.cast(zoom, tf.float32)

    def output_shapes(self):
        """Static (H, W) of the RGB and depth outputs, None where it depends on the input."""
        return None, None

    def __repr__(self):
        return f"{type(self).__name__}(mode={self.mode!r}, size={self.size}, {self.config})"


def _zoom(width_in, width_out):
    return tf.cast(width_out, tf.float32) / tf.cast(width_in, tf.float32)


def _maybe_resize(size, rgb, depth, both):
    """Resize to `size` (RGB bilinear; depth nearest when `both`), identity when size is None."""
    if size is None:
        return rgb, depth, 1.0
    width = _size_of(rgb)[1]
    rgb_out = resize_rgb(rgb, size)
    depth_out = resize_depth(depth, size) if both else depth
    return rgb_out, depth_out, _zoom(width, size[1])


class NoAugmentation(Recipe):
    """`none`: identity; with `size`, both resized (test: RGB only)."""

    name = "none"

    def output_shapes(self):
        return self.size, (self.size if self.mode != "test" else None)

    def _resize(self, rgb, depth, both):
        return _maybe_resize(self.size, rgb, depth, both)

    def _train(self, rgb, depth, seed):
        return self._resize(rgb, depth, True)

    def _val(self, rgb, depth, seed):
        return self._resize(rgb, depth, True)

    def _test(self, rgb, depth, seed):
        return self._resize(rgb, depth, False)


class HQMDAugmentation(Recipe):
    """`hqmd` (specs/hqmd.md §5), in this order: scale s ~ U[1, 1.5): resize to floor((300, 400) * s),
    depth / s; rotation U[-max_angle, max_angle) deg, default 5 (pi = 3.14; max_angle 0 = none, as HQMDE's
    published run), RGB bilinear / depth nearest, fill 0; random crop
    289x385; colour (gamma, brightness, per-channel); flip p 0.5.
    val: resize to (300, 400), random crop (official code). test: RGB resized directly to 289x385.
    A different `size` scales the (300, 400) base by size / (289, 385).
    `tf1_resize` (default true): every resize samples as HQMDE's TF1 `tf.image.resize_images` (no half-pixel
    centres); false: TF2's half-pixel centres, which move the samples by up to (n_in / n_out - 1) / 2 input
    pixels (0.3 px at 480 -> 300) and pick other nearest depths."""

    name = "hqmd"
    default_size = (289, 385)
    options = {"scale_range": (1.0, 1.5), "max_angle": 5.0, "pi": HQMD_PI, "tf1_resize": True}

    def __init__(self, mode="train", size=None, **options):
        super().__init__(mode, size, **options)
        if not isinstance(self.config["tf1_resize"], bool):
            raise ConfigError(f"hqmd augmentation: tf1_resize={self.config['tf1_resize']!r} is not true or false.")

    def _resizes(self):
        """(pair resize, RGB resize) of this recipe: TF1's sampling or TF2's half-pixel centres."""
        return (resize_pair_tf1, resize_rgb_tf1) if self.config["tf1_resize"] else (resize_pair, resize_rgb)

    @property
    def base_size(self):
        return (
            int(round(300 * self.size[0] / 289)),
            int(round(400 * self.size[1] / 385)),
        )

    def output_shapes(self):
        return self.size, (self.size if self.mode != "test" else None)

    def _train(self, rgb, depth, seed):
        seed_scale, seed_angle, seed_crop, seed_colour, seed_flip = _seeds(seed, 5)
        width = _size_of(rgb)[1]
        s = _uniform(seed_scale, *self.config["scale_range"])
        rgb, depth = scale_pair(rgb, depth, s, self.base_size, resize=self._resizes()[0])
        zoom = _zoom(width, _size_of(rgb)[1])
        max_angle = float(self.config["max_angle"])
        if max_angle:  # 0: no rotation, as HQMDE's published run (recipe hqmd_plus_full)
            angle = _uniform(seed_angle, -max_angle, max_angle) * float(self.config["pi"]) / 180.0
            rgb, depth = rotate_pair(rgb, depth, angle)
        rgb, depth = random_crop_pair(rgb, depth, self.size, seed_crop, "hqmd crop")
        rgb, depth = color_hqmd(rgb, depth, seed_colour)
        rgb, depth = random_flip_pair(rgb, depth, seed_flip)
        return rgb, depth, zoom

    def _val(self, rgb, depth, seed):
        width = _size_of(rgb)[1]
        rgb, depth = self._resizes()[0](rgb, depth, self.base_size)
        rgb, depth = random_crop_pair(rgb, depth, self.size, seed, "hqmd crop")
        return rgb, depth, _zoom(width, self.base_size[1])

    def _test(self, rgb, depth, seed):
        width = _size_of(rgb)[1]
        return self._resizes()[1](rgb, self.size), depth, _zoom(width, self.size[1])


BTS_FRAME_MULTIPLE = 32  # hqdepth.models.bts.SIZE_MULTIPLE (not imported here: no Keras in the data pipeline)


class BTSAugmentation(Recipe):
    """`bts` (specs/other_models.md §3.8), dataset nyu | kitti, in this order: NYU registration box
    rows 45:472 cols 43:608 (480x640 inputs only) / KITTI KB crop 352x1216 (inputs at least that
    big); rotation U[-2.5, 2.5] deg NYU / U[-1, 1] KITTI on every sample (RGB bilinear, depth
    nearest, fill 0); random crop 416x544 NYU / 352x704 KITTI; flip p 0.5; colour with p 0.5.
    test: NYU full image, KITTI KB crop (RGB only). val: the same on both, so the model validates on whole
    frames (480x640, 352x1216) while it trains on crops (`whole_frame_validation`).
    A different `size` first resizes the (boxed) input by size / published crop, never below `size` (whole
    frames: each side rounded to the nearest multiple of 32, so that BTS takes them).
    The Monocular-Depth-Estimation-Toolbox's BTS pipeline: rotate_p 0.5 (it rotates half the samples) and
    gamma_on_uint8 true (its `ColorAug` raises the 0..255 values to the gamma, `color_jitter`)."""

    name = "bts"
    options = {"dataset": "nyu", "max_angle": None, "rotate_p": 1.0, "gamma_on_uint8": False}
    whole_frame_validation = True  # bts_main.py's online eval: whole NYU frames, KITTI's KB crop

    def __init__(self, mode="train", size=None, **options):
        dataset = options.get("dataset", "nyu")
        if dataset not in ("nyu", "kitti"):
            raise ConfigError(f"bts augmentation: dataset={dataset!r} is not nyu or kitti.")
        rotate_p = options.get("rotate_p", 1.0)
        if isinstance(rotate_p, bool) or not isinstance(rotate_p, (int, float)) or not 0.0 <= rotate_p <= 1.0:
            raise ConfigError(f"bts augmentation: rotate_p={rotate_p!r} is not a probability in [0, 1].")
        self.published = (416, 544) if dataset == "nyu" else (352, 704)
        self.default_size = self.published
        super().__init__(mode, size, **options)
        self.dataset = dataset

    def output_shapes(self):
        return (self.size, self.size) if self.mode == "train" else (None, None)

    def _box(self, rgb, depth):
        height, width = _size_of(rgb)
        if self.dataset == "nyu":
            top, bottom, left, right = NYU_BTS_BOX
            is_nyu = tf.logical_and(tf.equal(height, 480), tf.equal(width, 640))
            return tf.cond(
                is_nyu,
                lambda: crop_pair(rgb, depth, top, left, bottom - top, right - left),
                lambda: (rgb, depth),
            )
        fits = tf.logical_and(height >= KB_CROP[0], width >= KB_CROP[1])
        top, left = height - KB_CROP[0], (width - KB_CROP[1]) // 2
        return tf.cond(
            fits,
            lambda: crop_pair(rgb, depth, top, left, KB_CROP[0], KB_CROP[1]),
            lambda: (rgb, depth),
        )

    def _rescale(self, rgb, depth, multiple=1):
        """Resize by size / published size (not below `size`), each side rounded to the nearest multiple of
        `multiple`; identity at the published size."""
        if self.size == self.published:
            return rgb, depth, tf.constant(1.0)
        height, width = _size_of(rgb)
        f_h, f_w = self.size[0] / self.published[0], self.size[1] / self.published[1]

        def side(length, factor, least):  # halves round up, as `hqdepth.depth_model.free_size` rounds
            scaled = tf.cast(tf.floor(tf.cast(length, tf.float32) * factor / multiple + 0.5), tf.int32) * multiple
            return tf.maximum(scaled, least)

        new_h, new_w = side(height, f_h, self.size[0]), side(width, f_w, self.size[1])
        rgb, depth = resize_pair(rgb, depth, tf.stack([new_h, new_w]))
        return rgb, depth, _zoom(width, new_w)

    def _train(self, rgb, depth, seed):
        seed_angle, seed_crop, seed_flip, seed_colour = _seeds(seed, 4)
        rgb, depth = self._box(rgb, depth)
        rgb, depth, zoom = self._rescale(rgb, depth)
        max_angle = self.config["max_angle"]
        if max_angle is None:
            max_angle = 2.5 if self.dataset == "nyu" else 1.0
        angle = _uniform(seed_angle, -float(max_angle), float(max_angle)) * math.pi / 180.0
        rotate_p = float(self.config["rotate_p"])
        if rotate_p >= 1.0:  # BTS: every sample
            rgb, depth = rotate_pair(rgb, depth, angle)
        else:
            rotate = _uniform(_seeds(seed_angle, 1)[0], 0.0, 1.0) < rotate_p
            rgb, depth = tf.cond(rotate, lambda: rotate_pair(rgb, depth, angle),
                                 lambda: (tf.cast(rgb, tf.float32), depth))
        rgb, depth = random_crop_pair(rgb, depth, self.size, seed_crop, "bts crop")
        rgb, depth = random_flip_pair(rgb, depth, seed_flip)
        rgb, depth = color_bts(rgb, depth, seed_colour, self.dataset,
                               gamma_on_uint8=bool(self.config["gamma_on_uint8"]))
        return rgb, depth, zoom

    def _eval(self, rgb, depth, both):
        rgb_in, depth_in = rgb, depth
        if self.dataset == "kitti":
            rgb, depth = self._box(rgb, depth)
        # Whole frames at a reduced size keep a size BTS takes: the nearest multiple of 32 (at the published size
        # nothing is resized; 480x640 and the 352x1216 KB crop are multiples already).
        rgb, depth_scaled, zoom = self._rescale(rgb, depth, BTS_FRAME_MULTIPLE)
        return rgb, (depth_scaled if both else depth_in), zoom

    def _val(self, rgb, depth, seed):
        return self._eval(rgb, depth, True)

    def _test(self, rgb, depth, seed):
        return self._eval(rgb, depth, False)


class FCNAugmentation(Recipe):
    """`fcn` (specs/other_models.md §1): flip p 0.5 and zero-mean Gaussian noise (std not published:
    option noise_std, default 5.1 = 0.02 x 255). With `size`, resized first (test: RGB only)."""

    name = "fcn"
    options = {"noise_std": 5.1}

    def _train(self, rgb, depth, seed):
        seed_flip, seed_noise = _seeds(seed, 2)
        rgb, depth, zoom = _maybe_resize(self.size, rgb, depth, True)
        rgb, depth = random_flip_pair(rgb, depth, seed_flip)
        rgb, depth = gaussian_noise(rgb, depth, seed_noise, float(self.config["noise_std"]))
        return rgb, depth, zoom

    def _val(self, rgb, depth, seed):
        return _maybe_resize(self.size, rgb, depth, True)

    def _test(self, rgb, depth, seed):
        return _maybe_resize(self.size, rgb, depth, False)


class ResNetTransposedAugmentation(NoAugmentation):
    """`resnet_transposed` (specs/other_models.md §2): resize to 224x224 (RGB bilinear, depth
    nearest); no augmentation (the report lists it as future work). test: RGB only."""

    name = "resnet_transposed"
    default_size = (224, 224)


class DenseDepthAugmentation(Recipe):
    """`densedepth` (specs/other_models.md §6): RGB channel permutation p 0.5 (one of 6), mirror p 0.5.
    With `size`, resized first; option depth_size resizes the training/val depth (nearest), e.g.
    (240, 320) for the half-resolution DenseDepth output."""

    name = "densedepth"
    options = {"depth_size": None}

    def _depth_out(self, depth):
        size = _pair_size(self.config["depth_size"], "depth_size")
        return resize_depth(depth, size) if size else depth

    def _train(self, rgb, depth, seed):
        seed_swap, seed_flip = _seeds(seed, 2)
        rgb, depth, zoom = _maybe_resize(self.size, rgb, depth, True)
        rgb, depth = channel_swap(rgb, depth, seed_swap)
        rgb, depth = random_flip_pair(rgb, depth, seed_flip)
        return rgb, self._depth_out(depth), zoom

    def _val(self, rgb, depth, seed):
        rgb, depth, zoom = _maybe_resize(self.size, rgb, depth, True)
        return rgb, self._depth_out(depth), zoom

    def _test(self, rgb, depth, seed):
        return _maybe_resize(self.size, rgb, depth, False)


class HuAugmentation(Recipe):
    """`hu`: Hu et al. (WACV 2019) / SARPN's training pipeline, which MRPAN builds on (specs/evaluation_and_data.md
    §4.4), in their order: shorter side to 240 (RGB Pillow bilinear, depth Pillow nearest) -> mirror p 0.5 ->
    rotation U(-5, 5) deg (`scipy.ndimage.rotate`, order 2 for both, fill 0) -> centre crop 228x304 -> depth
    resized to half the crop (114x152, the size of MRPAN's finest output) -> PCA lighting (std 0.1) -> brightness,
    contrast, saturation U(-0.4, 0.4) (their random order changes nothing: the three commute); no clipping
    (`hu_geometry`, `pca_lighting`, `hu_color_jitter`). val: scale and centre crop only; test: the RGB of the Hu
    test input (depth untouched).
    A different `size` scales the 240 with size / (228, 304). Options: max_angle (deg; 0 = no rotation),
    depth_order (scipy spline order of the depth's rotation; 2 as theirs, 0 = nearest, no invented depths),
    depth_size (default half the crop, rounded up), depth_resample (nearest: their Pillow's default; bicubic:
    Pillow >= 7's), lighting (std), jitter (range), depth_8bit (train only: the depth held as their 8-bit PNG's
    levels of 10/255 m, so the rotation rounds and clamps as on their uint8 arrays: with their 8-bit files, their
    exact values; validation keeps the source's depth, which it is measured against)."""

    name = "hu"
    default_size = (228, 304)
    options = {"max_angle": 5.0, "depth_order": 2, "depth_size": None, "depth_resample": "nearest",
               "lighting": 0.1, "jitter": 0.4, "depth_8bit": False}

    def __init__(self, mode="train", size=None, **options):
        super().__init__(mode, size, **options)
        if self.config["depth_resample"] not in ("nearest", "bicubic"):
            raise ConfigError(f"hu augmentation: depth_resample={self.config['depth_resample']!r} is not nearest "
                              "or bicubic.")
        if self.config["depth_order"] not in (0, 1, 2, 3, 4, 5) or isinstance(self.config["depth_order"], bool):
            raise ConfigError(f"hu augmentation: depth_order={self.config['depth_order']!r} is not a spline order "
                              "0..5.")
        if not isinstance(self.config["depth_8bit"], bool):
            raise ConfigError(f"hu augmentation: depth_8bit={self.config['depth_8bit']!r} is not true or false.")
        for key in ("max_angle", "lighting", "jitter"):
            value = self.config[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"hu augmentation: {key}={value!r} must be a number >= 0.")
        self.depth_size = (_pair_size(self.config["depth_size"], "depth_size")
                           or (-(-self.size[0] // 2), -(-self.size[1] // 2)))

    def output_shapes(self):
        return self.size, {"train": self.depth_size, "val": self.depth_size, "test": None}[self.mode]

    def _geometry(self, rgb, depth, flip, angle):
        depth_size = self.depth_size
        rotate = angle is not None
        depth_8bit = self.config["depth_8bit"] and self.mode == "train"
        scale = int(round(240 * self.size[0] / 228))  # Hu's Scale(240) at this size

        def run(rgb, depth, flip, angle):
            return hu_geometry(rgb, depth, bool(flip), float(angle) if rotate else None, scale, self.size,
                               depth_size, self.config["depth_order"], self.config["depth_resample"], depth_8bit)

        rgb_out, depth_out, zoom = tf.numpy_function(
            run, [rgb, depth, flip, angle if rotate else 0.0], [tf.float32, tf.float32, tf.float32],
            stateful=False, name="hu_geometry")
        rgb_out.set_shape((*self.size, 3))
        depth_out.set_shape((*depth_size, 1))
        zoom.set_shape(())
        return rgb_out, depth_out, zoom

    def _train(self, rgb, depth, seed):
        seed_flip, seed_angle, seed_light, seed_jitter = _seeds(seed, 4)
        flip = _uniform(seed_flip, 0.0, 1.0) < 0.5
        max_angle = float(self.config["max_angle"])
        angle = _uniform(seed_angle, -max_angle, max_angle) if max_angle else None
        rgb, depth, zoom = self._geometry(rgb, depth, flip, angle)
        alpha = tf.random.stateless_normal([3], seed_light, stddev=float(self.config["lighting"]))
        rgb = pca_lighting(rgb, alpha)
        jitter = float(self.config["jitter"])
        return hu_color_jitter(rgb, _uniform(seed_jitter, -jitter, jitter, shape=[3])), depth, zoom

    def _val(self, rgb, depth, seed):
        return self._geometry(rgb, depth, tf.constant(False), None)

    def _test(self, rgb, depth, seed):
        rgb_out, _, zoom = self._geometry(rgb, depth, tf.constant(False), None)
        return rgb_out, depth, zoom


RECIPES = {
    cls.name: cls
    for cls in (NoAugmentation, HQMDAugmentation, BTSAugmentation, FCNAugmentation, ResNetTransposedAugmentation,
                DenseDepthAugmentation, HuAugmentation)
}


def get_recipe(name, mode="train", size=None, **options):
    """A Recipe by name: none, hqmd, bts (dataset=nyu|kitti; aliases bts_nyu, bts_kitti), fcn,
    resnet_transposed, densedepth, hu. `name` may carry options as 'bts?dataset=kitti'."""
    if isinstance(name, Recipe):
        return name
    text, _, query = str(name or "none").partition("?")
    for item in filter(None, query.split("&")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"Bad option {item!r} in augmentation {name!r}: expected KEY=VALUE.")
        options.setdefault(key, _parse_value(value))
    key = text.strip().lower().replace("-", "_")
    if key in ("bts_nyu", "bts_kitti"):
        options.setdefault("dataset", key.split("_")[1])
        key = "bts"
    if key not in RECIPES:
        raise ConfigError(f"Unknown augmentation recipe {name!r}; known: {', '.join(sorted(RECIPES))} "
                          "(bts_nyu, bts_kitti: bts with its dataset).")
    return RECIPES[key](mode=mode, size=size, **options)


def _parse_value(text):
    if "," in text:
        return tuple(_parse_value(part) for part in text.split(","))
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
