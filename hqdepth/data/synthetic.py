"""Synthetic indoor scenes: the built-in dataset that needs no download.

Each scene is a procedural room rendered by vectorised NumPy ray casting:

- a box room, floor 2-10 m by 2-10 m, 2.4-3.2 m high, floor, ceiling and four walls;
- 1-5 boxes standing on the floor (random size and yaw) and 0-3 spheres (on the floor or floating);
- every surface textured in world units (checker, stripes or value noise) with periods in a
  familiar range (checker/stripes 0.25-0.5 m, noise features 0.08-0.16 m, as tiles, planks and
  fabric are), so texture density shrinks with distance and tells the scale (texture-gradient and
  familiar-size cues);
- Lambertian shading from one point light of a fixed power range (a lamp, whatever the room size),
  inverse-square fall-off, hard shadows cast by the objects, and a small ambient term: large rooms
  are darker away from the lamp, as real ones are (an absolute shading cue);
- a pinhole camera with NYU Depth V2 intrinsics scaled to the image size (fx = 518.8579 at width
  640, fy = 519.46961 at height 480, principal point at the image centre, pixel centres at +0.5),
  1.0-1.7 m above the floor, random yaw, pitch -25..+5 degrees, roll -4..+4 degrees.

The depth map is the exact z-depth (distance along the optical axis, not along the ray) in metres:
the ray of pixel (u, v) is `d = f + (u + 0.5 - cx) / fx * r - (v + 0.5 - cy) / fy * up` with unit
forward f, so the ray parameter t of the first hit *is* the z-depth. The camera is placed so that
every room corner (hence every visible point) has z-depth below `MAX_DEPTH` = 9.9 m: nothing is
clipped and every pixel is valid (0 < depth < 10, the NYU range).

Scenes are deterministic per seed. The splits use disjoint seed ranges:
train [0, 2^30), val [2^30, 2^31), test [2^31, 3 * 2^30); scene `i` of a split has seed
`base + offset + i`.

SPEC forms (see `SyntheticSource`): `synthetic`, `synthetic:COUNT`,
`synthetic:COUNT,size=HxW,seed=OFFSET` (options in any order, COUNT may also be `count=N`; the
query form of the file sources, `synthetic:COUNT?size=HxW&seed=OFFSET`, is accepted too).
"""

import math
from dataclasses import dataclass, field

import numpy as np

from hqdepth.data.base import Sample, Source, register_source
from hqdepth.errors import ConfigError

NYU_FX = 518.8579
NYU_FY = 519.46961
DEFAULT_SIZE = (240, 320)
MAX_DEPTH = 9.9
SPLIT_SEED_BASE = {"train": 0, "val": 1 << 30, "test": 2 << 30}
SPLIT_SEED_RANGE = 1 << 30
DEFAULT_COUNTS = {"train": 2000, "val": 200, "test": 200}
TEXTURES = ("checker", "stripes", "noise")  # "plain" is also accepted in hand-made scenes
TEXTURE_SCALE = {"checker": (0.25, 0.5), "stripes": (0.25, 0.5), "noise": (0.08, 0.16)}  # metres
LAMP_POWER = 25.0  # irradiance 1 at 5 m from the lamp, facing it

# Surface ids in the id map: 0 floor (y = 0), 1 ceiling (y = height), 2 wall x = 0, 3 wall x = width,
# 4 wall z = 0, 5 wall z = depth; objects follow from 6 in the order of `Scene.objects`.
ROOM_SURFACES = ("floor", "ceiling", "wall_x0", "wall_x1", "wall_z0", "wall_z1")
_ROOM_NORMALS = ((0, 1, 0), (0, -1, 0), (1, 0, 0), (-1, 0, 0), (0, 0, 1), (0, 0, -1))
_ROOM_TEX_AXES = ((0, 2), (0, 2), (2, 1), (2, 1), (0, 1), (0, 1))  # world axes used as (a, b)


# --------------------------------------------------------------------------------------- scene


@dataclass
class Material:
    """Albedo pattern in world units: `kind` in checker | stripes | noise | plain.

    colors: two linear RGB albedos in [0, 1]; scale: pattern period (checker/stripes) or feature
    size (noise) in metres; angle: stripe direction (radians); noise_seed: the noise lattice.
    """

    kind: str = "plain"
    color_a: tuple = (0.7, 0.7, 0.7)
    color_b: tuple = (0.3, 0.3, 0.3)
    scale: float = 0.5
    angle: float = 0.0
    noise_seed: int = 0


@dataclass
class Box:
    """A box with centre, half extents (x, y, z) and a rotation `yaw` (radians) about the vertical."""

    center: tuple
    half: tuple
    yaw: float = 0.0
    material: Material = field(default_factory=Material)


@dataclass
class Sphere:
    center: tuple
    radius: float
    material: Material = field(default_factory=Material)


@dataclass
class Scene:
    """Everything `render` needs. The room is the box [0, size[0]] x [0, size[1]] x [0, size[2]], y up.

    Camera: position, yaw (about y; 0 looks along +z), pitch (positive looks up), roll (radians).
    Light: a point light of `light_power` (irradiance = power * cos / distance^2) plus `ambient`.
    room_materials: six materials in the order of `ROOM_SURFACES`.
    """

    room: tuple
    camera: tuple
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    light: tuple = (1.0, 2.0, 1.0)
    light_power: float = 4.0
    ambient: float = 0.1
    room_materials: list = field(default_factory=lambda: [Material() for _ in ROOM_SURFACES])
    objects: list = field(default_factory=list)


def intrinsics(height, width):
    """(fx, fy, cx, cy) in pixels for an image of `height` x `width`: NYU's scaled to the size."""
    return NYU_FX * width / 640.0, NYU_FY * height / 480.0, width / 2.0, height / 2.0


def camera_axes(yaw, pitch, roll):
    """World-space unit (forward, right, up) of a camera with these angles (radians)."""
    cy_, sy_ = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    forward = np.array([sy_ * cp, sp, cy_ * cp])
    right0 = np.array([cy_, 0.0, -sy_])
    up0 = np.cross(forward, right0)
    cr, sr = math.cos(roll), math.sin(roll)
    return forward, cr * right0 + sr * up0, -sr * right0 + cr * up0


