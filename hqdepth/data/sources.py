"""File-based RGB-D sources: NYU labeled `.mat`, DenseDepth zip/CSV, list files, KITTI, folders, CSV.

One reader per module; this module re-exports them and the shared helpers (the names below are the
compatibility surface of `hqdepth.data.sources`):

- `hqdepth.data.lists`: `ListSource` (`list:FILE@ROOT`, HQMD and BTS list files).
- `hqdepth.data.kitti`: `KittiSource` (`kitti:LIST@ROOT`, BTS and monodepth2 lists).
- `hqdepth.data.csvfile`: `CsvSource` (`csv:FILE[@ROOT]`).
- `hqdepth.data.folder`: `FolderSource` (`folder:DIR`).
- `hqdepth.data.densedepth`: `DenseDepthSource` (`densedepth:PATH`, `nyu_data.zip` or its folder).
- `hqdepth.data.nyu_mat`: `NyuMatSource` (`nyu-mat:PATH`, `nyu_depth_v2_labeled.mat`).
- `hqdepth.data.pair_source`: `PairSource`, `PairEntry` and the file/zip byte readers the pair readers share.
- `hqdepth.data.common`: SPEC argument parsing (`split_argument`), the byte decoders (`decode_rgb`,
  `decode_depth`, `decode_depth_raw`), `kb_crop` and the constants.

Every source is a `hqdepth.data.base.Source`: indexable, `len()`, items are `Sample`s with
rgb uint8 (H, W, 3), depth float32 metres (H, W, 1) with 0 = no ground truth, and `meta`
("id" always, "focal" in pixels when known). Formats and constants: specs/evaluation_and_data.md §4.
Importing a reader module registers its SPEC kind (`hqdepth.data._register_all` imports them all).
"""

from hqdepth.data.common import (  # noqa: F401
    IMAGE_EXTENSIONS, KB_CROP, NYU_FOCAL, decode_depth, decode_depth_raw, decode_rgb, kb_crop, split_argument)
from hqdepth.data.csvfile import CsvSource  # noqa: F401
from hqdepth.data.densedepth import DenseDepthSource  # noqa: F401
from hqdepth.data.folder import FolderSource  # noqa: F401
from hqdepth.data.kitti import KittiSource  # noqa: F401
from hqdepth.data.lists import ListSource  # noqa: F401
from hqdepth.data.nyu_mat import NyuMatSource  # noqa: F401
from hqdepth.data.pair_source import PairEntry, PairSource  # noqa: F401
