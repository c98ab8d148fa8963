"""Where every setting of a paper recipe comes from: one YAML table per recipe in `recipes/sources/`.

A recipe (`hqdepth.training.recipes`) says what a run does; its sources table says why, setting by
setting: the paper's value, the official code's value, where each was read, and whether the recipe is

    faithful       the paper and/or the official code give this value and the recipe has it
    deviation      the recipe knowingly differs from what the paper or code did (the note says why)
    reconstructed  the paper and code are silent or unavailable; the value is our choice (the note says why)

`hqdepth recipes NAME --sources` prints the table; `tests/test_recipe_sources.py` holds every recipe to it
(`check`): each entry's `ours` equals the recipe's resolved value, and every setting that differs from
`recipes.DEFAULTS` has an entry, so a new setting cannot go untraced.

File format, `hqdepth/training/recipes/sources/NAME.yaml`::

    recipe: NAME
    base: OTHER            # optional: start from OTHER's table (as the recipe starts from its base)
    drop: [loss.options]   # optional: inherited entries under these dotted prefixes no longer apply
    references:            # the documents that `source` fields cite, by short key
      HQMDE: github.com/HalleyJiang/HQMDE @ 49ff50a (TF1 / TF-slim)
    settings:
      optimizer.learning_rate:          # dotted recipe field
        ours: 1.0e-4                    # the value the recipe must have (null: not set, class default)
        paper: "1e-4"                   # the paper's value, as text (null: the paper is silent)
        code: "--learning_rate 1e-4"    # the official code's value, as text (null: no code / silent)
        source: "paper §4.1; HQMDE README.md, train.py"
        status: faithful                # faithful | deviation | reconstructed
        note: ""                        # required for deviation and reconstructed

An entry may also trace a setting the recipe leaves at the class default (`ours: null`), e.g. a loss
option whose default is the official code's behaviour; the note then names the default.
"""

import copy

import yaml

from hqdepth.errors import ConfigError
from hqdepth.training import recipes as _recipes

SOURCES_DIR = _recipes.RECIPE_DIR / "sources"
STATUSES = ("faithful", "deviation", "reconstructed")
ENTRY_FIELDS = ("ours", "paper", "code", "source", "status", "note")
# Descriptive fields of a recipe: text about the run, not settings of it.
DESCRIPTIVE = ("name", "description", "paper", "table_row", "base")
MISSING = object()


def sourced_recipes():
    """Names of the recipes that have a sources table, sorted."""
    return sorted(path.stem for path in SOURCES_DIR.glob("*.yaml"))


def has_sources(name):
    """True when recipe `name` has a sources table."""
    return (SOURCES_DIR / f"{name}.yaml").is_file()


def _read(name):
    path = SOURCES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no sources table for recipe {name!r} ({path} does not exist); tables: "
                          f"{', '.join(sourced_recipes())}.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("settings", {}), dict):
        raise ConfigError(f"{path}: expected a mapping with `recipe`, `references` and `settings`.")
    if data.get("recipe") != name:
        raise ConfigError(f"{path}: `recipe: {data.get('recipe')}` does not match the file name {name!r}.")
    return data


def load_sources(name, _seen=()):
    """The sources table of recipe `name` with its `base` chain applied.

    Returns {"recipe", "references": {key: text}, "settings": {dotted key: entry}}; inherited entries
    keep their order, an entry of the derived file replaces the inherited one with the same key, new
    entries follow, and `drop` removes inherited entries under the given dotted prefixes.
    """
    if name in _seen:
        raise ConfigError(f"sources table {name!r} inherits from itself: {' -> '.join(_seen + (name,))}")
    data = _read(name)
    if data.get("base"):
        table = load_sources(data["base"], _seen + (name,))
    else:
        table = {"recipe": name, "references": {}, "settings": {}}
    table = copy.deepcopy(table)
    table["recipe"] = name
    for prefix in data.get("drop") or ():
        table["settings"] = {key: entry for key, entry in table["settings"].items()
                             if not (key == prefix or key.startswith(prefix + "."))}
    table["references"].update(data.get("references") or {})
    for key, entry in (data.get("settings") or {}).items():
        table["settings"][key] = entry
    return table


