"""Fuzzed readers: every reader of hqdepth.data fed hundreds of corrupted files.

Each variant (truncation, flipped bytes, zeroed run, inserted or deleted bytes, plus wrong bit depths,
NaN/inf, wrong sizes and wrong types where the format has them) must end in one of:

- a `DataError` (or `ConfigError` for a list file) whose message names the damaged file;
- the original values (the damage hit bytes the format ignores or a checksum-protected copy);
- for formats without a checksum on their pixel data (JPEG entropy data, TIFF strips, `.npy` and HDF5
  raw data, the text of list files) a *different but well-formed* result: same size as its pair,
  uint8 RGB, finite non-negative depth. No reader can tell such a change from real content, so the
  test accepts it only for those formats and counts it (the count is printed with -s).

Never an exception of another type, a crash or a hang: a watchdog (faulthandler) aborts a hung test
with the stacks, and the HDF5 library (C code) is fuzzed in a subprocess so a crash there fails the
test instead of ending the session. Corruptions are drawn from HQDEPTH_TEST_SEED (replayable).
The pipeline's `skip_bad` counting of the same errors is tested at the end.
"""

import collections
import faulthandler
import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from hqdepth.data import open_source
from hqdepth.errors import ConfigError, DataError
from png_encoder import png_bytes

VARIANTS = int(os.environ.get("HQDEPTH_FUZZ_VARIANTS", "200"))
H, W = 12, 16


@pytest.fixture(autouse=True)
def _watchdog():
    """A hang in a reader fails with every thread's stack instead of blocking the suite."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def corruptions(data, rng, count=VARIANTS):
    """`count` damaged copies of `data`: (kind, bytes, first changed offset), kinds in rotation."""
    data = bytes(data)
    for number in range(count):
        kind = ("truncate", "flip", "zero", "insert", "delete")[number % 5]
        buffer = bytearray(data)
        position = int(rng.integers(0, len(data)))
        if kind == "truncate":
            yield kind, data[:position], position
            continue
        if kind == "flip":
            positions = sorted(int(p) for p in rng.integers(0, len(data), int(rng.integers(1, 5))))
            for p in positions:
                buffer[p] ^= int(rng.integers(1, 256))
            yield kind, bytes(buffer), positions[0]
            continue
        length = int(rng.integers(1, 17))
        if kind == "zero":
            buffer[position:position + length] = bytes(len(buffer[position:position + length]))
        elif kind == "insert":
            buffer[position:position] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        else:
            del buffer[position:position + length]
        yield kind, bytes(buffer), position


class Tally:
    """Outcomes of one reader's variants; `fail` keeps the first few problems with the variant."""

    def __init__(self, name):
        self.name, self.counts, self.problems = name, collections.Counter(), []

    def fail(self, message):
        if len(self.problems) < 5:
            self.problems.append(message)

    def check(self):
        print(f"{self.name}: {dict(self.counts)}")
        assert not self.problems, f"{self.name}:\n" + "\n".join(self.problems)
        assert sum(self.counts.values()) >= VARIANTS


def run_variant(tally, label, read, named, original, changed_ok, errors=(DataError,)):
    """Classify one variant: `read()` -> result compared with `original` (a list of (rgb, depth) arrays)."""
    try:
        result = read()
    except errors as error:
        if not any(name in str(error) for name in named):
            tally.fail(f"{label}: {type(error).__name__} does not name {named[0]}: {error}")
        tally.counts["error"] += 1
        return
    except Exception as error:  # noqa: BLE001 - the point of the test
        tally.fail(f"{label}: {type(error).__name__} (not a DataError): {error}")
        tally.counts["other exception"] += 1
        return
    if len(result) == len(original) and all(
            np.array_equal(a, b) for pair, pair0 in zip(result, original) for a, b in zip(pair, pair0)):
        tally.counts["same"] += 1
        return
    problems = [f"sample {i}: {problem}" for i, (rgb, depth) in enumerate(result) for problem in malformed(rgb, depth)]
    if problems:
        tally.fail(f"{label}: malformed sample returned: {problems[0]}")
    elif not changed_ok:
        tally.fail(f"{label}: silently changed values (the format has a checksum; this must be an error)")
    tally.counts["changed, well-formed" if not problems else "malformed"] += 1


