"""The training engine end to end on tiny synthetic scenes: fit, TensorBoard, checkpoints, resume after
SIGKILL, two-worker training, mirrored vs single device, bfloat16.

The engine is model-agnostic; these runs use the 0.5 M-parameter `fcn_autoencoder` at 32x32 so that
graph tracing stays short on a 2-core CPU (the HQMD models are exercised by test_models.py).
"""

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

import hqdepth.layers  # noqa: F401  (registers the layers a saved model needs)
from hqdepth.training import recipes
from hqdepth.training.trainer import print_summary, train
from test_strict_json import strict_loads

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
    assert saved["test"]["model"] == "final (model.keras)"  # which weights were tested (best.keras may differ)
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
    assert train_tags["learning_rate"] == list(range(1, 13))  # once per step, validation steps too
    assert train_tags["epoch"] == [3, 6, 9, 12]
    validation_tags = event_tags(out / "logs" / "validation")
    for tag in ("loss", "rmse", "abs_rel", "d1", "l_grad_dr", "depth"):
        assert tag in validation_tags, (tag, sorted(validation_tags))
    assert validation_tags["depth"] == [3, 6, 9, 12]


def test_tensorboard_writes_the_learning_rate_once_per_logged_step(tmp_path):
    """Logged every 2 steps and validated at steps 3 and 4: the training scalars and rate at 3 come with the period's
    end, at 4 with the step's scalars only (once each)."""
    from hqdepth.training.callbacks import TensorBoardLogger

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    model.optimizer.build(model.trainable_variables)
    logger = TensorBoardLogger(tmp_path, every_steps=2)
    logger.set_model(model)
    for step in (3, 4):
        model.optimizer.iterations.assign(step)
        logger.on_train_batch_end(0, {"loss": 1.0})
        logger.on_epoch_end(step - 3, {"loss": 1.0, "val_loss": 2.0})
    logger.on_train_end()
    tags = event_tags(tmp_path / "train")
    assert tags["learning_rate"] == tags["loss"] == tags["epoch"] == [3, 4], tags
    assert event_tags(tmp_path / "validation")["loss"] == [3, 4]


def test_depth_panels_share_one_colour_scale(rng):
    from hqdepth.training.callbacks import depth_panels

    image = rng.uniform(0, 255, (1, 8, 8, 3)).astype(np.float32)
    gt = rng.uniform(1, 5, (1, 8, 8, 1)).astype(np.float32)
    panel = depth_panels(image, gt, gt.copy())[0]
    np.testing.assert_array_equal(panel[:, 8:16], panel[:, 16:24])  # equal depth -> equal colours
    gt[0, 0, 0, 0] = 0.0
    assert (depth_panels(image, gt, gt)[0][0, 8] == 0).all()  # no ground truth -> black
    # A half-size ground truth (the hu recipe's) is shown at the image's size, each value on its 2x2 block.
    half = rng.uniform(1, 5, (1, 4, 4, 1)).astype(np.float32)
    panel = depth_panels(image, half, np.repeat(np.repeat(half, 2, 1), 2, 2))[0]
    np.testing.assert_array_equal(panel[:, 8:16], panel[:, 16:24])


