"""Protocol evaluator and `hqdepth evaluate` against independent references of the official evaluators.

The references below are transcriptions, written for this test, of the published formulas and
pipelines: BTS `compute_errors(gt, pred)` and the loop of `utils/eval_with_pngs.py` (clip, GT
clean-up, valid range, Eigen/Garg masks, KB paste), HQMD `metrics.compute_metrics_for_single_map`
(+ the `[-460:-20, 25:617]` crop of `test_nyu_depth_v2.py`) and DenseDepth `utils.compute_errors`
over the pooled, cropped test set. They never call hqdepth code. Each runs in float32 like the
originals (tolerance 1e-5) and in float64 (tolerance ~1e-10).
"""

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from hqdepth.cli import main
from hqdepth.errors import ConfigError, DataError
from hqdepth.evaluation import (
    PROTOCOLS, DepthModel, Evaluator, custom_protocol, depth_ssim, evaluate_arrays, get_protocol, predict_depth,
)
from test_strict_json import strict_loads

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "d1", "d2", "d3")


# ------------------------------------------------------------------------ independent references


def ref_errors(gt, pred):
    """BTS compute_errors(gt, pred) on 1-D arrays of valid pixels (dtype kept, as the original).

    The delta ratio is always taken on float32 values, as every official evaluator does (their
    maps are float32): with quantised PNG depth many pixels sit exactly on 1.25^k.
    """
    with np.errstate(over="ignore"):
        gt32, pred32 = gt.astype(np.float32), pred.astype(np.float32)
    ratio = np.maximum(gt32 / pred32, pred32 / gt32)
    log_err = np.log(pred) - np.log(gt)
    out = {
        "abs_rel": np.mean(np.abs(gt - pred) / gt),
        "sq_rel": np.mean((gt - pred) ** 2 / gt),
        "rmse": np.sqrt(np.mean((gt - pred) ** 2)),
        "rmse_log": np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2)),
        "log10": np.mean(np.abs(np.log10(pred) - np.log10(gt))),
        "silog": np.sqrt(np.mean(log_err**2) - np.mean(log_err) ** 2) * 100,
    }
    for k in (1, 2, 3):
        out[f"d{k}"] = np.mean(ratio < 1.25**k)
    return {key: float(value) for key, value in out.items()}


