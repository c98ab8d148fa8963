"""HQMD's claim at CPU scale: do the gradient losses and the baseline+ decoder give sharper depth?

The five HQMD Table 1 rows are trained identically (same scenes, steps, schedule, input size, random
initialisation) with several seeds each on synthetic rooms, whose exact occlusion boundaries and planes
are known, then every run is tested on the same held-out scenes with the standard metrics and the iBims-1
geometric errors (depth boundary accuracy / completeness, planarity, directed depth errors).

    python experiments/hqmd_table1.py --data synthetic            # this study (resumable; 5-6 h on 2 cores)
    python experiments/hqmd_synthetic.py --train-only             # train the grid, evaluate later

On a 2-core machine two processes pinned one per core, with disjoint seeds, train about 20 % more per hour
than one (e.g. `taskset -c 0 ... --seeds 0,1 --train-only` beside `taskset -c 1 ... --seeds 2 --train-only`;
`--rows` splits further), then one run without `--train-only` evaluates the whole grid. A first grid of 200
steps at 96x128 (`--steps 200 --size 96x128`, 1.5 h; results kept as `hqmd_table1_synthetic_200steps.*`) was
too short for any row to learn the objects; the defaults are the scale of the committed results.

Outputs: experiments/results/hqmd_table1_synthetic.{json,md,png} (`--results` to change). Rerunning the
command resumes unfinished runs from their backups and reuses finished ones; each run's evaluation is kept
in its folder (`study_evaluation.json`) and redone only when the evaluation code's version changes.
"""

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import common
import numpy as np

ROWS = ["hqmd_baseline_ldepth", "hqmd_plus_hu", "hqmd_plus_ldepth", "hqmd_plus_ldepth_gradmg", "hqmd_plus_full"]
SIZE = (64, 96)        # the demo's size, where its 0.5 M-parameter FCN learns the objects within 2,000 steps
STEPS = 2000           # per run, batch 8: 16,000 images = 16 passes over the training scenes (~35 min per core)
SCENES = 1000          # training scenes (validation: the val split, testing: the first TEST_SCENES of test)
TEST_SCENES = 48
SEEDS = (0, 1, 2)
RESULTS = Path(__file__).resolve().parent / "results"
LOWER_BETTER = {"abs_rel", "rmse", "log10", "dbe_acc", "dbe_comp", "pe_plan", "pe_orie"}


def run_sets(recipe, seed, size=SIZE, steps=STEPS):
    """The overrides of one run: random initialisation (nothing frozen), the quick CPU settings, the seed;
    long runs save their (half-gigabyte) checkpoints every tenth of the run instead of every 50 steps."""
    return (common.random_init_sets(recipe) + common.quick_sets(size, steps)
            + [f"evaluation.test_samples={TEST_SCENES}", f"train.seed={seed}",
               f"train.checkpoint_every_steps={max(50, steps // 10)}"])


def train_grid(out, rows=ROWS, seeds=SEEDS, size=SIZE, steps=STEPS, scenes=SCENES, print_fn=print):
    """Train (or resume, or reuse) every run, seed-major so that an interrupted grid has whole seeds."""
    data = common.synthetic_spec(scenes, size)
    for seed in seeds:
        for recipe in rows:
            print_fn(f"\n=== {recipe}, seed {seed} ({time.strftime('%H:%M:%S')}) ===")
            folder = run_folder(out, recipe, seed)
            results = common.train_recipe(recipe, data, folder, run_sets(recipe, seed, size, steps), print_fn=print_fn)
            if results.get("status") == "finished":  # the study reads model.keras; 0.9 GB per run freed
                shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    return data


def run_folder(out, recipe, seed):
    return Path(out) / recipe / f"seed{seed}"


def evaluate_run(folder, test_data, with_maps=()):
    """{metric: value} of one finished run on the held-out scenes: the standard metrics (custom protocol,
    1e-3 < gt < 10 m, as the quick runs' test) and the iBims-1 geometric errors; plus the predictions of the
    scenes in `with_maps` (for the figure). Kept in the run folder (`study_evaluation.json` / `.npz`) and
    reused while model.keras is unchanged and the test data and scenes are the same."""
    from hqdepth import strict_json

    folder = Path(folder)
    cache, arrays = folder / "study_evaluation.json", folder / "study_evaluation.npz"
    key = {"test_data": test_data, "maps": list(with_maps), "model_mtime_ns": (folder / "model.keras").stat().st_mtime_ns,
           "measures": EVALUATION_VERSION}
    if cache.is_file() and arrays.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            with np.load(arrays) as stored:
                return saved["metrics"], {int(k): stored[k] for k in stored.files}
    metrics, maps = _evaluate_run(folder, test_data, with_maps)
    np.savez(arrays, **{str(k): v for k, v in maps.items()})
    cache.write_text(strict_json.dumps({"key": key, "metrics": metrics}))
    return metrics, maps


