"""Models tested as their papers' official code tests them, and the Hu / SARPN protocol (`nyu-hu`).

- BTS KITTI (`cleinc/bts` `bts_dataloader.py` test mode, `bts_eval.py`): the network sees the KB crop 352x1216
  (top = H - 352, left = (W - 1216) // 2) at native resolution with the frame's own focal; the prediction is
  pasted into a zero canvas of the frame, clipped to [1e-3, 80], Garg crop, per-image metrics. A model built
  at 352x704 is rebuilt with a free input size for that (weights shared).
- BTS NYU: the whole 480x640 frame (no resize to the 416x544 training crop).
- Hu et al. / SARPN (`JunjH/Revisiting_Single_Depth_Estimation` `test.py`, `util.py`, `loaddata.py`,
  `nyu_transform.py`; `Xt-Chen/SARPN` `evaluate.py`): the references below are written from
  specs/evaluation_and_data.md section 3.5 in float64 NumPy and never call hqdepth code.
"""

import json
import logging
import math

import cv2
import numpy as np
import pytest

from hqdepth.cli import main
from hqdepth.errors import ConfigError, DataError
from hqdepth.evaluation import (
    PROTOCOLS, Evaluator, custom_protocol, evaluate_model, get_protocol, hu_ground_truth, hu_rgb,
    protocol_prediction, resize_bilinear_tf1,
)
from hqdepth.predict import DepthModel, load

KITTI_FOCAL = 707.0493  # realdata/kitti3/test_annotations.json cam_in fx
HU_KEYS = ("abs_rel", "rmse", "log10", "mae", "d1", "d2", "d3")


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------------ models


def tiny_encoder(shape):
    """Five taps at H/2 .. H/32 (the BTS encoder interface), a nested functional model like the ResNet."""
    import keras

    image = keras.Input(shape)
    x, taps = image, []
    for i, channels in enumerate((8, 16, 16, 32, 32)):
        x = keras.layers.Conv2D(channels, 3, strides=2, padding="same", activation="elu", name=f"enc{i}")(x)
        taps.append(x)
    return keras.Model(image, taps, name="tiny_encoder")


def tiny_bts(input_shape, seed=0, max_depth=80.0, with_focal=True):
    """BTS (decoder, LPG, focal scaling) on a small encoder, its last conv rescaled so that depths spread."""
    import keras

    from hqdepth.models.bts import bts

    keras.utils.set_random_seed(seed)
    model = bts(input_shape=input_shape, encoder=tiny_encoder(input_shape), with_focal=with_focal,
                max_depth=max_depth, bts_size=128)
    spread_logits(model, [n for n in (layer.name for layer in model.layers) if n.endswith("get_depth")][0], seed)
    return model


def spread_logits(model, name, seed):
    import keras

    layer = model.get_layer(name)
    probe = keras.Model(model.inputs if len(model.inputs) > 1 else model.inputs[0], layer.output)
    shape = tuple(64 if v is None else int(v) for v in model.inputs[0].shape[1:3])
    images = np.random.default_rng(seed).integers(0, 256, (1, *shape, 3)).astype(np.float32)
    inputs = [images, np.array([715.0873], np.float32)] if len(model.inputs) > 1 else images
    values = np.asarray(probe(inputs, training=False))
    weights = layer.get_weights()
    weights[0] = weights[0] * (1.0 / max(float(values.std()), 1e-6))
    layer.set_weights(weights)


def free_copy(model, build):
    """The same network built independently with a free input size, the trained weights copied in."""
    free = build()
    free.set_weights(model.get_weights())
    return free


class Spy:
    """Records the batch shapes and focal lengths a DepthModel is called with."""

    def __init__(self, monkeypatch):
        self.calls = []
        original = DepthModel.__call__

        def call(model, batch, focal=None):
            self.calls.append((tuple(np.shape(batch)), None if focal is None else float(np.ravel(focal)[0])))
            return original(model, batch, focal=focal)

        monkeypatch.setattr(DepthModel, "__call__", call)


# ------------------------------------------------------------------------------- BTS references


def bts_errors(gt, pred):
    """BTS compute_errors(gt, pred) in float64 on 1-D arrays."""
    ratio = np.maximum(gt / pred, pred / gt)
    err = np.log(pred) - np.log(gt)
    return {"abs_rel": np.mean(np.abs(gt - pred) / gt), "sq_rel": np.mean((gt - pred) ** 2 / gt),
            "rmse": np.sqrt(np.mean((gt - pred) ** 2)), "rmse_log": np.sqrt(np.mean(err**2)),
            "log10": np.mean(np.abs(np.log10(pred) - np.log10(gt))),
            "silog": np.sqrt(np.mean(err**2) - np.mean(err) ** 2) * 100,
            **{f"d{k}": np.mean(ratio < 1.25**k) for k in (1, 2, 3)}}


def bts_kitti_reference(free_model, rgb, gt, focal):
    """bts_dataloader test mode + bts_eval.py --do_kb_crop --garg_crop for one frame."""
    h, w = gt.shape
    top, left = int(h - 352), int((w - 1216) / 2)
    crop = rgb[top:top + 352, left:left + 1216].astype(np.float32)
    depth = np.asarray(free_model([crop[None], np.array([focal], np.float32)], training=False))[0, ..., 0]
    pred = np.zeros((h, w), np.float64)
    pred[top:top + 352, left:left + 1216] = depth
    pred[pred < 1e-3] = 1e-3
    pred[pred > 80] = 80
    valid = (gt > 1e-3) & (gt < 80)
    mask = np.zeros_like(valid)
    mask[int(0.40810811 * h):int(0.99189189 * h), int(0.03594771 * w):int(0.96405229 * w)] = True
    valid &= mask
    return bts_errors(gt[valid], pred[valid])


