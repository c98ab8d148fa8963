"""The experiment scripts' tables: every row the papers print, and notes where a comparison differs.

Training is replaced by a stub (the recipes' own runs are tested elsewhere); what is checked here is
what the tables say.
"""

import json
import math
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture()
def scripts(monkeypatch):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import common

    calls = []

    def fake_train(recipe, data, out, sets=(), print_fn=print, val_data=None, test_data=None):
        calls.append((recipe, data, list(sets)))
        VALIDATED_ON[recipe] = val_data
        TESTED_ON[recipe] = test_data
        return {"test": {"metrics": {"abs_rel": 0.5, "rmse": 1.5, "d1": 0.25}}, "steps": 3}

    monkeypatch.setattr(common, "train_recipe", fake_train)
    modules = {}
    for name in ("hqmd_table1", "bts_table", "mrpan_table1"):
        sys.modules.pop(name, None)
        modules[name] = __import__(name)
    yield modules, calls
    for name in modules:
        sys.modules.pop(name, None)


def test_hqmd_table1_help_names_the_other_set_of_options(scripts, capsys):
    """--help of the default (the synthetic study) points to the paper table's options, which --quick --help lists."""
    module = scripts[0]["hqmd_table1"]
    with pytest.raises(SystemExit):
        module.main(["--help"])
    text = capsys.readouterr().out
    assert "--seeds" in text and "`--quick --help`" in text and text.startswith("usage: hqmd_table1.py")
    with pytest.raises(SystemExit):
        module.main(["--quick", "--help"])
    assert "--no-cited" in capsys.readouterr().out


VALIDATED_ON = {}  # recipe -> the val_data its run was given (the fake train_recipe's record)
TESTED_ON = {}  # and the test_data


def test_a_paper_table_is_not_scored_on_its_training_frames(scripts, tmp_path):
    """A full (not quick) table whose --data has no test split (BTS's lists, a folder) stops before any row trains,
    naming --test-data; with it, each row is tested on it (before, the scripts had no --test-data and printed a
    training-set score beside the paper's). Quick runs are machinery checks and may share frames."""
    import cv2
    import numpy as np

    from hqdepth.errors import ConfigError

    modules, calls = scripts
    specs = []
    for name in ("train", "test"):
        for sub in ("rgb", "depth"):
            (tmp_path / name / sub).mkdir(parents=True)
        for k in range(2):
            cv2.imwrite(str(tmp_path / name / "rgb" / f"{k}.png"), np.full((8, 8, 3), 100 + k, np.uint8))
            cv2.imwrite(str(tmp_path / name / "depth" / f"{k}.png"), np.full((8, 8), 1000 + k, np.uint16))
        specs.append(f"folder:{tmp_path / name}?scale=1000")
    train, test = specs
    with pytest.raises(ConfigError, match=r"bts_nyu: 2 of the 2 test samples .* are training samples .*--test-data"):
        modules["bts_table"].main(["--data", train, "--out", str(tmp_path / "a")])
    with pytest.raises(ConfigError, match=r"hqmd_baseline_ldepth: 2 of the 2 test samples"):
        modules["hqmd_table1"].main(["--data", train, "--set", "data.val_split=test", "--out", str(tmp_path / "b")])
    assert calls == []
    assert modules["bts_table"].main(["--data", train, "--test-data", test, "--out", str(tmp_path / "c")]) == 0
    assert [call[0] for call in calls] == ["bts_nyu", "bts_nyu_toolbox24"]
    assert TESTED_ON["bts_nyu"] == TESTED_ON["bts_nyu_toolbox24"] == test
    assert modules["bts_table"].main(["--quick", "--data", train, "--out", str(tmp_path / "d")]) == 0
    assert modules["bts_table"].main(["--data", train, "--set", "train.test_evaluation=false",  # nothing scored
                                      "--out", str(tmp_path / "e")]) == 0


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
    assert all(c[1] == "synthetic:1000?size=64x96" for c in calls)
    with pytest.raises(SystemExit):  # a flag of the quick table only: said, not silently dropped
        modules["hqmd_table1"].main(["--no-cited", "--train-only", "--out", str(tmp_path)])
    for seed in range(3):
        runs = calls[5 * seed:5 * seed + 5]
        assert all(f"train.seed={seed}" in sets for _, _, sets in runs)
        # identical settings but for what makes the row (the recipe): steps, size, schedule, initialisation
        shared = [[s for s in sets if not s.startswith("model.options.freeze")] for _, _, sets in runs]
        assert all(sets == shared[0] for sets in shared)
        assert "train.max_steps=2000" in shared[0] and "model.options.backbone_weights=none" in shared[0]
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
    # --val-data is for the NYU rows; the KITTI row validates on KITTI (its own data, or --kitti-val-data)
    VALIDATED_ON.clear()
    assert modules["bts_table"].main(["--out", str(tmp_path / "v"), "--val-data", "synthetic:4"]) == 0
    assert VALIDATED_ON == {"bts_nyu": "synthetic:4", "bts_nyu_toolbox24": "synthetic:4", "bts_kitti": None}
    VALIDATED_ON.clear()
    assert modules["bts_table"].main(["--out", str(tmp_path / "k"), "--kitti-val-data", "synthetic:2"]) == 0
    assert VALIDATED_ON == {"bts_nyu": None, "bts_nyu_toolbox24": None, "bts_kitti": "synthetic:2"}


