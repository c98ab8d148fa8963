"""Run by test_backends.py in a subprocess per backend: a model build, one train step and loss values.

usage: python backend_check.py FOLDER BACKEND_NAME [--save-weights]
The TensorFlow run saves the model weights into FOLDER; the other backends load them, so all start identical.
HQMD goes to FOLDER/NAME.hqmd.json (+ .update.npz); the FCN autoencoder, ResNet-50 + transposed convs, BTS and MRPAN
and their losses to FOLDER/NAME.other.json (+ .outputs.npz). One process per backend runs both (an interpreter with
TensorFlow or JAX takes seconds to start).
"""

import json
import sys

import numpy as np


def main(weights_path, out_path, save_weights):
    import keras

    from hqdepth import losses
    from hqdepth.models import build_model

    rng = np.random.default_rng(1234)
    gt = rng.uniform(0.5, 9.5, (2, 33, 49, 1)).astype(np.float32)
    gt[rng.uniform(size=gt.shape) < 0.1] = 0.0
    pred = np.clip(gt + rng.normal(0, 0.8, gt.shape), 0.05, None).astype(np.float32)
    images = rng.uniform(0, 255, (2, 33, 49, 3)).astype(np.float32)

    loss_objects = {
        "berhu_per_pixel": losses.BerHu(),
        "berhu_scalar": losses.BerHu(threshold="batch_max"),
        "grad_magnitude_mean": losses.GradientMagnitude(),
        "grad_magnitude_sum": losses.GradientMagnitude(reduction="sum"),
        "grad_direction": losses.GradientDirection(),
        "normal": losses.SurfaceNormal(),
        "hqmd": losses.HQMDLoss(normal_weight=0.3),
        "hqmd_unmasked": losses.HQMDLoss(mask_invalid=False),
        "hu": losses.HuLoss(),
    }
    result = {"backend": keras.backend.backend(),
              "losses": {name: float(loss(gt, pred)) for name, loss in loss_objects.items()}}

    # max_depth 1 and no weight decay keep the loss O(1): float32 round-off through 50 layers is ~5e-6
    # relative, and the 1e-5 comparison is absolute.
    model = shared_weights(keras, lambda: build_model("hqmd_baseline_plus", max_depth=1.0, l2=0.0), weights_path,
                           save_weights)
    depth = gt / 10.0
    result["output_mean"] = float(np.mean(np.asarray(_forward(keras, model, images))))
    # JAX: the jitted step (as fit runs it); op by op it compiled every primitive separately (404 s against 175 s
    # on a 2-core Xeon). TensorFlow: eagerly, which skips tracing the step.
    # A small step: on this random network one SGD step of 1e-3 overshoots and raises the loss (1.482 -> 1.497 in
    # TensorFlow), 1e-4 and 1e-5 lower it (1.451, 1.453); the comparison of the updates below is relative.
    model.compile(optimizer=keras.optimizers.SGD(1e-4), loss=losses.HQMDLoss(),
                  run_eagerly=keras.backend.backend() != "jax")
    watched = [w for w in model.trainable_weights if w.path.split("/")[0].startswith(("decoder", "logits", "aspp"))]
    before = [np.array(w.numpy() if hasattr(w, "numpy") else w.value) for w in watched]
    result["train_loss_step1"] = float(model.train_on_batch(images, depth))
    after = [np.array(w.numpy() if hasattr(w, "numpy") else w.value) for w in watched]
    np.savez(out_path + ".update.npz", *[a - b for a, b in zip(after, before)])
    result["train_loss_step2"] = float(model.train_on_batch(images, depth))
    with open(out_path, "w") as f:
        json.dump(result, f)


def shared_weights(keras, build, weights_path, save_weights):
    """`build()`'s model with the weights the TensorFlow run drew (`save_weights`: draw and write them).

    The loading side never draws any: under JAX each random initialiser compiles a program per weight shape
    (the MRPAN of `other_models` took 21 s to build instead of 3 on a 2-core Xeon), so the variables are made
    uninitialised in a stateless scope (Keras' deferred initialisation) and the file sets every one of them."""
    if save_weights:
        keras.utils.set_random_seed(0)  # the same weights every time
        model = build()
        model.save_weights(weights_path)
        return model
    from keras.src.backend.common import global_state

    with keras.StatelessScope(initialize_variables=False):
        model = build()
    model.load_weights(weights_path)
    unset = [v.path for v in model.variables if v._value is None]
    assert not unset, f"not in {weights_path}: {unset[:5]}"
    global_state.set_global_attribute("uninitialized_variables", [])  # every one is set: none left to draw
    return model


