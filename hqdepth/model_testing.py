"""Running a model on test images the way each protocol's official test code does (`Protocol.test_input`):
BTS on the whole frame (NYU) or the KITTI benchmark crop at native resolution with each frame's focal,
HQMD on the image resized to 289x385, Hu/SARPN on the 228x304 crop. `evaluate_model` (the
`hqdepth evaluate --model` command) and the trainer's test evaluation follow it through
`protocol_prediction`; a model trained on fixed-size crops is rebuilt with a free input size for that
(`hqdepth.models.inference.free_size_model`, weights shared).

`evaluate_source` is the trainer's test evaluation; `predict_depth` runs one image the "resize" way. Warnings go to the `hqdepth.evaluation` logger.
"""

import logging
from pathlib import Path

import numpy as np

from hqdepth.data.pair_source import parse_focal
from hqdepth.depth_model import as_model
from hqdepth.errors import ConfigError, DataError
from hqdepth.evaluator import Evaluator
from hqdepth.images import read_depth, read_rgb
from hqdepth.pairs import png_scale, progress_bar, read_pairs
from hqdepth.protocols import (
    HU_CROP, KB_CROP_SIZE, aspect_change, aspect_differs, get_protocol, hu_rgb, hu_scaled_size)
from hqdepth.resample import resize_bilinear_align_corners, resize_bilinear_cv2, resize_bilinear_tf1

log = logging.getLogger("hqdepth.evaluation")
NO_GROUND_TRUTH = object()  # `source_samples`' image for a list line the source dropped for lack of ground truth


# -------------------------------------------------------------------------------------------- samples


def data_samples(data, split, gt_scale):
    """(length, iterator of (where, rgb, gt or None, focal or None)) for a pairs file of RGB/GT paths (an
    optional third column is the focal length in pixels, as BTS lists) or a dataset SPEC (the sample's
    `meta["focal"]`, e.g. the KITTI source's list column or calibration file)."""
    path = Path(data)
    if not path.is_file() and ":" not in str(data) and ("/" in str(data) or path.suffix):
        raise DataError(f"data pairs file not found: {path}")
    if path.is_file() and path.suffix.lower() not in (".txt", ".lst", ".list", ""):
        raise ConfigError(f"--data {data}: a pairs file must be a text list (.txt); for a dataset file give a SPEC "
                          f"such as nyu-mat:{data} or csv:{data}.")
    if path.is_file():
        pairs = read_pairs(path, extra_columns=1)

        def iterate():
            for pair in pairs:
                rgb = read_rgb(pair.first, f"{pair.where} (image)")
                gt = None if pair.second is None else read_depth(pair.second, gt_scale, f"{pair.where} (ground truth)")
                yield pair.where, rgb, gt, parse_focal(pair.extra[0], pair.where) if pair.extra else None

        return len(pairs), iterate()
    from hqdepth.data import open_source

    source = open_source(data, split=split)
    return len(source), source_samples(source, f"{data} sample", dropped=True)


def source_samples(source, prefix, limit=None, skip_bad=False, dropped=False):
    """(where, rgb, depth or None, focal or None) for the first `limit` samples of a `hqdepth.data` source. With
    `skip_bad` a sample that cannot be read gives (where and why, None, None, None) instead of its `DataError`.
    `dropped`, when the whole source is read: first (where, NO_GROUND_TRUTH, None, None) for each list line the
    source dropped for lack of ground truth (`Source.without_ground_truth`), which evaluations count as skipped."""
    count = len(source) if limit is None else min(int(limit), len(source))
    for where in source.lines_without_ground_truth(count) if dropped else ():
        yield where, NO_GROUND_TRUTH, None, None
    for index in range(count):
        try:
            sample = source[index]
        except DataError as error:
            if not skip_bad:
                raise
            yield f"{prefix} {index} ({error})", None, None, None
            continue
        depth = None if sample.depth is None else np.asarray(sample.depth)
        if depth is not None and depth.ndim == 3:
            depth = depth[..., 0]
        yield f"{prefix} {sample.meta.get('id', index)}", sample.rgb, depth, sample.meta.get("focal")


# ------------------------------------------------------------------------------- models at test time