def room_corners(room):
    x, y, z = room
    return np.array([[i * x, j * y, k * z] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=np.float64)


def max_z_depth(scene):
    """Largest z-depth any point of the room can have for this camera (it is reached at a corner)."""
    forward = camera_axes(scene.yaw, scene.pitch, scene.roll)[0]
    return float(((room_corners(scene.room) - np.asarray(scene.camera)) @ forward).max())


# ------------------------------------------------------------------------------ random scenes


def scene_seed(split, index, offset=0):
    """The seed of scene `index` of `split` (disjoint ranges per split)."""
    if split not in SPLIT_SEED_BASE:
        raise ConfigError(f"Unknown split {split!r} for synthetic scenes; use one of train, val, test.")
    if not 0 <= offset + index < SPLIT_SEED_RANGE:
        raise ConfigError(f"Synthetic scene seed offset {offset} + index {index} is outside [0, 2^30).")
    return SPLIT_SEED_BASE[split] + offset + index


def _random_material(rng):
    kind = TEXTURES[rng.integers(len(TEXTURES))]
    color_a = rng.uniform(0.25, 0.95, 3)
    if rng.random() < 0.5:
        color_b = color_a * rng.uniform(0.25, 0.6)
    else:
        color_b = rng.uniform(0.05, 0.9, 3)
    scale = rng.uniform(*TEXTURE_SCALE[kind])
    angle = float(rng.choice([0.0, math.pi / 2])) if rng.random() < 0.6 else rng.uniform(0, math.pi)
    return Material(kind, tuple(color_a), tuple(color_b), float(scale), float(angle), int(rng.integers(1 << 31)))


def _box_clearance(point, box):
    """Euclidean distance from a point to a (yawed) box, 0 inside."""
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    p = np.asarray(point, dtype=np.float64) - np.asarray(box.center)
    local = np.array([c * p[0] - s * p[2], p[1], s * p[0] + c * p[2]])
    return float(np.linalg.norm(np.maximum(np.abs(local) - np.asarray(box.half), 0.0)))


def _bounding_sphere(obj):
    if isinstance(obj, Sphere):
        return np.asarray(obj.center, dtype=np.float64), float(obj.radius)
    return np.asarray(obj.center, dtype=np.float64), float(np.linalg.norm(obj.half))


def _central_ray_exit(scene):
    """Distance along the optical axis to the room boundary."""
    forward = camera_axes(scene.yaw, scene.pitch, scene.roll)[0]
    cam = np.asarray(scene.camera)
    room = np.asarray(scene.room)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.maximum(-cam / forward, (room - cam) / forward)
    return float(np.nanmin(t))


def random_scene(seed):
    """A random room (see the module doc) that depends only on `seed`."""
    rng = np.random.default_rng(seed)
    room = (rng.uniform(2.0, 10.0), rng.uniform(2.4, 3.2), rng.uniform(2.0, 10.0))
    height = rng.uniform(1.0, 1.7)
    roll = math.radians(rng.uniform(-4.0, 4.0))
    margin = 0.4
    # The optical axis must travel some way into the room (no close-up of a wall).
    min_exit = min(max(0.6 * min(room[0], room[2]), 1.2), 4.0)
    scene = None
    for _ in range(2000):
        yaw = rng.uniform(0.0, 2 * math.pi)
        pitch = math.radians(rng.uniform(-25.0, 5.0))
        camera = (rng.uniform(margin, room[0] - margin), height, rng.uniform(margin, room[2] - margin))
        candidate = Scene(room=room, camera=camera, yaw=yaw, pitch=pitch, roll=roll)
        if max_z_depth(candidate) < MAX_DEPTH and _central_ray_exit(candidate) > min_exit:
            scene = candidate
            break
    if scene is None:  # pragma: no cover - the loop always succeeds for rooms of 2-10 m
        raise RuntimeError(f"synthetic scene {seed}: no valid camera placement found")
    scene.room_materials = [_random_material(rng) for _ in ROOM_SURFACES]
    cam = np.asarray(scene.camera)

    objects = []
    spheres_bound = []  # (centre, radius) of placed objects

    # Most objects are placed in front of the camera (within 40 degrees of the view direction).
    heading = np.array([math.sin(scene.yaw), math.cos(scene.yaw)])

    def fits(center, radius, clearance_ok, want_in_view):
        if not clearance_ok:
            return False
        if want_in_view:
            ahead = np.array([center[0] - cam[0], center[2] - cam[2]])
            if ahead @ heading < math.cos(math.radians(40)) * np.linalg.norm(ahead):
                return False
        return all(np.linalg.norm(center - c) > radius + r for c, r in spheres_bound)

    for _ in range(int(rng.integers(1, 6))):
        want_in_view = rng.random() < 0.75
        for attempt in range(30):
            half = (rng.uniform(0.15, 0.8), rng.uniform(0.15, 0.9), rng.uniform(0.15, 0.5))
            yaw = 0.0 if rng.random() < 0.4 else rng.uniform(0.0, math.pi / 2)
            foot = math.hypot(half[0], half[2])
            if room[0] - 2 * foot < 0.05 or room[2] - 2 * foot < 0.05:
                continue
            center = np.array([rng.uniform(foot, room[0] - foot), half[1], rng.uniform(foot, room[2] - foot)])
            box = Box(tuple(center), half, yaw)
            bound = _bounding_sphere(box)
            if fits(center, bound[1] * 0.8, _box_clearance(cam, box) > 0.6, want_in_view and attempt < 20):
                box.material = _random_material(rng)
                objects.append(box)
                spheres_bound.append(bound)
                break
    for _ in range(int(rng.integers(0, 4))):
        want_in_view = rng.random() < 0.75
        for attempt in range(30):
            radius = rng.uniform(0.12, 0.5)
            y = radius if rng.random() < 0.5 else rng.uniform(radius + 0.3, room[1] - radius - 0.6)
            if room[0] - 2 * radius < 0.05 or room[2] - 2 * radius < 0.05:
                continue
            center = np.array([rng.uniform(radius, room[0] - radius), y, rng.uniform(radius, room[2] - radius)])
            if fits(center, radius, np.linalg.norm(center - cam) > radius + 0.6, want_in_view and attempt < 20):
                objects.append(Sphere(tuple(center), radius, _random_material(rng)))
                spheres_bound.append((center, radius))
                break
    scene.objects = objects

    for _ in range(200):
        light = np.array([room[0] * rng.uniform(0.2, 0.8), room[1] - rng.uniform(0.2, 0.7), room[2] * rng.uniform(0.2, 0.8)])
        if all(np.linalg.norm(light - c) > r + 0.05 for c, r in spheres_bound):
            break
    scene.light = tuple(light)
    scene.light_power = float(rng.uniform(0.7, 1.1) * LAMP_POWER)
    scene.ambient = float(rng.uniform(0.04, 0.14))
    return scene


# ------------------------------------------------------------------------------------ render

_RAY_CACHE = {}


def _camera_rays(height, width):
    """Camera-frame ray components (x right, y up) for a forward component of 1, cached per size."""
    key = (height, width)
    if key not in _RAY_CACHE:
        fx, fy, cx, cy = intrinsics(height, width)
        xs = ((np.arange(width, dtype=np.float64) + 0.5 - cx) / fx).astype(np.float32)
        ys = (-(np.arange(height, dtype=np.float64) + 0.5 - cy) / fy).astype(np.float32)
        if len(_RAY_CACHE) > 8:
            _RAY_CACHE.clear()
        _RAY_CACHE[key] = (xs, ys)
    return _RAY_CACHE[key]


def _screen_rect(points, cam, axes, height, width):
    """Pixel rectangle (v0, v1, u0, u1) that contains the projection of the convex hull of `points`,
    None when all points are behind the camera, the full image when some are."""
    forward, right, up = axes
    rel = points - cam
    z = rel @ forward
    if np.all(z <= 1e-3):
        return None
    if np.any(z <= 1e-3):
        return 0, height, 0, width
    fx, fy, cx, cy = intrinsics(height, width)
    u = (rel @ right) / z * fx + cx - 0.5
    v = -(rel @ up) / z * fy + cy - 0.5
    u0 = max(int(math.floor(u.min())) - 1, 0)
    u1 = min(int(math.ceil(u.max())) + 2, width)
    v0 = max(int(math.floor(v.min())) - 1, 0)
    v1 = min(int(math.ceil(v.max())) + 2, height)
    if u0 >= u1 or v0 >= v1:
        return None
    return v0, v1, u0, u1


def _box_corners(box):
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    hx, hy, hz = box.half
    local = np.array([[i * hx, j * hy, k * hz] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)])
    world = np.stack([c * local[:, 0] + s * local[:, 2], local[:, 1], -s * local[:, 0] + c * local[:, 2]], axis=1)
    return world + np.asarray(box.center)


