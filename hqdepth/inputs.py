"""The input files of `hqdepth predict`: folders (optionally recursive), globs and files expanded to image
files with unique output names."""

import glob
from pathlib import Path

from hqdepth.errors import DataError
from hqdepth.images import IMAGE_SUFFIXES

_GLOB_CHARS = set("*?[")


def _is_image(path):
    return path.suffix.lower() in IMAGE_SUFFIXES


def collect_inputs(inputs, recursive=False):
    """Expand INPUT arguments: a folder gives its image files (sorted; subfolders with `recursive`, their
    relative path kept in the output name), a glob its matching image files, a file itself (whatever its
    suffix). Returns ([(path, output stem)], [(argument, problem)]); a folder without images raises."""
    found, problems, seen = [], [], set()

    def add(path, stem):
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append((path, stem))

    for argument in inputs:
        path = Path(argument)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(p for p in path.glob(pattern) if p.is_file() and _is_image(p))
            if not files:
                hint = "" if recursive or not any(p.is_dir() for p in path.iterdir()) else \
                    " (it has subfolders: add --recursive to include them)"
                raise DataError(f"folder {path} has no image files ({', '.join(IMAGE_SUFFIXES)}){hint}.")
            for file in files:
                add(file, file.relative_to(path).with_suffix("").as_posix())
        elif path.is_file():
            add(path, path.stem)
        elif _GLOB_CHARS & set(str(argument)):
            matches = sorted(Path(p) for p in glob.glob(str(argument), recursive=True))
            files = [p for p in matches if p.is_file() and _is_image(p)]
            if not files:
                problems.append((str(argument), "no image file matches this pattern"))
            for file in files:
                add(file, file.stem)
        else:
            problems.append((str(argument), "file not found"))
    # Different inputs with the same output name (a.jpg and a.png, or the same name in two folders).
    counts = {}
    for _, stem in found:
        counts[stem] = counts.get(stem, 0) + 1
    used, result = set(), []
    for path, stem in found:
        if counts[stem] > 1:
            stem = f"{stem}_{path.suffix.lstrip('.').lower() or 'file'}"
        base, number = stem, 2
        while stem in used:
            stem, number = f"{base}-{number}", number + 1
        used.add(stem)
        result.append((path, stem))
    return result, problems
