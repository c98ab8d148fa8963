"""Synthetic scenes: determinism, split seeds, exact z-depth against independent float64 geometry,
intrinsics scaling, shading fall-off and shadows, the `synthetic` SPEC."""

import math

import numpy as np
import pytest

from hqdepth.data import open_source
from hqdepth.data.synthetic import (
    MAX_DEPTH,
    SPLIT_SEED_RANGE,
    Box,
    Material,
    Scene,
    Sphere,
    intrinsics,
    make_sample,
    max_z_depth,
    random_scene,
    render,
)
from hqdepth.errors import ConfigError

WHITE = Material("plain", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


# ------------------------------------------------------------------ independent float64 reference


def reference_rays(scene, height, width):
    """World ray directions (forward component 1), float64, built from rotation matrices:
    R = Ry(yaw) Rx(-pitch) Rz(roll) applied to camera-frame (x right, y up, z forward)."""

    def rx(a):
        return np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])

    def ry(a):
        return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])

    def rz(a):
        return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])

    rotation = ry(scene.yaw) @ rx(-scene.pitch) @ rz(scene.roll)
    fx, fy = 518.8579 * width / 640, 519.46961 * height / 480
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    camera = np.stack([(u - width / 2) / fx, -(v - height / 2) / fy, np.ones_like(u)], axis=-1)
    return camera @ rotation.T  # (H, W, 3)


def reference_depth(scene, height, width):
    """z-depth by brute force in float64: planes of the room, quadratic for spheres, slabs for boxes."""
    d = reference_rays(scene, height, width)
    o = np.asarray(scene.camera, dtype=np.float64)
    best = np.full((height, width), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis in range(3):
            for bound in (0.0, scene.room[axis]):
                t = (bound - o[axis]) / d[..., axis]
                best = np.where((t > 0) & (t < best), t, best)
        for obj in scene.objects:
            if isinstance(obj, Sphere):
                oc = o - np.asarray(obj.center)
                a = (d * d).sum(-1)
                b = 2 * (d @ oc)
                c = oc @ oc - obj.radius**2
                disc = b * b - 4 * a * c
                t = (-b - np.sqrt(np.where(disc > 0, disc, np.nan))) / (2 * a)
            else:
                cy, sy = math.cos(obj.yaw), math.sin(obj.yaw)
                to_local = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])  # inverse of the yaw rotation
                lo = to_local @ (o - np.asarray(obj.center))
                ld = d @ to_local.T
                t1 = (-np.asarray(obj.half) - lo) / ld
                t2 = (np.asarray(obj.half) - lo) / ld
                near = np.minimum(t1, t2).max(-1)
                far = np.maximum(t1, t2).min(-1)
                t = np.where(near <= far, near, np.nan)
            best = np.where((t > 0) & (t < best), t, best)
    return best


# ----------------------------------------------------------------------------------------- tests


def test_deterministic_per_seed_and_seeds_differ():
    a = make_sample("train", 7, size=(60, 80))
    b = make_sample("train", 7, size=(60, 80))
    c = make_sample("train", 8, size=(60, 80))
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.depth, b.depth)
    assert a.meta.keys() == b.meta.keys()
    for key in a.meta:
        if key in ("plane_normals", "plane_equations"):
            assert a.meta[key].keys() == b.meta[key].keys()
            assert all(np.array_equal(a.meta[key][k], b.meta[key][k]) for k in a.meta[key])
        else:
            np.testing.assert_array_equal(a.meta[key], b.meta[key])
    assert np.abs(a.depth - c.depth).mean() > 0.05
    assert random_scene(123) == random_scene(123)


def test_splits_use_disjoint_seed_ranges():
    seeds = {}
    for split in ("train", "val", "test"):
        source = open_source("synthetic:50,size=24x32", split=split)
        seeds[split] = {source.seed(i) for i in range(len(source))}
        assert len(seeds[split]) == 50
        # the whole admissible range of a split stays inside its own block of 2^30 seeds
        last = open_source(f"synthetic:1,seed={SPLIT_SEED_RANGE - 1}", split=split).seed(0)
        assert last // SPLIT_SEED_RANGE == source.seed(0) // SPLIT_SEED_RANGE
    assert not seeds["train"] & seeds["val"] and not seeds["train"] & seeds["test"] and not seeds["val"] & seeds["test"]
    first = [open_source("synthetic:1,size=24x32", split=split)[0].depth for split in ("train", "val", "test")]
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])
    with pytest.raises(ConfigError, match="2\\^30"):
        open_source(f"synthetic:10,seed={SPLIT_SEED_RANGE - 5}")


