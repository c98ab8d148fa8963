"""What the experiment scripts share: quick CPU overrides, running recipes, and paper-vs-ours tables."""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:  # set it (e.g. to 0) to see TensorFlow's C++ log lines
    from hqdepth.quiet import quiet_tensorflow

    quiet_tensorflow()  # the scripts print their own progress: no load-time log lines, as the `hqdepth` command

# Metrics in the order the depth papers print them; "lower" = lower is better.
COLUMNS = [("abs_rel", "Abs Rel", "lower"), ("sq_rel", "Sq Rel", "lower"), ("log10", "log10", "lower"),
           ("rmse", "RMSE", "lower"), ("rmse_log", "RMSE_log", "lower"), ("d1", "δ<1.25", "higher"),
           ("d2", "δ<1.25²", "higher"), ("d3", "δ<1.25³", "higher")]
SSIM_COLUMN = ("ssim", "SSIM", "higher")


QUICK_BATCH = 8  # a quick run's batch on synthetic scenes
QUICK_REAL_BATCH = 2  # and at most this on real data: a quick run is often tried on a few frames


def quick_sets(size=(64, 96), steps=150, batch_size=QUICK_BATCH, deeplab=True):
    """Overrides that make a paper recipe a few-minute CPU run on synthetic scenes.

    Reduced input size and steps; Adam at 1e-3 without decay (a short run needs a larger rate);
    for the DeepLab models BN momentum 0.9 so the moving statistics used at inference follow a short
    run (HQMD's 0.9997 suits its 300k steps) and no frozen stem (HQMD freezes ImageNet layers; frozen
    random ones only hurt); evaluation with a custom protocol, 1e-3 < gt < 10 m, since the NYU crops
    assume 480x640 frames.
    """
    sets = [f"data.input_size=[{size[0]}, {size[1]}]", f"train.max_steps={steps}", f"train.batch_size={batch_size}",
            f"train.validation_every_steps={max(steps // 3, 1)}", "train.validation_steps=2",
            "train.checkpoint_every_steps=50", "optimizer.learning_rate=1e-3", "schedule.name=constant",
            "data.cache=true", "evaluation.protocol=custom",
            "evaluation.protocol_options={min_depth: 0.001, max_depth: 10.0}"]
    if deeplab:
        sets += ["model.options.bn_momentum=0.9", "model.options.freeze=none", "model.options.backbone_weights=none"]
    return sets


def random_init_sets(recipe):
    """Overrides for a quick CPU run from random weights: backbone_weights=none and nothing frozen
    (the paper's pretrained start is for real data; frozen random layers only hurt)."""
    from hqdepth.training import recipes
    from hqdepth.weights import pretrained

    config = recipes.get_recipe(recipe)
    name, options = config["model"]["name"], config["model"]["options"]
    if not pretrained.has_backbone(name, options):
        return []
    return ["model.options.backbone_weights=none"] + [
        f"model.options.{key}={pretrained.UNFROZEN[key]}" for key in pretrained.frozen_options(name, options)]


def synthetic_spec(count, size):
    return f"synthetic:{count}?size={size[0]}x{size[1]}"


def parse_size(text):
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def summary(doc):
    """The first paragraph of a script's docstring in one line: its `--help` description (not a cut sentence)."""
    return " ".join(doc.strip().split("\n\n")[0].split())


def _last_set(sets, key):
    return next((s.split("=", 1)[1].strip() for s in reversed(list(sets)) if s.startswith(f"{key}=")), None)


def quick_note(spec, sets, what="a few steps from random weights at a reduced size"):
    """The footnote of a quick run's line: the data, batch and protocol it really used (the last of `sets` wins)."""
    data = "synthetic scenes" if str(spec).startswith("synthetic") else str(spec)
    protocol = _last_set(sets, "evaluation.protocol")
    tested = {None: "the recipe's protocol", "custom": "a custom protocol"}.get(protocol, f"protocol {protocol}")
    batch = _last_set(sets, "train.batch_size")
    batch = f"batch {batch}, " if batch else ""
    return f"Quick run: {what} ({batch}on {data} with {tested}); checks the machinery only."


