"""Analytic FLOP count of a functional Keras model, and the TensorFlow profiler's count to check it.

    from hqdepth.flops import count_flops
    count = count_flops(build_model("hqmd_baseline_plus", input_shape=(289, 385, 3)))
    count.macs / 1e9          # 30.4 G multiply-adds per image (conv, dense and matrix products)
    count.gflops              # 2 x MACs / 1e9: the forward GFLOPs used for FLOP/s figures
    count.other_flops         # bias, batch norm, activations, adds, pooling (not in `gflops`)
    count.by_part(...)        # MACs grouped by layer-name prefix

Conventions. One multiply-add = 2 FLOPs. Counts are per image (batch 1) from the static shapes the
model was built with, so every input dimension but the batch must be known. `macs` covers the
layers that multiply by weights or by another tensor: Conv2D (any stride, dilation, groups),
Conv2DTranspose (every input pixel times the whole kernel: h*w*k*k*Cin*Cout), DepthwiseConv2D,
SeparableConv2D, Dense, PositionAttention and ScaleAttention; UpsampledConcatConv2D counts as the
resize -> concat -> conv it computes with fewer products (`gflops` is the network's, not what runs).
hqdepth's BilinearResize counts as the interpolation's element-wise work, 7 FLOPs per output element (4 taps):
its two "tent matrix" products multiply
mostly by zeros (memory-bound, as the interpolation itself would be). Element-wise work is counted separately in
`other_flops` (1 FLOP per element for a bias, activation or an n-ary add per extra input; 2 for a
batch norm at inference (scale + shift); k*k per output element for pooling), because it is
memory-bound and tiny next to the products. Layers that only move data (concatenate, reshape,
padding, cropping, nearest upsampling) cost 0. Layers with sublayers (e.g. ASPP) are traced
symbolically and their sublayers counted; a layer the counter does not know that has no sublayers
is listed in `uncounted` rather than guessed.

`profiler_flops(model)` freezes the forward function (batch 1, inference) and runs
`tf.compat.v1.profiler` with the float_operation option, returning total and per-op-type FLOPs.
TensorFlow registers FLOP statistics for Conv2D, MatMul, BatchMatMul, Conv2DBackpropInput (the
transposed conv), BiasAdd and some element-wise ops, but not for Einsum (the N x N products of position attention), so its
`matmul_flops` is compared with our count of the products it sees (`FlopCount.profiler_comparable_flops`); it also
counts BilinearResize's tent-matrix products as dense BatchMatMuls, which the analytic count does not.
"""

import math
from dataclasses import dataclass, field

import keras

# Operation types whose profiler FLOPs are products with weights (compared with `macs`).
PROFILER_PRODUCT_OPS = ("Conv2D", "Conv2DBackpropInput", "DepthwiseConv2dNative", "MatMul", "BatchMatMul",
                        "BatchMatMulV2", "BatchMatMulV3", "Conv3D")

_DATA_MOVEMENT = (
    "InputLayer", "Concatenate", "Reshape", "Flatten", "Permute", "ZeroPadding2D", "Cropping2D", "Dropout",
    "SpatialDropout2D", "Identity", "RepeatVector", "Lambda",
)
_ELEMENTWISE_1 = ("ReLU", "ELU", "LeakyReLU", "PReLU", "Softmax", "Activation", "ScaledSigmoid", "FocalScaling")
_MERGE = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")


@dataclass
class LayerCount:
    name: str
    kind: str           # class name
    macs: int
    other_flops: int
    profiled_macs: int = 0  # the MACs TensorFlow's profiler counts (MatMul, Conv2D; not Einsum): of `macs`, except
    # for UpsampledConcatConv2D, which runs fewer than the network's convolution it counts as


