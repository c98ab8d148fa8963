"""Write synthetic scenes as TFRecord shards or PNG pairs: `python data_tools/synthetic.py --count N --size HxW --out DIR`.

Thin wrapper around `hqdepth data synthetic` (logic in `hqdepth.data.tools`); `--help` lists the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hqdepth.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["data", "synthetic", *sys.argv[1:]]))