def test_model_init_starts_a_new_run_from_a_finished_runs_weights(finished_run, tmp_path, capsys, monkeypatch):
    """model.init (`--init`): the model is built with a finished run's final weights (the run folder or a .keras
    file) and a run trains on from them, the file read once, before the distribution strategy (a cluster's: once it
    exists, outside its scope); its rerun does not
    need the file any more, nor does a resume, and --overwrite reads it again. The refusal to extend a finished run
    in its own folder says how; another network is refused naming the weights that differ; a diverged model, a
    backbone's .weights.h5 file and missing paths are refused."""
    from hqdepth.cli import main
    from hqdepth.errors import ConfigError
    from hqdepth.training import trainer
    from hqdepth.training.trainer import build_model

    out, config, results = finished_run
    with pytest.raises(ConfigError, match=re.escape(f"a new --out with --init {out} (model.init).")):
        train(config_with("train.max_steps=15"), DATA, out, print_fn=quiet_print)  # raising max_steps there
    final = [np.asarray(w) for w in keras.saving.load_model(out / "model.keras", compile=False).weights]
    random = [np.asarray(w) for w in build_model(config).weights]
    assert max(np.abs(a - b).max() for a, b in zip(final, random)) > 0.05
    for init in (out, out / "model.keras"):
        built = build_model(config_with(f"model.init={init}"))
        assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(final, built.weights)), init
    # `hqdepth train --init FILE`, one SGD step of a tiny rate: the run starts at the finished run's weights
    shutil.copyfile(out / "model.keras", tmp_path / "copy.keras")
    sets = SETS + ["train.max_steps=1", "optimizer.name=sgd", "optimizer.learning_rate=1e-7",
                   "train.test_evaluation=false"]
    command = ["train", "hqmd_plus_full", "--data", DATA, "--out", str(tmp_path / "further"), "--init",
               str(tmp_path / "copy.keras"), "--quiet", *[item for entry in sets for item in ("--set", entry)]]
    reads, read = [], trainer.read_initial_weights
    monkeypatch.setattr(trainer, "read_initial_weights", lambda path: reads.append(path) or read(path))
    strategies, make_strategy = [], trainer.make_strategy
    monkeypatch.setattr(trainer, "make_strategy", lambda name: strategies.append(len(reads)) or make_strategy(name))
    assert main(command) == 0
    assert reads == [tmp_path / "copy.keras"] and strategies == [1], (reads, strategies)  # read once, beforehand
    printed = capsys.readouterr().out
    assert f"initialisation: the weights of {tmp_path / 'copy.keras'} (model.init" in printed, printed
    trained = keras.saving.load_model(tmp_path / "further" / "model.keras", compile=False)
    moved = [np.abs(a - np.asarray(b)).max() for a, b in zip(final, trained.weights) if b.trainable]
    assert max(moved) < 1e-4, max(moved)
    # a cluster (of one worker) reads the file once its strategy exists: reading it before stopped the member with
    # "Collective ops must be configured at program startup"
    from kill_helpers import communicate_all, start_cluster

    cluster = [str(tmp_path / "cluster") if arg == str(tmp_path / "further") else arg for arg in command]
    (process,) = start_cluster(cluster + ["--set", "train.strategy=multiworker"], 1, env())
    (output,) = communicate_all([process], timeout=400)
    assert process.returncode == 0 and "initialisation: the weights of" in output, output[-3000:]
    clustered = keras.saving.load_model(tmp_path / "cluster" / "model.keras", compile=False)
    moved = [np.abs(a - np.asarray(b)).max() for a, b in zip(final, clustered.weights) if b.trainable]
    assert max(moved) < 1e-4, max(moved)
    (tmp_path / "copy.keras").unlink()  # the finished run is reported without it
    assert main(command) == 0 and "holds a finished run; nothing to do" in capsys.readouterr().out
    assert len(reads) == 1
    # what a run into a folder takes over: results of a finished run, its backup;
    # not checkpoints alone (a run killed before its first backup starts again from model.init), nor with --overwrite
    further = tmp_path / "further"
    assert trainer._resumes(further, overwrite=False) and not trainer._resumes(further, overwrite=True)
    (further / "results.json").unlink()
    assert not trainer._resumes(further, overwrite=False)
    for folder, resumes in ((further, True), (further / ".worker-1", False)):  # a worker's: the cluster decides
        (folder / "backup").mkdir(parents=True)
        (folder / "backup" / "training_metadata.json").write_text('{"iterations": 1, "epoch": 0}')
        assert trainer._resumes(further, overwrite=False) == resumes, folder
        shutil.rmtree(folder / "backup")
    shutil.copyfile(out / "model.keras", tmp_path / "copy.keras")
    assert main(command) == 0  # the unfinished folder starts again from model.init, read before the strategy
    assert len(reads) == 2 and strategies == [1, 2], (reads, strategies)
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="head")])
    other.save(tmp_path / "other.keras")
    with pytest.raises(ConfigError, match=r"is not the network this recipe builds: the file lacks 62 of the 62 "
                                          r"weights of the recipe's fcn_autoencoder \(e.g. encoder1_1_conv/kernel.*the "
                                          r"file has 2 weights the model does not \(e.g. head/kernel"):
        build_model(config_with(f"model.init={tmp_path / 'other.keras'}"))
    broken = keras.saving.load_model(out / "model.keras", compile=False)
    broken.weights[3].assign(np.full(broken.weights[3].shape, np.nan, np.float32))
    broken.save(tmp_path / "diverged.keras")
    with pytest.raises(ConfigError, match="1 of its weights are not finite .* diverged"):
        build_model(config_with(f"model.init={tmp_path / 'diverged.keras'}"))
    broken.save_weights(tmp_path / "backbone.weights.h5")
    with pytest.raises(ConfigError, match="expected a .keras model or a run folder .*backbone_weights"):
        build_model(config_with(f"model.init={tmp_path / 'backbone.weights.h5'}"))
    with pytest.raises(ConfigError, match="model.init=.*missing.keras: no such file or folder"):
        build_model(config_with(f"model.init={tmp_path / 'missing.keras'}"))
    with pytest.raises(ConfigError, match="the folder has no model.keras"):
        build_model(config_with(f"model.init={tmp_path}"))


def test_rerun_of_a_finished_run_does_not_retrain_and_a_changed_config_is_refused(finished_run):
    from hqdepth.errors import ConfigError

    out, config, results = finished_run
    files = {name: ((out / name).read_bytes(), (out / name).stat().st_mtime_ns) for name in ("model.keras", "results.json")}
    printed = []
    again = train(config, DATA, out, print_fn=printed.append, verbose=0)
    assert again == json.loads((out / "results.json").read_text())  # the saved results, not a new run's
    assert again["train_seconds_this_session"] == results["train_seconds_this_session"]
    assert any("holds a finished run; nothing to do" in line for line in printed), printed
    assert not any("is not used" in line for line in printed), printed
    printed.clear()  # a rerun naming other data says that it is not used (the results shown are the run's)
    train(config, "synthetic:20?size=32x32", out, print_fn=printed.append, verbose=0)
    assert any(f"It was trained on {DATA}; --data synthetic:20?size=32x32 is not used." in line for line in printed)
    for name, (content, mtime) in files.items():  # a retrain would rewrite both files
        assert (out / name).read_bytes() == content and (out / name).stat().st_mtime_ns == mtime, name
    assert not (out / "backup").exists()
    with pytest.raises(ConfigError, match="another config .*optimizer.learning_rate"):
        train(config_with("train.max_steps=12", "optimizer.learning_rate=5e-4"), DATA, out, print_fn=quiet_print)


def test_a_folder_holding_only_a_config_takes_the_corrected_command(tmp_path):
    """A run stopped by a check before (or at) its first step leaves config.yaml (and logs): the corrected command
    (another config) starts there afresh; once anything was trained (here a backup folder), another config is
    refused."""
    from hqdepth.errors import ConfigError
    from hqdepth.training.trainer import prepare_run_folder

    prepare_run_folder(tmp_path, config_with("train.batch_size=8"))
    (tmp_path / "logs").mkdir()  # what a run that failed at its first step leaves beside its config
    (tmp_path / "metrics.csv").write_text("epoch,loss\n")
    corrected = config_with("train.batch_size=2")
    prepare_run_folder(tmp_path, corrected)
    assert recipes.resolve_config(tmp_path / "config.yaml")["train"]["batch_size"] == 2
    assert not (tmp_path / "logs").exists() and not (tmp_path / "metrics.csv").exists()
    (tmp_path / "backup").mkdir()
    with pytest.raises(ConfigError, match="another config .*train.batch_size"):
        prepare_run_folder(tmp_path, config_with("train.batch_size=8"))


def test_validation_never_asks_for_more_batches_than_the_split_holds():
    from hqdepth.training.trainer import validation_batches

    config = config_with("train.validation_steps=10")
    assert validation_batches(config, 3, 2) == (2, " (all 3 samples; train.validation_steps asks for 10)")
    assert validation_batches(config, 40, 2) == (10, "")
    assert validation_batches(config_with("train.validation_steps=null"), 5, 2) == (2, "")