@dataclass
class FlopCount:
    """Per-image analytic count. `layers` holds one entry per counted layer call, in graph order."""

    layers: list = field(default_factory=list)
    uncounted: list = field(default_factory=list)  # (name, class) of layers without a rule and without sublayers

    @property
    def macs(self):
        return sum(entry.macs for entry in self.layers)

    @property
    def other_flops(self):
        return sum(entry.other_flops for entry in self.layers)

    @property
    def flops(self):
        """Forward FLOPs per image from products (2 per multiply-add); element-wise work excluded."""
        return 2 * self.macs

    @property
    def gflops(self):
        return self.flops / 1e9

    @property
    def total_flops(self):
        """2 x MACs + element-wise FLOPs."""
        return 2 * self.macs + self.other_flops

    @property
    def profiler_comparable_flops(self):
        """2 x the MACs in ops TensorFlow's profiler counts (not the Einsum-based ones)."""
        return 2 * sum(entry.profiled_macs for entry in self.layers)

    def by_kind(self):
        totals = {}
        for entry in self.layers:
            if entry.macs:
                totals[entry.kind] = totals.get(entry.kind, 0) + entry.macs
        return dict(sorted(totals.items(), key=lambda item: -item[1]))

    def by_part(self, parts):
        """MACs per part. `parts`: ordered {part: predicate(layer_name) -> bool}; the first match wins,
        unmatched layers go to "other"."""
        totals = {name: 0 for name in parts}
        totals.setdefault("other", 0)
        for entry in self.layers:
            for name, matches in parts.items():
                if matches(entry.name):
                    totals[name] += entry.macs
                    break
            else:
                totals["other"] += entry.macs
        return totals

    def as_dict(self):
        return {"macs": self.macs, "gflops": self.gflops, "other_flops": self.other_flops,
                "total_flops": self.total_flops, "profiler_comparable_flops": self.profiler_comparable_flops,
                "by_kind_macs": self.by_kind(), "uncounted": [list(item) for item in self.uncounted]}


def _prod(values):
    return int(math.prod(int(v) for v in values))


def _shape(tensor):
    shape = tuple(tensor.shape)
    if any(d is None for d in shape[1:]):
        raise ValueError(f"count_flops needs static shapes; tensor {getattr(tensor, 'name', tensor)} has shape "
                         f"{shape}. Pass input_size=(H, W), or build the model with a fixed input size, e.g. "
                         "build_model(name, input_shape=(289, 385, 3)).")
    return (1,) + tuple(int(d) for d in shape[1:])


def _elements(shape):
    return _prod(shape[1:])


def _kernel_size(layer):
    return tuple(getattr(layer, "kernel_size", (1, 1)))