def run(main):
    """`main()`'s exit status; an error the user can fix (`HQDepthError`: a bad SPEC, too few samples for a batch)
    is printed in one line, status 2, as the `hqdepth` command does."""
    from hqdepth.errors import HQDepthError

    try:
        return main()
    except HQDepthError as error:
        print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
        return 2


def train_recipe(recipe, data, out, sets=(), print_fn=print, val_data=None, test_data=None):
    """Train (or resume, or reuse a finished) run of `recipe` in `out`; returns its results dict."""
    import hqdepth

    return hqdepth.recipe(recipe, sets=list(sets)).train(data, out, val_data=val_data, test_data=test_data,
                                                         print_fn=print_fn, verbose=2)


def refuse_training_frames_as_test(recipe, data, sets, test_data, out):
    """Refuse, before any row trains, a paper row whose test frames are training samples (a `list:` or `folder:`
    SPEC without a test split gives the same samples for every split): its line would be a training-set score
    printed beside the paper's. Not for a row that is not tested (`train.test_evaluation=false`) or whose run in
    `out` has finished (a rerun that prints the table again)."""
    import hqdepth
    from hqdepth.errors import ConfigError
    from hqdepth.training.trainer import read_results, shared_with_training

    config = hqdepth.recipe(recipe, sets=list(sets)).config
    if not config["train"]["test_evaluation"] or (read_results(out) or {}).get("status") == "finished":
        return
    shared = shared_with_training(config, data, test_data or data, "test")
    if shared:
        raise ConfigError(f"{recipe}: {shared} (A table row is scored on the paper's test frames.)")


def experiment_parser(doc, out, steps=120, size="64x96"):
    """The command line every experiment script shares (`--quick` defaults: `steps`, `size`); `doc`: the
    script's docstring, whose first paragraph `--help` prints."""
    parser = argparse.ArgumentParser(description=summary(doc))
    parser.add_argument("--data", default="synthetic", help="dataset SPEC, or 'synthetic' (default)")
    parser.add_argument("--val-data", help="validation SPEC (default: --data)")
    parser.add_argument("--test-data", help="test SPEC (default: --data, its test split; a list or folder without "
                                            "one needs this)")
    parser.add_argument("--quick", action="store_true", help="few steps at a reduced size (default with synthetic)")
    parser.add_argument("--steps", type=int, default=steps, help="--quick: training steps per row")
    parser.add_argument("--size", default=size, help="--quick: input size HxW")
    parser.add_argument("--set", action="append", default=[], dest="sets", help="extra recipe override, repeatable")
    parser.add_argument("--out", default=out)
    return parser


def experiment_setup(args, scenes=400, test_samples=48, **quick_options):
    """(data SPEC, quick, overrides) from `experiment_parser`'s arguments.

    `--quick` (the default with `--data synthetic`: `scenes` training scenes at `--size`) uses
    `quick_sets(size, --steps, **quick_options)` and `test_samples` test images; on real data the
    recipe's evaluation protocol is kept and the batch is at most QUICK_REAL_BATCH (a few frames fill it).
    The command line's `--set`s are not included: they go last.
    """
    size = parse_size(args.size)
    quick = args.quick or args.data == "synthetic"
    data = synthetic_spec(scenes, size) if args.data == "synthetic" else args.data
    if quick and args.data != "synthetic":
        batch = quick_options["batch_size"] = min(quick_options.get("batch_size", QUICK_BATCH), QUICK_REAL_BATCH)
        print(f"--quick on real data: batch {batch}, the recipe's protocol (--set train.batch_size=N to change)")
    sets = quick_sets(size, args.steps, **quick_options) + [f"evaluation.test_samples={test_samples}"] if quick else []
    if quick and args.data != "synthetic":
        sets = [s for s in sets if not s.startswith("evaluation.protocol")]  # real data: the recipe's protocol
    return data, quick, sets


