"""Geometric ground truth (#16) through the data tools and training: TFRecords store and read back edges,
plane ids, normals, equations, types and intrinsics (older shards without them still read), `hqdepth data
stats` reports them, and a training run's validation logs the iBims metrics when the validation data
carries edges/planes (and adds nothing when it does not).

The scenes are hand-made (`test-geometry-scenes`): 32x48 frames, a wall (plane 1) above a floor (plane 2),
a box at 2 m whose border is the true edge map; `test-geometry-scenes:plain` is the same without geometry.
"""

import math

import numpy as np
import pytest

from hqdepth import geometry
from hqdepth.cli import main
from hqdepth.data import Sample, Source, open_source, register_source
from hqdepth.data import tools
from hqdepth.data.tfrecord import (decode_example, decode_record, encode_example, encode_sample, read_manifest,
                                   tfrecord_dataset, write_manifest)
from hqdepth.errors import ConfigError, DataError

H, W = 32, 48
SPEC = "test-geometry-scenes"
INTRINSICS = (40.1, 39.7, 24.5, 16.5)


def scene(index, split="train"):
    """(rgb, depth, meta) of hand-made scene `index`: the box moves with the index (and the split)."""
    offset = index + (5 if split != "train" else 0)
    depth = np.full((H, W), 4.0, np.float32)
    plane_ids = np.zeros((H, W), np.int32)
    plane_ids[:20] = 1
    depth[20:] = 3.0
    plane_ids[20:] = 2
    top, left = 6 + offset % 4, 10 + 2 * (offset % 6)
    box = np.zeros((H, W), bool)
    box[top:top + 10, left:left + 16] = True
    depth[box] = 2.0
    plane_ids[box] = 0
    edges = box & ~np.pad(box, 1)[2:, 1:-1] | box & ~np.pad(box, 1)[:-2, 1:-1] \
        | box & ~np.pad(box, 1)[1:-1, 2:] | box & ~np.pad(box, 1)[1:-1, :-2]  # the box's border ring
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0] = (np.arange(W) * 5)[None, :]
    rgb[..., 1] = 40 + 40 * plane_ids
    rgb[box] = (230, 200, 30)
    depth[0, 0] = 0  # one pixel without ground truth
    meta = {
        "id": f"{split}/{index}", "focal": INTRINSICS[0], "edges": edges, "plane_ids": plane_ids,
        "plane_normals": {1: np.array([0.0, -1.0, 0.0]), 2: np.array([0.0, 0.6, 0.8])},  # 0.6/0.8: not float32
        "plane_equations": {1: (0.0, -1.0, 0.0, 4.0), 2: (0.0, 0.6, 0.8, -1.7)},
        "plane_types": {1: "wall", 2: "floor"}, "intrinsics": INTRINSICS,
    }
    return rgb, depth[..., None], meta


@register_source("test-geometry-scenes")
class GeometryScenes(Source):
    """8 hand-made scenes per split; argument "plain": no geometric ground truth in meta, "mixed": only the
    even samples have it (and 2 of those no intrinsics)."""

    def __init__(self, argument=None, split="train"):
        self.argument, self.split = argument, split  # "plain": no sample has geometry; "mixed": the odd ones lack it

    def __len__(self):
        return 8

    def __getitem__(self, index):
        if not 0 <= index < 8:
            raise IndexError(index)
        rgb, depth, meta = scene(index, self.split)
        if self.argument == "plain" or (self.argument == "mixed" and index % 2):
            meta = {"id": meta["id"], "focal": meta["focal"]}
        if self.argument == "mixed" and index % 4 == 2:
            del meta["intrinsics"]
        return Sample(rgb, depth, meta)


def f32(values):
    return np.asarray(values, np.float32).astype(np.float64)


# ----------------------------------------------------------------------------------------- TFRecords


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("geometry") / "scenes"
    tools.convert(SPEC, out, shard_size=3, workers=1)
    return out


