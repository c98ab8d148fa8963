"""Batch normalisation layers.

`FusedBatchNormalization`: Keras' `BatchNormalization` (same config, weights and results) that runs
TensorFlow's fused kernel. Keras 3 computes batch statistics with `moments` and normalises with separate
element-wise ops, about six passes over the activations forward and more backward; `FusedBatchNormV3`
(oneDNN on the CPU, cuDNN on a GPU) does each direction in one, and in inference graphs grappler folds it
into the preceding convolution. HQMD baseline+ training at 289x385 batch 8 on a 2-core CPU: 1.2x faster
together with the fused Adam update (`benchmarks/RESULTS.md`). The moving averages are updated as Keras
does, with the biased batch variance (the fused op returns the unbiased one; the factor is undone), and the
layer's epsilon is used as given (the `tf.nn` wrapper would raise it to 1.001e-5).
Other backends, masks, renorm, synchronised statistics and non-4-D or channels-first inputs take Keras'
own code.

`FrozenAffineBatchNormalization`: PyTorch's `requires_grad=False` on gamma/beta. In PyTorch, freezing
a BatchNorm's parameters keeps the layer in training mode: batch statistics normalise the batch and the
running statistics still update. Keras' `trainable=False` instead switches the layer to inference mode.
BTS (`bts_main.py` `set_misc`) freezes the encoder's BN parameters the PyTorch way.
"""

import keras

FUSED_DTYPES = ("float32", "float16", "bfloat16")


@keras.saving.register_keras_serializable(package="hqdepth")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` computed by TensorFlow's fused batch-norm kernel where it can be."""

    def _can_fuse(self, inputs, mask):
        axis = self.axis if isinstance(self.axis, int) else (self.axis[0] if len(self.axis) == 1 else None)
        return (keras.backend.backend() == "tensorflow" and mask is None and len(inputs.shape) == 4
                and axis in (-1, 3) and not self.renorm and not self.synchronized
                and keras.backend.standardize_dtype(inputs.dtype) in FUSED_DTYPES)

    def call(self, inputs, training=None, mask=None):
        if not self._can_fuse(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        gamma = tf.cast(self.gamma, "float32") if self.scale else tf.ones((channels,), "float32")
        beta = tf.cast(self.beta, "float32") if self.center else tf.zeros((channels,), "float32")
        if training and self.trainable:
            empty = tf.zeros((0,), "float32")
            outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=self.epsilon,
                is_training=True)
            count = tf.cast(tf.size(inputs) // channels, "float32")
            variance = variance * tf.maximum(count - 1.0, 1.0) / tf.maximum(count, 1.0)
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            outputs, *_ = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=gamma, offset=beta, mean=tf.cast(self.moving_mean, "float32"),
                variance=tf.cast(self.moving_variance, "float32"), epsilon=self.epsilon, is_training=False)
        return tf.cast(outputs, self.compute_dtype)


@keras.saving.register_keras_serializable(package="hqdepth")
class FrozenAffineBatchNormalization(FusedBatchNormalization):
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
