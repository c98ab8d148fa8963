"""Data tools: TFRecord encoding, convert -> verify -> read back, resumability, corruption,
tfrecord_dataset, stats, synthetic PNG output and the `hqdepth data` CLI (in-process)."""

import json
import os
import re
import shutil

import numpy as np
import pytest

from hqdepth.cli import main
from hqdepth.data import Sample, Source, open_source, register_source
from hqdepth.data import tools
from hqdepth.data.tfrecord import decode_example, encode_example, read_manifest, record_offsets, tfrecord_dataset
from hqdepth.errors import ConfigError, DataError

SPEC = "synthetic:10,size=30x40"
SCALE = 1000.0


def quantised(depth, scale=SCALE):
    """What a 16-bit depth PNG at `scale` gives back (the exact expected read-back value)."""
    return (np.round(depth.astype(np.float64) * scale)).astype(np.float32) / np.float32(scale)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("tfr") / "synthetic"
    report = tools.convert(SPEC, out, shard_size=4, workers=1)
    return out, report


def _copy(converted, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(converted[0], out)
    return out


def _flip_byte(path, where=0.5):
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x5A
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------------- record format


def test_example_encoding_matches_tensorflow():
    import tensorflow as tf

    features = {"rgb": b"\x00\x01png", "height": 480, "neg": -3, "scale": 1000.0, "focal": 259.42895, "id": "scene/é"}
    parsed = tf.train.Example.FromString(encode_example(features)).features.feature
    assert parsed["rgb"].bytes_list.value == [b"\x00\x01png"]
    assert parsed["height"].int64_list.value == [480] and parsed["neg"].int64_list.value == [-3]
    assert parsed["scale"].float_list.value == [1000.0]
    assert parsed["focal"].float_list.value[0] == pytest.approx(259.42895, rel=1e-7)
    assert parsed["id"].bytes_list.value == ["scene/é".encode()]
    example = tf.train.Example()
    example.features.feature["a"].int64_list.value.extend([1, -(2**40), 7])
    example.features.feature["b"].float_list.value.extend([0.5, -2.25])
    example.features.feature["c"].bytes_list.value.extend([b"x", b""])
    assert decode_example(example.SerializeToString()) == {"a": [1, -(2**40), 7], "b": [0.5, -2.25], "c": [b"x", b""]}


# ------------------------------------------------------------------------------ round trip


def test_convert_verify_read_back_round_trip(converted):
    out, report = converted
    assert report["records"] == 10 and report["shards"] == 3 and len(report["converted"]) == 3
    manifest = read_manifest(out)
    section = manifest["splits"]["train"]
    assert section["complete"] and section["depth_scale"] == SCALE and section["sizes"] == {"30x40": 10}
    assert [s["count"] for s in section["shards"]] == [4, 4, 2]
    assert all(len(s["sha256"]) == 64 for s in section["shards"])
    assert tools.verify(out)["problems"] == []

    original = open_source(SPEC)
    # pure-Python Source
    source = open_source(f"tfrecord:{out}")
    assert len(source) == 10
    for i in range(10):
        expect, got = original[i], source[i]
        np.testing.assert_array_equal(got.rgb, expect.rgb)
        np.testing.assert_array_equal(got.depth, quantised(expect.depth))
        assert np.abs(got.depth - expect.depth).max() <= 0.5 / SCALE + 1e-6
        assert got.meta["id"] == expect.meta["id"]
        assert got.meta["focal"] == pytest.approx(expect.meta["focal"], rel=1e-6)
    # tf.data, parallel decoding: same values, manifest order
    items = list(tfrecord_dataset(out, with_meta=True).as_numpy_iterator())
    assert len(items) == 10
    for i, (rgb, depth, meta) in enumerate(items):
        assert rgb.dtype == np.uint8 and depth.dtype == np.float32 and depth.shape == (30, 40, 1)
        np.testing.assert_array_equal(rgb, original[i].rgb)
        np.testing.assert_array_equal(depth, quantised(original[i].depth))
        assert meta["id"].decode() == original[i].meta["id"]
    ds = tfrecord_dataset(out, shuffle_files=True, seed=1)
    assert ds.element_spec[0].shape == (30, 40, 3)  # one size in the manifest -> static shape
    assert sorted(float(d.numpy().sum()) for _, d in ds) == sorted(float(item[1].sum()) for item in items)


def test_parallel_workers_write_identical_shards(converted, tmp_path):
    out, _ = converted
    report = tools.convert(SPEC, tmp_path / "parallel", shard_size=4, workers=2)
    assert report["records"] == 10
    first = read_manifest(out)["splits"]["train"]["shards"]
    second = read_manifest(tmp_path / "parallel")["splits"]["train"]["shards"]
    assert [s["sha256"] for s in first] == [s["sha256"] for s in second]


def test_resume_converts_only_missing_or_damaged_shards(converted, tmp_path):
    out = _copy(converted, tmp_path)
    shards = sorted(out.glob("train-*.tfrecord"))
    shas = [s["sha256"] for s in read_manifest(out)["splits"]["train"]["shards"]]
    shards[0].unlink()
    _flip_byte(shards[2])
    os.utime(shards[1], (1_000_000, 1_000_000))
    report = tools.convert(SPEC, out, shard_size=4, workers=1)
    assert report["converted"] == [shards[0].name, shards[2].name]
    assert report["kept"] == [shards[1].name]
    assert shards[1].stat().st_mtime == 1_000_000  # untouched
    assert [s["sha256"] for s in read_manifest(out)["splits"]["train"]["shards"]] == shas
    assert tools.verify(out)["problems"] == []
    # different settings for an existing split need --overwrite
    with pytest.raises(ConfigError, match="shard_size"):
        tools.convert(SPEC, out, shard_size=5)


def test_interrupted_conversion_is_refused_then_resumed(tmp_path, monkeypatch):
    out = tmp_path / "interrupted"
    calls = {"n": 0}
    real = tools.encode_sample

    def flaky(sample, scale):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(sample, scale)

    monkeypatch.setattr(tools, "encode_sample", flaky)
    monkeypatch.setattr(tools, "CHUNK", 2)
    with pytest.raises(KeyboardInterrupt):
        tools.convert(SPEC, out, shard_size=4, workers=1)
    section = read_manifest(out)["splits"]["train"]
    assert not section["complete"]
    assert [bool(s["sha256"]) for s in section["shards"]] == [True, False, False]
    with pytest.raises(DataError, match="incomplete"):
        tfrecord_dataset(out)
    with pytest.raises(DataError, match="incomplete"):
        open_source(f"tfrecord:{out}")
    monkeypatch.setattr(tools, "encode_sample", real)
    report = tools.convert(SPEC, out, shard_size=4, workers=1)
    assert report["kept"] == ["train-00000-of-00003.tfrecord"] and len(report["converted"]) == 2
    assert tools.verify(out)["problems"] == []


# ------------------------------------------------------------------------------- corruption


def test_verify_and_readers_detect_a_corrupted_shard(converted, tmp_path, capsys):
    import tensorflow as tf

    out = _copy(converted, tmp_path)
    bad = out / "train-00001-of-00003.tfrecord"
    _flip_byte(bad, 0.6)
    report = tools.verify(out)
    assert report["problems"] and {p["shard"] for p in report["problems"]} == {bad.name}
    assert any("sha256" in p["problem"] for p in report["problems"])
    assert any("corrupt" in p["problem"] or "decode" in p["problem"] for p in report["problems"])
    assert main(["data", "verify", str(out), "--no-progress"]) == 1
    printed = capsys.readouterr().out
    assert f"BAD  [train] {bad.name}" in printed and "FAILED" in printed

    with pytest.raises(tf.errors.InvalidArgumentError, match=bad.name):
        for _ in tfrecord_dataset(out):
            pass
    # what `hqdepth train` and the CLI make of it: the DataError inside, in one line
    from hqdepth.errors import errors_from_tensorflow

    with pytest.raises(DataError, match=rf"^bad record\(s\) in TFRecord shard \S*{bad.name}: decoded \d of 4 records"):
        with errors_from_tensorflow():
            for _ in tfrecord_dataset(out):
                pass
    kept = sum(1 for _ in tfrecord_dataset(out, skip_bad_records=True))
    assert 6 <= kept < 10
    source = open_source(f"tfrecord:{out}")
    with pytest.raises(DataError, match=bad.name):
        for i in range(len(source)):
            source[i]

    # a truncated shard and a missing shard
    cut = out / "train-00002-of-00003.tfrecord"
    cut.write_bytes(cut.read_bytes()[:-10])
    (out / "train-00000-of-00003.tfrecord").unlink()
    problems = tools.verify(out)["problems"]
    assert {"train-00000-of-00003.tfrecord", bad.name, cut.name} == {p["shard"] for p in problems}
    assert any(p["problem"] == "file missing" for p in problems)
    cut_problems = " ".join(p["problem"] for p in problems if p["shard"] == cut.name)
    assert re.search(r"\(truncated record at byte \d+: Read less bytes", cut_problems) and "'" not in cut_problems
    with pytest.raises(DataError, match="truncated"):
        record_offsets(cut)


# ------------------------------------------------------------------------- user errors, skipping


@register_source("test-tools-flaky")
class FlakySource(Source):
    """Four 8x8 samples; sample 2 is unreadable; `far` makes depth 70 m."""

    def __init__(self, argument=None, split="train", far=False):
        self.far = far

    def __len__(self):
        return 4

    def __getitem__(self, index):
        if index == 2:
            raise DataError("flaky.txt line 3: cannot decode image")
        depth = np.full((8, 8, 1), 70.0 if self.far else 1.0 + index, np.float32)
        depth[0, 0] = 0
        return Sample(np.full((8, 8, 3), index, np.uint8), depth, {"id": f"s{index}"})


def test_skip_errors_are_counted_and_depth_overflow_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"line 3: cannot decode image; --skip-errors \(skip_errors=True\) leaves"):
        tools.convert("test-tools-flaky", tmp_path / "a", shard_size=4)
    # workers=2: the spawned workers import this module to find the source registered here
    report = tools.convert("test-tools-flaky", tmp_path / "b", shard_size=2, skip_errors=True, workers=2)
    assert report["records"] == 3 and [s["index"] for s in report["skipped"]] == [2]
    assert read_manifest(tmp_path / "b")["splits"]["train"]["skipped"][0]["error"].startswith("flaky.txt line 3")
    back = open_source(f"tfrecord:{tmp_path / 'b'}")
    assert [back[i].meta["id"] for i in range(3)] == ["s0", "s1", "s3"]
    assert back[0].depth[0, 0, 0] == 0 and back[2].depth[1, 1, 0] == 4.0  # invalid stays 0
    with pytest.raises(DataError, match="16 bits") as info:  # not a read error: --skip-errors is no advice here
        tools.convert("test-tools-flaky", tmp_path / "c", source_options={"far": True}, skip_errors=False, limit=2)
    assert "skip-errors" not in str(info.value)
    tools.convert("test-tools-flaky", tmp_path / "c", source_options={"far": True}, depth_scale=256, limit=2, overwrite=True)
    assert open_source(f"tfrecord:{tmp_path / 'c'}")[1].depth[1, 1, 0] == 70.0