def test_facing_a_wall_gives_its_distance_exactly():
    # Camera at z = 1 looking along +z at the wall z = 6; the floor, ceiling and side walls are
    # outside the view in the centre: depth there is exactly 5 m (z-depth, not ray length).
    scene = Scene(room=(8.0, 6.0, 6.0), camera=(4.0, 3.0, 1.0))
    rgb, depth, ids = render(scene, (48, 64), return_ids=True)
    assert depth.shape == (48, 64, 1) and depth.dtype == np.float32 and rgb.dtype == np.uint8
    wall = ids == 5
    assert wall.mean() > 0.95  # wall 8 x 6 at 5 m fills the 64 x 48 view but for the edges
    np.testing.assert_allclose(depth[..., 0][wall], 5.0, rtol=0, atol=2e-6)
    # the ray length at the image corner is longer than the z-depth: check we return z
    corner_ray = reference_rays(scene, 48, 64)[0, 0]
    assert np.linalg.norm(corner_ray) > 1.2
    np.testing.assert_allclose(depth[..., 0], reference_depth(scene, 48, 64), rtol=1e-6)


def test_sphere_and_box_depth_match_closed_form():
    sphere = Sphere((1.6, 1.2, 4.0), 0.6, WHITE)
    box = Box((3.2, 0.5, 3.5), (0.4, 0.5, 0.3), yaw=math.radians(35), material=WHITE)
    front = Box((2.4, 0.35, 2.4), (0.3, 0.35, 0.2), yaw=0.0, material=WHITE)
    scene = Scene(room=(5.0, 3.0, 7.0), camera=(2.3, 1.4, 0.6), yaw=math.radians(4), pitch=math.radians(-12), roll=math.radians(2), light=(2.5, 2.7, 3.0), objects=[sphere, box, front])
    height, width = 120, 160
    rgb, depth, ids = render(scene, (height, width), return_ids=True)
    expected = reference_depth(scene, height, width)
    got = depth[..., 0].astype(np.float64)
    for k in (6, 7, 8):
        assert (ids == k).sum() > 200, f"object {k} should be visible"
    rel = np.abs(got - expected) / expected
    # identical up to float32 rounding everywhere but possibly a few silhouette pixels
    assert np.mean(rel > 1e-5) < 0.002
    assert np.median(rel) < 1e-6
    for k in (6, 7, 8):
        np.testing.assert_allclose(np.median(rel[ids == k]), 0, atol=1e-6)

    # the axis-aligned front box face at z = 2.2 seen by an unrotated camera: constant depth 1.6
    scene2 = Scene(room=(5.0, 3.0, 7.0), camera=(2.4, 0.35, 0.6), light=(2.5, 2.7, 3.0), objects=[front])
    _, depth2, ids2 = render(scene2, (60, 80), return_ids=True)
    face = ids2 == 6
    assert face.sum() > 100
    np.testing.assert_allclose(depth2[..., 0][face], 1.6, atol=2e-6)


