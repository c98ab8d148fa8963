"""`hqdepth models`: every registered model with its parameter count at its default input size."""


def add_parser(subparsers):
    parser = subparsers.add_parser("models", help="list the registered models and their sizes")
    parser.add_argument("--no-count", action="store_true", help="skip building models to count parameters")
    return parser


def run(args):
    from hqdepth.models import list_models

    entries = list_models()
    print(f"{'model':<24} {'input (HxW)':<12} {'params':>12} {'trainable':>12}  description")
    for entry in entries:
        total = trainable = "-"
        if not args.no_count:
            import keras
            import numpy as np

            model = entry.builder(input_shape=(*entry.input_size, 3))
            total = f"{model.count_params():,}"
            trainable = f"{int(sum(np.prod(w.shape) for w in model.trainable_weights)):,}"
            keras.backend.clear_session()
        size = "x".join(str(s) for s in entry.input_size)
        print(f"{entry.name:<24} {size:<12} {total:>12} {trainable:>12}  {entry.description}")
    return 0
