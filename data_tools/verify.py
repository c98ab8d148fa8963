"""Decode every record of a converted directory; exit 1 on any problem: `python data_tools/verify.py DIR`.

Thin wrapper around `hqdepth data verify` (logic in `hqdepth.data.tools`); `--help` lists the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hqdepth.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["data", "verify", *sys.argv[1:]]))
