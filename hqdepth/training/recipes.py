"""Training recipes: one YAML file per paper setting in `recipes/`, resolved to a plain dict.

A recipe names everything a run needs (model and options, loss, optimizer, schedule, data and
augmentation, batch size, epochs, evaluation protocol). `base:` inherits from another recipe
(deep merge). Overrides come from YAML/JSON files and from `--set dotted.key=value`; the result
is saved as `config.yaml` in the run folder, so a run can be repeated exactly.

Merge rule: in a section with `name` and `options` (model, loss, optimizer, schedule), a new
`name` starts from empty `options`: options belong to the class they configure. Likewise a new
`data.augmentation` starts from empty `data.augmentation_options`.
"""

import copy
import json
import os
import re
from pathlib import Path

import yaml

from hqdepth.errors import ConfigError

RECIPE_DIR = Path(__file__).parent / "recipes"

# Every field a recipe can set, with its default. `options` dicts are free-form (passed to the
# class they configure); everything else is checked, so a typo in `--set` is an error.
DEFAULTS = {
    "name": None,
    "description": "",
    "paper": "",
    "table_row": None,
    "base": None,
    # init: start from a trained model's weights (a .keras file, a run folder's model.keras) instead of the recipe's
    # initialisation; `trainer.init_file` (fine-tuning, continuing a finished run in a new folder)
    "model": {"name": None, "options": {}, "init": None},
    "loss": {"name": None, "options": {}},
    # decay_encoder_only: exempt the model family's decoder (`register_model(decoder_variables=...)`) from
    # the optimizer's weight decay (BTS decays the encoder only). fused: Adam/AdamW update by TensorFlow's
    # one-pass kernel (`hqdepth.training.optimizers`; same results, faster); false = Keras' own classes.
    "optimizer": {"name": "adam", "learning_rate": 1e-4, "decay_encoder_only": False, "fused": True, "options": {}},
    "schedule": {"name": "constant", "options": {}},
    "data": {
        "input_size": None,          # [H, W] the model is built and trained at
        "augmentation": "none",      # hqdepth.data.augment recipe
        "augmentation_options": {},
        "with_focal": False,         # ((image, focal), depth) for focal-aware models (BTS KITTI)
        "train_split": "train",
        "val_split": "val",
        "test_split": "test",
        "shuffle": True,             # shuffle the training split (False: source order, e.g. to compare runs)
        "cache": False,              # cache decoded samples in memory (small datasets)
        "shuffle_buffer": None,
        "skip_bad": False,
    },
    "train": {
        "batch_size": 8,             # per replica: global batch = batch x replicas ...
        "batch_size_is_global": False,  # ... unless True (a paper's total batch split over its GPUs)
        "epochs": 1,
        "total_steps": None,         # optimizer steps of the whole run, whatever the dataset size (replaces
                                     # epochs; schedules decay over these), e.g. HQMD's 300k
        "steps_per_epoch": None,     # None: one pass over the training split, in steps as epoch_steps says:
        # floor: whole global batches (Keras' count); ceil: the last, partial batch counts too, as a PyTorch
        # DataLoader (drop_last=False) counts an epoch (BTS, SARPN). The stream runs on across passes, so that
        # step takes its missing samples from the next pass; only the schedule's length follows this.
        "epoch_steps": "floor",
        "max_steps": None,           # stop after this many optimizer steps in total (quick runs)
        "validation_every_steps": None,  # None: validate once per epoch
        "validation_steps": None,    # None: the whole validation split
        "checkpoint_every_steps": None,  # None: once per epoch (and at every validation)
        "monitor": "val_rmse",       # best.keras is chosen by this
        "monitor_mode": "min",
        "seed": 0,
        # deterministic: TensorFlow op determinism + the seed (needs one) + an input order that keeps its
        # element order: two runs, or a run killed at any moment and rerun, end with the same weights
        # (the training steps cost more; benchmarks/deterministic.md).
        "deterministic": False,
        "log_every_steps": 10,       # TensorBoard training scalars
        "image_samples": 4,          # fixed validation samples drawn to TensorBoard
        "precision": "auto",         # auto | float32 | mixed_float16 | mixed_bfloat16
        # tf32: whether GPUs may multiply float32 in TF32 (Ampere and later); null: not under float32 precision
        # (float32 means float32, as the papers' GPUs computed), TensorFlow's default (yes) otherwise.
        "tf32": None,
        # kernel_gradients: how 1x1 and dilated convolutions get their kernel gradient (hqdepth.layers.
        # weight_gradients). matmul: as matrix products (faster than oneDNN's bfloat16 kernel); tensorflow:
        # TensorFlow's own; auto: matmul when training in mixed_bfloat16 on TensorFlow without a GPU.
        "kernel_gradients": "auto",
        "jit_compile": False,
        "strategy": "auto",          # auto | default | mirrored | multiworker
        "test_evaluation": True,     # evaluate the final model on the test split (results.json)
        # The global batch as this many equal groups, each with its own batch-norm statistics and loss, as that many
        # GPUs with plain batch norm under DistributedDataParallel (the Depth Toolbox: 2 x 8); 1 = the whole batch.
        "batch_groups": 1,
    },
    "evaluation": {
        "protocol": "nyu-eigen",
        "protocol_options": {},      # custom protocol options (hqdepth.evaluation.custom_protocol) or changes
        "max_depth": 10.0,
        "min_depth": None,           # None: the protocol's
        "test_samples": None,        # None: the whole test split
        "ssim": False,               # also SSIM of the test depth maps (results.json), max_val = max depth
        "flip": False,               # test evaluation with flip test-time augmentation (the Depth Toolbox's)
        # geometry_samples: at each validation, the iBims-1 geometric metrics (val_dbe_acc, val_dbe_comp,
        # val_pe_plan, val_pe_orie, val_dde_*) of at most this many of the first validation samples (never more
        # than one validation reads: validation_steps x global batch), predicted on their whole frame. Only when
        # the validation data carries true edges or planes (ibims:, synthetic:, TFRecords of them); 0 = off.
        "geometry_samples": 64,
    },
}