def predict_depth(model, rgb, flip=False, kb_crop=False, focal=None):
    """Depth (H, W) float32 for one RGB image with a `DepthModel` (the "resize" way of
    `protocol_prediction`, which is what the evaluators call).

    With kb_crop the image is first cut to the KITTI benchmark window and the result covers that
    window (the evaluator pastes it back). A fixed-size model gets the image resized bilinearly
    (`cv2.resize` INTER_LINEAR) to its input and the prediction resized back; so does a model with a free
    size and a run config (`DepthModel.run_size`: a BTS run's model, free for its whole-frame validation,
    runs at its training size here as a fixed one would; at its size multiple where its recipe tests at the
    image's own size). flip: mean with the un-mirrored prediction of the mirrored image. focal: the image's
    focal length in pixels for a focal-aware model (scaled with the image's width when it is resized).
    """
    image = np.asarray(rgb, dtype=np.float32)
    if kb_crop:
        height, width = image.shape[:2]
        if height < KB_CROP_SIZE[0] or width < KB_CROP_SIZE[1]:
            raise DataError(f"--kb-crop needs images of at least 352x1216, got {height}x{width}.")
        top, left = height - KB_CROP_SIZE[0], (width - KB_CROP_SIZE[1]) // 2
        image = image[top:top + KB_CROP_SIZE[0], left:left + KB_CROP_SIZE[1]]
    height, width = image.shape[:2]
    images = [image, image[:, ::-1]] if flip else [image]
    size = model.input_size
    if size is None and model.config_size is not None:
        size = tuple(model.run_size(height, width))
    if size is not None and size != (height, width):
        images = [resize_bilinear_cv2(x, *size) for x in images]
        focal = None if focal is None else focal * size[1] / width
    outputs = model(np.stack(images)) if focal is None else model(np.stack(images), focal=focal)
    preds = [p if p.shape == (height, width) else resize_bilinear_cv2(p, height, width) for p in outputs]
    if flip:
        return 0.5 * preds[0] + 0.5 * preds[1][:, ::-1]
    return preds[0]


def _required_size(protocol):
    """The one input size a protocol runs every image at, if any (the KB crop, the Hu crop)."""
    return {"kb_crop": KB_CROP_SIZE, "hu": HU_CROP}.get(protocol.test_input)


def model_for_protocol(model, protocol):
    """The model as the protocol's test runs it (a `DepthModel`; a path or a `keras.Model` is loaded or
    wrapped first): rebuilt with a free input size (`DepthModel.at_free_size`, weights shared) when the
    protocol runs the network at the image's own resolution ("native", "kb_crop", "hu") and the model was
    built for another fixed size; itself otherwise ("resize", "hqmd": the image is resized to the
    model's input)."""
    model = as_model(model)
    protocol = get_protocol(protocol)
    if protocol.test_input in ("resize", "hqmd") or model.input_size is None:
        return model
    if model.input_size == _required_size(protocol):
        return model
    return model.at_free_size()


class _Notes:
    """Warnings said once per evaluation (per pair of sizes, per missing focal)."""

    def __init__(self):
        self.said = set()

    def once(self, key, message, *args):
        if key not in self.said:
            self.said.add(key)
            log.warning(message, *args)


def _run(model, images, focal, notes):
    """The model on a list of equally sized float32 images (the original and, for flip, its mirror)."""
    if model.reference_focal is not None and focal is None:
        notes.once("focal", "no focal length for the test images: the focal-aware model runs at its reference "
                            "focal %g px (depth not rescaled per frame)", model.reference_focal)
    size = images[0].shape[:2]
    if model.input_size is not None and model.input_size != tuple(size):
        raise DataError(f"model {model.name} takes {model.input_size[0]}x{model.input_size[1]} images only; the test "
                        f"image is {size[0]}x{size[1]}.")
    if model.input_size is None:
        model.check_size(*size, f"the protocol runs the test image at {size[0]}x{size[1]} (a KB crop or a resize "
                                "runs other sizes)")
    batch = np.stack(images)
    return model(batch) if focal is None else model(batch, focal=focal)


def _with_flip(model, image, focal, flip, notes):
    images = [image, image[:, ::-1]] if flip else [image]
    outputs = _run(model, images, focal, notes)
    return 0.5 * outputs[0] + 0.5 * outputs[1][:, ::-1] if flip else outputs[0]