def ref_bts(pred, gt, min_depth, max_depth, crop=None, dataset="nyu", kb=False, dtype=np.float32):
    """One image through the BTS evaluation loop (eval_with_pngs.py order: clip, then KB paste)."""
    pred = np.array(pred, dtype=dtype)
    gt = np.array(gt, dtype=dtype)
    pred[pred < min_depth] = min_depth
    pred[pred > max_depth] = max_depth
    pred[np.isinf(pred)] = max_depth
    pred[np.isnan(pred)] = min_depth  # bts_eval.py / bts_main.py online eval
    gt[np.isinf(gt)] = 0
    gt[np.isnan(gt)] = 0
    valid = np.logical_and(gt > min_depth, gt < max_depth)
    h, w = gt.shape
    if kb:
        canvas = np.zeros((h, w), dtype=dtype)
        canvas[h - 352:h, (w - 1216) // 2:(w - 1216) // 2 + 1216] = pred
        pred = canvas
    if crop is not None:
        box = np.zeros(gt.shape)
        if crop == "garg":
            box[int(0.40810811 * h):int(0.99189189 * h), int(0.03594771 * w):int(0.96405229 * w)] = 1
        elif dataset == "kitti":
            box[int(0.3324324 * h):int(0.91351351 * h), int(0.0359477 * w):int(0.96405229 * w)] = 1
        else:
            box[45:471, 41:601] = 1
        valid = np.logical_and(valid, box)
    return ref_errors(gt[valid], pred[valid])


def ref_hqmd(pred, gt, cap=10, dtype=np.float32):
    """HQMD test crop + compute_metrics_for_single_map, plus silog on the same pixels."""
    gt = np.array(gt, dtype=dtype)[-460:-20, 25:617]
    pred = np.array(pred, dtype=dtype)[-460:-20, 25:617]
    mask = gt > 0.01
    gt[gt <= 0.01] = 0.01
    pred[pred <= 0.01] = 0.01
    mask = np.logical_and(mask, gt <= cap)
    n = np.sum(mask)
    with np.errstate(all="ignore"):
        def masked_sum(values):
            values = values.copy()
            values[~mask] = 0
            return np.sum(values)

        ratio = np.maximum(gt.astype(np.float32) / pred.astype(np.float32),
                           pred.astype(np.float32) / gt.astype(np.float32))  # float32, as the HQMD maps
        out = {
            "abs_rel": masked_sum(np.abs(gt - pred) / gt) / n,
            "sq_rel": masked_sum(np.square(gt - pred) / gt) / n,
            "rmse": np.sqrt(masked_sum(np.square(gt - pred)) / n),
            "rmse_log": np.sqrt(masked_sum(np.square(np.log(gt) - np.log(pred))) / n),
            "log10": masked_sum(np.abs(np.log10(gt) - np.log10(pred))) / n,
        }
        for k in (1, 2, 3):
            out[f"d{k}"] = np.sum(np.logical_and(ratio < 1.25**k, mask)) / n
        e = np.log(pred[mask]) - np.log(gt[mask])
        out["silog"] = np.sqrt(np.mean(e**2) - np.mean(e) ** 2) * 100
    return {key: float(value) for key, value in out.items()}


def ref_densedepth(preds, gts, swap=False, dtype=np.float32):
    """DenseDepth evaluate(): predict() clip to [0.1, 10] m, crop [20:460, 24:616], all pixels pooled."""
    pred = np.stack([np.clip(np.array(p, dtype=dtype), 0.1, 10.0)[20:460, 24:616] for p in preds]).ravel()
    gt = np.stack([np.array(g, dtype=dtype)[20:460, 24:616] for g in gts]).ravel()
    return ref_errors(pred, gt) if swap else ref_errors(gt, pred)


def mean_rows(rows):
    return {key: float(np.mean([row[key] for row in rows])) for key in NAMES}


def assert_close(ours, ref, tol, what="", delta_tol=None):
    """|ours - ref| <= tol * max(1, |ref|) for every metric (NaN/inf must agree); delta_tol for d1..d3."""
    for key in ref:
        a, b = float(ours[key]), float(ref[key])
        if not (np.isfinite(a) and np.isfinite(b)):
            assert (np.isnan(a) and np.isnan(b)) or a == b, f"{what} {key}: ours {a} vs reference {b}"
            continue
        limit = delta_tol if delta_tol is not None and key in ("d1", "d2", "d3") else tol * max(1.0, abs(b))
        assert abs(a - b) <= limit, f"{what} {key}: ours {a!r} vs reference {b!r}"


@pytest.fixture
def rng():
    """Fresh random data each run; the seed is in the test id's failure output."""
    seed = int(np.random.SeedSequence().entropy % 2**32)
    print(f"seed {seed}")
    return np.random.default_rng(seed)


def make_case(rng, shape, max_depth, hole_fraction=0.1, special=True):
    """Ground truth with holes, NaN, inf and values beyond the cap; a prediction near it with zeros,
    negatives, +-inf, NaN and values beyond the cap (float32, as read from files)."""
    gt = rng.uniform(0.3, max_depth * 1.15, shape)
    gt[rng.random(shape) < hole_fraction] = 0
    pred = np.where(gt > 0, gt, rng.uniform(0.3, max_depth, shape)) * rng.lognormal(0.0, 0.2, shape)
    if special:
        flat_gt, flat_pred = gt.reshape(-1), pred.reshape(-1)
        idx = rng.choice(gt.size, 60, replace=False)
        flat_gt[idx[:3]] = np.nan
        flat_gt[idx[3:6]] = np.inf
        flat_gt[idx[6:9]] = max_depth  # on the upper boundary
        flat_pred[idx[10:20]] = 0
        flat_pred[idx[20:25]] = -1.5
        flat_pred[idx[25:30]] = np.inf
        flat_pred[idx[30:33]] = -np.inf
        flat_pred[idx[33:40]] = np.nan
        flat_pred[idx[40:50]] = max_depth * 3
    return pred.astype(np.float32), gt.astype(np.float32)


# -------------------------------------------------------------------------------------- protocols


def test_protocol_objects_match_the_spec():
    bounds = {name: PROTOCOLS[name].crop.bounds(480, 640) for name in ("nyu-eigen", "nyu-hqmd", "nyu-densedepth")}
    assert bounds == {"nyu-eigen": (45, 471, 41, 601), "nyu-hqmd": (20, 460, 25, 617),
                      "nyu-densedepth": (20, 460, 24, 616)}
    assert PROTOCOLS["kitti-garg"].crop.bounds(375, 1242) == (153, 371, 44, 1197)
    assert PROTOCOLS["kitti-eigen"].crop.bounds(375, 1242) == (124, 342, 44, 1197)
    eigen, hqmd, dense = PROTOCOLS["nyu-eigen"], PROTOCOLS["nyu-hqmd"], PROTOCOLS["nyu-densedepth"]
    assert (eigen.min_depth, eigen.max_depth, eigen.max_inclusive, eigen.clip) == (1e-3, 10.0, False, (1e-3, 10.0))
    assert (hqmd.min_depth, hqmd.max_depth, hqmd.max_inclusive, hqmd.clip, hqmd.clamp_floor) == (
        0.01, 10.0, True, None, 0.01)
    assert dense.averaging == "pooled" and not dense.densedepth_swap_bug
    for name in ("kitti-garg", "kitti-eigen"):
        assert (PROTOCOLS[name].max_depth, PROTOCOLS[name].clip, PROTOCOLS[name].png_scale) == (80.0, (1e-3, 80.0), 256)
    assert set(PROTOCOLS) == {"nyu-eigen", "nyu-hqmd", "nyu-densedepth", "kitti-garg", "kitti-eigen", "nyu-hu",
                              "custom"}
    # delta comparison: `<` in BTS compute_errors, HQMD metrics.py, DenseDepth utils.py; `<=` (torch.le) in Hu et al.
    # util.py and SARPN utils.py. How a model sees a test image follows each official test script.
    assert {name: p.delta_comparison for name, p in PROTOCOLS.items()} == {
        "nyu-eigen": "<", "nyu-hqmd": "<", "nyu-densedepth": "<", "kitti-garg": "<", "kitti-eigen": "<",
        "nyu-hu": "<=", "custom": "<"}
    assert {name: p.test_input for name, p in PROTOCOLS.items()} == {
        "nyu-eigen": "native", "nyu-hqmd": "hqmd", "nyu-densedepth": "native", "kitti-garg": "kb_crop",
        "kitti-eigen": "kb_crop", "nyu-hu": "hu", "custom": "resize"}
    hu = PROTOCOLS["nyu-hu"]
    assert (hu.crop, hu.clip, hu.clamp_floor, hu.mask, hu.averaging, hu.frame_size) == (
        None, None, None, "nan", "rms_of_mse", (480, 640))
    with pytest.raises(ConfigError, match="delta_comparison"):
        custom_protocol(delta_comparison="=<")
    assert all(p.description and p.used_by for p in PROTOCOLS.values())
    with pytest.raises(ConfigError, match="Unknown protocol"):
        get_protocol("nyu")
    with pytest.raises(ConfigError, match="averaging"):
        custom_protocol(averaging="median")


def test_evaluation_module_reexports_the_split_modules():
    import hqdepth.evaluation
    import hqdepth.evaluator
    import hqdepth.model_testing
    import hqdepth.protocols

    # hqdepth.metrics no longer re-exports the evaluator (that was an import cycle; tests/test_layout.py).
    assert hqdepth.evaluation.PROTOCOLS is hqdepth.protocols.PROTOCOLS
    assert hqdepth.evaluation.evaluate_arrays is hqdepth.evaluator.evaluate_arrays is evaluate_arrays
    assert hqdepth.evaluation.evaluate_source is hqdepth.model_testing.evaluate_source


def test_nyu_eigen_matches_bts(rng):
    cases = [make_case(rng, (480, 640), 10.0) for _ in range(3)]
    result = evaluate_arrays([p for p, _ in cases], [g for _, g in cases], "nyu-eigen")
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-5)):
        refs = [ref_bts(p, g, 1e-3, 10, crop="eigen", dtype=dtype) for p, g in cases]
        for row, ref in zip(result.rows, refs):
            assert_close(row, ref, tol, f"per image {dtype.__name__}")
        assert_close(result.metrics, mean_rows(refs), tol, f"mean {dtype.__name__}")
    assert result.count == 3 and 0.7 * 426 * 560 < result.rows[0]["valid_pixels"] < 0.85 * 426 * 560


