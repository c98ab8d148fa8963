"""Paper initialisations: every paper recipe names one; unset, random-under-freezing and offline are refused
before anything is built; cached files are used without the network (HQDEPTH_OFFLINE=1 in conftest)."""

import numpy as np
import pytest

from hqdepth.cli import main
from hqdepth.errors import ConfigError, HQDepthError
from hqdepth.training import recipes
from hqdepth.weights import pretrained

# recipe -> the initialisation its paper used (the official code's, where it names one)
PAPER_INIT = {
    "hqmd_plus_full": "slim-resnet_v2_50", "hqmd_plus_ldepth": "slim-resnet_v2_50",
    "hqmd_plus_ldepth_gradmg": "slim-resnet_v2_50", "hqmd_plus_hu": "slim-resnet_v2_50",
    "hqmd_baseline_ldepth": "slim-resnet_v2_50",
    "bts_nyu": "torchvision-resnet50", "bts_kitti": "torchvision-resnet50", "bts_nyu_toolbox24": "torchvision-resnet50",
    "mrpan_nyu": "cadene-senet154", "resnet50_transposed": "torchvision-resnet50",
}


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras" / "models"


def test_every_paper_recipe_names_its_papers_initialisation():
    for config in recipes.list_recipes():
        model = config["model"]
        if not pretrained.has_backbone(model["name"], model["options"]):
            assert config["name"] == "fcn_ssim_mse"  # Xavier init, no backbone
            continue
        assert model["options"]["backbone_weights"] == PAPER_INIT[config["name"]], config["name"]
        assert pretrained.check_initialisation(config) == PAPER_INIT[config["name"]]
        entry = pretrained.PRETRAINED[PAPER_INIT[config["name"]]]
        assert pretrained.backbone_version(model["name"], model["options"]) in entry.backbone_versions


