"""Streaming Keras metrics against a per-image NumPy loop (float64) over batches of unequal validity."""

import numpy as np
import pytest

from hqdepth import metrics


def reference(batches, min_depth=1e-3, max_depth=None):
    """Per image over its valid pixels, then the mean over images that have any (BTS/HQMD convention)."""
    per_image = []
    for gt_batch, pred_batch in batches:
        for gt, pred in zip(gt_batch.astype(np.float64), pred_batch.astype(np.float64)):
            with np.errstate(invalid="ignore"):
                valid = np.isfinite(gt) & (gt > min_depth)
                if max_depth is not None:
                    valid &= gt < max_depth
            if not valid.any():
                continue
            pred = np.nan_to_num(pred, nan=min_depth)
            pred = np.clip(pred, min_depth, max_depth)
            g, d = gt[valid], pred[valid]
            err = np.log(d) - np.log(g)
            thresh = np.maximum(g / d, d / g)
            per_image.append({
                "abs_rel": np.mean(np.abs(g - d) / g),
                "sq_rel": np.mean((g - d) ** 2 / g),
                "rmse": np.sqrt(np.mean((g - d) ** 2)),
                "rmse_log": np.sqrt(np.mean(err**2)),
                "log10": np.mean(np.abs(np.log10(d) - np.log10(g))),
                "silog": np.sqrt(np.mean(err**2) - np.mean(err) ** 2) * 100,
                "d1": np.mean(thresh < 1.25),
                "d2": np.mean(thresh < 1.25**2),
                "d3": np.mean(thresh < 1.25**3),
            })
    return {key: np.mean([row[key] for row in per_image]) for key in per_image[0]}, len(per_image)


def make_batches(rng, outlier="inf"):
    """Three batches of 3, 2 and 4 images with very different valid fractions (5 % to 85 % of the pixels
    dropped), the images with fewer valid pixels predicted worse: averaging per image and pooling all pixels
    then give clearly different errors. Then, unless `outlier` is None, the awkward cases: an image with no
    valid pixel, NaN ground truth, a zero prediction and an `outlier` one ("inf" or "huge", 1e6)."""
    dropped = rng.permutation(np.linspace(0.05, 0.85, 9)).reshape(9, 1, 1, 1)
    batches = []
    for batch_size, start in ((3, 0), (2, 3), (4, 5)):
        gt = rng.uniform(0.3, 12.0, (batch_size, 10, 14, 1))
        drop = dropped[start:start + batch_size]
        pred = gt * (1.0 + (0.02 + 0.8 * drop**2) * rng.uniform(-1.0, 1.0, gt.shape))
        gt[rng.uniform(size=gt.shape) < drop] = 0.0
        batches.append((gt.astype(np.float32), pred.astype(np.float32)))
    if outlier is None:
        return batches
    batches[1][0][0] = 0.0  # an image with no valid pixel: excluded, not averaged in as zeros
    batches[2][0][1, 0, 0, 0] = np.nan
    batches[2][1][2, 0, 0, 0] = {"inf": np.inf, "huge": 1e6}[outlier]
    batches[2][1][2, 0, 1, 0] = 0.0
    return batches


def stream(batches, max_depth):
    """{name: result} of the package's streaming metrics fed `batches` one by one."""
    streaming = metrics.depth_metrics(max_depth=max_depth)
    for gt, pred in batches:
        for metric in streaming:
            metric.update_state(gt, pred)
    return {metric.name: float(metric.result()) for metric in streaming}


@pytest.mark.parametrize("max_depth", [None, 10.0])
def test_streaming_metrics_match_per_image_reference(max_depth, rng):
    batches = make_batches(rng, outlier="huge" if max_depth is None else "inf")
    expected, n_images = reference(batches, max_depth=max_depth)
    assert n_images == 8
    for name, value in stream(batches, max_depth).items():
        assert value == pytest.approx(expected[name], rel=2e-5, abs=1e-6), name


def test_images_count_equally_whatever_their_valid_pixels(rng):
    """The mean over images, not over pixels: here the images with few valid pixels are the worst predicted,
    so pooling every pixel would give a clearly smaller abs_rel; the test tells the two conventions apart."""
    batches = make_batches(rng, outlier=None)
    expected, n_images = reference(batches)
    assert n_images == 9
    g = np.concatenate([b[0].ravel() for b in batches]).astype(np.float64)
    d = np.concatenate([b[1].ravel() for b in batches]).astype(np.float64)
    valid = g > 1e-3
    pooled = np.mean(np.abs(g - d)[valid] / g[valid])
    assert pooled < 0.8 * expected["abs_rel"], (pooled, expected["abs_rel"])
    assert stream(batches, None)["abs_rel"] == pytest.approx(expected["abs_rel"], rel=2e-5)


def test_reset_and_serialization(rng):
    import keras

    metric = metrics.Delta(2, max_depth=80.0)
    gt, pred = make_batches(rng)[0]
    metric.update_state(gt, pred)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    clone = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert clone.name == "d2" and clone.k == 2 and clone.max_depth == 80.0
    with pytest.raises(ValueError, match="sample_weight"):
        metric.update_state(gt, pred, sample_weight=np.ones(3))


def test_per_image_errors_is_one_formula_for_numpy_and_keras(rng):
    from keras import ops

    gt, pred = make_batches(rng)[0]
    valid = gt > 1e-3
    np_errors, np_count = metrics.per_image_errors(pred.astype(np.float64), gt.astype(np.float64), valid)
    k_errors, k_count = metrics.per_image_errors(ops.convert_to_tensor(pred), ops.convert_to_tensor(gt),
                                                 ops.convert_to_tensor(valid), xp=ops)
    np.testing.assert_array_equal(np_count, np.asarray(k_count))
    for key in metrics.METRIC_NAMES:
        np.testing.assert_allclose(np_errors[key], np.asarray(k_errors[key]), rtol=1e-5, atol=1e-6)


def test_per_image_errors_computes_the_names_asked_for(rng):
    """Each streaming metric asks for its own formula only; every subset gives the full set's values."""
    gt, pred = (batch.astype(np.float64) for batch in make_batches(rng)[0])
    valid = gt > 1e-3
    full, _ = metrics.per_image_errors(pred, gt, valid)
    for names in [(name,) for name in metrics.METRIC_NAMES] + [("silog", "rmse_log", "d3")]:
        subset, _ = metrics.per_image_errors(pred, gt, valid, names=names)
        assert list(subset) == list(names)
        for name in names:
            np.testing.assert_array_equal(subset[name], full[name])
    with pytest.raises(ValueError, match="'delta1'.*abs_rel"):
        metrics.per_image_errors(pred, gt, valid, names=("delta1",))