def test_tfrecords_round_trip_the_geometric_ground_truth(converted):
    back = open_source(f"tfrecord:{converted}")
    assert len(back) == 8
    for index in range(8):
        rgb, depth, meta = scene(index)
        sample = back[index]
        np.testing.assert_array_equal(sample.rgb, rgb)
        got = sample.meta
        assert got["edges"].dtype == bool and np.array_equal(got["edges"], meta["edges"])
        assert got["edges"].sum() == meta["edges"].sum() > 0
        assert got["plane_ids"].dtype == np.int32 and np.array_equal(got["plane_ids"], meta["plane_ids"])
        assert sorted(got["plane_normals"]) == [1, 2] and sorted(got["plane_equations"]) == [1, 2]
        for pid in (1, 2):  # float32 lists: exactly the float32 roundings of what was written
            np.testing.assert_array_equal(got["plane_normals"][pid], f32(meta["plane_normals"][pid]))
            np.testing.assert_array_equal(got["plane_equations"][pid], f32(meta["plane_equations"][pid]))
        assert got["plane_normals"][2][1] != 0.6 and got["plane_normals"][2][1] == pytest.approx(0.6, abs=1e-7)
        assert got["plane_types"] == {1: "wall", 2: "floor"}
        assert isinstance(got["intrinsics"], tuple) and got["intrinsics"] == tuple(f32(INTRINSICS))
        # the evaluator takes the read-back sample's ground truth as it takes the original's
        truth = geometry.ground_truth_from_meta(got)
        assert sorted(truth) == ["edges", "intrinsics", "plane_ids", "plane_normals"]
    prediction = depth[..., 0] * 1.1 + 0.01 * np.arange(W)[None, :]
    original, read_back = geometry.GeometryEvaluator(), geometry.GeometryEvaluator()
    original.add(prediction, depth[..., 0], **geometry.ground_truth_from_meta(meta))
    read_back.add(prediction, back[7].depth[..., 0], **geometry.ground_truth_from_meta(back[7].meta))
    for key, value in original.result().items():
        assert read_back.result()[key] == pytest.approx(value, rel=1e-5, nan_ok=True), key
    assert math.isfinite(read_back.result()["dbe_acc"])


def test_training_reader_ignores_the_geometry_and_verify_decodes_it(converted):
    items = list(tfrecord_dataset(converted).as_numpy_iterator())
    assert len(items) == 8 and all(len(item) == 2 for item in items)
    for index, (rgb, depth) in enumerate(items):
        expected_rgb, expected_depth, _ = scene(index)
        np.testing.assert_array_equal(rgb, expected_rgb)
        np.testing.assert_array_equal(depth, expected_depth)
    assert tools.verify(converted)["problems"] == []


def test_the_manifest_counts_the_records_that_carry_geometry(converted, tmp_path):
    section = read_manifest(converted)["splits"]["train"]
    assert section["geometry"] == {"edges": 8, "planes": 8, "intrinsics": 8}
    assert [shard["geometry"] for shard in section["shards"]] == [{"edges": n, "planes": n, "intrinsics": n} for n in (3, 3, 2)]
    plain = tools.convert(f"{SPEC}:plain", tmp_path / "plain", shard_size=4, workers=1)
    assert plain["geometry"] == {} and read_manifest(tmp_path / "plain")["splits"]["train"]["geometry"] == {}
    mixed = tools.convert(f"{SPEC}:mixed", tmp_path / "mixed", shard_size=4, workers=1)
    assert mixed["geometry"] == {"edges": 4, "planes": 4, "intrinsics": 2}
    manifest = read_manifest(tmp_path / "mixed")
    shards = manifest["splits"]["train"]["shards"]
    assert [shard["geometry"] for shard in shards] == [{"edges": 2, "planes": 2, "intrinsics": 1}] * 2
    # shards kept from a manifest that did not count the geometry are counted from their records
    for section in (manifest["splits"]["train"], *shards):
        del section["geometry"]
    write_manifest(tmp_path / "mixed", manifest)
    again = tools.convert(f"{SPEC}:mixed", tmp_path / "mixed", shard_size=4, workers=1)
    assert again["kept"] == [shard["file"] for shard in shards] and again["geometry"] == mixed["geometry"]
    assert [s["geometry"] for s in read_manifest(tmp_path / "mixed")["splits"]["train"]["shards"]] == \
        [{"edges": 2, "planes": 2, "intrinsics": 1}] * 2
    # verify compares the counts with the records
    assert tools.verify(tmp_path / "mixed")["problems"] == []
    manifest = read_manifest(tmp_path / "mixed")
    manifest["splits"]["train"]["shards"][1]["geometry"]["edges"] = 3
    write_manifest(tmp_path / "mixed", manifest)
    problems = tools.verify(tmp_path / "mixed")["problems"]
    assert len(problems) == 1 and "geometry counts" in problems[0]["problem"] and problems[0]["shard"] == shards[1]["file"]