# ------------------------------------------------------------------------------------- stats


def test_stats_numbers(converted):
    out, _ = converted
    report = tools.stats(f"tfrecord:{out}", bins=10, max_depth=10.0)
    samples = [open_source(f"tfrecord:{out}")[i] for i in range(10)]
    depth = np.concatenate([s.depth.ravel() for s in samples])
    assert report["samples"] == 10 and report["valid_fraction"] == 1.0
    assert report["depth_histogram"]["counts"] == np.histogram(depth, np.linspace(0, 10, 11))[0].tolist()
    assert sum(report["depth_histogram"]["counts"]) == 10 * 30 * 40
    assert report["depth_mean"] == pytest.approx(depth.astype(np.float64).mean(), rel=1e-9)
    expected_rgb = np.mean([s.rgb.reshape(-1, 3).mean(0) for s in samples], axis=0)
    np.testing.assert_allclose(report["mean_rgb"], expected_rgb, rtol=1e-9)
    flaky = tools.stats("test-tools-flaky", limit=2)
    assert flaky["valid_fraction"] == pytest.approx(63 / 64)
    assert flaky["depth_min"] == 1.0 and flaky["depth_max"] == 2.0


def test_stats_of_kitti_span_its_80_m_by_default(realdata, tmp_path):
    """A KITTI source's histogram covers 0-80 m unless --max-depth says otherwise (the 0-10 m of NYU put most KITTI
    pixels in the one bin above); the counts equal NumPy's of the ground-truth PNGs / 256."""
    import cv2

    names = sorted(path.name for path in (realdata / "kitti3" / "depth").glob("*.png"))
    listing = tmp_path / "eigen.txt"
    listing.write_text("".join(f"rgb/{name} depth/{name} 707.0493\n" for name in names))
    depth = np.concatenate([cv2.imread(str(realdata / "kitti3" / "depth" / name), cv2.IMREAD_UNCHANGED).ravel() / 256.0
                            for name in names])
    depth = depth[depth > 0]
    report = tools.stats(f"kitti:{listing}@{realdata / 'kitti3'}", split="test", bins=16)
    assert report["depth_histogram"]["edges"][-1] == 80.0
    assert report["depth_histogram"]["counts"] == np.histogram(depth, np.linspace(0, 80, 17))[0].tolist()
    assert report["depth_histogram"]["above"] == int((depth > 80).sum())
    assert tools.stats(f"kitti:{listing}@{realdata / 'kitti3'}", split="test", max_depth=10.0)[
        "depth_histogram"]["edges"][-1] == 10.0
    # the same frames as a folder of PNGs in KITTI's metres x 256
    report = tools.stats(f"folder:{realdata / 'kitti3'}?scale=256", bins=16)
    assert report["depth_histogram"]["counts"] == np.histogram(depth, np.linspace(0, 80, 17))[0].tolist()


