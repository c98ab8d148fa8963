"""The public recipe API: the keras.io-style snippet runs, equals `hqdepth train`, and every piece is swappable."""

import json

import keras
import numpy as np
import pytest
import yaml

import hqdepth
from hqdepth.errors import ConfigError

DATA = "synthetic:12?size=32x48"
# The HQMD recipe (its loss, optimizer, schedule, callbacks) on the small FCN: the engine is the subject here, and
# ResNet-50's graphs took most of this file's time (152 s on CI); test_docs_examples runs the snippet on HQMD itself.
OVERRIDES = {"data.input_size": [32, 48], "model.name": "fcn_autoencoder", "model.options.max_depth": 10.0,
             "train.batch_size": 2, "train.max_steps": 4, "train.validation_every_steps": 2,
             "train.validation_steps": 1, "train.image_samples": 1, "train.deterministic": True, "train.seed": 3,
             "evaluation.protocol": "custom", "evaluation.test_samples": 2,
             "evaluation.protocol_options": {"min_depth": 0.001, "max_depth": 10.0}}


def weights_of(model):
    return [np.asarray(w) for w in model.weights]


def test_model_fit_with_the_recipe_pieces_equals_hqdepth_train(tmp_path):
    r = hqdepth.recipe("hqmd_plus_full", overrides=OVERRIDES)
    train, val = r.datasets(DATA)
    model = r.build_model()
    r.compile(model)
    assert (r.epochs, r.steps_per_epoch, r.validation_steps) == (2, 2, 1)
    model.fit(train, validation_data=val, epochs=r.epochs, steps_per_epoch=r.steps_per_epoch,
              validation_steps=r.validation_steps, callbacks=r.callbacks(tmp_path / "mine"), verbose=0)
    evaluation = r.evaluate(model, DATA)
    assert evaluation.count == 2 and np.isfinite(evaluation.metrics["rmse"])
    assert (tmp_path / "mine" / "metrics.csv").is_file() and (tmp_path / "mine" / "checkpoints" / "latest.keras").is_file()
    # a second model.fit script into it would start the epochs again (and ran past the run's length after a kill):
    # refused, naming how to resume
    with pytest.raises(ConfigError, match=r"holds the backup of step 4 of this recipe: Recipe.train\(data, "):
        r.callbacks(tmp_path / "mine")
    # the callbacks' folder carries its config: a run of another config is refused there, not resumed from the
    # fit's backup (it said "finished after 4 of 2 steps"); without config.yaml the state is refused too
    other = hqdepth.recipe("hqmd_plus_full", overrides={**OVERRIDES, "train.max_steps": 2})
    with pytest.raises(ConfigError, match=r"holds a run with another config \(differs in: train.max_steps"):
        other.train(DATA, tmp_path / "mine", print_fn=lambda *a, **k: None, verbose=0)
    (tmp_path / "mine" / "config.yaml").unlink()
    with pytest.raises(ConfigError, match=r"holds training state \(backup, checkpoints/.*\) but no config.yaml"):
        other.train(DATA, tmp_path / "mine", print_fn=lambda *a, **k: None, verbose=0)

    keras.backend.clear_session()
    results = hqdepth.recipe("hqmd_plus_full", overrides=OVERRIDES).train(DATA, tmp_path / "cli",
                                                                        print_fn=lambda *a, **k: None, verbose=0)
    assert results["steps"] == 4
    engine = keras.saving.load_model(tmp_path / "cli" / "model.keras", compile=False)
    ours, theirs = weights_of(model), weights_of(engine)
    assert len(ours) == len(theirs)
    scale = max(float(np.abs(w).max()) for w in theirs)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs))
    assert diff <= 1e-6 * scale, diff
    assert results["test"]["metrics"]["rmse"] == pytest.approx(evaluation.metrics["rmse"], rel=1e-5)
    before = weights_of(engine)[0]
    assert not np.array_equal(before, weights_of(hqdepth.recipe("hqmd_plus_full", overrides={
        **OVERRIDES, "train.seed": 4}).build_model())[0])  # a different seed gives a different start: the test can fail


def test_pieces_can_be_swapped(tmp_path):
    import tensorflow as tf

    r = hqdepth.recipe("fcn_ssim_mse", overrides={"data.input_size": [32, 32], "train.batch_size": 2,
                                                  "train.max_steps": 2, "train.seed": 1})
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    depths = rng.uniform(0.5, 9, (4, 32, 32, 1)).astype("float32")
    own = tf.data.Dataset.from_tensor_slices((images, depths)).batch(2)  # any (image 0..255, metres) dataset
    model = r.build_model()
    with pytest.raises(ConfigError, match="call recipe.datasets"):
        r.compile(model)
    r.compile(model, optimizer=keras.optimizers.SGD(1e-3))  # own optimizer: no run length needed
    seen = []
    model.fit(own, epochs=1, verbose=0, callbacks=[keras.callbacks.LambdaCallback(
        on_batch_end=lambda batch, logs: seen.append(batch))])
    assert seen == [0, 1] and isinstance(model.optimizer, keras.optimizers.SGD)


def test_recipes_from_dicts_and_files_round_trip_and_refuse_unknown_fields(tmp_path):
    r = hqdepth.recipe("bts_kitti", overrides={"train.batch_size": 2})
    again = hqdepth.recipe(yaml.safe_load(r.to_yaml()))
    assert again.config == r.config
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"base": "hqmd_plus_full", "train": {"total_steps": 1000}}))
    from_file = hqdepth.recipe(path)
    assert from_file.config["train"]["total_steps"] == 1000 and from_file.config["model"]["name"] == "hqmd_baseline_plus"
    partial = hqdepth.recipe({"base": "hqmd_plus_full", "optimizer": {"learning_rate": 3e-4}})
    assert partial.config["loss"]["name"] == "HQMDLoss" and partial.config["optimizer"]["learning_rate"] == 3e-4
    with pytest.raises(ConfigError, match="unknown recipe field 'train.epoch'; known: .*epochs"):
        hqdepth.recipe("hqmd_plus_full", overrides={"train.epoch": 3})
    assert "300000 steps" in repr(hqdepth.recipe("hqmd_plus_full"))
    # train.max_steps replaces the run's length: the line says so, beside the recipe's own
    short = hqdepth.recipe("hqmd_plus_full", overrides={"train.max_steps": 2000})
    assert "2000 steps (train.max_steps; the recipe's run: 300000 steps)" in repr(short)
    longer = hqdepth.recipe("bts_nyu", overrides={"train.max_steps": 400000})
    assert "400000 steps (train.max_steps; the recipe's run: 50 epochs)" in repr(longer)
    json.dumps(r.config)  # plain data
