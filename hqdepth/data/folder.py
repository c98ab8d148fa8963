"""The `folder` source: `folder:DIR`, DIR/rgb/* paired with DIR/depth/* by stem or number."""

import re
from pathlib import Path

from hqdepth.data.base import register_source
from hqdepth.data.common import IMAGE_EXTENSIONS, as_bool, as_choice, merge_options, require_path, split_argument
from hqdepth.data.pair_source import MISSING_SHOWN, PairEntry, PairSource, need_scale
from hqdepth.errors import DataError


def _number_key(stem):
    digits = re.findall(r"\d+", stem)
    return int(digits[-1]) if digits else None


@register_source("folder")
class FolderSource(PairSource):
    """DIR/rgb/* paired with DIR/depth/* (or DIR/<split>/rgb, DIR/<split>/depth when present).

    Pairing by file stem (rgb/0001.jpg <-> depth/0001.png); when no stems match, by the last number in
    the stem (rgb/rgb_00050.jpg <-> depth/sync_depth_00050.png). Unpaired files are an error.
    Options: scale (required), bits = 16 | 8 | any, rgb_dir (default rgb), depth_dir (default depth), kb_crop.
    """

    def __init__(self, argument, split="train", **options):
        super().__init__()
        path, _, spec_options = split_argument(argument)
        options = merge_options(self.kind, spec_options, options, ("scale", "bits", "kb_crop", "rgb_dir", "depth_dir"))
        base = Path(require_path(self.kind, path, "DIR"))
        rgb_dir, depth_dir = options.get("rgb_dir", "rgb"), options.get("depth_dir", "depth")
        if (base / str(split) / rgb_dir).is_dir():
            base = base / str(split)
        self.listing = base
        self.scale = need_scale(self.kind, options)
        self.bits = as_choice("bits", options.get("bits", "16"), ("16", "8", "any"))
        self.crop_kb = as_bool("kb_crop", options.get("kb_crop", False))
        for sub in (rgb_dir, depth_dir):
            if not (base / sub).is_dir():
                raise DataError(f"{base / sub}: folder does not exist (folder:DIR expects DIR/{rgb_dir} and DIR/{depth_dir}).")
        rgbs = _image_files(base / rgb_dir, IMAGE_EXTENSIONS)
        depths = _image_files(base / depth_dir, IMAGE_EXTENSIONS + (".npy",))
        self.entries = self._pair(rgbs, depths, base)
        self._require_entries()

    def _pair(self, rgbs, depths, base):
        by_stem = {p.stem: p for p in depths}
        if any(p.stem in by_stem for p in rgbs):
            keys_rgb = {p: p.stem for p in rgbs}
            keyed_depth = by_stem
        else:
            keys_rgb = {p: _number_key(p.stem) for p in rgbs}
            keyed_depth = {}
            for p in depths:
                key = _number_key(p.stem)
                if key is None or key in keyed_depth:
                    raise DataError(f"{base}: cannot pair files by stem or number ({p.name} is ambiguous).")
                keyed_depth[key] = p
            if len(set(keys_rgb.values())) != len(rgbs) or None in keys_rgb.values():
                raise DataError(f"{base}: cannot pair RGB files by stem or number (duplicate or missing numbers).")
        entries, unpaired = [], []
        for p in rgbs:
            depth = keyed_depth.get(keys_rgb[p])
            if depth is None:
                unpaired.append(str(p))
            else:
                entries.append(PairEntry(p, depth, None, None, str(p.relative_to(base))))
        used = {e.depth for e in entries}
        unpaired += [str(p) for p in depths if p not in used]
        if unpaired:
            shown = "\n  ".join(unpaired[:MISSING_SHOWN])
            raise DataError(f"{base}: {len(unpaired)} file(s) without a partner:\n  {shown}")
        return entries


def _image_files(folder, extensions):
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in extensions)
