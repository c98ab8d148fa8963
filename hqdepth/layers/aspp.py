"""Atrous spatial pyramid pooling (DeepLabv3), as the HQMD code builds it."""

import keras
from keras import layers, ops

from hqdepth.layers.conv import conv2d
from hqdepth.layers.normalization import FusedBatchNormalization


def conv_bn_relu_layers(filters, kernel_size, name, dilation_rate=1, bn_momentum=0.9997,
                        bn_epsilon=1e-5, weight_decay=5e-5, kernel_initializer="he_normal", dtype=None,
                        bn_unbiased_moving_variance=False):
    """A bias-free conv, batch norm and ReLU as three named layers (slim `conv2d` + `batch_norm`)."""
    regularizer = keras.regularizers.L2(weight_decay) if weight_decay else None
    return [
        conv2d(filters, kernel_size, padding="same", dilation_rate=dilation_rate, use_bias=False,
               kernel_initializer=kernel_initializer, kernel_regularizer=regularizer,
               name=f"{name}_conv", dtype=dtype),
        FusedBatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon, name=f"{name}_bn", dtype=dtype,
                                unbiased_moving_variance=bn_unbiased_moving_variance),
        layers.ReLU(name=f"{name}_relu", dtype=dtype),
    ]


def conv_bn_relu(x, filters, kernel_size, name, **settings):
    """Functional form of `conv_bn_relu_layers`."""
    for layer in conv_bn_relu_layers(filters, kernel_size, name, **settings):
        x = layer(x)
    return x


@keras.saving.register_keras_serializable(package="hqdepth")
class AtrousSpatialPyramidPooling(keras.layers.Layer):
    """ASPP: [image pooling, 1x1, 3x3 at each rate] -> concat -> 1x1 projection, all conv+BN+ReLU.

    HQMD uses rates (4, 8, 12) at output stride 16, image pooling, no dropout, no separable convs.
    The image-pooling branch is broadcast back to the feature size (bilinear from 1x1 = broadcast).
    """

    def __init__(self, filters=256, rates=(4, 8, 12), image_pooling=True, bn_momentum=0.9997,
                 bn_epsilon=1e-5, weight_decay=5e-5, kernel_initializer="he_normal", bn_unbiased_moving_variance=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.rates = tuple(int(r) for r in rates)
        self.image_pooling = bool(image_pooling)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.bn_unbiased_moving_variance = bool(bn_unbiased_moving_variance)
        self.weight_decay = float(weight_decay)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        settings = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                        bn_unbiased_moving_variance=self.bn_unbiased_moving_variance,
                        weight_decay=self.weight_decay, kernel_initializer=self.kernel_initializer,
                        dtype=self.dtype_policy)
        self.pool_branch = conv_bn_relu_layers(self.filters, 1, "image_pooling", **settings) if image_pooling else []
        self.branches = [conv_bn_relu_layers(self.filters, 1, "aspp0", **settings)]
        for i, rate in enumerate(self.rates, start=1):
            self.branches.append(conv_bn_relu_layers(self.filters, 3, f"aspp{i}", dilation_rate=rate, **settings))
        self.projection = conv_bn_relu_layers(self.filters, 1, "concat_projection", **settings)

    @staticmethod
    def _run(block, x, training=None):
        for layer in block:
            x = layer(x, training=training) if isinstance(layer, layers.BatchNormalization) else layer(x)
        return x

    def build(self, input_shape):
        channels = input_shape[-1]
        feature_shape = (None, None, None, channels)
        out_shape = (None, None, None, self.filters)
        for block in ([self.pool_branch] if self.image_pooling else []) + self.branches:
            block[0].build(feature_shape)
            for layer in block[1:]:
                layer.build(out_shape)
        n_branches = len(self.branches) + int(self.image_pooling)
        self.projection[0].build((None, None, None, self.filters * n_branches))
        for layer in self.projection[1:]:
            layer.build(out_shape)

    def call(self, features, training=None):
        outputs = []
        if self.image_pooling:
            pooled = ops.mean(features, axis=(1, 2), keepdims=True)
            pooled = self._run(self.pool_branch, pooled, training)
            outputs.append(ops.zeros_like(features[..., :1]) + pooled)
        outputs += [self._run(block, features, training) for block in self.branches]
        return self._run(self.projection, ops.concatenate(outputs, axis=-1), training)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "rates": self.rates,
            "image_pooling": self.image_pooling,
            "bn_momentum": self.bn_momentum,
            "bn_unbiased_moving_variance": self.bn_unbiased_moving_variance,
            "bn_epsilon": self.bn_epsilon,
            "weight_decay": self.weight_decay,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
