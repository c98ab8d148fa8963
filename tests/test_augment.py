"""Augmentation recipes: geometric properties against NumPy references, recipe constants, modes."""

import os
import numpy as np
import pytest
import tensorflow as tf

from hqdepth.data import augment
from hqdepth.data.augment import get_recipe
from hqdepth.errors import ConfigError
from hqdepth.resample import resize_bilinear_tf1


@pytest.fixture
def rng():
    """A fresh seed each run (printed on failure; HQDEPTH_TEST_SEED=N reproduces it)."""
    seed = int(os.environ.get("HQDEPTH_TEST_SEED", np.random.SeedSequence().entropy % (2**32)))
    print("numpy seed", seed)
    return np.random.default_rng(seed)


def coded_depth(height, width):
    """Depth whose value names its pixel: 1 + row * 1000 + col (so any output value can be traced)."""
    rows, cols = np.mgrid[0:height, 0:width]
    return (1.0 + rows * 1000 + cols).astype(np.float32)[:, :, None]


def decode(values):
    values = np.asarray(values, np.int64) - 1
    return values // 1000, values % 1000


def test_flip_twice_is_identity(rng):
    rgb = rng.uniform(0, 255, (7, 9, 3)).astype(np.float32)
    depth = rng.uniform(0, 10, (7, 9, 1)).astype(np.float32)
    once = augment.flip_pair(rgb, depth)
    assert np.array_equal(once[0].numpy(), rgb[:, ::-1]) and np.array_equal(once[1].numpy(), depth[:, ::-1])
    twice = augment.flip_pair(*once)
    assert np.array_equal(twice[0].numpy(), rgb) and np.array_equal(twice[1].numpy(), depth)


def test_nearest_rotation_adds_no_new_depth_values(rng):
    depth = rng.choice(np.array([0.0, 1.25, 2.5, 3.75, 7.0], np.float32), size=(40, 50, 1))
    rgb = rng.uniform(0, 255, (40, 50, 3)).astype(np.float32)
    for angle_deg in rng.uniform(-10, 10, 4):
        out_rgb, out_depth = augment.rotate_pair(rgb, depth, np.deg2rad(angle_deg))
        assert out_depth.shape == depth.shape and out_rgb.shape == rgb.shape
        assert set(np.unique(out_depth.numpy())) <= set(np.unique(depth)) | {0.0}
    # the corners come from outside the image: depth 0 (invalid), RGB 0
    rgb_ones, depth_ones = augment.rotate_pair(np.full((40, 50, 3), 9.0, np.float32), np.ones((40, 50, 1), np.float32), 0.2)
    assert depth_ones[0, 0, 0] == 0 and depth_ones[20, 25, 0] == 1 and rgb_ones[0, 0, 0] == 0


def test_rotation_geometry_matches_numpy():
    depth = coded_depth(9, 9)
    rgb = np.repeat(depth, 3, axis=2)
    rgb_0, depth_0 = augment.rotate_pair(rgb, depth, 0.0)
    assert np.array_equal(depth_0.numpy(), depth) and np.allclose(rgb_0.numpy(), rgb)
    rgb_90, depth_90 = augment.rotate_pair(rgb, depth, np.pi / 2)  # counter-clockwise about the centre
    assert np.array_equal(depth_90.numpy()[:, :, 0], np.rot90(depth[:, :, 0]))
    assert np.allclose(rgb_90.numpy()[:, :, 1], np.rot90(rgb[:, :, 1]), atol=1e-2)


def test_scale_augmentation_depth_times_s_equals_source_at_mapped_pixels(rng):
    source = rng.uniform(0.5, 10.0, (48, 64, 1)).astype(np.float32)
    rgb = rng.uniform(0, 255, (48, 64, 3)).astype(np.float32)
    for s in (1.0, float(rng.uniform(1.0, 1.5)), 1.49):
        out_rgb, out_depth = augment.scale_pair(rgb, source, s, (30, 40))
        height, width = int(np.floor(30 * np.float32(s))), int(np.floor(40 * np.float32(s)))
        assert out_depth.shape == (height, width, 1) and out_rgb.shape == (height, width, 3)
        # nearest with half-pixel centres, in float32 as TF's kernel computes it: floor((i + 0.5) * (in / out))
        rows = np.minimum(np.floor((np.arange(height, dtype=np.float32) + np.float32(0.5)) * np.float32(48 / height)).astype(int), 47)
        cols = np.minimum(np.floor((np.arange(width, dtype=np.float32) + np.float32(0.5)) * np.float32(64 / width)).astype(int), 63)
        assert np.allclose(out_depth.numpy() * np.float32(s), source[rows][:, cols], rtol=1e-6, atol=0)