def _sphere_corners(sphere):
    r = sphere.radius
    return np.array([[i * r, j * r, k * r] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)]) + np.asarray(sphere.center)


def _intersect_sphere(origin, dx, dy, dz, a, sphere):
    """Nearest positive hit distance for rays origin + t d (origin outside the sphere), inf if none."""
    oc = np.asarray(origin, dtype=np.float64) - np.asarray(sphere.center)
    c = float(oc @ oc - sphere.radius**2)
    b = dx * np.float32(oc[0]) + dy * np.float32(oc[1]) + dz * np.float32(oc[2])
    disc = b * b - a * np.float32(c)
    hit = disc > 0
    t = np.full(b.shape, np.inf, dtype=np.float32)
    root = np.sqrt(disc[hit])
    t_hit = (-b[hit] - root) / (a[hit] if np.ndim(a) else a)
    t_hit[t_hit <= 0] = np.inf
    t[hit] = t_hit
    return t


def _box_local(box, dx, dz):
    c, s = np.float32(math.cos(box.yaw)), np.float32(math.sin(box.yaw))
    return c * dx - s * dz, s * dx + c * dz


def _intersect_box(origin, dx, dy, dz, box, t_max=None):
    """Entry distance for rays origin + t d into a yawed box (origin outside), inf if missed.

    With `t_max`, also rays whose entry lies beyond t_max count as missed."""
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    p = np.asarray(origin, dtype=np.float64) - np.asarray(box.center)
    lo = (c * p[0] - s * p[2], p[1], s * p[0] + c * p[2])
    ldx, ldz = _box_local(box, dx, dz)
    near = far = None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for o, d, h in ((lo[0], ldx, box.half[0]), (lo[1], dy, box.half[1]), (lo[2], ldz, box.half[2])):
            inv = np.float32(1.0) / d
            t1 = np.float32(-h - o) * inv
            t2 = np.float32(h - o) * inv
            tmin = np.minimum(t1, t2)
            tmax = np.maximum(t1, t2)
            near = tmin if near is None else np.maximum(near, tmin)
            far = tmax if far is None else np.minimum(far, tmax)
    miss = (near > far) | (near <= 0)
    if t_max is not None:
        miss |= near >= t_max
    near[miss] = np.inf
    return near


_NOISE_TEXTURES = {}
_NOISE_SIZE = 256  # texels per period; a noise feature (material.scale) spans 16 texels
_NOISE_BANK = 16  # distinct noise textures; a material picks one and an offset by its noise_seed


def _noise_texture(index):
    """A periodic 256x256 two-octave value-noise texture in [0, 1] (cached, deterministic)."""
    if index not in _NOISE_TEXTURES:
        rng = np.random.default_rng(1000 + index)
        coords = np.arange(_NOISE_SIZE, dtype=np.float64)
        total = np.zeros((_NOISE_SIZE, _NOISE_SIZE))
        for cells, weight in ((16, 0.67), (43, 0.33)):  # lattice cells per period, weight
            lattice = rng.random((cells, cells))
            x = coords * cells / _NOISE_SIZE
            i0 = np.floor(x).astype(int)
            f = x - i0
            f = f * f * (3 - 2 * f)
            i0 %= cells
            i1 = (i0 + 1) % cells
            rows = lattice[i0] * (1 - f)[:, None] + lattice[i1] * f[:, None]  # along y
            total += weight * (rows[:, i0] * (1 - f) + rows[:, i1] * f)  # along x
        lo, hi = total.min(), total.max()
        _NOISE_TEXTURES[index] = ((total - lo) / (hi - lo)).astype(np.float32).ravel()
    return _NOISE_TEXTURES[index]


