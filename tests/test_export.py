"""`hqdepth export`: the SavedModel (uint8 any-size serving_default, float32 serve, metadata) loads and runs in a
fresh Python process that imports only TensorFlow and NumPy, and matches the Keras model at several sizes; `.keras`
and ONNX exports; CLI errors."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from predict_helpers import hqmd_model, tiny_model

import hqdepth
from hqdepth.cli import main
from hqdepth.export import export
from hqdepth.predict import DepthModel, free_size, predict_images

# Runs in a fresh interpreter: TensorFlow and NumPy only (no hqdepth; Keras only as TensorFlow itself loads it).
FRESH_PROCESS = textwrap.dedent("""
    import json, pathlib, sys
    import numpy as np
    import tensorflow as tf
    assert not [name for name in sys.modules if name.split(".")[0] == "hqdepth"]
    folder, inputs, outputs = sys.argv[1:4]
    loaded = tf.saved_model.load(folder)
    arrays = dict(np.load(inputs))
    result = {}
    for key, images in arrays.items():
        if key.startswith("uint8"):
            result[key] = loaded.signatures["serving_default"](images=tf.constant(images))["depth"].numpy()
        else:
            result[key] = loaded.signatures["serve"](images=tf.constant(images))["depth"].numpy()
    meta = {key: value.numpy() for key, value in loaded.metadata().items()}
    result["meta_max_depth"] = meta["max_depth"]
    result["meta_input_size"] = meta["input_size"]
    result["meta_json"] = np.array(meta["json"].decode())
    result["meta_name"] = np.array(meta["model_name"].decode())
    result["asset_json"] = np.array((pathlib.Path(folder) / "assets.extra" / "hqdepth.json").read_text())
    np.savez(outputs, **result)
    print("signatures", sorted(loaded.signatures))