EVALUATION_VERSION = 2  # 2: with the object measures; older cached evaluations are redone


def _evaluate_run(folder, test_data, with_maps):
    from hqdepth.data import open_source
    from hqdepth.geometry import evaluate_model_with_geometry
    from hqdepth.model_testing import model_for_protocol, protocol_prediction
    from hqdepth.protocols import get_protocol

    protocol = get_protocol("custom", min_depth=0.001, max_depth=10.0)
    model = model_for_protocol(str(Path(folder) / "model.keras"), protocol)
    standard, geometry = evaluate_model_with_geometry(model, test_data, protocol, split="test", progress=False)
    metrics = {**{k: float(v) for k, v in standard.metrics.items()}, **geometry.to_dict()["metrics"]}
    samples = list(open_source(test_data, split="test"))
    preds = [protocol_prediction(model, s.rgb, protocol, focal=s.meta["focal"]) for s in samples]
    metrics.update(object_metrics(preds, samples, scene_views(samples)))
    return metrics, {i: preds[i] for i in with_maps}


def scene_views(samples):
    """`hqdepth.data.synthetic.object_views` (surface ids, layout) of the test scenes `samples` (scenes 0.. of
    the test split, as `common.synthetic_spec` gives them), for `object_metrics`."""
    from hqdepth.data import synthetic

    size = samples[0].depth.shape[:2]
    return [synthetic.object_views("test", i, size) for i in range(len(samples))]


def object_metrics(preds, samples, views):
    """Do the predictions show the scenes' boxes and spheres at all (`hqdepth.data.synthetic.object_measures`,
    `views` from `scene_views`): `contrast_ratio` (median predicted / true depth step from each object to the
    band around it; 0 = no object to be seen, 1 = the true step) and `objects_seen` (the fraction with at least
    half the true step)."""
    from hqdepth.data import synthetic

    measures = synthetic.object_measures(preds, [s.depth[..., 0] for s in samples], [v[0] for v in views],
                                         [v[1] for v in views])
    return {"contrast_ratio": measures["contrast_ratio"], "objects_seen": measures["objects_seen"]}


def finite(value):
    return value is not None and math.isfinite(value)


def summarise(values):
    """(mean, sample std) of the finite values; (None, None) when there are none, std None for a single value."""
    values = [v for v in values if finite(v)]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None


def compare(rows, a, b, metric, alpha=0.05):
    """Row b minus row a on `metric`, paired by seed (a seed fixes the data order and, within a model, the
    initial weights, so the per-seed difference removes that shared noise): the mean difference, its
    standard error, the paired t-test's two-sided p-value (n - 1 degrees of freedom) and whether p < alpha.
    Runs that did not finish and values that are missing or not finite are left out (`n` counts the pairs)."""
    from scipy import stats

    def values(row):
        return {run["seed"]: run["metrics"].get(metric) for run in rows[row]["runs"]
                if run.get("status", "finished") == "finished" and finite(run["metrics"].get(metric))}

    va, vb = values(a), values(b)
    seeds = sorted(set(va) & set(vb))
    diffs = np.array([vb[seed] - va[seed] for seed in seeds], np.float64)
    result = {"from": a, "to": b, "metric": metric, "n": len(seeds), "difference": None, "standard_error": None,
              "t": None, "p": None, "separated": False, "better": None}
    if len(seeds) < 2:
        return result
    mean, error = float(diffs.mean()), float(diffs.std(ddof=1) / math.sqrt(len(diffs)))
    if error == 0:
        t, p = (math.copysign(math.inf, mean), 0.0) if mean else (0.0, 1.0)
    else:
        t = mean / error
        p = float(2 * stats.t.sf(abs(t), len(diffs) - 1))
    better = mean < 0 if metric in LOWER_BETTER else mean > 0
    result.update(difference=mean, standard_error=error, t=float(t), p=p, separated=p < alpha, better=bool(better))
    return result


