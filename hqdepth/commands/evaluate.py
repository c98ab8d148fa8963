"""`hqdepth evaluate`: metrics under a published protocol, from prediction files or from a model.

    hqdepth evaluate --pairs PAIRS.txt --protocol nyu-eigen [--pred-scale S] [--gt-scale S] [--json OUT] [--csv OUT]
    hqdepth evaluate --model MODEL --data SPEC --protocol nyu-hqmd [--flip] [--json OUT]
    hqdepth evaluate --model MODEL --data ibims:DIR --protocol custom --geometry   (iBims-1 metrics too)

With --model each test image is run as the protocol's official test code runs its network
(`hqdepth.evaluation.Protocol.test_input`): BTS NYU on the whole 480x640 frame, BTS KITTI on the
352x1216 KB crop at native resolution with each frame's focal (a pairs file's third column or the
dataset's calibration), HQMD on the image resized to 289x385, Hu/SARPN on the 228x304 centre crop of
the frame scaled to 240x320; a model trained on fixed-size crops is rebuilt with a free input size.
"""

import sys
from pathlib import Path

from hqdepth import strict_json

CUSTOM_OPTIONS = ("crop", "min_depth", "max_depth", "max_inclusive", "clip", "clamp_floor", "averaging",
                  "densedepth_swap_bug", "delta", "test_input")