def test_colour_ops_leave_depth_alone(rng):
    rgb = rng.uniform(0, 255, (12, 16, 3)).astype(np.float32)
    depth = rng.uniform(0, 10, (12, 16, 1)).astype(np.float32)
    depth[0, 0] = 0
    seed = tf.constant([3, int(rng.integers(1 << 30))], tf.int64)
    for op in (
        augment.color_hqmd,
        lambda r, d, s: augment.color_bts(r, d, s, "nyu", p=1.0),
        lambda r, d, s: augment.gaussian_noise(r, d, s, 5.0),
        lambda r, d, s: augment.channel_swap(r, d, s, p=1.0),
    ):
        out_rgb, out_depth = op(rgb, depth, seed)
        assert np.array_equal(np.asarray(out_depth), depth)
        assert out_rgb.shape == rgb.shape and float(tf.reduce_min(out_rgb)) >= 0 and float(tf.reduce_max(out_rgb)) <= 255


def test_hqmd_colour_ranges():
    grey = np.full((4, 4, 3), 128.0, np.float32)
    v = 128.0 / 255.0
    low, high = v**1.2 * 0.8 * 0.8 * 255, v**0.8 * 1.25 * 1.2 * 255
    outs = np.stack([augment.color_hqmd(grey, None, [i, 7])[0].numpy()[0, 0] for i in range(60)])
    assert outs.min() >= low - 1e-3 and outs.max() <= min(high, 255) + 1e-3
    assert outs.std(axis=0).min() > 5  # it does vary, per channel
    assert not np.allclose(outs[:, 0], outs[:, 1])  # per-channel factors differ


def test_toolbox_gamma_acts_on_the_uint8_values(rng):
    """The Toolbox's ColorAug raises uint8 values to the gamma (then brightness, colour, clip at 255); BTS's
    augment_image raises RGB/255. Fixed factors, float64 references of both."""
    rgb = rng.integers(0, 256, (6, 7, 3)).astype(np.float32)
    gamma = 1 + float(rng.choice([-1, 1]) * rng.uniform(0.04, 0.1))  # away from 1, where the two forms agree
    brightness, colour = float(rng.uniform(0.75, 1.25)), float(rng.uniform(0.9, 1.1))
    x = rgb.astype(np.float64)
    want = {True: np.clip(x**gamma * brightness * colour, 0, 255),
            False: np.clip((x / 255) ** gamma * brightness * colour, 0, 1) * 255}
    for on_uint8, expected in want.items():
        got, _ = augment.color_jitter(rgb, None, [1, 2], (gamma, gamma), (brightness, brightness), (colour, colour),
                                      gamma_on_uint8=on_uint8)
        np.testing.assert_allclose(got.numpy(), expected, rtol=2e-5, atol=2e-3)
    assert not np.allclose(want[True], want[False], atol=1.0)


def test_bts_rotate_p_rotates_that_share_of_the_samples():
    rgb = np.full((480, 640, 3), 100.0, np.float32)
    depth = np.ones((480, 640, 1), np.float32)
    def rotated(rotate_p, count):
        # at 10-20 degrees every crop of the rotated 427x565 box shows its zero-filled corners; unrotated, none
        recipe = get_recipe("bts", "train", rotate_p=rotate_p, max_angle=20.0)
        return [float(tf.reduce_min(recipe(rgb, depth, [i, 5])[1])) == 0.0 for i in range(count)]

    assert sum(rotated(0.0, 10)) == 0
    assert 12 <= sum(rotated(0.5, 40)) <= 28
    for bad in (1.5, -0.1, "half"):
        with pytest.raises(ConfigError, match=f"rotate_p={bad!r}"):
            get_recipe("bts", "train", rotate_p=bad)


def test_channel_swap_is_a_permutation(rng):
    rgb = np.stack([np.full((3, 3), v, np.float32) for v in (10.0, 20.0, 30.0)], axis=2)
    seen = set()
    for i in range(40):
        out, _ = augment.channel_swap(rgb, None, [i, 1], p=1.0)
        order = tuple(int(x) for x in out.numpy()[0, 0])
        assert sorted(order) == [10, 20, 30]
        seen.add(order)
    assert len(seen) == 6


def test_random_crop_takes_the_same_window(rng):
    depth = coded_depth(30, 40)
    rgb = np.repeat(depth, 3, axis=2)
    out_rgb, out_depth = augment.random_crop_pair(rgb, depth, (11, 13), [5, int(rng.integers(1000))])
    rows, cols = decode(out_depth.numpy()[:, :, 0])
    top, left = rows[0, 0], cols[0, 0]
    assert np.array_equal(out_depth.numpy(), depth[top : top + 11, left : left + 13])
    assert np.array_equal(out_rgb.numpy(), rgb[top : top + 11, left : left + 13])


