"""Every paper recipe against its sources table (hqdepth/training/recipes/sources/NAME.yaml).

A table entry states the value the recipe must have (`ours`); a recipe setting that differs from
DEFAULTS must have an entry, so a setting cannot be added or changed without saying where it comes from.
"""

import pytest
import yaml

from hqdepth.cli import main
from hqdepth.training import recipe_sources as rs
from hqdepth.training import recipes

RECIPES = sorted(path.stem for path in recipes.RECIPE_DIR.glob("*.yaml"))


def test_every_recipe_has_a_sources_table():
    assert RECIPES, "no recipes found"
    assert rs.sourced_recipes() == RECIPES


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_holds_to_its_sources_table(name):
    problems = rs.check(name)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", RECIPES)
def test_table_entries_are_well_formed(name):
    table = rs.load_sources(name)
    assert table["settings"], f"{name}: empty table"
    assert table["references"], f"{name}: no references (the documents its sources cite)"
    for key, entry in table["settings"].items():
        assert set(entry) == set(rs.ENTRY_FIELDS), (key, sorted(entry))
        assert entry["status"] in rs.STATUSES, (key, entry["status"])
        for field in ("paper", "code", "source", "note"):
            assert entry[field] is None or isinstance(entry[field], str), (key, field, entry[field])
        # every source names at least one of the documents the table lists (or the project's specs)
        cited = [ref for ref in table["references"] if ref in entry["source"]]
        assert cited or "spec" in entry["source"], (key, entry["source"])


def test_check_finds_untraced_changed_and_malformed_settings(tmp_path, monkeypatch):
    config = recipes.get_recipe("hqmd_plus_full")
    assert rs.check("hqmd_plus_full", config) == []
    changed = recipes.merge(config, {"optimizer": {"learning_rate": 3e-4}, "train": {"seed": 7}})
    problems = rs.check("hqmd_plus_full", changed)
    assert any("optimizer.learning_rate" in p and "0.0003" in p for p in problems), problems
    assert any("train.seed = 7 has no entry" in p for p in problems), problems

    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "toy.yaml").write_text(yaml.safe_dump({"recipe": "toy", "references": {"x": "y"}, "settings": {
        "train.epochs": {"ours": 3, "paper": None, "code": None, "source": "s", "status": "faithful", "note": ""},
        "train.batch_size": {"ours": 8, "paper": "8", "code": None, "source": "", "status": "deviation",
                             "note": ""},
        "optimizer.learning_rate": {"ours": 1e-4, "paper": "1e-4", "code": None, "source": "s",
                                    "status": "exact"},
    }}))
    (sources / "toy2.yaml").write_text(yaml.safe_dump({"recipe": "toy2", "base": "toy", "drop": ["train"],
                                                       "settings": {}}))
    monkeypatch.setattr(rs, "SOURCES_DIR", sources)
    toy = recipes.merge(recipes.DEFAULTS, {"model": {"name": "m"}, "loss": {"name": "l"}, "train": {"epochs": 3}})
    problems = "\n".join(rs.check("toy", toy))
    assert "train.epochs: faithful to nothing" in problems
    assert "train.batch_size: no source" in problems and "a deviation needs a note" in problems
    assert "optimizer.learning_rate: missing field(s) note" in problems and "status 'exact'" in problems
    assert "model.name = 'm' has no entry" in problems
    assert list(rs.load_sources("toy2")["settings"]) == ["optimizer.learning_rate"]  # drop: [train]


def test_flatten_and_values():
    assert rs.flatten({"a": {"b": 1, "c": [1, 2], "d": {}}, "e": None}) == {"a.b": 1, "a.c": [1, 2], "a.d": {},
                                                                          "e": None}
    assert rs.same_value(1, 1.0) and rs.same_value([1, 2], (1, 2)) and not rs.same_value(True, 1)
    assert rs.same_value(1e-4, 0.0001) and not rs.same_value(1e-4, 1e-5) and not rs.same_value(None, 0)
    assert rs.lookup({"a": {"b": 2}}, "a.b") == 2 and rs.lookup({"a": {}}, "a.b") is rs.MISSING


def test_cli_prints_the_table(capsys):
    assert main(["recipes", "hqmd_plus_full", "--sources"]) == 0
    out = capsys.readouterr().out
    assert "schedule.options.decay_rate = 0.9  [faithful]" in out
    assert "HalleyJiang/HQMDE" in out and "tf.train.exponential_decay" in out
    assert "settings:" in out and "faithful" in out.splitlines()[-1]
    # an override shows as changed, beside the table's value
    assert main(["recipes", "hqmd_plus_full", "--sources", "--set", "optimizer.learning_rate=3e-4"]) == 0
    out = capsys.readouterr().out
    assert "optimizer.learning_rate = 0.0003  (recipe as published here: 0.0001)  [faithful, changed]" in out
    assert "1 changed by overrides" in out
    assert main(["recipes", "bts_nyu", "--sources", "--status", "deviation"]) == 0
    out = capsys.readouterr().out
    assert "[faithful]" not in out and "[deviation]" in out
    assert main(["recipes", "--sources"]) == 2


def test_seed004_cyclic_rate_ends_at_its_minimum_where_the_report_takes_its_result():
    """resnet50_transposed: the report's result is at epoch 20; the run must end a whole cycle there
    (rate back at its minimum), not at the peak a 4-epoch half cycle reached."""
    from hqdepth.training.schedules import build_schedule

    config = recipes.get_recipe("resnet50_transposed")
    schedule, epochs = config["schedule"], config["train"]["epochs"]
    assert epochs == 20 and schedule["name"] == "cyclic"
    half = schedule["options"]["step_size_epochs"]
    assert epochs % (2 * half) == 0  # whole cycles
    low, high = config["optimizer"]["learning_rate"], schedule["options"]["max_learning_rate"]
    for steps_per_epoch in (7, 125, 6331):
        total = epochs * steps_per_epoch
        rate = build_schedule("cyclic", low, schedule["options"], steps_per_epoch=steps_per_epoch, total_steps=total)
        assert float(rate(total)) == pytest.approx(low, rel=1e-6)
        assert float(rate(total - 1)) == pytest.approx(low + (high - low) / (half * steps_per_epoch), rel=1e-4)
        assert float(rate(half * steps_per_epoch)) == pytest.approx(high, rel=1e-6)


def test_cli_markdown_table(capsys):
    assert main(["recipes", "resnet50_transposed", "--sources", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| setting | ours | paper | official code | source | status | note |" in out
    assert "| `schedule.options.step_size_epochs` | `5` |" in out and "reconstructed" in out
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    assert len(rows) == len(rs.load_sources("resnet50_transposed")["settings"])
    assert all(line.count(" | ") == 6 for line in rows)  # no unescaped '|' inside a cell