def _albedo(material, a, b):
    """Three float32 channel arrays (or scalars for `plain`): the albedo at texture coordinates a, b (m)."""
    ca = [np.float32(v) for v in material.color_a]
    if material.kind == "plain":
        return ca
    diff = [np.float32(vb) - va for va, vb in zip(ca, material.color_b)]
    inv = np.float32(1.0 / material.scale)
    if material.kind == "checker":
        mix = np.floor(a * inv) + np.floor(b * inv)
        mix -= np.float32(2) * np.floor(mix * np.float32(0.5))  # parity, 0 or 1
    elif material.kind == "stripes":
        ang = material.angle
        coord = a * np.float32(math.cos(ang) * 2 * math.pi / material.scale) + b * np.float32(math.sin(ang) * 2 * math.pi / material.scale)
        mix = np.sin(coord)
        mix *= np.float32(1.5)
        mix += np.float32(0.5)
        np.clip(mix, 0, 1, out=mix)
    elif material.kind == "noise":
        seed = material.noise_seed
        texture = _noise_texture(seed % _NOISE_BANK)
        per_feature = np.float32(16.0 / material.scale)
        mask = _NOISE_SIZE - 1
        u = a * per_feature
        v = b * per_feature
        u0 = np.floor(u)
        v0 = np.floor(v)
        fu = u - u0
        fv = v - v0
        iu = (u0.astype(np.int32) + (seed >> 4) % _NOISE_SIZE) & mask
        iv = (v0.astype(np.int32) + (seed >> 12) % _NOISE_SIZE) & mask
        iu1 = (iu + 1) & mask
        iv *= _NOISE_SIZE
        iv1 = (iv + _NOISE_SIZE) & (_NOISE_SIZE * _NOISE_SIZE - 1)
        top = texture.take(iv + iu)
        top += (texture.take(iv + iu1) - top) * fu
        bottom = texture.take(iv1 + iu)
        bottom += (texture.take(iv1 + iu1) - bottom) * fu
        mix = top + (bottom - top) * fv  # bilinear
        mix -= np.float32(0.5)
        mix *= np.float32(2.2)
        mix += np.float32(0.5)
        np.clip(mix, 0, 1, out=mix)
    else:
        raise ConfigError(f"Unknown synthetic material kind {material.kind!r}; use checker, stripes, noise or plain.")
    return [va + dv * mix for va, dv in zip(ca, diff)]


def render(scene, size=DEFAULT_SIZE, return_ids=False):
    """Ray-cast `scene` at `size` = (height, width).

    Returns (rgb uint8 (H, W, 3), depth float32 (H, W, 1) z-depth in metres), plus the surface id
    map (int16 (H, W)) when `return_ids`.
    """
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ConfigError(f"Synthetic image size must be positive, got {height}x{width}.")
    cam = np.asarray(scene.camera, dtype=np.float64)
    axes = camera_axes(scene.yaw, scene.pitch, scene.roll)
    forward, right, up = axes
    xs, ys = _camera_rays(height, width)
    # World ray directions (forward component 1) as (H, W) float32 arrays, built by broadcasting.
    dirs = []
    for axis in range(3):
        d = np.empty((height, width), np.float32)
        np.add((xs * np.float32(right[axis]))[None, :], (np.float32(forward[axis]) + ys * np.float32(up[axis]))[:, None], out=d)
        dirs.append(d)
    dx, dy, dz = dirs

    # Room: the camera is inside the box, so each axis is left at max((lo - o) / d, (hi - o) / d);
    # the nearest of the three exits is the hit. Surface ids by arithmetic (no masked copies).
    t = None
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis, (d, base) in enumerate(zip(dirs, (2, 0, 4))):
            inv = np.float32(1.0) / d
            t_axis = np.maximum(np.float32(-cam[axis]) * inv, np.float32(scene.room[axis] - cam[axis]) * inv)
            surface = (d > 0).view(np.int8).astype(np.int16)
            surface += base
            if t is None:
                t, ids = t_axis, surface
            else:
                closer = (t_axis < t).view(np.int8)
                np.minimum(t, t_axis, out=t)
                ids += (surface - ids) * closer

    a_full = None
    for k, obj in enumerate(scene.objects):
        corners = _sphere_corners(obj) if isinstance(obj, Sphere) else _box_corners(obj)
        rect = _screen_rect(corners, cam, axes, height, width)
        if rect is None:
            continue
        v0, v1, u0, u1 = rect
        sdx, sdy, sdz = dx[v0:v1, u0:u1], dy[v0:v1, u0:u1], dz[v0:v1, u0:u1]
        if isinstance(obj, Sphere):
            if a_full is None:
                a_full = dx * dx + dy * dy + dz * dz
            t_obj = _intersect_sphere(cam, sdx, sdy, sdz, a_full[v0:v1, u0:u1], obj)
        else:
            t_obj = _intersect_box(cam, sdx, sdy, sdz, obj)
        sub_t, sub_ids = t[v0:v1, u0:u1], ids[v0:v1, u0:u1]
        closer = (t_obj < sub_t).view(np.int8)
        np.minimum(sub_t, t_obj, out=sub_t)
        sub_ids += (np.int16(6 + k) - sub_ids) * closer
    depth = t

    shadow = _shadows(scene, cam, dx, dy, dz, depth, ids) if scene.objects else None
    rgb = _shade(scene, cam, dx.ravel(), dy.ravel(), dz.ravel(), depth.ravel(), ids.ravel(), (height, width), shadow)
    depth = depth.reshape(height, width, 1)
    if return_ids:
        return rgb, depth, ids
    return rgb, depth


_TILE = 16