_NAMED_SECTIONS = ("model", "loss", "optimizer", "schedule")


def list_recipes():
    """Resolved recipes (base applied), sorted by name."""
    return [get_recipe(path.stem) for path in sorted(RECIPE_DIR.glob("*.yaml"))]


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, reading exponent numbers without a dot (3e-4, 1E5) as floats, as YAML 1.2 and JSON do
    (PyYAML follows YAML 1.1, which reads them as strings: a learning rate of '3e-4' then fails deep inside)."""


class _Dumper(yaml.SafeDumper):
    """YAML's safe dumper, quoting the strings `_Loader` would read as numbers (a string '1e-7' stays one)."""


for _kind in (_Loader, _Dumper):
    _kind.add_implicit_resolver("tag:yaml.org,2002:float",
                                re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
                                list("-+.0123456789"))


def load_yaml(text):
    """Parse YAML text as recipes are read (`_Loader`: 3e-4 is a number)."""
    return yaml.load(text, Loader=_Loader)


def dump_yaml(config):
    """A config as YAML text that `load_yaml` reads back equal (block style, keys in order)."""
    return yaml.dump(config, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=110)


def _read_file(path):
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else load_yaml(text)
    except (ValueError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of recipe fields, got {type(data).__name__}.")
    return data


def merge(base, changes, where="config"):
    """Deep-merge `changes` into a copy of `base`, checking keys against `base` outside `options`."""
    result = copy.deepcopy(base)
    if where == "data" and changes.get("augmentation") not in (None, result.get("augmentation")):
        result["augmentation_options"] = {}  # options belong to the augmentation they configure
    for key, value in changes.items():
        path = f"{where}.{key}" if where != "config" else key
        if key not in result and not _free_form(where):
            raise ConfigError(f"unknown recipe field {path!r}; known: {', '.join(sorted(result))}.")
        current = result.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            if key in _NAMED_SECTIONS and where == "config" and value.get("name") not in (None, current.get("name")):
                current = {**current, "options": {}}
            result[key] = merge(current, value, path)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _free_form(where):
    return where.endswith("options") or ".options." in where


def get_recipe(name):
    """The recipe `name` with its `base` chain applied over DEFAULTS (a fresh dict)."""
    return _resolve_named(name, ())


def _resolve_named(name, seen):
    path = RECIPE_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in RECIPE_DIR.glob("*.yaml")))
        raise ConfigError(f"unknown recipe {name!r}; recipes: {known}. A YAML/JSON file path also works.")
    if name in seen:
        raise ConfigError(f"recipe {name!r} inherits from itself: {' -> '.join(seen + (name,))}")
    data = _read_file(path)
    base = data.get("base")
    parent = _resolve_named(base, seen + (name,)) if base else DEFAULTS
    return merge(parent, {**data, "base": base}, "config")


