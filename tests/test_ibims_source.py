"""`ibims:PATH` on files the test writes in the iBims-1 release format (one struct `data` per .mat)."""

import logging

import numpy as np
import pytest
import scipy.io

from hqdepth.data import open_source
from hqdepth.errors import ConfigError, DataError
from hqdepth.geometry import GeometryEvaluator, ground_truth_from_meta

SHAPE = (24, 32)


def make_fields(rng, shape=SHAPE, planes=(2, 1, 0)):
    """Random content in the official layout: K stored transposed, masks 1 = use, plane labels 1..n per type
    on disjoint pixels, one parameter row of 10 values per plane (normal in columns 4..6)."""
    h, w = shape
    k = np.array([[rng.uniform(400, 600), 0, rng.uniform(10, 20)], [0, rng.uniform(400, 600), rng.uniform(8, 16)],
                  [0, 0, 1.0]])
    depth = rng.uniform(0.5, 9.0, shape)
    depth[rng.random(shape) < 0.1] = 0.0  # missing measurements
    fields = {
        "rgb": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        "depth": depth.astype(np.float32),
        "edges": (rng.random(shape) < 0.1).astype(np.uint8),
        "calib": k.T,  # MATLAB: fx = calib[0,0], fy = calib[1,1], cx = calib[2,0], cy = calib[2,1]
        "mask_invalid": (rng.random(shape) > 0.2).astype(np.uint8),
        "mask_transp": (rng.random(shape) > 0.1).astype(np.uint8),
    }
    owner = rng.integers(0, 1 + sum(planes), shape)  # 0 = no plane, then the planes of all types in order
    first = 1
    for kind, count in zip(("wall", "table", "floor"), planes):
        labels = np.zeros(shape, np.uint8)
        for j in range(count):
            labels[owner == first + j] = j + 1
        first += count
        fields[f"mask_{kind}"] = labels
        fields[f"mask_{kind}_paras"] = rng.normal(size=(count, 10)) if count else np.zeros((0, 0))
    return fields


def write(path, fields):
    scipy.io.savemat(str(path), {"data": fields})


def write_release(folder, rng, names=("corridor_01", "office_03")):
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in names:
        written[name] = make_fields(rng)
        write(folder / f"{name}.mat", written[name])
    (folder / "imagelist.txt").write_text("".join(f"{name}\n" for name in names))
    return written


def test_every_field_is_read_and_the_depth_masked_as_the_driver_does(tmp_path, rng):
    written = write_release(tmp_path / "ibims1_core_mat", rng)
    source = open_source(f"ibims:{tmp_path / 'ibims1_core_mat'}", split="test")
    assert len(source) == 2
    for sample, (name, fields) in zip(source, written.items()):
        assert sample.meta["id"] == name
        np.testing.assert_array_equal(sample.rgb, fields["rgb"])
        assert sample.depth.dtype == np.float32 and sample.depth.shape == SHAPE + (1,)
        want = fields["depth"] * fields["mask_invalid"] * fields["mask_transp"]  # the driver's mask_valid
        np.testing.assert_array_equal(sample.depth[..., 0], want)
        np.testing.assert_array_equal(sample.meta["edges"], fields["edges"] == 1)
        k = fields["calib"].T
        assert sample.meta["intrinsics"] == (k[0, 0], k[1, 1], k[0, 2], k[1, 2])
        assert sample.meta["focal"] == k[0, 0]
        ids, normals, types = sample.meta["plane_ids"], sample.meta["plane_normals"], sample.meta["plane_types"]
        assert ids.shape == SHAPE and ids.dtype == np.int32
        next_id = 1
        for kind in ("wall", "table", "floor"):
            labels, paras = fields[f"mask_{kind}"], fields[f"mask_{kind}_paras"]
            for j in range(paras.shape[0] if paras.size else 0):
                np.testing.assert_array_equal(ids == next_id, labels == j + 1)
                np.testing.assert_array_equal(normals[next_id], paras[j, 4:7])
                assert types[next_id] == kind
                next_id += 1
        assert set(normals) == set(range(1, next_id)) and ids.max() < next_id
        np.testing.assert_array_equal(ids == 0, (fields["mask_wall"] == 0) & (fields["mask_table"] == 0)
                                      & (fields["mask_floor"] == 0))


