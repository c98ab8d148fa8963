"""The `hqdepth` command. Each sub-command lives in `hqdepth.commands.<name>` with `add_parser`/`run`."""

import argparse
import importlib
import os
import sys

from hqdepth import __version__
from hqdepth.errors import HQDepthError

# Sub-command modules, in the order `hqdepth --help` lists them.
COMMANDS = ["models", "recipes", "train", "evaluate", "predict", "export", "data"]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="hqdepth",
        description="Supervised monocular depth estimation: HQMD and related models in Keras 3.",
    )
    parser.add_argument("--version", action="version", version=f"hqdepth {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"hqdepth.commands.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"hqdepth.commands.{name}":  # a missing dependency inside it is a real error
                raise
            continue  # a command whose module is not written yet
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return args._run(args) or 0
    except HQDepthError as error:
        print(f"hqdepth {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hqdepth {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
