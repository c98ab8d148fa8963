"""The experiment scripts' tables: every row the papers print, and notes where a comparison differs.

Training is replaced by a stub (the recipes' own runs are tested elsewhere); what is checked here is
what the tables say.
"""

import json
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture()
def scripts(monkeypatch):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import common

    calls = []

    def fake_train(recipe, data, out, sets=(), print_fn=print, val_data=None):
        calls.append((recipe, data, list(sets)))
        return {"test": {"metrics": {"abs_rel": 0.5, "rmse": 1.5, "d1": 0.25}}, "steps": 3}

    monkeypatch.setattr(common, "train_recipe", fake_train)
    modules = {}
    for name in ("hqmd_table1", "bts_table", "mrpan_table1"):
        sys.modules.pop(name, None)
        modules[name] = __import__(name)
    yield modules, calls
    for name in modules:
        sys.modules.pop(name, None)


def _table(out):
    return (Path(out) / "table.md").read_text(), json.loads((Path(out) / "table.json").read_text())["rows"]


def test_hqmd_table1_prints_every_row_of_the_paper(scripts, tmp_path, capsys):
    modules, calls = scripts
    module = modules["hqmd_table1"]
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    text, rows = _table(tmp_path)
    assert [c[0] for c in calls] == list(module.PAPER)
    methods = [row["method"] for row in rows]
    # the ten cited methods first, in the paper's order, then paper + ours for each ablation row
    assert methods[:10] == [label for label, _ in module.CITED]
    assert methods[:10][0] == "Make3D [1]" and methods[9] == "Hu et al. [15] (ResNet-50)"
    assert len(rows) == 10 + 2 * 5 + 1
    readme = [row for row in rows if row["source"] == "code README"]
    assert len(readme) == 1 and readme[0]["method"] == "Baseline+ w/ full loss"
    assert readme[0]["d2"] == 0.967 and readme[0]["sq_rel"] == 0.088
    full_paper = next(r for r in rows if r["method"] == "Baseline+ w/ full loss" and r["source"] == "paper")
    assert full_paper["d2"] == 0.966 and "sq_rel" not in full_paper
    assert "| Make3D [1] | paper [1] | 0.349 | – |" in text
    assert "0.967 vs 0.966" in text and "sq_rel 0.088" in text
    assert "0.967" in capsys.readouterr().out
    assert module.main(["--quick", "--out", str(tmp_path / "b"), "--no-cited", "--rows", "hqmd_plus_full"]) == 0
    assert [row["source"] for row in _table(tmp_path / "b")[1]][:2] == ["paper", "code README"]


def test_hqmd_table1_on_synthetic_data_trains_every_row_with_three_seeds_identically(scripts, tmp_path):
    modules, calls = scripts
    study = sys.modules["hqmd_synthetic"] if "hqmd_synthetic" in sys.modules else __import__("hqmd_synthetic")
    assert modules["hqmd_table1"].main(["--data", "synthetic", "--train-only", "--out", str(tmp_path)]) == 0
    assert [c[0] for c in calls] == study.ROWS * 3  # seed-major: an interrupted grid has whole seeds
    assert all(c[1] == "synthetic:1000?size=96x128" for c in calls)
    for seed in range(3):
        runs = calls[5 * seed:5 * seed + 5]
        assert all(f"train.seed={seed}" in sets for _, _, sets in runs)
        # identical settings but for what makes the row (the recipe): steps, size, schedule, initialisation
        shared = [[s for s in sets if not s.startswith("model.options.freeze")] for _, _, sets in runs]
        assert all(sets == shared[0] for sets in shared)
        assert "train.max_steps=200" in shared[0] and "model.options.backbone_weights=none" in shared[0]
    sys.modules.pop("hqmd_synthetic", None)


def test_bts_table_says_the_toolbox_numbers_are_with_flip(scripts, tmp_path):
    modules, calls = scripts
    assert modules["bts_table"].main(["--out", str(tmp_path)]) == 0
    text, rows = _table(tmp_path)
    assert [c[0] for c in calls] == ["bts_nyu", "bts_nyu_toolbox24", "bts_kitti"]
    toolbox = [row for row in rows if row["method"].startswith(("NYU, Toolbox", "KITTI Eigen, Toolbox"))
               and row["source"].startswith("paper")]
    assert len(toolbox) == 2 and all("WITH flip" in row["note"] for row in toolbox)
    official = next(r for r in rows if r["method"].startswith("NYU, official") and r["source"] == "paper")
    assert "no flip" in official["note"] and official["d2"] == 0.975
    assert "WITH flip test-time augmentation" in text and "[1]" in text
    # every line says how it was measured
    assert all(row.get("note") for row in rows)


def test_mrpan_table_notes_the_backbone_and_cited_protocols(scripts, tmp_path):
    modules, calls = scripts
    assert modules["mrpan_table1"].main(["--out", str(tmp_path)]) == 0
    text, rows = _table(tmp_path)
    assert len(calls) == 3 and all(c[0] == "mrpan_nyu" for c in calls)
    assert rows[0]["method"] == "Eigen et al." and "own backbone, code and protocol" in rows[0]["note"]
    paper = [row for row in rows if row["source"] == "paper" and "MRPAN paper" in row.get("note", "")]
    assert len(paper) == 3 and "SENet-154" in text


def test_format_table_numbers_notes_once():
    sys.path.insert(0, str(EXPERIMENTS))
    try:
        import common
    finally:
        sys.path.remove(str(EXPERIMENTS))
    rows = [{"method": "a", "source": "paper", "abs_rel": 0.1, "note": "x"},
            {"method": "b", "source": "paper", "abs_rel": 0.2, "note": "x"},
            {"method": "c", "source": "ours", "abs_rel": 0.3, "note": "y"},
            {"method": "d", "source": "ours", "abs_rel": 0.4}]
    text = common.format_table(rows, "t", [("abs_rel", "Abs Rel", "lower")])
    assert "| a | paper [1] | 0.100 |" in text and "| b | paper [1] | 0.200 |" in text
    assert "| c | ours [2] | 0.300 |" in text and "| d | ours | 0.400 |" in text
    assert text.endswith("[1] x\n[2] y")


def test_synthetic_study_calls_a_difference_separated_only_beyond_twice_its_standard_error(scripts):
    import hqmd_synthetic as study

    def row(values, metric="dbe_acc"):
        return {"runs": [{"metrics": {metric: v}} for v in values]}

    rows = {"a": row([5.0, 5.2, 4.8]), "b": row([4.0, 4.2, 3.8]), "c": row([4.9, 5.3, 4.7])}
    sharper = study.compare(rows, "a", "b", "dbe_acc")
    # difference -1.0; standard error sqrt(0.04 / 3 + 0.04 / 3) = 0.163
    assert sharper["difference"] == pytest.approx(-1.0) and sharper["standard_error"] == pytest.approx(0.1633, abs=1e-4)
    assert sharper["better"] and sharper["separated"]
    noise = study.compare(rows, "a", "c", "dbe_acc")
    assert noise["better"] and not noise["separated"]  # 0.03 better, well within the seeds' noise
    higher = study.compare({"a": row([0.5, 0.6, 0.7], "d1"), "b": row([0.8, 0.9, 1.0], "d1")}, "a", "b", "d1")
    assert higher["better"] and higher["separated"]  # d1: higher is better
    sys.modules.pop("hqmd_synthetic", None)
