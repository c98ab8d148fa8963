"""File-based sources: every format is written here by an independent encoder and read back by value."""

import logging
import zipfile

import h5py
import numpy as np
import pytest
import scipy.io

from hqdepth.data import open_source
from hqdepth.data.sources import NYU_FOCAL, decode_depth, decode_rgb, split_argument
from hqdepth.errors import ConfigError, DataError
from png_encoder import png_bytes

RNG = np.random.default_rng(20240501)


# ----------------------------------------------------------------------------------------------
# Fixture writers (PNG bytes from png_encoder.py, not OpenCV, so a decoding bug cannot cancel itself out)


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def random_rgb(height=6, width=8):
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


def random_depth16(height=6, width=8, zeros=True):
    depth = RNG.integers(1, 65535, (height, width), dtype=np.uint16)
    if zeros:
        depth[0, :3] = 0
    return depth


def jpeg_bytes(rgb):
    import cv2

    ok, buffer = cv2.imencode(".jpg", rgb[:, :, ::-1])
    assert ok
    return buffer.tobytes()


# ----------------------------------------------------------------------------------------------
# SPEC grammar


def test_split_argument():
    assert split_argument("a/list.txt@/data/root?format=bts&scale=1000") == (
        "a/list.txt",
        "/data/root",
        {"format": "bts", "scale": "1000"},
    )
    assert split_argument("x.mat") == ("x.mat", None, {})
    assert split_argument("a@b@c") == ("a@b", "c", {})
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        split_argument("f?scale")


# ----------------------------------------------------------------------------------------------
# Decoders


def test_decode_rgb_converts_grey_rgba_and_channel_order():
    rgb = random_rgb()
    assert np.array_equal(decode_rgb(png_bytes(rgb), "x.png"), rgb)
    grey = rgb[:, :, 0]
    assert np.array_equal(decode_rgb(png_bytes(grey), "g.png"), np.stack([grey] * 3, axis=2))
    rgba = np.concatenate([rgb, RNG.integers(0, 256, (6, 8, 1), dtype=np.uint8)], axis=2)
    assert np.array_equal(decode_rgb(png_bytes(rgba), "a.png"), rgb)


def test_decode_depth_values_and_bit_checks(tmp_path):
    raw = random_depth16()
    depth = decode_depth(png_bytes(raw), "d.png", 256.0)
    assert depth.shape == (6, 8, 1) and depth.dtype == np.float32
    assert np.array_equal(depth[:, :, 0], raw.astype(np.float32) / np.float32(256.0))
    assert np.all(depth[0, :3] == 0)
    eight = RNG.integers(0, 256, (6, 8), dtype=np.uint8)
    with pytest.raises(DataError, match=r"d8\.png: 8-bit depth where 16-bit"):
        decode_depth(png_bytes(eight), "d8.png", 1000.0)
    assert np.allclose(decode_depth(png_bytes(eight), "d8.png", 25.5, bits="8")[:, :, 0], eight / 25.5)
    with pytest.raises(DataError, match="where 8-bit"):
        decode_depth(png_bytes(raw), "d.png", 1.0, bits="8")


def test_decode_depth_npy_nan_and_negative():
    import io

    def npy(array):
        buffer = io.BytesIO()
        np.save(buffer, array)
        return buffer.getvalue()

    metres = RNG.uniform(0.5, 9.0, (4, 5)).astype(np.float32)
    assert np.array_equal(decode_depth(npy(metres), "m.npy", 1.0, bits="any")[:, :, 0], metres)
    bad = metres.copy()
    bad[1, 1] = np.nan
    bad[2, 2] = np.inf
    with pytest.raises(DataError, match=r"m\.npy: depth contains 2 NaN/inf"):
        decode_depth(npy(bad), "m.npy", 1.0, bits="any")
    with pytest.raises(DataError, match="negative"):
        decode_depth(npy(-metres), "m.npy", 1.0, bits="any")


