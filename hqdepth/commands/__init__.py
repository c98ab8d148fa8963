"""Sub-commands of the `hqdepth` CLI: each module has `add_parser(subparsers)` and `run(args)`."""