def mean_rows(rows):
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}


def assert_close(got, ref, tol, what=""):
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, rel=tol, abs=tol), f"{what}: {key} {got[key]} != {value}"


def kitti_frames(realdata):
    folder = realdata / "kitti3"
    frames = []
    for path in sorted((folder / "depth").glob("*.png")):
        gt = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float64) / 256.0
        rgb = cv2.cvtColor(cv2.imread(str(folder / "rgb" / path.name)), cv2.COLOR_BGR2RGB)
        frames.append((path.name, rgb, gt))
    assert len(frames) == 3 and all(f[2].shape == (375, 1242) for f in frames)
    return frames


def test_bts_kitti_built_at_352x704_is_tested_on_the_kb_crop_with_each_frames_focal(realdata, tmp_path, capsys,
                                                                                   monkeypatch):
    frames = kitti_frames(realdata)
    model = tiny_bts((352, 704, 3))
    model.save(tmp_path / "bts_kitti.keras")
    # Each frame its own focal (the real one, and two others to show that the per-line value is used).
    focals = [KITTI_FOCAL, 718.856, 721.5377]
    listing = tmp_path / "eigen_test_files_with_gt.txt"
    listing.write_text("".join(f"rgb/{name} depth/{name} {focal}\n" for (name, _, _), focal in zip(frames, focals)))
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("".join(f"{realdata / 'kitti3' / 'rgb' / name} {realdata / 'kitti3' / 'depth' / name} {focal}\n"
                             for (name, _, _), focal in zip(frames, focals)))

    free = free_copy(model, lambda: tiny_bts((None, None, 3)))
    reference = mean_rows([bts_kitti_reference(free, rgb, gt, focal) for (_, rgb, gt), focal in zip(frames, focals)])

    spy = Spy(monkeypatch)
    code, out, err = run_cli(["evaluate", "--model", str(tmp_path / "bts_kitti.keras"), "--data", str(pairs),
                              "--protocol", "kitti-garg", "--quiet", "--json", str(tmp_path / "cli.json")], capsys)
    assert code == 0, err
    assert_close(json.loads((tmp_path / "cli.json").read_text())["metrics"], reference, 1e-5, "hqdepth evaluate")
    # The fixed-size path (the whole frame squashed to 352x704) is not used: 352x1216 crops, each frame's focal.
    assert spy.calls == [((1, 352, 1216, 3), focal) for focal in focals]
    # `--kb-crop` with a model and the custom protocol (Garg crop, 1e-3..80 m) runs the same KB crops
    spy.calls.clear()
    custom = ["--protocol", "custom", "--crop", "kitti-garg", "--min-depth", "1e-3", "--max-depth", "80",
              "--gt-scale", "256", "--kb-crop"]
    code, out, err = run_cli(["evaluate", "--model", str(tmp_path / "bts_kitti.keras"), "--data", str(pairs), *custom,
                              "--quiet", "--json", str(tmp_path / "kb.json")], capsys)
    assert code == 0, err
    assert_close(json.loads((tmp_path / "kb.json").read_text())["metrics"], reference, 1e-5, "evaluate --kb-crop")
    assert spy.calls == [((1, 352, 1216, 3), focal) for focal in focals]

    # The trainer's test evaluation is the same path (a kitti: list source, its focal column).
    from hqdepth.training.trainer import evaluate_in_memory

    spy.calls.clear()
    config = {"evaluation": {"protocol": "kitti-garg", "protocol_options": {}, "test_samples": None, "ssim": False,
                             "flip": False, "max_depth": 80.0},
              "data": {"test_split": "test", "with_focal": True, "input_size": [352, 704]}}
    result = evaluate_in_memory(model, config, f"kitti:{listing}@{realdata / 'kitti3'}")
    assert result.count == 3
    assert_close(result.metrics, reference, 1e-5, "trainer test evaluation")
    assert spy.calls == [((1, 352, 1216, 3), focal) for focal in focals]

    # What the old fixed-size path computed differs: the evaluation above cannot have been that.
    squashed = []
    for (_, rgb, gt), focal in zip(frames, focals):
        small = cv2.resize(rgb.astype(np.float32), (704, 352), interpolation=cv2.INTER_LINEAR)
        depth = np.asarray(model([small[None], np.array([focal * 704 / 1242], np.float32)], training=False))[0, ..., 0]
        pred = np.clip(cv2.resize(depth, (1242, 375), interpolation=cv2.INTER_LINEAR).astype(np.float64), 1e-3, 80)
        valid = (gt > 1e-3) & (gt < 80)
        valid[:153], valid[371:], valid[:, :44], valid[:, 1197:] = False, False, False, False
        squashed.append(bts_errors(gt[valid], pred[valid]))
    assert abs(mean_rows(squashed)["abs_rel"] - reference["abs_rel"]) > 1e-3


def test_bts_kitti_without_focal_uses_the_reference_focal_and_says_so(realdata, tmp_path, caplog):
    frames = kitti_frames(realdata)[:1]
    model = tiny_bts((352, 704, 3))
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"{realdata / 'kitti3' / 'rgb' / frames[0][0]} {realdata / 'kitti3' / 'depth' / frames[0][0]}\n")
    free = free_copy(model, lambda: tiny_bts((None, None, 3)))
    with caplog.at_level("WARNING", logger="hqdepth.evaluation"):
        result = evaluate_model(DepthModel.from_keras(model), pairs, "kitti-garg", progress=False)
    assert "reference focal 715.087" in caplog.text
    assert_close(result.metrics, bts_kitti_reference(free, frames[0][1], frames[0][2], 715.0873), 1e-5)