# The paper's claims the study checks: (row a -> row b, what the paper says happens).
CLAIMS = [
    ("hqmd_baseline_ldepth", "hqmd_plus_ldepth", "baseline+ decoder (image-size decoding) vs the plain baseline"),
    ("hqmd_plus_ldepth", "hqmd_plus_ldepth_gradmg", "adding the gradient-magnitude loss"),
    ("hqmd_plus_ldepth_gradmg", "hqmd_plus_full", "adding the gradient-direction loss"),
    ("hqmd_plus_ldepth", "hqmd_plus_full", "both gradient losses (full loss vs l_depth)"),
    ("hqmd_plus_hu", "hqmd_plus_full", "full loss vs the loss of Hu et al."),
]


def figure(rows, test_data, scenes, maps):
    """Photo | truth with its true edges | each row's prediction (first seed) with its Canny edges (green)
    over the true edges (white), one depth scale for all; one line per scene."""
    import cv2
    from hqdepth.data import open_source
    from hqdepth.geometry import predicted_edges
    from hqdepth.predict import colorize
    from hqdepth.visualize import _text, colour_bar

    source = open_source(test_data, split="test")
    scale, gap = 2, 4
    samples = [source[i] for i in scenes]
    height, width = samples[0].depth.shape[:2]
    pw, ph = width * scale, height * scale
    columns = ["photo", "truth + true edges"] + [r["short"] for r in rows]
    figure_w = len(columns) * (pw + gap) + gap
    top = max(float(np.ceil(s.depth.max())) for s in samples)
    header = np.full((40, figure_w, 3), 255, np.uint8)
    for c, name in enumerate(columns):
        _text(header, name, (gap + c * (pw + gap) + pw // 2, 30), 0.38, anchor="centre")
    lines = [header]
    for k, sample in zip(scenes, samples):
        gt = sample.depth[..., 0]
        edges = sample.meta["edges"]
        line = np.full((ph + gap, figure_w, 3), 255, np.uint8)
        truth = colorize(gt, "plasma", (0, top))
        truth[edges] = 255
        panels = [sample.rgb, truth]
        for row in rows:
            pred = maps[row["recipe"]][k]
            panel = colorize(pred, "plasma", (0, top))
            panel[edges] = 255
            panel[predicted_edges(pred)] = (0, 255, 0)
            panels.append(panel)
        for c, panel in enumerate(panels):
            x = gap + c * (pw + gap)
            line[:ph, x:x + pw] = cv2.resize(np.ascontiguousarray(panel), (pw, ph), interpolation=cv2.INTER_NEAREST)
        lines.append(line)
    bar = np.full((46, figure_w, 3), 255, np.uint8)
    bar[:, gap:gap + 3 * pw] = colour_bar(3 * pw, 46, (0, top), "plasma",
                                          "depth (m); white: true occlusion edges, green: predicted (Canny)")
    lines.append(bar)
    return np.concatenate(lines, axis=0)


def markdown(result):
    """The results page: settings, the table (mean +- std over seeds) beside the paper, the claims checked."""
    s = result["settings"]
    seeds = len(s["seeds"])
    lines = [f"# HQMD Table 1 rows on synthetic scenes ({seeds} seed{'s' * (seeds != 1)} each)", "",
             f"Command: `{result['command']}`  ",
             f"Machine: {result['machine']['cpu']}, {result['machine']['nproc']} cores; {result['date']}  ",
             f"Each run: {s['steps']} steps at batch 8, {s['size'][0]}x{s['size'][1]}, {s['scenes']} training scenes, "
             "random initialisation (nothing frozen), Adam 1e-3 constant, BN momentum 0.9 (experiments/common.py "
             f"`quick_sets`). Test: the same {s['test_scenes']} held-out scenes for every run; standard metrics with "
             "1e-3 < gt < 10 m; iBims-1 errors on the whole frame (dbe in px at this size, pe_plan cm, pe_orie deg, "
             "planes of >= 5 % of the frame).", "",
             "| Row | recipe | " + " | ".join(KEYS) + " | paper abs_rel | paper RMSE | paper δ1 |",
             "|---|---|" + "---|" * (len(KEYS) + 3)]
    for row in result["rows"]:
        cells = []
        for key in KEYS:
            mean, std = row["mean"].get(key), row["std"].get(key)
            cells.append("–" if mean is None else f"{mean:.3f}" + ("" if std is None else f" ± {std:.3f}"))
        paper = row["paper"]
        lines.append(f"| {row['label']} | {row['recipe']} | " + " | ".join(cells)
                     + f" | {paper['abs_rel']:.3f} | {paper['rmse']:.3f} | {paper['d1']:.3f} |")
    lines += ["", "Lower is better except d1, dde_0, contrast_ratio and objects_seen (do the predictions show the "
              "scenes' boxes and spheres: the median predicted / true depth step from each object to the 2-px band "
              "around it, and the share of objects with at least half the true step). Paper: NYU Depth v2 test "
              "(654 images), ImageNet-initialised, 300k steps; not comparable in value, only in order. A smooth, "
              "flat prediction scores a low pe_plan (flatness) but a poor pe_orie."]
    if result.get("references"):
        lines += ["", "Untrained references on the same scenes: the true depth (Canny on the ground truth against the "
                  "exact edges: the floor of the dbe columns at this size) and the true depth blurred by a Gaussian "
                  "of sigma px, the scale for how blurred a row's boundaries are:", "",
                  "| reference | " + " | ".join(REFERENCE_KEYS) + " |", "|---|" + "---|" * len(REFERENCE_KEYS)]
        lines += [f"| {ref['name']} | " + " | ".join("–" if not finite(ref["metrics"].get(k)) else f"{ref['metrics'][k]:.3f}"
                                                   for k in REFERENCE_KEYS) + " |" for ref in result["references"]]
    if seeds < 2:
        lines += ["", "## The paper's claims, checked", "",
                  "Not checked: a paired comparison needs at least two seeds per row (e.g. --seeds 0,1,2)."]
    else:
        lines += ["", "## The paper's claims, checked", "",
                  "Each change compares two rows seed by seed (paired: a seed fixes the data order and, for the same "
                  "model, the initial weights); p from the paired t-test (n − 1 degrees of freedom). With "
                  f"{sum(len(c['comparisons']) for c in result['claims'])} comparisons at p < 0.05, about one "
                  "'yes' in the last column is expected by chance alone.", "",
                  "| change | metric | n | difference (b − a) | ± s.e. | p | better? | p < 0.05? |",
                  "|---|---|---|---|---|---|---|---|"]
        for claim in result["claims"]:
            for c in claim["comparisons"]:
                if c["difference"] is None:
                    lines.append(f"| {claim['what']} | {c['metric']} | {c['n']} | – | – | – | – | – |")
                    continue
                lines.append(f"| {claim['what']} | {c['metric']} | {c['n']} | {c['difference']:+.4f} | "
                             f"{c['standard_error']:.4f} | {c['p']:.3f} | {'yes' if c['better'] else 'no'} | "
                             f"{'yes' if c['separated'] else 'no'} |")
    unfinished = [f"{row['recipe']} seed {run['seed']} ({run['status']})" for row in result["rows"]
                  for run in row["runs"] if run["status"] != "finished"]
    if unfinished:
        lines += ["", "Left out of the means and comparisons (did not finish): " + ", ".join(unfinished) + "."]
    return "\n".join(lines) + "\n"


KEYS = ["abs_rel", "rmse", "d1", "dbe_acc", "dbe_comp", "pe_plan", "pe_orie", "dde_0", "contrast_ratio",
        "objects_seen"]
SHORT = {"hqmd_baseline_ldepth": "baseline, l_depth", "hqmd_plus_hu": "base+, Hu loss",
         "hqmd_plus_ldepth": "base+, l_depth", "hqmd_plus_ldepth_gradmg": "base+, +grad mg",
         "hqmd_plus_full": "base+, full loss"}
FIGURE_SCENES = (0, 1, 2, 3)


REFERENCE_BLURS = (1.0, 2.0, 4.0, 8.0)  # Gaussian sigmas (px) of the blurred-truth references


REFERENCE_KEYS = ["dbe_acc", "dbe_comp", "pe_plan", "pe_orie", "dde_0", "contrast_ratio", "objects_seen"]


def references(test_data, blurs=REFERENCE_BLURS):
    """The iBims errors and object measures of untrained references on the test scenes: the true depth itself
    (Canny on the ground truth against the exact edges: the floor of the dbe columns at this size) and the true
    depth blurred by a Gaussian of each sigma in `blurs` (px): the scale that says how blurred a row's
    boundaries are, and that the metrics separate sharpness levels at this size."""
    import cv2
    from hqdepth.data import open_source
    from hqdepth.geometry import GeometryEvaluator, ground_truth_from_meta

    samples = list(open_source(test_data, split="test"))
    views = scene_views(samples)  # rendered once for all references
    found = []
    for sigma in (0.0, *blurs):
        evaluator, preds = GeometryEvaluator(), []
        for sample in samples:
            gt = sample.depth[..., 0].astype(np.float64)
            preds.append(cv2.GaussianBlur(gt, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE) if sigma else gt)
            evaluator.add(preds[-1], gt, **ground_truth_from_meta(sample.meta))
        metrics = {**evaluator.result(), **object_metrics(preds, samples, views)}
        found.append({"name": f"true depth blurred, sigma {sigma:g} px" if sigma else "true depth",
                      "blur_sigma_px": sigma, "metrics": {k: float(metrics[k]) for k in REFERENCE_KEYS}})
    return found


def evaluate_grid(out, seeds, size, steps, scenes, command, rows=ROWS):
    """Evaluate every run of the grid; the result dict of the .json (rows with runs, means, claims)."""
    from benchmarks.common import machine
    from hqmd_table1 import PAPER

    test_data = common.synthetic_spec(TEST_SCENES, size)
    recipes, rows, maps = rows, [], {}
    for recipe in recipes:
        runs = []
        for seed in seeds:
            folder = run_folder(out, recipe, seed)
            results = json.loads((folder / "results.json").read_text())
            metrics, run_maps = evaluate_run(folder, test_data, FIGURE_SCENES if seed == seeds[0] else ())
            if run_maps:
                maps[recipe] = run_maps
            runs.append({"seed": seed, "run": str(folder), "status": results["status"], "steps": results["steps"],
                         "train_seconds": results.get("train_seconds_this_session"),
                         "final_loss": results.get("final_logs", {}).get("loss"), "metrics": metrics})
            print(f"{recipe} seed {seed} ({results['status']}): " + ", ".join(
                f"{k} {metrics[k]:.4f}" for k in KEYS if finite(metrics.get(k))))
        label, paper = PAPER[recipe]
        finished = [r for r in runs if r["status"] == "finished"]  # a diverged run is listed, not averaged
        stats = {key: summarise([r["metrics"].get(key) for r in finished]) for key in runs[0]["metrics"]}
        rows.append({"label": label, "short": SHORT[recipe], "recipe": recipe, "paper": paper,
                     "sets": run_sets(recipe, seeds[0], size, steps)[:-1], "runs": runs,
                     "finished_runs": len(finished), "mean": {k: v[0] for k, v in stats.items()},
                     "std": {k: v[1] for k, v in stats.items()}})
    by_recipe = {row["recipe"]: row for row in rows}
    claims = [{"from": a, "to": b, "what": what,
               "comparisons": [compare(by_recipe, a, b, m) for m in ("rmse", "dbe_acc", "dbe_comp", "pe_plan")]}
              for a, b, what in CLAIMS if a in by_recipe and b in by_recipe] if len(seeds) > 1 else []
    result = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
              "references": references(test_data),
              "settings": {"seeds": list(seeds), "steps": steps, "size": list(size), "scenes": scenes,
                           "test_scenes": TEST_SCENES, "train_data": common.synthetic_spec(scenes, size),
                           "test_data": test_data + " (test split)"},
              "rows": rows, "claims": claims}
    return result, maps, test_data


def parser(prog=None, epilog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0], epilog=epilog)
    parser.add_argument("--out", default="runs/hqmd_table1_synthetic", help="run folders (one per row and seed)")
    parser.add_argument("--results", default=str(RESULTS), help="where the .json/.md/.png go")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="comma-separated seeds (>= 3 for the table)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--size", default=f"{SIZE[0]}x{SIZE[1]}")
    parser.add_argument("--scenes", type=int, default=SCENES)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated Table 1 recipes (default: all five)")
    parser.add_argument("--train-only", action="store_true", help="train the grid, do not evaluate")
    return parser


def main(argv=None, command=None, prog=None, epilog=None):
    parse = parser(prog, epilog)
    args = parse.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = args.rows.split(",")
    if any(row not in ROWS for row in rows):
        parse.error(f"unknown row in --rows {args.rows!r}; rows: {', '.join(ROWS)}")
    size = common.parse_size(args.size)
    started = time.time()
    train_grid(args.out, rows, seeds, size, args.steps, args.scenes)
    print(f"\ntraining grid done in {(time.time() - started) / 60:.1f} min")
    if args.train_only:
        return 0
    command = command or "python experiments/hqmd_synthetic.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result, maps, test_data = evaluate_grid(args.out, seeds, size, args.steps, args.scenes, command.strip(), rows)
    from hqdepth import strict_json
    from hqdepth.visualize import write_png

    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    stem = results / "hqmd_table1_synthetic"
    Path(f"{stem}.json").write_text(strict_json.dumps(result, indent=1, default=float) + "\n")
    page = markdown(result)
    Path(f"{stem}.md").write_text(page)
    write_png(f"{stem}.png", figure(result["rows"], test_data, FIGURE_SCENES, maps))
    print("\n" + page)
    print(f"written: {stem}.json, {stem}.md, {stem}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(common.run(main))
