"""Recipes (as data, overrides, files) and learning-rate schedules against their formulas."""

import json
import math
import os

import keras
import numpy as np
import pytest
import yaml

from hqdepth.cli import main
from hqdepth.errors import ConfigError
from hqdepth.training import recipes
from hqdepth.training.schedules import OneCycle, TriangularCyclic, build_schedule

RNG = np.random.default_rng(int(os.environ["HQDEPTH_TEST_SEED"]))
TABLE1 = ["hqmd_baseline_ldepth", "hqmd_plus_hu", "hqmd_plus_ldepth", "hqmd_plus_ldepth_gradmg", "hqmd_plus_full"]


def test_hqmd_table1_recipes_follow_the_official_code():
    names = {r["name"] for r in recipes.list_recipes()}
    assert set(TABLE1) <= names
    for name in TABLE1:
        config = recipes.get_recipe(name)
        assert config["optimizer"] == {"name": "adam", "learning_rate": 1e-4, "decay_encoder_only": False,
                                       "fused": True, "options": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8}}
        assert config["schedule"] == {"name": "exponential",
                                      "options": {"decay_steps": 10000, "decay_rate": 0.9, "staircase": True}}
        assert (config["train"]["batch_size"], config["train"]["total_steps"]) == (8, 300000)  # 20 x 15k
        assert config["data"]["input_size"] == [289, 385] and config["data"]["augmentation"] == "hqmd"
        assert config["data"]["augmentation_options"] == {"max_angle": 0.0}  # as published: no rotation
        assert config["model"]["options"]["backbone_weights"] == "slim-resnet_v2_50"
        assert config["model"]["options"]["freeze"] == "stem_block1"
        assert config["evaluation"]["protocol"] == "nyu-hqmd"
        assert config["model"]["options"]["max_depth"] == 10.0
    weights = {name: recipes.get_recipe(name)["loss"]["options"] for name in TABLE1 if name != "hqmd_plus_hu"}
    assert (weights["hqmd_plus_full"]["grad_magnitude_weight"], weights["hqmd_plus_full"]["grad_direction_weight"]) == (1, 1)
    assert (weights["hqmd_plus_ldepth_gradmg"]["grad_magnitude_weight"],
            weights["hqmd_plus_ldepth_gradmg"]["grad_direction_weight"]) == (1, 0)
    for name in ("hqmd_plus_ldepth", "hqmd_baseline_ldepth"):
        assert (weights[name]["grad_magnitude_weight"], weights[name]["grad_direction_weight"]) == (0, 0)
    assert recipes.get_recipe("hqmd_baseline_ldepth")["model"]["name"] == "hqmd_baseline"
    hu = recipes.get_recipe("hqmd_plus_hu")["loss"]
    # a new loss class starts from its own options: nothing of HQMDLoss leaks into HuLoss
    assert hu["name"] == "HuLoss" and "grad_magnitude_weight" not in hu["options"]


def test_every_recipe_builds_its_loss_and_optimizer():
    from hqdepth.training.trainer import build_loss, build_optimizer

    for config in recipes.list_recipes():
        loss = build_loss(config)
        assert isinstance(loss, keras.losses.Loss)
        optimizer = build_optimizer(config, steps_per_epoch=100, total_steps=1000)
        keras_class = type(keras.optimizers.get(config["optimizer"]["name"]))
        assert isinstance(optimizer, keras_class)  # FusedAdam(W) subclasses Keras' Adam(W)
        assert (type(optimizer) is not keras_class) == (keras_class in (keras.optimizers.Adam, keras.optimizers.AdamW))