def test_bts_nyu_resnet50_at_416x544_is_tested_on_the_whole_480x640_frame(realdata, tmp_path, capsys, monkeypatch):
    import keras

    from hqdepth.models import build_model

    folder = realdata / "nyu_test10"
    options = {"encoder": "resnet50", "max_depth": 10.0, "bts_size": 128, "backbone_weights": None}
    keras.utils.set_random_seed(1)
    model = build_model("bts", input_shape=(416, 544, 3), **options)
    spread_logits(model, [layer.name for layer in model.layers if layer.name.endswith("get_depth")][0], 1)
    model.save(tmp_path / "bts_nyu.keras")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"{folder / 'image_0.png'} {folder / 'depth_0.png'} 518.8579\n")

    spy = Spy(monkeypatch)
    code, out, err = run_cli(["evaluate", "--model", str(tmp_path / "bts_nyu.keras"), "--data", str(pairs),
                              "--protocol", "nyu-eigen", "--quiet", "--json", str(tmp_path / "o.json")], capsys)
    assert code == 0, err
    assert [shape for shape, _ in spy.calls] == [(1, 480, 640, 3)]

    free = free_copy(model, lambda: build_model("bts", input_shape=(None, None, 3), **options))
    rgb = cv2.cvtColor(cv2.imread(str(folder / "image_0.png")), cv2.COLOR_BGR2RGB).astype(np.float32)
    gt = cv2.imread(str(folder / "depth_0.png"), cv2.IMREAD_UNCHANGED).astype(np.float64) / 1000.0
    pred = np.asarray(free(rgb[None], training=False), np.float64)[0, ..., 0]
    assert pred.std() > 0.1
    pred = np.clip(pred, 1e-3, 10)
    valid = (gt > 1e-3) & (gt < 10)
    mask = np.zeros_like(valid)
    mask[45:471, 41:601] = True
    ref = bts_errors(gt[valid & mask], pred[valid & mask])
    assert_close(json.loads((tmp_path / "o.json").read_text())["metrics"], ref, 1e-5, "bts nyu")

    # The Toolbox recipe's test evaluation averages in the mirrored prediction of the mirrored frame
    # (evaluation.flip, its MultiScaleFlipAug); without flip it is the single pass above.
    from hqdepth.training import recipes
    from hqdepth.training.trainer import evaluate_in_memory

    config = recipes.resolve_config("bts_nyu_toolbox24")
    assert config["evaluation"]["flip"] is True
    mirrored = np.asarray(free(rgb[None, :, ::-1].copy(), training=False), np.float64)[0, :, ::-1, 0]
    flipped = np.clip(0.5 * (np.asarray(free(rgb[None], training=False), np.float64)[0, ..., 0] + mirrored), 1e-3, 10)
    flip_ref = bts_errors(gt[valid & mask], flipped[valid & mask])
    assert abs(flip_ref["abs_rel"] - ref["abs_rel"]) > 1e-4  # the two references can be told apart
    assert_close(evaluate_in_memory(model, config, f"list:{pairs}?dataset=nyu").metrics, flip_ref, 1e-5, "toolbox test evaluation")
    config["evaluation"]["flip"] = False
    assert_close(evaluate_in_memory(model, config, f"list:{pairs}?dataset=nyu").metrics, ref, 1e-5, "test evaluation, no flip")


def test_free_size_model_shares_weights_and_keeps_the_fixed_size_result():
    from hqdepth.models.inference import depth_model, free_size_model, input_size

    model = tiny_bts((64, 96, 3))
    free = free_size_model(model)
    assert input_size(model) == (64, 96) and input_size(free) is None and free.name == model.name
    assert len(free.weights) == len(model.weights) and all(a is b for a, b in zip(free.weights, model.weights))
    assert free_size_model(free) is free
    images = np.random.default_rng(3).uniform(0, 255, (2, 64, 96, 3)).astype(np.float32)
    focal = np.array([700.0, 720.0], np.float32)
    np.testing.assert_array_equal(np.asarray(free([images, focal], training=False)),
                                  np.asarray(model([images, focal], training=False)))
    # A weight change shows in both (shared, not copied); other sizes run.
    layer = model.get_layer("enc0")
    layer.set_weights([w * 1.1 for w in layer.get_weights()])
    np.testing.assert_array_equal(np.asarray(free([images, focal], training=False)),
                                  np.asarray(model([images, focal], training=False)))
    bigger = np.random.default_rng(4).uniform(0, 255, (1, 96, 160, 3)).astype(np.float32)
    assert free([bigger, focal[:1]], training=False).shape == (1, 96, 160, 1)
    image_only = depth_model(model, fix_focal=True, free_size=True)
    assert len(image_only.inputs) == 1 and image_only(bigger, training=False).shape == (1, 96, 160, 1)


def test_a_savedmodel_of_fixed_size_is_refused_for_native_testing(tmp_path):
    model = tiny_bts((64, 96, 3), with_focal=False, max_depth=10.0)
    model.export(str(tmp_path / "saved"), verbose=False)
    with pytest.raises(DataError, match="64x96 images only"):
        DepthModel(tmp_path / "saved").at_free_size()


def bts_nyu_run(tmp_path):
    """(a tiny BTS fixed at 64x96, a run folder holding it with a bts_nyu-like config: tested at native size)."""
    model = tiny_bts((64, 96, 3), with_focal=False, max_depth=10.0)
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.keras")
    (run / "config.yaml").write_text("name: bts_nyu\nmodel: {name: bts, options: {max_depth: 10.0}}\n"
                                     "data: {input_size: [64, 96]}\nevaluation: {protocol: nyu-eigen}\n")
    return model, run