def parse_set(item):
    """'dotted.key=value' -> ('dotted.key', value) with the value parsed as YAML (3e-4, true, [1, 2])."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. optimizer.learning_rate=3e-4")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = load_yaml(text) if text.strip() else None
    except (yaml.YAMLError, ValueError):
        value = text
    return key, value


def _nested(key, value):
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def resolve_config(recipe, config_files=(), sets=(), overrides=None):
    """Recipe name, file or dict, then each YAML/JSON file, then each `--set` (in order), then `overrides`
    ({dotted.field: value}) -> checked dict."""
    if isinstance(recipe, dict):  # like a file: `base` names the recipe it starts from
        config = merge(get_recipe(recipe["base"]) if recipe.get("base") else DEFAULTS, recipe, "config")
    elif Path(str(recipe)).suffix.lower() in (".yaml", ".yml", ".json"):
        data = _read_file(recipe)
        parent = get_recipe(data["base"]) if data.get("base") else DEFAULTS
        config = merge(parent, data, "config")
        config["name"] = config["name"] or Path(recipe).stem
    else:
        config = get_recipe(str(recipe))
    for path in config_files:
        config = merge(config, _read_file(path), "config")
    for item in sets:
        key, value = parse_set(item)
        config = merge(config, _nested(key, value), "config")
    for key, value in (overrides or {}).items():
        config = merge(config, _nested(key, value), "config")
    return validate(config)


def _is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(config):
    """Check the fields a run cannot start without; return the config with normalised values."""
    for section, default in DEFAULTS.items():
        if isinstance(default, dict) and not isinstance(config[section], dict):
            raise ConfigError(f"{section}={config[section]!r}: expected the {section} settings as a mapping (set one "
                              f"with {section}.FIELD=VALUE).")
    for section in ("model", "loss"):
        if not config[section]["name"]:
            raise ConfigError(f"recipe {config['name']!r} names no {section} ({section}.name).")
    size = config["data"]["input_size"]
    if size is not None:
        parts = size.lower().split("x") if isinstance(size, str) else size
        try:
            if not isinstance(parts, (list, tuple)) or len(parts) != 2 or any(isinstance(v, bool) for v in parts):
                raise ValueError
            parts = [int(value) for value in parts]
            if min(parts) <= 0:
                raise ValueError
        except (TypeError, ValueError):
            raise ConfigError(f"data.input_size={size!r}: expected [height, width] (positive integers), e.g. "
                              "[289, 385], or null.") from None
        config["data"]["input_size"] = parts
    rate = config["optimizer"]["learning_rate"]
    if not _is_number(rate) or not rate >= 0:  # 0: e.g. a cyclic schedule's lower bound
        raise ConfigError(f"optimizer.learning_rate={rate!r} must be a number >= 0, e.g. 1e-4.")
    train = config["train"]
    if train["seed"] is not None and not _is_integer(train["seed"]):
        raise ConfigError(f"train.seed={train['seed']!r} must be an integer or null (no seed).")
    for key, least in (("log_every_steps", 1), ("image_samples", 0)):
        if not _is_integer(train[key]) or train[key] < least:
            raise ConfigError(f"train.{key}={train[key]!r} must be an integer >= {least}.")
    if not isinstance(train["monitor"], str) or not train["monitor"]:
        raise ConfigError(f"train.monitor={train['monitor']!r} must name a logged metric, e.g. val_rmse.")
    evaluation = config["evaluation"]
    for key in ("max_depth", "min_depth"):
        value = evaluation[key]
        if value is not None and (not _is_number(value) or value < 0 or (key == "max_depth" and value == 0)):
            sign = "positive" if key == "max_depth" else "non-negative"
            raise ConfigError(f"evaluation.{key}={value!r} must be a {sign} number in metres or null.")
    for key in ("batch_size", "epochs", "batch_groups"):
        if not _is_integer(train[key]) or train[key] <= 0:
            raise ConfigError(f"train.{key}={train[key]!r} must be a positive integer.")
    for key in ("total_steps", "steps_per_epoch", "max_steps", "validation_every_steps", "validation_steps",
                "checkpoint_every_steps"):
        if train[key] is not None and (not isinstance(train[key], int) or train[key] <= 0):
            raise ConfigError(f"train.{key}={train[key]!r} must be a positive integer or null.")
    samples = config["evaluation"]["geometry_samples"]
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise ConfigError(f"evaluation.geometry_samples={samples!r} must be an integer >= 0 (0 = off).")
    for section, key in (("optimizer", "decay_encoder_only"), ("optimizer", "fused"), ("train", "test_evaluation"),
                         ("train", "deterministic"), ("evaluation", "ssim"), ("evaluation", "flip")):
        if not isinstance(config[section][key], bool):
            raise ConfigError(f"{section}.{key}={config[section][key]!r} must be true or false.")
    if train["tf32"] is not None and not isinstance(train["tf32"], bool):
        raise ConfigError(f"train.tf32={train['tf32']!r} must be true, false or null (off under float32).")
    if train["deterministic"] and train["seed"] is None:
        raise ConfigError("train.deterministic needs a seed (train.seed, e.g. 0).")
    choices = {"precision": ("auto", "float32", "mixed_float16", "mixed_bfloat16"), "epoch_steps": ("floor", "ceil"),
               "kernel_gradients": ("auto", "matmul", "tensorflow"),
               "strategy": ("auto", "default", "mirrored", "multiworker"), "monitor_mode": ("min", "max")}
    for key, allowed in choices.items():
        if train[key] not in allowed:
            raise ConfigError(f"train.{key}={train[key]!r}; choose one of {', '.join(allowed)}.")
    return config


def dump(config, path):
    """Write a resolved config as YAML (the run folder's config.yaml); atomically (temporary file + rename),
    since a rerun reads it back to check that it continues the same run."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(dump_yaml(config))
    os.replace(temporary, path)


def summary_line(config):
    size = config["data"]["input_size"]
    size = "x".join(map(str, size)) if size else "any"
    train = config["train"]
    length = f"{train['total_steps']} steps" if train["total_steps"] else f"{train['epochs']} epochs"
    if train.get("max_steps"):  # replaces the run's length (and the length a schedule in steps of the run sees)
        length = f"{train['max_steps']} steps (train.max_steps; the recipe's run: {length})"
    return (f"{config['model']['name']} + {config['loss']['name']}, {config['optimizer']['name']} "
            f"{config['optimizer']['learning_rate']:g} ({config['schedule']['name']}), batch "
            f"{config['train']['batch_size']}, {length}, {size}")
