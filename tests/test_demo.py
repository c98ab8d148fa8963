"""The demo's parts: precision probe, object-visibility measures, the summary picture, and a tiny demo run."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_precision_probe_returns_a_valid_choice():
    from hqdepth.training.precision import CANDIDATES, PrecisionProbe, probe_precision

    probe = probe_precision(size=(16, 24), batch=2, steps=2, warmup=1, width=8)
    assert isinstance(probe, PrecisionProbe)
    assert probe.choice in CANDIDATES
    assert probe.seconds["float32"] > 0
    assert probe.reason
    if "mixed_bfloat16" in probe.seconds:  # ran: the choice follows the measured ratio and the margin
        speedup = probe.seconds["float32"] / probe.seconds["mixed_bfloat16"]
        assert probe.speedup == pytest.approx(speedup)
        assert probe.choice == ("mixed_bfloat16" if speedup >= 1.1 else "float32")
    else:  # could not run: never chosen, and the reason says why
        assert probe.choice == "float32" and probe.error


def test_precision_probe_margin_decides(monkeypatch):
    """The decision rule alone, on fixed step times: bfloat16 only with at least `margin` gain."""
    from hqdepth.training import precision

    class Fake:
        def __init__(self, seconds):
            self.seconds = seconds

        def train_on_batch(self, x, y):
            precision.time.sleep(0)  # nothing to run

    clock = iter(np.arange(0, 1000, 1.0))
    monkeypatch.setattr(precision.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(precision, "probe_network", lambda policy, size, width: Fake(policy))
    # Every timed step takes 1 "second" in both precisions: speedup 1 -> float32 at margin 0.1, bf16 at margin 0.
    assert precision.probe_precision(size=(8, 8), batch=1, steps=2, warmup=0).choice == "float32"
    assert precision.probe_precision(size=(8, 8), batch=1, steps=2, warmup=0, margin=0.0).choice == "mixed_bfloat16"
    with pytest.raises(ValueError):
        precision.probe_precision(candidates=("mixed_bfloat16",))


def test_object_measures_separate_objects_from_layout():
    from hqdepth.data import synthetic

    size = (48, 64)
    gts, ids, layouts = [], [], []
    for i in range(6):
        gts.append(synthetic.make_sample("test", i, size).depth[..., 0])
        view = synthetic.object_views("test", i, size)
        ids.append(view[0])
        layouts.append(view[1])
        assert view[1].shape == size and (view[1] >= gts[-1] - 1e-4).all()  # objects only ever come closer
        assert (view[0] >= 6).any() or i  # scene 0 has objects in view
    exact = synthetic.object_measures(gts, gts, ids, layouts)
    assert exact["objects"] > 0 and exact["rmse_objects"] == 0 and exact["contrast_ratio"] == pytest.approx(1.0)
    assert exact["objects_seen"] == 1.0
    layout = synthetic.object_measures(layouts, gts, ids, layouts)
    assert abs(layout["contrast_ratio"]) < 0.2 and layout["objects_seen"] < 0.2
    assert layout["rmse_objects"] == pytest.approx(exact["rmse_objects_layout"]) and layout["rmse_objects"] > 0.3
    half = synthetic.object_measures([0.5 * (g + l) for g, l in zip(gts, layouts)], gts, ids, layouts)
    assert 0.3 < half["contrast_ratio"] < 0.7


def test_summary_figure_draws_panels_scales_and_curves(tmp_path):
    from hqdepth.visualize import summary_figure, write_png

    rng = np.random.default_rng(0)
    rgbs = rng.integers(0, 256, (3, 16, 24, 3), dtype=np.uint8)
    gts = rng.uniform(1, 5, (3, 16, 24))
    gts[0, :2] = 0  # no ground truth: black in the truth panel
    preds = gts + 0.5
    curves = [{"title": "loss", "ylabel": "loss", "log_y": True,
               "series": [("train", np.arange(0, 100, 10), np.linspace(5, 1, 10), (0, 0, 255), "line")]},
              {"title": "rmse", "ylabel": "m", "series": [("val", [50, 100], [1.0, 0.8], (255, 0, 0), "points")],
               "hlines": [("constant", 1.2, (128, 128, 128))]}]
    figure = summary_figure(rgbs, gts, preds, names=["a", "b", "c"], curves=curves, title="t", scale=2)
    assert figure.dtype == np.uint8 and figure.ndim == 3 and figure.shape[2] == 3
    assert figure.shape[1] >= 4 * 48 and figure.shape[0] >= 3 * 32 + 300
    path = write_png(tmp_path / "sub" / "summary.png", figure)
    import cv2

    back = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, figure)
    # true edges: exactly those pixels turn white in the truth and prediction panels (2 x 2 each at scale 2)
    edges = rng.random((3, 16, 24)) < 0.1
    drawn = summary_figure(rgbs, gts, preds, names=["a", "b", "c"], curves=curves, title="t", scale=2, edges=edges)
    changed = (drawn[44:] != figure[44:]).any(axis=2)
    assert changed.sum() == 2 * 4 * edges.sum() and (drawn[44:][changed] == 255).all()


@pytest.mark.slow  # a TensorFlow training run, export and predict (tens of seconds on 2 cores)
def test_tiny_demo_writes_summary_and_report(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "experiments"))
    import demo

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "demo"
    assert demo.main(["--recipe", "fcn_ssim_mse", "--steps", "2", "--batch", "2", "--test-scenes", "4",
                      "--precision", "float32", "--out", str(out)]) == 0
    import cv2

    picture = cv2.imread(str(out / "summary.png"))
    assert picture is not None and picture.shape[0] > 300 and picture.shape[1] > 4 * 96
    report = json.loads((out / "demo.json").read_text())
    assert report["precision"] == "float32" and report["test_scenes"] == 4
    assert report["savedmodel_rmse"] == pytest.approx(report["test_rmse"], rel=1e-3)  # same final model
    assert set(report["objects"]) >= {"contrast_ratio", "contrast_ratio_layout", "objects_seen", "rmse_objects"}
    # boundary errors of the trained model, the layout-only predictor and the truth itself (Canny of the true
    # depth against the exact occlusion edges: about a pixel, far better than any blurred prediction)
    bounds = report["boundaries"]
    assert bounds["truth"]["dbe_acc"] < 2.5 and bounds["truth"]["dbe_comp"] < 4.0
    assert all(0 <= bounds[name]["dbe_acc"] <= 10 for name in ("trained", "layout"))
    assert bounds["truth"]["pe_plan"] < 1e-2  # flat planes are flat
    assert len(list((out / "predictions").glob("*_depth.npy"))) == 4


def test_validation_period_divides_the_steps():
    sys.path.insert(0, str(ROOT / "experiments"))
    import demo

    for steps in (600, 601, 1000, 7, 2):
        period = demo.validation_period(steps, 2)
        assert steps % period == 0 and 1 <= period <= steps
    assert demo.validation_period(600, 2) == 300
    assert demo.validation_period(601, 2) == 601  # a prime-ish count: one validation at the end