def test_hqmd_train_never_invents_depth_and_divides_by_s():
    rgb = np.random.default_rng(0).uniform(0, 255, (48, 64, 3)).astype(np.float32)
    depth = np.full((48, 64, 1), 2.0, np.float32)
    depth[:, :8] = 0.0  # a region without ground truth
    recipe = get_recipe("hqmd", "train", size=(29, 38))
    assert recipe.base_size == (30, 39)
    ratios = []
    for i in range(12):
        out_rgb, out_depth = recipe(rgb, depth, [i, 3])
        assert out_rgb.shape == (29, 38, 3) and out_depth.shape == (29, 38, 1)
        values = np.unique(out_depth.numpy())
        nonzero = values[values > 0]
        assert len(nonzero) == 1  # one value 2 / s, nothing interpolated
        s = 2.0 / nonzero[0]
        assert 1.0 - 1e-6 <= s < 1.5
        ratios.append(s)
    assert np.std(ratios) > 0.01
    a = recipe(rgb, depth, [1, 2])
    b = recipe(rgb, depth, [1, 2])
    c = recipe(rgb, depth, [1, 9])
    assert np.array_equal(a[0].numpy(), b[0].numpy()) and not np.array_equal(a[0].numpy(), c[0].numpy())


def test_hqmd_test_resizes_rgb_directly_and_keeps_ground_truth(rng):
    rgb = rng.uniform(0, 255, (480, 640, 3)).astype(np.float32)
    depth = rng.uniform(0, 10, (480, 640, 1)).astype(np.float32)
    out_rgb, out_depth, zoom = get_recipe("hqmd", "test").transform(rgb, depth)
    assert out_rgb.shape == (289, 385, 3)
    # HQMDE's TF1 resize_images (no half-pixel centres) against the float64 NumPy reference (TensorFlow places the
    # samples in float32: up to 6e-5 px at 640, 0.03 at a 255-per-pixel edge); 0.33 px away from TF2's.
    np.testing.assert_allclose(out_rgb.numpy(), resize_bilinear_tf1(rgb, 289, 385), atol=0.03)
    assert np.abs(out_rgb.numpy() - tf.image.resize(rgb, (289, 385)).numpy()).max() > 10.0
    assert np.array_equal(out_depth.numpy(), depth)
    assert float(zoom) == pytest.approx(385 / 640)
    half_pixel = get_recipe("hqmd", "test", tf1_resize=False).transform(rgb, depth)[0]
    np.testing.assert_allclose(half_pixel.numpy(), tf.image.resize(rgb, (289, 385)).numpy(), atol=1e-4)
    val_rgb, val_depth = get_recipe("hqmd", "val")(rgb, depth, [0, 1])
    assert val_rgb.shape == (289, 385, 3) and val_depth.shape == (289, 385, 1)


def tf1_nearest_rows(n_in, n_out):
    """TF1 nearest resize without half-pixel centres: output i takes input floor(i * (n_in / n_out)), in float32
    as TensorFlow's legacy kernel computes it."""
    return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * np.float32(n_in / n_out)), n_in - 1).astype(int)


def crop_offset(picked, full):
    """The offset at which `picked` is a run of `full`, None if it is none."""
    return next((top for top in range(len(full) - len(picked) + 1)
                 if np.array_equal(picked, full[top:top + len(picked)])), None)


@pytest.mark.parametrize("tf1_resize", [True, False])
def test_hqmd_val_and_scale_resize_as_hqmde(rng, tf1_resize):
    """val: (480, 640) -> (300, 400) then HQMDE's random crop; train's scale step at s = 1.25 -> (375, 500). With
    tf1_resize (the default) every depth comes from input row floor(i * 480 / n) and column floor(j * 640 / m), and
    the RGB equals the NumPy TF1 bilinear reference; without, TF2's half-pixel centres pick other pixels."""
    rgb = rng.uniform(0, 255, (480, 640, 3)).astype(np.float32)
    depth = coded_depth(480, 640)
    val_rgb, val_depth = get_recipe("hqmd", "val", tf1_resize=tf1_resize)(rgb, depth, [int(rng.integers(99)), 1])
    rows, cols = decode(val_depth.numpy()[..., 0])
    top, left = crop_offset(rows[:, 0], tf1_nearest_rows(480, 300)), crop_offset(cols[0], tf1_nearest_rows(640, 400))
    assert (top is not None and left is not None) == tf1_resize
    if tf1_resize:
        reference = resize_bilinear_tf1(rgb, 300, 400)[top:top + 289, left:left + 385]
        np.testing.assert_allclose(val_rgb.numpy(), reference, atol=0.03)
    resize = augment.resize_pair_tf1 if tf1_resize else augment.resize_pair
    scaled_rgb, scaled_depth = augment.scale_pair(rgb, depth, 1.25, (300, 400), resize=resize)
    assert scaled_rgb.shape == (375, 500, 3)
    rows, cols = decode(np.round(scaled_depth.numpy()[..., 0] * 1.25))
    assert (crop_offset(rows[:, 0], tf1_nearest_rows(480, 375)) == 0 == crop_offset(cols[0], tf1_nearest_rows(640, 500))
            ) == tf1_resize


