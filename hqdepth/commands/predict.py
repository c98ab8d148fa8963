"""`hqdepth predict MODEL INPUT... --out DIR`: depth for photos, as colourised PNG, 16-bit PNG, .npy and .ply.

The logic lives in `hqdepth.predict`; this module only parses arguments and prints.
"""

import sys

COLORMAPS = ("plasma", "magma", "turbo", "gray")  # = hqdepth.predict.COLORMAPS (not imported: keeps --help light)
CAMERAS = ("nyu", "kitti")


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "predict",
        help="depth for photos: colourised PNG, 16-bit PNG, .npy (metres), optional .ply point cloud",
        description="Predict metric depth for image files, folders or globs. MODEL is a training run folder "
                    "(checkpoints/best.keras, else model.keras, else checkpoints/latest.keras), a .keras file or a "
                    "SavedModel. Each image is resized to the size the model runs at (its fixed input size, or "
                    "for a run whose recipe tests at the image's own resolution, e.g. BTS, the image's size: the "
                    "model is then rebuilt with a free input size, weights shared) and the depth back to the image "
                    "size; an aspect-ratio change above 0.5 percent is reported; the EXIF orientation is applied; "
                    "grey, RGBA and 16-bit colour images are converted; 16-bit grey images (depth maps) are "
                    "listed, not predicted. Per image "
                    "NAME it writes NAME_depth_color.png, NAME_depth.png (uint16, metres x --png-scale), "
                    "NAME_depth.npy (float32 metres) and with --ply NAME.ply; DIR/predictions.json lists them. "
                    "Unreadable files are reported and skipped (exit status 1).",
    )
    parser.add_argument("model", metavar="MODEL", help="run folder, .keras file or SavedModel folder")
    parser.add_argument("inputs", metavar="INPUT", nargs="+", help="image files, folders or quoted globs")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    parser.add_argument("--recursive", action="store_true", help="include images in subfolders of folder inputs")
    parser.add_argument("--batch-size", type=int, default=4, help="images per model call (default 4)")
    parser.add_argument("--colormap", default="plasma", choices=COLORMAPS, help="colour map (default plasma)")
    parser.add_argument("--range", metavar="MIN,MAX", help="fixed colour range in metres (default: each image's "
                                                           "min..max)")
    parser.add_argument("--side-by-side", action="store_true", help="colour PNG shows the photo | the depth")
    parser.add_argument("--png-scale", type=float, default=None,
                        help="16-bit PNG value per metre: 1000 = millimetres (NYU), 256 = KITTI (default: 1000, or "
                             "256 for a model predicting beyond 65.5 m, as the KITTI recipes do)")
    parser.add_argument("--input-size", metavar="HxW",
                        help="size to run a model with a free input size at (default: the run config's, else the "
                             "image's own, longer side <= 1024 (KITTI recipes 1280), rounded to 32k+1, BTS: to "
                             "multiples of 32)")
    cloud = parser.add_argument_group("camera: point cloud (.ply) and the focal of a focal-aware model (BTS KITTI)")
    cloud.add_argument("--ply", action="store_true", help="write a coloured point cloud per image (implied by "
                                                          "--camera or --fx, except for a focal-aware model, which "
                                                          "they give its focal)")
    cloud.add_argument("--camera", choices=CAMERAS, help="standard intrinsics (NYU Depth v2 640x480, KITTI "
                                                         "1242x375), scaled to each image's size")
    cloud.add_argument("--fx", type=float, help="focal length in pixels of the input images")
    cloud.add_argument("--fy", type=float, help="vertical focal length (default: fx)")
    cloud.add_argument("--cx", type=float, help="principal point column, 0-based (default: image centre)")
    cloud.add_argument("--cy", type=float, help="principal point row, 0-based (default: image centre)")
    cloud.add_argument("--ply-step", type=int, default=1, help="keep every N-th row and column (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _parse_range(text):
    from hqdepth.errors import ConfigError

    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--range must be MIN,MAX in metres, e.g. 0,10; got {text!r}.") from None
    if not hi > lo:
        raise ConfigError(f"--range MIN,MAX needs MIN < MAX, got {text!r}.")
    return lo, hi


def run(args):
    from hqdepth.data.synthetic import parse_size
    from hqdepth.predict import camera_intrinsics, images_to_predict, load, predict_files

    value_range = _parse_range(args.range) if args.range else None
    intrinsics = camera_intrinsics(args.camera, args.fx, args.fy, args.cx, args.cy)
    input_size = parse_size(args.input_size) if args.input_size else None
    images_to_predict(args.inputs, args.recursive)  # no image at all: said before the model loads
    model = load(args.model).for_photos()  # rebuilt with a free input size when its recipe tests that way
    if input_size is not None:
        from hqdepth.errors import ConfigError

        if model.input_size is not None and tuple(input_size) != model.input_size:
            raise ConfigError(f"--input-size {args.input_size}: the model has a fixed input size "
                              f"{model.input_size[0]}x{model.input_size[1]}.")
        model.check_size(*input_size, f"--input-size {args.input_size}")
        model.size_override = tuple(input_size)
    print(f"model: {model.describe()}")
    if model.reference_focal is not None:
        print("focal-aware model: " + ("the focal of --camera/--fx, scaled to the size each image runs at"
                                       + ("" if args.ply else " (point clouds: --ply)") if intrinsics
                                       else f"no focal given (--camera or --fx): {model.reference_focal:g} px at the "
                                            "size each image runs at"))
    if intrinsics is not None and getattr(intrinsics, "width", None):
        print(f"intrinsics: {intrinsics.source} (fx {intrinsics.fx:g}, fy {intrinsics.fy:g}, cx {intrinsics.cx:g}, "
              f"cy {intrinsics.cy:g} at {intrinsics.width}x{intrinsics.height}), scaled to each image's size")
    sys.stdout.flush()
    summary = predict_files(
        model, args.inputs, args.out, recursive=args.recursive, batch_size=args.batch_size, colormap=args.colormap,
        value_range=value_range, side_by_side=args.side_by_side, png_scale=args.png_scale,
        ply=args.ply or (intrinsics is not None and model.reference_focal is None), intrinsics=intrinsics,
        ply_step=args.ply_step,
        progress=not args.quiet, log=lambda message: print(message, file=sys.stderr),
    )
    print(f"wrote {len(summary['images'])} prediction(s) to {args.out} (list: {args.out}/predictions.json)")
    if not summary["images"] and not summary["skipped"]:
        print("hqdepth predict: no photo among the inputs (only depth maps)", file=sys.stderr)
        return 1
    if summary["skipped"]:
        print(f"hqdepth predict: skipped {len(summary['skipped'])} input(s):", file=sys.stderr)
        for item in summary["skipped"]:
            print(f"  {item['input']}: {item['error']}", file=sys.stderr)
        return 1
    return 0