def h5_arrays(path):
    """{dataset path: array} of a Keras .weights.h5 file (model variables under layers/, optimizer's under optimizer/)."""
    import h5py

    arrays = {}
    with h5py.File(path, "r") as file:
        file.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def test_resume_after_sigkill_restores_weights_optimizer_and_counters(tmp_path):
    out = tmp_path / "run"
    config = config_with("train.checkpoint_every_steps=2", "train.max_steps=9")
    server = fork_server("train", {"config": config, "data": DATA, "out": str(out), "print": True}, tmp_path)
    try:
        pid = server.start(pause_after=4)  # mid-period (periods of 3 steps, backups every 2); the worker waits
        server.expect("paused 4")
        server.kill(pid)
        server.expect(f"exit {pid}")
        state = json.loads((out / "backup" / "training_metadata.json").read_text())
        assert state["iterations"] == 4 and not (out / "results.json").exists()
        backed_up = h5_arrays(out / "backup" / state["weights"])
        import tensorflow as tf

        with tf.summary.create_file_writer(str(out / "logs" / "train")).as_default(step=5):  # logged after the backup
            tf.summary.scalar("loss", 99.0)
        server.start(save_restored=str(tmp_path / "restored.weights.h5"))
        lines = []
        while not lines or not lines[-1].startswith("finished"):
            lines.append(server.expect(""))
        server.expect("exit ")
    finally:
        server.close()
    assert lines[-1] == "finished finished", lines
    assert any("resuming from the backup at step 4 (period 2, step 1 of it)" in line for line in lines), lines
    # Keras' header counts the run's periods, not the segment's (the period resumed is fitted alone, then the rest)
    assert [line for line in lines if line.startswith("keras Epoch")] == ["keras Epoch 2/3", "keras Epoch 3/3"], lines
    assert "restored 4" in lines
    # What the resumed run started from is the backup, every model and optimizer variable of it.
    restored = h5_arrays(tmp_path / "restored.weights.h5")
    assert sorted(restored) == sorted(backed_up)
    for name, array in backed_up.items():
        np.testing.assert_array_equal(restored[name], array, err_msg=name)
    moments = [a for name, a in backed_up.items() if name.startswith("optimizer/") and np.ndim(a) > 0]
    assert moments and all(np.abs(a).max() > 0 for a in moments)  # Adam's m and v after 4 steps
    assert 4 in [int(a) for name, a in backed_up.items() if name.startswith("optimizer/") and np.ndim(a) == 0]

    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "finished" and results["steps"] == 9  # optimizer iterations continued
    assert results["steps_this_session"] == 5
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [(row["epoch"], row["step"]) for row in rows] == [("0", "3"), ("1", "6"), ("2", "9")]  # once each
    steps = event_tags(out / "logs" / "validation")["rmse"]
    assert steps == [3, 6, 9]
    # TensorBoard: each step once, the steps after the backup as the resumed run logged them (before, both)
    assert event_tags(out / "logs" / "train")["loss"] == list(range(1, 10))


