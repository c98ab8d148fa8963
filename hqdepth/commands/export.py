"""`hqdepth export MODEL --out DIR [--format saved_model|keras|onnx]`: a model for serving.

The logic lives in `hqdepth.export`; this module only parses arguments and prints.
"""

FORMATS = ("saved_model", "keras", "onnx")  # = hqdepth.export.FORMATS (not imported: keeps --help light)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "export",
        help="export a model: SavedModel (uint8 any-size serving signature), .keras, or ONNX",
        description="Export MODEL (a training run folder or a .keras file). saved_model: DIR is a SavedModel whose "
                    "serving_default takes uint8 RGB [N, H, W, 3] of any size and returns float32 metres "
                    "[N, H, W, 1] at the same size; `serve` takes float32 RGB 0..255 at the model's input size; "
                    "metadata in `metadata()` and assets.extra/hqdepth.json. keras: DIR/model.keras without "
                    "optimizer state. onnx: DIR/model.onnx at the model's input size (needs hqdepth[onnx]).",
    )
    parser.add_argument("model", metavar="MODEL", help="run folder or .keras file")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (must be new or empty)")
    parser.add_argument("--format", default="saved_model", choices=FORMATS, help="default saved_model")
    parser.add_argument("--input-size", metavar="HxW", help="input size for a model with a free input size "
                                                            "(default: the run config's); 'free': each image at "
                                                            "its own size (longer side <= 1024, KITTI: 1280), "
                                                            "rounded as the model needs (SavedModel)")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: tf2onnx's)")
    parser.add_argument("--freeze", action="store_true",
                        help="SavedModel: weights as graph constants instead of variables (serving only; see "
                             "benchmarks/RESULTS.md for when it is faster)")
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                        help="SavedModel arithmetic: bfloat16 is about 2x faster on CPUs with bfloat16 units (AMX, "
                             "AVX512-BF16); depths differ by its rounding (benchmarks/RESULTS.md). Default float32")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous export in --out (a folder holding other files is refused)")
    parser.add_argument("--check", action="store_true",
                        help="after export, run the exported model and the Keras model on random images and print "
                             "the largest difference")
    return parser


def run(args):
    from hqdepth.data.synthetic import parse_size
    from hqdepth.export import check_export, export
    from hqdepth.predict import load

    input_size = args.input_size if args.input_size in (None, "free") else parse_size(args.input_size)
    model = load(args.model)
    print(f"model: {model.describe()}")
    result = export(model, args.out, format=args.format, input_size=input_size, overwrite=args.overwrite,
                    opset=args.opset, freeze=args.freeze, precision=args.precision)
    size = result["metadata"]["input_size"]
    size = f"{size[0]}x{size[1]}" if size else "free"
    print(f"exported {args.format} to {result['path']} (input size {size}; metadata in "
          f"{'assets.extra/' if args.format == 'saved_model' else ''}hqdepth.json)")
    if args.check:
        for what, difference in check_export(model, result):
            print(f"check: {what}: max |exported - keras| = {difference:.3g} m")
    return 0