""")


# |SavedModel - eager Keras| for HQMD (max depth 10 m): in the exported graph grappler folds each batch norm into its
# convolution (one oneDNN op), which rounds differently from the eager layers. Measured 4.4e-5 m (4e-6 of the range,
# float32 round-off through 50 layers); a wrong resize, weight or normalisation is off by centimetres.
HQMD_ROUND_OFF = 1e-4


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


@pytest.fixture(scope="module", params=["frozen", "variables"])
def hqmd_export(tmp_path_factory, request):
    """hqmd_baseline_plus at 33x49 (random weights, unsaturated head) exported as a SavedModel through the API,
    with the weights frozen into the graph (default) or kept as variables."""
    root = tmp_path_factory.mktemp("hqmd")
    model = hqmd_model((33, 49, 3))
    config = {"name": "hqmd-export-test", "model": {"name": "hqmd_baseline_plus", "options": {"max_depth": 10.0}},
              "data": {"input_size": [33, 49]}, "evaluation": {"max_depth": 10.0}}
    result = export(DepthModel.from_keras(model, config=config), root / "saved", format="saved_model",
                    freeze=request.param == "frozen")
    stored = sum(path.stat().st_size for path in (root / "saved" / "variables").glob("variables.data*"))
    weights = sum(int(np.prod(w.shape)) * 4 for w in model.weights)
    assert (stored >= weights) if request.param == "variables" else (stored < 1000), (stored, weights)
    return model, root / "saved", result


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("name: tiny-recipe\nmodel: {name: tiny, options: {max_depth: 8.0}}\n"
                                     "data: {input_size: [24, 32]}\n")
    model = tiny_model((24, 32, 3))
    model.save(run / "checkpoints" / "best.keras")
    free = tiny_model((None, None, 3), seed=4)
    free.save(root / "free.keras")
    return {"run": run, "model": model, "free": free, "root": root}


def test_savedmodel_in_fresh_tensorflow_process(hqmd_export, tmp_path):
    model, folder, result = hqmd_export
    assert result["path"] == folder and (folder / "saved_model.pb").is_file()
    from hqdepth.data import open_source

    rng = np.random.default_rng(5)
    scenes = np.stack([s.rgb for s in open_source("synthetic:2?size=64x96", split="test")])
    inputs = {
        "uint8_model_size": rng.integers(0, 256, (2, 33, 49, 3), dtype=np.uint8),
        "uint8_scenes_64x96": scenes,  # a non-model size, upsampled depth
        "uint8_small_20x30": rng.integers(0, 256, (1, 20, 30, 3), dtype=np.uint8),
        "uint8_odd_71x45": rng.integers(0, 256, (3, 71, 45, 3), dtype=np.uint8),  # other aspect ratio
        "float_serve": rng.uniform(0, 255, (2, 33, 49, 3)).astype(np.float32),
    }
    np.savez(tmp_path / "in.npz", **inputs)
    process = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(folder), str(tmp_path / "in.npz"),
                              str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "['metadata', 'serve', 'serving_default']" in process.stdout
    got = dict(np.load(tmp_path / "out.npz"))
    keras_model = DepthModel.from_keras(model)
    worst = {}
    for key, images in inputs.items():
        out = got[key]
        assert out.dtype == np.float32 and out.shape == (*images.shape[:3], 1), key
        if key.startswith("uint8"):  # same batch as the Keras call (oneDNN results depend on the batch size)
            want = np.stack(predict_images(keras_model, list(images.astype(np.float32)), batch_size=len(images)))
        else:
            want = np.asarray(model(images, training=False))[..., 0]
        worst[key] = float(np.abs(out[..., 0] - want).max())
    print("max |SavedModel - Keras| (m):", worst)
    assert max(worst.values()) <= HQMD_ROUND_OFF, worst
    assert 0.05 < got["uint8_scenes_64x96"].min() and got["uint8_scenes_64x96"].max() < 9.95  # not saturated
    meta = json.loads(str(got["meta_json"]))
    assert meta == json.loads(str(got["asset_json"]))
    assert meta["model_name"] == str(got["meta_name"]) == "hqmd-export-test"
    assert meta["max_depth"] == float(got["meta_max_depth"]) == 10.0
    assert meta["input_size"] == list(got["meta_input_size"]) == [33, 49]
    assert meta["recipe"]["model"]["name"] == "hqmd_baseline_plus"
    assert meta["versions"]["hqdepth"] == hqdepth.__version__ and "tensorflow" in meta["versions"]


# The serving switch of docs/predict-export.md, in a fresh process: first proof that it is active there (two eager
# convolutions of the same shape: the second returns the first one's result), then the SavedModel's `serve`.
FROZEN_WEIGHTS_PROCESS = textwrap.dedent("""
    import os, sys
    assert os.environ["TF_ONEDNN_ASSUME_FROZEN_WEIGHTS"] == "1"
    import numpy as np
    import tensorflow as tf
    folder, inputs, outputs = sys.argv[1:4]
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(size=(1, 8, 8, 16)).astype(np.float32))
    first, second = (tf.nn.conv2d(x, rng.uniform(size=(3, 3, 16, 32)).astype(np.float32), 1, "SAME") for _ in range(2))
    images = np.load(inputs)["images"]
    serve = tf.saved_model.load(folder).signatures["serve"]
    depth = [serve(images=tf.constant(images))["depth"].numpy() for _ in range(3)]
    np.savez(outputs, depth=np.stack(depth), stale_eager=np.array(bool(np.array_equal(first, second))))
