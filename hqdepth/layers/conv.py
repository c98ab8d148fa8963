"""Atrous (dilated) and grouped convolutions that run TensorFlow's native kernels where they work.

Keras 3's TensorFlow backend sends every dilated convolution through `tf.nn.convolution`, which
rewrites it as SpaceToBatchND -> Conv2D -> BatchToSpaceND. On a small feature map with a large rate
that pads the map to a multiple of the rate in each direction: on HQMD's ASPP (rate 12 on a 4x6
map, the 64x96 demo size) one 3x3 conv took 360 ms instead of 3.5 ms on this CPU, and the whole
baseline+ forward pass went from about 0.75 s to 0.1 s. `tf.nn.conv2d(..., dilations=rate)` runs
oneDNN's (CPU) or cuDNN's (GPU) dilated kernels directly and computes the same function.

TensorFlow's plain (Eigen, non-oneDNN) CPU kernels have no dilated backward pass
(`Conv2DBackpropInput`: "Current CPU implementations do not yet support dilation rates larger
than 1"), and which kernels run depends on the dtype as well as on the machine: TensorFlow hands a
float16 convolution to oneDNN only on CPUs with native float16 arithmetic (AVX512-FP16 / AMX-FP16),
a bfloat16 one only with AVX512-BF16 / AMX-BF16; otherwise the op runs on Eigen. An AMD Zen 4, for
example, differentiates a dilated float32 conv through oneDNN but not a float16 one, so a
`mixed_float16` training step crashed there while float32 trained. So the direct path is taken
per compute dtype, only where a one-off probe of that dtype (a 5x5 dilated conv and its gradients,
a few milliseconds) succeeded; elsewhere the layer is exactly `keras.layers.Conv2D`. Nothing is
decided from CPU flags: the probe asks the kernels this process will run. JAX and PyTorch have
native dilation, so only the TensorFlow backend is concerned.

Grouped convolution (`GroupedConv2D`, SENet-154's 64-group 3x3 convs): Keras' TensorFlow backend compiles
every grouped convolution with XLA, because TensorFlow's Eigen CPU kernels have none. oneDNN's (CPU) and
cuDNN's (GPU) kernels do, and XLA's CPU backward pass is slow: a 256-channel, 64-group 3x3 conv over
2x57x76, forward and both gradients, took 17 s through XLA and 26 ms through `tf.nn.conv2d` on this
project's Intel Xeon VM, and MRPAN's SENet-154 training step 150 s. The same probe (two groups instead of a
dilation) decides the direct path per compute dtype.
"""

import math

import keras
from keras import layers

# compute dtype name -> whether the CPU kernels can run and differentiate a dilated (grouped) Conv2D in it.
# Filled by `native_dilated_conv_available` (`native_grouped_conv_available`) on first use of each dtype (tests may
# pre-set entries).
_native_support = {}
_native_grouped_support = {}


def native_dilated_conv_available(dtype="float32"):
    """Whether TensorFlow here can run and differentiate `Conv2D` with dilations > 1 on the CPU in `dtype`.

    Measured once per dtype ("float32", "float16", "bfloat16") and cached for the process: a 3x3
    kernel with dilation 2 over a 5x5 map, forward and both gradients (input and kernel). The probe
    runs eagerly even when first asked while a `tf.function` or a Keras functional model is being
    traced (a probe traced into a graph would execute nothing and report success). Only the
    "not implemented for these arguments" errors count as "no"; anything else is a real error and
    propagates.
    """
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype not in _native_support:
        import tensorflow as tf

        # Plain Python even when called from a function AutoGraph is converting.
        _native_support[dtype] = tf.autograph.experimental.do_not_convert(_probe)(dtype)
    return _native_support[dtype]


def native_grouped_conv_available(dtype="float32"):
    """Whether TensorFlow here can run and differentiate a grouped `Conv2D` (input channels = groups x kernel input
    channels) on the CPU in `dtype`: `native_dilated_conv_available`'s probe with two groups, cached per dtype."""
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype not in _native_grouped_support:
        import tensorflow as tf

        _native_grouped_support[dtype] = tf.autograph.experimental.do_not_convert(_probe)(dtype, groups=2,
                                                                                         dilation=1)
    return _native_grouped_support[dtype]


def _probe(dtype, groups=1, dilation=2):
    import tensorflow as tf

    # The forward op and the two ops its gradient runs (what `tf.GradientTape` would call; a tape
    # cannot be used: `init_scope` pauses every tape). On a 5x5 map of ones with a 3x3 kernel of ones
    # at dilation 2 the taps 2 pixels away fall off the border: 9 at the centre, 4 at a corner; the
    # input gradient equals the forward map (symmetric kernel) and the kernel gradient's centre tap
    # sees all 25 pixels. With `groups` channels, one per group, and no dilation: the same numbers (the borders
    # cut the 3x3 kernel to 2x2 at a corner).
    strides, dilations = [1, 1, 1, 1], [1, dilation, dilation, 1]
    with tf.init_scope():  # leave any graph being traced: the probe must execute the kernels
        try:
            with tf.device("/CPU:0"):
                x = tf.ones((1, 5, 5, groups), dtype)
                kernel = tf.ones((3, 3, 1, groups), dtype)
                y = tf.nn.conv2d(x, kernel, strides, "SAME", dilations=dilations)
                grad_x = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=kernel, out_backprop=y * 0 + 1,
                                                        strides=strides, padding="SAME", dilations=dilations)
                grad_kernel = tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(kernel),
                                                              out_backprop=y * 0 + 1, strides=strides,
                                                              padding="SAME", dilations=dilations)
                values = [float(t) for t in (y[0, 2, 2, 0], y[0, 0, 0, 0], grad_x[0, 2, 2, 0], grad_kernel[1, 1, 0, 0])]
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.NotFoundError):
            return False
    return values == [9.0, 4.0, 9.0, 25.0]