def test_two_workers_train_synchronously_with_equal_weights(tmp_path):
    out = tmp_path / "run"
    from kill_helpers import communicate_all, start_cluster

    command = cli("train.max_steps=2", "train.batch_size=2", "train.validation_every_steps=2") + ["--out", str(out)]
    processes = start_cluster(command[3:], 2, env())  # the members choose their ports
    outputs = communicate_all(processes, timeout=400)  # kills both on a timeout
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    assert "multi-worker: 2 replicas, global batch 4" in outputs[0]
    # the chief scores the iBims metrics of the synthetic scenes' exact edges and planes at each validation
    assert "iBims geometric metrics at each validation" in outputs[0]
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 2 and results["replicas"] == 2
    header, row = (out / "metrics.csv").read_text().strip().splitlines()[:2]
    logged = dict(zip(header.split(","), row.split(",")))
    assert all(np.isfinite(float(logged[key])) for key in ("val_dbe_acc", "val_dbe_comp", "val_pe_plan")), logged
    chief = keras.saving.load_model(out / "model.keras", compile=False)
    worker = keras.saving.load_model(out / "model.keras", compile=False)
    worker.load_weights(out / ".worker-1" / "model.weights.h5")
    initial = recipes_model(chief)
    moved = 0
    for a, b, c in zip(chief.weights, worker.weights, initial.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        moved += int(not np.allclose(np.asarray(a), np.asarray(c)))
    assert moved > 0  # the two steps changed the weights


def test_a_cluster_with_a_killed_worker_resumes_from_the_workers_own_backups(tmp_path):
    """Two workers with separate run folders (as on machines without a shared filesystem): the second
    is SIGKILLed after the first validation period, the cluster is restarted with the same commands
    and resumes from the newest step both workers backed up, ending in step with equal weights; then the
    finished cluster is started once more (`assert_a_finished_cluster_rerun_does_nothing`)."""
    from kill_helpers import communicate_all, kill_all, read_until, start_cluster

    sets = ("train.max_steps=4", "train.batch_size=2", "train.validation_every_steps=2", "train.validation_steps=1",
            "train.checkpoint_every_steps=1",  # both workers have backed up step 1 when the chief prints period 1
            "train.log_every_steps=2", "train.image_samples=2", "train.test_evaluation=false")
    commands = [[arg for arg in cli(*sets) if arg != "--quiet"][3:] + ["--out", str(tmp_path / folder)]
                for folder in ("chief", "worker")]
    processes = start_cluster(commands, 2, env())
    try:
        read_until(processes[0], "period 1/2", timeout=400)  # the chief's line after the first period's steps
        processes[1].kill()
        processes[1].wait(timeout=60)
    finally:
        kill_all(processes)  # the chief cannot go on alone
    chief_state = json.loads((tmp_path / "chief" / "backup" / "training_metadata.json").read_text())
    worker_state = json.loads((tmp_path / "worker" / ".worker-1" / "backup" / "training_metadata.json").read_text())
    assert 1 <= min(chief_state["iterations"], worker_state["iterations"]) < 4
    for state in (chief_state, worker_state):  # what a resume checks its --data against
        assert (state["data"], state["train_samples"]) == (DATA, 16), state
    # Step 2 ends period 1: it is backed up after the validation only (the place to resume is unique), else
    # a worker killed between two saves of step 2 resumed validating while the other trained (CI, a collective
    # with different shapes).
    for state in (chief_state, worker_state):
        for entry in [state] + state.get("previous", []):
            assert (entry["epoch"], entry["step_in_epoch"]) == divmod(entry["iterations"], 2), entry
    assert not (tmp_path / "chief" / "results.json").exists()

    processes = start_cluster(commands, 2, env())
    outputs = communicate_all(processes, timeout=400)
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    assert "resuming from the backup at step" in outputs[0], outputs[0][-3000:]
    results = json.loads((tmp_path / "chief" / "results.json").read_text())
    assert results["status"] == "finished" and results["steps"] == 4 and results["steps_this_session"] < 4
    chief = keras.saving.load_model(tmp_path / "chief" / "model.keras", compile=False)
    worker = keras.saving.load_model(tmp_path / "chief" / "model.keras", compile=False)
    worker.load_weights(tmp_path / "worker" / ".worker-1" / "model.weights.h5")
    for a, b in zip(chief.weights, worker.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    epochs = [int(row.split(",")[0]) for row in (tmp_path / "chief" / "metrics.csv").read_text().strip().splitlines()[1:]]
    assert epochs == [0, 1]
    assert not (tmp_path / "worker" / ".worker-1" / "backup").exists()  # removed when finished
    assert_a_finished_cluster_rerun_does_nothing(commands, tmp_path)


def test_a_multiworker_period_backs_up_its_last_step_after_the_validation_only(tmp_path):
    """The multi-worker loop starts each period as `fit` starts an epoch (`begin_period`, with its length): the
    backup of a period's last step is written once, at the period's end, so every worker's backup of a step
    names the same place to resume (period, step in it)."""
    from hqdepth.training.callbacks import RunBackup
    from hqdepth.training.multiworker import begin_period

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.optimizer.build(model.trainable_variables)
    backup = RunBackup(str(tmp_path), save_freq=1, steps_per_epoch=2, keep=2)
    backup.set_model(model)
    begin_period([backup], 0, 2, 2)
    for index in range(2):
        model.optimizer.iterations.assign(index + 1)
        backup.on_train_batch_end(index, {"loss": 1.0})
    state = RunBackup.read_state(tmp_path)
    assert (state["iterations"], state["epoch"], state["step_in_epoch"]) == (1, 0, 1)  # step 2 waits
    backup.on_epoch_end(0, {"loss": 1.0, "val_loss": 1.0})
    state = RunBackup.read_state(tmp_path)
    assert (state["iterations"], state["epoch"], state["step_in_epoch"]) == (2, 1, 0)
    assert [entry["iterations"] for entry in state["previous"]] == [1]


def assert_a_finished_cluster_rerun_does_nothing(commands, tmp_path):
    """The cluster of a finished run (separate run folders) started again with the same commands. Only the
    chief's folder holds results.json; the chief broadcasts "finished" before any training, so both workers
    exit 0 at once (the worker does not train alone and hang in a collective) and no step runs: results.json
    and both workers' weights files are left untouched. Started with a changed config, the chief refuses it
    and every worker ends with the same error status."""
    from kill_helpers import communicate_all, start_cluster

    files = [tmp_path / "chief" / "results.json", tmp_path / "chief" / "model.keras",
             tmp_path / "worker" / ".worker-1" / "model.weights.h5"]
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in files}
    results = json.loads(files[0].read_text())
    assert results["status"] == "finished" and results["steps"] == 4
    assert not (tmp_path / "worker" / "results.json").exists()  # the worker cannot see the chief's

    started = time.time()
    processes = start_cluster(commands, 2, env())
    outputs = communicate_all(processes, timeout=240)  # a worker that trains alone hangs: killed, the test fails
    seconds = time.time() - started
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
        assert re.search(r"period \d+/\d+", output) is None and "resuming" not in output, output[-3000:]
    assert "holds a finished run; nothing to do" in outputs[0], outputs[0][-3000:]
    assert "the chief reports a finished run; nothing to do" in outputs[1], outputs[1][-3000:]
    for path, (content, mtime) in before.items():  # a step on either worker would rewrite its file
        assert path.read_bytes() == content and path.stat().st_mtime_ns == mtime, path
    assert json.loads(files[0].read_text())["steps"] == results["steps"]
    assert not (tmp_path / "worker" / ".worker-1" / "backup").exists()  # nothing started
    assert seconds < 200, seconds  # TensorFlow's start-up and one collective, no training

    changed = [command + ["--set", "optimizer.learning_rate=5e-4"] for command in commands]
    processes = start_cluster(changed, 2, env())
    outputs = communicate_all(processes, timeout=240)  # the chief refuses the config: every worker ends
    assert [process.returncode for process in processes] == [2, 2], [output[-2000:] for output in outputs]
    assert "another config" in outputs[0] and "the chief refused to start the run" in outputs[1], outputs
    for path, (content, mtime) in before.items():
        assert path.read_bytes() == content and path.stat().st_mtime_ns == mtime, path


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
    from hqdepth.training import callbacks, recipes
    from hqdepth.training.trainer import train
    sets = json.loads(sys.argv[1])
    out = sys.argv[2]
    started = {}
    begin = callbacks.RunBackup.on_train_begin

    def recording_begin(self, logs=None):
        # The weights the first step starts from (after the trainer built, restored and compiled the
        # model), each replica's copy of each variable.
        begin(self, logs)
        started["copies"] = [[np.asarray(c) for c in getattr(w.value, "values", (w.value,))] for w in self.model.weights]

    batch_end = callbacks.RunBackup.on_train_batch_end

    def recording_batch_end(self, batch, logs=None):
        batch_end(self, batch, logs)
        if callbacks.iterations(self.model) == 1:
            started["step1"] = [np.asarray(w) for w in self.model.weights]

    callbacks.RunBackup.on_train_begin = recording_begin
    callbacks.RunBackup.on_train_batch_end = recording_batch_end
    arrays = {}
    for strategy, batch in (("mirrored", 2), ("default", 4)):
        config = recipes.resolve_config("hqmd_plus_full", sets=sets + [f"train.strategy={strategy}",
                                                                       f"train.batch_size={batch}"])
        started.clear()
        results = train(config, "%s", f"{out}/{strategy}", print_fn=lambda *a: None, verbose=0)
        assert results["global_batch"] == 4, results
        model = keras.saving.load_model(f"{out}/{strategy}/model.keras", compile=False)
        for i, (copies, step1, final) in enumerate(zip(started["copies"], started["step1"], model.weights)):
            for r, copy in enumerate(copies):
                arrays[f"{strategy}_initial_{i}_replica_{r}"] = copy
            arrays[f"{strategy}_step1_{i}"] = step1
            arrays[f"{strategy}_final_{i}"] = np.asarray(final)
    np.savez(f"{out}/weights.npz", **arrays)
    print("replicas", len(tf.config.list_logical_devices("CPU")))
""" % DATA)


@pytest.mark.parametrize("grouped", [False, True], ids=["synchronized", "batch_groups"])
def test_mirrored_on_two_cpus_matches_one_device(tmp_path, grouped):
    """Two steps on two replicas (MirroredStrategy, 2 logical CPUs, batch 2 each) move the weights as
    two steps on one device with the global batch of 4 do, to float32 rounding. `batch_groups`: with
    train.batch_groups=2 and BerHu on, one device with two groups of 2 (batch norm statistics and the loss per
    group, the moving averages from the first) moves the weights, moving statistics included, as the two
    replicas with their own statistics and losses do: the emulation of DistributedDataParallel is exact.

    Proves: (1) the trainer starts both runs, and both replicas of the mirrored one, from exactly the
    reference weights (`keras.utils.set_random_seed(0)` + `build_model`), recorded by the subprocess
    when training begins (`RunBackup.on_train_begin`), not assumed; (2) the mirrored update equals the
    single-device one to 2e-4 of its size after step 1 and to 3e-2 after step 2, so the replicas'
    gradients are averaged exactly once: summed instead of averaged (x2) or averaged twice (x0.5) is off
    by 100 % / 50 % of the update and fails (checked once by doubling the mirrored run's SGD learning
    rate, a x2 gradient: 0.99998 of the update after step 1).
    """
    # Kept comparable on purpose: source order (a seeded shuffle gives each new iterator a new order,
    # and fit under a strategy opens one more iterator to build the model); SGD, whose update is
    # linear in the gradient (Adam turns rounding noise of near-zero gradients into +-lr steps); only
    # the gradient-magnitude term (BerHu's threshold is a batch statistic, so each replica's differs
    # from the global batch's, as in HQMDE's multi-GPU towers; the direction term is ill-conditioned
    # where the prediction is flat). Two steps: rounding differences grow ~100x per step at random init.
    sets = SETS + ["train.max_steps=2", "train.validation_every_steps=2", "data.shuffle=false",
                   "optimizer.name=sgd", "optimizer.learning_rate=0.01", "loss.options.depth_weight=0.0",
                   "loss.options.grad_direction_weight=0.0", "train.test_evaluation=false", "train.image_samples=0"]
    if grouped:  # per group as per replica: BerHu's batch threshold can be on
        sets += ["train.batch_groups=2", "loss.options.depth_weight=1.0"]
    try:
        done = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, json.dumps(sets), str(tmp_path)], env=env(),
                              capture_output=True, text=True, timeout=400)  # kills the child on a timeout
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"the mirrored run did not end in 400 s; killed. Output:\n{error.stdout!s}") from None
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "replicas 2" in done.stdout
    arrays = np.load(tmp_path / "weights.npz")
    reference = [np.asarray(w) for w in recipes_model(None).weights]
    count = len(reference)
    for strategy, replicas in (("mirrored", 2), ("default", 1)):
        assert f"{strategy}_final_{count - 1}" in arrays.files and f"{strategy}_final_{count}" not in arrays.files
        for i, expected in enumerate(reference):
            for r in range(replicas):
                np.testing.assert_array_equal(arrays[f"{strategy}_initial_{i}_replica_{r}"], expected,
                                              err_msg=f"{strategy} replica {r} starts from other weights ({i})")
    # Measured on a 2-core Xeon (the same each run): 1.2e-5 of the update after step 1 (float32 rounding of
    # another summation order), 8.7e-3 after step 2 (that rounding, amplified by the random-init network);
    # a gradient off by x2 or x0.5 is 1.0 of it.
    for after, tolerance in (("step1", 2e-4), ("final", 3e-2)):
        single = [arrays[f"default_{after}_{i}"] - reference[i] for i in range(count)]
        mirrored = [arrays[f"mirrored_{after}_{i}"] - reference[i] for i in range(count)]
        largest_update = max(np.abs(u).max() for u in single)
        assert largest_update > 1e-3
        difference = max(np.abs(m - u).max() for m, u in zip(mirrored, single))
        print(after, "difference / update", difference / largest_update)
        assert difference < tolerance * largest_update, (after, difference / largest_update, difference, largest_update)


def test_mixed_bfloat16_fit_on_the_cpu(tmp_path):
    config = config_with("train.precision=mixed_bfloat16", "train.max_steps=3", "train.test_evaluation=false")
    results = train(config, DATA, tmp_path / "run", print_fn=quiet_print, verbose=0)
    assert results["status"] == "finished"
    assert np.isfinite(results["final_logs"]["loss"])
    model = keras.saving.load_model(tmp_path / "run" / "model.keras", compile=False)
    assert model.layers[1].dtype_policy.name == "mixed_bfloat16"
    assert model.outputs[0].dtype == "float32"  # the depth head computes in float32


@pytest.mark.slow
def test_mixed_bfloat16_trains_like_float32():
    """benchmarks/bf16_check.py --follow on a short run: hqmd_plus_full from the same weights on the same batches in
    float32 and mixed_bfloat16, each bfloat16 step starting from the float32 run's weights. The losses then agree
    step by step within one step's bfloat16 rounding (8 significant bits: measured 0.01-1.5 %, median 0.15-0.45 %
    over 8 steps with one and two threads; 0.03-1.4 %, median 0.35-0.40 % over the 6 steps run here, 2-core Xeon VM),
    while the loss itself falls by tens of percent (21 % in these 6 steps; steps 7 and 8 did not lower it further and
    cost about 2.6 s each): a step that went wrong (a float32-only op fed bfloat16, a loss computed in bfloat16)
    shows up as a larger gap, and updates lost to rounding as a small bfloat16 update. (Free-running, the two curves
    drift apart chaotically - 1-19 % per step over 8 steps - so they cannot be compared this closely: the benchmark's
    60-step run, `benchmarks/RESULTS.md`, does that.)"""
    import argparse
    import importlib.util

    benchmarks = Path(__file__).resolve().parent.parent / "benchmarks"
    # experiments/ has a `common` module too: let the benchmark scripts import their own, then put things back.
    saved = {name: sys.modules.pop(name) for name in ("common", "cpu_step", "variants") if name in sys.modules}
    sys.path.insert(0, str(benchmarks))
    try:
        spec = importlib.util.spec_from_file_location("bf16_check", benchmarks / "bf16_check.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        args = argparse.Namespace(recipe="hqmd_plus_full", size="33x49", batch=4, steps=6, lr=1e-3, seed=0, follow=True)
        losses, abs_rel, _, update_ratios = module.curves(args)
    finally:
        sys.path.remove(str(benchmarks))
        for name in ("common", "cpu_step", "variants"):
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    assert keras.config.dtype_policy().name == "float32"
    f32, bf16 = (np.asarray(losses[p]) for p in ("float32", "mixed_bfloat16"))
    assert np.isfinite(f32).all() and np.isfinite(bf16).all()
    relative = np.abs(bf16 - f32) / f32
    assert np.median(relative) < 0.02 and relative.max() < 0.05, relative
    assert (f32[0] - f32[-1]) / f32[0] > 0.1  # the run learns: the agreement is not that of two frozen curves
    assert len(update_ratios) == 6 and all(0.9 < r < 1.1 for r in update_ratios), update_ratios  # measured 0.998-1.001
    # (Held-out abs_rel is not compared: after 6 steps the batch norms' moving statistics are still noise.)
    assert set(abs_rel) == {"float32", "mixed_bfloat16"}


# ----------------------------------------------------------------------------------- kill tests
# A fork server (kill_helpers.py) imports TensorFlow once; every restart after a SIGKILL is a fork,
# so a test can afford tens of kills. Kill moments are drawn from HQDEPTH_TEST_SEED (replayable);
# every wait is on a line the worker writes after doing something, never on a fixed sleep.

KILLS = int(os.environ.get("HQDEPTH_KILLS", "24"))


def fork_server(mode, args, tmp_path):
    from kill_helpers import ForkServer

    return ForkServer(mode, args, tmp_path / f"{mode}-server.stderr", env=env())


def read_until_exit(server, pid, saved, begun):
    """The worker's lines up to its exit (the server writes `exit` after the worker is gone, so every
    line the worker wrote comes first): the last cycle begun and the last one saved before the kill."""
    while True:
        line = server.next(timeout=120)
        assert line is not None and not line.startswith("error "), (line, server.stderr())
        kind, _, value = line.partition(" ")
        if kind == "begin":
            begun = int(value)
        elif kind == "saved":
            saved = int(value)
        elif kind == "exit" and int(value.split()[0]) == pid:
            assert value.split()[1] != "0", "the worker ended on its own before the kill landed"
            return saved, begun


def test_a_backup_killed_at_any_moment_of_its_writing_restores_a_complete_one(tmp_path, test_seed):
    """SIGKILL at random moments in and around the backup writing: every restart restores exactly the
    last complete backup (all model and optimizer variables of one cycle, the metadata's step)."""
    rng = np.random.default_rng(test_seed)
    cycles = 4 * KILLS + 10
    server = fork_server("cycles", {"folder": str(tmp_path / "backup"), "cycles": cycles}, tmp_path)
    try:
        saved, begun, kills, durations, outcomes = 0, 0, 0, [], {"before rename": 0, "after rename": 0}
        while True:
            pid = server.start()
            line = server.expect("resumed ")
            step = int(line.split()[1])
            assert line.endswith(" ok"), line
            # The last save reported complete, or the one in flight when the kill came (if its rename happened).
            assert step in (saved, begun), (line, saved, begun)
            if kills:
                outcomes["after rename" if step == begun and begun != saved else "before rename"] += 1
            saved = begun = step
            if kills == KILLS:
                server.expect("done")
                break
            target = step + int(rng.integers(1, 4))  # let a few cycles pass, then kill within one
            while True:
                begun = int(server.expect("begin ").split()[1])
                started = time.perf_counter()
                if begun >= target and durations:  # (the first save is timed, never killed)
                    time.sleep(rng.uniform(0.0, 1.5 * float(np.median(durations))))
                    server.kill(pid)
                    kills += 1
                    break
                saved = int(server.expect("saved ").split()[1])
                durations.append(time.perf_counter() - started)
            saved, begun = read_until_exit(server, pid, saved, begun)
    finally:
        server.close()
    assert kills == KILLS
    left = sorted(p.name for p in (tmp_path / "backup").iterdir())
    assert left == [f"state-{cycles:08d}.weights.h5", "training_metadata.json"], left
    print(f"{KILLS} kills; save {1e3 * np.median(durations):.1f} ms (median); resumed {outcomes}")


KILL_RUN_SETS = [
    "data.input_size=[32, 32]", "train.batch_size=2", "train.max_steps=12", "train.validation_every_steps=4",
    "train.validation_steps=1", "train.checkpoint_every_steps=1", "train.deterministic=true", "train.log_every_steps=1",
    "train.image_samples=0", "train.test_evaluation=false", "evaluation.protocol=custom", "optimizer.learning_rate=1e-3",
]


def test_a_deterministic_run_killed_at_random_moments_ends_equal_to_an_uninterrupted_one(tmp_path, test_seed):
    """`fcn_ssim_mse` (shuffled, augmented: flip + noise) with a backup every step, SIGKILLed at random
    moments (start-up, steps, backups, validation) and rerun each time: it finishes with the weights of
    the same run uninterrupted, and every validation period is logged once."""
    rng = np.random.default_rng(test_seed)
    kills = int(os.environ.get("HQDEPTH_TRAIN_KILLS", "4"))
    config = recipes.resolve_config("fcn_ssim_mse", sets=KILL_RUN_SETS)
    server = fork_server("train", {"config": config, "data": "synthetic:16?size=32x32"}, tmp_path)
    try:
        server.start(out=str(tmp_path / "reference"))
        step_times, last, started = [], None, time.perf_counter()
        while True:  # the reference run also measures how long a step takes
            line = server.expect("")
            if line.startswith("saved "):
                now = time.perf_counter()
                if last is not None:
                    step_times.append(now - last)
                last = now
            if line.startswith("finished"):
                assert line == "finished finished", line
                break
        server.expect("exit ")
        step = float(np.median(step_times))
        saved = begun = 0
        for kill in range(kills):
            pid = server.start(out=str(tmp_path / "run"))
            target = min(saved + int(rng.integers(1, 4)), 11)
            while saved < target:
                kind, _, value = server.expect("").partition(" ")
                if kind in ("begin", "saved"):
                    saved = int(value) if kind == "saved" else saved
                    begun = int(value) if kind == "begin" else begun
            time.sleep(rng.uniform(0.0, 1.5 * step))
            server.kill(pid)
            saved, begun = read_until_exit(server, pid, saved, begun)
        server.start(out=str(tmp_path / "run"))
        assert server.expect("finished") == "finished finished"
        server.expect("exit ")
    finally:
        server.close()
    print(f"{kills} kills, {time.perf_counter() - started:.0f} s, step {1e3 * step:.0f} ms")
    reference = keras.saving.load_model(tmp_path / "reference" / "model.keras", compile=False)
    resumed = keras.saving.load_model(tmp_path / "run" / "model.keras", compile=False)
    top = max(float(np.abs(np.asarray(w)).max()) for w in reference.weights)
    difference = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                     for a, b in zip(reference.weights, resumed.weights))
    assert difference <= 1e-6 * top, difference / top
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "finished" and results["steps"] == 12
    epochs = [int(row.split(",")[0]) for row in (tmp_path / "run" / "metrics.csv").read_text().strip().splitlines()[1:]]
    assert epochs == [0, 1, 2]


