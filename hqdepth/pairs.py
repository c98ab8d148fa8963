"""Evaluating prediction files: pairs files of `<first> <second> [extra columns]` lines (`read_pairs`) and
`evaluate_pairs` (the `hqdepth evaluate --pairs` command), with the PNG scale and progress-bar helpers the
file-reading evaluations share. Warnings go to the `hqdepth.evaluation` logger."""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hqdepth.errors import DataError
from hqdepth.evaluator import Evaluator
from hqdepth.images import read_depth
from hqdepth.protocols import get_protocol

log = logging.getLogger("hqdepth.evaluation")


@dataclass(frozen=True)
class PairLine:
    """One line of a pairs file: line number, first and second path (second None for a 'None' entry), and the
    extra columns (e.g. a BTS focal length)."""

    where: str
    first: Path
    second: Path | None
    extra: tuple = ()


def read_pairs(pairs_file, extra_columns=0):
    """Lines `<first> <second>` (plus up to `extra_columns` columns kept in `PairLine.extra`, e.g. a BTS focal).

    Paths are relative to the pairs file's folder; blank lines and `#` comments are skipped; a second
    entry `None` (BTS KITTI lines without ground truth) gives `second=None`.
    """
    pairs_file = Path(pairs_file)
    if not pairs_file.is_file():
        raise DataError(f"pairs file not found: {pairs_file}")
    try:
        lines = pairs_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read pairs file {pairs_file}: {error}") from None
    root = pairs_file.parent
    pairs = []
    for number, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        where = f"{pairs_file} line {number}"
        if not 2 <= len(tokens) <= 2 + extra_columns:
            expected = "2" if not extra_columns else f"2 to {2 + extra_columns}"
            raise DataError(f"{where}: expected {expected} whitespace-separated paths, got {len(tokens)}: {line!r}")
        second = None if tokens[1] == "None" else root / tokens[1]
        pairs.append(PairLine(where, root / tokens[0], second, tuple(tokens[2:])))
    if not pairs:
        raise DataError(f"pairs file {pairs_file} lists no image.")
    return pairs


def png_scale(explicit, protocol):
    """The PNG value per metre: `explicit` when given, else the protocol's default (None if it has none)."""
    return float(explicit) if explicit is not None else protocol.png_scale


def progress_bar(total, desc, progress):
    """A tqdm bar over `total` images (disabled unless `progress`)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not progress, dynamic_ncols=True)


def evaluate_pairs(pairs_file, protocol, pred_scale=None, gt_scale=None, ssim=False, ssim_max_val=None,
                   resize_any=False, progress=True):
    """Evaluate a pairs file of `<prediction> <ground truth>` lines under a protocol."""
    protocol = get_protocol(protocol)
    pairs = read_pairs(pairs_file)
    evaluator = Evaluator(protocol, ssim=ssim, ssim_max_val=ssim_max_val, resize_any=resize_any)
    for pair, pred, gt in pair_maps(pairs, protocol, pred_scale, gt_scale, progress, evaluator.skip):
        evaluator.add(pred, gt, pair.where, prediction=str(pair.first), ground_truth=str(pair.second))
    return evaluator.result()


def pair_maps(pairs, protocol, pred_scale, gt_scale, progress, on_skip):
    """Yield (pair, prediction, ground truth) in metres for each line of `pairs` that has ground truth;
    `on_skip(where)` for a line without. Warns once about 8-bit PNGs; a progress bar counts every line."""
    pred_scale, gt_scale = png_scale(pred_scale, protocol), png_scale(gt_scale, protocol)
    warned_8bit = False
    with progress_bar(len(pairs), "evaluate", progress) as bar:
        for pair in pairs:
            if pair.second is None:
                on_skip(pair.where)
            else:
                if not warned_8bit:
                    warned_8bit = warn_8bit(pair, pred_scale, gt_scale)
                yield (pair, read_depth(pair.first, pred_scale, f"{pair.where} (prediction)"),
                       read_depth(pair.second, gt_scale, f"{pair.where} (ground truth)"))
            bar.update()


def warn_8bit(pair, pred_scale, gt_scale):
    """Warn once when an 8-bit PNG is read: its value/scale meaning depends on the writer."""
    import cv2

    for path, scale in ((pair.first, pred_scale), (pair.second, gt_scale)):
        if path.suffix.lower() == ".png" and path.is_file():
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if image is not None and image.dtype == np.uint8 and image.ndim == 2:  # else read_depth refuses it
                log.warning("%s: %s is an 8-bit PNG, read as value / %g m (max %.3f m); set --pred-scale/--gt-scale "
                            "if it was written with another scale (DenseDepth's 8-bit depth is value / 25.5).",
                            pair.where, path, scale, 255 / scale)
                return True
    return False
