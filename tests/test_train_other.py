"""The training engine on the other model families (specs/other_models.md): `train()` for 2 steps at 32x32 on
one recipe per family, test metrics in results.json computed on the final depth (MRPAN: the finest of its five
outputs), TensorBoard images, export and reload of the MRPAN run, and BTS's encoder-only AdamW weight decay.

BTS and MRPAN run their own builders on a tiny five-scale encoder instead of ResNet-50 (registered as
`bts_tiny` / `mrpan_tiny` for this module): a ResNet-50 train step takes minutes to trace on a 2-core CPU.
The ResNet-50 variants are built, saved and fitted in test_models_other.py.
"""

import json

import keras
import numpy as np
import pytest
from test_models_other import five_scale_backbone
from test_training_runs import event_tags

from hqdepth.data import open_source
from hqdepth.evaluation import evaluate_arrays
from hqdepth.models import bts, mrpan, registry
from hqdepth.training import recipes
from hqdepth.training.trainer import build_optimizer, protocol_of, train

DATA = "synthetic:8?size=32x32"
SETS = [
    "data.input_size=[32, 32]", "train.batch_size=2", "train.max_steps=2", "train.validation_steps=1",
    "train.image_samples=2", "train.log_every_steps=1", "evaluation.test_samples=2", "evaluation.protocol=custom",
    "evaluation.protocol_options={min_depth: 0.001, max_depth: 10.0, clip: range}",
]
TINY_BTS = ["model.name=bts_tiny", "model.options={bts_size: 128}"]
RUNS = {  # one recipe per family: what makes it tiny
    "fcn_ssim_mse": [],
    "resnet50_transposed": ["model.options.backbone_weights=none", "model.options.frozen_stages=0",
                            "model.options.decoder_filters=[8, 8, 8, 8]"],
    # (image, focal); two batch groups of one sample (the Toolbox's per-GPU batch norm and loss)
    "bts_kitti": TINY_BTS + ["model.options.with_focal=true", "model.options.max_depth=80.0", "train.batch_groups=2"],
    "mrpan_nyu": ["model.name=mrpan_tiny",  # SAM at H/32 only, no GAM: 380 variables instead of 509 to trace
                  "model.options={adff_channels: 160, rpd_channels: 128, sam_scales: [5], gam: false}"],
}


def tiny_bts(input_shape=(None, None, 3), **options):
    return bts.bts(input_shape, encoder=five_scale_backbone(input_shape), **options)  # fixed size as bts's own


def tiny_mrpan(input_shape=(None, None, 3), **options):
    return mrpan.mrpan(input_shape, backbone=five_scale_backbone(), **options)


@pytest.fixture(scope="module", autouse=True)
def tiny_families():
    """`bts_tiny` and `mrpan_tiny` in the model registry while this module runs."""
    entries = [registry.ModelEntry("bts_tiny", tiny_bts, (32, 32), "BTS on a tiny encoder", "test",
                                   bts.decoder_variables, bts.SIZE_MULTIPLE),
               registry.ModelEntry("mrpan_tiny", tiny_mrpan, (32, 32), "MRPAN on a tiny encoder", "test")]
    registry.list_models()  # load the real families first
    with pytest.MonkeyPatch.context() as patch:
        for entry in entries:
            patch.setitem(registry._REGISTRY, entry.name, entry)
        yield


def run(recipe, out):
    config = recipes.resolve_config(recipe, sets=SETS + RUNS[recipe])
    keras.utils.set_random_seed(0)
    return config, train(config, DATA, out, print_fn=lambda *a, **k: None, verbose=0)


@pytest.fixture(scope="module")
def mrpan_run(tmp_path_factory, tiny_families):
    """(run folder, config, results, the final model)."""
    out = tmp_path_factory.mktemp("mrpan")
    config, results = run("mrpan_nyu", out)
    return out, config, results, keras.saving.load_model(out / "model.keras", compile=False)


@pytest.mark.parametrize("recipe", [r for r in RUNS if r != "mrpan_nyu"])
def test_each_recipe_trains_evaluates_and_logs_images(recipe, tmp_path):
    config, results = run(recipe, tmp_path)
    assert results["status"] == "finished" and results["steps"] == 2
    test = json.loads((tmp_path / "results.json").read_text())["test"]
    assert test["count"] == 2 and np.isfinite(test["metrics"]["rmse"]) and test["flip"] is False
    assert ("ssim" in test["metrics"]) == config["evaluation"]["ssim"]  # fcn_ssim_mse, resnet50_transposed
    assert event_tags(tmp_path / "logs" / "validation")["depth"] == [2]
    for name in ("model.keras", "checkpoints/best.keras", "checkpoints/latest.keras"):
        assert (tmp_path / name).is_file()


def finest(model, images):
    return np.asarray(mrpan.finest_depth_model(model)(images, training=False))[..., 0]