def test_overrides_from_set_and_files(tmp_path):
    json_file = tmp_path / "change.json"
    json_file.write_text(json.dumps({"train": {"epochs": 3}, "loss": {"options": {"berhu_ratio": 0.3}}}))
    yaml_file = tmp_path / "change.yaml"
    yaml_file.write_text("optimizer:\n  learning_rate: 5e-5\n  options: {epsilon: '1e-7'}\n")  # YAML 1.2 floats
    config = recipes.resolve_config("hqmd_plus_full", [json_file, yaml_file],
                                    ["optimizer.learning_rate=3e-4", "data.input_size=[64, 96]", "train.jit_compile=true",
                                     "model.options.aspp_rates=[2, 4, 6]",
                                     "evaluation.protocol_options={clip: [1e-3, 10], crop: none}"])
    assert config["optimizer"]["learning_rate"] == 3e-4 and isinstance(config["optimizer"]["learning_rate"], float)
    # numbers YAML 1.1 reads as strings are numbers inside lists and mappings too; other strings stay
    assert config["evaluation"]["protocol_options"] == {"clip": [0.001, 10], "crop": "none"}
    assert recipes.resolve_config("hqmd_plus_full", [yaml_file])["optimizer"]["learning_rate"] == 5e-5  # not '5e-5'
    assert config["optimizer"]["options"]["epsilon"] == "1e-7"  # quoted: a string, as written
    assert config["train"]["epochs"] == 3 and config["train"]["jit_compile"] is True
    assert config["loss"]["options"]["berhu_ratio"] == 0.3
    assert config["loss"]["options"]["grad_direction_weight"] == 1.0  # untouched fields stay
    assert config["data"]["input_size"] == [64, 96]
    assert config["model"]["options"]["aspp_rates"] == [2, 4, 6]
    saved = tmp_path / "config.yaml"
    recipes.dump(config, saved)
    assert yaml.safe_load(saved.read_text()) == config
    assert recipes.resolve_config(saved) == config  # a saved config is itself a recipe


