"""The training engine end to end on tiny synthetic scenes: fit, TensorBoard, checkpoints, resume after
SIGKILL, two-worker training, mirrored vs single device, bfloat16.

The engine is model-agnostic; these runs use the 0.5 M-parameter `fcn_autoencoder` at 32x32 so that
graph tracing stays short on a 2-core CPU (the HQMD models are exercised by test_models.py).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import hqdepth.layers  # noqa: F401  (registers the layers a saved model needs)
from hqdepth.training import recipes
from hqdepth.training.trainer import train

DATA = "synthetic:16?size=32x32"
# A small model on the HQMD recipe: the full loss, Adam with the HQMD schedule, validation every 3 steps.
SETS = [
    "model.name=fcn_autoencoder", "model.options.max_depth=10.0",
    "data.input_size=[32, 32]", "data.augmentation=none",
    "train.batch_size=4", "train.max_steps=6", "train.validation_every_steps=3", "train.validation_steps=1",
    "train.log_every_steps=1", "train.image_samples=2",
    "optimizer.learning_rate=1e-3",
    "evaluation.protocol=custom", "evaluation.protocol_options={max_depth: 10.0}", "evaluation.test_samples=2",
]


def quiet_print(*args, **kwargs):
    pass


def config_with(*extra):
    return recipes.resolve_config("hqmd_plus_full", sets=SETS + list(extra))


def cli(*extra):
    args = [sys.executable, "-m", "hqdepth.cli", "train", "hqmd_plus_full", "--data", DATA, "--quiet"]
    for item in SETS + list(extra):
        args += ["--set", item]
    return args


def env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": ""}


def event_tags(folder):
    """{tag: [steps]} of the TensorBoard event files in `folder`, read back with TensorFlow's reader."""
    import tensorflow as tf

    tags = {}
    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = config_with("train.max_steps=12")
    results = train(config, DATA, out, print_fn=quiet_print, verbose=0)
    return out, config, results


def test_fit_lowers_the_loss_and_writes_the_run_folder(finished_run):
    out, config, results = finished_run
    assert results["status"] == "finished" and results["steps"] == 12
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    header = rows[0].split(",")
    losses = [float(row.split(",")[header.index("loss")]) for row in rows[1:]]
    assert len(losses) == 4  # one row per validation period of 3 steps
    assert losses[-1] < 0.8 * losses[0], losses
    for name in ("l_depth", "l_grad_mg", "l_grad_dr", "val_rmse", "val_d1"):
        assert name in header
    for name in ("config.yaml", "model.keras", "results.json", "checkpoints/latest.keras", "checkpoints/best.keras"):
        assert (out / name).is_file(), name
    assert not (out / "backup").exists()  # removed once the run finished
    assert recipes.resolve_config(out / "config.yaml") == config
    saved = json.loads((out / "results.json").read_text())
    assert saved["test"]["count"] == 2 and set(saved["test"]["metrics"]) >= {"rmse", "abs_rel", "d1"}
    best = json.loads((out / "checkpoints" / "best.json").read_text())
    val_rmse = [float(row.split(",")[header.index("val_rmse")]) for row in rows[1:]]
    assert best["value"] == pytest.approx(min(val_rmse), rel=1e-6)
    model = keras.saving.load_model(out / "model.keras", compile=False)
    assert int(model.inputs[0].shape[1]) == 32


def test_tensorboard_has_every_scalar_and_the_images(finished_run):
    out, _, _ = finished_run
    train_tags = event_tags(out / "logs" / "train")
    for tag in ("loss", "l_depth", "l_grad_mg", "l_grad_dr", "l_normal", "rmse", "learning_rate"):
        assert tag in train_tags, (tag, sorted(train_tags))
    assert train_tags["loss"] == list(range(1, 13))  # every step (log_every_steps=1), x-axis = optimizer steps
    validation_tags = event_tags(out / "logs" / "validation")
    for tag in ("loss", "rmse", "abs_rel", "d1", "l_grad_dr", "depth"):
        assert tag in validation_tags, (tag, sorted(validation_tags))
    assert validation_tags["depth"] == [3, 6, 9, 12]


def test_depth_panels_share_one_colour_scale():
    from hqdepth.training.callbacks import depth_panels

    rng = np.random.default_rng()
    image = rng.uniform(0, 255, (1, 8, 8, 3)).astype(np.float32)
    gt = rng.uniform(1, 5, (1, 8, 8, 1)).astype(np.float32)
    panel = depth_panels(image, gt, gt.copy())[0]
    np.testing.assert_array_equal(panel[:, 8:16], panel[:, 16:24])  # equal depth -> equal colours
    gt[0, 0, 0, 0] = 0.0
    assert (depth_panels(image, gt, gt)[0][0, 8] == 0).all()  # no ground truth -> black


def test_rerun_of_a_finished_run_does_not_retrain_and_a_changed_config_is_refused(finished_run):
    from hqdepth.errors import ConfigError

    out, config, results = finished_run
    again = train(config, DATA, out, print_fn=quiet_print, verbose=0)
    assert again["steps"] == results["steps"]
    with pytest.raises(ConfigError, match="another config .*optimizer.learning_rate"):
        train(config_with("train.max_steps=12", "optimizer.learning_rate=5e-4"), DATA, out, print_fn=quiet_print)


