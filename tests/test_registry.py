"""The registry's catalog (what `hqdepth models` prints without building anything) matches the built models."""

import keras
import numpy as np
import pytest

from hqdepth.errors import ConfigError
from hqdepth.layers.conv import AtrousConv2D
from hqdepth.models import list_models, registry


def test_catalog_and_registered_builders_name_the_same_models():
    registered = {entry.name: entry for entry in list_models()}
    assert set(registered) == set(registry.CATALOG)
    for name, info in registry.CATALOG.items():
        entry = registered[name]
        assert (info.input_size, info.description) == (entry.input_size, entry.description), name
        assert entry.builder.__module__ == info.module, name
    assert [info.name for info in registry.model_catalog()] == sorted(registry.CATALOG)


# Building the big models takes 1-10 s each on a 2-core CPU: the fast tier checks the small one.
@pytest.mark.parametrize("name", [name if name == "fcn_autoencoder" else pytest.param(name, marks=pytest.mark.slow)
                                  for name in sorted(registry.CATALOG)])
def test_stored_counts_and_atrous_flag_match_the_built_model(name):
    from shape_helpers import shapes_only

    info = registry.CATALOG[name]
    with shapes_only():  # counts and layer types: the random initial values are not drawn
        model = registry.build_model(name, input_shape=(*info.input_size, 3))
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    atrous = [layer.name for layer in model._flatten_layers(include_self=False, recursive=True)
              if isinstance(layer, AtrousConv2D)]
    assert (model.count_params(), trainable) == (info.params, info.trainable_params)
    assert bool(atrous) == info.atrous, atrous
    keras.backend.clear_session()


def test_unknown_model_error_names_the_known_ones():
    with pytest.raises(ConfigError, match="Unknown model 'hqmd_plus'.*hqmd_baseline_plus"):
        registry.get_entry("hqmd_plus")
