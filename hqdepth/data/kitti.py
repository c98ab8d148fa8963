"""The `kitti` source: `kitti:LIST@ROOT`, BTS and monodepth2 lists over the KITTI depth layout."""

from pathlib import Path

from hqdepth.data.base import register_source
from hqdepth.data.lists import ListSource
from hqdepth.data.pair_source import is_none


def _kitti_calib_focal(root, date, camera, cache):
    """fx of the rectified colour camera (P_rect_02 / P_rect_03) from ROOT/<date>/calib_cam_to_cam.txt, if present."""
    key = (date, camera)
    if key not in cache:
        cache[key] = None
        path = Path(root) / date / "calib_cam_to_cam.txt"
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.startswith(f"P_rect_{camera[-2:]}:"):
                    cache[key] = float(line.split()[1])
                    break
    return cache[key]


@register_source("kitti")
class KittiSource(ListSource):
    """KITTI depth layout: 16-bit PNG / 256, 0 = invalid. LIST is one of

    - BTS `rgb depth focal` (e.g. eigen_train_files_with_gt.txt; `None` ground truth skipped), or `rgb depth`;
      depth = DEPTH_ROOT[/train|/val]/<depth> (data_depth_annotated.zip's two folders, as unpacked);
    - monodepth2 `<date>/<drive>_sync <frame> l|r`: rgb = ROOT/<date>/<drive>_sync/image_0{2,3}/data/<frame:010d>.png
      (or .jpg), depth = DEPTH_ROOT[/train|/val]/<drive>_sync/proj_depth/groundtruth/image_0{2,3}/<frame:010d>.png;
      lines whose depth file is absent are skipped and counted (Eigen test: 697 -> 652); focal from
      ROOT/<date>/calib_cam_to_cam.txt (P_rect_02 / P_rect_03) when present.

    Options as `list` (scale defaults to 256), plus kb_crop (default false).
    """

    default_dataset = "kitti"

    def _parse_line(self, fields, where):
        if len(fields) == 3 and fields[2] in ("l", "r") and fields[1].isdigit():
            return self._monodepth2_line(fields, where)
        rgb, depth, focal, fmt = super()._parse_line(fields, where)
        if depth is not None and not is_none(depth) and not Path(depth).is_absolute():
            depth = self._in_split_folder(depth) or depth  # in none of them: reported by name when checked
        return rgb, depth, focal, fmt

    def _in_split_folder(self, relative):
        """`relative` (a `<drive>_sync/proj_depth/...` path) as found under DEPTH_ROOT, DEPTH_ROOT/train or
        DEPTH_ROOT/val, else None: `data_depth_annotated.zip` unpacks into train/ and val/, which BTS's README leaves
        to the user to merge."""
        for sub in ("", "train/", "val/"):
            if (Path(self.depth_root) / f"{sub}{relative}").is_file():
                return f"{sub}{relative}"
        return None

    def _monodepth2_line(self, fields, where):
        folder, frame, side = fields
        camera = "image_02" if side == "l" else "image_03"
        name = f"{int(frame):010d}"
        rgb = None
        for ext in (".png", ".jpg"):
            candidate = f"{folder}/{camera}/data/{name}{ext}"
            rgb = candidate
            if (self.root / candidate).is_file():
                break
        drive = folder.rstrip("/").split("/")[-1]
        relative = f"{drive}/proj_depth/groundtruth/{camera}/{name}.png"
        depth = self._in_split_folder(relative)
        if depth is None and not self.skip_note:  # one example for the "no samples" error
            where = f"{Path(self.depth_root) / relative} (or under train/, val/)"
            advice = "" if self.depth_root_given else ": set depth_root=FOLDER of the KITTI ground truth"
            self.skip_note = f"; no depth file at e.g. {where}{advice}"
        date = folder.split("/")[0]
        focal = _kitti_calib_focal(self.root, date, camera, self.__dict__.setdefault("_calib", {}))
        return rgb, depth, focal, "bts"

    def _default_focal(self):
        return None
