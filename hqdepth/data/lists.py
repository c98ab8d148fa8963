"""The `list` source: `list:FILE@ROOT`, HQMD `rgb depth` and BTS `rgb depth focal` list files."""

from pathlib import Path

from hqdepth.data.base import register_source
from hqdepth.data.common import (
    NYU_FOCAL, as_bool, as_choice, as_float, merge_options, require_path, split_argument, with_split)
from hqdepth.data.pair_source import FileReader, PairEntry, PairSource, is_none, parse_focal, read_text_lines
from hqdepth.errors import ConfigError, DataError

_LIST_OPTIONS = ("format", "dataset", "scale", "bits", "depth_root", "strip_prefix", "check_files", "kb_crop")
_DATASET_SCALE = {"nyu": 1000.0, "kitti": 256.0}


@register_source("list")
class ListSource(PairSource):
    """Whitespace-separated list file: `rgb depth` (HQMD, depth PNG / 256) or `rgb depth focal` (BTS).

    Options: format = auto | hqmd | bts (auto: 2 columns -> hqmd, 3 -> bts); dataset = nyu | kitti
    (BTS depth scale 1000 / 256); scale (stored value per metre, overrides the default); bits = 16 | 8 | any;
    depth_root (folder of the depth paths, default ROOT: BTS KITTI keeps them apart); strip_prefix
    (removed from every path, for lists with absolute author paths); check_files (default true);
    kb_crop (KITTI benchmark crop at read time). Lines whose depth is `None` are skipped and counted.
    Blank lines and lines starting with '#' are ignored.
    """

    default_format = "auto"
    default_dataset = None

    def __init__(self, argument, split="train", **options):
        super().__init__()
        path, root, spec_options = split_argument(argument)
        options = merge_options(self.kind, spec_options, options, _LIST_OPTIONS)
        self.listing = Path(with_split(require_path(self.kind, path, "FILE@ROOT"), split))
        self.root = Path(root) if root else self.listing.parent
        self.depth_root = Path(options["depth_root"]) if "depth_root" in options else self.root
        self.depth_root_given = "depth_root" in options
        self.strip_prefix = options.get("strip_prefix")
        self.format = as_choice("format", options.get("format", self.default_format), ("auto", "hqmd", "bts"))
        dataset = options.get("dataset", self.default_dataset)
        self.dataset = as_choice("dataset", dataset, tuple(_DATASET_SCALE)) if dataset else None
        self.bits = as_choice("bits", options.get("bits", "16"), ("16", "8", "any"))
        self.crop_kb = as_bool("kb_crop", options.get("kb_crop", False))
        self._explicit_scale = as_float("scale", options["scale"]) if "scale" in options else None
        self.reader = FileReader(self.root)
        self._parse(read_text_lines(self.listing))
        self._require_entries()
        if as_bool("check_files", options.get("check_files", True)):
            self._check_files()

    def _scale_for(self, fmt, where):
        if self._explicit_scale is not None:
            return self._explicit_scale
        if self.dataset:
            return _DATASET_SCALE[self.dataset]
        if fmt == "hqmd":
            return 256.0
        raise ConfigError(
            f"{where}: BTS-format list (rgb depth focal) needs the depth encoding: "
            "dataset=nyu (value / 1000), dataset=kitti (value / 256) or scale=VALUE_PER_METRE."
        )

    def _parse_line(self, fields, where):
        """-> (rgb, depth or None, focal or None, format) for one list line."""
        if len(fields) == 2:
            return fields[0], fields[1], None, "hqmd"
        if len(fields) == 3:
            return fields[0], fields[1], parse_focal(fields[2], where), "bts"
        raise DataError(f"{where}: expected 2 columns (rgb depth) or 3 (rgb depth focal), found {len(fields)}.")

    def _parse(self, lines):
        seen_format = None
        for number, line in enumerate(lines, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            where = f"{self.listing}:{number}"
            rgb, depth, focal, fmt = self._parse_line(text.split(), where)
            if self.format != "auto" and fmt != self.format:
                raise DataError(f"{where}: line is in {fmt} format but format={self.format} was requested.")
            if seen_format is None:
                seen_format = fmt
                self.scale = self._scale_for(fmt, where)
            elif fmt != seen_format:
                raise DataError(f"{where}: line is in {fmt} format, earlier lines are {seen_format}.")
            if is_none(depth):
                self.without_ground_truth.append(where)
                continue
            if Path(rgb).is_absolute() or Path(depth).is_absolute():
                self.absolute_paths = True
            self.entries.append(
                PairEntry(
                    rgb=self.reader.resolve(rgb, self.root, self.strip_prefix),
                    depth=self.reader.resolve(depth, self.depth_root, self.strip_prefix),
                    focal=focal if focal is not None else self._default_focal(),
                    line=number,
                    id=rgb,
                )
            )
        self.format_found = seen_format

    def _default_focal(self):
        return NYU_FOCAL if self.dataset == "nyu" else None

    def _missing_hint(self, kinds):
        """Also: depth files looked for under ROOT because no depth_root= was given."""
        hint = super()._missing_hint(kinds)
        if "depth" in kinds and not self.depth_root_given:
            hint += f"\n(depth paths are joined to ROOT {self.root}: set depth_root=FOLDER where they are elsewhere)"
        return hint
