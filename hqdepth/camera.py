"""Pinhole camera intrinsics for point clouds: known cameras (`CAMERAS`), user-given values
(`camera_intrinsics`, the `hqdepth predict --camera/--fx/--fy/--cx/--cy` options) and a guess for a photo of
unknown camera (`guess_intrinsics`). NumPy-free, no TensorFlow."""

import math
from dataclasses import dataclass

from hqdepth.errors import ConfigError

FOV_GUESS_DEGREES = 60.0


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels, OpenCV convention: pixel (u, v) = column, row of its centre, 0-based.

    `width`/`height` is the image size they belong to (None: the image they are used with).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int | None = None
    height: int | None = None
    source: str = "given"

    def for_image(self, height, width):
        """These intrinsics for an image of (height, width): scaled when they belong to another size."""
        if self.width is None or (self.width, self.height) == (width, height):
            return self
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5,
                          width, height, f"{self.source}, scaled from {self.width}x{self.height}")

    def stretch_note(self, height, width):
        """Why `for_image(height, width)` distorts the point cloud, or None: an image of another aspect ratio (beyond
        1 %) than the frames these intrinsics belong to is not a resize of them, and x and y scale differently."""
        if self.width is None or abs((width / self.width) / (height / self.height) - 1.0) <= 0.01:
            return None
        return (f"the intrinsics of the {self.source} belong to {self.width}x{self.height} frames; scaled to "
                f"{width}x{height} images (another aspect ratio) they stretch the point clouds. Give the photos' own "
                f"--fx/--fy/--cx/--cy, or leave them out for a guess.")

    def to_dict(self):
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "source": self.source}


CAMERAS = {
    # NYU Depth v2 toolbox RGB camera (specs/evaluation_and_data.md §4.1), 640x480.
    "nyu": Intrinsics(518.8579, 519.46961, 325.58245, 253.73617, 640, 480, "NYU Depth v2 RGB camera"),
    # KITTI raw 2011_09_26 calibration, rectified left colour camera (P_rect_02), 1242x375. Other days differ by
    # up to 2 % (the Eigen split lists focal lengths 707-721).
    "kitti": Intrinsics(721.5377, 721.5377, 609.5593, 172.854, 1242, 375, "KITTI 2011_09_26 P_rect_02"),
}


def guess_intrinsics(height, width, fov_degrees=FOV_GUESS_DEGREES):
    """A guess for a photo of unknown camera: horizontal field of view `fov_degrees`, square pixels, centre."""
    focal = (width / 2.0) / math.tan(math.radians(fov_degrees) / 2.0)
    return Intrinsics(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0, width, height,
                      f"guess: {fov_degrees:g}-degree horizontal field of view")


def camera_intrinsics(camera=None, fx=None, fy=None, cx=None, cy=None):
    """Intrinsics from `--camera` or `--fx/--fy/--cx/--cy` (fy defaults to fx, cx/cy to the image centre), or None."""
    given = {"fx": fx, "fy": fy, "cx": cx, "cy": cy}
    if camera is not None:
        if any(value is not None for value in given.values()):
            raise ConfigError("give either --camera or --fx/--fy/--cx/--cy, not both.")
        if camera not in CAMERAS:
            raise ConfigError(f"unknown camera {camera!r}; known: {', '.join(CAMERAS)}.")
        return CAMERAS[camera]
    if all(value is None for value in given.values()):
        return None
    if fx is None:
        raise ConfigError("--fy/--cx/--cy need --fx (the focal length in pixels).")
    for name, value in given.items():
        if value is not None and not math.isfinite(value):
            raise ConfigError(f"--{name} must be a finite number, got {value}.")
    if fx <= 0 or (fy is not None and fy <= 0):
        raise ConfigError(f"focal lengths must be positive, got fx={fx}, fy={fy}.")
    return _PartialIntrinsics(float(fx), float(fy if fy is not None else fx), cx, cy)


@dataclass(frozen=True)
class _PartialIntrinsics:
    """User-given focal lengths, principal point defaulting to the centre of each image (pixels of that image)."""

    fx: float
    fy: float
    cx: float | None
    cy: float | None

    def stretch_note(self, height, width):
        """None: given in the pixels of the images they are used with (`Intrinsics.stretch_note`)."""
        return None

    def for_image(self, height, width):
        cx = (width - 1) / 2.0 if self.cx is None else float(self.cx)
        cy = (height - 1) / 2.0 if self.cy is None else float(self.cy)
        return Intrinsics(self.fx, self.fy, cx, cy, width, height, "given")