@pytest.mark.parametrize("name, crop", [("kitti-garg", "garg"), ("kitti-eigen", "eigen")])
def test_kitti_matches_bts_full_frame_and_kb_crop(rng, name, crop):
    for shape in ((375, 1242), (370, 1224)):
        pred, gt = make_case(rng, shape, 80.0, hole_fraction=0.8)
        row = Evaluator(name).add(pred, gt)
        assert_close(row, ref_bts(pred, gt, 1e-3, 80, crop=crop, dataset="kitti", dtype=np.float64), 1e-10, shape)
        assert_close(row, ref_bts(pred, gt, 1e-3, 80, crop=crop, dataset="kitti"), 1e-5, shape)
        kb_pred = pred[shape[0] - 352:, (shape[1] - 1216) // 2:(shape[1] - 1216) // 2 + 1216]
        row = Evaluator(get_protocol(name, kb_crop=True)).add(kb_pred, gt)
        ref = ref_bts(kb_pred, gt, 1e-3, 80, crop=crop, dataset="kitti", kb=True, dtype=np.float64)
        assert_close(row, ref, 1e-10, f"kb {shape}")
    with pytest.raises(DataError, match="kb-crop"):
        Evaluator(name).add(kb_pred, gt, "x.txt line 3")


def test_nyu_hqmd_matches_hqmd_code(rng):
    cases = [make_case(rng, (480, 640), 10.0) for _ in range(3)]
    finite = [(np.nan_to_num(p, nan=0.0, posinf=30.0, neginf=-1.0), g) for p, g in cases]
    result = evaluate_arrays([p for p, _ in finite], [g for _, g in finite], "nyu-hqmd")
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-5)):
        refs = [ref_hqmd(p, g, dtype=dtype) for p, g in finite]
        for row, ref in zip(result.rows, refs):
            assert_close(row, ref, tol, f"per image {dtype.__name__}")
        assert_close(result.metrics, mean_rows(refs), tol, f"mean {dtype.__name__}")
    # The HQMD code does not clip +inf or NaN: its metrics become inf/NaN, and so do ours.
    row = Evaluator("nyu-hqmd").add(*cases[0])
    ref = ref_hqmd(*cases[0], dtype=np.float64)
    assert not np.isfinite(ref["abs_rel"])
    assert_close(row, ref, 1e-10, "non-finite prediction")


def test_nyu_densedepth_pooled_and_swap_bug(rng):
    cases = [make_case(rng, (480, 640), 10.0, hole_fraction=0.0, special=False) for _ in range(3)]
    preds, gts = [p for p, _ in cases], [g for _, g in cases]  # dense ground truth, as DenseDepth's
    result = evaluate_arrays(preds, gts, "nyu-densedepth")
    assert_close(result.metrics, ref_densedepth(preds, gts, dtype=np.float64), 1e-10, "pooled")
    assert_close(result.metrics, ref_densedepth(preds, gts), 1e-5, "pooled float32")
    swapped = custom_protocol(crop="nyu-densedepth", min_depth=0, clip=(0.1, 10), averaging="pooled",
                              densedepth_swap_bug=True)
    result = evaluate_arrays(preds, gts, swapped)
    assert_close(result.metrics, ref_densedepth(preds, gts, swap=True, dtype=np.float64), 1e-10, "swap")
    # Pixels without ground truth (gt = 0) are left out of the pool (different counts per image).
    gts[1][:50] = 0
    gts[2][:200] = 0
    result = evaluate_arrays(preds, gts, "nyu-densedepth")
    keep = [g[20:460, 24:616] > 0 for g in gts]
    pool_p = np.concatenate([np.clip(p, 0.1, 10)[20:460, 24:616][k] for p, k in zip(preds, keep)]).astype(np.float64)
    pool_g = np.concatenate([g[20:460, 24:616][k] for g, k in zip(gts, keep)]).astype(np.float64)
    assert_close(result.metrics, ref_errors(pool_g, pool_p), 1e-10, "pooled with holes")


