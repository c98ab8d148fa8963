"""`hqdepth predict` and the Python API (`hqdepth.load`, `hqdepth.predict`): model resolution, image reading
(EXIF, grey, RGBA, 16-bit, corrupt), resizing, and the output files decoded back (16-bit PNG, .npy, PLY, colour)."""

import json
import math
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from png_encoder import png_bytes
from predict_helpers import exif_jpeg, hqmd_model, read_ply, tiny_model

import hqdepth
from hqdepth.cli import main
from hqdepth.errors import DataError
from hqdepth.predict import DepthModel, free_size, read_image

NYU = dict(fx=518.8579, fy=519.46961, cx=325.58245, cy=253.73617, width=640, height=480)


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def reference(keras_model, rgb, size):
    """Independent path: TF bilinear resize (half-pixel, no antialias) to `size`, the Keras model, resize back."""
    import tensorflow as tf

    image = tf.constant(np.asarray(rgb, np.float32)[None])
    height, width = rgb.shape[:2]
    x = image if (height, width) == tuple(size) else tf.image.resize(image, size, method="bilinear")
    depth = keras_model(x, training=False)
    if tuple(depth.shape[1:3]) != (height, width):
        depth = tf.image.resize(depth, (height, width), method="bilinear")
    return np.asarray(depth)[0, ..., 0]