def _batch(sets):
    return [s for s in sets if s.startswith("train.batch_size=")][-1]


def test_quick_notes_say_which_data_and_protocol(scripts, tmp_path):
    """A quick run's note names the data and protocol it used (it said "synthetic scenes with a custom protocol"
    whatever --data / --kitti-data gave)."""
    modules, _ = scripts
    real, kitti = "folder:/data/nyu3?scale=1000", "kitti:k.txt@/data/kitti"
    assert modules["bts_table"].main(["--quick", "--data", real, "--out", str(tmp_path / "a")]) == 0
    notes = [row["note"] for row in _table(tmp_path / "a")[1] if row["source"].startswith("ours")]
    quick = (f"Quick run: a few steps from random weights at a reduced size (batch 2, on {real} with the recipe's "
             "protocol); checks the machinery only.")
    flip = " With flip test-time augmentation (the recipe's evaluation.flip), as the Toolbox line."
    assert notes == [quick, quick + flip]  # the Toolbox row is scored with flip, quick or not
    assert modules["bts_table"].main(["--kitti-data", kitti, "--out", str(tmp_path / "b")]) == 0
    notes = [row["note"] for row in _table(tmp_path / "b")[1] if row["source"].startswith("ours")]
    assert "(batch 8, on synthetic scenes with a custom protocol)" in notes[0]
    assert f"(batch 2, on {kitti} with a custom protocol)" in notes[2]
    assert modules["hqmd_table1"].main(["--quick", "--data", real, "--no-cited", "--rows", "hqmd_plus_full",
                                        "--out", str(tmp_path / "c")]) == 0
    assert f"on {real} with the recipe's protocol" in _table(tmp_path / "c")[1][-1]["note"]


def test_quick_batch_fits_a_few_real_frames(scripts, tmp_path, capsys):
    """--quick on real data trains at batch 2, which 3 frames fill (batch 8 stopped: "fewer than one global batch
    (8)"), and says so; synthetic NYU rows keep batch 8 beside a real KITTI row at 2."""
    modules, calls = scripts
    assert modules["bts_table"].main(["--quick", "--data", "folder:/d?scale=1000", "--out", str(tmp_path / "a")]) == 0
    assert [_batch(sets) for _, _, sets in calls] == ["train.batch_size=2"] * 2
    assert "batch 2" in capsys.readouterr().out
    calls.clear()
    assert modules["bts_table"].main(["--kitti-data", "kitti:k.txt@/k", "--out", str(tmp_path / "b")]) == 0
    assert [_batch(sets) for _, _, sets in calls] == ["train.batch_size=8"] * 2 + ["train.batch_size=2"]
    calls.clear()
    assert modules["mrpan_table1"].main(["--data", "folder:/d?scale=1000", "--quick", "--out", str(tmp_path)]) == 0
    assert {_batch(sets) for _, _, sets in calls} == {"train.batch_size=2"}
    # on real data the recipe's nyu-hu protocol, its predictions clipped as the docstring says (the custom
    # protocol's clip=range made it stop with a ValueError)
    from hqdepth.training import recipes, trainer

    protocol = trainer.protocol_of(recipes.resolve_config(calls[0][0], sets=calls[0][2]))
    assert protocol.name == "nyu-hu" and tuple(protocol.clip) == (0.001, 10.0)