def test_custom_protocol_options(rng):
    cases = [make_case(rng, (60, 80), 8.0) for _ in range(4)]
    preds, gts = [p for p, _ in cases], [g for _, g in cases]

    def reference(cases, lo, hi, inclusive, clip, rows, cols, floor=None):
        refs, pools = [], []
        for p, g in cases:
            p, g = p.astype(np.float64)[rows, cols], g.astype(np.float64)[rows, cols]
            if clip is not None:
                p = np.where(np.isnan(p), clip[0], np.clip(p, *clip))
            if floor is not None:
                p = np.where(p <= floor, floor, p)
            upper = (g <= hi) if inclusive else (g < hi)
            valid = np.isfinite(g) & (g > lo) & upper
            refs.append(ref_errors(g[valid], p[valid]))
            pools.append((g[valid], p[valid]))
        pooled = ref_errors(np.concatenate([a for a, _ in pools]), np.concatenate([b for _, b in pools]))
        return refs, pooled

    with pytest.raises(ConfigError, match=r"clip must be two numbers \(lo, hi\) in metres, got 'range' \('range' is "
                                          "an option of the custom protocol only"):
        get_protocol("nyu-hu", clip="range")
    with pytest.raises(ConfigError, match="clip must be two numbers .* got '10'"):
        get_protocol("nyu-hu", clip="10")
    assert get_protocol("nyu-hu", clip=["1e-3", 10]).clip == (0.001, 10.0)  # clips predictions as numbers
    protocol = custom_protocol(crop="5:-5,10:70", min_depth=0.5, max_depth=6.0, clip="range")
    refs, pooled = reference(cases, 0.5, 6.0, False, (0.5, 6.0), slice(5, -5), slice(10, 70))
    result = evaluate_arrays(preds, gts, protocol)
    assert_close(result.metrics, mean_rows(refs), 1e-10, "per_image")
    result = evaluate_arrays(preds, gts, protocol.with_options(averaging="pooled"))
    assert_close(result.metrics, pooled, 1e-10, "pooled")
    result = evaluate_arrays(preds, gts, protocol.with_options(averaging="rms_of_mse"))
    expected = mean_rows(refs)
    for key in ("rmse", "rmse_log"):
        expected[key] = float(np.sqrt(np.mean([r[key] ** 2 for r in refs])))
    assert_close(result.metrics, expected, 1e-10, "rms_of_mse")
    protocol = custom_protocol(min_depth=0.2, max_depth=7.0, max_inclusive=True, clip=(0.05, 20.0))
    refs, _ = reference(cases, 0.2, 7.0, True, (0.05, 20.0), slice(None), slice(None))
    assert_close(evaluate_arrays(preds, gts, protocol).metrics, mean_rows(refs), 1e-10, "clip LO,HI")
    finite = [np.nan_to_num(p, nan=3.0, posinf=9.0, neginf=-1.0) for p in preds]
    protocol = custom_protocol(max_depth=8.0, clip="none", clamp_floor=0.3)
    refs, _ = reference(list(zip(finite, gts)), 1e-3, 8.0, False, None, slice(None), slice(None), floor=0.3)
    assert_close(evaluate_arrays(finite, gts, protocol).metrics, mean_rows(refs), 1e-10, "clamp floor")


def test_prediction_of_another_size_is_resized_bilinearly(rng):
    pred, gt = make_case(rng, (480, 640), 10.0, special=False)
    small = cv2.resize(pred, (385, 289), interpolation=cv2.INTER_AREA)  # HQMD predicts at 289x385
    row = Evaluator("nyu-hqmd").add(small, gt)
    ref = ref_hqmd(cv2.resize(small, (640, 480), interpolation=cv2.INTER_LINEAR), gt)
    assert_close(row, ref, 1e-5, "resized")
    with pytest.raises(DataError, match=r"pairs.txt line 4: prediction is 480x480"):
        Evaluator("nyu-eigen").add(pred[:, :480], gt, "pairs.txt line 4")
    Evaluator("nyu-eigen", resize_any=True).add(pred[:, :480], gt)
    with pytest.raises(DataError, match="defined on 480x640"):
        Evaluator("nyu-eigen").add(pred[:240, :320], gt[:240, :320], "pairs.txt line 2")


def test_empty_valid_mask_is_excluded_and_counted(rng, caplog):
    pred, gt = make_case(rng, (480, 640), 10.0)
    empty = np.zeros_like(gt)
    with caplog.at_level(logging.WARNING, logger="hqdepth.evaluation"):
        result = evaluate_arrays([pred, pred], [gt, empty], "nyu-eigen", names=["a", "b"])
    assert "b: no valid ground-truth pixel" in caplog.text
    assert result.count == 1 and result.excluded == ["b"] and result.to_dict()["excluded"] == 1
    assert_close(result.metrics, ref_bts(pred, gt, 1e-3, 10, crop="eigen", dtype=np.float64), 1e-10)
    with pytest.raises(DataError, match="no image could be evaluated"):
        evaluate_arrays([pred], [empty], "nyu-eigen")