def _shadows(scene, cam, dx, dy, dz, t, ids):
    """(H, W) bool: the segment from the visible point to the light crosses an object.

    Exact ray tests from the light, run only for pixels of 16x16 tiles whose bounding sphere can
    be shadowed by the object's bounding sphere (angular and distance test seen from the light).
    A point is never tested against its own (convex) object: it faces the light or is unlit."""
    height, width = t.shape
    px = np.float32(cam[0]) + t * dx
    py = np.float32(cam[1]) + t * dy
    pz = np.float32(cam[2]) + t * dz
    rows, cols = np.arange(0, height, _TILE), np.arange(0, width, _TILE)
    lo, hi = [], []
    for p in (px, py, pz):
        lo.append(np.minimum.reduceat(np.minimum.reduceat(p, rows, axis=0), cols, axis=1).astype(np.float64))
        hi.append(np.maximum.reduceat(np.maximum.reduceat(p, rows, axis=0), cols, axis=1).astype(np.float64))
    light = np.asarray(scene.light, dtype=np.float64)
    tile_v = [0.5 * (a + b) - l for a, b, l in zip(lo, hi, light)]  # light -> tile centre
    tile_r = 0.5 * np.sqrt(sum((b - a) ** 2 for a, b in zip(lo, hi)))
    tile_d = np.sqrt(sum(v * v for v in tile_v))
    with np.errstate(invalid="ignore", divide="ignore"):
        tile_angle = np.where(tile_d > tile_r, np.arcsin(np.minimum(tile_r / tile_d, 1.0)), np.pi)
    flat = [p.ravel() for p in (px, py, pz)]
    flat_ids = ids.ravel()
    shadow = np.zeros(height * width, dtype=bool)
    light32 = light.astype(np.float32)
    for k, obj in enumerate(scene.objects):
        center, radius = _bounding_sphere(obj)
        u = center - light
        d_obj = float(np.linalg.norm(u))
        if d_obj <= radius:  # the light is inside the bounding sphere: test everything
            tiles = np.ones(tile_d.shape, dtype=bool)
        else:
            cos_between = sum(v * c for v, c in zip(tile_v, u)) / np.maximum(tile_d * d_obj, 1e-12)
            between = np.arccos(np.clip(cos_between, -1.0, 1.0))
            tiles = (between <= tile_angle + math.asin(radius / d_obj) + 1e-6) & (tile_d + tile_r > d_obj - radius)
        if not tiles.any():
            continue
        mask = np.repeat(np.repeat(tiles, _TILE, axis=0)[:height], _TILE, axis=1)[:, :width]
        sel = np.flatnonzero(mask)
        sel = sel[(flat_ids[sel] != 6 + k) & ~shadow[sel]]
        if not sel.size:
            continue
        wx = flat[0][sel] - light32[0]
        wy = flat[1][sel] - light32[1]
        wz = flat[2][sel] - light32[2]
        dist = np.sqrt(wx * wx + wy * wy + wz * wz)
        inv = np.float32(1.0) / dist
        wx *= inv
        wy *= inv
        wz *= inv
        seg = dist - np.float32(1e-3)
        if isinstance(obj, Sphere):
            hit = _intersect_sphere(light, wx, wy, wz, np.float32(1.0), obj) < seg
        else:
            hit = np.isfinite(_intersect_box(light, wx, wy, wz, obj, t_max=seg))
        shadow[sel[hit]] = True
    return shadow.reshape(height, width)


def _shade(scene, cam, dx, dy, dz, t, ids, size, shadow=None):
    """RGB (H, W, 3) uint8. Pixels are processed sorted by surface id, so that every surface is
    one contiguous slice; the result is gathered back to image order at the end."""
    n = t.shape[0]
    order = np.argsort(ids, kind="stable")
    counts = np.bincount(ids, minlength=6 + len(scene.objects))
    starts = np.concatenate([[0], np.cumsum(counts)])
    ids = ids[order]
    t = t[order]
    px = np.float32(cam[0]) + t * dx[order]
    py = np.float32(cam[1]) + t * dy[order]
    pz = np.float32(cam[2]) + t * dz[order]
    pos = (px, py, pz)
    nx = np.empty(n, np.float32)
    ny = np.empty(n, np.float32)
    nz = np.empty(n, np.float32)
    albedo = [np.empty(n, np.float32) for _ in range(3)]
    for sid in np.flatnonzero(counts):
        sl = slice(starts[sid], starts[sid + 1])
        if sid < 6:
            nx[sl], ny[sl], nz[sl] = _ROOM_NORMALS[sid]
            ia, ib = _ROOM_TEX_AXES[sid]
            channels = _albedo(scene.room_materials[sid], pos[ia][sl], pos[ib][sl])
        else:
            obj = scene.objects[sid - 6]
            qx = px[sl] - np.float32(obj.center[0])
            qy = py[sl] - np.float32(obj.center[1])
            qz = pz[sl] - np.float32(obj.center[2])
            if isinstance(obj, Sphere):
                inv_r = np.float32(1.0 / obj.radius)
                nx[sl], ny[sl], nz[sl] = qx * inv_r, qy * inv_r, qz * inv_r
                channels = _albedo(obj.material, qx + np.float32(0.6) * qz, qy)
            else:
                # Box: the face is the local axis where |coordinate| / half-extent is largest.
                lx, lz = _box_local(obj, qx, qz)
                rx = np.abs(lx) * np.float32(1.0 / obj.half[0])
                ry = np.abs(qy) * np.float32(1.0 / obj.half[1])
                rz = np.abs(lz) * np.float32(1.0 / obj.half[2])
                face_x = ((rx >= ry) & (rx >= rz)).view(np.int8)
                face_y = ((ry > rx) & (ry >= rz)).view(np.int8)
                face_z = np.int8(1) - face_x - face_y
                lnx = np.sign(lx) * face_x
                lnz = np.sign(lz) * face_z
                c, s = np.float32(math.cos(obj.yaw)), np.float32(math.sin(obj.yaw))
                nx[sl] = c * lnx + s * lnz
                ny[sl] = np.sign(qy) * face_y
                nz[sl] = -s * lnx + c * lnz
                # Texture coordinates: the two local axes in the face plane.
                channels = _albedo(obj.material, lx + (lz - lx) * face_x, qy + (lz - qy) * face_y)
        for target, channel in zip(albedo, channels):
            target[sl] = channel

    light = np.asarray(scene.light, dtype=np.float32)
    lx_, ly_, lz_ = light[0] - px, light[1] - py, light[2] - pz
    dist2 = lx_ * lx_ + ly_ * ly_ + lz_ * lz_
    dist = np.sqrt(dist2)
    cos = (nx * lx_ + ny * ly_ + nz * lz_) / dist
    irradiance = np.float32(scene.light_power) * np.maximum(cos, 0) / np.maximum(dist2, np.float32(0.05))

    if scene.objects:
        irradiance *= ~shadow.ravel()[order]

    # Radiance, a soft highlight roll-off (extended Reinhard, white point 2), gamma 2, 8 bits.
    light_in = np.float32(scene.ambient) + irradiance
    light_in = light_in * (1 + light_in * np.float32(0.25)) / (1 + light_in)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(n, dtype=order.dtype)
    planes = []
    for channel in albedo:
        value = channel * light_in
        np.minimum(value, 1, out=value)
        np.sqrt(value, out=value)
        value *= np.float32(255)
        value += np.float32(0.5)
        planes.append(value.astype(np.uint8)[inverse].reshape(size))
    return np.stack(planes, axis=-1)


