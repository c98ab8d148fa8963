"""The ResNet-50 backbone against keras.applications (weights by name, identical features) and HQMD's strides."""

import os

import keras
import numpy as np
import pytest

from hqdepth.backbones import resnet50, unit_schedule
from hqdepth.errors import ConfigError, HQDepthError

RNG = np.random.default_rng(int(os.environ["HQDEPTH_TEST_SEED"]))
APPLICATIONS = {"v2": keras.applications.ResNet50V2, "v1": keras.applications.ResNet50}
KERAS_COMPATIBLE = dict(preprocess="none", pool_padding="zero", bn_epsilon=1.001e-5)


def infer(model, x):
    """`model.predict(x)` run eagerly: predict traces a graph for every model and input shape (2-3 s each for a
    ResNet-50 on the 2-core Xeon VM, six of them in this file); what the tests check is the weights loaded and the
    strides, which an eager call computes with the same layers (inference mode, as predict)."""
    return np.asarray(model(x, training=False))


@pytest.fixture(scope="module", params=["v2", "v1"])
def reference(request, tmp_path_factory):
    """A randomly initialised keras.applications model, with non-trivial BN statistics, saved to a file."""
    model = APPLICATIONS[request.param](include_top=False, weights=None, input_shape=(None, None, 3))
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([RNG.uniform(0.8, 1.2, c), RNG.normal(0, 0.1, c), RNG.normal(0, 0.1, c),
                               RNG.uniform(0.8, 1.5, c)])
    path = tmp_path_factory.mktemp("weights") / f"resnet50{request.param}.weights.h5"
    model.save_weights(path)
    return request.param, model, path


def test_output_stride_32_reproduces_keras_applications(reference):
    version, model, path = reference
    ours = resnet50(version, output_stride=32, weights=str(path), **KERAS_COMPATIBLE)
    x = RNG.uniform(-1, 1, (2, 64, 96, 3)).astype(np.float32)
    expected = infer(model, x)
    got = infer(ours, x)
    assert got.shape == expected.shape == (2, 2, 3, 2048)
    assert np.abs(expected).max() > 1e-2
    assert np.abs(got - expected).max() < 1e-4
    # every weighted keras.applications layer exists under the same name with the same weights
    for layer in model.layers:
        if layer.weights:
            for a, b in zip(layer.get_weights(), ours.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)


def test_output_stride_16_loads_same_file_and_has_stride_16(reference):
    version, model, path = reference
    ours = resnet50(version, output_stride=16, weights=str(path), **KERAS_COMPATIBLE)
    features = infer(ours, np.zeros((1, 289, 385, 3), np.float32))
    assert features.shape == (1, 19, 25, 2048)  # (n - 1) // 16 + 1, as in the HQMD spec
    rates = [ours.get_layer(f"conv5_block{i}_2_conv").dilation_rate for i in (1, 2, 3)]
    assert rates == [(2, 2), (4, 4), (8, 8)]
    assert all(layer.strides == (1, 1) for layer in ours.layers if layer.name.startswith("conv5")
               and isinstance(layer, keras.layers.Conv2D))
    np.testing.assert_array_equal(ours.get_layer("conv5_block3_2_conv").kernel.numpy(),
                                  model.get_layer("conv5_block3_2_conv").kernel.numpy())


def test_unit_schedule_follows_slim_stack_blocks_dense():
    # HQMD: OS16 -> block3's last unit at stride 1 (rate 1), block4 rates 2 x (1, 2, 4)
    schedule = {(s, u): (stride, rate) for s, _, u, stride, rate in unit_schedule("v2", 16, (1, 2, 4))}
    assert schedule[("conv4", 6)] == (1, 1) and schedule[("conv3", 4)] == (2, 1)
    assert [schedule[("conv5", u)] for u in (1, 2, 3)] == [(1, 2), (1, 4), (1, 8)]
    schedule = {(s, u): (stride, rate) for s, _, u, stride, rate in unit_schedule("v2", 8, (1, 2, 4))}
    assert schedule[("conv3", 4)] == (1, 1) and schedule[("conv4", 1)] == (1, 2) and schedule[("conv4", 6)] == (1, 2)
    assert [schedule[("conv5", u)][1] for u in (1, 2, 3)] == [4, 8, 16]
    # v1 strides in the first unit: its own 3x3 conv already runs at the doubled rate
    schedule = {(s, u): (stride, rate) for s, _, u, stride, rate in unit_schedule("v1", 16, (1, 2, 4))}
    assert [schedule[("conv5", u)] for u in (1, 2, 3)] == [(1, 2), (1, 4), (1, 8)]
    assert all(rate == 1 for *_, rate in unit_schedule("v2", 32, (1, 2, 4)))
    with pytest.raises(ConfigError, match="output_stride"):
        unit_schedule("v2", 4, (1, 2, 4))


def test_hqmd_freezing_and_mean_subtraction():
    model = resnet50("v2", output_stride=16, freeze="stem_block1")
    frozen = {layer.name for layer in model.layers if layer.weights and not layer.trainable}
    expected = {"conv1_conv"} | {f"conv2_block{b}_{i}_conv" for b in (1, 2, 3) for i in (1, 2, 3)} | {
        "conv2_block1_0_conv"}
    assert frozen == expected
    assert model.get_layer("conv2_block1_1_bn").trainable and model.get_layer("conv3_block1_1_conv").trainable
    x = RNG.uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    normalised = keras.Model(model.input, model.get_layer("preprocess").output)(x)
    np.testing.assert_allclose(normalised, x - np.array([123.68, 116.78, 103.94]), atol=1e-4)


def test_bad_weights_give_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(HQDepthError, match="not found"):
        resnet50("v2", weights=str(tmp_path / "missing.weights.h5"))

    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: network is unreachable")

    monkeypatch.setattr("keras.src.utils.file_utils.get_file", offline)
    with pytest.raises(HQDepthError, match=r"resnet50v2_weights_tf_dim_ordering_tf_kernels_notop\.h5.*weights=PATH"):
        resnet50("v2", weights="imagenet")
    with pytest.raises(ConfigError, match="freeze"):
        resnet50("v2", freeze="all")


def test_legacy_h5_loads_by_name_and_partial_files_are_refused(reference, tmp_path):
    """Keras' official ImageNet files are legacy .h5 (Keras 2 format): by name, and complete."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    version, model, _ = reference
    path = tmp_path / "legacy.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    ours = resnet50(version, output_stride=32, weights=str(path), **KERAS_COMPATIBLE)
    x = RNG.uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32)
    assert np.abs(infer(ours, x) - infer(model, x)).max() < 1e-4
    partial = tmp_path / "partial.h5"
    with h5py.File(partial, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, keras.Model(model.input, model.get_layer("pool1_pool").output))
    with pytest.raises(HQDepthError, match="has no weights for"):
        resnet50(version, weights=str(partial))