def test_predict_runs_a_fixed_size_savedmodel_of_a_native_recipe_at_its_size(tmp_path, rng):
    """`hqdepth predict` on a BTS export (fixed at the run's crop size, its metadata naming nyu-eigen) runs each
    photo at the export size, as the SavedModel's serving_default does, and says so, instead of refusing."""
    from hqdepth.export import export
    from hqdepth.predict import load, predict

    model, run = bts_nyu_run(tmp_path)
    export(load(run), tmp_path / "saved")
    loaded = load(tmp_path / "saved")
    served = loaded.for_photos()
    assert served.input_size == (64, 96) and "runs every image at its export size 64x96" in served.note
    assert "export size" not in loaded.note  # the model given to predict is not changed
    photo = rng.uniform(0, 255, (96, 160, 3)).astype(np.float32)
    small = cv2.resize(photo, (96, 64), interpolation=cv2.INTER_LINEAR)
    depth = np.asarray(model(small[None], training=False))[0, ..., 0]
    want = cv2.resize(depth, (160, 96), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(predict(tmp_path / "saved", photo), want, rtol=1e-4, atol=1e-4)  # tf vs cv2 resize


# ---------------------------------------------------------------------------------- HQMD test input


def test_hqmd_test_input_is_tf1_resize_images_then_cv2_back(rng):
    import tensorflow as tf

    image = rng.uniform(0, 255, (48, 64, 3)).astype(np.float32)
    tf1 = tf.compat.v1.image.resize_bilinear(image[None], (29, 39), align_corners=False,
                                             half_pixel_centers=False).numpy()[0]
    np.testing.assert_allclose(resize_bilinear_tf1(image, 29, 39), tf1, atol=1e-3)

    class Fixed:  # a fixed-size model (29x39): depth = mean of the RGB
        input_size, config_size, reference_focal, name = (29, 39), None, None, "fixed"
        seen = []

        def __call__(self, batch, focal=None):
            self.seen.append(batch.shape)
            return batch.mean(axis=-1)

    model = Fixed()
    pred = protocol_prediction(model, image, "nyu-hqmd")
    assert model.seen == [(1, 29, 39, 3)]
    expected = cv2.resize(tf1.mean(axis=-1), (64, 48), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(pred, expected, atol=1e-3)


# ----------------------------------------------------------------------------------- aspect changes


def test_an_aspect_change_is_never_silent(rng, caplog):
    gt = rng.uniform(1, 9, (480, 640))
    pred = rng.uniform(1, 9, (416, 544))  # BTS NYU's 416x544 for 480x640: 1.96 %, refused naming both sizes
    with pytest.raises(DataError, match="416x544.*480x640.*1.96 %"):
        Evaluator("nyu-eigen").add(pred, gt)
    with caplog.at_level("WARNING", logger="hqdepth.evaluation"):
        Evaluator("nyu-eigen", resize_any=True).add(pred, gt)
    assert "416x544" in caplog.text and "480x640" in caplog.text and "1.96 %" in caplog.text
    Evaluator("nyu-eigen").add(rng.uniform(1, 9, (289, 385)), gt)  # HQMD's own 289x385: 0.09 %, rounding

    # hqdepth predict / hqdepth.predict: a fixed 416x544 model on a 480x640 photo says so, with both sizes.
    from predict_helpers import tiny_model

    from hqdepth.predict import predict_images

    said = []
    model = DepthModel.from_keras(tiny_model((416, 544, 3)))
    depth = predict_images(model, [rng.uniform(0, 255, (480, 640, 3)).astype(np.float32)] * 2, warn=said.append)
    assert depth[0].shape == (480, 640)
    assert len(said) == 1 and "480x640" in said[0] and "416x544" in said[0] and "1.96 %" in said[0]
    with pytest.warns(UserWarning, match="480x640 run at 416x544"):
        import hqdepth

        hqdepth.predict(tiny_model((416, 544, 3)), rng.uniform(0, 255, (480, 640, 3)).astype(np.float32))


def test_predict_runs_a_bts_run_at_the_photo_size(tmp_path, rng):
    """A run whose recipe tests at native resolution (BTS, nyu-eigen) predicts photos at their own size."""
    from hqdepth.predict import load, predict

    model, run = bts_nyu_run(tmp_path)
    loaded = load(run).for_photos()
    assert loaded.input_size is None and loaded.trained_size == (64, 96) and "free input size" in loaded.note
    assert loaded.run_size(96, 160) == (96, 160) and loaded.run_size(100, 150) == (96, 160)
    photo = rng.uniform(0, 255, (96, 160, 3)).astype(np.float32)
    free = free_copy(model, lambda: tiny_bts((None, None, 3), with_focal=False, max_depth=10.0))
    np.testing.assert_allclose(predict(run, photo), np.asarray(free(photo[None], training=False))[0, ..., 0],
                               atol=1e-5)


def test_a_kitti_run_predicts_kitti_frames_at_their_own_size():
    """A recipe that tests KITTI frames at native resolution (the KB crop) runs a 375x1242 photo at 384x1248, not
    scaled to 1024 wide (320x1024: 0.82 of the scale it was tested at, and a focal-aware model would assume its
    reference focal at that size); other photos and other recipes keep the 1024 limit."""
    from hqdepth.depth_model import free_size

    kitti = DepthModel.from_keras(tiny_bts((None, None, 3), with_focal=False), config={
        "name": "bts_kitti", "model": {"name": "bts", "options": {"max_depth": 80.0}},
        "evaluation": {"protocol": "kitti-garg"}})
    nyu = DepthModel.from_keras(tiny_bts((None, None, 3), with_focal=False), config={
        "name": "bts_nyu", "model": {"name": "bts", "options": {"max_depth": 10.0}},
        "evaluation": {"protocol": "nyu-eigen"}})
    assert kitti.run_size(375, 1242) == (384, 1248) and kitti.run_size(370, 1226) == (384, 1216)
    assert kitti.run_size(3024, 4032) == free_size(3024, 4032, 32, 1280, plus_one=False) == (960, 1280)
    assert nyu.run_size(375, 1242) == (320, 1024) and nyu.run_size(3024, 4032) == (768, 1024)
    assert "longer side <= 1280, rounded to 32k)" in kitti.describe()
    # the recipe as shipped: its training crop (352x704) is not the size photos run at, nor what the model line says
    from hqdepth.training import recipes

    shipped = DepthModel.from_keras(tiny_bts((None, None, 3), with_focal=False),
                                    config=recipes.resolve_config("bts_kitti"))
    assert shipped.config_size == (352, 704) and shipped.run_size(375, 1242) == (384, 1248)
    assert "longer side <= 1280" in shipped.describe() and "352x704" not in shipped.describe()


def test_predict_gives_a_focal_aware_model_the_photos_focal_at_the_run_size(tmp_path, rng):
    """With --fx (or --camera) a focal-aware BTS gets the photo's focal scaled to the size the photo runs at, as the
    evaluation scales it; before, predict ignored it and always ran the reference focal (715.0873 px). BTS's depth
    is linear in the focal, so the two predictions differ by exactly fx x run width / photo width / 715.0873."""
    from hqdepth.predict import camera_intrinsics, predict_files

    model = DepthModel.from_keras(tiny_bts((None, None, 3), with_focal=True), config={
        "name": "bts_kitti", "model": {"name": "bts", "options": {"max_depth": 80.0}},
        "evaluation": {"protocol": "kitti-garg"}})
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), rng.integers(0, 256, (100, 150, 3), dtype=np.uint8))
    assert model.run_size(100, 150) == (96, 160)
    depths = []
    for name, intrinsics in (("given", camera_intrinsics(None, 500.0, None, None, None)), ("none", None)):
        summary = predict_files(model, [str(photo)], tmp_path / name, intrinsics=intrinsics, progress=False,
                                log=lambda message: None)
        depths.append(np.load(summary["images"][0]["outputs"]["npy"]))
    np.testing.assert_allclose(depths[0], depths[1] * (500.0 * 160 / 150 / 715.0873), rtol=1e-5)


