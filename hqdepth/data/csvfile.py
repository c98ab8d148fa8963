"""The `csv` source: `csv:FILE[@ROOT]`, comma-separated `rgb,depth[,focal]` rows."""

from pathlib import Path

from hqdepth.data.base import register_source
from hqdepth.data.common import as_bool, as_choice, merge_options, require_path, split_argument, with_split
from hqdepth.data.pair_source import (
    FileReader, PairEntry, PairSource, csv_rows, is_none, need_scale, parse_focal, read_text_lines)
from hqdepth.errors import DataError

_PAIR_OPTIONS = ("scale", "bits", "check_files", "kb_crop")


@register_source("csv")
class CsvSource(PairSource):
    """Comma-separated `rgb,depth[,focal]` rows (header line optional), paths relative to ROOT
    (default: the CSV's folder). Options: scale (required), bits = 16 | 8 | any, check_files, kb_crop."""

    def __init__(self, argument, split="train", **options):
        super().__init__()
        path, root, spec_options = split_argument(argument)
        options = merge_options(self.kind, spec_options, options, _PAIR_OPTIONS)
        self.listing = Path(with_split(require_path(self.kind, path, "FILE"), split))
        self.scale = need_scale(self.kind, options)
        self.bits = as_choice("bits", options.get("bits", "16"), ("16", "8", "any"))
        self.crop_kb = as_bool("kb_crop", options.get("kb_crop", False))
        self.root = Path(root) if root else self.listing.parent
        self.reader = FileReader(self.root)
        for number, fields in csv_rows(self.listing, read_text_lines(self.listing)):
            where = f"{self.listing}:{number}"
            if len(fields) not in (2, 3):
                raise DataError(f"{where}: expected 2 columns (rgb,depth) or 3 (rgb,depth,focal), found {len(fields)}.")
            if is_none(fields[1]):
                self.without_ground_truth.append(where)
                continue
            focal = parse_focal(fields[2], where) if len(fields) == 3 and not is_none(fields[2]) else None
            self.entries.append(
                PairEntry(self.reader.resolve(fields[0]), self.reader.resolve(fields[1]), focal, number, fields[0])
            )
        self._require_entries()
        if as_bool("check_files", options.get("check_files", True)):
            self._check_files()