def test_hqmd_tf1_resize_must_be_a_boolean():
    with pytest.raises(ConfigError, match="tf1_resize='no'"):
        get_recipe("hqmd", tf1_resize="no")


def test_bts_nyu_train_uses_the_registration_box():
    depth = coded_depth(480, 640)
    rgb = np.full((480, 640, 3), 100.0, np.float32)
    recipe = get_recipe("bts", "train", max_angle=0.0)
    for i in range(6):
        out_rgb, out_depth = recipe(rgb, depth, [i, 0])
        assert out_depth.shape == (416, 544, 1)
        rows, cols = decode(out_depth.numpy())
        assert rows.min() >= 45 and rows.max() <= 471 and cols.min() >= 43 and cols.max() <= 607
    small = get_recipe("bts", "train", size=(104, 136))  # quarter size: resize by 1/4 first
    assert small(rgb, depth, [0, 0])[0].shape == (104, 136, 3)


def test_bts_kitti_test_is_kb_crop_of_rgb_only():
    rgb = np.random.default_rng(3).uniform(0, 255, (375, 1242, 3)).astype(np.float32)
    depth = np.random.default_rng(4).uniform(0, 80, (375, 1242, 1)).astype(np.float32)
    out_rgb, out_depth = get_recipe("bts_kitti", "test")(rgb, depth)
    assert np.array_equal(out_rgb.numpy(), rgb[23:, 13 : 13 + 1216])
    assert np.array_equal(out_depth.numpy(), depth)
    train_rgb, train_depth = get_recipe("bts?dataset=kitti", "train")(rgb, depth, [1, 1])
    assert train_rgb.shape == (352, 704, 3) and train_depth.shape == (352, 704, 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="smaller than the crop"):
        get_recipe("bts_kitti", "train")(rgb[:300, :600], depth[:300, :600], [0, 0])


@pytest.mark.parametrize("dataset,size,frame", [("kitti", (64, 128), (375, 1242)), ("nyu", (64, 96), (480, 640)),
                                                ("nyu", (208, 272), (480, 640))])
def test_bts_whole_frames_at_a_reduced_size_stay_multiples_of_32(dataset, size, frame):
    """At a reduced `size` the whole validation/test frames are scaled by size / published crop and each side
    rounded to the nearest multiple of 32 (BTS takes nothing else): 74x113 from NYU at 64x96 would stop the first
    validation. The depth follows the RGB in validation; the test keeps the full-resolution depth."""
    from hqdepth.data.augment import BTS_FRAME_MULTIPLE
    from hqdepth.models.bts import SIZE_MULTIPLE

    assert BTS_FRAME_MULTIPLE == SIZE_MULTIPLE
    rng = np.random.default_rng(6)
    rgb = rng.uniform(0, 255, (*frame, 3)).astype(np.float32)
    depth = rng.uniform(1, 10, (*frame, 1)).astype(np.float32)
    whole = (352, 1216) if dataset == "kitti" else frame  # the KB crop, or the NYU frame
    published = (352, 704) if dataset == "kitti" else (416, 544)
    want = tuple(max(int(np.floor(side * s / p / 32 + 0.5)) * 32, s) for side, s, p in zip(whole, size, published))
    val_rgb, val_depth = get_recipe("bts", "val", size=size, dataset=dataset)(rgb, depth)
    assert val_rgb.shape[:2] == val_depth.shape[:2] == want
    test_rgb, test_depth = get_recipe("bts", "test", size=size, dataset=dataset)(rgb, depth)
    assert test_rgb.shape[:2] == want and test_depth.shape == depth.shape