def test_a_sample_without_geometry_encodes_as_before_and_reads_without_it():
    rgb, depth, _ = scene(0)
    record = encode_sample(Sample(rgb, depth, {"id": "old", "focal": 5.0}), 1000.0)
    features = decode_example(record)
    assert sorted(features) == ["depth", "depth_scale", "focal", "height", "id", "rgb", "width"]
    # the records older versions wrote: exactly these features, in this order
    old = encode_example({name: value[0] for name, value in features.items()})
    assert old == record
    sample = decode_record(old)
    assert sorted(sample.meta) == ["focal", "id"] and geometry.ground_truth_from_meta(sample.meta) == {}


def test_converted_shards_without_geometry_still_read(tmp_path):
    tools.convert(f"{SPEC}:plain", tmp_path / "plain", shard_size=4, workers=1)
    back = open_source(f"tfrecord:{tmp_path / 'plain'}")
    assert [sorted(back[i].meta) for i in (0, 7)] == [["focal", "id", "record", "shard"]] * 2
    assert tools.stats(f"tfrecord:{tmp_path / 'plain'}")["geometry"] is None


def test_synthetic_scenes_round_trip(tmp_path):
    spec = "synthetic:2?size=24x32"
    tools.convert(spec, tmp_path / "synthetic", workers=1)
    source, back = open_source(spec), open_source(f"tfrecord:{tmp_path / 'synthetic'}")
    for index in range(2):
        meta, got = source[index].meta, back[index].meta
        assert meta["edges"].shape == (24, 32) and len(meta["plane_normals"]) >= 1  # the source gives it
        assert np.array_equal(got["edges"], meta["edges"]) and np.array_equal(got["plane_ids"], meta["plane_ids"])
        assert sorted(got["plane_normals"]) == sorted(int(k) for k in meta["plane_normals"])
        for pid, normal in meta["plane_normals"].items():
            np.testing.assert_array_equal(got["plane_normals"][int(pid)], f32(normal))
            np.testing.assert_array_equal(got["plane_equations"][int(pid)], f32(meta["plane_equations"][pid]))
        assert got["intrinsics"] == tuple(f32(meta["intrinsics"]))
        assert got["plane_types"] == meta["plane_types"] and set(meta["plane_types"].values()) <= {"wall", "table", "floor"}


def test_bad_geometry_is_a_data_error():
    rgb, depth, meta = scene(0)
    with pytest.raises(DataError, match="edge map shape"):
        encode_sample(Sample(rgb, depth, {**meta, "edges": meta["edges"][:, :10]}), 1000.0)
    with pytest.raises(DataError, match="0..65535"):
        encode_sample(Sample(rgb, depth, {**meta, "plane_ids": meta["plane_ids"] * 70000}), 1000.0)
    with pytest.raises(DataError, match="plane_normals"):
        encode_sample(Sample(rgb, depth, {**meta, "plane_normals": {1: (0.0, 1.0)}}), 1000.0)
    with pytest.raises(DataError, match="intrinsics"):
        encode_sample(Sample(rgb, depth, {**meta, "intrinsics": (1.0, 2.0, 3.0)}), 1000.0)
    features = decode_example(encode_sample(Sample(rgb, depth, meta), 1000.0))
    features["plane_normals"] = features["plane_normals"][:-1]
    lists = ("plane_normal_ids", "plane_normals", "plane_equation_ids", "plane_equations", "plane_type_ids",
             "plane_types", "intrinsics")
    broken = encode_example({k: (v if k in lists else v[0]) for k, v in features.items()})
    with pytest.raises(DataError, match="plane_normals"):
        decode_record(broken, where="rec 3")


# ------------------------------------------------------------------------------------------ stats