def flatten(config, prefix=""):
    """Dotted leaf settings of a (nested) recipe dict: {"optimizer.learning_rate": 1e-4, ...}.

    Lists are leaves; an empty dict is a leaf only where it stands for itself (nothing below it).
    """
    leaves = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            leaves.update(flatten(value, path + "."))
        else:
            leaves[path] = value
    return leaves


def lookup(config, key):
    """The value at dotted `key` of a recipe dict, or MISSING."""
    value = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def traced_settings(config):
    """The leaf settings of `config` a sources table must trace: those that differ from DEFAULTS."""
    defaults = flatten(_recipes.DEFAULTS)
    return {key: value for key, value in flatten(config).items()
            if key.split(".")[0] not in DESCRIPTIVE and (key not in defaults or defaults[key] != value)}


def same_value(a, b):
    """Recipe values compared as YAML reads them (1 == 1.0, [1, 2] == (1, 2), floats to 1e-12 relative)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, bool) and isinstance(b, bool) and a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or abs(a - b) <= 1e-12 * max(abs(a), abs(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return a == b


def recipe_value(config, key):
    """The recipe's value at `key` as a table's `ours` states it: an unset key reads as None."""
    value = lookup(config, key)
    return None if value is MISSING else value


def check(name, config=None):
    """Problems of recipe `name` against its sources table (an empty list when it holds).

    `config`: the resolved recipe (default `recipes.get_recipe(name)`). Checked: every entry has the
    fields of ENTRY_FIELDS, a valid status, a source, a paper or code value (or a note saying both are
    silent), a note when it is a deviation or a reconstruction, and `ours` equal to the recipe's value;
    every setting that differs from DEFAULTS has an entry.
    """
    config = _recipes.get_recipe(name) if config is None else config
    table = load_sources(name)
    problems = []
    for key, entry in table["settings"].items():
        where = f"{name}: {key}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: entry is not a mapping")
            continue
        missing = [field for field in ENTRY_FIELDS if field not in entry]
        unknown = sorted(set(entry) - set(ENTRY_FIELDS))
        if missing:
            problems.append(f"{where}: missing field(s) {', '.join(missing)}")
        if unknown:
            problems.append(f"{where}: unknown field(s) {', '.join(unknown)}")
        if entry.get("status") not in STATUSES:
            problems.append(f"{where}: status {entry.get('status')!r} is not one of {', '.join(STATUSES)}")
        if not entry.get("source"):
            problems.append(f"{where}: no source")
        if entry.get("status") in ("deviation", "reconstructed") and not entry.get("note"):
            problems.append(f"{where}: a {entry.get('status')} needs a note saying why")
        if entry.get("status") == "faithful" and entry.get("paper") is None and entry.get("code") is None:
            problems.append(f"{where}: faithful to nothing (neither paper nor code value given)")
        if "ours" in entry and not same_value(entry["ours"], recipe_value(config, key)):
            problems.append(f"{where}: table says ours = {entry['ours']!r}, the recipe has "
                            f"{recipe_value(config, key)!r}")
    for key, value in traced_settings(config).items():
        if key not in table["settings"]:
            problems.append(f"{name}: setting {key} = {value!r} has no entry in sources/{name}.yaml")
    return problems


def format_value(value):
    """A recipe value as the table prints it (YAML flow style, `unset` for None)."""
    if value is None:
        return "unset"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return str(value)


def summary(table):
    """{status: count} of a loaded table."""
    counts = {status: 0 for status in STATUSES}
    for entry in table["settings"].values():
        counts[entry.get("status")] = counts.get(entry.get("status"), 0) + 1
    return counts


__all__ = ["SOURCES_DIR", "STATUSES", "check", "flatten", "format_value", "has_sources", "load_sources", "lookup",
           "recipe_value", "same_value", "sourced_recipes", "summary", "traced_settings"]
