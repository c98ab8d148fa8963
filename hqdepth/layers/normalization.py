"""Batch normalisation with a frozen affine transform: PyTorch `requires_grad=False` on gamma/beta.

In PyTorch, freezing a BatchNorm's parameters keeps the layer in training mode: batch statistics
normalise the batch and the running statistics still update. Keras' `trainable=False` instead
switches the layer to inference mode. BTS (`bts_main.py` `set_misc`) freezes the encoder's BN
parameters the PyTorch way, so that behaviour is a layer of its own here.
"""

import keras


@keras.saving.register_keras_serializable(package="hqdepth")
class FrozenAffineBatchNormalization(keras.layers.BatchNormalization):
    """BatchNormalization whose gamma and beta are never trained; statistics behave as usual.

    The weight order (gamma, beta, moving mean, moving variance) is that of `BatchNormalization`, so
    weight files of either load into the other; `layer.trainable = ...` does not unfreeze gamma/beta.
    """

    def build(self, input_shape):
        super().build(input_shape)
        for variable in (getattr(self, "gamma", None), getattr(self, "beta", None)):
            if variable is None:
                continue
            variable.trainable = False
            # Moved in place to the non-trainable list, keeping the overall order of `weights`.
            self._trainable_variables.remove(variable)
        frozen = [v for v in (getattr(self, "gamma", None), getattr(self, "beta", None)) if v is not None]
        for position, variable in enumerate(frozen):
            self._non_trainable_variables.insert(position, variable)
