"""`hqdepth models`: every shipped model with its input size, parameter counts and description.

The numbers come from the registry's catalog (`hqdepth.models.registry.CATALOG`), so the listing
imports neither Keras nor TensorFlow and answers at once; `--build` builds each model instead and
prints the counts measured on it (about 20 s on a 2-core CPU), which is what the test suite checks
the catalog against.
"""


def add_parser(subparsers):
    parser = subparsers.add_parser("models", help="list the registered models and their sizes",
                                   description="List the registered models: paper input size, parameter counts "
                                               "at the default options, description.")
    parser.add_argument("--build", action="store_true",
                        help="build every model and count its parameters (slow; loads TensorFlow)")
    parser.add_argument("--no-count", action="store_true", help="show no parameter counts")
    return parser


def built_counts(name, input_size):
    """(all parameters, trainable parameters) of model `name` built with its default options at `input_size`."""
    import keras
    import numpy as np

    from hqdepth.models import build_model

    model = build_model(name, input_shape=(*input_size, 3))
    counts = model.count_params(), int(sum(np.prod(w.shape) for w in model.trainable_weights))
    keras.backend.clear_session()
    return counts


def run(args):
    from hqdepth.models.registry import model_catalog

    print(f"{'model':<24} {'input (HxW)':<12} {'params':>12} {'trainable':>12}  description")
    for info in model_catalog():
        if args.no_count:
            total = trainable = "-"
        else:
            counts = built_counts(info.name, info.input_size) if args.build else (info.params, info.trainable_params)
            total, trainable = (f"{count:,}" for count in counts)
        size = "x".join(str(s) for s in info.input_size)
        print(f"{info.name:<24} {size:<12} {total:>12} {trainable:>12}  {info.description}", flush=True)
    return 0
