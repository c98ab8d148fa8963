"""`hqdepth weights convert --from FORMAT SRC OUT`: published checkpoints of other frameworks -> files of this package.

The converters live in `hqdepth.weights` (`slim`: TF-slim resnet_v2_50 and HQMDE; `torch`: torchvision
ResNet-50, BTS and Cadene's SENet-154); this module parses arguments and prints what was written.
"""

# = hqdepth.weights.FORMATS (not imported here: keeps `hqdepth --help` light)
FORMATS = ("slim-resnet50-v2", "hqmde", "torchvision-resnet50", "bts", "cadene-senet154")

FORMAT_HELP = """formats:
  slim-resnet50-v2      TF-slim resnet_v2_50 ImageNet checkpoint (resnet_v2_50_2017_04_14, what HQMDE's train.py
                        restores) -> OUT.weights.h5 for --set model.options.backbone_weights=OUT (hqmd_* models)
  hqmde                 HQMDE's trained checkpoint of the whole network (TF1) -> OUT.keras (hqmd_baseline_plus,
                        or hqmd_baseline), input 289x385 as HQMDE tests; options: input_size=HxW|free,
                        variant=auto|baseline_plus|baseline, output_stride, multi_grid, aspp_rates, max_depth
  torchvision-resnet50  torchvision ResNet-50 state dict (.safetensors, or .pth with torch installed)
  bts                   BTS trained PyTorch model -> OUT.keras (bts)
  cadene-senet154       Cadene pretrainedmodels SENet-154 (senet154-c7b49a05.pth, SARPN's and MRPAN's backbone;
                        .safetensors, or .pth with torch installed) -> OUT.weights.h5 for mrpan backbone=senet154

Examples:
  hqdepth weights convert --from slim-resnet50-v2 resnet_v2_50.ckpt resnet_v2_50.weights.h5
  hqdepth train hqmd_plus_full --data SPEC --out RUN --set model.options.backbone_weights=resnet_v2_50.weights.h5
  hqdepth weights convert --from hqmde model.ckpt-300000 hqmd_published.keras
  hqdepth evaluate --model hqmd_published.keras --data SPEC --protocol nyu-hqmd
"""


def add_parser(subparsers):
    import argparse

    parser = subparsers.add_parser(
        "weights", help="convert published checkpoints (TF-slim, HQMDE, torchvision, BTS, SENet-154) into this "
        "package's files",
        description="Convert weights published for other frameworks. Each converter checks the file against the "
                    "official variable names and shapes both ways and names whatever is missing, left over or "
                    "mis-shaped. Nothing is downloaded.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    convert = actions.add_parser(
        "convert", help="convert SRC (of format --from) into OUT", epilog=FORMAT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Convert SRC, a checkpoint in the format given by --from, into OUT.")
    convert.add_argument("--from", dest="source_format", required=True, choices=FORMATS, metavar="FORMAT",
                         help=f"format of SRC: {', '.join(FORMATS)}")
    convert.add_argument("src", metavar="SRC", help="checkpoint to read (TF: the prefix, its .index file or folder)")
    convert.add_argument("out", metavar="OUT", help="file to write (.weights.h5 for a backbone, .keras for a model)")
    convert.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", dest="options",
                         help="converter option, value parsed as YAML, e.g. input_size=free (repeatable)")
    convert.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return parser


def parse_options(items):
    """{key: value} from KEY=VALUE strings; values are YAML (numbers, lists, strings)."""
    import yaml

    from hqdepth.errors import ConfigError

    options = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option expects KEY=VALUE, got {item!r}")
        try:
            options[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as error:
            raise ConfigError(f"--option {item!r}: cannot parse the value ({error})") from None
    return options


def run(args):
    from pathlib import Path

    from hqdepth.errors import ConfigError

    if args.action != "convert":
        raise ConfigError("usage: hqdepth weights convert --from FORMAT SRC OUT (see hqdepth weights convert --help)")
    options = parse_options(args.options)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it")

    from hqdepth import weights

    converter = weights.get_converter(args.source_format)
    try:
        report = converter(args.src, str(out), **options)
    except TypeError as error:
        if options and "unexpected keyword" in str(error):
            raise ConfigError(f"--from {args.source_format}: {error}") from None
        raise
    print(report.summary() if hasattr(report, "summary") else f"wrote {out}")
    return 0