@pytest.mark.parametrize("item,message", [
    ("optimizer.learnign_rate=1", "unknown recipe field 'optimizer.learnign_rate'"),
    ("train.batch_size=0", "train.batch_size=0"),
    ("train.precision=fp8", "train.precision='fp8'"),
    ("epochs", "expected KEY=VALUE"),
    # each stopped with a traceback (or trained: a negative rate ascends the loss)
    ("optimizer.learning_rate=abc", "optimizer.learning_rate='abc' must be a number >= 0"),
    ("optimizer.learning_rate=-1", "optimizer.learning_rate=-1 must be a number >= 0"),
    ("optimizer.learning_rate=null", "optimizer.learning_rate=None must be a number >= 0"),
    ("data.input_size=[64, true]", "data.input_size=[64, True]: expected [height, width]"),
    ("data.input_size=48", "data.input_size=48: expected [height, width]"),
    ("data.input_size=[a, b]", "data.input_size=['a', 'b']: expected [height, width]"),
    ("train.seed=abc", "train.seed='abc' must be an integer or null"),
    ("train=3", "train=3: expected the train settings as a mapping"),
    ("train.test_evaluation=maybe", "train.test_evaluation='maybe' must be true or false"),
    ("train.log_every_steps=0", "train.log_every_steps=0 must be an integer >= 1"),
    ("train.image_samples=-1", "train.image_samples=-1 must be an integer >= 0"),
    ("evaluation.max_depth=-5", "evaluation.max_depth=-5 must be a positive number in metres or null"),
])
def test_bad_overrides_name_the_field(item, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        recipes.resolve_config("hqmd_plus_full", sets=[item])


def test_cli_lists_and_shows_recipes(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in TABLE1:
        assert name in out
    assert main(["recipes", "hqmd_plus_ldepth", "--set", "train.epochs=2"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["epochs"] == 2 and shown["loss"]["options"]["grad_magnitude_weight"] == 0.0
    assert main(["recipes", "no_such_recipe"]) == 2
    err = capsys.readouterr().err
    assert "unknown recipe 'no_such_recipe'" in err and "Traceback" not in err
    assert main(["recipes", "--set", "train.batch_size=3"]) == 2  # it listed the recipes, the --set unused
    assert "--set and --config need a recipe NAME" in capsys.readouterr().err


def _values(schedule, steps):
    return np.array([float(keras.ops.convert_to_numpy(schedule(s))) for s in steps])


def test_exponential_staircase_matches_hqmd_formula():
    schedule = build_schedule("exponential", 1e-4, {"decay_steps": 10000, "decay_rate": 0.9, "staircase": True})
    steps = np.concatenate([[0, 9999, 10000, 19999, 20000, 299999], RNG.integers(0, 300000, 20)])
    expected = 1e-4 * 0.9 ** np.floor(steps / 10000.0)
    np.testing.assert_allclose(_values(schedule, steps), expected, rtol=1e-5)


def test_step_decay_every_five_epochs():
    steps_per_epoch = int(RNG.integers(50, 500))
    schedule = build_schedule("step", 1e-4, {"every_epochs": 5, "factor": 0.9}, steps_per_epoch=steps_per_epoch)
    steps = np.concatenate([[0, 5 * steps_per_epoch - 1, 5 * steps_per_epoch, 10 * steps_per_epoch],
                            RNG.integers(0, 50 * steps_per_epoch, 20)])
    expected = 1e-4 * 0.9 ** np.floor(steps / steps_per_epoch / 5)
    np.testing.assert_allclose(_values(schedule, steps), expected, rtol=1e-5)


def test_polynomial_decay_matches_bts_formula():
    total = int(RNG.integers(1000, 100000))
    schedule = build_schedule("polynomial", 1e-4, {"end_learning_rate": 1e-5, "power": 0.9}, total_steps=total)
    steps = np.concatenate([[0, total // 2, total, total + 10], RNG.integers(0, total, 20)])
    expected = (1e-4 - 1e-5) * (1 - np.minimum(steps, total) / total) ** 0.9 + 1e-5
    np.testing.assert_allclose(_values(schedule, steps), expected, rtol=1e-5)


def test_triangular_cyclic_matches_smith_formula():
    low, high, step_size = 1e-5, float(RNG.uniform(1e-4, 1e-2)), int(RNG.integers(10, 2000))
    schedule = build_schedule("cyclic", low, {"max_learning_rate": high, "step_size": step_size})
    steps = np.concatenate([[0, step_size, 2 * step_size, 3 * step_size, step_size // 2], RNG.integers(0, 20 * step_size, 30)])
    cycle = np.floor(1 + steps / (2.0 * step_size))
    expected = low + (high - low) * np.maximum(0.0, 1 - np.abs(steps / step_size - 2 * cycle + 1))
    # float32 rounding of the position in the cycle is of the order of float32's epsilon times the amplitude, which
    # near the bottom of a cycle exceeds 1e-5 of the (small) rate itself (seed 63841998: 1.06e-5 at 3.9e-5)
    np.testing.assert_allclose(_values(schedule, steps), expected, rtol=1e-5, atol=4 * 1.2e-7 * (high - low))
    assert math.isclose(_values(schedule, [step_size])[0], high, rel_tol=1e-6)  # peak after one half cycle
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(restored, TriangularCyclic) and restored.get_config() == schedule.get_config()


def _mmcv_one_cycle(step, initial, peak, total, pct_start, final_div_factor, anneal):
    """float64 copy of mmcv's OneCycleLrUpdaterHook.get_lr (two phases; base_lr = initial)."""
    phases = [(pct_start * total - 1, 1.0, peak / initial), (total - 1, peak / initial, 1.0 / final_div_factor)]
    start = 0.0
    for end, start_ratio, end_ratio in phases:
        if step <= end:
            fraction = (step - start) / (end - start)
            a, b = initial * start_ratio, initial * end_ratio
            return a + (b - a) * fraction if anneal == "linear" else b + 0.5 * (a - b) * (math.cos(math.pi * fraction) + 1)
        start = end
    raise AssertionError("past the last step")


def test_one_cycle_matches_mmcv_formula():
    total, pct = int(RNG.integers(50, 50000)), float(RNG.uniform(0.1, 0.6))
    initial, peak, final_div = 1e-4 / 25, float(RNG.uniform(1e-4, 1e-2)), float(RNG.choice([100.0, 1e4]))
    steps = np.concatenate([[0, int(pct * total) - 1, int(pct * total), total - 1], RNG.integers(0, total, 30)])
    for anneal in ("cos", "linear"):
        schedule = build_schedule("one_cycle", initial, {"max_learning_rate": peak, "pct_start": pct,
                                                         "final_div_factor": final_div, "anneal": anneal},
                                  total_steps=total)
        expected = [_mmcv_one_cycle(s, initial, peak, total, pct, final_div, anneal) for s in steps]
        np.testing.assert_allclose(_values(schedule, steps), expected, rtol=2e-6)  # measured 4e-7 at worst
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(restored, OneCycle) and restored.get_config() == schedule.get_config()
    # a run shorter than 1 / pct_start steps has no rise, as in mmcv
    short = build_schedule("one_cycle", initial, {"max_learning_rate": peak}, total_steps=3)
    np.testing.assert_allclose(_values(short, [0, 1, 2]), [_mmcv_one_cycle(s, initial, peak, 3, 0.3, 1e4, "cos")
                                                           for s in range(3)], rtol=2e-6)


# The learning rates the Depth Toolbox's published log prints for bts_r50_nyu_24e (configs/bts/resources/logs/
# bts_r50_nyu_24e.txt): (epoch, iteration of the epoch, lr as printed, 4 digits). 1514 iterations per epoch;
# the printed rate is that of the 0-based step (epoch - 1) * 1514 + iteration - 1.
TOOLBOX_LOG_LR = [(1, 50, 4.005e-06), (1, 100, 4.020e-06), (1, 500, 4.496e-06), (1, 1000, 5.976e-06),
                  (1, 1500, 8.411e-06), (2, 50, 8.789e-06), (2, 550, 1.224e-05), (7, 500, 9.658e-05),
                  (7, 1500, 9.980e-05), (8, 250, 9.999e-05), (8, 300, 1.000e-04), (8, 1000, 9.981e-05),
                  (9, 50, 9.939e-05), (16, 50, 5.531e-05), (16, 1000, 4.945e-05), (17, 1500, 3.717e-05),
                  (18, 850, 3.210e-05), (23, 1000, 1.600e-06), (24, 50, 8.549e-07), (24, 1000, 1.407e-07),
                  (24, 1500, 4.007e-08)]


def test_bts_toolbox_recipe_reproduces_the_learning_rates_of_the_toolbox_log():
    """bts_nyu_toolbox24 on NYU's 24,231 training pairs: every rate the published log prints, to its last digit."""
    from hqdepth.training.trainer import Plan

    config = recipes.resolve_config("bts_nyu_toolbox24")
    plan = Plan(config, 24231, replicas=1)
    assert (plan.steps_per_epoch, plan.total_steps) == (1514, 24 * 1514)
    schedule = build_schedule(config["schedule"]["name"], config["optimizer"]["learning_rate"],
                              config["schedule"]["options"], steps_per_epoch=plan.steps_per_epoch,
                              total_steps=plan.total_steps)
    steps = np.array([(epoch - 1) * 1514 + iteration - 1 for epoch, iteration, _ in TOOLBOX_LOG_LR])
    printed = np.array([lr for *_, lr in TOOLBOX_LOG_LR])
    half_digit = 0.5e-3 * 10.0 ** np.floor(np.log10(printed))
    got = _values(schedule, steps)
    assert np.all(np.abs(got - printed) <= 1.01 * half_digit), np.c_[steps, printed, got]
    # The log resolves single steps: the rates one step later disagree with it.
    assert np.any(np.abs(_values(schedule, steps + 1) - printed) > 1.01 * half_digit)


def test_schedule_errors_are_clear():
    with pytest.raises(ConfigError, match="unknown schedule 'cosine'"):
        build_schedule("cosine", 1e-4)
    with pytest.raises(ConfigError, match="needs option 'decay_rate'"):
        build_schedule("exponential", 1e-4, {"decay_steps": 10})
    with pytest.raises(ConfigError, match="unknown option"):
        build_schedule("polynomial", 1e-4, {"power": 0.9, "warmup": 3})
    with pytest.raises(ConfigError, match="one_cycle schedule: option 'max_learning_rate' must be a number"):
        build_schedule("one_cycle", 1e-4, {"max_learning_rate": "1e-3x"}, total_steps=10)
    with pytest.raises(ConfigError, match="step schedule: option 'every_steps' must be an integer, not 'ten'"):
        build_schedule("step", 1e-4, {"every_steps": "ten"})
    with pytest.raises(ConfigError, match="learning rate must be a number, not 'fast'"):
        build_schedule("constant", "fast")
    # a null optional option is the default, as before
    assert build_schedule("polynomial", 1e-4, {"decay_steps": None}, total_steps=7).decay_steps == 7
    # the cyclic half cycle in steps or in epochs, exactly one: the error says how to swap a recipe's one
    config = recipes.resolve_config("resnet50_transposed", sets=["schedule.options.step_size=40"])
    with pytest.raises(ConfigError, match=r"\(both given; .* --set schedule.options.step_size_epochs=null"):
        build_schedule(config["schedule"]["name"], 1e-4, config["schedule"]["options"], steps_per_epoch=10)
    config = recipes.resolve_config("resnet50_transposed", sets=["schedule.options.step_size=40",
                                                                 "schedule.options.step_size_epochs=null"])
    assert build_schedule("cyclic", 1e-4, config["schedule"]["options"], steps_per_epoch=10).step_size == 40
    with pytest.raises(ConfigError, match=r"\(neither given"):
        build_schedule("cyclic", 1e-4, {"max_learning_rate": 1e-3})


def test_global_batch_per_replica_or_as_stated():
    from hqdepth.training.trainer import Plan

    per_replica = recipes.resolve_config("hqmd_plus_full", sets=["train.batch_size=4"])
    assert Plan(per_replica, 100, replicas=2).global_batch == 8
    stated = recipes.resolve_config("hqmd_plus_full", sets=["train.batch_size=4", "train.batch_size_is_global=true"])
    assert Plan(stated, 100, replicas=2).global_batch == 4
    with pytest.raises(ConfigError, match="must divide among 3 replicas"):
        Plan(stated, 100, replicas=3)


def test_batch_groups_in_the_plan_the_batch_norms_and_the_loss():
    """train.batch_groups: checked against the global batch and the replicas; every hqdepth batch norm and the loss
    get the groups per replica (a Keras BatchNormalization cannot, and says so), and 1 puts a model file's back."""
    from hqdepth.layers import FusedBatchNormalization
    from hqdepth.training.trainer import Plan, apply_batch_groups, build_loss

    config = recipes.resolve_config("bts_nyu_toolbox24")
    assert config["train"]["batch_groups"] == 2
    assert Plan(config, 24231, replicas=2).global_batch == 16
    with pytest.raises(ConfigError, match="batch_groups=3 must"):
        Plan(recipes.resolve_config("bts_nyu_toolbox24", sets=["train.batch_groups=3"]), 24231, replicas=1)
    with pytest.raises(ConfigError, match="multiple of the 4 replicas"):
        Plan(config, 24231, replicas=4)
    for bad, message in (("train.batch_groups=0", "train.batch_groups=0 must be a positive integer"),
                         ("train.batch_groups=two", "train.batch_groups='two' must be a positive integer"),
                         ("evaluation.flip=3", "evaluation.flip=3 must be true or false")):
        with pytest.raises(ConfigError, match=message):
            recipes.resolve_config("bts_nyu_toolbox24", sets=[bad])
    norms = [FusedBatchNormalization(name="a"), FusedBatchNormalization(name="b")]
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 1), *norms])
    loss = build_loss(config)
    for replicas, want in ((1, 2), (2, 1)):
        apply_batch_groups(model, loss, config, replicas)
        assert [n.batch_groups for n in norms] == [want, want] and loss.batch_groups == want
    apply_batch_groups(model, loss, recipes.resolve_config("bts_nyu"), 1)
    assert [n.batch_groups for n in norms] == [1, 1] and loss.batch_groups == 1
    keras_model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.BatchNormalization(name="plain")])
    with pytest.raises(ConfigError, match="plain is a Keras BatchNormalization"):
        apply_batch_groups(keras_model, loss, config, 1)


def test_hqmd_plan_is_300k_steps_and_29_decays_on_any_dataset():
    from hqdepth.training.trainer import Plan

    config = recipes.get_recipe("hqmd_plus_full")
    for samples in (50688, 120000, int(RNG.integers(2000, 200000))):  # DenseDepth's list, HQMDE's, any
        plan = Plan(config, samples, replicas=1)
        assert plan.total_steps == 300000 and plan.steps_per_epoch == samples // 8
        text = plan.describe(config)
        assert "300000 optimizer steps (train.total_steps)" in text
        assert f"{300000 / (samples // 8):.4g} epochs of {samples} samples" in text
        last = float(text.split("at the first step, ")[1].split(" at the last")[0])
        assert math.isclose(last, 1e-4 * 0.9 ** 29, rel_tol=1e-3)  # 4.71e-6
    quick = Plan(recipes.resolve_config("hqmd_plus_full", sets=["train.max_steps=7"]), 800, replicas=1)
    assert quick.total_steps == 7
    # BTS stays in epochs, counted as its DataLoader counts them (the last partial batch is a step): 50 x 6058.
    by_epochs = Plan(recipes.resolve_config("bts_nyu"), 24231, replicas=1)
    assert by_epochs.steps_per_epoch == 6058 and by_epochs.total_steps == 50 * 6058
    floor = Plan(recipes.resolve_config("bts_nyu", sets=["train.epoch_steps=floor"]), 24231, replicas=1)
    assert floor.steps_per_epoch == 6057
    assert Plan(recipes.resolve_config("mrpan_nyu"), 50688 + 3, replicas=1).steps_per_epoch == 12673
    with pytest.raises(ConfigError, match="epoch_steps"):
        recipes.resolve_config("bts_nyu", sets=["train.epoch_steps=round"])


def test_a_new_augmentation_starts_from_its_own_options():
    config = recipes.resolve_config("hqmd_plus_full", sets=["data.augmentation=none"])
    assert config["data"]["augmentation_options"] == {}
    paper = recipes.resolve_config("hqmd_plus_full", sets=["data.augmentation_options.max_angle=5.0"])
    assert paper["data"]["augmentation"] == "hqmd" and paper["data"]["augmentation_options"] == {"max_angle": 5.0}
    kitti = recipes.get_recipe("bts_kitti")  # same augmentation as its base: options merge
    assert kitti["data"]["augmentation_options"] == {"dataset": "kitti"}


def test_float32_precision_turns_tf32_off_unless_asked():
    """`train.tf32` null: a float32 run multiplies in float32 on Ampere+ GPUs too (TensorFlow's default would use
    TF32), a mixed one keeps TensorFlow's default; true / false as given; anything else is refused."""
    import keras
    import tensorflow as tf

    from hqdepth.training.trainer import apply_precision

    before = tf.config.experimental.tensor_float_32_execution_enabled()
    try:
        for sets, want in ((["train.precision=float32"], ("float32", False)),
                           (["train.precision=mixed_bfloat16"], ("mixed_bfloat16", True)),
                           (["train.precision=float32", "train.tf32=true"], ("float32", True)),
                           (["train.precision=mixed_float16", "train.tf32=false"], ("mixed_float16", False))):
            assert apply_precision(recipes.resolve_config("hqmd_plus_full", sets=sets)) == want, sets
            assert tf.config.experimental.tensor_float_32_execution_enabled() is want[1]
            assert keras.config.dtype_policy().name == want[0]
        assert recipes.resolve_config("hqmd_plus_full")["train"]["tf32"] is None
        with pytest.raises(ConfigError, match="train.tf32='fast' must be true, false or null"):
            recipes.resolve_config("hqmd_plus_full", sets=["train.tf32=fast"])
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(before)


def test_the_logged_learning_rate_is_the_one_of_the_step_just_taken():
    """After k optimizer steps the progress line and TensorBoard show the rate step k used, schedule(k - 1) (the
    optimizer's own `learning_rate` is already the next step's): BTS's polynomial decay over 10 steps."""
    from hqdepth.training.callbacks import learning_rate

    schedule = build_schedule("polynomial", 1e-4, {"end_learning_rate": 1e-5, "power": 0.9}, steps_per_epoch=10,
                              total_steps=10)
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    for taken in (1, 5, 10):
        optimizer.iterations.assign(taken)
        want = 1e-4 * (1 - (taken - 1) / 10) ** 0.9 + 1e-5 * (1 - (1 - (taken - 1) / 10) ** 0.9)
        assert learning_rate(optimizer) == pytest.approx(want, rel=1e-6), taken
        assert learning_rate(optimizer) != pytest.approx(float(optimizer.learning_rate), rel=1e-6)
    assert learning_rate(keras.optimizers.Adam(learning_rate=3e-4)) == pytest.approx(3e-4)