def test_stats_report_edges_and_planes(converted, capsys):
    metas = [scene(i)[2] for i in range(8)]
    edge_fraction = np.mean([m["edges"].mean() for m in metas])
    shares = [np.mean(m["plane_ids"] == pid) for m in metas for pid in (1, 2)]
    plane_fraction = np.mean([np.mean(m["plane_ids"] > 0) for m in metas])
    for spec in (SPEC, f"tfrecord:{converted}"):
        report = tools.stats(spec)["geometry"]
        assert report["samples_with_edges"] == report["samples_with_planes"] == 8
        assert report["samples_with_intrinsics"] == 8 and report["planes"] == 16
        assert report["planes_per_image"] == 2.0
        assert report["edge_pixel_fraction"] == pytest.approx(edge_fraction, rel=1e-12)
        assert report["plane_pixel_fraction"] == pytest.approx(plane_fraction, rel=1e-12)
        assert report["plane_share_mean"] == pytest.approx(np.mean(shares), rel=1e-12)
    # the scenes are what the test thinks: a 10x16 box's border ring (48 px), planes everywhere else
    assert edge_fraction == 48 / (H * W) and plane_fraction == (H * W - 160) / (H * W)
    assert main(["data", "stats", SPEC, "--limit", "2", "--no-progress"]) == 0
    text = capsys.readouterr().out
    two = [scene(i)[2] for i in range(2)]
    assert f"edges in 2 of 2 samples (mean edge-pixel fraction {np.mean([m['edges'].mean() for m in two]):.4f})" in text
    assert "planes in 2 of 2 samples: 2.00 planes per image" in text
    assert tools.stats(f"{SPEC}:plain")["geometry"] is None
    assert "geometric" not in tools.format_stats(tools.stats(f"{SPEC}:plain", limit=1))


# --------------------------------------------------------------------------------------- training


def test_geometry_validation_only_with_ground_truth():
    from hqdepth.training import recipes
    from hqdepth.training.callbacks import GeometryValidation
    from hqdepth.training.trainer import geometry_validation, geometry_validation_samples

    config = recipes.resolve_config("fcn_ssim_mse", sets=["evaluation.geometry_samples=3"])
    assert geometry_validation(config, f"{SPEC}:plain", 100, print) is None  # no edges: nothing is derived
    assert geometry_validation(config, SPEC, 0, print) is None  # no validation
    callback = geometry_validation(config, SPEC, 2, lambda *a: None)
    assert isinstance(callback, GeometryValidation) and len(callback.samples) == 2  # min(3, one validation)
    assert callback.evaluator().plane_min_pixels is None  # 5 % of each frame (the official count on 640x480)
    assert len(geometry_validation(config, SPEC, 100, lambda *a: None).samples) == 3
    off = recipes.resolve_config("fcn_ssim_mse", sets=["evaluation.geometry_samples=0"])
    assert geometry_validation(off, SPEC, 100, print) is None
    with pytest.raises(ConfigError, match="geometry_samples"):
        recipes.resolve_config("fcn_ssim_mse", sets=["evaluation.geometry_samples=-1"])
    # samples with planes but no edges: the boundary errors are not added (not 0, not NaN)
    import keras

    samples = geometry_validation_samples(config, SPEC, 2)
    assert [truth["edges"].sum() for *_, truth in samples] == [scene(i, "val")[2]["edges"].sum() for i in range(2)]
    no_edges = [(rgb, gt, focal, {k: v for k, v in truth.items() if k != "edges"}) for rgb, gt, focal, truth in samples]
    inputs = keras.Input((H, W, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="softplus")(inputs))
    values = GeometryValidation(no_edges).compute(model)
    assert sorted(values) == ["dde_0", "dde_minus", "dde_plus", "pe_orie", "pe_plan"]
    assert 0 <= values["dde_0"] <= 1
    logs = {"loss": 1.0}
    GeometryValidation(samples).on_epoch_end(0, logs)  # no validation in these logs: nothing added
    assert logs == {"loss": 1.0}


