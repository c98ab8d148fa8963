"""`hqdepth evaluate --geometry`: the spec's worked example through a pairs file with an edge-map column,
metrics without ground truth reported as not computed, and a model run over an `ibims:` folder."""

import json
import math

import cv2
import numpy as np
import pytest

from hqdepth.cli import main
from hqdepth.geometry import GeometryEvaluator, ground_truth_from_meta


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def step(column, size=64):
    depth = np.full((size, size), 4.0)
    depth[:, :column] = 2.0
    return depth


def geometry_rows(out):
    """{metric: printed text} from the block after the standard table."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("iBims-1 geometric errors"))
    header = next(line for line in lines[start:] if line.split() and line.split()[0] == "dbe_acc")
    values = lines[lines.index(header) + 1]
    return dict(zip(header.split(), values.split()))


def write_example(folder, edge_column=True, lines=1):
    """The worked example (spec §7): true step at column 32, true edge on column 31, prediction step at 35."""
    np.save(folder / "gt.npy", step(32))
    np.save(folder / "pred.npy", step(35))
    edges = np.zeros((64, 64), np.uint8)
    edges[:, 31] = 255
    assert cv2.imwrite(str(folder / "edges.png"), edges)
    rows = ["pred.npy gt.npy edges.png" if edge_column else "pred.npy gt.npy"]
    rows += ["pred.npy gt.npy"] * (lines - 1)
    (folder / "pairs.txt").write_text("\n".join(rows) + "\n")
    return folder / "pairs.txt"


def test_pairs_with_an_edge_map_give_the_worked_example(tmp_path, capsys):
    pairs = write_example(tmp_path)
    code, out, err = run_cli(["evaluate", "--pairs", str(pairs), "--protocol", "custom", "--geometry", "--quiet",
                              "--json", str(tmp_path / "out.json")], capsys)
    assert code == 0, err
    assert "protocol custom: 1 images evaluated" in out  # the standard table is still there
    row = geometry_rows(out)
    assert row["dbe_acc"] == "3.0645" and row["dbe_comp"] == "3.0618"  # spec: 190/62 and 385.78/126 (skimage 0.26)
    assert row["dde_0"] == f"{1 - 3 / 64:.4f}"  # columns 32..34: truly 4 m, predicted 2 m (in front of 3 m)
    assert row["dde_minus"] == f"{3 / 64:.4f}" and row["dde_plus"] == "0.0000"
    assert row["pe_plan"] == row["pe_orie"] == "n/a"
    assert "pe_plan, pe_orie: not computed, no plane ground truth" in out
    geometry = json.loads((tmp_path / "out.json").read_text())["geometry"]
    assert geometry["metrics"]["dbe_acc"] == pytest.approx(190 / 62, abs=1e-4)
    assert geometry["metrics"]["dbe_comp"] == pytest.approx(385.78 / 126, abs=1e-4)
    assert geometry["metrics"]["pe_plan"] is None and "pe_orie" in geometry["not_computed"]
    assert geometry["version"] == "v2" and geometry["canny"].startswith("scikit-image")
    code, out, _ = run_cli(["evaluate", "--pairs", str(pairs), "--protocol", "custom", "--geometry",
                            "--geometry-version", "v1", "--quiet"], capsys)
    assert code == 0 and geometry_rows(out)["dbe_comp"] == f"{195.78 / 64:.4f}"


def test_without_edge_maps_the_boundary_errors_are_not_computed(tmp_path, capsys):
    pairs = write_example(tmp_path, edge_column=False)
    code, out, err = run_cli(["evaluate", "--pairs", str(pairs), "--protocol", "custom", "--geometry", "--quiet",
                              "--json", str(tmp_path / "out.json")], capsys)
    assert code == 0, err
    row = geometry_rows(out)
    assert row["dbe_acc"] == row["dbe_comp"] == "n/a" and row["dde_0"] != "n/a"
    assert "dbe_acc, dbe_comp: not computed, no true edge map" in out
    assert json.loads((tmp_path / "out.json").read_text())["geometry"]["metrics"]["dbe_acc"] is None
    pairs = write_example(tmp_path, edge_column=True, lines=2)  # one line with an edge map, one without
    code, out, err = run_cli(["evaluate", "--pairs", str(pairs), "--protocol", "custom", "--geometry", "--quiet",
                              "--csv", str(tmp_path / "rows.csv")], capsys)
    assert code == 0, err
    assert geometry_rows(out)["dbe_acc"] == "3.0645" and "over the 1 of 2 images" in out
    import pandas as pd

    rows = pd.read_csv(tmp_path / "rows.csv")  # per image: the edge map's line has DBE, the other none
    assert rows["dbe_acc"][0] == pytest.approx(190 / 62, abs=1e-4) and math.isnan(rows["dbe_acc"][1])
    assert list(rows["dde_minus"]) == pytest.approx([3 / 64, 3 / 64])


def test_geometry_errors_are_clear(tmp_path, capsys):
    pairs = write_example(tmp_path)
    cv2.imwrite(str(tmp_path / "edges.png"), np.zeros((32, 64), np.uint8))
    code, _, err = run_cli(["evaluate", "--pairs", str(pairs), "--protocol", "custom", "--geometry", "--quiet"], capsys)
    assert code == 2 and "edges.png" in err and "32x64" in err and "line 1" in err
    code, _, err = run_cli(["evaluate", "--pairs", str(pairs), "--protocol", "custom", "--geometry-version", "v1",
                            "--quiet"], capsys)
    assert code == 2 and "--geometry-version goes with --geometry" in err
    code, _, err = run_cli(["evaluate", "--pairs", str(pairs), "--protocol", "kitti-garg", "--geometry", "--quiet"],
                           capsys)
    assert code == 2 and "whole ground-truth frame" in err


def test_model_over_an_ibims_folder(tmp_path, rng, capsys):
    from predict_helpers import tiny_model
    from test_ibims_source import write_release

    from hqdepth.data import open_source
    from hqdepth.evaluation import get_protocol, model_for_protocol, protocol_prediction

    write_release(tmp_path / "ibims", rng)
    model = tiny_model((None, None, 3))
    model.save(tmp_path / "tiny.keras")
    spec = f"ibims:{tmp_path / 'ibims'}"
    code, out, err = run_cli(["evaluate", "--model", str(tmp_path / "tiny.keras"), "--data", spec, "--protocol",
                              "custom", "--geometry", "--quiet", "--json", str(tmp_path / "geo.json")], capsys)
    assert code == 0, err
    assert "true edges for 2, planes for 2" in out
    code, _, err = run_cli(["evaluate", "--model", str(tmp_path / "tiny.keras"), "--data", spec, "--protocol",
                            "custom", "--quiet", "--json", str(tmp_path / "plain.json")], capsys)
    assert code == 0, err
    geo, plain = (json.loads((tmp_path / name).read_text()) for name in ("geo.json", "plain.json"))
    assert geo["metrics"] == plain["metrics"]  # --geometry leaves the standard metrics alone
    reference, protocol = GeometryEvaluator(), get_protocol("custom")
    runner = model_for_protocol(model, protocol)
    for sample in open_source(spec, split="test"):
        pred = protocol_prediction(runner, sample.rgb, protocol, focal=sample.meta["focal"])
        reference.add(pred, sample.depth[..., 0], **ground_truth_from_meta(sample.meta))
    for key, value in reference.result().items():
        got = geo["geometry"]["metrics"][key]
        assert (got is None and math.isnan(value)) or got == pytest.approx(value, rel=1e-6, abs=1e-9), key
