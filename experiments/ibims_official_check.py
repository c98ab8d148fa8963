"""Check `hqdepth.geometry` against the official iBims-1 evaluation functions on synthetic scenes.

The official code (T. Koch's `evaluate_ibims_error_metrics.py`, in the iBims-1 `evaluation_scripts.zip` or one
of its copies, see ../shared/specs or docs/evaluation.md) is not part of this project: pass your copy.

    python experiments/ibims_official_check.py --official /path/to/evaluate_ibims_error_metrics.py

It calls `compute_depth_boundary_error`, `compute_directed_depth_error` and `compute_planarity_error` the way the
official driver does (DBE on the unmasked prediction; DDE and PE on prediction and ground truth times the
validity mask; one plane per mask with its true normal in columns 4..6 of its parameter row) and compares
them with `GeometryEvaluator.add` / `planarity_errors` per image and per plane, on synthetic test scenes with
three perturbed predictions each (blurred, rescaled, noisy and shifted; a 1/8-resolution prediction upsampled;
2 % missing predictions and 5 % missing ground truth). The official 5 % plane rule counts 15,360 pixels
whatever the frame, so the comparison uses that count (`plane_min_pixels`); hqdepth's default scales it to
smaller frames. Exit status 1 when a difference exceeds --tolerance.
"""

import argparse
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np


def load_official(path):
    """The official module from `path`; a missing file or a package it imports (it needs scikit-learn, which
    hqdepth does not install; some copies also import matplotlib) stops with a message."""
    if not Path(path).is_file():
        raise SystemExit(f"{path}: no such file (pass your copy of evaluate_ibims_error_metrics.py).")
    spec = importlib.util.spec_from_file_location("official_ibims_metrics", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as error:
        raise SystemExit(f"{path} imports {error.name!r}, which is not installed here (pip install "
                         f"{'scikit-learn' if error.name == 'sklearn' else error.name}).") from None
    return module


def predictions(gt, rng):
    """Three perturbed predictions of the true depth `gt` (0 = none), and the ground truth each is scored on."""
    import cv2

    h, w = gt.shape
    blurred = cv2.GaussianBlur(gt, (0, 0), 2.0) * rng.uniform(0.85, 1.15) * (1 + 0.02 * rng.standard_normal(gt.shape))
    yield np.roll(blurred, int(rng.integers(-3, 4)), axis=1), gt
    small = cv2.resize(gt, (max(w // 8, 1), max(h // 8, 1)), interpolation=cv2.INTER_AREA)
    yield cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) * rng.uniform(0.9, 1.1), gt
    holes = gt * rng.uniform(0.9, 1.1) + 0.05 * rng.standard_normal(gt.shape)
    holes[rng.random(gt.shape) < 0.02] = 0.0
    missing = gt.copy()
    missing[rng.random(gt.shape) < 0.05] = 0.0
    yield holes, missing


def compare(official, size, scenes, seed):
    """{metric: largest |hqdepth - official|} and counts over `scenes` synthetic test scenes of `size`."""
    from hqdepth import geometry
    from hqdepth.data import open_source

    rng = np.random.default_rng(seed)
    worst, counts = {}, {"images": 0, "planes scored": 0, "dbe fallback": 0}

    def record(name, ours, theirs):
        if math.isnan(ours) != math.isnan(theirs):
            worst[name] = math.inf
        elif not math.isnan(ours):
            worst[name] = max(worst.get(name, 0.0), abs(ours - theirs))

    for sample in open_source(f"synthetic:{scenes}?size={size[0]}x{size[1]}", split="test"):
        meta = sample.meta
        fx, fy, cx, cy = meta["intrinsics"]
        calib = np.array([[fx, 0, 0], [0, fy, 0], [cx, cy, 1.0]])  # stored transposed, as in the release
        for pred, gt in predictions(sample.depth[..., 0].astype(np.float64), rng):
            ours = geometry.GeometryEvaluator().add(pred, gt, edges=meta["edges"])
            acc, comp = official.compute_depth_boundary_error(meta["edges"].astype(np.float64), pred.copy())[:2]
            record("dbe_acc", ours["dbe_acc"], acc)
            record("dbe_comp", ours["dbe_comp"], comp)
            counts["dbe fallback"] += acc == 10.0
            valid = (gt != 0) & (pred != 0)
            gm, pm = gt * valid, pred * valid
            theirs = official.compute_directed_depth_error(gm.ravel().copy(), pm.ravel().copy(), 3.0)
            for name, value in zip(("dde_0", "dde_minus", "dde_plus"), theirs):
                record(name, ours[name], value)
            planes = geometry.planarity_errors(pm, gm, meta["plane_ids"], meta["plane_normals"], meta["intrinsics"],
                                               min_pixels=geometry.PLANE_MIN_PIXELS)
            for (flat, orie), pid in zip(planes, sorted(int(i) for i in np.unique(meta["plane_ids"]) if i > 0)):
                paras = np.zeros((1, 7))  # one row (copies without the official 1-D handling need 2-D)
                paras[0, 4:7] = meta["plane_normals"][pid]
                mask = (meta["plane_ids"] == pid) * valid.astype(np.float64)
                theirs_flat, theirs_orie = official.compute_planarity_error(gm.copy(), pm.copy(), paras, mask, calib)
                record("pe_plan", flat, float(theirs_flat[0]))
                record("pe_orie", orie, float(theirs_orie[0]))
                counts["planes scored"] += not math.isnan(float(theirs_flat[0]))
            counts["images"] += 1
    return worst, counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="path of the official evaluate_ibims_error_metrics.py")
    parser.add_argument("--sizes", default="480x640,240x320,64x96", help="comma-separated HxW frame sizes")
    parser.add_argument("--scenes", type=int, default=12, help="synthetic test scenes per size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args(argv)
    official = load_official(args.official)
    failed = False
    for number, text in enumerate(args.sizes.split(",")):
        size = tuple(int(v) for v in text.lower().split("x"))
        worst, counts = compare(official, size, args.scenes, args.seed + number)
        print(f"{size[0]}x{size[1]}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        for name, value in worst.items():
            flag = "" if value <= args.tolerance else "   <-- exceeds the tolerance"
            failed |= bool(flag)
            print(f"  {name:10s} largest |hqdepth - official| = {value:.3g}{flag}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
