"""Point clouds from depth maps: back-projection with pinhole intrinsics (`hqdepth.camera.Intrinsics`) and
binary PLY files."""

import numpy as np


def backproject(depth, intrinsics, step=1):
    """Points (N, 3) float32 in metres, camera frame x right, y down, z forward (OpenCV), and their pixel
    (rows, cols): X = (u - cx) Z / fx, Y = (v - cy) Z / fy, Z = depth[v, u] (z-depth). Invalid depth is left out;
    `step` takes every step-th row and column."""
    depth = np.asarray(depth, dtype=np.float32)
    rows, cols = np.mgrid[0:depth.shape[0]:step, 0:depth.shape[1]:step]
    z = depth[rows, cols]
    keep = np.isfinite(z) & (z > 0)
    rows, cols, z = rows[keep], cols[keep], z[keep].astype(np.float64)
    x = (cols - intrinsics.cx) * z / intrinsics.fx
    y = (rows - intrinsics.cy) * z / intrinsics.fy
    return np.stack([x, y, z], axis=-1).astype(np.float32), (rows, cols)


def write_ply(path, depth, rgb, intrinsics, step=1):
    """Binary little-endian PLY of coloured points (x, y, z float32 metres; red, green, blue uint8) from a
    depth map and its RGB image of the same size. Returns the number of points."""
    points, (rows, cols) = backproject(depth, intrinsics, step)
    colours = np.asarray(rgb, dtype=np.uint8)[rows, cols]
    vertex = np.empty(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                          ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    vertex["x"], vertex["y"], vertex["z"] = points[:, 0], points[:, 1], points[:, 2]
    vertex["red"], vertex["green"], vertex["blue"] = colours[:, 0], colours[:, 1], colours[:, 2]
    header = "\n".join([
        "ply", "format binary_little_endian 1.0",
        "comment hqdepth point cloud: metres, camera frame x right, y down, z forward (OpenCV)",
        f"comment intrinsics fx {intrinsics.fx!r} fy {intrinsics.fy!r} cx {intrinsics.cx!r} cy {intrinsics.cy!r} "
        f"({intrinsics.source})",
        f"element vertex {len(vertex)}",
        "property float x", "property float y", "property float z",
        "property uchar red", "property uchar green", "property uchar blue",
        "end_header",
    ]) + "\n"
    with open(path, "wb") as handle:
        handle.write(header.encode("ascii"))
        handle.write(vertex.tobytes())
    return len(vertex)
