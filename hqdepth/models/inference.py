"""The inference view of a trained model: one depth map out, the image (and a focal length) in.

Training graphs differ from what evaluation, TensorBoard images, export and `hqdepth predict` need:
a deep-supervision model (MRPAN) returns a list of depth maps, finest first, at fractions of the
input size; a focal-aware model (BTS on KITTI) takes (image, focal). `depth_model` returns a
`keras.Model` sharing the weights that gives the one final depth map, so every consumer handles
every family the same way.
"""

from hqdepth.errors import ConfigError


def focal_scaling_layer(model):
    """The model's `FocalScaling` layer, or None (a model without a focal input)."""
    from hqdepth.layers import FocalScaling

    return next((layer for layer in model.layers if isinstance(layer, FocalScaling)), None)


def depth_model(model, fix_focal=False):
    """A single-output view of `model` (weights shared; `model` itself when nothing changes).

    - Several outputs (deep supervision, finest first): the first, resized bilinearly
      (align_corners=True, as SARPN's test) to the input size (`mrpan.finest_depth_model`).
    - Inputs (image, focal): kept as they are, unless `fix_focal`: then the model takes the image
      only and the focal length is the `FocalScaling` layer's reference focal (KITTI mean 715.0873 px),
      i.e. the depth is not rescaled. A SavedModel or `hqdepth predict` has no per-image focal input.
    """
    from hqdepth.models.mrpan import finest_depth_model

    if len(model.outputs) > 1:
        model = finest_depth_model(model, name=model.name)
    if len(model.inputs) > 1 and fix_focal:
        scaling = focal_scaling_layer(model)
        if scaling is None or len(model.inputs) != 2:
            raise ConfigError(f"model {model.name!r} has {len(model.inputs)} inputs; only (image, focal) models "
                              "with a FocalScaling layer can run on images alone.")
        import keras

        depth = scaling.input[0]  # the depth before `x focal / reference_focal`
        model = keras.Model(model.inputs[0], depth, name=model.name)
    return model


def reference_focal(model):
    """The focal length (pixels) a focal-aware model's output is relative to, or None."""
    scaling = focal_scaling_layer(model)
    return None if scaling is None else scaling.reference_focal