def test_a_savedmodel_of_a_focal_aware_model_takes_the_photos_focal(tmp_path, rng, capsys):
    """The SavedModel of a focal-aware BTS has a `serving_with_focal` signature (uint8 photos + focal in pixels at
    their size), and `hqdepth.load` of it or of its `.keras` export scales by the focal as the
    Keras model does: `predict_files` with --fx gives the model's depths (before, an export always ran the
    reference focal: 0.75x here)."""
    import tensorflow as tf

    from hqdepth.export import export
    from hqdepth.images import read_image
    from hqdepth.predict import camera_intrinsics, predict, predict_files

    model = DepthModel.from_keras(tiny_bts((None, None, 3), with_focal=True), config={
        "name": "bts_kitti", "model": {"name": "bts", "options": {"max_depth": 80.0}},
        "evaluation": {"protocol": "kitti-garg"}})
    result = export(model, tmp_path / "saved", input_size="free")
    assert result["metadata"]["reference_focal"] == pytest.approx(715.0873)
    assert "serving_with_focal" in result["metadata"]["signatures"]
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), rng.integers(0, 256, (100, 150, 3), dtype=np.uint8))
    fx = camera_intrinsics(None, 500.0, None, None, None)
    depths = {}
    export(model, tmp_path / "keras_format", format="keras")
    for name, source in (("keras", model), ("saved", load(tmp_path / "saved")),
                         ("keras_format", load(tmp_path / "keras_format" / "model.keras"))):
        summary = predict_files(source, [str(photo)], tmp_path / name, intrinsics=fx, progress=False,
                                log=lambda message: None)
        depths[name] = np.load(summary["images"][0]["outputs"]["npy"])
    assert depths["keras"].std() > 0.1
    for name in ("saved", "keras_format"):
        np.testing.assert_allclose(depths[name], depths["keras"], rtol=0, atol=1e-4, err_msg=name)
    import hqdepth

    for source in (model, tmp_path / "saved"):  # the Python one-liner takes the photo's focal too
        np.testing.assert_allclose(predict(source, photo, focal=500.0), depths["keras"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(hqdepth.predict(source, photo, focal=500.0), depths["keras"], rtol=0, atol=1e-4)
    served = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_with_focal"]
    got = served(images=tf.constant(read_image(photo)[None]), focal=tf.constant([500.0]))["depth"].numpy()[0, ..., 0]
    np.testing.assert_allclose(got, depths["keras"], rtol=0, atol=1e-4)
    # `hqdepth predict EXPORTED --fx`: the focal, and no point cloud unless --ply asks for one
    for extra, clouds in (([], []), (["--ply"], ["photo.ply"])):
        out = tmp_path / f"cli{len(extra)}"
        code, printed, err = run_cli(["predict", str(tmp_path / "saved"), str(photo), "--out", str(out), "--fx",
                                      "500", "--quiet", *extra], capsys)
        assert code == 0 and "focal-aware model: the focal of --camera/--fx" in printed, printed
        depth = np.load(out / "photo_depth.npy")
        np.testing.assert_allclose(depth, depths["keras"], rtol=0, atol=1e-4)
        assert sorted(p.name for p in out.glob("*.ply")) == clouds
        # an 80 m model's 16-bit PNGs are KITTI's metres x 256 by default (millimetres clip at 65.5 m)
        assert "16-bit PNGs store metres x 256 (KITTI's convention): the model predicts up to 80 m" in err, err
        png = cv2.imread(str(out / "photo_depth.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(png, np.maximum(np.round(depth.astype(np.float64) * 256), 1).astype(np.uint16))


def test_a_bts_run_is_refused_sizes_that_are_not_multiples_of_32_before_the_network_runs(tmp_path, rng, capsys):
    """`predict --input-size`, `export --input-size` and a test that runs whole frames at their own size name the
    multiple and the nearest size; before, TensorFlow's shape error from the decoder's concatenation ended each
    (and the export left an empty folder behind)."""
    from hqdepth.errors import ConfigError
    from hqdepth.export import export
    from hqdepth.model_testing import model_for_protocol, protocol_prediction
    from hqdepth.predict import load

    _, run = bts_nyu_run(tmp_path)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), rng.integers(0, 256, (100, 150, 3), dtype=np.uint8))
    code, _, err = run_cli(["predict", str(run), str(photo), "--out", str(tmp_path / "depth"),
                            "--input-size", "100x150"], capsys)
    assert code == 2 and "--input-size 100x150: bts needs sides that are multiples of 32 (nearest 96x160)" in err, err
    with pytest.raises(ConfigError, match=r"--input-size 100x150: bts needs .* multiples of 32 \(nearest 96x160\)"):
        export(load(run).for_photos(), tmp_path / "exported", input_size=(100, 150))  # free-size, as BTS trains
    assert not (tmp_path / "exported").exists()
    model = model_for_protocol(load(run), "nyu-eigen")  # whole frames at their own size
    with pytest.raises(ConfigError, match=r"runs the test image at 100x150 .*multiples of 32 \(nearest 96x160\)"):
        protocol_prediction(model, rng.uniform(0, 255, (100, 150, 3)), "nyu-eigen")
    assert protocol_prediction(model, rng.uniform(0, 255, (96, 160, 3)), "nyu-eigen").shape == (96, 160)


def test_a_kitti_test_that_cannot_run_is_refused_before_training(realdata, tmp_path):
    """The trainer's start-up check of the first test frame: Garg's crop (fractions of the full frame) on ground
    truth a SPEC has KB-cropped, and a BTS test at native size on 375x1242 frames, each a ConfigError before any
    step instead of wrong numbers (the first) or a shape error (the second) after the run."""
    from hqdepth.errors import ConfigError
    from hqdepth.training import recipes
    from hqdepth.training.trainer import check_test_frames

    listing = tmp_path / "eigen.txt"
    listing.write_text("".join(f"rgb/{name} depth/{name} {KITTI_FOCAL}\n" for name, _, _ in kitti_frames(realdata)))
    spec = f"kitti:{listing}@{realdata / 'kitti3'}"
    config = recipes.resolve_config("bts_kitti")
    check_test_frames(config, spec)  # the full frames, as BTS's evaluation reads them
    with pytest.raises(ConfigError, match=r"ground truth is 352x1216, the KITTI benchmark \(KB\) crop, but protocol "
                                          r"kitti-garg's crop is a fraction of the full frame.* \(--test-data SPEC"):
        check_test_frames(config, spec + "?kb_crop=true")
    with pytest.raises(ConfigError, match="runs the network on the KB crop 352x1216 of each frame, and the test "
                                          "frames are 64x212"):  # KITTI's shape, smaller than the crop
        check_test_frames(config, "synthetic:2?size=64x212")
    with pytest.raises(ConfigError, match="ground truth is 64x96, not a KITTI frame"):  # nor its shape
        check_test_frames(config, "synthetic:2?size=64x96")
    # a protocol without such a check does not even open the test data
    resize = recipes.resolve_config("bts_kitti", sets=["evaluation.protocol=custom"])
    check_test_frames(resize, f"folder:{tmp_path / 'absent'}")
    native = recipes.resolve_config("bts_kitti", sets=["evaluation.protocol=custom",
                                                       "evaluation.protocol_options={test_input: native}"])
    with pytest.raises(ConfigError, match="runs the network on whole 375x1242 frames, and bts needs sides that are "
                                          "multiples of 32"):
        check_test_frames(native, spec)


# ---------------------------------------------------------------------------------- Hu / SARPN


def align_corners(image, height, width):
    """Bilinear, align_corners=True, written independently (scipy map_coordinates, order 1)."""
    from scipy.ndimage import map_coordinates

    rows = np.arange(height) * (image.shape[0] - 1) / (height - 1)
    cols = np.arange(width) * (image.shape[1] - 1) / (width - 1)
    grid = np.meshgrid(rows, cols, indexing="ij")
    return map_coordinates(np.asarray(image, np.float64), grid, order=1, mode="nearest")


def hu_reference(pred, gt_frame):
    """One image under specs/evaluation_and_data.md 3.5, float64: metric grid 228x304, NaN-only mask, <=."""
    gt = gt_frame[1::2, 1::2][6:234, 8:312]  # Scale(240) NEAREST (factor 2) + CenterCrop (x1 8, y1 6)
    if pred.shape == (480, 640):
        pred = align_corners(pred[12:468, 16:624], 228, 304)
    elif pred.shape != (228, 304):
        pred = align_corners(pred, 228, 304)
    nan = np.isnan(gt)
    n = np.sum(~nan)
    p, g = np.where(nan, 0.0, pred), np.where(nan, 0.0, gt)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = np.abs(p - g)
        rel = np.where(nan, 0.0, diff / g)
        lg = np.where(nan, 0.0, np.abs(np.log10(p) - np.log10(g)))
        ratio = np.maximum(p / g, g / p)
    return {"mse": np.sum(diff**2) / n, "mae": np.sum(diff) / n, "abs_rel": np.sum(rel) / n,
            "log10": np.sum(lg) / n, **{f"d{k}": np.sum(ratio <= 1.25**k) / n for k in (1, 2, 3)}}


def hu_average(rows):
    out = {key: float(np.mean([row[key] for row in rows])) for key in ("mae", "abs_rel", "log10", "d1", "d2", "d3")}
    out["rmse"] = math.sqrt(np.mean([row["mse"] for row in rows]))
    return out


def write_mm_png(path, depth_m):
    cv2.imwrite(str(path), np.clip(np.rint(depth_m * 1000), 0, 65535).astype(np.uint16))
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float64) / 1000.0


def test_nyu_hu_matches_the_spec_definition_on_random_data(tmp_path, rng, capsys):
    lines, refs = [], []
    for k, shape in enumerate([(480, 640), (228, 304), (114, 152), (480, 640)]):
        gt = write_mm_png(tmp_path / f"gt{k}.png", rng.uniform(0.7, 9.9, (480, 640)))
        pred = rng.uniform(0.5, 10.5, shape)
        if k == 3:  # NaN ground truth (a .npy) is the only thing the protocol masks; gt beyond 10 m counts
            gt = gt.copy()
            gt[rng.random(gt.shape) < 0.3] = np.nan
            gt[:40] = 12.0
            np.save(tmp_path / f"gt{k}.npy", gt)
        np.save(tmp_path / f"pred{k}.npy", pred)
        lines.append(f"pred{k}.npy gt{k}.{'npy' if k == 3 else 'png'}")
        refs.append(hu_reference(pred, gt))
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    code, out, err = run_cli(["evaluate", "--pairs", str(tmp_path / "pairs.txt"), "--protocol", "nyu-hu", "--quiet",
                              "--json", str(tmp_path / "o.json")], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "o.json").read_text())
    assert tuple(doc["metrics"]) == HU_KEYS and doc["count"] == 4 and doc["averaging"] == "rms_of_mse"
    assert_hu_metrics(doc["metrics"], hu_average(refs), 4, "nyu-hu")
    assert "<= 1.25^k" in out