# ------------------------------------------------------------------------------------ source


def parse_size(value):
    """'HxW' | (H, W) | int -> (H, W) ints."""
    if isinstance(value, str):
        parts = value.lower().replace("*", "x").split("x")
        try:
            size = tuple(int(p) for p in parts)
        except ValueError:
            size = ()
        if len(size) != 2:
            raise ConfigError(f"Image size {value!r} is not HxW (e.g. 240x320).")
    elif isinstance(value, int):
        size = (value, value)
    else:
        size = tuple(int(v) for v in value)
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"Image size {value!r} must be two positive integers HxW.")
    return size


def make_sample(split, index, size=DEFAULT_SIZE, offset=0, geometry=True):
    """Scene `index` of `split` as a `Sample` (meta: id, focal = fx, seed, split, and with `geometry` the
    geometric ground truth of `geometry_truth`: edges, plane_ids, plane_normals, plane_equations, plane_types,
    intrinsics)."""
    seed = scene_seed(split, index, offset)
    scene = random_scene(seed)
    rgb, depth, ids = render(scene, size, return_ids=True)
    meta = {"id": f"synthetic-{split}-{offset + index:07d}", "focal": intrinsics(*size)[0], "seed": seed, "split": split}
    if geometry:
        meta.update(geometry_truth(scene, depth, ids))
    return Sample(rgb, depth, meta)


# ------------------------------------------------------------------------- geometric ground truth


@dataclass
class _Face:
    """A planar surface: world unit normal and offset (normal . X = offset on it), and its extent, the box
    `center` +- `half` along the rows of `axes` (for a room surface, the room itself)."""

    normal: np.ndarray
    offset: float
    center: np.ndarray
    axes: np.ndarray
    half: np.ndarray


def _surface_planes(scene, world_points, ids):
    """Per-pixel plane label (int32, 0 = not planar) and {label: `_Face`}: labels 1-6 the room surfaces
    (`ROOM_SURFACES` order), 7 + 6k + face the faces of box k (face = 2 x local axis + (1 on the + side));
    spheres are not planar."""
    room = np.asarray(scene.room, np.float64)
    planes = {1 + s: _Face(np.asarray(_ROOM_NORMALS[s], np.float64), float(off), room / 2, np.eye(3), room / 2)
              for s, off in enumerate((0.0, -room[1], 0.0, -room[0], 0.0, -room[2]))}
    labels = np.where(ids < 6, ids.astype(np.int32) + 1, 0)
    for k, obj in enumerate(scene.objects):
        on = ids == 6 + k
        if isinstance(obj, Sphere) or not on.any():
            continue
        c, s = math.cos(obj.yaw), math.sin(obj.yaw)
        axes = np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])  # the box's local axes in world space
        center, half = np.asarray(obj.center, np.float64), np.asarray(obj.half, np.float64)
        scaled = (world_points[on] - center) @ axes.T / half
        axis = np.abs(scaled).argmax(axis=1)
        positive = scaled[np.arange(axis.size), axis] > 0
        labels[on] = 7 + 6 * k + 2 * axis + positive
        for a in range(3):
            for side in (0, 1):
                normal = axes[a] * (1.0 if side else -1.0)
                planes[7 + 6 * k + 2 * a + side] = _Face(normal, float(normal @ center) + half[a], center, axes, half)
    return labels, planes


def _occluding(scene, labels, planes, sphere_of, depth, dirs, first, second, pixel_angle):
    """For neighbour pairs (first, second) (flat pixel indices) on different surfaces: True where the step
    between them is an occlusion, False where the two surfaces meet between the two rays (a crease).

    A crease: both surfaces are planes whose intersection crosses the image between the two pixels (A - B
    changes sign from one ray to the other, A the plane the first pixel sees) at a point that lies on both
    finite surfaces (within two pixel footprints of each face's extent). Inverse depth is linear along the
    image segment for a plane, so the crossing is found exactly. A crease seen at a grazing angle (a face
    nearly edge-on) can still step by tens of percent between two pixels; it is not an occlusion and is
    not marked (0.15 % of the > 20 % steps between surfaces in 40 test scenes at 96x128, 0.6 % in 12 at 72x96)."""
    cam = np.asarray(scene.camera, np.float64)
    la, lb = labels[first], labels[second]
    occluding = (la == 0) | (lb == 0) | (sphere_of[first] != sphere_of[second])
    planar = ~occluding
    if not planar.any():
        return occluding
    order = list(planes)
    index = {label: i for i, label in enumerate(order)}
    normals = np.array([planes[label].normal for label in order])
    offsets = np.array([planes[label].offset - planes[label].normal @ cam for label in order])
    fa, fb = first[planar], second[planar]
    ia = np.array([index[v] for v in la[planar]], np.int64)
    ib = np.array([index[v] for v in lb[planar]], np.int64)

    def inverse_depth(i, pixel):  # 1 / z-depth of the ray of `pixel` on plane i (z = offset / n . d)
        return np.einsum("ij,ij->i", normals[i], dirs[pixel]) / offsets[i]

    wa_first, wa_second = inverse_depth(ia, fa), inverse_depth(ia, fb)
    wb_first, wb_second = inverse_depth(ib, fa), inverse_depth(ib, fb)
    g_first, g_second = wa_first - wb_first, wa_second - wb_second
    with np.errstate(divide="ignore", invalid="ignore"):
        t = g_first / (g_first - g_second)  # where along the segment the planes cross
        w = wa_first + t * (wa_second - wa_first)
        z = 1.0 / w
    crease = (g_first * g_second <= 0) & (t >= 0) & (t <= 1) & (w > 0) & np.isfinite(z)
    z, t = np.where(crease, z, 0.0), np.where(crease, t, 0.0)
    point = cam + z[:, None] * (dirs[fa] + t[:, None] * (dirs[fb] - dirs[fa]))
    tolerance = 2.0 * pixel_angle * z + 1e-6
    for faces in (ia, ib):
        for i in np.unique(faces[crease]):
            rows = (faces == i) & crease
            face = planes[order[i]]
            local = np.abs((point[rows] - face.center) @ face.axes.T)
            crease[rows] &= (local <= face.half + tolerance[rows, None]).all(axis=1)
    occluding[planar] = ~crease
    return occluding