def test_a_loss_that_becomes_nan_stops_the_run_with_that_status(tmp_path, monkeypatch):
    """TerminateOnNaN: a NaN weight (the model's last) makes the first loss NaN; the run stops there, says so in
    results.json, and backs up no non-finite state."""
    from hqdepth.training import trainer

    build = trainer.build_model

    def with_a_nan(*args, **kwargs):
        model = build(*args, **kwargs)
        model.trainable_weights[-1].assign(np.full(model.trainable_weights[-1].shape, np.nan))
        return model

    monkeypatch.setattr(trainer, "build_model", with_a_nan)
    config = config_with("train.max_steps=9", "train.checkpoint_every_steps=1", "train.test_evaluation=false",
                         "train.image_samples=0")
    results = train(config, DATA, tmp_path / "run", print_fn=quiet_print, verbose=0)
    assert results["status"] == "stopped: loss became NaN", results["status"]
    assert results["steps"] < 9 and results["final_logs"]["loss"] is None  # NaN, null in strict JSON
    assert strict_loads((tmp_path / "run" / "results.json").read_text()) == results
    printed = []
    print_summary(results, print_fn=printed.append)  # also what a rerun prints from results.json
    assert "last logs    loss n/a" in "\n".join(printed), printed
    assert not (tmp_path / "run" / "backup" / "training_metadata.json").exists()  # nothing finite to keep