def test_decode_corrupt_and_truncated():
    with pytest.raises(DataError, match=r"bad\.png: cannot decode"):
        decode_rgb(b"not an image at all" * 10, "bad.png")
    png = png_bytes(random_depth16(30, 40))
    with pytest.raises(DataError, match="cannot decode depth"):
        decode_depth(png[: len(png) // 2], "half.png", 256.0)
    jpeg = jpeg_bytes(random_rgb(64, 64))
    with pytest.raises(DataError, match="half.jpg"):
        decode_rgb(jpeg[: len(jpeg) // 2], "half.jpg")
    with pytest.raises(DataError, match="empty.png"):
        decode_rgb(b"", "empty.png")


# ----------------------------------------------------------------------------------------------
# NYU labeled .mat (MATLAB v7.3 = HDF5, column-major axis order)


def write_nyu_mat(path, rgbs, depths, raw_depths):
    """As MATLAB v7.3 stores H x W x 3 x N / H x W x N arrays: h5py sees (N, 3, W, H) / (N, W, H)."""
    with h5py.File(path, "w", userblock_size=512) as handle:
        handle["images"] = np.stack(rgbs).transpose(0, 3, 2, 1)
        handle["depths"] = np.stack(depths).transpose(0, 2, 1)
        handle["rawDepths"] = np.stack(raw_depths).transpose(0, 2, 1)
    with open(path, "r+b") as handle:  # the MATLAB header in the user block, as real v7.3 files have
        handle.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .")
    return path


@pytest.fixture
def nyu_mat(tmp_path):
    count = 7
    rgbs = [random_rgb(6, 8) for _ in range(count)]
    depths = [RNG.uniform(0.5, 10.0, (6, 8)).astype(np.float32) for _ in range(count)]
    raws = [np.where(RNG.uniform(size=(6, 8)) < 0.3, 0, d).astype(np.float32) for d in depths]
    path = write_nyu_mat(tmp_path / "nyu_depth_v2_labeled.mat", rgbs, depths, raws)
    return path, rgbs, depths, raws


def test_nyu_mat_all_frames_filled_and_raw(nyu_mat):
    path, rgbs, depths, raws = nyu_mat
    source = open_source(f"nyu-mat:{path}", "all")
    assert len(source) == 7
    for i in (0, 3, 6):
        sample = source[i]
        assert sample.rgb.shape == (6, 8, 3) and sample.rgb.dtype == np.uint8
        assert np.array_equal(sample.rgb, rgbs[i])
        assert np.array_equal(sample.depth[:, :, 0], depths[i])
        assert sample.meta["focal"] == NYU_FOCAL and sample.meta["id"] == f"{i + 1:04d}"
    raw = open_source(f"nyu-mat:{path}?depth=raw", "all")
    assert np.array_equal(raw[2].depth[:, :, 0], raws[2])
    assert (raw[2].depth == 0).any()


def test_nyu_mat_official_split_is_one_based(nyu_mat, tmp_path):
    path, rgbs, depths, _ = nyu_mat
    splits = tmp_path / "my_splits.mat"
    scipy.io.savemat(splits, {"trainNdxs": np.array([[3], [4], [6]], np.uint16), "testNdxs": np.array([[1], [2], [5], [7]], np.uint16)})
    train = open_source(f"nyu-mat:{path}?splits={splits}", "train")
    test = open_source(f"nyu-mat:{path}", "test", splits=str(splits))
    assert len(train) == 3 and len(test) == 4
    assert np.array_equal(train[0].rgb, rgbs[2]) and train[0].meta["frame"] == 3
    assert np.array_equal(test[2].depth[:, :, 0], depths[4])
    with pytest.raises(ConfigError, match="splits.mat"):
        open_source(f"nyu-mat:{path}", "train")
    with pytest.raises(ConfigError, match="train, test and all"):
        open_source(f"nyu-mat:{path}?splits={splits}", "val")
    # splits.mat beside the .mat is found without the option
    scipy.io.savemat(path.parent / "splits.mat", {"trainNdxs": np.array([[7]]), "testNdxs": np.array([[1]])})
    assert np.array_equal(open_source(f"nyu-mat:{path}", "train")[0].rgb, rgbs[6])


def test_nyu_mat_bad_inputs(nyu_mat, tmp_path):
    path = nyu_mat[0]
    zero_based = tmp_path / "zero.mat"
    scipy.io.savemat(zero_based, {"trainNdxs": np.array([[0], [1]]), "testNdxs": np.array([[2]])})
    with pytest.raises(DataError, match=r"outside 1\.\.7"):
        open_source(f"nyu-mat:{path}?splits={zero_based}", "train")
    v5 = tmp_path / "old.mat"
    scipy.io.savemat(v5, {"images": np.zeros((2, 2))})
    with pytest.raises(DataError, match="v7.3"):
        open_source(f"nyu-mat:{v5}", "all")
    with pytest.raises(DataError, match="does not exist"):
        open_source(f"nyu-mat:{tmp_path / 'nope.mat'}", "all")
    with pytest.raises(ConfigError, match="Unknown option"):
        open_source(f"nyu-mat:{path}?deph=raw", "all")


# ----------------------------------------------------------------------------------------------
# DenseDepth nyu_data.zip


@pytest.fixture
def densedepth_zip(tmp_path):
    train = [(f"data/nyu2_train/living_room_0038_out/{i}", random_rgb(), RNG.integers(0, 256, (6, 8), dtype=np.uint8)) for i in range(3)]
    test = [(f"data/nyu2_test/{i:05d}", random_rgb(), random_depth16(zeros=False)) for i in (0, 1, 8)]
    path = tmp_path / "nyu_data.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data/nyu2_train.csv", "".join(f"{p}.jpg,{p}.png\n" for p, _, _ in train))
        archive.writestr("data/nyu2_test.csv", "rgb_path,depth_path\n" + "".join(f"{p}_colors.png,{p}_depth.png\n" for p, _, _ in test))
        for p, rgb, depth in train:
            archive.writestr(f"{p}.jpg", png_bytes(rgb))  # PNG bytes under .jpg: decoders look at content
            archive.writestr(f"{p}.png", png_bytes(depth))
        for p, rgb, depth in test:
            archive.writestr(f"{p}_colors.png", png_bytes(rgb))
            archive.writestr(f"{p}_depth.png", png_bytes(depth))
    return path, train, test


def test_densedepth_zip_train_8bit_and_test_16bit(densedepth_zip, tmp_path):
    path, train, test = densedepth_zip
    source = open_source(f"densedepth:{path}", "train")
    assert len(source) == 3
    sample = source[1]
    assert np.array_equal(sample.rgb, train[1][1])
    assert np.allclose(sample.depth[:, :, 0], train[1][2] / 255.0 * 10.0, rtol=1e-6, atol=0)
    assert sample.meta["id"] == "data/nyu2_train/living_room_0038_out/1.jpg"
    test_source = open_source(f"densedepth:{path}", "test")  # CSV with a header line
    assert len(test_source) == 3
    assert np.array_equal(test_source[2].depth[:, :, 0], test[2][2].astype(np.float32) / np.float32(1000.0))
    # the extracted folder reads the same
    folder = tmp_path / "extracted"
    with zipfile.ZipFile(path) as archive:
        archive.extractall(folder)
    same = open_source(f"densedepth:{folder}", "test")[2]
    assert np.array_equal(same.depth, test_source[2].depth) and np.array_equal(same.rgb, test_source[2].rgb)


def test_densedepth_reads_members_lazily(densedepth_zip, monkeypatch):
    path, _, _ = densedepth_zip
    source = open_source(f"densedepth:{path}", "test")
    read = []
    original = zipfile.ZipFile.read
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda self, name, pwd=None: read.append(name) or original(self, name, pwd))
    source[1]
    assert read == ["data/nyu2_test/00001_colors.png", "data/nyu2_test/00001_depth.png"]


def test_densedepth_missing_member_is_reported_with_line(tmp_path):
    path = tmp_path / "nyu_data.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data/nyu2_train.csv", "data/a.jpg,data/a.png\ndata/b.jpg,data/b.png\n")
        archive.writestr("data/a.jpg", png_bytes(random_rgb()))
        archive.writestr("data/a.png", png_bytes(random_depth16()))
        archive.writestr("data/b.jpg", png_bytes(random_rgb()))
    with pytest.raises(DataError, match=r"nyu2_train\.csv:2: depth .*data/b\.png"):
        open_source(f"densedepth:{path}", "train")
    with pytest.raises(DataError, match="no nyu2_test.csv"):
        open_source(f"densedepth:{path}", "test")


# ----------------------------------------------------------------------------------------------
# list: HQMD and BTS formats


def make_pairs(root, names, height=6, width=8, rgb_ext=".png"):
    pairs = []
    for name in names:
        rgb, depth = random_rgb(height, width), random_depth16(height, width)
        if rgb_ext == ".jpg":  # JPEG is lossy: a flat colour per image survives it and shows the channel order
            rgb = np.broadcast_to(RNG.integers(20, 236, 3, dtype=np.uint8), rgb.shape).copy()
        rgb_path = f"{name}/rgb{rgb_ext}"
        write(root / rgb_path, png_bytes(rgb) if rgb_ext == ".png" else jpeg_bytes(rgb))
        write(root / f"{name}/depth.png", png_bytes(depth))
        pairs.append((rgb_path, f"{name}/depth.png", rgb, depth))
    return pairs


def test_list_hqmd_format(tmp_path):
    root = tmp_path / "data"
    pairs = make_pairs(root, ["test654/001", "test654/002"])
    listing = write(tmp_path / "test_654.txt", "".join(f"{r} {d}\n" for r, d, _, _ in pairs).encode())
    source = open_source(f"list:{listing}@{root}", "test")
    assert len(source) == 2 and source.format_found == "hqmd"
    sample = source[1]
    assert np.array_equal(sample.rgb, pairs[1][2])
    assert np.array_equal(sample.depth[:, :, 0], pairs[1][3].astype(np.float32) / np.float32(256.0))
    assert "focal" not in sample.meta
    # absolute author paths are remapped with strip_prefix
    author = "/home/someone/NYU_Depth_V2/nyu_depth_v2/"
    listing2 = write(tmp_path / "abs.txt", "".join(f"{author}{r} {author}{d}\n" for r, d, _, _ in pairs).encode())
    with pytest.raises(DataError, match="strip_prefix"):
        open_source(f"list:{listing2}@{root}")
    remapped = open_source(f"list:{listing2}@{root}?strip_prefix={author}")
    assert np.array_equal(remapped[0].rgb, pairs[0][2])


def test_list_bts_format_nyu_and_kitti(tmp_path):
    root = tmp_path / "sync"
    pairs = make_pairs(root, ["bathroom/a", "bathroom/b", "kitchen/c"], rgb_ext=".jpg")
    lines = [
        f"/{pairs[0][0]} /{pairs[0][1]} 518.8579",  # BTS lists may start paths with '/'
        f"{pairs[1][0]} None 518.8579",
        "",
        "# comment",
        f"{pairs[2][0]} {pairs[2][1]} 518.8579",
    ]
    listing = write(tmp_path / "{split}_files_with_gt.txt".replace("{split}", "train"), "\n".join(lines).encode())
    source = open_source(f"list:{tmp_path}/{{split}}_files_with_gt.txt@{root}?dataset=nyu", "train")
    assert len(source) == 2 and source.skipped == 1 and source.format_found == "bts"
    sample = source[1]
    assert sample.meta["focal"] == pytest.approx(518.8579)
    assert np.array_equal(sample.depth[:, :, 0], pairs[2][3].astype(np.float32) / np.float32(1000.0))
    assert np.abs(sample.rgb.astype(int) - pairs[2][2]).max() <= 3  # JPEG, lossy
    kitti = open_source(f"list:{listing}@{root}?dataset=kitti")
    assert np.array_equal(kitti[0].depth[:, :, 0], pairs[0][3].astype(np.float32) / np.float32(256.0))
    explicit = open_source(f"list:{listing}@{root}", scale=100)
    assert np.array_equal(explicit[0].depth[:, :, 0], pairs[0][3].astype(np.float32) / np.float32(100.0))
    with pytest.raises(ConfigError, match="dataset=nyu"):
        open_source(f"list:{listing}@{root}")


def test_list_depth_root_separate(tmp_path):
    rgb, depth = random_rgb(), random_depth16()
    write(tmp_path / "raw/2011_09_26/x/image_02/data/0000000005.png", png_bytes(rgb))
    write(tmp_path / "gt/x/proj_depth/groundtruth/image_02/0000000005.png", png_bytes(depth))
    listing = write(
        tmp_path / "l.txt",
        b"2011_09_26/x/image_02/data/0000000005.png x/proj_depth/groundtruth/image_02/0000000005.png 721.5377\n",
    )
    source = open_source(f"list:{listing}@{tmp_path / 'raw'}?dataset=kitti&depth_root={tmp_path / 'gt'}")
    assert source[0].meta["focal"] == pytest.approx(721.5377)
    assert np.array_equal(source[0].depth[:, :, 0], depth / np.float32(256.0))


def test_list_errors_name_file_and_line(tmp_path):
    root = tmp_path / "d"
    pairs = make_pairs(root, ["a"])
    ok = f"{pairs[0][0]} {pairs[0][1]}"
    lines = [ok] + [f"missing{i}.png {pairs[0][1]}" for i in range(7)]
    listing = write(tmp_path / "l.txt", "\n".join(lines).encode())
    with pytest.raises(DataError) as info:
        open_source(f"list:{listing}@{root}")
    message = str(info.value)
    assert "7 file(s)" in message and "l.txt:2: rgb" in message and "missing0.png" in message
    assert "l.txt:6:" in message and "l.txt:7:" not in message and "2 more" in message
    # opening without the check defers the error to reading
    lazy = open_source(f"list:{listing}@{root}?check_files=false")
    with pytest.raises(DataError, match=r"l\.txt:2: rgb .*missing0\.png: cannot read"):
        lazy[1]
    empty = write(tmp_path / "empty.txt", b"\n# nothing\n")
    with pytest.raises(DataError, match=r"empty\.txt: no samples"):
        open_source(f"list:{empty}@{root}")
    columns = write(tmp_path / "cols.txt", f"{ok}\n{ok} 1 2\n".encode())
    with pytest.raises(DataError, match=r"cols\.txt:2: expected 2 columns"):
        open_source(f"list:{columns}@{root}")
    focal = write(tmp_path / "focal.txt", f"{ok} abc\n".encode())
    with pytest.raises(DataError, match=r"focal\.txt:1: focal length 'abc'"):
        open_source(f"list:{focal}@{root}?dataset=nyu")
    with pytest.raises(DataError, match="list file does not exist"):
        open_source(f"list:{tmp_path / 'nope.txt'}@{root}")
    with pytest.raises(ConfigError, match="Unknown option"):
        open_source(f"list:{listing}@{root}?sacle=3")


def test_list_bad_records_at_read_time(tmp_path):
    root = tmp_path / "d"
    pairs = make_pairs(root, ["good", "mismatch", "corrupt", "eight", "grey"])
    write(root / pairs[1][1], png_bytes(random_depth16(5, 8)))
    write(root / pairs[2][0], b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    write(root / pairs[3][1], png_bytes(RNG.integers(0, 256, (6, 8), dtype=np.uint8)))
    grey = RNG.integers(0, 256, (6, 8), dtype=np.uint8)
    write(root / pairs[4][0], png_bytes(grey))
    listing = write(tmp_path / "l.txt", "".join(f"{r} {d}\n" for r, d, _, _ in pairs).encode())
    source = open_source(f"list:{listing}@{root}")
    assert np.array_equal(source[0].rgb, pairs[0][2])
    with pytest.raises(DataError, match=r"l\.txt:2: .*RGB size 6x8 differs from depth size 5x8"):
        source[1]
    with pytest.raises(DataError, match=r"l\.txt:3: rgb .*corrupt/rgb\.png: cannot decode"):
        source[2]
    with pytest.raises(DataError, match=r"l\.txt:4: depth .*eight/depth\.png: 8-bit depth where 16-bit"):
        source[3]
    assert np.array_equal(source[4].rgb, np.stack([grey] * 3, axis=2))


# ----------------------------------------------------------------------------------------------
# KITTI layout


def test_kitti_monodepth2_list_calib_and_missing_gt(tmp_path):
    raw, gt = tmp_path / "raw", tmp_path / "depth"
    drive = "2011_09_26_drive_0002_sync"
    frames = {}
    for frame in (5, 6):
        rgb, depth = random_rgb(), random_depth16()
        write(raw / f"2011_09_26/{drive}/image_02/data/{frame:010d}.png", png_bytes(rgb))
        frames[frame] = (rgb, depth)
    write(gt / f"val/{drive}/proj_depth/groundtruth/image_02/{5:010d}.png", png_bytes(frames[5][1]))
    write(raw / "2011_09_26/calib_cam_to_cam.txt", b"calib_time: x\nP_rect_02: 7.215377e+02 0.0 6.095593e+02 4.485728e+01\n")
    listing = write(tmp_path / "test_files.txt", f"2011_09_26/{drive} 5 l\n2011_09_26/{drive} 6 l\n".encode())
    source = open_source(f"kitti:{listing}@{raw}?depth_root={gt}", "test")
    assert len(source) == 1 and source.skipped == 1
    sample = source[0]
    assert sample.meta["focal"] == pytest.approx(721.5377)
    assert np.array_equal(sample.rgb, frames[5][0])
    assert np.array_equal(sample.depth[:, :, 0], frames[5][1] / np.float32(256.0))
    assert np.all(sample.depth[0, :3, 0] == 0)


def test_kitti_bts_list_finds_ground_truth_in_the_zips_train_and_val_folders(tmp_path):
    """data_depth_annotated.zip unpacks into train/ and val/; BTS list lines name `<drive>_sync/proj_depth/...`
    without either (docs/datasets.md step 1). Each line finds its file in whichever folder holds it; a file in
    neither is reported by name."""
    raw, gt = tmp_path / "raw", tmp_path / "depth"
    drives = {"train": "2011_09_26_drive_0001_sync", "val": "2011_09_26_drive_0002_sync", "": "2011_09_28_drive_0001_sync"}
    frames, lines = {}, []
    for split, drive in drives.items():
        rgb, depth = random_rgb(), random_depth16()
        write(raw / f"2011_09_26/{drive}/image_02/data/{5:010d}.png", png_bytes(rgb))
        write(gt / split / f"{drive}/proj_depth/groundtruth/image_02/{5:010d}.png", png_bytes(depth))
        frames[drive] = (rgb, depth)
        lines.append(f"2011_09_26/{drive}/image_02/data/{5:010d}.png {drive}/proj_depth/groundtruth/image_02/{5:010d}.png"
                     " 721.5377")
    missing = "2011_09_26_drive_0009_sync"
    write(raw / f"2011_09_26/{missing}/image_02/data/{5:010d}.png", png_bytes(random_rgb()))
    lines.append(f"2011_09_26/{missing}/image_02/data/{5:010d}.png {missing}/proj_depth/groundtruth/image_02/"
                 f"{5:010d}.png 721.5377")
    listing = write(tmp_path / "eigen_files_with_gt.txt", ("\n".join(lines[:3]) + "\n").encode())
    source = open_source(f"kitti:{listing}@{raw}?depth_root={gt}", "train")
    assert len(source) == 3
    for index, drive in enumerate(drives.values()):
        sample = source[index]
        assert np.array_equal(sample.rgb, frames[drive][0])
        assert np.array_equal(sample.depth[:, :, 0], frames[drive][1] / np.float32(256.0))
    with_missing = write(tmp_path / "with_missing.txt", ("\n".join(lines) + "\n").encode())
    with pytest.raises(DataError, match=missing):
        open_source(f"kitti:{with_missing}@{raw}?depth_root={gt}", "train")


def _kitti_frame(tmp_path):
    """raw/ and depth/ folders with one KITTI frame; -> (raw, depth folder, rgb path, depth path) as lists name them."""
    raw, gt = tmp_path / "raw", tmp_path / "depth"
    drive = "2011_09_26_drive_0002_sync"
    rgb_path = f"2011_09_26/{drive}/image_02/data/{5:010d}.png"
    depth_path = f"{drive}/proj_depth/groundtruth/image_02/{5:010d}.png"
    write(raw / rgb_path, png_bytes(random_rgb()))
    write(gt / depth_path, png_bytes(random_depth16()))
    return raw, gt, rgb_path, depth_path


def test_kitti_skipped_lines_reported_once_per_list(tmp_path, caplog):
    """A run opens its sources many times (issue: 10-12 copies per `hqdepth train`): the warning comes once."""
    raw, gt, rgb_path, depth_path = _kitti_frame(tmp_path)
    listing = write(tmp_path / "eigen_test.txt", f"{rgb_path} {depth_path} 721.5\n{rgb_path} None 721.5\n".encode())
    with caplog.at_level(logging.WARNING, logger="hqdepth.data"):
        for _ in range(3):
            assert len(open_source(f"kitti:{listing}@{raw}?depth_root={gt}")) == 1
    assert [r.getMessage() for r in caplog.records].count(
        f"{listing}: 1 line(s) without ground truth skipped, 1 samples kept.") == 1


def test_the_command_line_prefixes_the_packages_warnings(tmp_path, capsys):
    """`hqdepth COMMAND` prints the package's logged warnings as "hqdepth COMMAND: warning: ...", like its errors
    (only `evaluate` did; `train` printed them bare)."""
    from hqdepth.cli import main

    raw, gt, rgb_path, depth_path = _kitti_frame(tmp_path)
    listing = write(tmp_path / "eigen.txt", f"{rgb_path} {depth_path} 721.5\n{rgb_path} None 721.5\n".encode())
    assert main(["data", "stats", f"kitti:{listing}@{raw}?depth_root={gt}", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"hqdepth data: warning: {listing}: 1 line(s) without ground truth skipped, 1 samples kept." in err, err


def test_kitti_missing_ground_truth_explained(tmp_path):
    """Missing depth files of a relative list without depth_root= suggest depth_root=, not strip_prefix (that
    hint is for lists with absolute paths); a monodepth2 list whose ground truth is nowhere says where it looked."""
    raw, gt, rgb_path, depth_path = _kitti_frame(tmp_path)
    listing = write(tmp_path / "eigen_test.txt", f"{rgb_path} {depth_path} 721.5\n".encode())
    with pytest.raises(DataError) as info:
        open_source(f"kitti:{listing}@{raw}")
    assert "depth_root=" in str(info.value) and "strip_prefix" not in str(info.value)
    mono = write(tmp_path / "test_files.txt", f"{rgb_path.split('/image_02')[0]} 5 l\n".encode())
    with pytest.raises(DataError, match="no samples") as info:
        open_source(f"kitti:{mono}@{raw}", "test")
    assert str(raw / depth_path) in str(info.value) and "depth_root=" in str(info.value)


def test_kitti_bts_list_with_kb_crop(tmp_path):
    height, width = 360, 1230
    rgb, depth = random_rgb(height, width), random_depth16(height, width)
    write(tmp_path / "d/img.png", png_bytes(rgb))
    write(tmp_path / "d/gt.png", png_bytes(depth))
    listing = write(tmp_path / "l.txt", b"img.png gt.png 707.0493\nimg.png None 707.0493\n")
    source = open_source(f"kitti:{listing}@{tmp_path / 'd'}?kb_crop=true")
    assert len(source) == 1 and source.skipped == 1
    sample = source[0]
    top, left = height - 352, (width - 1216) // 2
    assert sample.meta["crop"] == (top, left)
    assert np.array_equal(sample.rgb, rgb[top:, left : left + 1216])
    assert np.array_equal(sample.depth[:, :, 0], depth[top:, left : left + 1216] / np.float32(256.0))
    small = write(tmp_path / "s.txt", b"a.png b.png 700\n")
    write(tmp_path / "d/a.png", png_bytes(random_rgb()))
    write(tmp_path / "d/b.png", png_bytes(random_depth16()))
    with pytest.raises(DataError, match="smaller than the KB crop"):
        open_source(f"kitti:{small}@{tmp_path / 'd'}", kb_crop=True)[0]


# ----------------------------------------------------------------------------------------------
# folder: and csv:


def test_folder_pairs_by_stem_or_number(tmp_path):
    rgbs = {n: random_rgb() for n in (0, 50, 100)}
    depths = {n: random_depth16() for n in (0, 50, 100)}
    for n in rgbs:
        write(tmp_path / f"f/train/rgb/{n:04d}.png", png_bytes(rgbs[n]))
        write(tmp_path / f"f/train/depth/{n:04d}.png", png_bytes(depths[n]))
        write(tmp_path / f"g/rgb/rgb_{n:05d}.png", png_bytes(rgbs[n]))
        write(tmp_path / f"g/depth/sync_depth_{n:05d}.png", png_bytes(depths[n]))
    by_stem = open_source(f"folder:{tmp_path / 'f'}?scale=1000", "train")  # DIR/<split>/rgb
    assert [s.meta["id"] for s in by_stem] == ["rgb/0000.png", "rgb/0050.png", "rgb/0100.png"]
    assert np.array_equal(by_stem[1].depth[:, :, 0], depths[50] / np.float32(1000.0))
    by_number = open_source(f"folder:{tmp_path / 'g'}", scale=5000)
    assert np.array_equal(by_number[2].rgb, rgbs[100])
    assert np.array_equal(by_number[2].depth[:, :, 0], depths[100] / np.float32(5000.0))
    with pytest.raises(ConfigError, match="scale="):
        open_source(f"folder:{tmp_path / 'g'}")
    write(tmp_path / "g/rgb/rgb_00200.png", png_bytes(random_rgb()))
    with pytest.raises(DataError, match="without a partner:\n  .*rgb_00200.png"):
        open_source(f"folder:{tmp_path / 'g'}?scale=1")
    with pytest.raises(DataError, match="folder does not exist"):
        open_source(f"folder:{tmp_path / 'nothing'}?scale=1")


def test_csv_with_and_without_header(tmp_path):
    rgb, depth = random_rgb(), random_depth16()
    write(tmp_path / "data/i.png", png_bytes(rgb))
    write(tmp_path / "data/d.png", png_bytes(depth))
    with_header = write(tmp_path / "data/a.csv", b"image_path,depth_path\ni.png,d.png\ni.png,None\n")
    source = open_source(f"csv:{with_header}?scale=1000")
    assert len(source) == 1 and source.skipped == 1
    assert np.array_equal(source[0].depth[:, :, 0], depth / np.float32(1000.0))
    plain = write(tmp_path / "b.csv", b"i.png,d.png,500.5\n")
    other_root = open_source(f"csv:{plain}@{tmp_path / 'data'}?scale=256")
    assert other_root[0].meta["focal"] == 500.5
    assert np.array_equal(other_root[0].rgb, rgb)
    bad = write(tmp_path / "data/c.csv", b"i.png,d.png\ni.png\n")
    with pytest.raises(DataError, match=r"c\.csv:2: expected 2 columns"):
        open_source(f"csv:{bad}?scale=1")


def test_unknown_kind():
    with pytest.raises(ConfigError, match="Unknown dataset kind"):
        open_source("nosuchkind:x")


# ----------------------------------------------------------------------------------------------
# Real frames (HQDEPTH_REALDATA); ranges from the folders' READMEs


def _valid_range(source):
    values = np.concatenate([s.depth[s.depth > 0] for s in source])
    return float(values.min()), float(values.max())


def test_real_nyu_sync_through_bts_list(realdata, tmp_path):
    folder = realdata / "nyu_sync3"
    lines = "".join(f"/rgb/rgb_{n:05d}.jpg /depth/sync_depth_{n:05d}.png 518.8579\n" for n in (0, 50, 100))
    listing = write(tmp_path / "nyu_sync.txt", lines.encode())
    source = open_source(f"list:{listing}@{folder}?dataset=nyu", "train")
    assert len(source) == 3
    low, high = _valid_range(source)
    assert round(low, 2) == 0.71 and round(high, 2) == 8.27
    for sample in source:
        assert sample.rgb.shape == (480, 640, 3) and sample.depth.shape == (480, 640, 1)
        invalid = float((sample.depth == 0).mean())
        assert 0.2 < invalid < 0.4  # raw Kinect holes, not in-painted (README: ~25-33 %)
    same = open_source(f"folder:{folder}?scale=1000")  # rgb_000NN <-> sync_depth_000NN by number
    assert np.array_equal(same[1].depth, source[1].depth)


def test_real_kitti_through_kitti_and_folder(realdata, tmp_path):
    folder = realdata / "kitti3"
    listing = write(tmp_path / "kitti.txt", "".join(f"rgb/{n:010d}.png depth/{n:010d}.png 707.0493\n" for n in (5, 50, 100)).encode())
    source = open_source(f"kitti:{listing}@{folder}")
    low, high = _valid_range(source)
    assert round(low, 1) == 5.1 and round(high, 1) == 84.9
    density = np.mean([float((s.depth > 0).mean()) for s in source])
    assert 0.15 < density < 0.25
    cropped = open_source(f"kitti:{listing}@{folder}?kb_crop=1")[0]
    assert cropped.rgb.shape == (352, 1216, 3) and cropped.meta["crop"] == (23, 13)
    assert _valid_range(open_source(f"folder:{folder}?scale=256")) == (low, high)


def test_real_nyu_test_through_csv_and_densedepth(realdata):
    folder = realdata / "nyu_test10"
    source = open_source(f"csv:{folder / 'nyu2_mini_test.csv'}?scale=1000")  # CSV with a header
    assert len(source) == 10
    low, high = _valid_range(source)
    assert round(low, 2) == 0.89 and round(high, 2) == 9.96
    assert all((s.depth > 0).all() for s in source)  # dense, filled depth
    dense = open_source(f"densedepth:{folder}?csv=nyu2_mini_test.csv", "test")
    assert np.array_equal(dense[3].depth, source[3].depth) and np.array_equal(dense[3].rgb, source[3].rgb)
