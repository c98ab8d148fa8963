"""Output heads shared by the depth models."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="hqdepth")
class ScaledSigmoid(keras.layers.Layer):
    """depth = max_depth * sigmoid(logits), in float32 whatever the mixed-precision policy."""

    def __init__(self, max_depth=10.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.max_depth = float(max_depth)

    def call(self, logits):
        return self.max_depth * ops.sigmoid(ops.cast(logits, self.compute_dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_depth": self.max_depth}