def test_mrpan_run_evaluates_the_finest_output(mrpan_run):
    out, config, results, model = mrpan_run
    assert results["status"] == "finished"
    assert isinstance(model, mrpan.DeepSupervisionModel) and len(model.outputs) == 5
    source = open_source(DATA, split="test")
    samples = [source[i] for i in range(2)]
    images = np.stack([s.rgb for s in samples]).astype(np.float32)
    gts = [s.depth[..., 0] for s in samples]
    expected = evaluate_arrays(list(finest(model, images)), gts, protocol_of(config)).metrics
    got = json.loads((out / "results.json").read_text())["test"]["metrics"]
    assert got == pytest.approx(expected, rel=1e-5)
    coarse = np.asarray(model(images, training=False)[1])  # H/4: not what was evaluated
    assert coarse.shape[1:3] == (8, 8) and finest(model, images).shape == (2, 32, 32)
    assert event_tags(out / "logs" / "validation")["depth"] == [2]  # the finest map, drawn at the input size


def test_mrpan_export_and_predict_give_the_finest_output(mrpan_run, tmp_path, rng):
    from hqdepth.export import export
    from hqdepth.predict import load

    out, _, _, model = mrpan_run
    images = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    want = finest(model, images)  # best.keras = model.keras: the only validation is at the last step
    run_model = load(out)  # what `hqdepth predict RUN` and `hqdepth export RUN` load
    assert "finest of 5 outputs" in run_model.describe()
    np.testing.assert_allclose(run_model(images), want, rtol=1e-5, atol=1e-5)
    # the .keras export (the SavedModel export traces the same one-output view; ~4x the time here)
    exported = export(run_model, tmp_path / "export", format="keras")["path"]
    np.testing.assert_allclose(load(exported)(images), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("recipe,decoder_decayed", [("bts_nyu", False), ("bts_nyu_toolbox24", True)])
def test_bts_weight_decay_on_the_encoder_only(recipe, decoder_decayed):
    """One AdamW step with zero gradients: only decay moves weights, w <- w (1 - lr wd)."""
    lr, wd = 0.1, 0.5
    config = recipes.resolve_config(recipe, sets=TINY_BTS + [f"optimizer.learning_rate={lr}", "schedule.name=constant",
                                                             f"optimizer.options.weight_decay={wd}"])
    model = registry.build_model("bts_tiny", input_shape=(32, 32, 3), **config["model"]["options"])
    optimizer = build_optimizer(config, steps_per_epoch=10, total_steps=100, model=model)
    decoder = {id(v) for v in bts.decoder_variables(model)}
    assert decoder and len(decoder) < len(model.trainable_variables)
    before = [np.array(v) for v in model.trainable_variables]
    optimizer.apply_gradients([(keras.ops.zeros_like(v), v) for v in model.trainable_variables])
    for variable, old in zip(model.trainable_variables, before):
        shrink = decoder_decayed or id(variable) not in decoder
        np.testing.assert_allclose(np.array(variable), old * (1 - lr * wd) if shrink else old, rtol=1e-6,
                                   err_msg=variable.path)


def test_decay_encoder_only_needs_a_family_that_names_its_decoder():
    from hqdepth.errors import ConfigError

    config = recipes.resolve_config("mrpan_nyu", sets=["optimizer.decay_encoder_only=true"])
    with pytest.raises(ConfigError, match="does not say which variables are its decoder"):
        build_optimizer(config, steps_per_epoch=10, total_steps=100, model=None)


def test_bts_trains_on_crops_and_validates_on_whole_frames(tmp_path):
    """BTS KITTI at its real sizes: 352x704 crops of the 352x1216 KB crop for training, the whole KB crop for
    validation and the TensorBoard images, as bts_main.py's online evaluation. The model takes any size (a model
    fixed at 352x704 refused the first validation batch), and the logged validation loss is the final model's loss
    on the whole frames, computed here with Keras' own evaluate."""
    import csv

    from hqdepth.training.trainer import apply_batch_groups, build_loss, compile_metrics, load_split

    data = "synthetic:6?size=375x1242"  # KITTI's frame size: the KB crop is cut from it; its iBims-style
    # geometric validation runs the free-size model at a multiple of 32 (`DepthModel.run_size`), not at 375x1242
    sets = SETS + RUNS["bts_kitti"] + ["data.input_size=[352, 704]", "train.image_samples=1",
                                       "evaluation.test_samples=1"]
    config = recipes.resolve_config("bts_kitti", sets=sets)
    keras.utils.set_random_seed(0)
    results = train(config, data, tmp_path, print_fn=lambda *a, **k: None, verbose=0)
    assert results["status"] == "finished"
    model = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    assert tuple(model.inputs[0].shape[1:3]) == (None, None)
    val = load_split(config, data, config["data"]["val_split"], 2, train=False)
    (images, focals), depths = next(iter(val))
    assert tuple(images.shape[1:3]) == (352, 1216)  # whole KB crops, not 352x704
    loss = build_loss(config)
    apply_batch_groups(model, loss, config, 1)  # the recipe's loss per group of one sample, as in training
    model.compile(loss=loss, metrics=compile_metrics(loss, config))
    want = model.evaluate(val, steps=1, verbose=0, return_dict=True)
    with open(tmp_path / "metrics.csv") as handle:
        logged = list(csv.DictReader(handle))[-1]
    assert float(logged["val_loss"]) == pytest.approx(want["loss"], rel=1e-4)
    assert image_sizes(tmp_path / "logs" / "validation", "depth") == [(352, 3 * 1216)]  # RGB | truth | prediction


def image_sizes(folder, tag):
    """[(height, width)] of the images logged under `tag` in the TensorBoard event files in `folder`."""
    import tensorflow as tf

    sizes = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == tag:
                    width, height = tf.make_ndarray(value.tensor)[:2]
                    sizes.append((int(height), int(width)))
    return sizes


def test_whole_frame_validation_refuses_frames_the_model_cannot_take(tmp_path):
    """A BTS recipe validating on frames that are not multiples of 32 stops before training, naming the size."""
    from hqdepth.errors import ConfigError

    config = recipes.resolve_config("bts_nyu", sets=SETS + TINY_BTS + ["data.input_size=[416, 544]"])
    with pytest.raises(ConfigError, match=r"validates on whole frames.* are 100x120, not multiples of 32"):
        train(config, "synthetic:4?size=480x640", tmp_path, val_data="synthetic:2?size=100x120",
              print_fn=lambda *a, **k: None, verbose=0)
    assert not (tmp_path / "model.keras").exists()


def test_whole_frame_validation_is_read_from_the_augmentation_name_as_its_class_says():
    from hqdepth.data.augment import RECIPES, get_recipe
    from hqdepth.training.trainer import whole_frame_validation

    for name in [*RECIPES, "bts_nyu", "bts_kitti", "bts?dataset=kitti", "BTS-KITTI"]:
        assert whole_frame_validation({"data": {"augmentation": name}}) == get_recipe(name).whole_frame_validation
    assert get_recipe("bts_kitti").whole_frame_validation and not get_recipe("hqmd").whole_frame_validation


def test_ground_truth_beyond_the_max_depth_is_warned_about_before_training():
    """Depth read at the wrong scale (most pixels beyond the recipe's max depth) is named with its median."""
    from hqdepth.training.trainer import check_depth_scale

    depths = [open_source(DATA)[index].depth for index in range(3)]
    median = float(np.median(np.concatenate([d[np.isfinite(d) & (d > 0)] for d in depths])))
    lines = []
    check_depth_scale(recipes.resolve_config("fcn_ssim_mse", sets=SETS), DATA, lines.append)
    assert median < 10.0 and lines == []
    below = f"model.options.max_depth={median / 2}"
    check_depth_scale(recipes.resolve_config("fcn_ssim_mse", sets=SETS + [below]), DATA, lines.append)
    assert len(lines) == 1 and f"a median of {median:.1f} m" in lines[0] and "depth scale" in lines[0], lines


def test_a_focal_aware_model_at_a_reduced_size_is_warned_about():
    """bts_kitti at 64x128 resizes frames (and focals) to 0.18 of the published 352x704 crop: the depth BTS can
    output shrinks with the focal (max_depth x sigmoid x focal / 715), and the KB-crop test runs at native
    resolution; said once before training. Not at the published size, nor for a model without focal input."""
    from hqdepth.training.trainer import check_focal_zoom

    lines = []
    check_focal_zoom(recipes.resolve_config("bts_kitti"), lines.append)
    check_focal_zoom(recipes.resolve_config("hqmd_plus_full", sets=["data.input_size=[145, 193]"]), lines.append)
    assert lines == []
    check_focal_zoom(recipes.resolve_config("bts_kitti", sets=["data.input_size=[64, 128]"]), lines.append)
    assert len(lines) == 1 and "0.18 of its published 352x704 crop" in lines[0], lines
    assert "test (kitti-garg) runs frames at native resolution, 5.5x the scale" in lines[0], lines
    check_focal_zoom(recipes.resolve_config("bts_kitti", sets=["data.input_size=[64, 128]",
                                                               "train.test_evaluation=false"]), lines.append)
    assert len(lines) == 2 and "native resolution" not in lines[1], lines


def test_a_misspelt_augmentation_is_refused_before_any_data_is_read(tmp_path):
    """`data.augmentation=bts_kity`: the error lists the known names (and the bts aliases) before the data is opened
    (the data here does not exist; that error came first before) and before the run folder is made."""
    from hqdepth.errors import ConfigError

    config = recipes.resolve_config("bts_kitti", sets=["data.augmentation=bts_kity"])
    with pytest.raises(ConfigError, match=r"Unknown augmentation recipe 'bts_kity'; known: .*bts_kitti"):
        train(config, f"folder:{tmp_path / 'absent'}", tmp_path / "run", print_fn=lambda *a: None)
    assert not (tmp_path / "run").exists()