def assert_hu_metrics(got, ref, images, what):
    """Equal to 1e-6 but the deltas, which are pixel counts: a prediction within float32 rounding of a 1.25^k
    boundary may flip a pixel of a 228x304 crop (seen once on the real frames: d1 off by 1.44e-6 = one pixel
    of one crop over 10 images), so they may differ by up to two pixels averaged over the images."""
    assert_close({k: v for k, v in got.items() if not k.startswith("d")},
                 {k: v for k, v in ref.items() if not k.startswith("d")}, 1e-6, what)
    one_pixel = 1.0 / (228 * 304 * images)
    for key in ("d1", "d2", "d3"):
        assert abs(got[key] - ref[key]) <= 2 * one_pixel, (what, key, got[key], ref[key])


def test_nyu_hu_delta_is_less_or_equal_and_nothing_is_clipped(rng, caplog):
    gt = np.full((480, 640), 2.0)
    pred = np.full((228, 304), 2.5)  # ratio exactly 1.25: counted by <= (Hu), not by < (BTS)
    row = Evaluator("nyu-hu").add(pred, gt)
    assert row["d1"] == 1.0 and row["valid_pixels"] == 228 * 304
    assert Evaluator(get_protocol("nyu-hu", delta_comparison="<")).add(pred, gt)["d1"] == 0.0
    assert Evaluator(custom_protocol(delta_comparison="<=", max_depth=10)).add(np.full((8, 8), 2.5),
                                                                               np.full((8, 8), 2.0))["d1"] == 1.0
    pred[0, 0] = 0.0  # no clipping: log10 of a zero prediction is infinite, as in the official code
    with np.errstate(divide="ignore"), caplog.at_level(logging.WARNING, logger="hqdepth.evaluation"):
        assert math.isinf(Evaluator("nyu-hu").add(pred, gt)["log10"])
    assert "the prediction has inf/NaN/non-positive values" in caplog.text and "ground truth" not in caplog.text
    caplog.clear()
    pred[0, 0], gt[:40] = 2.5, 0.0  # a zero in the ground truth is counted too, and the warning says so
    with np.errstate(divide="ignore"), caplog.at_level(logging.WARNING, logger="hqdepth.evaluation"):
        assert math.isinf(Evaluator("nyu-hu").add(pred, gt)["log10"])
    assert "the ground truth has zero, negative or infinite depth" in caplog.text and "prediction" not in caplog.text


