"""The JSON files the package writes are strict JSON: a number that is not finite is null (jq, JavaScript's
JSON.parse and most other parsers refuse the Infinity / NaN that Python's json writes by default)."""
import json
import math

import cv2
import numpy as np
import pytest

from hqdepth import strict_json
from hqdepth.cli import main
from hqdepth.evaluator import Evaluator


def strict_loads(text):
    """json.loads as a strict parser reads: Infinity, -Infinity and NaN are errors."""
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null_at_any_depth(rng):
    values = rng.normal(size=3)
    document = {"metrics": {"log10": math.inf, "rmse": float(values[0]), "silog": math.nan},
                "rows": [{"d1": np.float32(values[1]), "x": -math.inf},
                         (np.float64(np.nan), np.float64(values[2]), 3, True, "NaN", None)]}
    assert strict_loads(strict_json.dumps(document, indent=1)) == {
        "metrics": {"log10": None, "rmse": float(values[0]), "silog": None},
        "rows": [{"d1": float(np.float32(values[1])), "x": None}, [None, float(values[2]), 3, True, "NaN", None]]}
    with pytest.raises(AssertionError, match="Infinity is not JSON"):  # what the files held before
        strict_loads(json.dumps({"log10": math.inf}))
    assert strict_json.number(None) == "n/a" and strict_json.number(values[0]) == f"{values[0]:.4f}"


def test_evaluate_json_writes_null_for_hus_infinite_log10(tmp_path, rng, capsys):
    """`nyu-hu` does not clip predictions, so an exact zero makes log10 infinite (as Hu's code computes it): the
    printed table says inf, the --json file null, and every other metric equals the evaluator's."""
    gt = rng.uniform(0.5, 9.5, (480, 640))
    gt_mm = np.round(gt * 1000).astype(np.uint16)
    assert cv2.imwrite(str(tmp_path / "gt.png"), gt_mm)
    pred = rng.uniform(0.5, 9.5, (228, 304)).astype(np.float32)
    pred[5, 7] = 0.0
    np.save(tmp_path / "pred.npy", pred)
    (tmp_path / "pairs.txt").write_text("pred.npy gt.png\n")
    out = tmp_path / "out.json"
    code = main(["evaluate", "--pairs", str(tmp_path / "pairs.txt"), "--protocol", "nyu-hu", "--quiet", "--json",
                 str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    with np.errstate(divide="ignore"):
        want = Evaluator("nyu-hu").add(pred, gt_mm.astype(np.float64) / 1000)
    assert math.isinf(want["log10"]) and "inf" in printed.split("log10")[1]
    metrics = strict_loads(out.read_text())["metrics"]
    assert metrics["log10"] is None
    for key, value in metrics.items():
        if key != "log10":
            assert value == pytest.approx(want[key], rel=1e-6), key