def test_resume_after_sigkill_continues_counters(tmp_path):
    out = tmp_path / "run"
    command = cli("train.checkpoint_every_steps=2", "train.max_steps=9") + ["--out", str(out)]
    process = subprocess.Popen(command, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    metadata = out / "backup" / "training_metadata.json"
    deadline = time.time() + 240
    state = None
    while time.time() < deadline and process.poll() is None:
        if metadata.is_file():
            try:
                state = json.loads(metadata.read_text())
            except ValueError:
                state = None
            if state and state["iterations"] >= 4:  # mid-period (periods of 3 steps, backups every 2)
                break
        time.sleep(0.2)
    assert process.poll() is None, process.stdout.read().decode()
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = json.loads(metadata.read_text())
    assert state["iterations"] >= 4 and not (out / "results.json").exists()

    done = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resuming from the backup at step {state['iterations']}" in done.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "finished" and results["steps"] == 9  # optimizer iterations continued
    assert results["steps_this_session"] == 9 - state["iterations"]
    epochs = [int(row.split(",")[0]) for row in (out / "metrics.csv").read_text().strip().splitlines()[1:]]
    assert epochs == [0, 1, 2]  # each validation period logged once across the two processes
    steps = event_tags(out / "logs" / "validation")["rmse"]
    assert steps == [3, 6, 9]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_synchronously_with_equal_weights(tmp_path):
    out = tmp_path / "run"
    ports = free_ports(2)
    command = cli("train.max_steps=2", "train.batch_size=2", "train.validation_every_steps=2") + ["--out", str(out)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": [f"localhost:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(command, env={**env(), "TF_CONFIG": json.dumps(tf_config)},
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=400)[0] for p in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    assert "multi-worker: 2 replicas, global batch 4" in outputs[0]
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 2 and results["replicas"] == 2
    chief = keras.saving.load_model(out / "model.keras", compile=False)
    worker = keras.saving.load_model(out / "model.keras", compile=False)
    worker.load_weights(out / ".worker-1" / "model.weights.h5")
    initial = recipes_model(chief)
    moved = 0
    for a, b, c in zip(chief.weights, worker.weights, initial.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        moved += int(not np.allclose(np.asarray(a), np.asarray(c)))
    assert moved > 0  # the two steps changed the weights


def recipes_model(model):
    """The same architecture freshly initialised with the run's seed (the weights before training)."""
    from hqdepth.models import build_model

    keras.utils.set_random_seed(0)
    return build_model("fcn_autoencoder", input_shape=(32, 32, 3), max_depth=10.0)


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from hqdepth.training import recipes
    from hqdepth.training.trainer import train
    sets = json.loads(sys.argv[1])
    out = sys.argv[2]
    weights = {}
    for strategy, batch in (("mirrored", 2), ("default", 4)):
        config = recipes.resolve_config("hqmd_plus_full", sets=sets + [f"train.strategy={strategy}",
                                                                       f"train.batch_size={batch}"])
        results = train(config, "%s", f"{out}/{strategy}", print_fn=lambda *a: None, verbose=0)
        assert results["global_batch"] == 4, results
        model = keras.saving.load_model(f"{out}/{strategy}/model.keras", compile=False)
        weights[strategy] = [np.asarray(w) for w in model.weights]
    np.savez(f"{out}/weights.npz", *weights["mirrored"], *weights["default"])
    print("replicas", len(tf.config.list_logical_devices("CPU")))
""" % DATA)


def test_mirrored_on_two_cpus_matches_one_device(tmp_path):
    # Kept comparable on purpose: source order (a seeded shuffle gives each new iterator a new order,
    # and fit under a strategy opens one more iterator to build the model); SGD, whose update is
    # linear in the gradient (Adam turns rounding noise of near-zero gradients into +-lr steps); only
    # the gradient-magnitude term (BerHu's threshold is a batch statistic, so each replica's differs
    # from the global batch's, as in HQMDE's multi-GPU towers; the direction term is ill-conditioned
    # where the prediction is flat). Two steps: rounding differences grow ~100x per step at random init.
    sets = SETS + ["train.max_steps=2", "train.validation_every_steps=2", "data.shuffle=false",
                   "optimizer.name=sgd", "optimizer.learning_rate=0.01", "loss.options.depth_weight=0.0",
                   "loss.options.grad_direction_weight=0.0", "train.test_evaluation=false", "train.image_samples=0"]
    done = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, json.dumps(sets), str(tmp_path)], env=env(),
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "replicas 2" in done.stdout
    arrays = np.load(tmp_path / "weights.npz")
    arrays = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    half = len(arrays) // 2
    keras.utils.set_random_seed(0)
    initial = [np.asarray(w) for w in recipes_model(None).weights]
    largest_update = max(np.abs(s - i).max() for s, i in zip(arrays[half:], initial))
    assert largest_update > 1e-3
    # Rounding noise is a small fraction of the update; a wrong gradient scale (x2 / x0.5) is all of it.
    difference = max(np.abs(m - s).max() for m, s in zip(arrays[:half], arrays[half:]))
    assert difference < 0.05 * largest_update, (difference, largest_update)


def test_mixed_bfloat16_fit_on_the_cpu(tmp_path):
    config = config_with("train.precision=mixed_bfloat16", "train.max_steps=3", "train.test_evaluation=false")
    results = train(config, DATA, tmp_path / "run", print_fn=quiet_print, verbose=0)
    assert results["status"] == "finished"
    assert np.isfinite(results["final_logs"]["loss"])
    model = keras.saving.load_model(tmp_path / "run" / "model.keras", compile=False)
    assert model.layers[1].dtype_policy.name == "mixed_bfloat16"
    assert model.outputs[0].dtype == "float32"  # the depth head computes in float32
