"""Batch normalisation layers.

`FusedBatchNormalization`: Keras' `BatchNormalization` (same config, weights and results) that runs
TensorFlow's fused kernel. Keras 3 computes batch statistics with `moments` and normalises with separate
element-wise ops, about six passes over the activations forward and more backward; `FusedBatchNormV3`
(oneDNN on the CPU, cuDNN on a GPU) does each direction in one, and in inference graphs grappler folds it
into the preceding convolution. HQMD baseline+ training at 289x385 batch 8 on a 2-core CPU: 1.2x faster
together with the fused Adam update (`benchmarks/RESULTS.md`). The layer's epsilon is used as given (the
`tf.nn` wrapper would raise it to 1.001e-5).

The moving variance: Keras averages the biased batch variance (sum / n over the n values of a channel); TF1's fused
batch norm (TF-slim with `fused=True`, HQMD's code) and PyTorch (BTS, SARPN) average the unbiased one
(sum / (n - 1)). `unbiased_moving_variance` picks; False (Keras) by default; the HQMD, BTS and MRPAN builders turn
it on (their `bn_unbiased_moving_variance` option; `use_unbiased_moving_variance` sets a whole model). It matters
only where a channel has few values per batch: HQMD's ASPP image-pooling branch normalises a 1x1 map, n = batch size
= 8, whose biased moving variance is 7/8 of the official one (that branch 1.07x larger at test time).
Other backends, masks, renorm, synchronised statistics and non-4-D or channels-first inputs take Keras'
own code (with `unbiased_moving_variance`: the same statistics in `keras.ops`, synchronised over the replicas
where asked; masks and renorm are refused).

`batch_groups` (default 1): in training, the batch is split into that many equal groups, each normalised by its own
statistics, as that many GPUs with plain (unsynchronised) batch norm under PyTorch's DistributedDataParallel
compute them (the Depth Toolbox trains BTS on 2 GPUs x 8); the moving averages follow the first group, the
statistics rank 0 keeps, evaluates with and saves. Computed in `keras.ops` (not the fused kernel).

`FrozenAffineBatchNormalization`: PyTorch's `requires_grad=False` on gamma/beta. In PyTorch, freezing
a BatchNorm's parameters keeps the layer in training mode: batch statistics normalise the batch and the
running statistics still update. Keras' `trainable=False` instead switches the layer to inference mode.
BTS (`bts_main.py` `set_misc`) freezes the encoder's BN parameters the PyTorch way.
"""

import keras

FUSED_DTYPES = ("float32", "float16", "bfloat16")


