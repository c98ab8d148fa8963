"""`hqdepth data ...`: dataset preparation — convert, verify, stats, synthetic.

The logic lives in `hqdepth.data.tools`; this module only parses arguments and prints.
"""

from hqdepth import strict_json

SPLITS = ("train", "val", "test", "all")  # "all": a source that has it (nyu-mat), else its error names its splits


def add_parser(subparsers):
    parser = subparsers.add_parser("data", help="prepare datasets: convert to TFRecord, verify, stats, synthetic scenes")
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION")
    parser.set_defaults(_parser=parser)

    convert = commands.add_parser("convert", help="convert a dataset SPEC to sharded TFRecords (resumable)")
    convert.add_argument("spec", help="dataset SPEC, e.g. synthetic:1000, nyu-mat:PATH, list:FILE@ROOT")
    convert.add_argument("--out", required=True, help="output directory (manifest.json + shards)")
    convert.add_argument("--split", default="train", choices=SPLITS,
                         help="split to convert (default train; all: every sample, for a source that has it, e.g. "
                              "nyu-mat)")
    _add_common(convert)
    convert.add_argument("--depth-scale", type=float, default=None,
                         help="16-bit depth PNG value per metre (default: 256 for kitti, the SPEC's ?scale= for "
                              "integer-coded depth, else 1000)")
    convert.add_argument("--limit", type=int, default=None, help="convert only the first N samples")
    convert.add_argument("--overwrite", action="store_true", help="replace a split converted with other settings")
    convert.add_argument("--skip-errors", action="store_true", help="skip unreadable samples (listed in the manifest) instead of stopping")

    verify = commands.add_parser("verify", help="decode every record of a converted directory; non-zero exit on any problem")
    verify.add_argument("directory")
    verify.add_argument("--split", default=None, help="check only this split")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")

    stats = commands.add_parser("stats", help="depth histogram, valid fraction, mean RGB and geometric ground truth (edges, planes) of a SPEC")
    stats.add_argument("spec")
    stats.add_argument("--split", default="train", choices=SPLITS, help="split (default train)")
    stats.add_argument("--limit", type=int, default=None, help="only the first N samples")
    stats.add_argument("--bins", type=int, default=20, help="histogram bins (default 20)")
    stats.add_argument("--max-depth", type=float,
                       help="histogram range in metres (default 80 for KITTI or PNGs at scale 256, else 10)")
    stats.add_argument("--no-progress", action="store_true", help="no progress bar")
    stats.add_argument("--json", action="store_true", help="print the report as JSON")

    synthetic = commands.add_parser("synthetic", help="write synthetic scenes as TFRecord shards or PNG pairs + list file")
    synthetic.add_argument("--count", type=int, required=True, help="number of scenes")
    synthetic.add_argument("--size", default="240x320", help="HxW (default 240x320)")
    synthetic.add_argument("--out", required=True, help="output directory")
    synthetic.add_argument("--split", default="train", choices=("train", "val", "test"), help="seed range to draw from (default train)")
    synthetic.add_argument("--seed", type=int, default=0, help="offset inside the split's seed range (default 0)")
    synthetic.add_argument("--format", default="tfrecord", choices=("tfrecord", "png", "ibims"), help="tfrecord shards (default; with the exact edges and planes), png pairs + <split>.txt (depth only) or an iBims-1 release in OUT (.mat files with edges and planes; read by ibims:OUT; written in one process, --depth-scale does not apply)")
    synthetic.add_argument("--depth-scale", type=float, default=1000.0, help="16-bit depth value per metre (default 1000 = mm)")
    synthetic.add_argument("--overwrite", action="store_true", help="replace a split written with other settings")
    _add_common(synthetic)
    return parser


DEFAULT_SHARD_SIZE = 256  # = hqdepth.data.tools.DEFAULT_SHARD_SIZE (not imported: keeps `hqdepth --help` light)


def _add_common(parser):
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help=f"records per shard (default {DEFAULT_SHARD_SIZE})")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per available core)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args):
    from hqdepth.data import tools

    action = getattr(args, "data_command", None)
    if action is None:
        args._parser.print_help()
        return 2
    if action == "convert":
        report = tools.convert(
            args.spec,
            args.out,
            split=args.split,
            shard_size=args.shard_size,
            workers=args.workers or tools.default_workers(),
            depth_scale=args.depth_scale,
            limit=args.limit,
            overwrite=args.overwrite,
            skip_errors=args.skip_errors,
            progress=not args.no_progress,
        )
        _print_convert(report)
        return 0
    if action == "verify":
        report = tools.verify(args.directory, split=args.split, progress=not args.no_progress)
        if args.json:
            print(strict_json.dumps(report, indent=1))
        else:
            for item in report["problems"]:
                where = item["shard"] or "(manifest)"
                if item["record"] is not None:
                    where += f" record {item['record']}"
                print(f"BAD  [{item['split']}] {where}: {item['problem']}")
            for name in report["unlisted_files"]:
                print(f"note: {name} is not listed in the manifest")
            state = "FAILED" if report["problems"] else "OK"
            print(f"{state}: {report['shards']} shards, {report['records']} records checked, {len(report['problems'])} problem(s)")
        return 1 if report["problems"] else 0
    if action == "stats":
        report = tools.stats(args.spec, split=args.split, limit=args.limit, bins=args.bins, max_depth=args.max_depth, progress=not args.no_progress)
        print(strict_json.dumps(report, indent=1) if args.json else tools.format_stats(report))
        return 0
    if action == "synthetic":
        report = tools.write_synthetic(
            args.out,
            args.count,
            size=args.size,
            split=args.split,
            seed=args.seed,
            fmt=args.format,
            shard_size=args.shard_size,
            workers=args.workers or tools.default_workers(),
            depth_scale=args.depth_scale,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
        if args.format == "png":
            print(f"wrote {report['records']} scene(s) of split {report['split']}; list file {report['list']} (depth PNG = metres x {report['depth_scale']:g})")
            print("note: the PNG pairs carry no geometric ground truth (the BTS list format has no place for the "
                  "scenes' edges and planes); the tfrecord and ibims formats keep them for the iBims metrics.")
        elif args.format == "ibims":
            print(f"wrote {report['records']} scene(s) of split {report['split']} as an iBims-1 release (with edges and "
                  f"planes); list file {report['list']}; read it with ibims:{args.out}")
        else:
            _print_convert(report)
        return 0
    raise AssertionError(action)  # pragma: no cover - argparse restricts the choices


def _print_convert(report):
    print(
        f"{report['split']}: {report['records']} records in {report['shards']} shard(s); "
        f"converted {len(report['converted'])}, kept {len(report['kept'])} (sha256 matched); manifest {report['manifest']}"
    )
    geometry = report.get("geometry") or {}
    print("geometric ground truth: " + (", ".join(f"{name} in {count}" for name, count in geometry.items()) + " records"
                                        if geometry else "none (the iBims metrics need edges or planes)"))
    if report["without_ground_truth"]:
        print(f"{len(report['without_ground_truth'])} list line(s) without ground truth not converted (listed in the "
              f"manifest under without_ground_truth), e.g. {report['without_ground_truth'][0]}")
    if report["skipped"]:
        print(f"skipped {len(report['skipped'])} unreadable sample(s) (listed in the manifest):")
        for item in report["skipped"][:20]:
            print(f"  index {item['index']}: {item['error']}")