def test_depth_ssim_equals_tf_image_ssim(rng):
    import tensorflow as tf

    for shape, max_val in (((48, 64), 10.0), ((23, 31), 80.0)):
        gt = rng.uniform(0.5, max_val, shape)
        pred = gt * rng.lognormal(0, 0.3, shape)
        expected = float(tf.image.ssim(pred[..., None].astype(np.float32), gt[..., None].astype(np.float32),
                                       max_val=max_val))
        assert abs(depth_ssim(pred, gt, max_val) - expected) < 1e-5
    assert depth_ssim(gt, gt, 80.0) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------- CLI


def write_png(path, metres, scale, dtype=np.uint16):
    values = np.round(np.nan_to_num(metres, nan=0, posinf=0, neginf=0) * scale)
    values = np.clip(values, 0, np.iinfo(dtype).max).astype(dtype)
    assert cv2.imwrite(str(path), values)
    return values.astype(np.float64) / scale  # what a reader gets back


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_pairs_png_npy_and_8bit(tmp_path, rng, capsys):
    (tmp_path / "pred").mkdir()
    lines, truth = [], []
    for i in range(3):
        pred, gt = make_case(rng, (480, 640), 10.0)
        gt_read = write_png(tmp_path / f"gt_{i}.png", gt, 1000)
        if i == 0:
            np.save(tmp_path / "pred" / "p0.npy", pred)
            pred_read, name = pred.astype(np.float64), "pred/p0.npy"
        else:
            pred_read, name = write_png(tmp_path / "pred" / f"p{i}.png", pred, 1000), f"pred/p{i}.png"
        lines.append(f"{name}\t gt_{i}.png")
        truth.append((pred_read, gt_read))
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("# prediction ground-truth\n" + "\n".join(lines) + "\n\n")
    code, out, err = run_cli(["evaluate", "--pairs", str(pairs), "--protocol", "nyu-eigen", "--quiet",
                              "--json", str(tmp_path / "out.json"), "--csv", str(tmp_path / "rows.csv")], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["protocol"] == "nyu-eigen" and doc["count"] == 3 and list(doc["metrics"]) == list(NAMES)
    refs = [ref_bts(p, g, 1e-3, 10, crop="eigen") for p, g in truth]
    assert_close(doc["metrics"], mean_rows(refs), 1e-5, "cli")
    assert "abs_rel" in out and f"{doc['metrics']['rmse']:.4f}" in out and "3 images evaluated" in out
    import pandas as pd

    rows = pd.read_csv(tmp_path / "rows.csv")
    assert len(rows) == 3 and {"prediction", "ground_truth", "valid_pixels", *NAMES} <= set(rows.columns)
    assert rows["abs_rel"].tolist() == pytest.approx([r["abs_rel"] for r in refs], rel=1e-5)

    # 8-bit PNGs (DenseDepth-style training depth, value / 25.5 m) read with explicit scales.
    pred, gt = make_case(rng, (480, 640), 10.0, special=False)
    gt8 = write_png(tmp_path / "gt8.png", gt, 25.5, np.uint8)
    pred8 = write_png(tmp_path / "pred8.png", pred, 25.5, np.uint8)
    assert cv2.imread(str(tmp_path / "gt8.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    (tmp_path / "pairs8.txt").write_text("pred8.png gt8.png\n")
    code, out, err = run_cli(["evaluate", "--pairs", str(tmp_path / "pairs8.txt"), "--protocol", "nyu-hqmd",
                              "--pred-scale", "25.5", "--gt-scale", "25.5", "--quiet",
                              "--json", str(tmp_path / "out8.json")], capsys)
    assert code == 0, err
    assert "8-bit PNG" in err
    assert_close(json.loads((tmp_path / "out8.json").read_text())["metrics"], ref_hqmd(pred8, gt8), 1e-5, "8-bit")


def test_cli_errors_name_the_line(tmp_path, rng, capsys):
    pred, gt = make_case(rng, (480, 640), 10.0, special=False)
    write_png(tmp_path / "gt.png", gt, 1000)
    write_png(tmp_path / "p.png", pred, 1000)
    write_png(tmp_path / "wide.png", np.ones((352, 1216)), 256)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    cases = {
        "p.png gt.png\nmissing.png gt.png\n": r"pairs.txt line 2 \(prediction\): file not found: .*missing.png",
        "p.png gt.png\n\np.png gt.png extra\n": r"pairs.txt line 3: expected 2 whitespace-separated paths, got 3",
        "bad.png gt.png\n": r"line 1 \(prediction\): cannot read .*bad.png",
        "wide.png gt.png\n": r"line 1: prediction is 352x1216 but the ground truth is 480x640",
        "p.png gt.png\np.png wide.png\n": r"line 2: ground truth is 352x1216 but protocol nyu-eigen is defined on",
        "p.txt gt.png\n": r"line 1 \(prediction\): file not found",
    }
    for text, message in cases.items():
        (tmp_path / "pairs.txt").write_text(text)
        code, out, err = run_cli(["evaluate", "--pairs", str(tmp_path / "pairs.txt"), "--protocol", "nyu-eigen",
                                  "--quiet"], capsys)
        assert code == 2, (text, err)
        assert err.startswith("hqdepth evaluate: error:") and re.search(message, err), (message, err)
    # Garg's crop is a fraction of the full KITTI frame: ground truth already KB-cropped is refused, not scored
    (tmp_path / "pairs.txt").write_text("wide.png wide.png\n")
    code, _, err = run_cli(["evaluate", "--pairs", str(tmp_path / "pairs.txt"), "--protocol", "kitti-garg", "--quiet"],
                           capsys)
    assert code == 2 and "ground truth is 352x1216, the KITTI benchmark (KB) crop, but protocol kitti-garg" in err, err
    # ... and NYU frames (their millimetre PNGs read as / 256: depths 3.9x too large), scored silently before
    (tmp_path / "pairs.txt").write_text("p.png gt.png\n")
    code, _, err = run_cli(["evaluate", "--pairs", str(tmp_path / "pairs.txt"), "--protocol", "kitti-eigen", "--quiet"],
                           capsys)
    assert code == 2 and "ground truth is 480x640, not a KITTI frame (about 375x1242" in err, err
    (tmp_path / "pairs.txt").write_text("p.png gt.png\n")
    for extra, message in ((["--min-depth", "0.1"], "--min-depth applies to --protocol custom only"),
                           (["--flip"], "--flip and --tf32 go with --model"),
                           (["--tf32"], "--flip and --tf32 go with --model")):
        code, _, err = run_cli(["evaluate", "--pairs", str(tmp_path / "pairs.txt"), "--protocol", "nyu-eigen",
                                *extra], capsys)
        assert code == 2 and message in err, err
    code, _, err = run_cli(["evaluate", "--pairs", str(tmp_path / "pairs.txt"), "--protocol", "custom"], capsys)
    assert code == 2 and "no default PNG scale" in err


def test_cli_missing_file_exits_2_without_traceback(tmp_path, rng):
    pred, gt = make_case(rng, (480, 640), 10.0, special=False)
    write_png(tmp_path / "gt.png", gt, 1000)
    np.save(tmp_path / "p.npy", pred)
    (tmp_path / "pairs.txt").write_text("p.npy gt.png\nnowhere.npy gt.png\n")
    exe = ROOT / ".venv" / "bin" / "hqdepth"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "hqdepth.cli"]
    proc = subprocess.run([*command, "evaluate", "--pairs", str(tmp_path / "pairs.txt"), "--protocol", "nyu-eigen",
                           "--quiet"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "pairs.txt line 2 (prediction): file not found" in proc.stderr and "nowhere.npy" in proc.stderr


def test_cli_custom_protocol(tmp_path, rng, capsys):
    pred, gt = make_case(rng, (60, 80), 8.0)
    np.save(tmp_path / "p.npy", pred)
    np.save(tmp_path / "g.npy", gt)
    (tmp_path / "pairs.txt").write_text("p.npy g.npy\n")
    code, out, err = run_cli(["evaluate", "--pairs", str(tmp_path / "pairs.txt"), "--protocol", "custom", "--quiet",
                              "--crop", "4:56,8:72", "--min-depth", "0.5", "--max-depth", "6", "--max-inclusive",
                              "--clip", "0.2,7", "--json", str(tmp_path / "o.json")], capsys)
    assert code == 0, err
    p, g = pred.astype(np.float64)[4:56, 8:72], gt.astype(np.float64)[4:56, 8:72]
    p = np.where(np.isnan(p), 0.2, np.clip(p, 0.2, 7))
    valid = np.isfinite(g) & (g > 0.5) & (g <= 6)
    assert_close(json.loads((tmp_path / "o.json").read_text())["metrics"], ref_errors(g[valid], p[valid]), 1e-10)


# -------------------------------------------------------------------------------------------- models


def tiny_model(input_shape):
    """Two conv layers, positive depth, not mirror-symmetric (so flip TTA changes the result)."""
    import keras

    keras.utils.set_random_seed(7)
    image = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 255.0)(image)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="tanh")(x)
    x = keras.layers.Conv2D(1, 3, padding="same", activation="softplus")(x)
    depth = keras.layers.Rescaling(3.0, offset=0.5)(x)
    return keras.Model(image, depth)


def rgb_gt_pairs(tmp_path, rng, shape, n=2):
    lines, frames = [], []
    for i in range(n):
        rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / f"rgb_{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        gt = write_png(tmp_path / f"gt_{i}.png", rng.uniform(0.3, 6.0, shape) * (rng.random(shape) > 0.2), 1000)
        lines.append(f"rgb_{i}.png gt_{i}.png 518.8579")
        frames.append((rgb, gt))
    (tmp_path / "data.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "data.txt", frames


def expected_metrics(model, frames, flip, input_size=None):
    """Manual prediction (resize to the model input, optional flip average, resize back) + reference."""
    refs = []
    for rgb, gt in frames:
        h, w = gt.shape
        images = [rgb.astype(np.float32), rgb[:, ::-1].astype(np.float32)][: 2 if flip else 1]
        if input_size:
            images = [cv2.resize(x, input_size[::-1], interpolation=cv2.INTER_LINEAR) for x in images]
        outs = list(np.asarray(model(np.stack(images)))[..., 0])  # one batch, as the evaluator calls it
        outs = [cv2.resize(o, (w, h), interpolation=cv2.INTER_LINEAR) if o.shape != (h, w) else o for o in outs]
        pred = 0.5 * outs[0] + 0.5 * outs[1][:, ::-1] if flip else outs[0]
        pred = np.clip(pred.astype(np.float64), 1e-3, 10)
        valid = (gt > 1e-3) & (gt < 10)
        refs.append(ref_errors(gt[valid], pred[valid]))
    return mean_rows(refs)


def test_cli_model_keras_dynamic_and_fixed_input(tmp_path, rng, capsys):
    data, frames = rgb_gt_pairs(tmp_path, rng, (40, 56))
    args = ["--data", str(data), "--protocol", "custom", "--max-depth", "10", "--gt-scale", "1000", "--quiet"]
    model = tiny_model((None, None, 3))
    model.save(tmp_path / "dyn.keras")
    for flip in (False, True):
        out_json = tmp_path / f"dyn_{flip}.json"
        code, out, err = run_cli(["evaluate", "--model", str(tmp_path / "dyn.keras"), *args,
                                  *(["--flip"] if flip else []), "--json", str(out_json)], capsys)
        assert code == 0, err
        doc = json.loads(out_json.read_text())
        assert doc["count"] == 2 and doc["flip"] is flip
        assert doc["model"].startswith(f"Keras model {tmp_path / 'dyn.keras'}") and f"model: {doc['model']}" in out
        assert_close(doc["metrics"], expected_metrics(model, frames, flip), 1e-5, f"flip={flip}")
    fixed = tiny_model((24, 32, 3))
    fixed.save(tmp_path / "fixed.keras")
    assert DepthModel(tmp_path / "fixed.keras").input_size == (24, 32)
    code, out, err = run_cli(["evaluate", "--model", str(tmp_path / "fixed.keras"), *args, "--flip",
                              "--json", str(tmp_path / "fixed.json")], capsys)
    assert code == 0, err
    assert_close(json.loads((tmp_path / "fixed.json").read_text())["metrics"],
                 expected_metrics(fixed, frames, True, (24, 32)), 1e-5, "fixed input")
    code, _, err = run_cli(["evaluate", "--model", str(tmp_path / "nope.keras"), *args], capsys)
    assert code == 2 and "model not found" in err


def test_cli_model_scores_in_float32_unless_tf32_is_asked(tmp_path, rng, capsys):
    """On Ampere+ GPUs TensorFlow would multiply float32 in TF32: `evaluate --model` turns that off (the papers'
    GPUs scored in float32), `--tf32` allows it (with --pairs, where no model runs, it is refused: above)."""
    import tensorflow as tf

    data, _ = rgb_gt_pairs(tmp_path, rng, (40, 56))
    args = ["--data", str(data), "--protocol", "custom", "--max-depth", "10", "--gt-scale", "1000", "--quiet"]
    tiny_model((None, None, 3)).save(tmp_path / "dyn.keras")
    before = tf.config.experimental.tensor_float_32_execution_enabled()
    try:
        for extra, want in (([], False), (["--tf32"], True)):
            tf.config.experimental.enable_tensor_float_32_execution(not want)
            code, _, err = run_cli(["evaluate", "--model", str(tmp_path / "dyn.keras"), *args, *extra], capsys)
            assert code == 0, err
            assert tf.config.experimental.tensor_float_32_execution_enabled() is want
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(before)


def test_savedmodel_and_dataset_spec(tmp_path, rng, capsys):
    from hqdepth.data.base import Sample, Source, register_source

    model = tiny_model((None, None, 3))
    model.export(str(tmp_path / "saved"), verbose=False)
    data, frames = rgb_gt_pairs(tmp_path, rng, (40, 56))

    @register_source("evaluation-test-frames")
    class Frames(Source):
        def __init__(self, argument, split="train"):
            assert split == "test"

        def __len__(self):
            return len(frames)

        def __getitem__(self, index):
            rgb, gt = frames[index]
            return Sample(rgb, gt.astype(np.float32)[..., None], {"id": f"f{index}"})

    args = ["--protocol", "custom", "--max-depth", "10", "--quiet", "--csv", str(tmp_path / "rows.csv")]
    code, out, err = run_cli(["evaluate", "--model", str(tmp_path / "saved"), "--data", "evaluation-test-frames",
                              "--json", str(tmp_path / "sm.json"), *args], capsys)
    assert code == 0, err
    # SavedModel graph vs eager Keras may differ in the last float bit: allow one pixel on a delta threshold.
    assert_close(json.loads((tmp_path / "sm.json").read_text())["metrics"], expected_metrics(model, frames, False),
                 1e-5, "savedmodel", delta_tol=1.0 / (40 * 56 * 0.7))
    assert (tmp_path / "rows.csv").read_text().count("evaluation-test-frames sample f") == 2
    # predict_depth pastes nothing without kb_crop and returns the image size.
    assert predict_depth(DepthModel(tmp_path / "saved"), frames[0][0]).shape == (40, 56)


# ----------------------------------------------------------------------------------------- real data


def perturb(rng, gt, cap):
    """A plausible prediction: multiplicative noise, a scale error, zeros and values beyond the cap."""
    pred = np.where(gt > 0, gt, np.median(gt[gt > 0])) * 1.05 * rng.lognormal(0, 0.12, gt.shape)
    flat = pred.reshape(-1)
    idx = rng.choice(flat.size, 4000, replace=False)
    flat[idx[:1000]] = 0
    flat[idx[1000:2000]] = cap * 1.5
    return pred


def with_specials(rng, pred):
    pred = pred.copy()
    flat = pred.reshape(-1)
    idx = rng.choice(flat.size, 3000, replace=False)
    flat[idx[:1000]] = np.inf
    flat[idx[1000:2000]] = np.nan
    flat[idx[2000:]] = -np.inf
    return pred


def test_real_nyu_test_frames(realdata, tmp_path, rng, capsys):
    folder = realdata / "nyu_test10"
    png_lines, npy_lines, frames = [], [], []
    for k in range(10):
        gt = cv2.imread(str(folder / f"depth_{k}.png"), cv2.IMREAD_UNCHANGED)
        assert gt.dtype == np.uint16 and gt.shape == (480, 640)
        gt_m = gt.astype(np.float32) / 1000
        pred_png = write_png(tmp_path / f"pred_{k}.png", perturb(rng, gt_m, 10.0), 1000)
        pred_npy = with_specials(rng, perturb(rng, gt_m, 10.0)).astype(np.float32)
        np.save(tmp_path / f"pred_{k}.npy", pred_npy)
        png_lines.append(f"pred_{k}.png {folder / f'depth_{k}.png'}")
        npy_lines.append(f"pred_{k}.npy {folder / f'depth_{k}.png'}")
        frames.append((gt_m, pred_png.astype(np.float32), pred_npy))
    (tmp_path / "png.txt").write_text("\n".join(png_lines) + "\n")
    (tmp_path / "npy.txt").write_text("\n".join(npy_lines) + "\n")

    def cli(pairs, protocol):
        out_json = tmp_path / "o.json"
        code, out, err = run_cli(["evaluate", "--pairs", str(tmp_path / pairs), "--protocol", protocol, "--quiet",
                                  "--json", str(out_json)], capsys)
        assert code == 0, err
        print(out)
        return strict_loads(out_json.read_text())["metrics"]

    for pairs, index in (("png.txt", 1), ("npy.txt", 2)):
        ref = mean_rows([ref_bts(f[index], f[0], 1e-3, 10, crop="eigen") for f in frames])
        assert_close(cli(pairs, "nyu-eigen"), ref, 1e-5, f"nyu-eigen {pairs}")
        # DenseDepth's np.clip keeps NaN (every metric NaN); the protocol maps NaN to 0.1 like +inf to 10.
        preds = [np.where(np.isnan(f[index]), np.float32(0.1), f[index]) for f in frames]
        ref = ref_densedepth(preds, [f[0] for f in frames])
        assert_close(cli(pairs, "nyu-densedepth"), ref, 1e-5, f"nyu-densedepth {pairs}")
    ref = mean_rows([ref_hqmd(f[1], f[0]) for f in frames])
    assert_close(cli("png.txt", "nyu-hqmd"), ref, 1e-5, "nyu-hqmd")
    ours = cli("npy.txt", "nyu-hqmd")  # +inf/NaN pass through the HQMD code: the same metrics are not finite
    ref = mean_rows([ref_hqmd(f[2], f[0]) for f in frames])
    assert {k for k, v in ours.items() if v is None} == {k for k, v in ref.items() if not np.isfinite(v)} != set()
    assert_close(ours, {k: v for k, v in ref.items() if np.isfinite(v)}, 1e-5, "nyu-hqmd specials")


def test_real_kitti_frames(realdata, tmp_path, rng, capsys):
    folder = realdata / "kitti3" / "depth"
    frames, lines, kb_lines = [], [], []
    for path in sorted(folder.glob("*.png")):
        gt = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert gt.dtype == np.uint16
        gt_m = gt.astype(np.float32) / 256
        h, w = gt.shape
        full = with_specials(rng, perturb(rng, gt_m, 80.0)).astype(np.float32)
        np.save(tmp_path / f"{path.stem}.npy", full)
        window = perturb(rng, gt_m, 80.0)[h - 352:, (w - 1216) // 2:(w - 1216) // 2 + 1216]
        kb = write_png(tmp_path / f"{path.stem}_kb.png", window, 256)
        lines.append(f"{path.stem}.npy {path}")
        kb_lines.append(f"{path.stem}_kb.png {path}")
        frames.append((gt_m, full, kb.astype(np.float32)))
    assert len(frames) == 3
    (tmp_path / "full.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "kb.txt").write_text("\n".join(kb_lines) + "\nx.png None\n")  # a BTS line without ground truth
    for protocol, crop in (("kitti-garg", "garg"), ("kitti-eigen", "eigen")):
        for pairs, index, kb in (("full.txt", 1, False), ("kb.txt", 2, True)):
            code, out, err = run_cli(["evaluate", "--pairs", str(tmp_path / pairs), "--protocol", protocol,
                                      "--quiet", "--json", str(tmp_path / "o.json"), *(["--kb-crop"] if kb else [])],
                                     capsys)
            assert code == 0, err
            print(out)
            doc = json.loads((tmp_path / "o.json").read_text())
            assert doc["count"] == 3 and doc["skipped"] == (1 if kb else 0)
            ref = mean_rows([ref_bts(f[index], f[0], 1e-3, 80, crop=crop, dataset="kitti", kb=kb) for f in frames])
            assert_close(doc["metrics"], ref, 1e-5, f"{protocol} {pairs}")