def _layer_rule(layer, inputs, outputs):
    """(macs, other_flops, profiled) for one call of a known layer, or None for an unknown one; profiled: True when
    TensorFlow's profiler counts all the MACs, else how many it counts."""
    from keras import layers as L

    kind = type(layer).__name__
    out = outputs[0] if outputs else None
    if isinstance(layer, L.Conv2DTranspose):
        (x,) = inputs[:1]
        kh, kw = _kernel_size(layer)
        macs = _elements(x[:-1] + (1,)) * x[-1] * kh * kw * out[-1]
        return macs, _elements(out) if layer.use_bias else 0, True
    if isinstance(layer, L.SeparableConv2D):
        kh, kw = _kernel_size(layer)
        x = inputs[0]
        depthwise_channels = x[-1] * layer.depth_multiplier
        spatial = _elements(out[:-1] + (1,))
        macs = spatial * depthwise_channels * kh * kw + spatial * depthwise_channels * out[-1]
        return macs, _elements(out) if layer.use_bias else 0, True
    if isinstance(layer, L.DepthwiseConv2D):
        kh, kw = _kernel_size(layer)
        return _elements(out) * kh * kw, _elements(out) if layer.use_bias else 0, True
    if kind == "UpsampledConcatConv2D":
        # Counted as the network's resize -> concat -> 3x3 conv (7 FLOPs per upsampled element, the conv's MACs);
        # what runs, and what TensorFlow's profiler sees, is the fine channels' conv and three products at 1/16.
        (_, h, w, coarse), (_, height, width, fine) = inputs
        filters = out[-1]
        nominal = height * width * 9 * (coarse + fine) * filters
        run = height * width * 9 * fine * filters + h * w * coarse * 9 * filters + 3 * h * width * 3 * w * filters \
            + height * 3 * h * width * filters
        return nominal, 7 * height * width * coarse + _elements(out), run
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):
        x = inputs[0]
        groups = getattr(layer, "groups", 1) or 1
        macs = _elements(out) * _prod(layer.kernel_size) * (x[-1] // groups)
        return macs, _elements(out) if layer.use_bias else 0, True
    if isinstance(layer, L.Dense):
        x = inputs[0]
        return _elements(out) * x[-1], _elements(out) if layer.use_bias else 0, True
    if isinstance(layer, L.BatchNormalization):
        return 0, 2 * _elements(out), True
    if isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
        return 0, _elements(out) * _prod(layer.pool_size), True
    if isinstance(layer, (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)):
        return 0, _elements(inputs[0]), True
    if isinstance(layer, L.Rescaling):
        return 0, 2 * _elements(out), True
    if isinstance(layer, L.UpSampling2D):
        return 0, 0 if layer.interpolation == "nearest" else 4 * _elements(out), True
    if kind in _MERGE:
        return 0, _elements(out) * max(len(inputs) - 1, 1), True
    if kind in _ELEMENTWISE_1:
        return 0, _elements(out), True
    if kind in _DATA_MOVEMENT:
        return 0, 0, True
    if kind == "ImageNormalization":
        return 0, _elements(out) * (0 if layer.mode == "none" else 1 if layer.mode == "mean_subtract" else 2), True
    if kind == "BilinearResize":
        # The interpolation's work: each output element blends 4 inputs (4 multiplies, 3 adds). The forward pass
        # runs it as two tent-matrix products (mostly multiplications by zero), the TF gradient as one kernel.
        return 0, 7 * _elements(out), True
    if kind == "PositionAttention":
        _, h, w, c = inputs[0]
        n, d = h * w, max(c // layer.reduction, 1)
        projections = n * c * (2 * d + c)  # MatMul; the N x N products are Einsums
        return projections + n * n * d + n * n * c, 3 * n * n + 2 * _elements(out), projections
    if kind == "ScaleAttention":
        target, *sources = inputs
        _, h, w, c = target
        n, d = h * w, layer.key_channels
        projections = n * c * d + sum(n * s[-1] * (d + c) for s in sources)  # MatMul
        macs = projections + n * d * len(sources) + n * c * len(sources)
        return macs, 3 * n * len(sources) + 2 * _elements(out), projections
    if kind == "PlaneCoefficients":
        return 0, 20 * _elements(inputs[0][:-1] + (1,)), True  # 3 sigmoids, 4 trig, normalisation: ~20 per pixel
    if kind == "LocalPlanarGuidance":
        return 0, 6 * _elements(out), True  # 2 multiply-adds, 1 add, max, divide
    return None


class _NodeCapture:
    """Temporarily records new inbound nodes of sublayers during a symbolic call, then removes them."""

    def __init__(self, sublayers):
        self.sublayers = sublayers
        self.lengths = {}

    def __enter__(self):
        for layer in self.sublayers:
            self.lengths[id(layer)] = (len(layer._inbound_nodes), len(layer._outbound_nodes))
        return self

    def nodes(self):
        found = []
        for layer in self.sublayers:
            found.extend(layer._inbound_nodes[self.lengths[id(layer)][0]:])
        return found

    def __exit__(self, *exc):
        for layer in self.sublayers:
            inbound, outbound = self.lengths[id(layer)]
            del layer._inbound_nodes[inbound:]
            del layer._outbound_nodes[outbound:]
        return False


def _direct_sublayers(layer):
    return list(layer._flatten_layers(include_self=False, recursive=False))


def _count_call(layer, inputs, outputs, name, result):
    """Count one call of `layer` with input/output shape tuples (batch 1) into `result`."""
    if isinstance(layer, keras.Model) and getattr(layer, "_nodes_by_depth", None):
        _count_graph(layer, result, prefix=f"{name}/")  # a functional model used as a layer
        return
    rule = _layer_rule(layer, inputs, outputs)
    if rule is not None:
        macs, other, profiled = rule
        profiled = macs if profiled is True else profiled
        result.layers.append(LayerCount(name, type(layer).__name__, int(macs), int(other), int(profiled)))
        return
    sublayers = _direct_sublayers(layer)
    if not sublayers:
        result.uncounted.append((name, type(layer).__name__))
        return
    # Trace the layer's call symbolically: sublayers called on KerasTensors record nodes with shapes.
    symbolic = [keras.KerasTensor(shape) for shape in inputs]
    with _NodeCapture(sublayers) as capture:
        layer.call(symbolic[0] if len(symbolic) == 1 else symbolic)
        nodes = capture.nodes()
    for node in nodes:
        _count_node(node, result, prefix=f"{name}/")


def _count_node(node, result, prefix=""):
    inputs = [_shape(t) for t in node.arguments.keras_tensors]
    outputs = [_shape(t) for t in node.outputs]
    _count_call(node.operation, inputs, outputs, prefix + node.operation.name, result)


def _count_graph(model, result, prefix=""):
    for depth in sorted(model._nodes_by_depth, reverse=True):  # inputs have the highest depth
        for node in model._nodes_by_depth[depth]:
            if node.operation is None:
                continue
            _count_node(node, result, prefix)


def count_flops(model, input_size=None):
    """Analytic per-image FLOP count of a functional Keras model built with static spatial shapes; with
    `input_size` (H, W), of the same layers on images of that size (`models.inference.sized_model`: a model
    that takes any size, as a BTS recipe trains)."""
    if not getattr(model, "_nodes_by_depth", None):
        raise ValueError("count_flops needs a functional keras.Model (built from keras.Input).")
    if input_size is not None:
        from hqdepth.models.inference import sized_model

        model = sized_model(model, input_size)
    result = FlopCount()
    _count_graph(model, result)
    return result


DECODER_PREFIXES = ("decoder", "upsample_to_image", "logits", "depth", "bts_", "adff", "maca", "rpd", "rrm",
                    "rgb_", "deconv")


def default_parts():
    """Layer-name groups of the registered models: ASPP, decoder (everything after the backbone), encoder."""
    return {
        "aspp": lambda name: name.startswith("aspp"),
        "decoder": lambda name: name.startswith(DECODER_PREFIXES),
        "encoder": lambda name: True,
    }


# -------------------------------------------------------------------------------- TensorFlow profiler


def frozen_forward_graph(model, batch_size=1):
    """The model's inference forward pass as a frozen tf.Graph with a static input shape."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    specs = [tf.TensorSpec((batch_size, *tensor.shape[1:]), tensor.dtype) for tensor in model.inputs]
    function = tf.function(lambda *x: model(x[0] if len(x) == 1 else list(x), training=False))
    concrete = function.get_concrete_function(*specs)
    return convert_variables_to_constants_v2(concrete).graph


def profiler_flops(model, batch_size=1):
    """TensorFlow profiler FLOPs of the frozen forward graph: {"total", "matmul_flops", "by_op"} per image."""
    import tensorflow as tf

    graph = frozen_forward_graph(model, batch_size)
    options = (tf.compat.v1.profiler.ProfileOptionBuilder(tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
               .with_empty_output().build())
    profile = tf.compat.v1.profiler.profile(graph=graph, cmd="op", options=options)
    by_op = {}
    pending = list(profile.children)
    while pending:  # the "op" view nests op types; each node's own FLOPs are in `float_ops`
        node = pending.pop()
        if node.float_ops:
            by_op[node.name] = by_op.get(node.name, 0) + int(node.float_ops) // batch_size
        pending.extend(node.children)
    return {"total": int(profile.total_float_ops) // batch_size,
            "matmul_flops": sum(v for k, v in by_op.items() if k in PROFILER_PRODUCT_OPS),
            "by_op": dict(sorted(by_op.items(), key=lambda item: -item[1]))}