def geometry_truth(scene, depth, ids):
    """The iBims-style geometric ground truth of a rendered scene (the meta keys of `hqdepth.geometry`):

    - `edges` bool (H, W): exact occlusion boundaries. Two 4-neighbours on different surfaces (box faces
      count separately, a sphere is one surface) form an occlusion unless both are planes that meet between
      the two rays on both finite surfaces (a crease: floor-wall, box edges, a box standing on the floor,
      see `_occluding`); the nearer pixel of an occluding pair is marked (the occluding contour). Texture
      and shading never make an edge.
    - `plane_ids` int32 (H, W): 0 on spheres, else the plane label (see `_surface_planes`);
      `plane_normals` {label: unit normal} and `plane_equations` {label: (nx, ny, nz, d)}, n . X + d = 0,
      both in the iBims camera frame (x right, y forward, z up, metres), for the labels in the image;
      `plane_types` {label: iBims-1 class}: "floor" the floor, "table" the boxes' tops, "wall" the walls,
      the ceiling and the boxes' sides (iBims-1 annotates these three classes);
    - `intrinsics` (fx, fy, cx, cy) in the 1-based pixel convention of `hqdepth.geometry.back_project`
      (pixel centres at +0.5 here, so cx = width / 2 + 0.5).
    """
    height, width = ids.shape
    z = np.asarray(depth, np.float64).reshape(-1)
    forward, right, up = camera_axes(scene.yaw, scene.pitch, scene.roll)
    xs, ys = (a.astype(np.float64) for a in _camera_rays(height, width))
    dirs = (forward[None, None] + xs[None, :, None] * right + ys[:, None, None] * up).reshape(-1, 3)
    world = np.asarray(scene.camera, np.float64) + z[:, None] * dirs
    labels, planes = _surface_planes(scene, world.reshape(height, width, 3), ids)
    labels = labels.reshape(-1)
    flat_ids = ids.reshape(-1).astype(np.int32)
    sphere_of = np.where(labels == 0, flat_ids, -1)  # which sphere (its surface id), -1 on planes
    surface = np.where(labels > 0, labels, 10_000 + flat_ids)

    fx, fy, cx, cy = intrinsics(height, width)
    edges = np.zeros(height * width, bool)
    grid = np.arange(height * width).reshape(height, width)
    for first, second in ((grid[:, :-1], grid[:, 1:]), (grid[:-1, :], grid[1:, :])):
        first, second = first.reshape(-1), second.reshape(-1)
        differ = surface[first] != surface[second]
        first, second = first[differ], second[differ]
        occluding = _occluding(scene, labels, planes, sphere_of, z, dirs, first, second, 1.0 / min(fx, fy))
        first, second = first[occluding], second[occluding]
        edges[np.where(z[first] <= z[second], first, second)] = True

    cam = np.asarray(scene.camera, np.float64)
    normals, equations, types = {}, {}, {}
    for label in sorted(int(v) for v in np.unique(labels) if v > 0):
        face = planes[label]
        normal = np.array([face.normal @ right, face.normal @ forward, face.normal @ up])
        normals[label] = normal
        equations[label] = np.array([*normal, face.normal @ cam - face.offset])
        types[label] = plane_type(label)
    return {"edges": edges.reshape(height, width), "plane_ids": labels.reshape(height, width),
            "plane_normals": normals, "plane_equations": equations, "plane_types": types,
            "intrinsics": (fx, fy, cx + 0.5, cy + 0.5)}


def plane_type(label):
    """The iBims-1 class of a plane label of `_surface_planes`: the floor, a box's top (its local +y face, the
    world's up), or a wall (walls, ceiling, the boxes' sides)."""
    if label == 1 + ROOM_SURFACES.index("floor"):
        return "floor"
    return "table" if label >= 7 and (label - 7) % 6 == BOX_TOP_FACE else "wall"


BOX_TOP_FACE = 2 * 1 + 1  # a box face's index in `_surface_planes`: 2 x local axis (y: up) + 1 (the + side)


def object_views(split, index, size=DEFAULT_SIZE, offset=0):
    """(ids, layout) of scene `index` of `split`, for measuring whether a prediction shows the objects.

    ids: int16 (H, W) surface id map (0-5 room surfaces, 6 + k the scene's object k, see `ROOM_SURFACES`);
    layout: float32 (H, W) z-depth of the same room seen by the same camera with its objects removed, i.e. the
    prediction of a model that gets the room exactly right and shows no object.
    """
    scene = random_scene(scene_seed(split, index, offset))
    _, _, ids = render(scene, size, return_ids=True)
    scene.objects = []
    _, layout = render(scene, size)
    return ids, layout[..., 0]