@pytest.mark.parametrize("name", ["bts_table", "hqmd_table1", "mrpan_table1", "fcn_ssim", "resnet_transposed"])
def test_help_describes_the_script_in_whole_sentences(scripts, name, capsys):
    """--help prints the docstring's whole first paragraph (its first line stopped mid-sentence)."""
    module = scripts[0].get(name) or __import__(name)
    with pytest.raises(SystemExit):
        module.main(["--quick", "--help"])
    first = module.__doc__.split("\n\n")[0]
    assert first.rstrip().endswith(".") and "".join(first.split()) in "".join(capsys.readouterr().out.split())
    sys.modules.pop(name, None)


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


def test_synthetic_study_compares_rows_seed_by_seed_with_a_paired_t_test(scripts):
    from scipy import stats

    import hqmd_synthetic as study

    def row(values, metric="dbe_acc", status=None):
        return {"runs": [{"seed": seed, "metrics": {metric: v}, **({"status": status[seed]} if status else {})}
                         for seed, v in enumerate(values)]}

    a, b, c = [5.0, 5.2, 4.8], [4.1, 4.2, 3.7], [4.9, 5.3, 4.7]
    rows = {"a": row(a), "b": row(b), "c": row(c)}
    sharper = study.compare(rows, "a", "b", "dbe_acc")
    # per-seed differences -0.9, -1.0, -1.1: mean -1.0, s.e. 0.1 / sqrt(3); p from SciPy's paired t-test
    assert sharper["n"] == 3 and sharper["difference"] == pytest.approx(-1.0)
    assert sharper["standard_error"] == pytest.approx(0.1 / 3 ** 0.5)
    assert sharper["p"] == pytest.approx(stats.ttest_rel(b, a).pvalue) and sharper["p"] < 0.01
    assert sharper["better"] and sharper["separated"]
    noise = study.compare(rows, "a", "c", "dbe_acc")  # differences -0.1, +0.1, -0.1: within the seeds' noise
    assert noise["p"] == pytest.approx(stats.ttest_rel(c, a).pvalue) and noise["p"] > 0.5 and not noise["separated"]
    higher = study.compare({"a": row([0.5, 0.6, 0.7], "d1"), "b": row([0.8, 0.95, 1.0], "d1")}, "a", "b", "d1")
    assert higher["better"] and higher["separated"]  # d1: higher is better
    # a run that did not finish, or a missing value, leaves its pair out; fewer than 2 pairs: no verdict
    rows["d"] = row([4.0, None, 3.0], status=["finished", "finished", "stopped: loss became NaN"])
    partial = study.compare(rows, "a", "d", "dbe_acc")
    assert partial["n"] == 1 and partial["difference"] is None and not partial["separated"]

    # the results page: mean +- std per row beside the paper, every comparison, the runs left out
    metrics = {key: 1.0 for key in study.KEYS}
    result_rows = [{"label": "Baseline+ w/ full loss", "recipe": "hqmd_plus_full", "paper": {"abs_rel": 0.127,
                    "rmse": 0.468, "d1": 0.841}, "mean": metrics, "std": dict.fromkeys(study.KEYS, 0.25),
                    "runs": [{"seed": 0, "status": "finished"}, {"seed": 1, "status": "stopped: loss became NaN"}]}]
    page = study.markdown({"command": "python x", "date": "d", "machine": {"cpu": "Xeon", "nproc": 2},
                           "settings": {"seeds": [0, 1], "steps": 2, "size": [96, 128], "scenes": 8, "test_scenes": 4},
                           "rows": result_rows, "claims": [{"what": "w", "comparisons": [sharper, partial]}]})
    assert "| Baseline+ w/ full loss | hqmd_plus_full | 1.000 ± 0.250 |" in page and "| 0.468 |" in page
    assert "| w | dbe_acc | 3 | -1.0000 |" in page and "| w | dbe_acc | 1 | – |" in page
    assert "hqmd_plus_full seed 1 (stopped: loss became NaN)" in page
    sys.modules.pop("hqmd_synthetic", None)