def test_offline_training_stops_before_building_with_the_files_name(empty_cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "hqmd_plus_full", "--data", "synthetic:8?size=64x96", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for part in ("resnet_v2_50_2017_04_14.tar.gz", "http://download.tensorflow.org/models/", str(empty_cache),
                 "--set model.options.backbone_weights=", "backbone_weights=none", "HQDEPTH_OFFLINE"):
        assert part in err, part
    assert not out.exists()  # nothing built, no run folder


def test_a_failed_download_names_the_file_and_the_alternatives(empty_cache, monkeypatch):
    import keras

    monkeypatch.delenv("HQDEPTH_OFFLINE")
    calls = []

    def no_network(fname, origin, **kwargs):  # stands in for keras.utils.get_file without a network
        calls.append((fname, origin, kwargs["cache_subdir"]))
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    with pytest.raises(HQDepthError, match="resnet50.tv_in1k.safetensors.*Name or service not known") as error:
        pretrained.resolve("torchvision-resnet50", "v1.5")
    assert calls == [("resnet50.tv_in1k.safetensors", pretrained.PRETRAINED["torchvision-resnet50"].url, "models")]
    assert "hqdepth weights convert --from torchvision-resnet50" in str(error.value)


def test_unset_unknown_and_frozen_random_initialisations_are_refused():
    unset = recipes.resolve_config("hqmd_plus_full", sets=["model.options.backbone_weights=null"])
    with pytest.raises(ConfigError, match="backbone_weights is not set.*none"):
        pretrained.check_initialisation(unset)
    with pytest.raises(ConfigError, match="neither a known initialisation"):
        pretrained.check_initialisation(recipes.resolve_config(
            "bts_nyu", sets=["model.options.backbone_weights=no_such_file.h5"]))
    cases = {"hqmd_plus_full": "freeze=stem_block1", "bts_nyu": "freeze=official",
             "resnet50_transposed": "frozen_stages=4"}
    for name, frozen in cases.items():
        config = recipes.resolve_config(name, sets=["model.options.backbone_weights=none"])
        with pytest.raises(ConfigError, match=f"model.options.{frozen} freezes layers"):
            pretrained.check_initialisation(config)
        key = frozen.split("=")[0]
        unfrozen = recipes.resolve_config(name, sets=["model.options.backbone_weights=none",
                                                      f"model.options.{key}={pretrained.UNFROZEN[key]}"])
        assert pretrained.check_initialisation(unfrozen) == "none"
    # a model whose builder freezes by default is caught too (the option is absent from the recipe)
    bare = recipes.resolve_config("hqmd_plus_full", sets=["model.options={backbone_weights: none}"])
    bare["model"]["options"].pop("freeze", None)
    with pytest.raises(ConfigError, match="freeze=stem_block1"):
        pretrained.check_initialisation(bare)
    mrpan = recipes.resolve_config("mrpan_nyu", sets=["model.options.backbone_weights=none"])
    assert pretrained.check_initialisation(mrpan) == "none"  # MRPAN freezes nothing


def test_cached_and_local_files_are_used_without_the_network(empty_cache, tmp_path, monkeypatch, rng):
    import keras

    from hqdepth.training.trainer import build_model

    def no_network(*args, **kwargs):
        raise AssertionError("keras.utils.get_file was called")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    reference = keras.applications.ResNet50V2(include_top=False, weights=None, input_shape=(None, None, 3))
    reference.set_weights([rng.normal(0, 0.05, w.shape).astype("float32") for w in reference.get_weights()])
    local = tmp_path / "resnet50v2.weights.h5"
    reference.save_weights(local)
    # a cached file under the official name that is not the official file: refused, not re-downloaded
    empty_cache.mkdir(parents=True)
    cached = empty_cache / "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5"
    cached.write_bytes(local.read_bytes())
    with pytest.raises(HQDepthError, match="does not match the published hash"):
        pretrained.resolve("imagenet", "v2")
    # a local file: passed to the builder as it is, and the model holds its values
    config = recipes.resolve_config("hqmd_plus_full", sets=[f"model.options.backbone_weights={local}",
                                                            "data.input_size=[64, 96]"])
    assert pretrained.check_initialisation(config) == str(local)
    model = build_model(config)
    want = reference.get_layer("conv4_block2_2_conv").get_weights()[0]
    np.testing.assert_array_equal(model.get_layer("conv4_block2_2_conv").get_weights()[0], want)


def test_named_initialisations_are_converted_once_from_the_cache(empty_cache, rng):
    """The files `keras.utils.get_file` leaves in the cache (slim's unpacked tarball, torchvision's
    safetensors) are converted on first use and then read back, never downloaded here."""
    from safetensors.numpy import save_file
    from test_weights_slim import random_values, write_checkpoint
    from test_weights_torch import torchvision_resnet50

    from hqdepth.training.trainer import build_model
    from hqdepth.weights.slim import resnet_v2_50_variables

    unpacked = empty_cache / "resnet_v2_50_2017_04_14_extracted"  # keras.utils.get_file(extract=True)'s folder name
    unpacked.mkdir(parents=True)
    slim = random_values(resnet_v2_50_variables(), rng)
    write_checkpoint(unpacked / "resnet_v2_50.ckpt", slim)
    converted = pretrained.resolve("slim-resnet_v2_50", "v2")
    assert converted == str(empty_cache / "hqdepth" / "slim-resnet_v2_50.weights.h5")
    stamp = (empty_cache / "hqdepth" / "slim-resnet_v2_50.weights.h5").stat().st_mtime_ns
    assert pretrained.resolve("slim-resnet_v2_50", "v2") == converted  # cached: not converted again
    assert (empty_cache / "hqdepth" / "slim-resnet_v2_50.weights.h5").stat().st_mtime_ns == stamp
    config = recipes.resolve_config("hqmd_plus_full", sets=["data.input_size=[32, 48]"])
    model = build_model(config)
    np.testing.assert_array_equal(model.get_layer("conv4_block2_2_conv").get_weights()[0],
                                  slim["resnet_v2_50/block3/unit_2/bottleneck_v2/conv2/weights"])

    state = {k: np.ascontiguousarray(v) for k, v in torchvision_resnet50().items()}
    save_file(state, str(empty_cache / "resnet50.tv_in1k.safetensors"))
    # A narrow MRPAN decoder (the recipe's is 1280/2048 channels: 172 M parameters, 13 s to initialise on the 2-core
    # Xeon VM, against 30 M and 4 s): what is checked is the backbone's initialisation, which the widths do not touch.
    config = recipes.resolve_config("mrpan_nyu", sets=["data.input_size=[64, 64]", "model.options.backbone=resnet50",
                                                       "model.options.backbone_weights=torchvision-resnet50",
                                                       "model.options.adff_channels=80", "model.options.rpd_channels=64"])
    assert pretrained.model_options(config)["backbone_weights"] == str(
        empty_cache / "hqdepth" / "torchvision-resnet50.weights.h5")
    model = build_model(config)
    np.testing.assert_array_equal(model.get_layer("conv1_conv").get_weights()[0],
                                  state["conv1.weight"].transpose(2, 3, 1, 0))


def test_senet154_initialisation_is_checked_and_named_offline(empty_cache):
    """mrpan_nyu's SENet-154 takes Cadene's weights only; offline, the message names the file, its address and the
    converter command."""
    resnet = recipes.resolve_config("mrpan_nyu", sets=["model.options.backbone_weights=torchvision-resnet50"])
    with pytest.raises(ConfigError, match="fits a v1.5 backbone.*'senet154' .initialisations for it: cadene-senet154"):
        pretrained.check_initialisation(resnet)
    with pytest.raises(ConfigError, match="not 'senet154': use cadene-senet154"):
        pretrained.check_initialisation(recipes.resolve_config(
            "mrpan_nyu", sets=["model.options.backbone_weights=imagenet"]))
    with pytest.raises(HQDepthError) as error:
        pretrained.resolve("cadene-senet154", "senet154")
    for part in ("senet154-c7b49a05.pth", "http://data.lip6.fr/cadene/pretrainedmodels/senet154-c7b49a05.pth",
                 "hqdepth weights convert --from cadene-senet154", "HQDEPTH_OFFLINE", str(empty_cache)):
        assert part in str(error.value), part