def protocol_prediction(model, rgb, protocol, focal=None, flip=False, notes=None):
    """The prediction the protocol's `Evaluator` takes for one test image, computed the way the protocol's
    official test code runs its network (`Protocol.test_input`).

    model: a `DepthModel` as `model_for_protocol` returns it. rgb: (H, W, 3) RGB 0..255. focal: the image's
    focal length in pixels (used by focal-aware models; scaled with the image when it is resized).
    flip: mean with the un-mirrored prediction of the mirrored image (the official codes do not flip).
    Returns a map at the image's size ("native", "resize", "hqmd"), the 352x1216 KB-crop prediction
    ("kb_crop", pasted into the frame by the evaluator) or the 228x304 Hu/SARPN crop ("hu").
    """
    protocol = get_protocol(protocol)
    notes = notes or _Notes()
    mode = protocol.test_input
    image = np.asarray(rgb, dtype=np.float32)
    height, width = image.shape[:2]
    if mode == "resize":
        if model.input_size is not None and aspect_differs((height, width), model.input_size):
            notes.once(("aspect", (height, width), model.input_size),
                       "images of %dx%d are resized to the model's input %dx%d: the aspect ratio changes by %.2f %%",
                       height, width, *model.input_size, 100 * aspect_change((height, width), model.input_size))
        return predict_depth(model, image, flip=flip, kb_crop=protocol.kb_crop, focal=focal)
    if mode == "kb_crop":
        if height < KB_CROP_SIZE[0] or width < KB_CROP_SIZE[1]:
            raise DataError(f"protocol {protocol.name} runs the network on the KB crop 352x1216; the test image is "
                            f"{height}x{width}.")
        top, left = height - KB_CROP_SIZE[0], (width - KB_CROP_SIZE[1]) // 2
        crop = image[top:top + KB_CROP_SIZE[0], left:left + KB_CROP_SIZE[1]]
        pred = _with_flip(model, crop, focal, flip, notes)
        return pred if pred.shape == KB_CROP_SIZE else resize_bilinear_cv2(pred, *KB_CROP_SIZE)
    if mode == "native":
        pred = _with_flip(model, image, focal, flip, notes)
        return pred if pred.shape == (height, width) else resize_bilinear_cv2(pred, height, width)
    if mode == "hu":
        crop = hu_rgb(image).astype(np.float32)
        scale = hu_scaled_size(height, width)[1] / width
        pred = _with_flip(model, crop, None if focal is None else focal * scale, flip, notes)
        return pred if pred.shape == HU_CROP else resize_bilinear_align_corners(pred, *HU_CROP)
    # "hqmd": RGB resized to the model's input with TF1 resize_images, depth back with cv2 INTER_LINEAR.
    size = model.input_size or model.config_size or (height, width)
    if aspect_differs((height, width), size):
        notes.once(("aspect", (height, width), size),
                   "images of %dx%d are resized to the model's input %dx%d: the aspect ratio changes by %.2f %%",
                   height, width, *size, 100 * aspect_change((height, width), size))
    small = resize_bilinear_tf1(image, *size) if tuple(size) != (height, width) else image
    pred = _with_flip(model, small, None if focal is None else focal * size[1] / width, flip, notes)
    return pred if pred.shape == (height, width) else resize_bilinear_cv2(pred, height, width)


def evaluate_source(model, source, protocol, *, name="sample", limit=None, flip=False, ssim=False,
                    ssim_max_val=None, resize_any=False, progress=False, skip_bad=False):
    """Run a model over a `hqdepth.data` source (its first `limit` samples) and evaluate under a protocol,
    each image run as the protocol's official test runs it (`model_for_protocol`, `protocol_prediction`), with
    each sample's focal length (`meta["focal"]`). This is the trainer's test evaluation. `skip_bad`: a sample that
    cannot be read is skipped with a warning and counted in `skipped` (`data.skip_bad`), instead of raising. The
    list lines without ground truth count in `skipped` too when the whole source is evaluated (KITTI's Eigen test
    list: 45 of 697)."""
    count = len(source) if limit is None else min(int(limit), len(source))
    return _evaluate(model, source_samples(source, name, limit, skip_bad, dropped=True), count, protocol, flip=flip,
                     ssim=ssim, ssim_max_val=ssim_max_val, resize_any=resize_any, progress=progress)


def evaluate_model(model, data, protocol, split="test", flip=False, gt_scale=None, ssim=False, ssim_max_val=None,
                   resize_any=False, progress=True):
    """Run a model (path, `DepthModel` or `keras.Model`) over a dataset (pairs file of RGB/GT paths with an
    optional focal column, or a SPEC) and evaluate; each image is run as the protocol's official test runs
    it (`protocol_prediction`) with its own focal length when the data gives one."""
    protocol = get_protocol(protocol)
    total, samples = data_samples(data, split, png_scale(gt_scale, protocol))
    return _evaluate(model, samples, total, protocol, flip=flip, ssim=ssim, ssim_max_val=ssim_max_val,
                     resize_any=resize_any, progress=progress)


def _evaluate(model, samples, total, protocol, flip, ssim, ssim_max_val, resize_any, progress):
    protocol = get_protocol(protocol)
    model = model_for_protocol(model, protocol)
    scoring = protocol.with_options(kb_crop=True) if protocol.test_input == "kb_crop" else protocol
    evaluator = Evaluator(scoring, ssim=ssim, ssim_max_val=ssim_max_val, resize_any=resize_any)
    notes = _Notes()
    with progress_bar(total, "predict+evaluate", progress) as bar:
        for where, rgb, gt, focal in samples:
            if rgb is NO_GROUND_TRUTH:
                evaluator.skip(where, "no ground truth in the list", warn=False)  # the source said how many
                continue
            if rgb is None:
                evaluator.skip(where, "unreadable")
            elif gt is None:
                evaluator.skip(where)
            else:
                evaluator.check_ground_truth(np.shape(gt), where)  # before the network runs on the image
                pred = protocol_prediction(model, rgb, protocol, focal=focal, flip=flip, notes=notes)
                evaluator.add(pred, gt, where)
            bar.update()
    return evaluator.result()