# ----------------------------------------------------------------------------------------- CLI


def test_cli_synthetic_verify_stats_and_errors(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["data", "synthetic", "--count", "5", "--size", "24x32", "--out", str(out), "--split", "val", "--workers", "1", "--no-progress"]) == 0
    out_text = capsys.readouterr().out
    assert "5 records in 1 shard(s)" in out_text
    assert "geometric ground truth: edges in 5, planes in 5, intrinsics in 5 records" in out_text
    assert main(["data", "verify", str(out), "--no-progress"]) == 0
    assert "OK: 1 shards, 5 records" in capsys.readouterr().out
    assert main(["data", "stats", f"tfrecord:{out}", "--split", "val", "--json", "--no-progress"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["samples"] == 5 and stats["sizes"] == {"24x32": 5} and stats["valid_fraction"] == 1.0
    # --split all reaches the source (nyu-mat has it); one without it names its splits
    assert main(["data", "stats", "synthetic:5,size=24x32", "--split", "all", "--no-progress"]) == 2
    assert "Unknown split 'all' for synthetic scenes; use one of train, val, test." in capsys.readouterr().err
    original = open_source("synthetic:5,size=24x32", split="val")
    assert stats["depth_max"] == pytest.approx(max(float(quantised(original[i].depth).max()) for i in range(5)), rel=1e-6)
    # converting the same scenes with `convert` gives the same shard bytes
    assert main(["data", "convert", "synthetic:5,size=24x32", "--split", "val", "--out", str(tmp_path / "conv"), "--workers", "1", "--no-progress"]) == 0
    capsys.readouterr()
    sha = [read_manifest(d)["splits"]["val"]["shards"][0]["sha256"] for d in (out, tmp_path / "conv")]
    assert sha[0] == sha[1]

    # user errors: message, no traceback, exit code 2
    assert main(["data", "verify", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["data", "convert", "nosuchkind:x", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "nosuchkind" in capsys.readouterr().err
    assert main(["data", "stats", f"tfrecord:{out}", "--no-progress"]) == 2  # holds only val
    assert "no split 'train'" in capsys.readouterr().err


def test_synthetic_png_pairs_and_list_file(tmp_path, capsys):
    out = tmp_path / "png"
    args = ["data", "synthetic", "--count", "3", "--size", "24x32", "--out", str(out), "--format", "png", "--workers", "1", "--no-progress"]
    assert main(args) == 0
    lines = (out / "train.txt").read_text().split("\n")
    assert lines[0] == "train/rgb/0000000.png train/depth/0000000.png 25.9429" and len([x for x in lines if x]) == 3
    import cv2

    original = open_source("synthetic:3,size=24x32")
    for i in range(3):
        rgb = cv2.imread(str(out / f"train/rgb/{i:07d}.png"), cv2.IMREAD_COLOR)[..., ::-1]
        depth = cv2.imread(str(out / f"train/depth/{i:07d}.png"), cv2.IMREAD_UNCHANGED)
        assert depth.dtype == np.uint16
        np.testing.assert_array_equal(rgb, original[i].rgb)
        np.testing.assert_array_equal(depth.astype(np.float32) / np.float32(1000), quantised(original[i].depth)[..., 0])
    mtime = (out / "train/rgb/0000001.png").stat().st_mtime_ns
    assert main(args) == 0  # rerun keeps existing pairs
    assert (out / "train/rgb/0000001.png").stat().st_mtime_ns == mtime
    assert main([*args[:5], "48x64", *args[6:]]) == 2  # other size for the same split
    assert "--overwrite" in capsys.readouterr().err
    listed = open_source(f"list:{out}/train.txt@{out}?scale=1000")  # the README: the list source reads it back
    np.testing.assert_array_equal(listed[2].depth, quantised(original[2].depth))
    assert listed[2].meta.get("focal") == pytest.approx(25.9429)


def test_convert_keeps_the_sources_own_png_scale_and_a_failed_start_holds_nothing(tmp_path, capsys):
    """KITTI-like PNGs read with `?scale=256` (depths up to 80 m, beyond millimetres' 65.5 m) convert at 256 by
    default, each depth exactly; a conversion that stopped before writing a shard (here at --depth-scale 1000) does
    not make the corrected command need --overwrite."""
    import cv2

    rng = np.random.default_rng(3)
    for kind in ("rgb", "depth"):
        (tmp_path / "frames" / kind).mkdir(parents=True)
    coded = [rng.integers(0, 80 * 256, (12, 20), dtype=np.uint16) for _ in range(2)]
    for index, depth in enumerate(coded):
        cv2.imwrite(str(tmp_path / "frames" / "rgb" / f"{index}.png"), rng.integers(0, 256, (12, 20, 3), np.uint8))
        cv2.imwrite(str(tmp_path / "frames" / "depth" / f"{index}.png"), depth)
    spec, out = f"folder:{tmp_path / 'frames'}?scale=256", tmp_path / "converted"
    assert tools.default_depth_scale(spec) == 256.0 and tools.default_depth_scale("nyu-mat:x.mat") == 1000.0
    assert tools.default_depth_scale("folder:d?scale=1&bits=any") == 1000.0  # float depths: scale divides them
    assert main(["data", "convert", spec, "--out", str(out), "--depth-scale", "1000", "--no-progress"]) == 2
    assert "does not fit 16 bits at depth scale 1000" in capsys.readouterr().err
    assert main(["data", "convert", spec, "--out", str(out), "--no-progress"]) == 0, capsys.readouterr().err
    assert read_manifest(out)["splits"]["train"]["depth_scale"] == 256.0
    source = open_source(f"tfrecord:{out}")
    got = {source[i].meta["id"]: source[i].depth[..., 0] for i in range(2)}
    for index, depth in enumerate(coded):
        np.testing.assert_array_equal(got[f"rgb/{index}.png"] * 256.0, depth.astype(np.float32))


def test_convert_and_stats_name_the_list_lines_without_ground_truth(tmp_path, capsys):
    """A BTS-style list whose ground truth is None on a line (KITTI's Eigen test list: 45 of 697): `data convert`
    lists it in its report and the manifest (`without_ground_truth`), `data stats` too (both said nothing)."""
    import cv2

    rng = np.random.default_rng(5)
    lines = []
    for index in range(3):
        cv2.imwrite(str(tmp_path / f"rgb{index}.png"), rng.integers(0, 256, (12, 20, 3), np.uint8))
        cv2.imwrite(str(tmp_path / f"depth{index}.png"), rng.integers(1000, 5000, (12, 20), dtype=np.uint16))
        lines.append(f"rgb{index}.png {'None' if index == 2 else f'depth{index}.png'} 500.0")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    spec, out, where = f"list:{tmp_path / 'list.txt'}?scale=1000", tmp_path / "converted", f"{tmp_path / 'list.txt'}:3"
    assert main(["data", "convert", spec, "--out", str(out), "--no-progress"]) == 0
    assert f"1 list line(s) without ground truth not converted (listed in the manifest under without_ground_truth), " \
           f"e.g. {where}" in capsys.readouterr().out
    section = read_manifest(out)["splits"]["train"]
    assert section["records"] == 2 and section["without_ground_truth"] == [where]
    report = tools.stats(spec)
    assert report["samples"] == 2 and report["without_ground_truth"] == [where]
    assert "; 1 list line(s) without ground truth left out" in tools.format_stats(report)
    assert tools.stats(spec, limit=1)["without_ground_truth"] == []  # a part of the source: not said
    assert open_source(f"tfrecord:{out}").without_ground_truth == [where]  # what an evaluation of it counts