def test_other_recipes():
    rng = np.random.default_rng(5)
    rgb = np.full((20, 24, 3), 128.0, np.float32)
    depth = rng.uniform(0, 10, (20, 24, 1)).astype(np.float32)
    out_rgb, out_depth = get_recipe("fcn", "train", noise_std=10.0)(rgb, depth, [0, 4])
    noise = out_rgb.numpy() - 128.0
    assert 8.0 < noise.std() < 12.0 and abs(noise.mean()) < 2.0
    assert np.array_equal(out_depth.numpy(), depth) or np.array_equal(out_depth.numpy(), depth[:, ::-1])
    r_rgb, r_depth = get_recipe("resnet_transposed", "train")(rgb, depth, [0, 0])
    assert r_rgb.shape == (224, 224, 3) and r_depth.shape == (224, 224, 1)
    assert set(np.unique(r_depth.numpy())) <= set(np.unique(depth))
    d_rgb, d_depth = get_recipe("densedepth", "train", depth_size=(10, 12))(rgb, depth, [0, 1])
    assert d_rgb.shape == (20, 24, 3) and d_depth.shape == (10, 12, 1)
    n_rgb, n_depth = get_recipe("none", "train")(rgb, depth)
    assert np.array_equal(n_rgb.numpy(), rgb) and np.array_equal(n_depth.numpy(), depth)
    with pytest.raises(ConfigError, match="Unknown augmentation"):
        get_recipe("nope")
    with pytest.raises(ConfigError, match="Unknown option"):
        get_recipe("hqmd", noise_std=1)
    with pytest.raises(ConfigError, match="mode"):
        get_recipe("hqmd", "training")


def test_recipe_runs_inside_tf_data_graph():
    rgb = np.random.default_rng(6).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    depth = np.random.default_rng(7).uniform(0, 10, (60, 80, 1)).astype(np.float32)
    recipe = get_recipe("hqmd", "train", size=(29, 38))
    dataset = tf.data.Dataset.from_tensors((rgb, depth)).repeat(2).enumerate()
    dataset = dataset.map(lambda i, x: recipe(x[0], x[1], tf.stack([tf.constant(1, tf.int64), i])))
    outputs = list(dataset.as_numpy_iterator())
    eager = recipe(rgb, depth, [1, 1])
    assert np.allclose(outputs[1][0], eager[0].numpy(), atol=1e-4) and np.array_equal(outputs[1][1], eager[1].numpy())


# ----------------------------------------------------------------------------------------------
# hu: Hu et al. / SARPN's training pipeline (MRPAN)


def _hu(mode="train", **options):
    return get_recipe("hu", mode, **options)


def test_hu_geometry_takes_each_depth_from_the_pixel_their_loader_does(rng):
    """No rotation: Scale(240) (PIL nearest = 2r + 1 from 480x640), flip, centre crop rows 6:234 cols 8:312,
    depth to 114x152 (PIL nearest = 2i + 1): traced by coded depth values, flipped or not."""
    rgb = rng.integers(0, 256, (480, 640, 3)).astype(np.float32)
    depth = coded_depth(480, 640)
    rows = 2 * (6 + 2 * np.arange(114) + 1) + 1
    straight = 2 * (8 + 2 * np.arange(152) + 1) + 1
    mirrored = 2 * (319 - (8 + 2 * np.arange(152) + 1)) + 1
    seen = set()
    for counter in range(8):
        out_rgb, out_depth = _hu(max_angle=0, lighting=0, jitter=0)(rgb, depth, [3, counter])
        assert out_rgb.shape == (228, 304, 3) and out_depth.shape == (114, 152, 1)
        got_rows, got_cols = decode(out_depth.numpy()[..., 0])
        assert np.array_equal(got_rows, np.broadcast_to(rows[:, None], (114, 152)))
        flipped = np.array_equal(got_cols[0], mirrored)
        assert flipped or np.array_equal(got_cols[0], straight)
        seen.add(flipped)
        # The RGB went through the same steps: Pillow's bilinear 240x320, mirrored with the depth, centre crop.
        scaled = augment.hu_geometry(rgb, depth, flipped, None, 240, (228, 304), (228, 304))[0]
        assert np.array_equal(out_rgb.numpy(), scaled)
    assert seen == {True, False}
    # val: the same without the flip, and its RGB is the Hu test input the evaluator builds.
    from hqdepth.protocols import hu_rgb

    val_rgb, val_depth = _hu("val")(rgb, depth, [0, 0])
    assert np.array_equal(val_rgb.numpy(), hu_rgb(rgb.astype(np.uint8)).astype(np.float32))
    assert np.array_equal(decode(val_depth.numpy()[..., 0])[1][0], straight)
    assert _hu("val").transform(rgb, depth, [0, 0])[2].numpy() == 0.5  # the Scale's factor (a focal scales by it)
    test_rgb, test_depth = _hu("test")(rgb, depth, [0, 0])
    assert np.array_equal(test_rgb.numpy(), val_rgb.numpy()) and np.array_equal(test_depth.numpy(), depth)