def add_parser(subparsers):
    from hqdepth.evaluation import AVERAGINGS, DELTA_COMPARISONS, PROTOCOLS, TEST_INPUTS

    parser = subparsers.add_parser(
        "evaluate",
        help="depth metrics under a published protocol (BTS, HQMD, DenseDepth, KITTI Garg/Eigen, Hu/SARPN)",
        description="Evaluate depth predictions with the crop, valid range, clipping and averaging of a "
                    "published evaluator. Protocols: "
                    + "; ".join(f"{name}: {protocol.description}" for name, protocol in PROTOCOLS.items()),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pairs", metavar="PAIRS.txt",
                        help="lines '<prediction> <ground truth>', paths relative to this file's folder; "
                             ".png = value/scale, .npy = metres")
    source.add_argument("--model", metavar="MODEL",
                        help="a .keras file, a training run folder or a SavedModel folder to run over --data, each "
                             "image as the protocol's official test runs it")
    parser.add_argument("--data", metavar="SPEC",
                        help="with --model: a dataset SPEC (see hqdepth.data) or a pairs file '<rgb> <ground truth> "
                             "[focal]' (focal in pixels, used by focal-aware models such as BTS KITTI)")
    parser.add_argument("--split", default="test", help="dataset split for a SPEC (default: test)")
    parser.add_argument("--protocol", required=True, choices=list(PROTOCOLS), help="evaluation protocol")
    parser.add_argument("--pred-scale", type=float, metavar="S",
                        help="PNG value per metre of predictions (default 1000 for nyu-*, 256 for kitti-*)")
    parser.add_argument("--gt-scale", type=float, metavar="S",
                        help="PNG value per metre of ground truth (default 1000 for nyu-*, 256 for kitti-*)")
    parser.add_argument("--kb-crop", action="store_true",
                        help="predictions cover the KITTI benchmark crop 352x1216 (a model gets that crop; kitti-* "
                             "protocols give it to a model anyway); "
                             "pasted into the full frame as BTS --do_kb_crop")
    parser.add_argument("--flip", action="store_true", help="with --model: flip test-time augmentation")
    parser.add_argument("--tf32", action="store_true",
                        help="with --model on an Ampere or later GPU: let TensorFlow multiply in TF32 (faster; by "
                             "default the model runs in float32, as the papers' GPUs scored it)")
    parser.add_argument("--ssim", action="store_true", help="also report SSIM on depth (tf.image.ssim computation)")
    parser.add_argument("--ssim-max-val", type=float, metavar="M",
                        help="SSIM dynamic range in metres (default: the protocol's max depth)")
    parser.add_argument("--resize-any", action="store_true",
                        help="resize predictions to the ground truth even when the aspect ratios differ")
    parser.add_argument("--geometry", action="store_true",
                        help="also the iBims-1 geometric errors (depth boundary, directed depth, planarity; "
                             "hqdepth.geometry) on the whole frame. True edges and planes come from the dataset "
                             "(ibims:DIR) or, with --pairs, an edge map as a third column '<prediction> <ground truth> "
                             "<edges.png>'; metrics without their ground truth are reported as not computed")
    parser.add_argument("--geometry-version", choices=("v2", "v1"),
                        help="with --geometry: depth boundary errors of the official code (v2, default) or the older "
                             "v1 (Canny 0.10/0.20, directed completeness)")
    parser.add_argument("--json", metavar="OUT", help="write {protocol, count, metrics, ...} as JSON")
    parser.add_argument("--csv", metavar="PER_IMAGE", help="write one row per image (CSV)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    custom = parser.add_argument_group("custom protocol (only with --protocol custom)")
    custom.add_argument("--crop", help="'none', a preset crop name, or 'R0:R1,C0:C1' (default none)")
    custom.add_argument("--min-depth", type=float, help="valid ground truth > this (default 1e-3)")
    custom.add_argument("--max-depth", type=float, help="valid ground truth < this (default: no upper bound)")
    custom.add_argument("--max-inclusive", action="store_true", default=None, help="valid ground truth <= max-depth")
    custom.add_argument("--clip", help="prediction handling: 'range' (clip to [min, max], +inf->max, NaN->min; "
                                       "default), 'none', or 'LO,HI'")
    custom.add_argument("--clamp-floor", type=float,
                        help="set prediction and ground-truth values <= this to it (HQMD style)")
    custom.add_argument("--averaging", choices=AVERAGINGS, help="default per_image")
    custom.add_argument("--densedepth-swap-bug", action="store_true", default=None,
                        help="reproduce DenseDepth master's swapped compute_errors arguments")
    custom.add_argument("--delta", choices=DELTA_COMPARISONS,
                        help="delta_k counts max(d/g, g/d) < 1.25^k (default, BTS/HQMD) or <= (Hu et al.)")
    custom.add_argument("--test-input", choices=TEST_INPUTS,
                        help="with --model: how the network sees a test image (default resize; kb_crop with "
                             "--kb-crop)")
    return parser


def _protocol(args):
    from hqdepth.errors import ConfigError
    from hqdepth.evaluation import custom_protocol, get_protocol

    given = [name for name in CUSTOM_OPTIONS if getattr(args, name) is not None]
    if args.protocol != "custom":
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise ConfigError(f"{flags} {'applies' if len(given) == 1 else 'apply'} to --protocol custom only; "
                              f"{args.protocol} is fixed.")
        protocol = get_protocol(args.protocol)
        if args.kb_crop:  # the predictions cover the KB crop; a model is run on it
            return protocol.with_options(kb_crop=True, test_input="kb_crop" if args.model else protocol.test_input)
        return protocol
    clip = args.clip if args.clip is not None else "range"
    if clip not in ("range", "none"):
        try:
            lo, hi = (float(v) for v in clip.split(","))
        except ValueError:
            raise ConfigError(f"--clip must be 'range', 'none' or 'LO,HI', got {clip!r}.") from None
        clip = (lo, hi)
    return custom_protocol(
        crop=args.crop or "none",
        min_depth=1e-3 if args.min_depth is None else args.min_depth,
        max_depth=args.max_depth, max_inclusive=bool(args.max_inclusive), clip=clip, clamp_floor=args.clamp_floor,
        averaging=args.averaging or "per_image", densedepth_swap_bug=bool(args.densedepth_swap_bug),
        kb_crop=args.kb_crop, delta_comparison=args.delta or "<", test_input=args.test_input,
    )


def run(args):
    """Evaluate, print the table, write --json/--csv (warnings: `hqdepth.cli.main`'s 'hqdepth evaluate: warning:')."""
    from hqdepth.errors import ConfigError
    from hqdepth.evaluation import evaluate_model, evaluate_pairs

    protocol = _protocol(args)
    common = {"ssim": args.ssim, "ssim_max_val": args.ssim_max_val, "resize_any": args.resize_any,
              "progress": not args.quiet}
    if args.geometry_version and not args.geometry:
        raise ConfigError("--geometry-version goes with --geometry.")
    geometry = None  # the iBims-1 metrics (hqdepth.geometry.GeometryEvaluator) with --geometry
    described = {}  # with --model: which model (a run folder's checkpoint) and whether flipped, for --json
    if args.pairs:
        if args.data or args.flip or args.tf32:
            raise ConfigError("--data, --flip and --tf32 go with --model, not --pairs.")
        if args.geometry:
            from hqdepth.geometry import evaluate_pairs_with_geometry

            result, geometry = evaluate_pairs_with_geometry(args.pairs, protocol, pred_scale=args.pred_scale,
                                                            gt_scale=args.gt_scale,
                                                            version=args.geometry_version or "v2", **common)
        else:
            result = evaluate_pairs(args.pairs, protocol, pred_scale=args.pred_scale, gt_scale=args.gt_scale, **common)
    else:
        if not args.data:
            raise ConfigError("--model needs --data SPEC (a dataset SPEC or a pairs file of RGB and ground truth).")
        if args.pred_scale is not None:
            raise ConfigError("--pred-scale applies to prediction files (--pairs), not to --model.")
        import tensorflow as tf

        from hqdepth.depth_model import load

        tf.config.experimental.enable_tensor_float_32_execution(args.tf32)  # no effect without such a GPU
        model = load(args.model)
        described = {"model": model.describe(), "flip": bool(args.flip)}
        print(f"model: {described['model']}")  # which checkpoint of a run folder: best.keras first
        if args.geometry:
            from hqdepth.geometry import evaluate_model_with_geometry

            result, geometry = evaluate_model_with_geometry(model, args.data, protocol, split=args.split,
                                                            flip=args.flip, gt_scale=args.gt_scale,
                                                            version=args.geometry_version or "v2", **common)
        else:
            result = evaluate_model(model, args.data, protocol, split=args.split, flip=args.flip,
                                    gt_scale=args.gt_scale, **common)
    print(result.format_table())
    if geometry is not None:
        print(geometry.format_table())
    sys.stdout.flush()
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {**result.to_dict(), **described}
        if geometry is not None:
            document["geometry"] = geometry.to_dict()
        path.write_text(strict_json.dumps(document, indent=2) + "\n")
    if args.csv:
        path = Path(args.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        result.to_frame().to_csv(path, index=False)
    return 0