def test_nyu_hu_grid_is_pils_as_in_the_official_loader(rng):
    from PIL import Image

    gt_mm = rng.integers(500, 10000, (480, 640)).astype(np.uint16)
    pil = Image.fromarray(gt_mm.astype(np.int32), mode="I").resize((320, 240), Image.NEAREST).crop((8, 6, 312, 234))
    np.testing.assert_array_equal(hu_ground_truth(gt_mm.astype(np.float64)), np.asarray(pil))
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    pil = Image.fromarray(rgb).resize((320, 240), Image.BILINEAR).crop((8, 6, 312, 234))
    np.testing.assert_array_equal(hu_rgb(rgb), np.asarray(pil))


def test_nyu_hu_model_path_runs_the_228x304_crop(rng, monkeypatch):
    from predict_helpers import tiny_model

    model = tiny_model((228, 304, 3))  # trained at the Hu crop size: run as is
    spy = Spy(monkeypatch)
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    pred = protocol_prediction(DepthModel.from_keras(model), rgb, "nyu-hu")
    assert spy.calls == [((1, 228, 304, 3), None)] and pred.shape == (228, 304)
    np.testing.assert_allclose(pred, np.asarray(model(hu_rgb(rgb)[None].astype(np.float32)))[0, ..., 0], atol=1e-6)