def test_jit_compiled_training_matches_the_plain_step(tmp_path):
    """--jit-compile (train.jit_compile): XLA compiles the step; two SGD steps end within float rounding
    of the same run without XLA, so the compiled step computes the same gradient."""
    sets = ("train.max_steps=2", "train.validation_every_steps=2", "train.test_evaluation=false", "train.image_samples=0",
            "optimizer.name=sgd", "optimizer.learning_rate=0.01", "data.shuffle=false")
    weights = {}
    for jit in (False, True):
        config = config_with(*sets, f"train.jit_compile={str(jit).lower()}")
        results = train(config, DATA, tmp_path / f"jit-{jit}", print_fn=quiet_print, verbose=0)
        assert results["status"] == "finished" and results["steps"] == 2
        model = keras.saving.load_model(tmp_path / f"jit-{jit}" / "model.keras", compile=False)
        weights[jit] = [np.asarray(w) for w in model.weights]
        keras.backend.clear_session()
    initial = [np.asarray(w) for w in recipes_model(None).weights]
    update = max(np.abs(a - i).max() for a, i in zip(weights[False], initial))
    difference = max(np.abs(a - b).max() for a, b in zip(weights[False], weights[True]))
    assert update > 1e-4 and difference < 0.01 * update, (difference, update)


