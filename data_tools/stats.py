"""Depth histogram, valid fraction and mean RGB of a SPEC: `python data_tools/stats.py SPEC [--limit N]`.

Thin wrapper around `hqdepth data stats` (logic in `hqdepth.data.tools`); `--help` lists the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hqdepth.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["data", "stats", *sys.argv[1:]]))