def malformed(rgb, depth):
    rgb, depth = np.asarray(rgb), np.asarray(depth)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        yield f"rgb {rgb.dtype} {rgb.shape}"
    if depth.dtype != np.float32 or depth.ndim != 3 or depth.shape[2] != 1:
        yield f"depth {depth.dtype} {depth.shape}"
    elif rgb.shape[:2] != depth.shape[:2]:
        yield f"rgb {rgb.shape} / depth {depth.shape}"
    elif not (np.all(np.isfinite(depth)) and np.all(depth >= 0)):
        yield "non-finite or negative depth"


def samples(source):
    return [(s.rgb, s.depth) for s in (source[i] for i in range(len(source)))]


# ------------------------------------------------------------------------------- pair files


@pytest.fixture
def pair_files(tmp_path, rng):
    """One pair per depth encoding, and list/CSV files naming them."""
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 9.0, (H, W)).astype(np.float32)
    depth[0, 0] = 0.0
    files = {"rgb.png": png_bytes(rgb), "depth16.png": png_bytes(np.round(depth * 1000).astype(np.uint16))}
    import cv2

    files["rgb.jpg"] = cv2.imencode(".jpg", rgb[:, :, ::-1])[1].tobytes()
    files["depth16.tiff"] = cv2.imencode(".tiff", np.round(depth * 1000).astype(np.uint16))[1].tobytes()
    npy = io.BytesIO()
    np.save(npy, depth)
    files["depth.npy"] = npy.getvalue()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path, files, rgb, depth


@pytest.mark.parametrize("target, rgb_file, depth_file, spec, changed_ok", [
    ("rgb.png", "rgb.png", "depth16.png", "list:{dir}/list.txt@{dir}?dataset=nyu", False),   # PNG: CRC + zlib
    ("rgb.jpg", "rgb.jpg", "depth16.png", "list:{dir}/list.txt@{dir}?dataset=nyu", True),    # JPEG: no checksum
    ("depth16.png", "rgb.png", "depth16.png", "list:{dir}/list.txt@{dir}?dataset=nyu", False),
    ("depth16.tiff", "rgb.png", "depth16.tiff", "list:{dir}/list.txt@{dir}?dataset=nyu", True),  # TIFF: none
    ("depth.npy", "rgb.png", "depth.npy", "csv:{dir}/list.csv?scale=1&bits=any", True),      # .npy: none
])
def test_corrupt_image_and_depth_files(pair_files, rng, target, rgb_file, depth_file, spec, changed_ok):
    folder, files, _, _ = pair_files
    (folder / "list.txt").write_text(f"{rgb_file} {depth_file} 518.8579\n")
    (folder / "list.csv").write_text(f"rgb,depth\n{rgb_file},{depth_file}\n")
    source = open_source(spec.format(dir=folder), "train")
    original = samples(source)
    tally = Tally(target)
    path = folder / target
    for kind, data, first in corruptions(files[target], rng):
        path.write_bytes(data)
        # A change is acceptable only where the format has no checksum and the damage is past the header.
        run_variant(tally, f"{kind} at byte {first}", lambda: samples(source), [str(path)], original,
                    changed_ok and kind != "truncate")
    path.write_bytes(files[target])
    tally.check()