def _ring(mask, width):
    """Pixels within `width` pixels (chessboard distance) of `mask`, outside it."""
    grown = mask.copy()
    for _ in range(width):
        step = grown.copy()
        step[1:] |= grown[:-1]
        step[:-1] |= grown[1:]
        step[:, 1:] |= grown[:, :-1]
        step[:, :-1] |= grown[:, 1:]
        grown = step
    return grown & ~mask


def object_measures(preds, gts, ids_maps, layouts, min_pixels=12, min_contrast=0.2, ring=2):
    """Do predictions show the objects of synthetic scenes? Two measures against the layout-only predictor.

    preds, gts, layouts: sequences of (H, W) depths in metres (`layouts` from `object_views`); ids_maps: the
    matching surface id maps. Returns a dict:

    - object_pixels, rmse_objects / rmse_objects_layout: RMSE over all object pixels (ids >= 6) of the
      predictions and of the layout-only predictor (which puts the room behind each object there);
    - objects: visible objects with at least `min_pixels` pixels and as many ring pixels (the band `ring`
      pixels wide around the object, other objects excluded) whose true contrast is at least `min_contrast` m;
    - contrast: for each such object, contrast = median depth in its ring - median depth on it (positive: the
      object stands in front of what surrounds it). `contrast_ratio` is the median over objects of
      predicted / true contrast (1 = the step to the surroundings is reproduced, 0 = no object to be seen,
      as in a smooth layout), `contrast_ratio_layout` the same for the layout-only predictor, and
      `objects_seen` the fraction of objects whose predicted contrast is at least half the true one
      (`objects_seen_layout` likewise).
    """
    squared, squared_layout, pixels = 0.0, 0.0, 0
    ratios, ratios_layout = [], []
    for pred, gt, ids, layout in zip(preds, gts, ids_maps, layouts):
        pred, gt, layout = (np.asarray(a, np.float64).reshape(ids.shape) for a in (pred, gt, layout))
        objects = ids >= 6
        squared += float(((pred - gt)[objects] ** 2).sum())
        squared_layout += float(((layout - gt)[objects] ** 2).sum())
        pixels += int(objects.sum())
        for sid in np.unique(ids[objects]):
            mask = ids == sid
            band = _ring(mask, ring) & ~objects
            if mask.sum() < min_pixels or band.sum() < min_pixels:
                continue
            true = np.median(gt[band]) - np.median(gt[mask])
            if true < min_contrast:
                continue
            ratios.append((np.median(pred[band]) - np.median(pred[mask])) / true)
            ratios_layout.append((np.median(layout[band]) - np.median(layout[mask])) / true)
    ratios, ratios_layout = np.array(ratios), np.array(ratios_layout)
    nan = float("nan")
    return {
        "object_pixels": pixels,
        "rmse_objects": math.sqrt(squared / pixels) if pixels else nan,
        "rmse_objects_layout": math.sqrt(squared_layout / pixels) if pixels else nan,
        "objects": int(ratios.size),
        "contrast_ratio": float(np.median(ratios)) if ratios.size else nan,
        "contrast_ratio_layout": float(np.median(ratios_layout)) if ratios.size else nan,
        "objects_seen": float((ratios >= 0.5).mean()) if ratios.size else nan,
        "objects_seen_layout": float((ratios_layout >= 0.5).mean()) if ratios.size else nan,
    }


def parse_options(argument):
    """'COUNT,key=value,...' (or 'COUNT?key=value&...') -> dict of strings (count, size, seed)."""
    options = {}
    if not argument:
        return options
    for part in str(argument).replace("?", ",").replace("&", ",").split(","):
        part = part.strip()
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq:
            key, value = "count", key
        key = key.strip().lower()
        if key not in ("count", "size", "seed"):
            raise ConfigError(f"Unknown synthetic option {key!r} in {argument!r}; use COUNT, count=, size=HxW, seed=.")
        options[key] = value.strip()
    return options


def _as_int(name, value, minimum):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"Synthetic option {name}={value!r} is not an integer.") from None
    if number < minimum:
        raise ConfigError(f"Synthetic option {name}={number} must be >= {minimum}.")
    return number


@register_source("synthetic")
class SyntheticSource(Source):
    """Procedural rooms rendered on the fly (see the module doc).

    SPEC: `synthetic` (default counts: train 2000, val 200, test 200; size 240x320),
    `synthetic:COUNT`, `synthetic:COUNT,size=HxW,seed=OFFSET` (or `synthetic:COUNT?size=HxW&seed=OFFSET`). Keyword options of `open_source`
    (count, size, seed) override the SPEC. COUNT applies to the split that is opened.
    """

    def __init__(self, argument=None, split="train", count=None, size=None, seed=None):
        options = parse_options(argument)
        if split not in SPLIT_SEED_BASE:
            raise ConfigError(f"Unknown split {split!r} for synthetic scenes; use one of train, val, test.")
        count = options.get("count") if count is None else count
        self.count = DEFAULT_COUNTS[split] if count is None else _as_int("count", count, 0)
        self.size = parse_size(options.get("size", DEFAULT_SIZE) if size is None else size)
        self.offset = _as_int("seed", options.get("seed", 0) if seed is None else seed, 0)
        self.split = split
        if self.offset + self.count > SPLIT_SEED_RANGE:
            raise ConfigError(f"Synthetic seed offset {self.offset} + count {self.count} exceeds 2^30 scenes per split.")

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        return make_sample(self.split, self._checked(index), self.size, self.offset)

    def depth_sample(self, index):
        """Scene `index` without its geometric ground truth: what a training pipeline reads (the edges and
        planes cost about a third more CPU per scene and the pipeline would drop them)."""
        return make_sample(self.split, self._checked(index), self.size, self.offset, geometry=False)

    def _checked(self, index):
        if index < 0:
            index += self.count
        if not 0 <= index < self.count:
            raise IndexError(f"synthetic {self.split} index {index} out of range (count {self.count})")
        return index

    def seed(self, index):
        return scene_seed(self.split, index, self.offset)

    def __repr__(self):
        return f"SyntheticSource(split={self.split!r}, count={self.count}, size={self.size[0]}x{self.size[1]}, seed={self.offset})"