def _fit_rotation(depth_out, top, left, width=None):
    """Least-squares angle (deg) and centre of the map output pixel -> source pixel (scaled coordinates); with
    `width`, of the map to the mirrored source (a flip before the rotation)."""
    rows, cols = decode(depth_out)
    cols = cols if width is None else width - 1 - cols
    valid = depth_out > 0
    out_r, out_c = np.nonzero(valid)
    out_r, out_c = out_r + top, out_c + left  # back in the 240x320 frame the rotation ran in
    src_r, src_c = rows[valid], cols[valid]
    # src = R (out - centre) + centre: a 2-D similarity fit  [src_c, src_r] = [[a, -b], [b, a]] [out_c, out_r] + t.
    ones, zeros = np.ones_like(out_c), np.zeros_like(out_c)
    design = np.concatenate([np.stack([out_c, -out_r, ones, zeros], 1), np.stack([out_r, out_c, zeros, ones], 1)])
    (a, b, tx, ty), *_ = np.linalg.lstsq(design.astype(np.float64), np.concatenate([src_c, src_r]).astype(np.float64),
                                         rcond=None)
    angle = np.degrees(np.arctan2(b, a))
    # The fixed point of the map is the centre of the rotation.
    centre = np.linalg.solve(np.array([[1 - a, b], [-b, 1 - a]]), np.array([tx, ty]))
    return angle, centre, np.hypot(a, b)


def test_hu_rotation_turns_about_the_centre_by_a_uniform_angle_up_to_five_degrees():
    from scipy import ndimage

    """Coded depth on the 240x320 frame, rotated with order 0 (depth_order=0 traces each value): the map from
    output to source pixels is a rotation about the frame's centre (159.5, 119.5) by |angle| <= 5 degrees,
    with zero (invalid) depth brought in at the corners; over many samples the angles spread over (-5, 5)."""
    rgb = np.full((240, 320, 3), 200.0, np.float32)
    depth = coded_depth(240, 320)
    recipe = _hu(depth_order=0, depth_size=(228, 304), lighting=0, jitter=0)
    angles = []
    for counter in range(24):
        out_rgb, out_depth = recipe(rgb, depth, [11, counter])
        values = out_depth.numpy()[..., 0]
        assert set(np.unique(values)) <= set(np.unique(depth)) | {0.0}
        # Flipped before the rotation (p 0.5): the map to the mirrored source is the rotation then.
        angle, centre, scale = min((_fit_rotation(values, 6, 8, width) for width in (None, 320)),
                                   key=lambda fit: abs(fit[2] - 1))
        assert abs(scale - 1) < 2e-3 and np.allclose(centre, (159.5, 119.5), atol=0.6), (angle, centre, scale)
        assert abs(angle) <= 5.05
        angles.append(angle)
        # The RGB turned by the same angle: its zero-filled corners are the depth's (to the spline's edge band).
        rgb_zero, depth_zero = out_rgb.numpy()[..., 0] == 0, values == 0
        assert np.mean(rgb_zero != depth_zero) < 0.01
        # A constant image stays constant inside (the order-2 spline reproduces it there).
        inside = ndimage.binary_erosion(~depth_zero, iterations=3)
        assert np.all(out_rgb.numpy()[inside] == 200.0)
    angles = np.abs(angles)
    assert angles.max() > 3.5 and angles.min() < 1.5