def test_depth_of_the_wrong_kind_is_refused(pair_files):
    """Wrong bit depth, NaN/inf, negative values, wrong sizes and dtypes: each a DataError naming the file."""
    folder, files, rgb, depth = pair_files
    (folder / "list.txt").write_text("rgb.png bad.png 518.8579\n")
    (folder / "list.csv").write_text("rgb,depth\nrgb.png,bad.npy\n")
    (folder / "bad.png").write_bytes(files["depth16.png"])
    (folder / "bad.npy").write_bytes(files["depth.npy"])
    png_source = open_source(f"list:{folder}/list.txt@{folder}?dataset=nyu", "train")
    npy_source = open_source(f"csv:{folder}/list.csv?scale=1&bits=any", "train")
    millimetres = np.round(depth * 1000).astype(np.uint16)
    wrong_png = {
        "8-bit depth": png_bytes((depth * 20).astype(np.uint8)),
        "16-bit RGB depth": png_bytes(np.stack([millimetres, millimetres // 2, millimetres], axis=2)),
        "wrong size": png_bytes(millimetres[:, :-1]),
        "empty file": b"",
        "an RGB image": files["rgb.png"],
    }
    for label, data in wrong_png.items():
        (folder / "bad.png").write_bytes(data)
        with pytest.raises(DataError, match="bad.png"):
            samples(png_source)
    wrong_npy = {"NaN": np.where(depth > 5, np.nan, depth).astype(np.float32), "inf": np.full((H, W), np.inf, np.float32),
                 "negative": -depth, "wrong size": depth[:-2], "3-D": np.stack([depth] * 2, axis=2),
                 "int64": depth.astype(np.int64), "complex": depth.astype(np.complex64), "bool": depth > 1,
                 "object": np.array([[None] * W] * H, dtype=object), "0-d": np.float32(1.0), "empty": np.zeros((0, W))}
    for label, array in wrong_npy.items():
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=True)
        (folder / "bad.npy").write_bytes(buffer.getvalue())
        with pytest.raises(DataError, match="bad.npy"):
            samples(npy_source)


@pytest.mark.parametrize("kind", ["list", "csv"])
def test_corrupt_list_and_csv_files(pair_files, rng, kind):
    """List files have no checksum: a damaged list either fails naming the list (or a file it names) or is
    another well-formed list whose every sample reads or fails with a DataError."""
    folder, _, _, _ = pair_files
    for i in range(3):
        for name in ("rgb.png", "depth16.png"):
            (folder / f"{i}{name}").write_bytes((folder / name).read_bytes())
    if kind == "list":
        text = "".join(f"{i}rgb.png {i}depth16.png 518.8579\n" for i in range(3))
        listing, spec = folder / "list.txt", f"list:{folder}/list.txt@{folder}?dataset=nyu"
    else:
        text = "rgb,depth,focal\n" + "".join(f"{i}rgb.png,{i}depth16.png,518.8579\n" for i in range(3))
        listing, spec = folder / "list.csv", f"csv:{folder}/list.csv?scale=1000"
    tally = Tally(f"{kind} file")
    for variant, data, first in corruptions(text.encode(), rng):
        listing.write_bytes(data)

        def read():
            source = open_source(spec, "train")
            return samples(source)

        run_variant(tally, f"{variant} at byte {first}: {data!r}", read, [str(listing), str(folder)], [], True,
                    errors=(DataError, ConfigError))
    tally.check()


# ------------------------------------------------------------------------------ containers


def test_corrupt_densedepth_zip(tmp_path, rng):
    """Zip members are CRC-checked: a damaged nyu_data.zip is read exactly or fails naming the zip."""
    members = {}
    lines = []
    for i in range(2):
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        members[f"data/nyu2_train/s/{i}.jpg"] = png_bytes(rgb)  # PNG bytes under a .jpg name, as decode sniffs
        members[f"data/nyu2_train/s/{i}.png"] = png_bytes(rng.integers(1, 256, (H, W), dtype=np.uint8))
        lines.append(f"data/nyu2_train/s/{i}.jpg,data/nyu2_train/s/{i}.png")
    members["data/nyu2_train.csv"] = ("\n".join(lines) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    path = tmp_path / "nyu_data.zip"
    path.write_bytes(buffer.getvalue())
    original = samples(open_source(f"densedepth:{path}", "train"))
    tally = Tally("densedepth zip")
    for kind, data, first in corruptions(buffer.getvalue(), rng):
        path.write_bytes(data)
        run_variant(tally, f"{kind} at byte {first}", lambda: samples(open_source(f"densedepth:{path}", "train")),
                    [str(path)], original, False)
    tally.check()


def test_corrupt_tfrecord_shard(tmp_path, rng):
    """Records carry CRCs and PNG payloads: a damaged shard is read exactly or fails naming the shard."""
    from hqdepth.data import tools

    out = tmp_path / "shards"
    tools.convert("synthetic:3,size=12x16", out, shard_size=3, depth_scale=1000.0)
    shard = next(out.glob("*.tfrecord"))
    clean = shard.read_bytes()
    original = samples(open_source(f"tfrecord:{out}", "train"))
    tally = Tally("tfrecord shard")
    for kind, data, first in corruptions(clean, rng):
        shard.write_bytes(data)
        run_variant(tally, f"{kind} at byte {first}", lambda: samples(open_source(f"tfrecord:{out}", "train")),
                    [str(shard)], original, False)
    tally.check()


NYU_FUZZ = r"""
import io, json, sys
import numpy as np
sys.path.insert(0, sys.argv[3])
from test_fuzz_readers import Tally, corruptions, run_variant, samples
from hqdepth.data import open_source
path = sys.argv[1]
rng = np.random.default_rng(int(sys.argv[2]))
clean = open(path, "rb").read()
original = samples(open_source(f"nyu-mat:{path}", "all"))
tally = Tally("nyu .mat")
for kind, data, first in corruptions(clean, rng):
    open(path, "wb").write(data)
    # HDF5 (superblock v0, as MATLAB writes it) has no checksums: raw pixel data can change undetected.
    run_variant(tally, f"{kind} at byte {first}", lambda: samples(open_source(f"nyu-mat:{path}", "all")), [path],
                original, kind != "truncate")
open(path, "wb").write(clean)
print(json.dumps({"counts": dict(tally.counts), "problems": tally.problems}))
"""


def test_corrupt_nyu_mat(tmp_path, test_seed):
    """NYU labeled .mat (HDF5) in a subprocess: a crash of the HDF5 library fails this test only."""
    import h5py

    rng = np.random.default_rng(test_seed)
    path = tmp_path / "nyu_depth_v2_labeled.mat"
    with h5py.File(path, "w") as mat:  # h5py sees MATLAB's arrays reversed: (N, 3, W, H), (N, W, H)
        mat["images"] = rng.integers(0, 256, (2, 3, W, H), dtype=np.uint8)
        mat["depths"] = rng.uniform(0.5, 9.0, (2, W, H)).astype(np.float32)
        mat["rawDepths"] = rng.uniform(0.0, 9.0, (2, W, H)).astype(np.float32)
    done = subprocess.run([sys.executable, "-c", NYU_FUZZ, str(path), str(test_seed), os.path.dirname(__file__)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HQDEPTH_FUZZ_VARIANTS": str(VARIANTS), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print("nyu .mat:", report["counts"])
    assert not report["problems"], "\n".join(report["problems"])
    assert sum(report["counts"].values()) >= VARIANTS


# ---------------------------------------------------------------------------- through the pipeline


def test_skip_bad_counts_fuzzed_files_in_the_pipeline(pair_files, rng):
    """The same damage inside a training pipeline: without skip_bad the first bad file stops it with the
    file named; with skip_bad every bad sample is dropped and counted, the good ones come through."""
    import tensorflow as tf

    from hqdepth.data import load

    from hqdepth.data.sources import decode_depth

    folder, files, _, _ = pair_files
    bad, lines = 0, []
    for i, (kind, data, first) in enumerate(corruptions(files["depth16.png"], rng, 40)):
        (folder / f"d{i}.png").write_bytes(data)
        (folder / f"r{i}.png").write_bytes(files["rgb.png"])
        lines.append(f"r{i}.png d{i}.png 518.8579")
        try:
            decode_depth(data, "x", 1000.0)
        except DataError:
            bad += 1
    (folder / "fuzz.txt").write_text("\n".join(lines) + "\n")
    spec = f"list:{folder}/fuzz.txt@{folder}?dataset=nyu"
    assert bad > 0
    with pytest.raises(tf.errors.OpError, match=r"d\d+\.png"):
        list(load(spec, "train", "none", 4, shuffle=False))
    dataset = load(spec, "train", "none", 4, shuffle=False, skip_bad=True)
    good = sum(int(image.shape[0]) for image, _ in dataset)
    assert dataset.bad_records.total == bad and good == 40 - bad