def test_intrinsics_scale_with_size():
    assert intrinsics(480, 640) == pytest.approx((518.8579, 519.46961, 320.0, 240.0))
    fx, fy, cx, cy = intrinsics(240, 320)
    assert (fx, fy, cx, cy) == pytest.approx((518.8579 / 2, 519.46961 / 2, 160.0, 120.0))
    assert make_sample("val", 0, size=(30, 40)).meta["focal"] == pytest.approx(518.8579 * 40 / 640)
    # The same scene at two sizes is the same view: on a plane 1/z is affine in the image, so the
    # mean of 1/z over each 2x2 block of the large image equals 1/z of the small image's pixel.
    scene = Scene(room=(10.0, 3.0, 10.0), camera=(5.0, 1.5, 5.0), yaw=0.7, pitch=math.radians(-62), roll=0.05)
    _, small, ids = render(scene, (30, 40), return_ids=True)
    _, large = render(scene, (60, 80))
    assert (ids == 0).all()  # floor only
    inv_large = (1.0 / large[..., 0].astype(np.float64)).reshape(30, 2, 40, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(inv_large, 1.0 / small[..., 0], rtol=2e-6)


def test_random_scenes_depth_range_and_cues():
    for seed in range(25):
        scene = random_scene(seed)
        assert 2.0 <= scene.room[0] <= 10.0 and 2.0 <= scene.room[2] <= 10.0
        assert max_z_depth(scene) < MAX_DEPTH
        rgb, depth, ids = render(scene, (45, 60), return_ids=True)
        assert np.isfinite(depth).all()
        assert depth.min() > 0.2 and depth.max() < MAX_DEPTH <= 10.0
        assert depth.max() <= max_z_depth(scene) + 1e-4
        assert depth.max() - depth.min() > 0.3  # perspective: the view is never a flat frontal wall
        assert rgb.std() > 8  # texture and shading
    # objects are drawn: over a few scenes most have at least one object in view
    visible = [(render(random_scene(seed), (45, 60), return_ids=True)[2] >= 6).any() for seed in range(10)]
    assert sum(visible) >= 6


def _tone(x):
    return x * (1 + x * 0.25) / (1 + x)


def test_lambertian_light_falls_off_with_distance_and_objects_cast_shadows():
    # Camera looking straight down at a grey floor; point light 2 m above the floor.
    light = (5.0, 2.0, 5.0)
    scene = Scene(
        room=(10.0, 3.0, 10.0),
        camera=(5.3, 2.5, 4.6),
        pitch=math.radians(-89.9),
        light=light,
        light_power=3.0,
        ambient=0.0,
        room_materials=[WHITE] * 6,
    )
    height, width = 60, 80
    rgb, depth, ids = render(scene, (height, width), return_ids=True)
    assert (ids == 0).all()
    points = np.asarray(scene.camera) + depth[..., 0:1].astype(np.float64) * reference_rays(scene, height, width)
    np.testing.assert_allclose(points[..., 1], 0.0, atol=1e-5)  # the hits lie on the floor
    to_light = np.asarray(light) - points
    dist = np.linalg.norm(to_light, axis=-1)
    irradiance = 3.0 * (to_light[..., 1] / dist) / dist**2
    expected = np.floor(255 * np.sqrt(np.minimum(0.5 * _tone(irradiance), 1)) + 0.5)
    grey = rgb.astype(np.float64)
    assert np.abs(grey - expected[..., None]).max() <= 1
    assert np.corrcoef(dist.ravel(), grey[..., 0].ravel())[0, 1] < -0.9  # darker further away
    assert grey.max() - grey.min() > 40

    # A sphere between light and floor: the analytic shadow (segment floor point -> light
    # crosses the sphere) is ambient-dark, the rest unchanged.
    sphere = Sphere((5.2, 1.0, 4.8), 0.25, WHITE)
    shadowed_scene = Scene(**{**scene.__dict__, "objects": [sphere], "ambient": 0.05})
    rgb2, _, ids2 = render(shadowed_scene, (height, width), return_ids=True)
    floor = ids2 == 0
    seg = to_light  # from floor point to the light
    oc = points - np.asarray(sphere.center)
    a = (seg * seg).sum(-1)
    b = 2 * (seg * oc).sum(-1)
    c = (oc * oc).sum(-1) - sphere.radius**2
    disc = b * b - 4 * a * c
    root = np.sqrt(np.maximum(disc, 0))
    s0, s1 = (-b - root) / (2 * a), (-b + root) / (2 * a)
    in_shadow = (disc > 0) & (s1 > 0) & (s0 < 1)
    region = floor & in_shadow
    assert region.sum() > 30
    dark = np.floor(255 * np.sqrt(0.5 * _tone(0.05)) + 0.5)
    agree = np.abs(rgb2[..., 0].astype(np.float64) - dark) <= 1
    assert agree[region].mean() > 0.97
    lit = floor & ~in_shadow
    assert agree[lit].mean() < 0.01


def test_textures_show_up_in_rgb():
    base = dict(room=(6.0, 3.0, 6.0), camera=(3.0, 1.5, 0.8), light=(3.0, 2.8, 3.0), light_power=6.0, ambient=0.1)
    plain = render(Scene(**base, room_materials=[WHITE] * 6), (48, 64))[0].astype(float)
    for kind in ("checker", "stripes", "noise"):
        material = Material(kind, (0.9, 0.9, 0.9), (0.1, 0.1, 0.1), scale=0.4, noise_seed=3)
        rgb = render(Scene(**base, room_materials=[material] * 6), (48, 64))[0].astype(float)
        assert np.abs(rgb - plain).mean() > 10, kind
    with pytest.raises(ConfigError, match="wood"):
        render(Scene(**base, room_materials=[Material("wood")] * 6), (8, 8))


def test_spec_forms_and_errors():
    source = open_source("synthetic")
    assert len(source) == 2000 and source.size == (240, 320)
    assert len(open_source("synthetic", split="test")) == 200
    source = open_source("synthetic:3,size=24x32,seed=5", split="val")
    same = open_source("synthetic:3?size=24x32&seed=5", split="val")
    by_keyword = open_source("synthetic", split="val", count=3, size=(24, 32), seed=5)
    assert len(source) == len(same) == len(by_keyword) == 3
    sample = source[2]
    assert sample.rgb.shape == (24, 32, 3) and sample.rgb.dtype == np.uint8
    assert sample.depth.shape == (24, 32, 1) and sample.depth.dtype == np.float32
    np.testing.assert_array_equal(sample.depth, same[2].depth)
    np.testing.assert_array_equal(sample.depth, by_keyword[-1].depth)
    assert sample.meta["id"] == "synthetic-val-0000007" and sample.meta["seed"] == (1 << 30) + 7
    with pytest.raises(IndexError):
        source[3]
    for bad, message in (
        ("synthetic:3,color=red", "color"),
        ("synthetic:3,size=24by32", "24by32"),
        ("synthetic:-1", "count"),
        ("synthetic:many", "many"),
    ):
        with pytest.raises(ConfigError, match=message):
            open_source(bad)
    with pytest.raises(ConfigError, match="holdout"):
        open_source("synthetic:3", split="holdout")


# ------------------------------------------------------------------ geometric ground truth


def _geometry_scene():
    """A camera facing the far wall; a box standing on the floor and a floating sphere in front of it."""
    box = Box((2.0, 0.5, 3.5), (0.5, 0.5, 0.4), yaw=math.radians(20), material=WHITE)
    sphere = Sphere((3.4, 1.6, 3.0), 0.35, WHITE)
    return Scene(room=(5.0, 3.0, 6.0), camera=(2.5, 1.5, 0.5), pitch=math.radians(-15), light=(2.5, 2.7, 2.0),
                 objects=[box, sphere])


def test_plane_ground_truth_holds_for_every_back_projected_pixel():
    from hqdepth.data.synthetic import geometry_truth
    from hqdepth.geometry import back_project

    scene = _geometry_scene()
    _, depth, ids = render(scene, (90, 120), return_ids=True)
    truth = geometry_truth(scene, depth, ids)
    planes, z = truth["plane_ids"], depth[..., 0].astype(np.float64)
    assert planes.dtype == np.int32 and ((planes == 0) == (ids == 7)).all()  # only the sphere is not planar
    labels = set(np.unique(planes)) - {0}
    assert labels == set(truth["plane_normals"]) == set(truth["plane_equations"])
    # floor, both side walls, the far wall; three faces of the box (the side facing the camera, one end, the top)
    assert labels == {1, 3, 4, 6, 8, 10, 11}
    rows, cols = np.nonzero(planes)
    points = back_project(z[rows, cols], truth["intrinsics"], rows, cols)  # the evaluator's own back-projection
    equations = np.array([truth["plane_equations"][v] for v in planes[rows, cols]])
    residual = np.abs(np.einsum("ij,ij->i", points, equations[:, :3]) + equations[:, 3])
    assert residual.max() < 2e-5 * z.max()
    for label, normal in truth["plane_normals"].items():
        assert np.linalg.norm(normal) == pytest.approx(1.0)
        np.testing.assert_allclose(normal, truth["plane_equations"][label][:3])
    # the far wall (z = 6 m, facing the camera, pitched down 15 degrees): normal (0, -cos, -sin) in x right,
    # y forward, z up, 5.5 m from the camera centre
    np.testing.assert_allclose(truth["plane_equations"][6],
                               [0, -math.cos(math.radians(15)), -math.sin(math.radians(15)), 5.5], atol=1e-9)


def test_edges_are_exactly_the_occluding_contours():
    from hqdepth.data.synthetic import geometry_truth

    scene = _geometry_scene()
    height, width = 90, 120
    _, depth, ids = render(scene, (height, width), return_ids=True)
    edges = geometry_truth(scene, depth, ids)["edges"]
    z = depth[..., 0].astype(np.float64)
    # Every marked pixel is the near side of a step of at least 5 % to a 4-neighbour on another object ...
    step = np.zeros_like(z)
    for axis in (0, 1):
        for shift in (1, -1):
            other, other_ids = np.roll(z, shift, axis), np.roll(ids, shift, axis)
            valid = np.ones_like(edges)
            index = [slice(None)] * 2
            index[axis] = 0 if shift == 1 else -1
            valid[tuple(index)] = False
            jump = np.where(valid & (other_ids != ids), other / z - 1, 0)
            step = np.maximum(step, jump)
    # (where a silhouette meets the floor the box stands on, the step shrinks to 0: a few pixels)
    assert edges.sum() > 50 and (edges <= (step > 0)).all()
    assert (edges & (step <= 0.05)).sum() <= 0.03 * edges.sum()
    # ... and every such step of over 20 % is marked (completeness), on the box, the sphere and nowhere else.
    assert edges[step > 0.2].all()
    assert set(np.unique(ids[edges])) == {6, 7}
    # Creases are not edges: floor against the walls, the box's own corners, the box standing on the floor.
    touching = np.zeros_like(edges)
    touching[:-1] |= (ids[:-1] == 6) & (ids[1:] == 0)  # a box pixel right above a floor pixel: its foot ...
    touching[:, 1:-1] &= (ids[:, :-2] == 6) & (ids[:, 2:] == 6)  # ... between box pixels (not a silhouette)
    assert touching.sum() > 10 and not edges[touching].any()
    assert not edges[ids < 6].any()  # the room is convex seen from inside: it never occludes itself


def test_synthetic_samples_carry_the_geometric_ground_truth():
    from hqdepth.geometry import GeometryEvaluator, ground_truth_from_meta, plane_min_pixels_for

    sample = make_sample("test", 3, size=(60, 80))
    found = ground_truth_from_meta(sample.meta)
    assert set(found) == {"edges", "plane_ids", "plane_normals", "intrinsics"}
    assert found["edges"].shape == found["plane_ids"].shape == (60, 80)
    fx, fy, cx, cy = intrinsics(60, 80)
    assert found["intrinsics"] == pytest.approx((fx, fy, cx + 0.5, cy + 0.5))
    gt = sample.depth[..., 0]
    evaluator = GeometryEvaluator(plane_min_pixels=plane_min_pixels_for(gt.shape))
    perfect = evaluator.add(gt, gt, **found)
    assert perfect["pe_plan"] < 1e-3 and perfect["pe_orie"] < 0.05 and perfect["dde_0"] == 1.0


def test_random_scenes_mark_almost_every_large_step_between_surfaces():
    """Over random rooms: the near pixel of every depth step > 20 % between two different objects is an edge,
    but for creases seen at a grazing angle (a face nearly edge-on: continuous, not an occlusion), which are
    rare. A test of the crease rule on the cases a hand-made scene does not have (box faces against walls
    whose infinite planes cross nearby)."""
    from hqdepth.data.synthetic import geometry_truth, scene_seed

    steps = unmarked = 0
    for index in range(12):
        scene = random_scene(scene_seed("test", index))
        _, depth, ids = render(scene, (72, 96), return_ids=True)
        edges = geometry_truth(scene, depth, ids)["edges"]
        z = depth[..., 0].astype(np.float64)
        for a, b in (((slice(None), slice(0, -1)), (slice(None), slice(1, None))),
                     ((slice(0, -1), slice(None)), (slice(1, None), slice(None)))):
            large = (ids[a] != ids[b]) & (np.maximum(z[a], z[b]) / np.minimum(z[a], z[b]) > 1.2)
            near_marked = np.where(z[a] <= z[b], edges[a], edges[b])
            steps += int(large.sum())
            unmarked += int((large & ~near_marked).sum())
    assert steps > 500 and unmarked <= 0.01 * steps, (unmarked, steps)  # measured 9 of 1435; with infinite planes 26
