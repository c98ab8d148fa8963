"""A 3x3 convolution of [bilinear upsampling of a coarse map, a fine map], with the coarse part kept coarse.

DeepLabv3+'s decoder upsamples the ASPP output (256 channels at 1/16) bilinearly to 1/4, concatenates the 48
low-level channels and applies a 3x3 convolution: for HQMD at 289x385 that convolution does 8.4 of its 10 GFLOP
per image on the upsampled channels, which carry no more information than the 19x25 map they came from.
Upsampling and convolution are both linear, so the coarse part can be computed at the coarse size:

    conv3x3(U x)[i, j] = sum over taps (a, b) of (U x)[i + a - 1, j + b - 1] . W[a, b]
                       = sum over (a, b) of sum over (k, l) of R_a[i, k] C_b[j, l] (x[k, l] . W[a, b])

with R (H x h) and C (W x w) the bilinear weight matrices of the upsampling and R_a, C_b the same matrices with
their rows shifted by a - 1 and b - 1 (a zero row where the tap reads SAME padding). So: one product of the coarse
map with the nine taps' kernels, z[k, l, a, b] = x[k, l] . W[a, b] (h w x C x 9 F), then the column weights of
all three b at once, [C_0 | C_1 | C_2] (W x 3w), then the row weights of all three a, [R_0 | R_1 | R_2] (H x 3h):
about 1 GFLOP instead of 8.4 for HQMD, forward, and the same saving in both gradients. The fine map's channels
take an ordinary 3x3 convolution and the two parts are added. The same function as the official network's
resize -> concat -> conv, up to float round-off (tests/test_layers.py compares it with a float64 NumPy network
in that order); the kernel is the convolution's, (3, 3, C_coarse + C_fine, F), coarse channels first as in the
concatenation, so checkpoints load unchanged.
"""

import keras
from keras import ops

from hqdepth.layers.resize import _interpolation_matrix


@keras.saving.register_keras_serializable(package="hqdepth")
class UpsampledConcatConv2D(keras.layers.Layer):
    """`Conv2D(filters, 3, padding="same", use_bias=False)` of `concat([resize(coarse, fine's size), fine])`.

    Call as `layer([coarse, fine])`. `align_corners` as `BilinearResize`. The kernel (3, 3, C_coarse + C_fine,
    filters) is that of the convolution it replaces; `kernel_regularizer`/`kernel_initializer` as in `Conv2D`.
    """

    def __init__(self, filters, align_corners=True, kernel_initializer="he_normal", kernel_regularizer=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.align_corners = bool(align_corners)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        coarse, fine = input_shape
        self.coarse_channels = int(coarse[-1])  # where the kernel's input channels split
        self.kernel = self.add_weight(name="kernel", shape=(3, 3, self.coarse_channels + int(fine[-1]), self.filters),
                                      initializer=self.kernel_initializer, regularizer=self.kernel_regularizer)

    def call(self, inputs):
        coarse, fine = inputs
        kernel = ops.cast(self.kernel, self.compute_dtype)
        split = self.coarse_channels
        fine_part = ops.conv(fine, kernel[:, :, split:], padding="same")
        _, height, width, _ = ops.shape(fine)
        return fine_part + upsampled_conv3x3(coarse, kernel[:, :, :split], (height, width), self.align_corners)

    def compute_output_shape(self, input_shape):
        return (*input_shape[1][:3], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "align_corners": self.align_corners,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)}


def upsampled_conv3x3(coarse, kernel, size, align_corners=True):
    """conv3x3_same(resize_bilinear(coarse, size), kernel) computed at the coarse size (module docstring);
    `kernel` (3, 3, C, F), sizes static or dynamic."""
    _, height, width, channels = ops.shape(coarse)
    filters = kernel.shape[-1]
    taps = ops.reshape(ops.transpose(kernel, (2, 0, 1, 3)), (channels, 9 * filters))
    products = ops.reshape(ops.matmul(ops.reshape(coarse, (-1, channels)), taps),
                           (-1, height, width, 3, 3, filters))
    # (batch, a, k, b, l, F): per (batch, a, k) a (3w, F) matrix for the column weights of all three b.
    products = ops.reshape(ops.transpose(products, (0, 3, 1, 4, 2, 5)), (-1, 3 * width, filters))
    columns = _shifted_weights(width, size[1], align_corners, coarse.dtype)
    products = ops.reshape(ops.matmul(columns, products), (-1, 3 * height, size[1] * filters))
    rows = _shifted_weights(height, size[0], align_corners, coarse.dtype)
    return ops.reshape(ops.matmul(rows, products), (-1, size[0], size[1], filters))


def _shifted_weights(in_size, out_size, align_corners, dtype):
    """[M_0 | M_1 | M_2] (out_size x 3 in_size): M the bilinear weights, M_t[i] = M[i + t - 1], zero outside."""
    weights = _interpolation_matrix(in_size, out_size, align_corners, dtype)
    zero_row = ops.zeros_like(weights[:1])
    before = ops.concatenate([zero_row, weights[:-1]], axis=0)  # tap 0 reads row i - 1
    after = ops.concatenate([weights[1:], zero_row], axis=0)    # tap 2 reads row i + 1
    return ops.concatenate([before, weights, after], axis=1)