def test_synthetic_study_scores_the_truth_and_blurred_truth_as_references(scripts):
    import hqmd_synthetic as study
    from hqdepth.data import open_source
    from hqdepth.geometry import depth_boundary_errors

    spec = "synthetic:6?size=64x96"
    truth, *blurred = study.references(spec, blurs=(2.0, 8.0))
    assert [ref["blur_sigma_px"] for ref in blurred] == [2.0, 8.0]
    # the true depth: its own Canny edges against the exact edges, flat planes in the right orientation
    samples = list(open_source(spec, split="test"))
    own = [depth_boundary_errors(s.depth[..., 0], s.meta["edges"])[0] for s in samples]
    assert truth["metrics"]["dbe_acc"] == pytest.approx(sum(own) / len(own))
    assert truth["metrics"]["dde_0"] == 1.0 and truth["metrics"]["pe_plan"] < 1e-3 and truth["metrics"]["pe_orie"] < 1e-3
    # blurring by 8 px moves and loses edges and bends the planes
    assert blurred[1]["metrics"]["dbe_acc"] > truth["metrics"]["dbe_acc"] + 1.0
    assert blurred[1]["metrics"]["pe_orie"] > 5.0 and blurred[1]["metrics"]["dde_0"] < 1.0
    # the objects: the truth shows every step in full, blurring flattens them
    assert truth["metrics"]["contrast_ratio"] == 1.0 and truth["metrics"]["objects_seen"] == 1.0
    assert 0.0 < blurred[1]["metrics"]["contrast_ratio"] < blurred[0]["metrics"]["contrast_ratio"] < 1.0
    page = study.markdown({"command": "python x", "date": "d", "machine": {"cpu": "Xeon", "nproc": 2},
                           "settings": {"seeds": [0], "steps": 2, "size": [64, 96], "scenes": 8, "test_scenes": 6},
                           "rows": [{"label": "L", "recipe": "hqmd_plus_full", "paper": {"abs_rel": 0.127, "rmse": 0.468,
                                                                                           "d1": 0.841},
                                     "mean": dict.fromkeys(study.KEYS, 1.0), "std": dict.fromkeys(study.KEYS),
                                     "runs": [{"seed": 0, "status": "finished"}]}],
                           "claims": [], "references": [truth, *blurred]})
    assert f"| true depth | {truth['metrics']['dbe_acc']:.3f} |" in page
    assert "| true depth blurred, sigma 8 px |" in page
    # one seed: no spread and no paired comparison to show
    assert "(1 seed each)" in page.splitlines()[0] and "| L | hqmd_plus_full | 1.000 | 1.000 |" in page
    assert "±" not in page and "Not checked: a paired comparison needs at least two seeds" in page
    assert study.summarise([0.5, math.nan]) == (0.5, None) and study.summarise([1.0, 3.0])[1] == pytest.approx(2 ** 0.5)
    sys.modules.pop("hqmd_synthetic", None)


