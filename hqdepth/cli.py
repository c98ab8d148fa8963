"""The `hqdepth` command. Each sub-command lives in `hqdepth.commands.<name>` with `add_parser`/`run`.

Start-up is cheap and quiet: building the parser imports only the command modules, which import
Keras/TensorFlow inside `run` and only when the command needs them (`hqdepth --help`, `models`
and `recipes` never load TensorFlow). Unless `--verbose` is given, TensorFlow's C++ logging is
switched off before TensorFlow loads, including the lines its libraries print while loading
(`hqdepth.quiet`).
"""

import argparse
import importlib
import logging
import os
import sys

from hqdepth import __version__
from hqdepth.errors import HQDepthError, errors_from_tensorflow

# Sub-command modules, in the order `hqdepth --help` lists them.
COMMANDS = ["models", "recipes", "train", "evaluate", "predict", "export", "weights", "data"]


VERBOSE_HELP = "show TensorFlow's own log messages (C++ and absl), as the environment configures them"


def build_parser():
    """The argument parser: global options and one sub-parser per module in `COMMANDS` that exists."""
    parser = argparse.ArgumentParser(
        prog="hqdepth",
        description="Supervised monocular depth estimation: HQMD and related models in Keras 3.",
    )
    parser.add_argument("--version", action="version", version=f"hqdepth {__version__}")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
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
        if "--verbose" not in sub._option_string_actions:  # also accepted after the command name
            sub.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return parser


def wants_verbose(argv):
    """Whether `--verbose` is among the options (before any `--`): decided before parsing, so that
    TensorFlow is quiet even if a command module imported it while the parser is being built."""
    argv = list(argv)
    return "--verbose" in (argv[:argv.index("--")] if "--" in argv else argv)


def _stdout_is_gone():
    """Whether stdout is a pipe whose reader has closed it (poll says POLLERR / POLLHUP)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll on this platform, or no real stdout
        return False


def main(argv=None):
    """Run the command line `argv` (default: `sys.argv[1:]`); returns the exit status.

    Errors a user can cause (`HQDepthError`, also when TensorFlow's data pipeline carries one) print one line, no
    traceback, and return 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not wants_verbose(argv):
        from hqdepth.quiet import quiet_tensorflow

        quiet_tensorflow()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    # the package's logged warnings (evaluation, data) as "hqdepth COMMAND: warning: ...", like its errors
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"hqdepth {args.command}: warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    logging.getLogger("hqdepth").addHandler(handler)
    try:
        with errors_from_tensorflow():
            status = args._run(args) or 0
        sys.stdout.flush()  # a reader that has gone (`| head`) shows here, not as an error at exit
        return status
    except HQDepthError as error:
        print(f"hqdepth {args.command}: error: {error}", file=sys.stderr)
    except BrokenPipeError:
        if not _stdout_is_gone():
            raise  # another pipe: a real error
        # `hqdepth ... | head`: the reader of stdout has gone; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    except KeyboardInterrupt:
        print(f"hqdepth {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        logging.getLogger("hqdepth").removeHandler(handler)
    # Free what the error's traceback kept alive (reference cycles), e.g. a tf.data iterator whose threads would
    # otherwise meet TensorFlow's exit: "terminate called without an active exception", status 134.
    import gc

    gc.collect()
    return 2


if __name__ == "__main__":
    sys.exit(main())