""")


def test_savedmodel_under_assume_frozen_weights(hqmd_export, tmp_path):
    """With TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1 (oneDNN keeps each convolution's reordered weights) the SavedModel still
    equals Keras on every call: each of its convolutions is its own graph node, so no cached weights are shared."""
    import os

    model, folder, _ = hqmd_export
    images = np.random.default_rng(8).uniform(0, 255, (2, 33, 49, 3)).astype(np.float32)
    np.savez(tmp_path / "in.npz", images=images)
    process = subprocess.run([sys.executable, "-c", FROZEN_WEIGHTS_PROCESS, str(folder), str(tmp_path / "in.npz"),
                              str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS": "1"})
    assert process.returncode == 0, process.stderr[-3000:]
    got = dict(np.load(tmp_path / "out.npz"))
    assert got["stale_eager"], "the switch had no effect in the child process: this test would prove nothing"
    want = np.asarray(model(images, training=False))
    worst = float(np.abs(got["depth"] - want[None]).max())
    assert worst <= HQMD_ROUND_OFF, worst


def test_bfloat16_export(tmp_path):
    """`precision="bfloat16"`: every layer computes in bfloat16 except the depth head (logits, their upsampling and
    the scaling to metres), with the float32 model's weights; the SavedModel returns float32 depths equal to the bfloat16 Keras twin
    within bfloat16 rounding and near, but not equal to, the float32 model."""
    import tensorflow as tf

    from hqdepth.export import bfloat16_twin

    model = hqmd_model((33, 49, 3))
    twin = bfloat16_twin(model)
    dtypes = {layer.name: layer.compute_dtype for layer in twin._flatten_layers(include_self=False, recursive=True)
              if layer.__class__.__name__ != "InputLayer"}
    assert dtypes.pop("logits") == dtypes.pop("upsample_to_image") == dtypes.pop("depth") == "float32"
    assert len(dtypes) > 200 and set(dtypes.values()) == {"bfloat16"}, {k: v for k, v in dtypes.items() if v != "bfloat16"}
    for ours, theirs in zip(twin.weights, model.weights, strict=True):
        assert ours.dtype == theirs.dtype == "float32" and np.array_equal(np.asarray(ours), np.asarray(theirs))
    images = np.random.default_rng(9).uniform(0, 255, (2, 33, 49, 3)).astype(np.float32)
    full = np.asarray(model(images, training=False))
    half = np.asarray(twin(images, training=False))
    result = export(DepthModel.from_keras(model), tmp_path / "bf16", format="saved_model", precision="bfloat16")
    assert result["metadata"]["precision"] == "bfloat16"
    served = tf.saved_model.load(str(tmp_path / "bf16")).signatures["serve"](images=tf.constant(images))["depth"]
    assert served.dtype == tf.float32 and half.dtype == np.float32
    served = served.numpy()
    scale = float(np.abs(full).mean())
    # bfloat16 keeps 8 significant bits (0.4 %); through ~50 layers the depth moves by about a percent on average.
    assert np.abs(served - half).mean() < 0.01 * scale
    assert 1e-4 * scale < np.abs(half - full).mean() < 0.03 * scale


@pytest.mark.parametrize("hqmd_export", ["frozen"], indirect=True)  # the loader is the same for both exports
def test_savedmodel_through_hqdepth_load_and_predict(hqmd_export, tmp_path, capsys):
    model, folder, _ = hqmd_export
    loaded = hqdepth.load(folder)
    assert loaded.input_size == (33, 49) and loaded.max_depth == 10.0 and loaded.name == "hqmd-export-test"
    assert loaded.config["data"]["input_size"] == [33, 49]
    image = np.random.default_rng(6).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    np.testing.assert_allclose(hqdepth.predict(loaded, image), hqdepth.predict(model, image), rtol=0,
                               atol=HQMD_ROUND_OFF)
    from png_encoder import png_bytes

    (tmp_path / "photo.png").write_bytes(png_bytes(image))
    code, out, err = run_cli(["predict", str(folder), str(tmp_path / "photo.png"), "--out", str(tmp_path / "o"),
                              "--quiet"], capsys)
    assert code == 0 and "SavedModel" in out, err
    np.testing.assert_allclose(np.load(tmp_path / "o" / "photo_depth.npy"), hqdepth.predict(model, image),
                               atol=HQMD_ROUND_OFF)
    code, _, err = run_cli(["export", str(folder), "--out", str(tmp_path / "again")], capsys)
    assert code == 2 and "already a SavedModel" in err


def test_free_size_model_export(tiny_run, tmp_path):
    import tensorflow as tf

    from hqdepth.export import _tf_free_size

    for height, width in ((1, 1), (17, 999), (50, 70), (289, 385), (480, 640), (1000, 1001), (3024, 4032),
                          (4032, 3024), (48, 1040), (16, 16), (33, 97)):
        assert tuple(_tf_free_size(height, width).numpy()) == free_size(height, width), (height, width)
        assert tuple(_tf_free_size(height, width, 32, False).numpy()) == free_size(height, width, 32, plus_one=False)
        assert tuple(_tf_free_size(height, width, 32, False, 1280).numpy()) == free_size(height, width, 32, 1280,
                                                                                         plus_one=False)
    result = export(tiny_run["root"] / "free.keras", tmp_path / "saved")
    assert result["metadata"]["input_size"] is None and "32k+1" in result["metadata"]["free_size_rule"]
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    assert list(loaded.metadata()["input_size"].numpy()) == [0, 0]
    spec = loaded.signatures["serve"].structured_input_signature[1]["images"]
    assert spec.shape.as_list() == [None, None, None, 3]
    keras_model = DepthModel.from_keras(tiny_run["free"])
    for shape in ((1, 50, 70, 3), (2, 31, 90, 3)):
        images = np.random.default_rng(7).integers(0, 256, shape, dtype=np.uint8)
        got = loaded.signatures["serving_default"](images=tf.constant(images))["depth"].numpy()[..., 0]
        want = np.stack(predict_images(keras_model, list(images.astype(np.float32)), batch_size=len(images)))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # With --input-size the export runs every image at that size.
    result = export(tiny_run["root"] / "free.keras", tmp_path / "sized", input_size=(40, 48))
    assert result["metadata"]["input_size"] == [40, 48]


def test_cli_export_keras_with_check(tiny_run, tmp_path, capsys):
    out = tmp_path / "keras"
    code, stdout, err = run_cli(["export", str(tiny_run["run"]), "--out", str(out), "--format", "keras", "--check"],
                                capsys)
    assert code == 0, err
    assert "best checkpoint" in stdout and "max |exported - keras| = 0 m" in stdout
    meta = json.loads((out / "hqdepth.json").read_text())
    assert meta["model_name"] == "tiny-recipe" and meta["recipe"]["name"] == "tiny-recipe" and meta["max_depth"] == 8
    reloaded = hqdepth.load(out / "model.keras")
    image = np.random.default_rng(8).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(hqdepth.predict(reloaded, image), hqdepth.predict(tiny_run["model"], image))
    # The export's hqdepth.json gives the loaded model the run's name and config, as the run folder has them (the
    # file and the folder alike): a photo of another size runs as the run's model runs it.
    run = hqdepth.load(tiny_run["run"])
    photo = np.random.default_rng(9).integers(0, 256, (40, 44, 3), dtype=np.uint8)
    for path in (out / "model.keras", out):
        loaded = hqdepth.load(path)
        assert loaded.name == run.name == "tiny-recipe" and loaded.config == run.config, path
        np.testing.assert_array_equal(hqdepth.predict(loaded, photo), hqdepth.predict(run, photo))
    assert hqdepth.load(out).note == f"Keras export {out}"
    # A second export into the same folder needs --overwrite.
    code, _, err = run_cli(["export", str(tiny_run["run"]), "--out", str(out), "--format", "keras"], capsys)
    assert code == 2 and "--overwrite" in err
    code, stdout, err = run_cli(["export", str(tiny_run["run"]), "--out", str(out), "--overwrite", "--check"], capsys)
    assert code == 0 and (out / "saved_model.pb").is_file() and not (out / "model.keras").exists(), err
    differences = [float(line.rsplit("=", 1)[1].split()[0]) for line in stdout.splitlines() if "max |" in line]
    assert len(differences) == 3 and max(differences) <= 1e-5, stdout


def test_check_of_a_free_size_run_model_exported_at_its_config_size(tiny_run, tmp_path, capsys, recwarn):
    """A run whose model takes any size (a BTS recipe's, free for its whole-frame validation) exports at the run's
    data.input_size; --check compares the SavedModel's resizing of other sizes with the Keras model run at that
    same size, not at the image's own."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("name: free-recipe\nmodel: {name: tiny, options: {max_depth: 8.0}}\n"
                                     "data: {input_size: [24, 32]}\nevaluation: {protocol: nyu-eigen}\n")
    tiny_run["free"].save(run / "checkpoints" / "best.keras")
    code, stdout, err = run_cli(["export", str(run), "--out", str(tmp_path / "saved"), "--check"], capsys)
    assert code == 0, err
    differences = [float(line.rsplit("=", 1)[1].split()[0]) for line in stdout.splitlines() if "max |" in line]
    assert "serving_default 47x73" in stdout and len(differences) == 3 and max(differences) <= 1e-5, stdout
    # the check's own random sizes change the aspect ratio: no warning about that reaches the user
    assert not [str(w.message) for w in recwarn if "aspect ratio" in str(w.message)]


def test_a_free_export_rounds_each_image_as_the_run_does(tiny_run, tmp_path, capsys):
    """--input-size free: the SavedModel runs each image at its own size rounded as the run's model needs (a BTS
    run: multiples of 32, not the default 32k+1) and so equals the run folder's prediction at every size."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("name: bts-like\nmodel: {name: bts, options: {max_depth: 8.0}}\n"
                                     "data: {input_size: [24, 32]}\nevaluation: {protocol: nyu-eigen}\n")
    tiny_run["free"].save(run / "checkpoints" / "best.keras")
    code, stdout, err = run_cli(["export", str(run), "--out", str(tmp_path / "saved"), "--input-size", "free",
                                 "--check"], capsys)
    assert code == 0, err
    assert "input size free" in stdout and "serving_default 64x96" in stdout and "serving_default 87x137" in stdout
    differences = [float(line.rsplit("=", 1)[1].split()[0]) for line in stdout.splitlines() if "max |" in line]
    assert len(differences) == 3 and max(differences) <= 1e-5, stdout
    meta = json.loads((tmp_path / "saved" / "assets.extra" / "hqdepth.json").read_text())
    assert meta["input_size"] is None and meta["free_size_rule"].endswith("nearest 32k")
    image = np.random.default_rng(3).integers(0, 256, (70, 100, 3), dtype=np.uint8)
    np.testing.assert_allclose(hqdepth.predict(hqdepth.load(tmp_path / "saved"), image),
                               hqdepth.predict(hqdepth.load(run), image), rtol=0, atol=1e-5)
    # a KITTI recipe (KB crop at native resolution): frames up to 1280 wide run whole, in the graph as in the run
    kitti = tmp_path / "kitti_run"
    (kitti / "checkpoints").mkdir(parents=True)
    (kitti / "config.yaml").write_text("name: bts-kitti-like\nmodel: {name: bts, options: {max_depth: 80.0}}\n"
                                       "data: {input_size: [24, 32]}\nevaluation: {protocol: kitti-garg}\n")
    tiny_run["free"].save(kitti / "checkpoints" / "best.keras")
    code, _, err = run_cli(["export", str(kitti), "--out", str(tmp_path / "kitti_saved"), "--input-size", "free"],
                           capsys)
    assert code == 0, err
    meta = json.loads((tmp_path / "kitti_saved" / "assets.extra" / "hqdepth.json").read_text())
    assert "longer side is <= 1280" in meta["free_size_rule"] and hqdepth.load(kitti).run_size(375, 1242) == (384, 1248)
    frame = np.random.default_rng(4).integers(0, 256, (375, 1242, 3), dtype=np.uint8)
    np.testing.assert_allclose(hqdepth.predict(hqdepth.load(tmp_path / "kitti_saved"), frame),
                               hqdepth.predict(hqdepth.load(kitti), frame), rtol=0, atol=1e-5)
    code, _, err = run_cli(["export", str(run), "--out", str(tmp_path / "o"), "--input-size", "free", "--format",
                            "onnx"], capsys)
    assert code == 2 and "ONNX export needs a fixed input size" in err
    code, _, err = run_cli(["export", str(tiny_run["run"]), "--out", str(tmp_path / "o"), "--input-size", "free"],
                           capsys)
    assert code == 2 and "cannot be exported with a free one" in err


def test_cli_export_errors(tiny_run, tmp_path, capsys):
    code, _, err = run_cli(["export", str(tiny_run["run"]), "--out", str(tmp_path / "o"), "--input-size", "33x33"],
                           capsys)
    assert code == 2 and "fixed input size 24x32" in err
    code, _, err = run_cli(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "model not found" in err
    code, _, err = run_cli(["export", str(tiny_run["root"] / "free.keras"), "--out", str(tmp_path / "o"),
                            "--format", "onnx"], capsys)
    assert code == 2 and "--input-size" in err
    code, _, err = run_cli(["export", str(tiny_run["run"]), "--out", str(tmp_path / "o"), "--format", "keras",
                            "--freeze"], capsys)
    assert code == 2 and "SavedModel format only" in err and not (tmp_path / "o").exists()
    code, _, err = run_cli(["export", str(tiny_run["run"]), "--out", str(tmp_path / "o"), "--format", "keras",
                            "--precision", "bfloat16"], capsys)
    assert code == 2 and "--precision bfloat16 applies to the SavedModel format only" in err
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(["export", str(tiny_run["run"]), "--out", str(tmp_path / "file")], capsys)
    assert code == 2 and "is a file" in err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):  # without --overwrite too: it would not help (it once said to pass it)
        code, _, err = run_cli(["export", str(tiny_run["run"]), "--out", str(tmp_path / "mine"), *extra], capsys)
        assert code == 2 and "not from an export" in err and (tmp_path / "mine" / "notes.txt").is_file(), extra


def test_onnx_export(tiny_run, tmp_path, capsys):
    pytest.importorskip("tf2onnx")
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    out = tmp_path / "onnx"
    code, stdout, err = run_cli(["export", str(tiny_run["run"]), "--out", str(out), "--format", "onnx", "--check"],
                                capsys)
    assert code == 0, err
    assert "onnxruntime 24x32" in stdout
    proto = onnx.load(str(out / "model.onnx"))
    props = {entry.key: entry.value for entry in proto.metadata_props}
    assert json.loads(props["hqdepth"])["model_name"] == "tiny-recipe" and props["input_size"] == "[24, 32]"
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (spec,) = session.get_inputs()
    assert spec.shape[1:] == [24, 32, 3]
    images = np.random.default_rng(9).uniform(0, 255, (3, 24, 32, 3)).astype(np.float32)
    got = session.run(None, {spec.name: images})[0]
    want = np.asarray(tiny_run["model"](images, training=False))
    assert got.shape == want.shape == (3, 24, 32, 1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


# Runs in a fresh interpreter: tf2onnx's conversion of a full model crashed pytest workers that had run other tests
# first (not reproduced alone). Builds the model, exports it to ONNX, runs ONNX Runtime and Keras; prints a JSON line.
ONNX_PROCESS = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    import onnxruntime
    sys.path.insert(0, sys.argv[4])
    from predict_helpers import hqmd_model
    from hqdepth.export import export
    from hqdepth.models import build_model
    from hqdepth.predict import DepthModel
    name, size, out = sys.argv[1], tuple(int(v) for v in sys.argv[2].split("x")), sys.argv[3]
    if name == "hqmd_baseline_plus":
        model = hqmd_model((*size, 3))
    else:
        keras.utils.set_random_seed(3)
        # bts_size 128 (a quarter of the decoder's 512): tf2onnx deep-copies the graph, weights included, on every
        # optimizer pass, and the test is about the graph, not the width (measured 56 -> 47 s)
        model = build_model(name, input_shape=(*size, 3), bts_size=128)
    result = export(DepthModel.from_keras(model), out, format="onnx")
    session = onnxruntime.InferenceSession(str(result["path"]), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(10).uniform(0, 255, (2, *size, 3)).astype(np.float32)
    got = session.run(None, {session.get_inputs()[0].name: images})[0]
    want = np.asarray(model(images, training=False))
    print(json.dumps({"inputs": [i.name for i in session.get_inputs()], "shape": list(got.shape),
                      "want_shape": list(want.shape), "max_diff": float(np.abs(got - want).max()),
                      "p99_diff": float(np.percentile(np.abs(got - want), 99)),
                      "want_std": float(want.std())}))
""")