def test_training_validation_logs_the_ibims_metrics(tmp_path):
    import csv

    import keras

    from hqdepth.depth_model import DepthModel
    from hqdepth.model_testing import predict_depth
    from hqdepth.training import recipes
    from hqdepth.training.trainer import train

    sets = ["data.input_size=[32, 48]", "train.batch_size=2", "train.max_steps=2", "train.validation_steps=2",
            "train.image_samples=1", "train.test_evaluation=false", "evaluation.protocol=custom",
            "data.augmentation=none"]
    config = recipes.resolve_config("fcn_ssim_mse", sets=sets)
    keras.utils.set_random_seed(0)
    lines = []
    results = train(config, SPEC, tmp_path / "run", print_fn=lines.append, verbose=0)
    assert any("iBims geometric metrics at each validation on 4 validation samples" in line for line in lines)
    logs = results["final_logs"]
    for key in ("val_dbe_acc", "val_dbe_comp", "val_pe_plan", "val_pe_orie", "val_dde_0", "val_dde_minus",
                "val_dde_plus"):
        assert key in logs, key
    assert math.isfinite(logs["val_dbe_acc"]) and 0 <= logs["val_dbe_acc"] <= 10
    assert math.isfinite(logs["val_dbe_comp"]) and 0 <= logs["val_dbe_comp"] <= 10
    assert math.isfinite(logs["val_pe_plan"]) and math.isfinite(logs["val_pe_orie"])  # planes >= 5 % of 32x48
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert float(rows[-1]["val_dbe_acc"]) == pytest.approx(logs["val_dbe_acc"], rel=1e-6)
    # the same numbers from the saved final model (the only validation is at the last step)
    model = DepthModel(tmp_path / "run" / "model.keras")
    evaluator = geometry.GeometryEvaluator()
    source = open_source(SPEC, split="val")
    for index in range(4):
        sample = source[index]
        evaluator.add(predict_depth(model, sample.rgb, focal=sample.meta["focal"]), sample.depth[..., 0],
                      **geometry.ground_truth_from_meta(sample.meta))
    expected = evaluator.result()
    for key in ("dbe_acc", "dbe_comp", "dde_0", "dde_minus", "dde_plus", "pe_plan", "pe_orie"):
        assert logs[f"val_{key}"] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key


def test_a_run_folder_from_before_geometry_samples_continues(tmp_path):
    import yaml

    from hqdepth.training import recipes
    from hqdepth.training.trainer import prepare_run_folder

    config = recipes.resolve_config("fcn_ssim_mse")
    prepare_run_folder(tmp_path, config)
    (tmp_path / "backup").mkdir()  # a run that took steps (a folder holding only its config takes any config)
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del saved["evaluation"]["geometry_samples"]  # as a run started before the setting existed wrote it
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    prepare_run_folder(tmp_path, config)  # the setting at its default: the same run
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    changed = recipes.resolve_config("fcn_ssim_mse", sets=["evaluation.geometry_samples=0"])
    with pytest.raises(ConfigError, match="another config .*evaluation.geometry_samples"):
        prepare_run_folder(tmp_path, changed)


def test_metrics_csv_keeps_columns_aligned_when_a_resumed_run_logs_new_metrics(tmp_path):
    """A run started before geometry validation (and the step column) existed logs val_dbe_acc when resumed: the
    CSV is rewritten once with the union of the columns, old rows "NA" in the new ones, and every row's values stay
    under their names (Keras' CSVLogger would append the new columns' values under the old header). The step
    column holds the optimizer's steps; the logs the other callbacks see do not get it."""
    import csv
    from types import SimpleNamespace

    from hqdepth.training.callbacks import MetricsCSV

    def logger_at(steps):
        logger = MetricsCSV(str(path), append=True)
        logger.set_model(SimpleNamespace(optimizer=SimpleNamespace(iterations=steps)))
        logger.on_train_begin()
        return logger

    path = tmp_path / "metrics.csv"
    path.write_text("epoch,loss,val_loss\n0,2.5,3.0\n")
    logger = logger_at(10)
    logs = {"loss": 1.5, "val_loss": 2.0, "val_dbe_acc": 4.25}
    logger.on_epoch_end(1, logs)
    assert "step" not in logs
    logger.model.optimizer.iterations = 17
    logger.on_epoch_end(2, {"loss": 1.25, "val_loss": 1.75, "val_dbe_acc": 3.5})
    logger.on_train_end()
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["epoch", "loss", "step", "val_dbe_acc", "val_loss"]
    assert rows[0] == {"epoch": "0", "loss": "2.5", "step": "NA", "val_dbe_acc": "NA", "val_loss": "3.0"}
    assert rows[1] == {"epoch": "1", "loss": "1.5", "step": "10", "val_dbe_acc": "4.25", "val_loss": "2.0"}
    assert rows[2]["val_dbe_acc"] == "3.5" and rows[2]["val_loss"] == "1.75" and rows[2]["step"] == "17"
    # same columns: appended as Keras does, nothing rewritten
    same = logger_at(20)
    same.on_epoch_end(3, {"loss": 1.0, "val_loss": 1.5, "val_dbe_acc": 3.0})
    same.on_train_end()
    assert [(row["epoch"], row["step"]) for row in csv.DictReader(path.open())] == [
        ("0", "NA"), ("1", "10"), ("2", "17"), ("3", "20")]
