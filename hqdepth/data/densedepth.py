"""The `densedepth` source: `densedepth:PATH`, DenseDepth / Hu et al. `nyu_data.zip` or its extracted folder."""

from pathlib import Path

import numpy as np

from hqdepth.data.base import register_source
from hqdepth.data.common import NYU_FOCAL, as_bool, decode_depth_raw, merge_options, require_path, split_argument
from hqdepth.data.pair_source import FileReader, PairEntry, PairSource, ZipReader, csv_rows
from hqdepth.errors import ConfigError, DataError

TRAIN_DEPTH_STEP = 10.0 / 255.0  # metres per level of the 8-bit training depth PNGs (0..255 <-> 0..10 m)


@register_source("densedepth")
class DenseDepthSource(PairSource):
    """DenseDepth / Hu et al. `nyu_data.zip` (or the folder it extracts to), read through its CSVs.

    split train -> data/nyu2_train.csv, test -> data/nyu2_test.csv (option csv= names another CSV inside
    the zip/folder, or a CSV file on disk). Paths in the CSV are relative to the zip root / folder.
    Depth: 8-bit PNG -> value / 255 * 10 m (training set), 16-bit PNG -> value / 1000 m (test set).
    Zip members are read one at a time; the zip is never loaded whole.
    """

    CSV_NAMES = {"train": "nyu2_train.csv", "test": "nyu2_test.csv"}

    def __init__(self, argument, split="train", **options):
        super().__init__()
        path, _, spec_options = split_argument(argument)
        options = merge_options(self.kind, spec_options, options, ("csv", "check_files"))
        path = Path(require_path(self.kind, path, "PATH"))
        self.bits = "any"
        if not path.exists():
            raise DataError(f"{path}: DenseDepth data not found (expected nyu_data.zip or its extracted folder).")
        is_zip = path.is_file()
        self.reader = ZipReader(path) if is_zip else FileReader(path)
        csv_name = options.get("csv")
        if csv_name is None:
            if split not in self.CSV_NAMES:
                raise ConfigError(f"densedepth has splits train and test, not {split!r}.")
            csv_name = self.CSV_NAMES[split]
        text, self.listing = self._find_csv(path, is_zip, csv_name)
        for number, fields in csv_rows(self.listing, text.splitlines()):
            where = f"{self.listing}:{number}"
            if len(fields) != 2:
                raise DataError(f"{where}: expected 2 columns (rgb_path,depth_path), found {len(fields)}.")
            self.entries.append(PairEntry(self.reader.resolve(fields[0]), self.reader.resolve(fields[1]), NYU_FOCAL, number, fields[0]))
        self._require_entries()
        if as_bool("check_files", options.get("check_files", True)):
            self._check_files()

    def _find_csv(self, path, is_zip, csv_name):
        candidates = [csv_name, f"data/{csv_name}"]
        if is_zip:
            names = self.reader.names
            found = next((c for c in candidates if c in names), None)
            if found is None:
                found = next((n for n in sorted(names) if n.endswith("/" + csv_name)), None)
            if found is None:
                raise DataError(f"{path}: no {csv_name} in the zip (looked for {', '.join(candidates)}).")
            try:
                text = self.reader.read(found).decode("utf-8-sig")
            except (OSError, UnicodeDecodeError) as error:
                raise DataError(f"{path}!{found}: cannot read CSV ({error}).") from None
            return text, f"{path}!{found}"
        on_disk = [path / c for c in candidates] + [Path(csv_name)]
        found = next((p for p in on_disk if p.is_file()), None)
        if found is None:
            raise DataError(f"{path}: no {csv_name} (looked for {', '.join(str(p) for p in on_disk)}).")
        return found.read_text(encoding="utf-8-sig"), found

    def decode_depth(self, data, entry):
        where = self._where(entry, "depth", entry.depth)
        raw = decode_depth_raw(data, where)
        if raw.dtype == np.uint8:  # training set: 0..255 <-> 0..10 m
            return (raw.astype(np.float32) * np.float32(TRAIN_DEPTH_STEP))[:, :, None]
        if raw.dtype == np.uint16:  # test set: millimetres
            return (raw.astype(np.float32) / np.float32(1000.0))[:, :, None]
        raise DataError(f"{where}: {raw.dtype} depth; expected an 8-bit (train) or 16-bit (test) PNG.")
