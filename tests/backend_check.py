"""Run by test_backends.py in a subprocess per backend: a model build, one train step and loss values.

usage: python backend_check.py WEIGHTS_PATH OUT_JSON [--save-weights]
The TensorFlow run saves the model weights; the other backends load them, so all start identical.
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
    keras.utils.set_random_seed(0)  # the TensorFlow run draws the weights: the same ones every time
    model = build_model("hqmd_baseline_plus", max_depth=1.0, l2=0.0)
    depth = gt / 10.0
    if save_weights:
        model.save_weights(weights_path)
    else:
        model.load_weights(weights_path)
    result["output_mean"] = float(np.mean(np.asarray(model(images, training=True))))
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=losses.HQMDLoss(), run_eagerly=True)
    watched = [w for w in model.trainable_weights if w.path.split("/")[0].startswith(("decoder", "logits", "aspp"))]
    before = [np.array(w.numpy() if hasattr(w, "numpy") else w.value) for w in watched]
    result["train_loss_step1"] = float(model.train_on_batch(images, depth))
    after = [np.array(w.numpy() if hasattr(w, "numpy") else w.value) for w in watched]
    np.savez(out_path + ".update.npz", *[a - b for a, b in zip(after, before)])
    result["train_loss_step2"] = float(model.train_on_batch(images, depth))
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], "--save-weights" in sys.argv)