def test_synthetic_study_evaluates_a_run_once_with_the_object_measures(scripts, tmp_path, monkeypatch):
    import hqmd_synthetic as study
    from predict_helpers import tiny_model

    from hqdepth.data import open_source, synthetic

    folder = tmp_path / "run"
    folder.mkdir()
    tiny_model((None, None, 3)).save(folder / "model.keras")
    spec, scenes = "synthetic:5?size=48x64", tuple(range(5))
    metrics, maps = study.evaluate_run(folder, spec, with_maps=scenes)
    assert {"abs_rel", "rmse", "dbe_acc", "dbe_comp", "dde_0", "contrast_ratio", "objects_seen"} <= set(metrics)
    # the object measures are those of the predictions it returns
    samples = list(open_source(spec, split="test"))
    views = [synthetic.object_views("test", i, (48, 64)) for i in scenes]
    expected = synthetic.object_measures([maps[i] for i in scenes], [s.depth[..., 0] for s in samples],
                                         [v[0] for v in views], [v[1] for v in views])
    assert expected["objects"] > 0 and metrics["contrast_ratio"] == pytest.approx(expected["contrast_ratio"])
    assert metrics["objects_seen"] == pytest.approx(expected["objects_seen"])
    # cached while the model, the data and the measures are the same; redone when the measures change
    monkeypatch.setattr(study, "_evaluate_run", lambda *a: pytest.fail("evaluated again"))
    again, _ = study.evaluate_run(folder, spec, with_maps=scenes)
    assert again == metrics
    monkeypatch.setattr(study, "EVALUATION_VERSION", study.EVALUATION_VERSION + 1)
    with pytest.raises(pytest.fail.Exception, match="evaluated again"):
        study.evaluate_run(folder, spec, with_maps=scenes)
    sys.modules.pop("hqmd_synthetic", None)


def test_ibims_official_check_reports_differences(tmp_path, monkeypatch, capsys):
    """The cross-check's wiring, with a stand-in for the official module built on hqdepth's own functions
    (no difference expected) and a stand-in that is off by 0.01 px in DBE accuracy (caught)."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import ibims_official_check as check

    stand_in = tmp_path / "official.py"
    stand_in.write_text('''
import numpy as np
from hqdepth import geometry
OFFSET = {offset}

def compute_depth_boundary_error(edges_gt, pred):
    acc, comp = geometry.depth_boundary_errors(pred, edges_gt)
    return acc + OFFSET, comp, None

def compute_directed_depth_error(gt, pred, thr):
    return geometry.directed_depth_errors(pred, gt, thr)

def compute_planarity_error(gt, pred, paras, mask, calib):
    k = (calib[0, 0], calib[1, 1], calib[2, 0], calib[2, 1])
    flat, orie = geometry.plane_errors(pred, gt, mask > 0, paras[0, 4:7], k)
    return np.array([flat]), np.array([orie])
''')
    args = ["--official", str(stand_in), "--sizes", "240x320", "--scenes", "2"]
    stand_in.write_text(stand_in.read_text().replace("{offset}", "0.0"))
    assert check.main(args) == 0
    out = capsys.readouterr().out
    assert "240x320: 6 images" in out and "dbe_acc    largest |hqdepth - official| = 0" in out
    assert "planes scored" in out and "pe_orie" in out
    stand_in.write_text(stand_in.read_text().replace("OFFSET = 0.0", "OFFSET = 0.01"))
    assert check.main(args) == 1
    assert "exceeds the tolerance" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no such file"):
        check.main(["--official", str(tmp_path / "missing.py")])
    stand_in.write_text("import sklearn_not_installed_here\n")
    with pytest.raises(SystemExit, match="imports 'sklearn_not_installed_here'.*pip install"):
        check.main(["--official", str(stand_in)])
    sys.modules.pop("ibims_official_check", None)


def test_a_scripts_user_error_is_one_line_and_status_2(scripts, tmp_path, capsys):
    """`python experiments/bts_table.py --data list:(3 frames)`: the trainer's ConfigError in one line, as the
    `hqdepth` command prints it, not a traceback."""
    import common

    from hqdepth.errors import ConfigError

    def fails():
        raise ConfigError("the training split has 3 samples, fewer than one global batch (8).")

    assert common.run(fails) == 2
    assert capsys.readouterr().err.endswith(": error: the training split has 3 samples, fewer than one global "
                                            "batch (8).\n")
    assert common.run(lambda: 0) == 0
