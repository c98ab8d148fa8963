"""Convert a dataset SPEC to sharded TFRecords (resumable): `python data_tools/convert.py SPEC --out DIR [--split S]`.

Thin wrapper around `hqdepth data convert` (logic in `hqdepth.data.tools`); `--help` lists the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hqdepth.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["data", "convert", *sys.argv[1:]]))