def _five_scale_encoder(keras, channels=8):
    """A tiny encoder with five outputs at H/2 .. H/32 (BTS and MRPAN accept any such model)."""
    image = keras.Input((None, None, 3), name="image")
    x, outputs = keras.layers.Rescaling(1 / 255.0)(image), []
    for i in range(5):
        x = keras.layers.Conv2D(channels, 3, strides=2, padding="same", activation="relu", name=f"tiny{i}")(x)
        outputs.append(x)
    return keras.Model(image, outputs)


def _forward(keras, model, inputs):
    """One forward pass with batch statistics; under JAX as one jitted function (op-by-op dispatch
    compiles every primitive separately and costs minutes on a CPU)."""
    if keras.backend.backend() != "jax":
        return model(inputs, training=True)
    import jax

    def call(trainable, non_trainable, x):
        return model.stateless_call(trainable, non_trainable, x, training=True)[0]

    values = lambda variables: [v.value for v in variables]  # noqa: E731
    return jax.jit(call)(values(model.trainable_variables), values(model.non_trainable_variables), inputs)


def other_models(weights_path, out_path, save_weights):
    import keras

    from hqdepth import losses
    from hqdepth.models import build_model

    rng = np.random.default_rng(4321)
    gt = rng.uniform(0.5, 9.5, (2, 32, 32, 1)).astype(np.float32)
    gt[rng.uniform(size=gt.shape) < 0.1] = 0.0
    pred = np.clip(gt + rng.normal(0, 0.8, gt.shape), 0.05, None).astype(np.float32)
    images = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    focal = np.array([707.0912, 721.5377], np.float32)
    scales = [pred[:, ::2, ::2], pred[:, ::4, ::4], pred[:, :7, :5]]
    loss_values = {
        "ssim_mse": losses.SSIMMSE()(gt, pred),
        "ssim_mse_unmasked": losses.SSIMMSE(ssim_weight=0.3, mask_invalid=False)(gt, pred),
        "silog": losses.SILog()(gt, pred),
        "silog_toolbox": losses.SILog(offset=1e-3, unbiased=True, scale=1.0, min_depth=0.0)(gt, pred),
        "multi_scale": losses.MultiScaleDepthLoss()(gt, scales),
    }
    result = {"backend": keras.backend.backend(), "losses": {k: float(v) for k, v in loss_values.items()}}

    # max_depth 1 keeps the outputs O(1) for the absolute comparison; batch statistics (training=True)
    # keep randomly initialised encoders bounded. BTS and MRPAN run their full decoders on a tiny
    # five-scale encoder (the ResNet-50 itself is checked with HQMD and in resnet50_transposed).
    configs = {
        "fcn_autoencoder": lambda: dict(max_depth=1.0),
        "resnet50_transposed": lambda: dict(output_activation="sigmoid", max_depth=1.0),
        "bts": lambda: dict(encoder=_five_scale_encoder(keras), bts_size=128, max_depth=1.0, with_focal=True),
        "mrpan": lambda: dict(backbone=_five_scale_encoder(keras), adff_channels=80, rpd_channels=64,
                              sam_scales=(5, 4, 3), gam_key_channels=4),
    }
    outputs = {}
    for name, options in configs.items():
        model = shared_weights(keras, lambda: build_model(name, **options()), f"{weights_path}.{name}.weights.h5",
                               save_weights)
        inputs = [images, focal] if name == "bts" else images
        if name == "resnet50_transposed":  # 64x64: 2x2 maps at H/32, so batch norm is not degenerate
            inputs = np.tile(images, (1, 2, 2, 1))
        for i, output in enumerate(keras.tree.flatten(_forward(keras, model, inputs))):
            outputs[f"{name}_{i}"] = np.asarray(output)
    np.savez(out_path + ".outputs.npz", **outputs)
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    folder, name, save = sys.argv[1], sys.argv[2], "--save-weights" in sys.argv
    main(f"{folder}/hqmd.weights.h5", f"{folder}/{name}.hqmd.json", save)
    other_models(f"{folder}/other", f"{folder}/{name}.other.json", save)