def test_hu_depth_8bit_gives_their_values_for_8bit_depth(rng):
    """Their depth is the 8-bit PNG (v / 255 * 10 m) rotated as uint8 by scipy: with depth_8bit our float pipeline
    returns exactly those values (the official call on the official dtype is the reference); without, the spline's
    values, within half a level of them where their uint8 did not clamp."""
    from PIL import Image
    from scipy import ndimage

    levels = rng.integers(0, 256, (240, 320)).astype(np.uint8)
    levels[40:200, 60:260] = rng.integers(200, 256, (160, 200))  # deep values beside the 10 m end of the range
    depth = (levels.astype(np.float32) * np.float32(10.0 / 255.0))[..., None]
    rgb = np.zeros((240, 320, 3), np.float32)
    angle = rng.uniform(-5, 5)
    theirs = ndimage.rotate(levels, angle, reshape=False, order=2)[6:234, 8:312] * np.float32(10.0 / 255.0)
    exact = augment.hu_geometry(rgb, depth, False, angle, 240, (228, 304), (228, 304), depth_8bit=True)[1]
    assert np.array_equal(exact[..., 0], theirs)
    # Their last resize, the Pillow >= 7 way (bicubic on the 8-bit image), exactly too.
    half = augment.hu_geometry(rgb, depth, False, angle, 240, (228, 304), (114, 152), depth_resample="bicubic",
                               depth_8bit=True)[1]
    crop_levels = ndimage.rotate(levels, angle, reshape=False, order=2)[6:234, 8:312]
    want = np.asarray(Image.fromarray(crop_levels).resize((152, 114), Image.BICUBIC)) * np.float32(10.0 / 255.0)
    assert np.array_equal(half[..., 0], want)
    # The RGB likewise: their calls (Pillow's bilinear Scale, mirror, scipy on the uint8 array, crop) on a 480x640 frame.
    frame = rng.integers(0, 256, (480, 640, 3)).astype(np.uint8)
    scaled = np.asarray(Image.fromarray(frame).resize((320, 240), Image.BILINEAR))[:, ::-1]
    their_rgb = ndimage.rotate(scaled, angle, reshape=False, order=2)[6:234, 8:312]
    frame_depth = np.repeat(np.repeat(depth, 2, 0), 2, 1)
    ours = augment.hu_geometry(frame.astype(np.float32), frame_depth, True, angle, 240, (228, 304), (114, 152))
    assert np.array_equal(ours[0], their_rgb.astype(np.float32))
    smooth = augment.hu_geometry(rgb, depth, False, angle, 240, (228, 304), (228, 304))[1][..., 0]
    # Off their grid (within half a level where their uint8 did not clamp the spline's overshoot at 0 or 255).
    inside = (crop_levels > 0) & (crop_levels < 255)
    assert 0.25 * 10 / 255 < np.abs(smooth - theirs)[inside].max() <= 0.5 * 10 / 255 + 1e-4
    # In the recipe: training depth on their grid; validation keeps the source's depth (what it is measured on).
    fine = rng.uniform(0.5, 9.5, (240, 320, 1)).astype(np.float32)
    train_depth = _hu(depth_8bit=True, max_angle=0)(rgb, fine, [0, 0])[1].numpy()
    assert np.allclose(train_depth / (10 / 255), np.round(train_depth / (10 / 255)), atol=1e-3)
    val_depth = _hu("val", depth_8bit=True)(rgb, fine, [0, 0])[1].numpy()
    assert np.array_equal(val_depth, _hu("val")(rgb, fine, [0, 0])[1].numpy())
    assert np.isin(val_depth, fine).all()
    with pytest.raises(ConfigError, match="depth_8bit"):
        _hu(depth_8bit="yes")


def np_hu_colour(image, light_alpha, alphas, order):
    """Float64 reference from Hu et al.'s nyu_transform.py on image/255: Lighting, then ColorJitter's
    transforms in `order` (0 brightness, 1 contrast, 2 saturation), each img.lerp(target, alpha)."""
    eigval = np.array([0.2175, 0.0188, 0.0045])
    eigvec = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])
    img = np.asarray(image, np.float64).transpose(2, 0, 1) / 255.0  # C, H, W as torch
    rgb = (eigvec * np.asarray(light_alpha)[None, :] * eigval[None, :]).sum(1)
    img = img + rgb[:, None, None]

    def gray(x):
        g = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
        return np.stack([g, g, g])

    for index in order:
        if index == 0:
            target = np.zeros_like(img)
        elif index == 1:
            target = np.full_like(img, gray(img).mean())
        else:
            target = gray(img)
        img = img + alphas[index] * (target - img)
    return img.transpose(1, 2, 0) * 255.0


def test_hu_colour_matches_their_lighting_and_jitter_in_every_order(rng):
    """Their ColorJitter applies brightness, contrast and saturation in a random order; ours in one. The float64
    reference in each of the six orders agrees with ours: the three maps commute."""
    image = rng.uniform(0, 255, (9, 13, 3))
    light = rng.normal(0, 0.1, 3)
    alphas = rng.uniform(0.05, 0.4, 3) * rng.choice([-1.0, 1.0], 3)
    lit = augment.pca_lighting(tf.constant(image, tf.float32), tf.constant(light, tf.float32))
    got = augment.hu_color_jitter(lit, tf.constant(alphas, tf.float32)).numpy()
    for order in ([0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]):
        np.testing.assert_allclose(got, np_hu_colour(image, light, alphas, order), atol=2e-3, rtol=1e-5)
    # Each term acts: dropping any one alpha moves the result.
    for index in range(3):
        fewer = np.where(np.arange(3) == index, 0.0, alphas)
        assert np.abs(np_hu_colour(image, light, fewer, [0, 1, 2]) - got).max() > 0.05


