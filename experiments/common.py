"""What the experiment scripts share: quick CPU overrides, running recipes, and paper-vs-ours tables."""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Metrics in the order the depth papers print them; "lower" = lower is better.
COLUMNS = [("abs_rel", "Abs Rel", "lower"), ("sq_rel", "Sq Rel", "lower"), ("log10", "log10", "lower"),
           ("rmse", "RMSE", "lower"), ("rmse_log", "RMSE_log", "lower"), ("d1", "δ<1.25", "higher"),
           ("d2", "δ<1.25²", "higher"), ("d3", "δ<1.25³", "higher")]


def quick_sets(size=(64, 96), steps=150, batch_size=8, deeplab=True):
    """Overrides that make a paper recipe a few-minute CPU run on synthetic scenes.

    Reduced input size and steps; Adam at 1e-3 without decay (a short run needs a larger rate);
    BN momentum 0.9 so the moving statistics used at inference follow a short run (HQMD's 0.9997
    suits its 300k steps); evaluation with a custom protocol, 1e-3 < gt < 10 m, since the NYU crops
    assume 480x640 frames.
    """
    sets = [f"data.input_size=[{size[0]}, {size[1]}]", f"train.max_steps={steps}", f"train.batch_size={batch_size}",
            f"train.validation_every_steps={max(steps // 3, 1)}", "train.validation_steps=2",
            "train.checkpoint_every_steps=50", "optimizer.learning_rate=1e-3", "schedule.name=constant",
            "data.cache=true", "evaluation.protocol=custom",
            "evaluation.protocol_options={min_depth: 0.001, max_depth: 10.0}"]
    if deeplab:
        sets.append("model.options.bn_momentum=0.9")
    return sets


def synthetic_spec(count, size):
    return f"synthetic:{count}?size={size[0]}x{size[1]}"


def parse_size(text):
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def train_recipe(recipe, data, out, sets=(), print_fn=print):
    """Train (or resume, or reuse a finished) run of `recipe` in `out`; returns its results dict."""
    from hqdepth.training import recipes
    from hqdepth.training.trainer import train

    config = recipes.resolve_config(recipe, sets=list(sets))
    return train(config, data, out, print_fn=print_fn, verbose=2)


def format_table(rows, title):
    """Markdown table: each row {"method", "source" (paper | ours), metric: value}."""
    header = ["Method", "source"] + [label for _, label, _ in COLUMNS]
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        values = [row["method"], row["source"]]
        for key, _, _ in COLUMNS:
            value = row.get(key)
            values.append("–" if value is None else f"{value:.3f}")
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def write_outputs(out, title, rows, extra=None):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = format_table(rows, title)
    (out / "table.md").write_text(table + "\n")
    (out / "table.json").write_text(json.dumps({"title": title, "rows": rows, **(extra or {})}, indent=1))
    return table