@keras.saving.register_keras_serializable(package="hqdepth")
class AtrousConv2D(layers.Conv2D):
    """`keras.layers.Conv2D` (same config, weights and results) with a faster dilated path on TensorFlow.

    The direct `tf.nn.conv2d(dilations=...)` path is used when the rate is above 1, the backend is
    TensorFlow, the data format is channels-last and `native_dilated_conv_available(compute dtype)`;
    otherwise Keras' own convolution (SpaceToBatchND formulation) runs. Both compute the same function.
    """

    def uses_native_kernel(self, dtype=None):
        """Whether a call in `dtype` (default: the layer's compute dtype) takes the direct dilated path."""
        dtype = dtype or self.compute_dtype
        return (max(self.dilation_rate) > 1 and keras.backend.backend() == "tensorflow"
                and self.data_format == "channels_last" and native_dilated_conv_available(dtype))

    def convolution_op(self, inputs, kernel):
        if self.uses_native_kernel(inputs.dtype):
            import tensorflow as tf

            return tf.nn.conv2d(inputs, kernel, strides=self.strides, padding=self.padding.upper(),
                                dilations=self.dilation_rate)
        return super().convolution_op(inputs, kernel)


@keras.saving.register_keras_serializable(package="hqdepth")
class GroupedConv2D(layers.Conv2D):
    """`keras.layers.Conv2D` with `groups > 1` (same config, weights and results) that runs TensorFlow's own grouped
    kernels (oneDNN on the CPU, cuDNN on the GPU) instead of Keras' XLA-compiled convolution.

    The direct `tf.nn.conv2d` path is used when the backend is TensorFlow, the data format is channels-last and
    `native_grouped_conv_available(compute dtype)`; otherwise Keras' own convolution runs (XLA under TensorFlow,
    native under JAX and PyTorch). Both compute the same function.
    """

    def uses_native_kernel(self, dtype=None):
        """Whether a call in `dtype` (default: the layer's compute dtype) takes the direct grouped path."""
        dtype = dtype or self.compute_dtype
        return (self.groups > 1 and keras.backend.backend() == "tensorflow" and self.data_format == "channels_last"
                and native_grouped_conv_available(dtype))

    def convolution_op(self, inputs, kernel):
        if self.uses_native_kernel(inputs.dtype):
            import tensorflow as tf

            return tf.nn.conv2d(inputs, kernel, strides=self.strides, padding=self.padding.upper(),
                                dilations=self.dilation_rate)
        return super().convolution_op(inputs, kernel)


def torch_conv_initializers(fan_in=None):
    """(kernel, bias) initializers of PyTorch's `nn.Conv2d` default, which a PyTorch decoder that sets no
    initialisation keeps (SARPN's, the Depth Toolbox's BTS head): kernel kaiming_uniform(a=sqrt(5)) =
    U(+-1/sqrt(fan_in)), the same distribution as Keras' VarianceScaling(1/3, "fan_in", "uniform"); bias
    U(+-1/sqrt(fan_in)) with fan_in = kh * kw * input channels (None: no bias is drawn, zeros)."""
    kernel = keras.initializers.VarianceScaling(1.0 / 3.0, mode="fan_in", distribution="uniform")
    if fan_in is None:
        return kernel, "zeros"
    bound = 1.0 / math.sqrt(fan_in)
    return kernel, keras.initializers.RandomUniform(-bound, bound)


def decoder_initializers(init, fan_in=None):
    """(kernel, bias) initializers of a convolution by the name a model option gives: "torch" (PyTorch's
    `nn.Conv2d` default, `torch_conv_initializers`; a bias needs `fan_in`), "xavier" (Glorot-uniform, as BTS's
    `weights_init_xavier`) or "he_normal" (Keras' he_normal: sqrt(6) = 2.45x PyTorch's standard deviation); the
    last two with zero biases."""
    if init == "torch":
        return torch_conv_initializers(fan_in)
    return {"xavier": "glorot_uniform", "he_normal": "he_normal"}[init], "zeros"


def conv2d(filters, kernel_size, dilation_rate=1, **kwargs):
    """`Conv2D`, or `AtrousConv2D` where the dilation rate is above 1, or `GroupedConv2D` where `groups` is above 1."""
    if kwargs.get("groups", 1) > 1:
        return GroupedConv2D(filters, kernel_size, dilation_rate=dilation_rate, **kwargs)
    rate = dilation_rate if isinstance(dilation_rate, int) else max(dilation_rate)
    cls = AtrousConv2D if rate > 1 else layers.Conv2D
    return cls(filters, kernel_size, dilation_rate=dilation_rate, **kwargs)