def train_rows(rows, data, out, sets, quick, user_sets=(), val_data=None, test_data=None, print_fn=print):
    """Train each row and return the table rows: the paper's line (when the row has one) and ours.

    rows: dicts with "label", "recipe", optional "paper" (metric dict), "sets" (the row's overrides,
    after `sets` and before `user_sets`), "run" (folder under `out`, default the recipe), "data"
    (SPEC, default `data`), "val_data" and "test_data" (SPECs, default `val_data`, `test_data`; None: the row's own
    data). Our line carries the test metrics of results.json, the recipe and the steps. Unless `quick`, every
    row's test frames are checked first (`refuse_training_frames_as_test`).
    A row without "recipe" is a paper line only (a method the paper cites).
    Notes (printed under the table, see `format_table`): "paper_note" on the paper line, "note" on ours;
    "also": more published lines after the paper's, each {"source", "note", metric: value} (e.g. the
    official code's README where it differs from the paper).
    """
    def run_folder(row):
        return Path(out) / row.get("run", row["recipe"])

    def row_sets(row):
        return (random_init_sets(row["recipe"]) if quick else []) + list(sets) + list(row.get("sets", ())) + list(
            user_sets)

    if not quick:
        for row in rows:
            if row.get("recipe"):
                refuse_training_frames_as_test(row["recipe"], row.get("data") or data, row_sets(row),
                                               row.get("test_data", test_data), run_folder(row))
    table = []
    for row in rows:
        published = [{"method": row["label"], "source": row.get("source", "paper"), **row["paper"],
                      **({"note": row["paper_note"]} if row.get("paper_note") else {})}] if row.get("paper") else []
        published += [{"method": row["label"], **line} for line in row.get("also", ())]
        if not row.get("recipe"):
            table.extend(published)
            continue
        spec = row.get("data") or data
        print_fn(f"\n=== {row['label']} ({row['recipe']}) ===")
        results = train_recipe(row["recipe"], spec, run_folder(row), row_sets(row),
                               print_fn=print_fn, val_data=row.get("val_data", val_data),
                               test_data=row.get("test_data", test_data))
        table.extend(published)
        table.append({"method": row["label"], "source": f"ours ({'quick, ' if quick else ''}{spec})",
                      **results.get("test", {}).get("metrics", {}), "recipe": row["recipe"],
                      "steps": results["steps"], **({"note": row["note"]} if row.get("note") else {})})
    return table


def format_table(rows, title, columns=COLUMNS):
    """Markdown table: each row {"method", "source" (paper | ours), metric: value}; `columns` as COLUMNS.

    A row's optional "note" (how that line was measured, where it differs from the lines it is compared
    with: test-time augmentation, crop, protocol, backbone) is numbered once, marked [n] beside its source,
    and printed under the table.
    """
    header = ["Method", "source"] + [label for _, label, _ in columns]
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes = []
    for row in rows:
        values = [row["method"], row["source"]]
        if row.get("note"):
            if row["note"] not in notes:
                notes.append(row["note"])
            values[1] += f" [{notes.index(row['note']) + 1}]"
        for key, _, _ in columns:
            value = row.get(key)
            values.append("–" if value is None else f"{value:.3f}")
        lines.append("| " + " | ".join(values) + " |")
    if notes:
        lines += [""] + [f"[{number}] {note}" for number, note in enumerate(notes, 1)]
    return "\n".join(lines)


def write_outputs(out, title, rows, extra=None, columns=COLUMNS):
    """table.md and table.json in `out` (a metric that is not finite is null there); returns the Markdown table."""
    from hqdepth import strict_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = format_table(rows, title, columns)
    (out / "table.md").write_text(table + "\n")
    (out / "table.json").write_text(strict_json.dumps({"title": title, "rows": rows, **(extra or {})}, indent=1))
    return table


def print_outputs(out, title, rows, quick, extra=None, columns=COLUMNS, notes=(), paper_data="the paper's data",
                  quick_note=None):
    """Write and print the table, where it went, the notes, and (quick) what a quick run is for."""
    table = write_outputs(out, title, rows, extra, columns)
    print("\n" + table)
    for note in notes:
        print(note)
    print(f"\nwritten: {Path(out) / 'table.md'}, {Path(out) / 'table.json'}")
    if quick:
        print(quick_note or "Quick runs check the machinery; compare with the paper only on "
                            f"{paper_data}.")
    return table