def onnx_in_fresh_process(name, size, tmp_path):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    from pathlib import Path

    process = subprocess.run([sys.executable, "-c", ONNX_PROCESS, name, size, str(tmp_path / "onnx"),
                              str(Path(__file__).resolve().parent)], capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_onnx_export_of_hqmd_resizes_to_odd_sizes(tmp_path):
    """hqmd_baseline_plus at 65x97: its decoder resizes 5x7 ASPP features to the 17x25 low-level ones (a non-integer
    scale) and 17x25 back to 65x97; the ONNX model keeps every size (a converted ResizeBilinear op rounded 73 down
    to 72 at 289x385 and ONNX Runtime refused the model) and equals Keras."""
    result = onnx_in_fresh_process("hqmd_baseline_plus", "65x97", tmp_path)
    assert result["shape"] == result["want_shape"] == [2, 65, 97, 1]
    assert result["want_std"] > 0.1  # depths spread over the range (a saturated head would hide errors)
    assert result["max_diff"] <= HQMD_ROUND_OFF, result


@pytest.mark.slow
def test_onnx_export_of_bts_has_one_input(tmp_path):
    """BTS (torchvision preprocessing, ResNet-50 encoder, local planar guidance) at 64x96 exports to an ONNX model
    whose only input is the image (the preprocessing constants once became extra inputs) and that equals Keras."""
    result = onnx_in_fresh_process("bts", "64x96", tmp_path)
    assert len(result["inputs"]) == 1, result["inputs"]
    assert result["shape"] == result["want_shape"] == [2, 64, 96, 1]
    # With random weights a few pixels have a planar-guidance denominator near its 1e-3 clamp, which amplifies
    # float32 round-off: measured (AMD EPYC) median 2e-7 m, 99th percentile 8e-5 m, largest 1.7e-2 m with ONNX
    # Runtime's graph optimisations off as on, and Keras itself moves those pixels by 2e-3 m between a batch of
    # one and of two. Missing or wrong preprocessing constants move nearly every depth by metres.
    assert result["p99_diff"] <= 1e-3 and result["max_diff"] <= 0.1, result
