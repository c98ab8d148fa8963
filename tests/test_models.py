"""HQMD baseline / baseline+ models: size, structure, output range, saving, mixed precision."""

import os

import keras
import numpy as np
import pytest

from hqdepth import losses
from hqdepth.errors import ConfigError
from hqdepth.models import build_model, list_models

RNG = np.random.default_rng(int(os.environ["HQDEPTH_TEST_SEED"]))


def conv(k, cin, cout, bias):
    return k * k * cin * cout + (cout if bias else 0)


def bn(c):
    return 4 * c  # gamma, beta, moving mean, moving variance


def resnet50_v2_count():
    """ResNet-50 v2 (pre-activation) from its layer list: stem conv with bias, no stem BN."""
    total = conv(7, 3, 64, True)
    cin = 64
    for width, units in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for unit in range(units):
            total += bn(cin)  # preact
            if unit == 0:
                total += conv(1, cin, 4 * width, True)  # projection shortcut
            total += conv(1, cin, width, False) + bn(width) + conv(3, width, width, False) + bn(width)
            total += conv(1, width, 4 * width, True)
            cin = 4 * width
    return total + bn(2048)  # post-norm


def hqmd_count(plus):
    aspp = 2 * (conv(1, 2048, 256, False) + bn(256)) + 3 * (conv(3, 2048, 256, False) + bn(256))
    aspp += conv(1, 1280, 256, False) + bn(256)
    decoder = conv(1, 64, 48, False) + bn(48) + conv(3, 304, 256, False) + bn(256) + conv(3, 256, 256, False) + bn(256)
    if plus:
        decoder += conv(3, 256, 16, False) + bn(16) + conv(1, 16, 1, True)
    else:
        decoder += conv(1, 256, 1, True)
    return resnet50_v2_count() + aspp + decoder


@pytest.mark.parametrize("name,plus,spec_millions", [("hqmd_baseline_plus", True, 40.435),
                                                     ("hqmd_baseline", False, 40.399)])
def test_parameter_count_matches_independent_count(name, plus, spec_millions):
    from shape_helpers import shapes_only

    with shapes_only():  # counts only: the random initial values are not drawn
        model = build_model(name)
    assert model.count_params() == hqmd_count(plus)
    assert model.count_params() / 1e6 == pytest.approx(spec_millions, abs=0.001)  # hqmd.md section 2.5
    moving = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights if "moving" in w.path)
    frozen_convs = conv(7, 3, 64, True) + conv(1, 64, 256, True) + 3 * (
        conv(1, 256, 64, False) + conv(3, 64, 64, False) + conv(1, 64, 256, True)) - conv(1, 256, 64, False) + conv(
        1, 64, 64, False)
    assert len(model.non_trainable_weights) > 0
    assert model.count_params() - sum(int(np.prod(w.shape)) for w in model.trainable_weights) == moving + frozen_convs


def test_feature_sizes_at_paper_input_and_output_range():
    model = build_model("hqmd_baseline_plus", input_shape=(289, 385, 3))
    probe = keras.Model(model.input, [model.get_layer("aspp").output, model.get_layer("decoder_low_level_relu").output,
                                      model.output])
    x = RNG.uniform(0, 255, (2, 289, 385, 3)).astype(np.float32)
    aspp, low, depth = probe(x, training=True)
    assert aspp.shape == (2, 19, 25, 256) and low.shape == (2, 73, 97, 48)
    assert depth.shape == (2, 289, 385, 1) and depth.dtype == "float32"
    depth = np.asarray(depth)
    assert depth.min() > 0.0 and depth.max() < 10.0 and depth.std() > 0


def test_output_is_max_depth_sigmoid_of_logits():
    model = build_model("hqmd_baseline", max_depth=80.0, align_corners=False)
    x = RNG.uniform(0, 255, (1, 49, 65, 3)).astype(np.float32)
    logits_model = keras.Model(model.input, model.get_layer("upsample_to_image").output)
    logits = np.asarray(logits_model(x, training=True), np.float64)
    depth = np.asarray(model(x, training=True), np.float64)
    np.testing.assert_allclose(depth, 80.0 / (1.0 + np.exp(-logits)), rtol=1e-5)
    assert model.get_layer("upsample_to_image").align_corners is False


def test_keras_round_trip_safe_mode(tmp_path):
    model = build_model("hqmd_baseline_plus", aspp_rates=(2, 4, 6))
    x = RNG.uniform(0, 255, (2, 65, 97, 3)).astype(np.float32)
    model.compile(optimizer=keras.optimizers.Adam(1e-4, epsilon=1e-8), loss=losses.HQMDLoss(mask_invalid=False),
                  run_eagerly=True)  # eager: no graph tracing, which costs more than the step on a CPU
    model.train_on_batch(x, RNG.uniform(0.5, 9.0, (2, 65, 97, 1)).astype(np.float32))  # moving stats move
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(restored(x, training=False), model(x, training=False))
    assert restored.get_layer("aspp").rates == (2, 4, 6)
    assert restored.loss.get_config() == model.loss.get_config()


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_builds_outputs_float32_and_trains(policy):
    keras.config.set_dtype_policy(policy)
    model = build_model("hqmd_baseline_plus")
    assert model.get_layer("decoder_conv1_conv").compute_dtype == policy.split("_")[1]
    assert model.get_layer("depth").compute_dtype == "float32"
    loss = losses.HQMDLoss()
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss, metrics=loss.term_metrics(), run_eagerly=True)
    # float16 backprop of the big convs is very slow on a CPU (TF has no fast fp16 CPU kernels): keep it tiny
    shape = (1, 17, 17) if policy == "mixed_float16" else (2, 33, 49)
    x = RNG.uniform(0, 255, (*shape, 3)).astype(np.float32)
    y = RNG.uniform(0.5, 9.0, (*shape, 1)).astype(np.float32)
    before = [w.numpy().copy() for w in model.trainable_weights[-4:]]
    logs = model.train_on_batch(x, y, return_dict=True)
    assert model(x).dtype == "float32"
    assert np.isfinite(logs["loss"]) and {"l_depth", "l_grad_mg", "l_grad_dr"} <= set(logs)
    updated = any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights[-4:]))
    if policy == "mixed_float16":  # Keras loss scaling: a step either applies or lowers the scale (overflow)
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert updated or float(model.optimizer.dynamic_scale) < 2.0**15
    else:
        assert updated


def test_registry_lists_models_and_rejects_unknown_names():
    names = [entry.name for entry in list_models()]
    assert {"hqmd_baseline", "hqmd_baseline_plus"} <= set(names)
    with pytest.raises(ConfigError, match="Unknown model 'hqmd_plus'"):
        build_model("hqmd_plus")
    # options the builders took without a word, or a TypeError naming neither option nor value
    with pytest.raises(ConfigError, match=r"model 'bts': max_depth=-1 must be a positive number of metres"):
        build_model("bts", max_depth=-1)
    with pytest.raises(ConfigError, match=r"model 'fcn_autoencoder': max_depth=0 must be a positive number"):
        build_model("fcn_autoencoder", max_depth=0)
    with pytest.raises(ConfigError, match=r"model 'hqmd_baseline_plus' sets decode_at_image_size itself"):
        build_model("hqmd_baseline_plus", decode_at_image_size=False)