def test_the_meta_feeds_the_geometry_evaluator(tmp_path, rng):
    write_release(tmp_path, rng, names=("a",))
    sample = open_source(f"ibims:{tmp_path}", split="test")[0]
    inputs = ground_truth_from_meta(sample.meta)
    assert set(inputs) == {"edges", "plane_ids", "plane_normals", "intrinsics"}
    evaluator = GeometryEvaluator()
    evaluator.add(sample.depth[..., 0] * 1.1, sample.depth[..., 0], **inputs)
    assert evaluator.images_with_edges == evaluator.images_with_planes == 1
    assert evaluator.planes and evaluator.result()["dde_0"] > 0.5


@pytest.mark.parametrize("layout", ["flat", "core_mat", "gt_depth", "list_file", "no_list"])
def test_release_layouts(tmp_path, rng, layout):
    names = ("b_scene", "a_scene")
    files = {"flat": tmp_path, "core_mat": tmp_path / "ibims1_core_mat", "gt_depth": tmp_path / "gt_depth",
             "list_file": tmp_path, "no_list": tmp_path}[layout]
    files.mkdir(exist_ok=True)
    for name in names:
        write(files / f"{name}.mat", make_fields(rng))
    if layout != "no_list":
        (tmp_path / "imagelist.txt").write_text("\n".join(names) + "\n\n")
    else:
        write(tmp_path / "a_scene_results.mat", {"x": np.zeros(2)})  # a prediction file is not a sample
        names = tuple(sorted(names))
    argument = tmp_path / "imagelist.txt" if layout == "list_file" else tmp_path
    source = open_source(f"ibims:{argument}", split="all")
    assert [source[i].meta["id"] for i in range(len(source))] == list(names)


def _broken(fields, **changes):
    fields = dict(fields)
    for key, value in changes.items():
        if value is None:
            del fields[key]
        else:
            fields[key] = value
    return fields


@pytest.mark.parametrize("change,message", [
    ({"edges": None}, r"data\.edges missing"),
    ({"mask_floor_paras": None}, r"data\.mask_floor_paras missing"),
    ({"mask_transp": np.ones((5, 5), np.uint8)}, r"data\.mask_transp has shape \(5, 5\)"),
    ({"rgb": np.zeros(SHAPE + (3,), np.float32)}, r"data\.rgb has shape .* float32"),
    ({"depth": np.ones(SHAPE, np.uint16)}, r"data\.depth .*uint16"),
    ({"depth": np.full(SHAPE, np.nan, np.float32)}, r"data\.depth contains"),
    ({"calib": np.eye(2)}, r"data\.calib has shape \(2, 2\)"),
    ({"edges": np.full(SHAPE, 255, np.uint8)}, r"data\.edges is not binary"),
    ({"mask_wall": np.full(SHAPE, -1.0)}, r"data\.mask_wall must hold plane labels"),
    ({"mask_table_paras": np.ones((1, 5))}, r"data\.mask_table_paras has shape \(1, 5\)"),
    ({"rgb": np.array(["x"], dtype=object)}, r"data\.rgb"),
])
def test_bad_fields_name_the_file_and_the_field(tmp_path, rng, change, message):
    write_release(tmp_path, rng, names=("good",))
    write(tmp_path / "bad.mat", _broken(make_fields(rng), **change))
    (tmp_path / "imagelist.txt").write_text("good\nbad\n")
    source = open_source(f"ibims:{tmp_path}", split="test")
    source[0]
    with pytest.raises(DataError, match=message) as error:
        source[1]
    assert str(tmp_path / "bad.mat") in str(error.value)


