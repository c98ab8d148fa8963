"""The inference view of a trained model: one depth map out, the image (and a focal length) in, at any size.

Training graphs differ from what evaluation, TensorBoard images, export and `hqdepth predict` need:
a deep-supervision model (MRPAN) returns a list of depth maps, finest first, at fractions of the
input size; a focal-aware model (BTS on KITTI) takes (image, focal); a model trained on fixed-size
crops has that size in its input. `depth_model` returns a `keras.Model` sharing the weights that
gives the one final depth map, and `free_size_model` the same network taking images of any size,
so every consumer handles every family the same way, and a model is tested at the resolution its
paper's test code uses (BTS: the whole 480x640 NYU frame, the 352x1216 KITTI benchmark crop).
"""

from hqdepth.errors import ConfigError


def focal_scaling_layer(model):
    """The model's `FocalScaling` layer, or None (a model without a focal input)."""
    from hqdepth.layers import FocalScaling

    return next((layer for layer in model.layers if isinstance(layer, FocalScaling)), None)


def input_size(model):
    """The fixed (height, width) of the model's image input (its first input), or None when free."""
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[1] is None or shape[2] is None:
        return None
    return int(shape[1]), int(shape[2])


def free_size_model(model):
    """`model` taking images of any height and width: the same layers (weights shared, nothing copied)
    called on new inputs whose spatial sizes are free; `model` itself when they already are.

    Every image input (rank 4) gets (None, None) spatial dimensions; other inputs (a focal length)
    keep their shape. Nested functional models (the backbone) are rebuilt the same way. Every
    model family here is fully convolutional with sizes taken from tensors at run time, so the
    rebuilt model computes at the size it is given what the original computes at its own size
    (a size the family accepts: e.g. multiples of 32 for BTS). The model keeps its name.
    """
    if all(len(x.shape) != 4 or (x.shape[1] is None and x.shape[2] is None) for x in model.inputs):
        return model
    return _with_image_size(model, (None, None))


def sized_model(model, size):
    """`model` taking images of the fixed (height, width) `size`, the same layers as `free_size_model`
    rebuilds them: static shapes everywhere, e.g. for `hqdepth.flops.count_flops` of a model that takes any
    size."""
    size = tuple(int(v) for v in size)
    if all(len(x.shape) != 4 or tuple(x.shape[1:3]) == size for x in model.inputs):
        return model
    return _with_image_size(model, size)


def _with_image_size(model, size):
    """The functional `model` (and its nested functional models) rebuilt on image inputs of spatial `size`."""
    import keras
    from keras.src.models.functional import Functional

    if not isinstance(model, Functional):
        raise ConfigError(f"model {model.name!r} is not a functional Keras model; it cannot be rebuilt with "
                          "another input size.")
    cache = {}

    def rebuild(functional):
        def image_input(tensor):
            shape = tuple(tensor.shape)
            if len(shape) == 4:
                shape = (shape[0], *size, shape[3])
            return keras.Input(batch_shape=shape, dtype=tensor.dtype, name=tensor.name)

        inputs = keras.tree.map_structure(image_input, functional.input)

        def operation(layer):
            if isinstance(layer, Functional):
                if id(layer) not in cache:
                    cache[id(layer)] = rebuild(layer)
                return cache[id(layer)]
            return layer

        outputs = functional._run_through_graph(inputs, operation_fn=operation)
        return keras.Model(inputs, outputs, name=functional.name)

    return rebuild(model)


def depth_model(model, fix_focal=False, free_size=False):
    """A single-output view of `model` (weights shared; `model` itself when nothing changes).

    - `free_size`: first rebuilt to take images of any size (`free_size_model`).
    - Several outputs (deep supervision, finest first): the first, resized bilinearly
      (align_corners=True, as SARPN's test) to the input size (`mrpan.finest_depth_model`).
    - Inputs (image, focal): kept as they are, unless `fix_focal`: then the model takes the image
      only and the focal length is the `FocalScaling` layer's reference focal (KITTI mean 715.0873 px),
      i.e. the depth is not rescaled. A SavedModel or `hqdepth predict` has no per-image focal input.
    """
    from hqdepth.models.mrpan import finest_depth_model

    if free_size:
        model = free_size_model(model)
    if len(model.outputs) > 1:
        model = finest_depth_model(model, name=model.name)
    if len(model.inputs) > 1 and fix_focal:
        scaling = focal_scaling_layer(model)
        if scaling is None or len(model.inputs) != 2:
            raise ConfigError(f"model {model.name!r} has {len(model.inputs)} inputs; only (image, focal) models "
                              "with a FocalScaling layer can run on images alone.")
        import keras

        # The depth before `x focal / reference_focal`, in this model's graph (a rebuilt model shares the layer
        # with the original, whose first call is another graph).
        node = next((node for nodes in model._nodes_by_depth.values() for node in nodes
                     if node.operation is scaling), None)
        if node is None:
            raise ConfigError(f"model {model.name!r}: its FocalScaling layer is not called in its own graph.")
        model = keras.Model(model.inputs[0], node.input_tensors[0], name=model.name)
    return model


def reference_focal(model):
    """The focal length (pixels) a focal-aware model's output is relative to, or None."""
    scaling = focal_scaling_layer(model)
    return None if scaling is None else scaling.reference_focal