def write_pairs(folder, count, bad):
    """`count` 32x32 PNG pairs and a BTS list; the depth of pair `bad` (an index, or several) is a truncated PNG."""
    from png_encoder import png_bytes

    rng = np.random.default_rng(5)
    lines = []
    for i in range(count):
        depth = png_bytes(rng.integers(500, 9000, (32, 32), dtype=np.uint16))
        (folder / f"rgb{i}.png").write_bytes(png_bytes(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)))
        (folder / f"depth{i}.png").write_bytes(depth[: len(depth) // 2] if i in np.atleast_1d(bad) else depth)
        lines.append(f"rgb{i}.png depth{i}.png 518.8579")
    (folder / "train.txt").write_text("\n".join(lines) + "\n")
    return f"list:{folder}/train.txt@{folder}?dataset=nyu"


def test_a_corrupt_sample_mid_epoch_stops_the_run_or_is_counted_with_skip_bad(tmp_path):
    from hqdepth.errors import ConfigError, DataError

    spec = write_pairs(tmp_path, 16, bad=9)
    sets = ("data.shuffle=false", "train.max_steps=4", "train.validation_every_steps=4", "train.checkpoint_every_steps=1",
            "train.image_samples=0", "data.val_split=train", "evaluation.test_samples=12")
    # Without skip_bad: the step that reads sample 9 (step 3) fails with the DataError naming the file and line (not
    # TensorFlow's wrapper of it); steps 1-2 stay backed up.
    with pytest.raises(DataError, match=r"^\S*train.txt:10: depth \S*depth9.png: ") as error:
        train(config_with(*sets), spec, tmp_path / "strict", print_fn=quiet_print, verbose=0)
    assert "truncated" in str(error.value) or "decode" in str(error.value)
    state = json.loads((tmp_path / "strict" / "backup" / "training_metadata.json").read_text())
    assert 1 <= state["iterations"] <= 2 and not (tmp_path / "strict" / "results.json").exists()
    # Resuming it on other training data (another sample count) is refused, naming both.
    other = tmp_path / "other"
    other.mkdir()
    other_spec = write_pairs(other, 12, bad=None)
    refusal = r"written training on list:\S*/train.txt\S* \(16 samples\); --data .* has 12"
    with pytest.raises(ConfigError, match=refusal):
        train(config_with(*sets), other_spec, tmp_path / "strict", print_fn=quiet_print, verbose=0)
    # With skip_bad: the run finishes; its results count the skipped sample, naming it, and so does the test
    # evaluation of its first 12 samples (the bad one among them), which also says the list is the training list.
    printed = []
    results = train(config_with(*sets, "data.skip_bad=true"), spec, tmp_path / "lenient", print_fn=printed.append,
                    verbose=0)
    assert results["status"] == "finished" and results["steps"] == 4
    skipped = results["skipped_bad_records_this_session"]
    assert skipped["count"] == 1 and skipped["reads"] >= 1 and "depth9.png" in skipped["first"][0], skipped
    assert results["test"]["count"] == 11 and results["test"]["skipped"] == 1
    assert results["test"]["warning"].startswith("12 of the 12 test samples")
    assert any(line.startswith("  warning: 16 of the 16 validation samples") for line in printed), printed
    # 3 bad samples of 8: validation (all full batches: 2) finds one good batch and ends there, without Keras'
    # "Your input ran out of data; interrupting training"; the bad ones are counted once each
    (tmp_path / "three_bad").mkdir()
    spec = write_pairs(tmp_path / "three_bad", 8, bad=(1, 2, 5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = train(config_with(*sets, "data.skip_bad=true", "train.validation_steps=null",
                                    "train.test_evaluation=false"), spec, tmp_path / "three", print_fn=quiet_print,
                        verbose=0)
    assert results["status"] == "finished" and results["skipped_bad_records_this_session"]["count"] == 3
    assert not [str(w.message) for w in caught if "ran out of data" in str(w.message)]


def test_trimming_the_event_files_keeps_other_writers_and_the_steps_up_to_the_backup(tmp_path):
    """`trim_event_files(logs, step)`: the run's train/validation summaries after `step` go (0: a run started again
    before its first backup), a user's own writer elsewhere under logs/ is untouched, a rewrite's leftover goes."""
    import tensorflow as tf

    from hqdepth.training.callbacks import trim_event_files

    for folder, steps in (("train", range(1, 6)), ("validation", (3,)), ("mine", (9,))):
        with tf.summary.create_file_writer(str(tmp_path / folder)).as_default():
            for step in steps:
                tf.summary.scalar("loss", float(step), step=step)
    (tmp_path / "train" / ".events.out.tfevents.1.tmp-7").write_bytes(b"half a rewrite")
    trim_event_files(tmp_path, 3)
    assert event_tags(tmp_path / "train")["loss"] == [1, 2, 3] and event_tags(tmp_path / "validation")["loss"] == [3]
    assert not list((tmp_path / "train").glob(".*tmp-*"))
    trim_event_files(tmp_path, 0)
    assert event_tags(tmp_path / "train") == {} and event_tags(tmp_path / "mine")["loss"] == [9]


def test_a_monitor_the_run_never_logs_is_refused(tmp_path):
    """`train.monitor=val_foo` trained without a word and chose no best.keras; it is refused before the first step,
    naming what the run logs. The geometric metrics count where the validation data carries edges and planes."""
    from hqdepth.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train.monitor='val_foo' is not logged by this run; it logs val_loss, "
                                          r".*val_rmse.*val_dbe_acc"):
        train(config_with("train.monitor=val_foo"), DATA, tmp_path / "run", print_fn=quiet_print, verbose=0)
    assert not (tmp_path / "run" / "backup").exists()
    # a model of several outputs logs each output's loss (MRPAN: depth_h2_loss ...); a run that does not validate
    # is not checked
    from types import SimpleNamespace

    from hqdepth.training.trainer import check_monitor

    several = SimpleNamespace(output_names=["depth_h2", "depth_h4"])
    check_monitor(config_with("train.monitor=val_depth_h4_loss"), several, [], None)
    with pytest.raises(ConfigError, match="val_depth_h8_loss"):
        check_monitor(config_with("train.monitor=val_depth_h8_loss"), several, [], None)
    check_monitor(config_with("train.monitor=val_foo"), several, [], None, validates=False)


def test_a_run_stopped_during_its_test_evaluation_finishes_on_rerun_with_its_last_logs(tmp_path, monkeypatch):
    """Killed after its last backup (here: during the test evaluation), the rerun has no step left: it says so, and
    its results.json carries the last logged metrics (final_logs was {}; the resume line said "period 2" of 1).
    The training scalars of a run shorter than log_every_steps reach TensorBoard at the end of its period."""
    from hqdepth.training import trainer

    config = config_with("train.max_steps=3", "train.log_every_steps=10")

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "evaluate_in_memory", stopped)
        with pytest.raises(KeyboardInterrupt):
            train(config, DATA, tmp_path / "run", print_fn=quiet_print, verbose=0)
    assert not (tmp_path / "run" / "results.json").exists() and (tmp_path / "run" / "backup").is_dir()
    printed = []
    results = train(config, DATA, tmp_path / "run", print_fn=printed.append, verbose=0)
    assert "  resuming from the backup at step 3 (every period trained: the run stopped before it finished)" in printed
    last = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))[-1]
    assert results["status"] == "finished" and results["steps_this_session"] == 0
    assert results["final_logs"]["val_rmse"] == pytest.approx(float(last["val_rmse"])) and "step" not in results[
        "final_logs"]
    tags = event_tags(tmp_path / "run" / "logs" / "train")
    assert tags["loss"] == tags["learning_rate"] == [3], tags