def test_corrupt_and_missing_files(tmp_path, rng):
    write_release(tmp_path, rng, names=("good",))
    (tmp_path / "corrupt.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(range(256)) * 3)
    scipy.io.savemat(str(tmp_path / "novar.mat"), {"depth": np.zeros(SHAPE)})
    (tmp_path / "imagelist.txt").write_text("good\ncorrupt\nnovar\n")
    source = open_source(f"ibims:{tmp_path}", split="test")
    with pytest.raises(DataError, match="corrupt.mat: cannot read"):
        source[1]
    with pytest.raises(DataError, match=r"novar.mat: no variable 'data'.*depth"):
        source[2]
    (tmp_path / "imagelist.txt").write_text("good\nabsent\n")
    with pytest.raises(DataError, match=r"(?s)1 image\(s\) named in .*imagelist.txt have no .mat file.*absent.mat"):
        open_source(f"ibims:{tmp_path}", split="test")
    with pytest.raises(DataError, match="does not exist"):
        open_source(f"ibims:{tmp_path / 'nowhere'}", split="test")
    with pytest.raises(ConfigError, match="test set"):
        open_source(f"ibims:{tmp_path}", split="train")
    with pytest.raises(ConfigError, match="takes no options"):
        open_source(f"ibims:{tmp_path}?depth=raw", split="test")


def test_labels_without_parameters_and_overlaps_are_reported(tmp_path, rng, caplog):
    fields = make_fields(rng, planes=(1, 1, 0))
    fields["mask_wall"][0, :4] = 3  # no third wall row: the official code never scores it
    fields["mask_table"][0, :4] = 0
    fields["mask_table"][1, :] = 1  # the wall already labels some of these pixels
    fields["mask_wall"][1, :] = 1
    write(tmp_path / "x.mat", fields)
    with caplog.at_level(logging.WARNING, logger="hqdepth.data"):
        sample = open_source(f"ibims:{tmp_path}", split="test")[0]
    assert "label(s) 3 without a row" in caplog.text and "already labelled" in caplog.text
    ids = sample.meta["plane_ids"]
    assert np.all(ids[0, :4] == 0) and np.all(ids[1, :] == 1)


def test_synthetic_scenes_written_as_an_ibims_release_read_back_with_their_geometry(tmp_path, capsys):
    from hqdepth.cli import main

    out = tmp_path / "release"
    args = ["data", "synthetic", "--count", "4", "--size", "48x64", "--split", "test", "--out", str(out),
            "--format", "ibims", "--no-progress"]
    assert main(args) == 0
    assert f"read it with ibims:{out}" in capsys.readouterr().out
    original, back = open_source("synthetic:4?size=48x64", split="test"), open_source(f"ibims:{out}", split="test")
    assert len(back) == 4
    kinds = set()
    for a, b in zip(original, back):
        assert b.meta["id"] == a.meta["id"]
        np.testing.assert_array_equal(b.rgb, a.rgb)
        np.testing.assert_array_equal(b.depth, a.depth)
        np.testing.assert_array_equal(b.meta["edges"], a.meta["edges"])
        assert b.meta["intrinsics"] == pytest.approx(a.meta["intrinsics"], rel=0, abs=0)
        # the same planes (renumbered by class), each with its normal and class
        assert len(b.meta["plane_normals"]) == len(a.meta["plane_normals"])
        for pid, normal in a.meta["plane_normals"].items():
            new = np.unique(b.meta["plane_ids"][a.meta["plane_ids"] == pid])
            assert new.size == 1 and new[0] > 0
            np.testing.assert_array_equal(b.meta["plane_normals"][int(new[0])], normal)
            assert b.meta["plane_types"][int(new[0])] == a.meta["plane_types"][pid]
            kinds.add(a.meta["plane_types"][pid])
        np.testing.assert_array_equal(b.meta["plane_ids"] > 0, a.meta["plane_ids"] > 0)
        # and the evaluator scores a prediction the same on both
        prediction = a.depth[..., 0] * 1.1 + 0.02 * np.arange(64)[None, :]
        results = []
        for sample in (a, b):
            evaluator = GeometryEvaluator(plane_min_pixels=20)
            evaluator.add(prediction, sample.depth[..., 0], **ground_truth_from_meta(sample.meta))
            results.append(evaluator.result())
        for key, value in results[0].items():
            assert results[1][key] == pytest.approx(value, rel=1e-12, nan_ok=True), key
        floor = [n for pid, n in b.meta["plane_normals"].items() if b.meta["plane_types"][pid] == "floor"]
        for pid, normal in b.meta["plane_normals"].items():  # tables: the boxes' tops, facing up like the floor
            if b.meta["plane_types"][pid] == "table" and floor:
                np.testing.assert_allclose(normal, floor[0], atol=1e-12)
    assert kinds == {"wall", "table", "floor"}
    assert main(args) == 0  # the same scenes again: rewritten
    fewer = [*args[:3], "2", *args[4:]]
    assert main(fewer) == 2 and "--overwrite" in capsys.readouterr().err  # other scenes: the release is kept
    assert len(open_source(f"ibims:{out}", split="test")) == 4
    assert main([*fewer, "--overwrite"]) == 0
    assert sorted(p.name for p in out.glob("*.mat")) == ["synthetic-test-0000000.mat", "synthetic-test-0000001.mat"]
    assert len(open_source(f"ibims:{out}", split="test")) == 2


def test_release_names_are_safe_and_distinct_and_a_partial_release_is_refused(tmp_path, monkeypatch):
    from hqdepth.data import Sample
    from hqdepth.data import ibims

    taken = set()
    names = [ibims.release_name(i, n, taken) for n, i in enumerate(["a/b", "a_b", "x.mat", " #c ", "", "dup", "dup"])]
    assert names == ["a_b", "a_b_2", "x", "_c", "image_00004", "dup", "dup_2"]
    base = open_source("synthetic:1?size=24x32")[0]
    samples = [Sample(base.rgb, base.depth, {**base.meta, "id": i}) for i in ("one", "one", "x.mat")]
    assert ibims.write_ibims_release(tmp_path / "r", samples) == 3
    back = open_source(f"ibims:{tmp_path / 'r'}", split="test")
    assert [s.meta["id"] for s in back] == ["one", "one_2", "x"]

    def broken(sample):  # the third sample fails to encode: the list names nothing
        if sample.meta["id"] == "x.mat":
            raise DataError("boom")
        return original(sample)

    original = ibims.encode_ibims
    monkeypatch.setattr(ibims, "encode_ibims", broken)
    with pytest.raises(DataError, match="boom"):
        ibims.write_ibims_release(tmp_path / "p", samples)
    with pytest.raises(DataError, match="names no image"):
        open_source(f"ibims:{tmp_path / 'p'}", split="test")


def test_writing_a_sample_without_plane_classes_is_refused():
    from hqdepth.data import Sample
    from hqdepth.data.ibims import encode_ibims

    sample = open_source("synthetic:1?size=24x32")[0]
    meta = {k: v for k, v in sample.meta.items() if k != "plane_types"}
    with pytest.raises(DataError, match="synthetic-train-0000000.*plane_types"):
        encode_ibims(Sample(sample.rgb, sample.depth, meta))
    with pytest.raises(DataError, match="no edges"):
        encode_ibims(Sample(sample.rgb, sample.depth, {"id": "x", "intrinsics": (1, 1, 1, 1)}))
    with pytest.raises(DataError, match="'x'.*edges has shape"):
        encode_ibims(Sample(sample.rgb, sample.depth, {**sample.meta, "id": "x", "edges": np.zeros((2, 2))}))
    with pytest.raises(DataError, match="finite, non-negative"):
        encode_ibims(Sample(sample.rgb, -sample.depth, sample.meta))