def test_hu_draws_lighting_from_a_normal_of_std_0_1():
    """Without rotation and jitter, each sample's RGB is the geometric RGB plus one constant colour per sample:
    eigvec @ (alpha * eigval) * 255. Solving for alpha over 200 samples gives std 0.1 and mean 0."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (240, 320, 3)).astype(np.float32)
    depth = np.ones((240, 320, 1), np.float32)
    recipe = _hu(max_angle=0, jitter=0)
    base = augment.hu_geometry(rgb, depth, False, None, 240, (228, 304), (114, 152))[0]
    eigvec = np.array(augment.HU_PCA_EIGVEC)
    alphas = []
    for counter in range(200):
        out = recipe(rgb, depth, [5, counter])[0].numpy()
        offset = out - base if np.allclose(out - base, (out - base)[0, 0], atol=1e-3) else out - base[:, ::-1]
        assert np.allclose(offset, offset[0, 0], atol=1e-3)
        alphas.append(np.linalg.solve(eigvec, offset[0, 0] / 255.0) / np.array(augment.HU_PCA_EIGVAL))
    alphas = np.array(alphas)
    assert np.all(np.abs(alphas.std(0) - 0.1) < 0.02) and np.all(np.abs(alphas.mean(0)) < 0.025)


def test_hu_options_are_checked_and_the_recipe_runs_in_tf_data():
    from hqdepth.errors import DataError

    with pytest.raises(DataError, match="640x480 image scaled to 320x240.*smaller than the centre crop 228x304"):
        augment.hu_geometry(np.zeros((640, 480, 3)), np.zeros((640, 480, 1)), False, None, 240, (228, 304),
                            (114, 152))
    portrait = tf.data.Dataset.from_tensors((np.zeros((640, 480, 3), np.float32), np.zeros((640, 480, 1), np.float32)))
    with pytest.raises(tf.errors.OpError, match="640x480 image scaled to 320x240.*smaller than the centre crop"):
        list(portrait.map(lambda rgb, depth: _hu("val")(rgb, depth, [0, 0])))
    with pytest.raises(DataError, match="depth map is 10x12, the image 480x640"):
        augment.hu_geometry(np.zeros((480, 640, 3)), np.zeros((10, 12, 1)), False, None, 240, (228, 304),
                            (114, 152))
    with pytest.raises(ConfigError, match="depth_resample"):
        _hu(depth_resample="linear")
    with pytest.raises(ConfigError, match="depth_order"):
        _hu(depth_order=7)
    with pytest.raises(ConfigError, match="jitter"):
        _hu(jitter=-1)
    assert _hu(size=(57, 76)).depth_size == (29, 38) and _hu().output_shapes() == ((228, 304), (114, 152))
    rgb = np.random.default_rng(6).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    depth = np.random.default_rng(7).uniform(0.5, 10, (60, 80, 1)).astype(np.float32)
    recipe = _hu(size=(57, 76), depth_resample="bicubic")
    dataset = tf.data.Dataset.from_tensors((rgb, depth)).repeat(2).enumerate()
    dataset = dataset.map(lambda i, x: recipe(x[0], x[1], tf.stack([tf.constant(1, tf.int64), i])))
    assert dataset.element_spec[0].shape == (57, 76, 3) and dataset.element_spec[1].shape == (29, 38, 1)
    outputs = list(dataset.as_numpy_iterator())
    eager = recipe(rgb, depth, [1, 1])
    np.testing.assert_allclose(outputs[1][0], eager[0].numpy(), atol=1e-4)
    assert np.array_equal(outputs[1][1], eager[1].numpy())
    assert not np.array_equal(outputs[0][0], outputs[1][0])


def test_hu_on_real_nyu_frames_gives_the_evaluators_input_and_pillows_depth(realdata):
    """Real NYU test frames (Hu et al.'s own files): val RGB = the Hu test input the evaluator builds; val depth =
    Pillow's NEAREST resize (Pillow itself, not our NumPy copy) of the evaluator's 228x304 ground truth; the
    random train samples keep the depth finite, >= 0 and about as deep as the frame."""
    from PIL import Image

    from hqdepth.data import open_source
    from hqdepth.protocols import hu_ground_truth, hu_rgb

    source = open_source(f"csv:{realdata / 'nyu_test10' / 'nyu2_mini_test.csv'}?scale=1000")
    for index in (0, 5):
        sample = source[index]
        rgb, depth = sample.rgb.astype(np.float32), sample.depth.astype(np.float32)
        val_rgb, val_depth = _hu("val")(rgb, depth, [0, 0])
        assert np.array_equal(val_rgb.numpy(), hu_rgb(sample.rgb).astype(np.float32))
        crop = hu_ground_truth(sample.depth[..., 0].astype(np.float32))
        want = np.asarray(Image.fromarray(crop).resize((152, 114), Image.NEAREST))
        assert np.array_equal(val_depth.numpy()[..., 0], want)
        for counter in range(3):
            train_rgb, train_depth = _hu()(rgb, depth, [7, counter])
            values = train_depth.numpy()
            assert np.isfinite(values).all() and values.min() >= 0.0 and np.isfinite(train_rgb.numpy()).all()
            assert abs(np.median(values[values > 0]) / np.median(want) - 1) < 0.1