def write_config(folder, input_size=(24, 32), name="tiny-recipe"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(
        f"name: {name}\nmodel:\n  name: tiny\n  options: {{max_depth: 8.0}}\n"
        f"data:\n  input_size: [{input_size[0]}, {input_size[1]}]\nevaluation: {{max_depth: 10.0}}\n")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny fixed-size and free-size models, and a run folder with best (fixed), final and latest (other)."""
    root = tmp_path_factory.mktemp("models")
    fixed, other, free = tiny_model((24, 32, 3), seed=3), tiny_model((24, 32, 3), seed=5, max_depth=5.0), \
        tiny_model((None, None, 3), seed=4)
    fixed.save(root / "fixed.keras")
    free.save(root / "free.keras")
    run = root / "run"
    write_config(run)
    (run / "checkpoints").mkdir()
    fixed.save(run / "checkpoints" / "best.keras")
    other.save(run / "checkpoints" / "latest.keras")
    other.save(run / "model.keras")
    return {"root": root, "run": run, "fixed": fixed, "other": other, "free": free}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Four synthetic rooms at 64x96 as PNG files: two in photos/, two in photos/sub/."""
    from hqdepth.data import open_source

    root = tmp_path_factory.mktemp("scenes")
    source = open_source("synthetic:4?size=64x96", split="test")
    images = {}
    for index in range(4):
        rgb = source[index].rgb
        path = root / "photos" / ("sub" if index >= 2 else "") / f"scene{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(rgb))
        images[("sub/" if index >= 2 else "") + f"scene{index}"] = rgb
    return root / "photos", images


# ---------------------------------------------------------------------------------------------- package


def test_import_is_light_predict_is_callable_and_keras_objects_register():
    code = (
        "import sys, hqdepth\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'cv2', 'jax') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import hqdepth.predict as p\n"
        "assert not [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "from hqdepth import predict\n"
        "assert p is predict is hqdepth.predict and callable(hqdepth.predict) and callable(hqdepth.load)\n"
        "import hqdepth.cli\n"
        "assert 'tensorflow' not in sys.modules\n"
        # register_keras_objects registers what every module using register_keras_serializable registers
        "import importlib, keras, pathlib\n"
        "hqdepth.register_keras_objects()\n"
        "ours = lambda: {k for k in keras.saving.get_custom_objects() if k.startswith('hqdepth>')}\n"
        "registered = ours()\n"
        "root = pathlib.Path(hqdepth.__file__).parent\n"
        "for path in root.rglob('*.py'):\n"
        "    if 'register_keras_serializable' in path.read_text():\n"
        "        importlib.import_module('.'.join(('hqdepth',) + path.relative_to(root).with_suffix('').parts))\n"
        "assert len(registered) > 20 and registered == ours(), sorted(ours() - registered)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_cli_lists_commands_in_order_and_skips_unwritten_ones(monkeypatch, capsys):
    from hqdepth import cli

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    listed = [name for name in cli.COMMANDS if f"    {name} " in text or f"    {name}\n" in text]
    assert {"predict", "export", "models", "evaluate", "data"} <= set(listed)
    positions = [text.index(f"    {name}") for name in listed]
    assert positions == sorted(positions)
    monkeypatch.setattr(cli, "COMMANDS", ["models", "no_such_command_yet", "predict"])
    assert cli.build_parser().parse_args(["models"]).command == "models"

    def broken(name):
        raise ModuleNotFoundError("No module named 'yaml_missing'", name="yaml_missing")

    monkeypatch.setattr(cli.importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError):  # a missing dependency inside a command is not hidden
        cli.build_parser()


# ----------------------------------------------------------------------------------------------- models


def test_run_folder_choice_and_config(models, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(models["run"], run)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    for removed, expected, what in ((None, "fixed", "best checkpoint"), ("checkpoints/best.keras", "other", "final"),
                                    ("model.keras", "other", "latest checkpoint")):
        if removed:
            (run / removed).unlink()
        model = hqdepth.load(run)
        assert what in model.note and "run" in model.note
        assert model.name == "tiny-recipe" and model.input_size == (24, 32)
        assert model.max_depth == (8.0 if expected == "fixed" else 5.0)  # from the ScaledSigmoid head
        np.testing.assert_allclose(hqdepth.predict(model, rgb), reference(models[expected], rgb, (24, 32)),
                                   rtol=0, atol=1e-5)
    (run / "checkpoints" / "latest.keras").unlink()
    with pytest.raises(DataError, match="run folder without a model"):
        hqdepth.load(run)
    # A checkpoint file inside a run folder takes the run's config.
    model = hqdepth.load(models["run"] / "checkpoints" / "best.keras")
    assert model.name == "tiny-recipe" and model.config["data"]["input_size"] == [24, 32]
    with pytest.raises(DataError, match="model not found"):
        hqdepth.load(tmp_path / "missing.keras")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a SavedModel nor a training run folder"):
        hqdepth.load(tmp_path / "empty")


def test_free_size_rule_and_config_size(models, tmp_path):
    assert free_size(289, 385) == (289, 385)
    assert free_size(480, 640) == (481, 641)
    assert free_size(50, 70) == (65, 65)
    assert free_size(10, 12) == (33, 33)
    assert free_size(3024, 4032) == (769, 1025)  # longer side scaled to 1024 first
    for height, width in ((17, 999), (1000, 1001), (333, 4444)):
        got = free_size(height, width)
        scale = min(1.0, 1024 / max(height, width))
        for side, value in zip((height, width), got):
            assert (value - 1) % 32 == 0 and abs(value - 1 - (side * scale - 1)) <= 16
    rgb = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    model = hqdepth.load(models["root"] / "free.keras")
    assert model.input_size is None and model.run_size(50, 70) == (65, 65)
    np.testing.assert_allclose(hqdepth.predict(model, rgb), reference(models["free"], rgb, (65, 65)), atol=1e-5)
    write_config(tmp_path / "run", input_size=(40, 48))
    shutil.copy(models["root"] / "free.keras", tmp_path / "run" / "model.keras")
    model = hqdepth.load(tmp_path / "run")
    assert model.run_size(50, 70) == (40, 48)
    np.testing.assert_allclose(hqdepth.predict(model, rgb), reference(models["free"], rgb, (40, 48)), atol=1e-5)


def test_api_inputs(models, tmp_path):
    rng = np.random.default_rng(2)
    model = hqdepth.load(models["root"] / "fixed.keras")
    batch = rng.integers(0, 256, (3, 30, 44, 3), dtype=np.uint8)
    depth = hqdepth.predict(model, batch, batch_size=2)
    assert depth.shape == (3, 30, 44) and depth.dtype == np.float32
    for item, got in zip(batch, depth):
        np.testing.assert_allclose(got, reference(models["fixed"], item, (24, 32)), atol=1e-5)
    (tmp_path / "a.png").write_bytes(png_bytes(batch[0]))
    one = hqdepth.predict(str(models["root"] / "fixed.keras"), tmp_path / "a.png")  # a path for both
    np.testing.assert_allclose(one, depth[0], atol=1e-5)
    grey = batch[1, ..., 0]
    listed = hqdepth.predict(models["fixed"], [tmp_path / "a.png", grey, batch[2].astype(np.float32),
                                               rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)])
    assert [d.shape for d in listed] == [(30, 44), (30, 44), (30, 44), (24, 32)]
    np.testing.assert_allclose(listed[1], reference(models["fixed"], np.stack([grey] * 3, -1), (24, 32)), atol=1e-5)
    np.testing.assert_allclose(listed[2], depth[2], atol=1e-5)
    with pytest.raises(DataError, match="expected an image"):
        hqdepth.predict(model, np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(DataError, match="file not found"):
        hqdepth.predict(model, tmp_path / "nope.png")


# ----------------------------------------------------------------------------------------------- images


def test_read_image_exif_grey_rgba_16bit_corrupt(tmp_path):
    rng = np.random.default_rng(3)
    rgb = np.zeros((24, 40, 3), np.uint8)
    rgb[:8, :12] = (250, 30, 30)  # a red block top-left: a rotation moves it
    rgb[12:, 20:, 1] = np.linspace(0, 240, 20, dtype=np.uint8)  # a smooth ramp (JPEG keeps it well)
    raw_path = tmp_path / "raw.jpg"
    raw_path.write_bytes(exif_jpeg(rgb, 1))
    raw = read_image(raw_path)
    assert raw.shape == (24, 40, 3) and np.abs(raw.astype(int) - rgb).mean() < 6
    # EXIF orientation 3 = 180 degrees, 6 = rotate 90 clockwise to view, 8 = 90 counter-clockwise.
    for orientation, turn in ((3, lambda a: np.rot90(a, 2)), (6, lambda a: np.rot90(a, -1)),
                              (8, lambda a: np.rot90(a, 1))):
        path = tmp_path / f"o{orientation}.jpg"
        path.write_bytes(exif_jpeg(rgb, orientation))
        assert np.array_equal(read_image(path), turn(raw)), orientation
    grey = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    (tmp_path / "grey.png").write_bytes(png_bytes(grey))
    assert np.array_equal(read_image(tmp_path / "grey.png"), np.stack([grey] * 3, axis=-1))
    colour = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    rgba = np.concatenate([colour, rng.integers(0, 256, (20, 30, 1), dtype=np.uint8)], axis=-1)
    (tmp_path / "rgba.png").write_bytes(png_bytes(rgba))
    assert np.array_equal(read_image(tmp_path / "rgba.png"), colour)  # alpha dropped
    deep = colour.astype(np.int32) * 257 + rng.integers(-128, 129, colour.shape)
    (tmp_path / "deep.png").write_bytes(png_bytes(np.clip(deep, 0, 65535).astype(np.uint16)))
    assert np.array_equal(read_image(tmp_path / "deep.png"), colour)  # round(v / 257)
    from hqdepth.images import depth_to_png16

    png, clipped = depth_to_png16(np.array([[2.0, 1e-4, 0.0, -1.0, np.nan, np.inf, 70.0, 0.0014]]), 1000)
    assert png.tolist() == [[2000, 1, 0, 0, 0, 0, 65535, 1]] and clipped == 1  # 0 only where there is no depth
    (tmp_path / "depth.png").write_bytes(png_bytes(rng.integers(0, 65536, (20, 30), dtype=np.uint16)))
    with pytest.raises(DataError, match="depth.png is a 16-bit grey image, as depth maps are stored"):
        read_image(tmp_path / "depth.png")
    grey16 = rng.integers(0, 65536, (20, 30), dtype=np.uint16)  # a black-and-white photo stored as 16-bit RGB
    (tmp_path / "grey16rgb.png").write_bytes(png_bytes(np.stack([grey16] * 3, axis=-1)))
    assert np.array_equal(read_image(tmp_path / "grey16rgb.png"),
                          np.stack([((grey16.astype(np.uint32) + 128) // 257).astype(np.uint8)] * 3, axis=-1))
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" + bytes(range(256)))
    with pytest.raises(DataError, match="cannot decode"):
        read_image(tmp_path / "corrupt.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        read_image(tmp_path / "empty.png")


def test_cli_odd_inputs_corrupt_skipped_nonzero_exit(models, tmp_path, capsys):
    rng = np.random.default_rng(4)
    photos = tmp_path / "photos"
    photos.mkdir()
    tall = rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)
    (photos / "exif6.jpg").write_bytes(exif_jpeg(tall, 6))
    grey = rng.integers(0, 256, (30, 44), dtype=np.uint8)
    (photos / "grey.png").write_bytes(png_bytes(grey))
    colour = rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)
    (photos / "rgba.png").write_bytes(png_bytes(np.concatenate([colour, np.full((30, 44, 1), 9, np.uint8)], -1)))
    (photos / "deep.png").write_bytes(png_bytes(colour.astype(np.uint16) * 257))
    (photos / "corrupt.jpg").write_bytes(b"garbage" * 50)
    (photos / "depth.png").write_bytes(png_bytes(rng.integers(0, 65536, (30, 44), dtype=np.uint16)))  # beside them
    (photos / "notes.txt").write_text("not an image, not listed")
    out = tmp_path / "out"
    code, stdout, err = run_cli(["predict", str(models["root"] / "fixed.keras"), str(photos), "--out", str(out),
                                 "--quiet", "--batch-size", "3"], capsys)
    assert code == 1
    assert "corrupt.jpg" in err and "cannot decode" in err and "notes.txt" not in err
    assert "1 16-bit grey image(s), as depth maps are stored, were not taken for photos" in err
    summary = json.loads((out / "predictions.json").read_text())
    assert [s["input"] for s in summary["skipped"]] == [str(photos / "corrupt.jpg")]
    assert summary["not_photos"] == [str(photos / "depth.png")]
    assert sorted(r["input"].split("/")[-1] for r in summary["images"]) == ["deep.png", "exif6.jpg", "grey.png",
                                                                             "rgba.png"]
    fixed = models["fixed"]
    exif = np.load(out / "exif6_depth.npy")
    assert exif.shape == (44, 30)  # shown upright: the EXIF rotation was applied before predicting
    np.testing.assert_allclose(exif, reference(fixed, read_image(photos / "exif6.jpg"), (24, 32)), atol=1e-5)
    np.testing.assert_allclose(np.load(out / "grey_depth.npy"), reference(fixed, np.stack([grey] * 3, -1), (24, 32)),
                               atol=1e-5)
    for name in ("rgba", "deep"):  # alpha dropped; 16-bit = the 8-bit picture
        np.testing.assert_allclose(np.load(out / f"{name}_depth.npy"), reference(fixed, colour, (24, 32)), atol=1e-5)
    # Missing files and empty globs are reported too; outputs for the rest are written.
    code, _, err = run_cli(["predict", str(models["root"] / "fixed.keras"), str(photos / "grey.png"),
                            str(tmp_path / "missing.png"), str(tmp_path / "*.webp"), "--out", str(tmp_path / "o2"),
                            "--quiet"], capsys)
    assert code == 1 and "missing.png: file not found" in err and "no image file matches" in err
    assert (tmp_path / "o2" / "grey_depth.npy").is_file()


def test_cli_empty_folder_and_bad_arguments(models, tmp_path, capsys):
    model = str(models["root"] / "fixed.keras")
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["predict", model, str(tmp_path / "empty"), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "has no image files" in err
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    (tmp_path / "nested" / "deeper" / "a.png").write_bytes(png_bytes(np.zeros((8, 8, 3), np.uint8)))
    code, _, err = run_cli(["predict", model, str(tmp_path / "nested"), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "--recursive" in err
    code, _, err = run_cli(["predict", model, str(tmp_path / "nothing.png"), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "no image to predict" in err
    # said before the model is loaded (seconds): a model path that does not exist is not even looked at
    code, _, err = run_cli(["predict", str(tmp_path / "absent.keras"), str(tmp_path / "empty"), "--out",
                            str(tmp_path / "o")], capsys)
    assert code == 2 and "has no image files" in err, err
    image = str(tmp_path / "nested" / "deeper" / "a.png")
    for extra, message in ((["--range", "5,1"], "MIN < MAX"), (["--range", "x"], "MIN,MAX"),
                           (["--fy", "500"], "need --fx"), (["--camera", "nyu", "--fx", "500"], "not both"),
                           (["--batch-size", "0"], "batch size"), (["--png-scale", "0"], "PNG scale"),
                           (["--input-size", "33x33"], "fixed input size")):
        code, _, err = run_cli(["predict", model, image, "--out", str(tmp_path / "o"), "--quiet", *extra], capsys)
        assert code == 2 and message in err, (extra, err)
    code, _, err = run_cli(["predict", str(tmp_path / "nope.keras"), image, "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "model not found" in err


# ---------------------------------------------------------------------------------------------- outputs


def scaled_nyu(height, width):
    sx, sy = width / NYU["width"], height / NYU["height"]
    return NYU["fx"] * sx, NYU["fy"] * sy, (NYU["cx"] + 0.5) * sx - 0.5, (NYU["cy"] + 0.5) * sy - 0.5


def check_ply(path, depth, rgb, fx, fy, cx, cy, step=1):
    """Every point reprojects onto its pixel with the intrinsics, at that pixel's depth and colour."""
    header, vertices = read_ply(path)
    assert any("metres" in line for line in header)
    x, y, z = (vertices[k].astype(np.float64) for k in ("x", "y", "z"))
    u, v = fx * x / z + cx, fy * y / z + cy
    cols, rows = np.rint(u).astype(int), np.rint(v).astype(int)
    assert np.abs(u - cols).max() < 1e-3 and np.abs(v - rows).max() < 1e-3
    assert np.all(cols % step == 0) and np.all(rows % step == 0)
    assert len(vertices) == len(range(0, depth.shape[0], step)) * len(range(0, depth.shape[1], step))
    assert len(set(zip(rows.tolist(), cols.tolist()))) == len(vertices)
    np.testing.assert_array_equal(vertices["z"], depth[rows, cols])
    colours = np.stack([vertices["red"], vertices["green"], vertices["blue"]], -1)
    np.testing.assert_array_equal(colours, rgb[rows, cols])


def test_cli_outputs_decode_back(models, scenes, tmp_path, capsys):
    photos, images = scenes
    out = tmp_path / "out"
    code, stdout, err = run_cli(["predict", str(models["run"]), str(photos), "--recursive", "--out", str(out),
                                 "--camera", "nyu", "--colormap", "gray", "--range", "1,6", "--side-by-side",
                                 "--quiet"], capsys)
    assert code == 0, err
    assert "best checkpoint" in stdout and "wrote 4 prediction(s)" in stdout
    # the NYU camera scaled to 64x96 photos (aspect 1.5, not 4:3) stretches the clouds: said once
    assert err.count("warning: the intrinsics of the NYU Depth v2 RGB camera belong to 640x480 frames; scaled to "
                     "96x64 images (another aspect ratio) they stretch the point clouds") == 1, err
    fixed = models["fixed"]
    for stem, rgb in images.items():
        depth = np.load(out / f"{stem}_depth.npy")
        assert depth.dtype == np.float32 and depth.shape == (64, 96)
        np.testing.assert_allclose(depth, reference(fixed, rgb, (24, 32)), rtol=0, atol=1e-5)
        png = cv2.imread(str(out / f"{stem}_depth.png"), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint16 and png.shape == (64, 96)
        assert np.abs(png / 1000.0 - depth).max() <= 0.0005 + 1e-6  # millimetres: half a millimetre at most
        picture = cv2.cvtColor(cv2.imread(str(out / f"{stem}_depth_color.png")), cv2.COLOR_BGR2RGB)
        assert picture.shape == (64, 192, 3)
        np.testing.assert_array_equal(picture[:, :96], rgb)  # photo | depth
        grey = np.clip((depth.astype(np.float64) - 1.0) / 5.0, 0, 1) * 255
        assert np.abs(picture[:, 96:, 0].astype(float) - grey).max() <= 0.5 + 1e-3
        assert np.array_equal(picture[:, 96:, 0], picture[:, 96:, 2])
        check_ply(out / f"{stem}.ply", depth, rgb, *scaled_nyu(64, 96))
    summary = json.loads((out / "predictions.json").read_text())
    assert len(summary["images"]) == 4 and not summary["skipped"]
    assert summary["images"][0]["intrinsics"]["fx"] == pytest.approx(518.8579 * 96 / 640)
    assert summary["model"]["name"] == "tiny-recipe"

    # KITTI PNG scale, a colour map with a per-image range, given intrinsics, a PLY step; glob input.
    out2 = tmp_path / "out2"
    code, _, err = run_cli(["predict", str(models["root"] / "fixed.keras"), str(photos / "scene*.png"),
                            "--out", str(out2), "--png-scale", "256", "--colormap", "turbo",
                            "--fx", "80", "--cy", "30.5", "--ply-step", "3", "--quiet"], capsys)
    assert code == 0, err
    lut = cv2.cvtColor(cv2.applyColorMap(np.arange(256, dtype=np.uint8)[None], cv2.COLORMAP_TURBO),
                       cv2.COLOR_BGR2RGB)[0]
    for stem in ("scene0", "scene1"):
        depth = np.load(out2 / f"{stem}_depth.npy")
        png = cv2.imread(str(out2 / f"{stem}_depth.png"), cv2.IMREAD_UNCHANGED)
        assert np.abs(png / 256.0 - depth).max() <= 0.5 / 256 + 1e-6
        picture = cv2.cvtColor(cv2.imread(str(out2 / f"{stem}_depth_color.png")), cv2.COLOR_BGR2RGB)
        assert picture.shape == (64, 96, 3)
        near, far = np.unravel_index(depth.argmin(), depth.shape), np.unravel_index(depth.argmax(), depth.shape)
        np.testing.assert_array_equal(picture[near], lut[0])  # per-image range: min -> first colour
        np.testing.assert_array_equal(picture[far], lut[255])
        check_ply(out2 / f"{stem}.ply", depth, images[stem], 80.0, 80.0, 47.5, 30.5, step=3)
    assert not (out2 / "scene2_depth.npy").exists()  # the glob does not descend into sub/


def test_cli_ply_without_intrinsics_states_the_guess(models, scenes, tmp_path, capsys):
    photos, images = scenes
    code, _, err = run_cli(["predict", str(models["root"] / "fixed.keras"), str(photos / "scene0.png"), "--ply",
                            "--out", str(tmp_path), "--quiet"], capsys)
    assert code == 0 and "60-degree horizontal field of view" in err
    focal = 48.0 / math.tan(math.radians(30))
    check_ply(tmp_path / "scene0.ply", np.load(tmp_path / "scene0_depth.npy"), images["scene0"], focal, focal,
              47.5, 31.5)


def test_name_collisions(models, tmp_path, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.png").write_bytes(png_bytes(np.full((8, 8, 3), 100, np.uint8)))
    (tmp_path / "a" / "x.jpg").write_bytes(exif_jpeg(np.full((8, 8, 3), 50, np.uint8), 1))
    code, _, err = run_cli(["predict", str(models["root"] / "fixed.keras"), str(tmp_path / "a"), str(tmp_path / "b"),
                            str(tmp_path / "a" / "x.png"), "--out", str(tmp_path / "o"), "--quiet"], capsys)
    assert code == 0, err
    written = sorted(p.name for p in (tmp_path / "o").glob("*_depth.npy"))
    assert written == ["x_jpg_depth.npy", "x_png-2_depth.npy", "x_png_depth.npy"]  # a/x.png given twice: once


# -------------------------------------------------------------------------------------------- real data


def test_real_nyu_frames_with_hqmd(realdata, tmp_path, capsys):
    """hqmd_baseline_plus (random weights, 33x49 input) on NYU test frames, 640x480 outputs, NYU intrinsics."""
    model = hqmd_model((33, 49, 3))
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("name: hqmd-test\nmodel: {name: hqmd_baseline_plus, options: {max_depth: 10}}\n"
                                     "data: {input_size: [33, 49]}\n")
    model.save(run / "checkpoints" / "best.keras")
    folder = realdata / "nyu_test10"
    out = tmp_path / "out"
    # Batch 1 as the reference: oneDNN's convolutions differ by ~3e-5 m between batch sizes on this random net.
    code, stdout, err = run_cli(["predict", str(run), str(folder / "image_[0-2].png"), "--out", str(out),
                                 "--camera", "nyu", "--ply-step", "4", "--range", "0,10", "--batch-size", "1",
                                 "--quiet"], capsys)
    assert code == 0, err
    assert "max depth 10 m" in stdout and "hqmd-test" in stdout
    for k in range(3):
        rgb = cv2.cvtColor(cv2.imread(str(folder / f"image_{k}.png")), cv2.COLOR_BGR2RGB)
        depth = np.load(out / f"image_{k}_depth.npy")
        assert depth.shape == (480, 640)
        np.testing.assert_allclose(depth, reference(model, rgb, (33, 49)), rtol=0, atol=1e-5)
        assert 0 < depth.min() and depth.max() < 10 and depth.std() > 0.1
        png = cv2.imread(str(out / f"image_{k}_depth.png"), cv2.IMREAD_UNCHANGED)
        assert np.abs(png / 1000.0 - depth).max() <= 0.0005 + 1e-6
        check_ply(out / f"image_{k}.ply", depth, rgb, NYU["fx"], NYU["fy"], NYU["cx"], NYU["cy"], step=4)
    assert DepthModel(run).max_depth == 10.0
