"""The recipes of the other models carry the spec's stated facts (specs/other_models.md)."""

import pytest

from hqdepth.training import recipes
from hqdepth.training.schedules import build_schedule


def test_stated_facts():
    fcn = recipes.get_recipe("fcn_ssim_mse")
    stated = (fcn["optimizer"]["name"], fcn["optimizer"]["learning_rate"], fcn["train"]["batch_size"])
    assert stated == ("adam", 1e-4, 16)
    assert fcn["loss"]["name"] == "SSIMMSE" and fcn["data"]["augmentation"] == "fcn"

    saia = recipes.get_recipe("resnet50_transposed")
    assert saia["schedule"]["name"] == "cyclic" and saia["data"]["input_size"] == [224, 224]
    assert saia["train"]["epochs"] == 20 and saia["model"]["options"]["frozen_stages"] == 4

    nyu = recipes.get_recipe("bts_nyu")
    assert nyu["optimizer"] == {"name": "adamw", "learning_rate": 1e-4, "decay_encoder_only": True,
                                "fused": True, "options": {"epsilon": 1e-3, "weight_decay": 1e-2,
                                                           "epsilon_after_bias_correction": True}}
    assert nyu["schedule"] == {"name": "polynomial", "options": {"end_learning_rate": 1e-5, "power": 0.9}}
    assert nyu["loss"] == {"name": "SILog", "options": {"variance_focus": 0.85, "scale": 10.0, "min_depth": 0.1}}
    assert (nyu["train"]["batch_size"], nyu["train"]["epochs"], nyu["data"]["input_size"]) == (4, 50, [416, 544])
    assert nyu["evaluation"]["protocol"] == "nyu-eigen"

    kitti = recipes.get_recipe("bts_kitti")
    assert kitti["data"]["input_size"] == [352, 704] and kitti["data"]["with_focal"] is True
    assert kitti["model"]["options"]["with_focal"] is True and kitti["model"]["options"]["max_depth"] == 80.0
    assert kitti["loss"]["options"]["min_depth"] == 1.0 and kitti["evaluation"]["protocol"] == "kitti-garg"
    assert kitti["data"]["augmentation_options"] == {"dataset": "kitti"}

    toolbox = recipes.get_recipe("bts_nyu_toolbox24")
    assert toolbox["train"]["epochs"] == 24 and toolbox["train"]["batch_size"] == 16
    options = toolbox["optimizer"]["options"]
    assert options["beta_1"] == 0.95 and options["global_clipnorm"] == 35
    assert toolbox["loss"]["options"]["scale"] == 1.0 and toolbox["model"]["options"]["freeze"] == "none"
    assert toolbox["optimizer"]["decay_encoder_only"] is False  # the Toolbox decays every parameter
    rate = build_schedule(toolbox["schedule"]["name"], toolbox["optimizer"]["learning_rate"],
                          toolbox["schedule"]["options"], steps_per_epoch=10, total_steps=240)
    # mmcv's one cycle: 4e-6, the peak 1e-4 just after 30 % of the run (step 71 of 240: 0.3 * 240 - 1 = 71), 4e-8
    assert float(rate(0)) == pytest.approx(4e-6) and float(rate(71)) == pytest.approx(1e-4)
    assert float(rate(239)) == pytest.approx(4e-8) and float(rate(120)) < 1e-4
    assert toolbox["evaluation"]["flip"] is True  # MultiScaleFlipAug(flip=True), as its published numbers

    mrpan = recipes.get_recipe("mrpan_nyu")
    assert mrpan["schedule"] == {"name": "step", "options": {"every_epochs": 5, "factor": 0.1}}
    rate = build_schedule("step", mrpan["optimizer"]["learning_rate"], mrpan["schedule"]["options"], steps_per_epoch=10)
    for epoch in range(20):  # SARPN utils.py adjust_learning_rate: lr = init_lr * 0.1 ** (epoch // 5), each epoch
        for step in (10 * epoch, 10 * epoch + 9):
            assert float(rate(step)) == pytest.approx(1e-4 * 0.1 ** (epoch // 5), rel=1e-6)
    assert (mrpan["train"]["batch_size"], mrpan["train"]["epochs"]) == (4, 20)
    # PyTorch Adam's coupled weight decay, as SARPN's code; not Keras' decoupled one
    # and PyTorch's epsilon (1e-8, added after the bias correction)
    assert mrpan["optimizer"]["options"] == {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8, "l2_weight_decay": 1e-4,
                                             "epsilon_after_bias_correction": True}
    assert toolbox["data"]["augmentation_options"] == {"dataset": "nyu", "rotate_p": 0.5, "gamma_on_uint8": True}
    assert all(recipes.get_recipe(name)["train"]["precision"] == "float32" for name in
               ("hqmd_plus_full", "hqmd_baseline_ldepth", "bts_nyu", "bts_kitti", "bts_nyu_toolbox24", "mrpan_nyu"))
    assert mrpan["loss"]["name"] == "MultiScaleDepthLoss"