def test_nyu_hu_on_real_nyu_test_frames(realdata, tmp_path, rng, capsys):
    folder = realdata / "nyu_test10"
    lines, refs = [], []
    for k in range(10):
        gt = cv2.imread(str(folder / f"depth_{k}.png"), cv2.IMREAD_UNCHANGED).astype(np.float64) / 1000.0
        shape = (228, 304) if k % 2 else (480, 640)
        pred = np.clip(cv2.resize(gt, shape[::-1], interpolation=cv2.INTER_AREA), 0.5, None) * rng.lognormal(
            0, 0.1, shape)
        np.save(tmp_path / f"pred_{k}.npy", pred)
        lines.append(f"pred_{k}.npy {folder / f'depth_{k}.png'}")
        refs.append(hu_reference(pred, gt))
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    code, out, err = run_cli(["evaluate", "--pairs", str(tmp_path / "pairs.txt"), "--protocol", "nyu-hu", "--quiet",
                              "--json", str(tmp_path / "o.json")], capsys)
    assert code == 0, err
    print(out)
    doc = json.loads((tmp_path / "o.json").read_text())
    assert doc["count"] == 10
    assert_hu_metrics(doc["metrics"], hu_average(refs), 10, "nyu-hu real frames")
    assert 0.05 < doc["metrics"]["abs_rel"] < 0.2 and doc["metrics"]["d1"] > 0.8


def test_mrpan_recipe_evaluates_with_nyu_hu():
    from hqdepth.training import recipes
    from hqdepth.training.trainer import protocol_of

    config = recipes.resolve_config("mrpan_nyu", sets=["model.options.backbone_weights=none"])
    assert config["evaluation"]["protocol"] == "nyu-hu" and protocol_of(config) is PROTOCOLS["nyu-hu"]


def test_list_lines_without_ground_truth_count_as_skipped(tmp_path, rng):
    """A list's lines whose ground truth is None (KITTI's Eigen test list: 45 of 697) are counted in `skipped` when a
    model is evaluated on the list as a SPEC (`evaluate --model`), in the trainer's test evaluation
    (`evaluate_source`), as with `--pairs` (before, only `--pairs` counted them: 0 skipped)."""
    from hqdepth.data import open_source
    from hqdepth.model_testing import evaluate_source

    lines = []
    for k in range(3):
        cv2.imwrite(str(tmp_path / f"rgb{k}.png"), rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
        cv2.imwrite(str(tmp_path / f"gt{k}.png"), rng.integers(500, 5000, (64, 96), dtype=np.uint16))
        lines.append(f"rgb{k}.png {'None' if k == 1 else f'gt{k}.png'} 500.0")
    (tmp_path / "test.txt").write_text("\n".join(lines) + "\n")
    model = DepthModel.from_keras(tiny_bts((None, None, 3), with_focal=False, max_depth=10.0))
    protocol = custom_protocol(max_depth=10.0)
    spec = f"list:{tmp_path / 'test.txt'}?scale=1000"
    for result in (evaluate_model(model, spec, protocol, progress=False),
                   evaluate_source(model, open_source(spec, split="test"), protocol)):
        assert (result.count, len(result.skipped)) == (2, 1) and result.skipped[0].endswith("test.txt:2"), (
            result.count, result.skipped)
    assert len(evaluate_source(model, open_source(spec, split="test"), protocol, limit=1).skipped) == 0  # a part


def test_a_saved_model_without_its_run_gets_its_familys_size_multiple(tmp_path, rng, capsys):
    """A `.keras` file with no run config beside it (what `hqdepth weights convert --from bts` writes, or a
    `model.save`) is a registered family by its name: BTS runs photos at multiples of 32 (it ran them at 32k+1 and
    every photo stopped in the decoder's concatenation), and a size it cannot take is refused by name."""
    from hqdepth.export import export

    keras_model = tiny_bts((None, None, 3), with_focal=False, max_depth=10.0)
    assert keras_model.name == "bts"
    keras_model.save(tmp_path / "bts.keras")
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    model = load(tmp_path / "bts.keras")
    assert model.config is None and model.family() == "bts" and model.run_size(64, 96) == (64, 96)
    code, _, err = run_cli(["predict", str(tmp_path / "bts.keras"), str(photo), "--out", str(tmp_path / "depth"),
                            "--quiet"], capsys)
    assert code == 0, err
    from hqdepth.images import read_image

    wanted = np.asarray(keras_model(read_image(photo)[None].astype(np.float32)))[0, ..., 0]
    np.testing.assert_allclose(np.load(tmp_path / "depth" / "photo_depth.npy"), wanted, rtol=0, atol=1e-4)
    with pytest.raises(ConfigError, match=r"--input-size 100x100: bts needs sides that are multiples of 32 "
                                          r"\(nearest 96x96\)"):
        export(model, tmp_path / "exported", input_size=(100, 100))
