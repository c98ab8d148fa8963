"""`hqdepth train RECIPE --data SPEC --out RUN_DIR`: train a recipe with model.fit; rerun to resume."""

import json


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "train", help="train a recipe on a dataset (resumable)",
        description="Train RECIPE (a name from `hqdepth recipes` or a YAML/JSON file) on --data. Rerunning the "
                    "same command continues an interrupted run from its last backup.")
    parser.add_argument("recipe", help="recipe name or YAML/JSON recipe file")
    parser.add_argument("--data", required=True, metavar="SPEC",
                        help="training dataset SPEC (docs/datasets.md, 'SPEC grammar')")
    parser.add_argument("--val-data", metavar="SPEC", help="validation dataset SPEC (default: --data)")
    parser.add_argument("--test-data", metavar="SPEC", help="test dataset SPEC for results.json (default: --data)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (created; reused to resume)")
    parser.add_argument("--config", action="append", default=[], metavar="FILE",
                        help="YAML/JSON file merged over the recipe (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                        help="override a recipe field, e.g. optimizer.learning_rate=3e-4 (repeatable)")
    parser.add_argument("--precision", choices=["auto", "float32", "mixed_float16", "mixed_bfloat16"],
                        help="dtype policy (auto: mixed_float16 on a GPU, float32 on a CPU)")
    parser.add_argument("--jit-compile", action="store_true", default=None, help="compile the train step with XLA")
    parser.add_argument("--strategy", choices=["auto", "default", "mirrored", "multiworker"],
                        help="distribution (auto: multiworker with a TF_CONFIG cluster, mirrored with >1 GPU)")
    parser.add_argument("--batch-size", type=int, help="per-replica batch size (= --set train.batch_size=N)")
    parser.add_argument("--epochs", type=int,
                        help="= --set train.epochs=N --set train.total_steps=null (a run length in epochs instead)")
    parser.add_argument("--max-steps", type=int, help="stop after N optimizer steps (= --set train.max_steps=N)")
    parser.add_argument("--init", metavar="MODEL", help="start from a trained model's weights: a run folder or a .keras "
                                                        "file (= --set model.init=MODEL; fine-tuning, or continuing "
                                                        "a finished run in a new --out)")
    parser.add_argument("--overwrite", action="store_true", help="discard what the run folder holds and start afresh")
    parser.add_argument("--quiet", action="store_true", help="no progress bar: per validation period, Keras' epoch "
                                                              "lines (all metrics) and the run's line (time left)")
    return parser


def run(args):
    import hqdepth

    sets = list(args.sets)
    for key, value in (("precision", args.precision), ("jit_compile", args.jit_compile), ("strategy", args.strategy),
                       ("batch_size", args.batch_size), ("epochs", args.epochs), ("max_steps", args.max_steps)):
        if value is not None:
            sets.append(f"train.{key}={str(value).lower() if isinstance(value, bool) else value}")
    if args.epochs is not None:
        sets.append("train.total_steps=null")
    if args.init is not None:
        sets.append(f"model.init={json.dumps(args.init)}")  # a YAML string, whatever the path holds
    recipe = hqdepth.recipe(args.recipe, sets=sets, config_files=args.config)
    results = recipe.train(args.data, args.out, val_data=args.val_data, test_data=args.test_data,
                           overwrite=args.overwrite, verbose=2 if args.quiet else "auto")
    return 0 if results["status"] == "finished" else 1