@keras.saving.register_keras_serializable(package="hqdepth")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` computed by TensorFlow's fused batch-norm kernel where it can be;
    `unbiased_moving_variance=True` averages the unbiased batch variance as TF1 and PyTorch do (module docstring)."""

    def __init__(self, *args, unbiased_moving_variance=False, batch_groups=1, **kwargs):
        super().__init__(*args, **kwargs)
        self.unbiased_moving_variance = bool(unbiased_moving_variance)
        self.batch_groups = int(batch_groups)

    def get_config(self):
        return {**super().get_config(), "unbiased_moving_variance": self.unbiased_moving_variance,
                "batch_groups": self.batch_groups}

    def _can_fuse(self, inputs, mask):
        axis = self.axis if isinstance(self.axis, int) else (self.axis[0] if len(self.axis) == 1 else None)
        return (keras.backend.backend() == "tensorflow" and mask is None and len(inputs.shape) == 4
                and axis in (-1, 3) and not self.renorm and not self.synchronized
                and keras.backend.standardize_dtype(inputs.dtype) in FUSED_DTYPES)

    def call(self, inputs, training=None, mask=None):
        if self.batch_groups > 1 and training and self.trainable:
            return self._train_in_groups(inputs, mask)
        if not self._can_fuse(inputs, mask):
            if self.unbiased_moving_variance and training and self.trainable:
                return self._train_with_unbiased_moving_variance(inputs, mask)
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
            if not self.unbiased_moving_variance:  # the fused op returns the unbiased variance: undo the factor
                count = tf.cast(tf.size(inputs) // channels, "float32")
                variance = variance * tf.maximum(count - 1.0, 1.0) / tf.maximum(count, 1.0)
            self._update_moving_averages(mean, variance)
        else:
            outputs, *_ = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=gamma, offset=beta, mean=tf.cast(self.moving_mean, "float32"),
                variance=tf.cast(self.moving_variance, "float32"), epsilon=self.epsilon, is_training=False)
        return tf.cast(outputs, self.compute_dtype)

    def _update_moving_averages(self, mean, variance):
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))

    def _train_with_unbiased_moving_variance(self, inputs, mask):
        """Training step outside the fused kernel with `unbiased_moving_variance`: Keras' normalisation by the
        biased batch statistics, in float32, and the moving variance averaged with the unbiased one. With
        `synchronized` (several replicas: the trainer sets it) the statistics and the count cover the global
        batch."""
        from keras import ops

        if mask is not None or self.renorm:
            raise ValueError(f"{self.name}: unbiased_moving_variance supports no mask or renorm.")
        rank, axis = len(inputs.shape), self.axis if isinstance(self.axis, int) else self.axis[0]
        axes = [a for a in range(rank) if a != axis % rank]
        x = ops.cast(inputs, "float32")
        mean, variance = ops.moments(x, axes, synchronized=self.synchronized)
        gamma = ops.cast(self.gamma, "float32") if self.scale else None
        beta = ops.cast(self.beta, "float32") if self.center else None
        outputs = ops.batch_normalization(x, mean, variance, axis=axis, offset=beta, scale=gamma,
                                          epsilon=self.epsilon)
        count = ops.cast(ops.size(x) // ops.size(mean), "float32")
        if self.synchronized and keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            replica = tf.distribute.get_replica_context()
            if replica is not None and replica.num_replicas_in_sync > 1:
                count = replica.all_reduce(tf.distribute.ReduceOp.SUM, count)
        self._update_moving_averages(mean, _unbiased(variance, count))
        return ops.cast(outputs, self.compute_dtype)

    def _train_in_groups(self, inputs, mask):
        """Training step with the batch in `batch_groups` equal groups, each normalised by its own (biased)
        statistics; the moving averages take the first group's (module docstring)."""
        from keras import ops

        rank, axis = len(inputs.shape), self.axis if isinstance(self.axis, int) else self.axis[0]
        if mask is not None or self.renorm or self.synchronized or axis % rank != rank - 1:
            raise ValueError(f"{self.name}: batch_groups needs channels-last inputs and no mask, renorm or "
                             "synchronized statistics.")
        x = ops.cast(inputs, "float32")
        shape = ops.shape(x)
        grouped = ops.reshape(x, (self.batch_groups, -1, *shape[1:]))  # (groups, batch / groups, ..., channels)
        mean, variance = ops.moments(grouped, list(range(1, rank)), keepdims=True)
        outputs = (grouped - mean) * ops.rsqrt(variance + self.epsilon)
        if self.scale:
            outputs = outputs * ops.cast(self.gamma, "float32")
        if self.center:
            outputs = outputs + ops.cast(self.beta, "float32")
        first_mean, first_variance = ops.reshape(mean[0], (-1,)), ops.reshape(variance[0], (-1,))
        if self.unbiased_moving_variance:
            count = ops.cast(ops.size(grouped[0]) // ops.size(first_mean), "float32")
            first_variance = _unbiased(first_variance, count)
        self._update_moving_averages(first_mean, first_variance)
        return ops.cast(ops.reshape(outputs, shape), self.compute_dtype)


def _unbiased(variance, count):
    """The unbiased variance of `count` values from their biased one (n / (n - 1)), as TF1's fused batch norm and
    PyTorch average it into the moving variance."""
    from keras import ops

    return variance * count / ops.maximum(count - 1.0, 1.0)


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


def use_unbiased_moving_variance(model, unbiased=True):
    """Set `unbiased_moving_variance` on every `FusedBatchNormalization` of `model` (nested models included)
    before it is trained: the builders of PyTorch models (BTS, MRPAN) call it, since PyTorch's `BatchNorm2d`
    averages the unbiased batch variance into its running variance. Returns the number of layers set.
    A composite layer that builds its batch norms from its own config (`AtrousSpatialPyramidPooling`: its
    `bn_unbiased_moving_variance`) would rebuild them without the flag when loaded: set it through that option."""
    count = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, FusedBatchNormalization):
            layer.unbiased_moving_variance = bool(unbiased)
            count += 1
    return count
