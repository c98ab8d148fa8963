"""Models built for their structure only: parameter counts, layer types and flags, static shapes."""

import contextlib


@contextlib.contextmanager
def shapes_only():
    """Build models whose variables have their shapes, dtypes and trainable flags but no values: Keras' deferred
    initialisation (`StatelessScope(initialize_variables=False)`). Drawing the random initial values is most of a
    big model's build on a CPU (2-core Xeon VM: MRPAN at its published widths, 172 M parameters, 7.6 -> 1.5
    CPU-s; SENet-154 9.1 -> 1.3), and `count_params`, `trainable_weights`, layer types and the symbolic output
    shapes do not read them. A model built here cannot be run: reading a variable raises."""
    import keras
    from keras.src.backend.common import global_state

    pending = list(global_state.get_global_attribute("uninitialized_variables", [], set_to_default=True))
    try:
        with keras.StatelessScope(initialize_variables=False):
            yield
    finally:
        # Not on Keras' list of variables to initialise: no later stateless scope draws them on its exit.
        global_state.set_global_attribute("uninitialized_variables", pending)
