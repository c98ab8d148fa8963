"""Training on several machines (`tf.distribute.MultiWorkerMirroredStrategy`) without `model.fit`.

Keras 3's `fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585, open; with TF 2.21
and Keras 3.15: `ValueError: Attempt to convert a value (PerReplica ...)`), while a `tf.function`
step run by `strategy.run` on the same Keras model and optimizer works. This module is that step
plus a loop that drives the same callbacks as `fit` (TensorBoard, checkpoints, CSV, backup and
resume, progress), so a multi-worker run has the same run folder as a single-machine one.

Each worker reads its own shard of the input (`InputContext`); only the chief writes logs,
checkpoints and results; every worker keeps its own backup (the chief's in RUN/backup, worker i's in
RUN/.worker-i/backup), so resuming needs no shared filesystem: the workers may run with run folders
on different machines. A restarted cluster (any worker killed, all rerun with the same commands)
resumes from the newest backed-up step every worker has (each keeps its last two backups, and a
kill can land between two workers' saves of one step); each worker's input continues after the
batches it had consumed. Whether to train at all is the chief's decision (its folder alone holds
results.json), given to every worker in one collective before anything else (`_chief_decision`): a
rerun of a finished run ends on every worker without a step, with or without a shared filesystem.
"""

import shutil
import time
from pathlib import Path

from hqdepth.errors import ConfigError
from hqdepth.training import recipes as recipes_lib
from hqdepth.training.callbacks import RunBackup
from hqdepth.training.trainer import (
    Plan, RunBackupFactory, apply_batch_groups, apply_precision, build_loss, build_model, build_optimizer,
    check_augmentation, check_depth_scale, check_focal_zoom, check_monitor, check_whole_frames, compile_metrics,
    counted, finish_run, finished_run_message, fixed_validation_samples, geometry_validation, kernel_gradients_note,
    load_split, make_callbacks, precision_note, prepare_run_folder, print_shared_splits, print_summary,
    read_model_init, read_results, resuming_line, set_determinism, split_length, validation_batches,
)


def _task_id(strategy):
    resolver = strategy.cluster_resolver
    return f"{resolver.task_type}-{resolver.task_id}"


def train_multiworker(config, data, out, *, val_data=None, test_data=None, overwrite=False, print_fn=print):
    """Train on every worker of the cluster in TF_CONFIG; returns the run's results dict (the chief writes it to
    results.json). On the rerun of a finished run a non-chief worker returns only {"recipe", "status":
    "finished", "run"}: it cannot read the chief's results.json, which may be on another machine."""
    import keras
    import tensorflow as tf

    from hqdepth.training.trainer import is_chief

    # The strategy must exist before any other TensorFlow op runs in this process.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    check_augmentation(config)  # every member alike (importing the augmentations starts TensorFlow)
    chief = is_chief(strategy)
    out = Path(out)
    say = print_fn if chief else (lambda *a, **k: None)
    # Only the chief's folder holds results.json (the workers' may be on other machines): the chief
    # decides whether to train, and tells every worker before anything else runs.
    decision, previous, refusal = _TRAIN, None, None
    if chief:
        try:
            previous = read_results(out)
            if previous and previous.get("status") == "finished" and not overwrite:
                prepare_run_folder(out, config)  # still refuse a different config
                decision = _FINISHED
            else:
                prepare_run_folder(out, config, overwrite=overwrite)
        except Exception as error:  # noqa: BLE001 - re-raised below, once the workers know
            decision, refusal = _REFUSED, error
    decision = _chief_decision(strategy, decision)
    if decision == _REFUSED:
        if refusal is not None:
            raise refusal
        raise ConfigError(f"the chief refused to start the run {out} (its output says why); nothing done here.")
    if decision == _FINISHED:
        if chief:
            say(finished_run_message(out, previous, data))
            print_summary(previous, say)
            return previous
        print_fn(f"{out}: the chief reports a finished run; nothing to do (--overwrite retrains it).")
        return {"recipe": config["name"], "status": "finished", "run": str(out)}  # results.json: in the chief's folder
    worker_out = out if chief else out / f".{_task_id(strategy)}"
    worker_out.mkdir(parents=True, exist_ok=True)

    policy, tf32 = apply_precision(config)
    replicas = strategy.num_replicas_in_sync
    val_data = val_data or data
    plan = Plan(config, split_length(data, config["data"]["train_split"]), replicas)
    val_count = split_length(val_data, config["data"]["val_split"])
    validation_steps, validation_note = validation_batches(config, val_count, plan.global_batch)
    say(f"run {out}: {recipes_lib.summary_line(config)}")
    say(f"  multi-worker: {replicas} replicas, global batch {plan.global_batch}, "
        f"precision {precision_note(policy, tf32)}{kernel_gradients_note(config)}; "
        f"{plan.total_steps} steps, validation every {counted(plan.period, 'step')} on "
        f"{counted(validation_steps, 'batch')}{validation_note}")
    if chief:
        print_shared_splits(config, data, val_data, test_data, say)
        check_depth_scale(config, data, say)
        check_focal_zoom(config, say)
    if config["train"]["seed"] is not None:
        keras.utils.set_random_seed(int(config["train"]["seed"]))
    set_determinism(config)
    backup = RunBackupFactory(worker_out, config, data, plan.train_samples)
    done = _agree_on_backup(strategy, backup.dir)
    state = RunBackup.read_state(backup.dir, done) if done else None
    backup.check_data(state, say)
    if done:
        _check_same_position(strategy, backup.dir, state)
    # model.init: every member reads the file, outside the strategy's scope (a resume restores its backup instead)
    initial_weights = read_model_init(config, say) if config["model"].get("init") and not done else None

    def dataset(split, spec, train):
        def make(context):
            # A step takes one batch from each replica: the pipeline's share of the steps done.
            start = done * context.num_replicas_in_sync // context.num_input_pipelines if train else 0
            return load_split(config, spec, split, plan.global_batch, train=train, repeat=True, input_context=context,
                              seed=backup.data_seed if train else None, start_batches=start)

        return strategy.distribute_datasets_from_function(make)

    train_data = dataset(config["data"]["train_split"], data, True)
    val_dist = dataset(config["data"]["val_split"], val_data, False)
    check_whole_frames(config, val_data)
    images, depths = fixed_validation_samples(config, val_data, config["train"]["image_samples"]) if chief else (None,
                                                                                                             None)
    # Every worker scores the iBims metrics (only the chief's reach the logs): with the chief alone doing it, the
    # next validation's collective failed with a shape mismatch between the workers (tests/test_training_runs.py,
    # the killed-worker cluster), as if the chief's collectives had run out of step with the others'.
    geometry = geometry_validation(config, val_data, validation_steps * plan.global_batch, say)
    with strategy.scope():
        # a resume restores the backup, not model.init
        model = build_model(config, initialise=not done, initial_weights=initial_weights)
        initial_weights = None  # the model has them: not kept through training
        loss = build_loss(config)
        apply_batch_groups(model, loss, config, replicas)
        metrics = compile_metrics(loss, config)
        check_monitor(config, model, metrics, geometry, validates=bool(validation_steps))
        model.compile(optimizer=build_optimizer(config, plan.steps_per_epoch, plan.total_steps, model), loss=loss,
                      jit_compile=False)
        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)

    step = DistributedStep(strategy, model, loss, metrics, replicas)
    period, step_in_period = (state["epoch"], state.get("step_in_epoch", 0)) if state else (0, 0)
    if state:
        say(resuming_line(state, plan))
    callbacks = make_callbacks(config, out, plan, images, depths, backup, steps_done=state and state.get("iterations"),
                               chief=chief, print_fn=say)
    if geometry is not None:  # called by hand below, before the period's line, so that it shows val_dbe_* etc.
        geometry.set_model(model)
    if chief:
        from hqdepth.training.callbacks import trim_event_files, trim_metrics_csv

        trim_metrics_csv(out / "metrics.csv", period)
        trim_event_files(out / "logs", done)
    # Every worker backs up (into its own folder), keeping two states, and restores the agreed one.
    callbacks[-1] = backup.callback(period=plan.period, keep=2)
    callbacks[-1].at_iterations = done
    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
    start = time.time()
    history = {}
    iterator = iter(train_data)
    while period < plan.periods and not model.stop_training:
        steps = plan.steps_in(period)
        begin_period(callbacks, period, steps, plan.periods)
        sums = {}
        for index in range(step_in_period, steps):
            _accumulate(sums, step.train(iterator))
            logs = _logs(sums)
            for callback in callbacks:
                callback.on_train_batch_end(index, logs)
            if model.stop_training:
                break
        step_in_period = 0
        val_sums = {}
        if validation_steps:  # every worker alike: the setting is the cluster's
            val_iterator = iter(val_dist)
            for _ in range(validation_steps):
                _accumulate(val_sums, step.evaluate(val_iterator))
        logs = {**_logs(sums), **{f"val_{k}": v for k, v in _logs(val_sums).items()}}
        if geometry is not None:  # first, so that the line below and every callback see val_dbe_* etc.
            geometry.on_epoch_end(period, logs)
        if chief:
            say(f"period {period + 1}/{plan.periods}: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(logs.items())))
        for callback in callbacks:
            callback.on_epoch_end(period, logs)
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        period += 1
    for callback in callbacks:
        callback.on_train_end()
    status = "stopped: loss became NaN" if model.stop_training else "finished"
    results = finish_run(model, config, out, data, test_data, plan, history, status, time.time() - start, say,
                         chief=chief, steps_at_start=(state or {}).get("iterations", 0))
    if status == "finished":
        shutil.rmtree(backup.dir, ignore_errors=True)
    if chief:
        print_summary(results, say)
    else:
        model.save_weights(worker_out / "model.weights.h5")  # lets a user (and the tests) compare replicas
    _barrier(strategy)  # workers leave together: none sees the others' exit as a crash
    return results


_TRAIN, _FINISHED, _REFUSED = 0, 1, 2


def _chief_decision(strategy, decision):
    """The chief's `decision` (train, finished, refused), known to every worker: one collective that
    every worker joins before anything else, so a rerun of a finished run (or one the chief refuses)
    ends on every worker, with or without a shared filesystem, instead of a worker training alone and
    waiting for the chief in a collective. The other workers pass `_TRAIN` (0); the largest value wins."""
    return int(max(_gather(strategy, [float(decision)])))


def _agree_on_backup(strategy, backup_dir):
    """The newest backed-up iteration every worker has (0: start afresh), from each worker's backups.

    A kill can land between two workers' saves of the same step; each keeps its two last backups
    (`RunBackup(keep=2)`), so the newest common one is restorable everywhere."""
    state = RunBackup.read_state(backup_dir)
    mine = [state["iterations"]] + [entry["iterations"] for entry in state.get("previous", [])] if state else []
    agreed = int(min(_gather(strategy, [float(max(mine)) if mine else 0.0])))
    if agreed and agreed not in mine:
        raise FileNotFoundError(f"{backup_dir}: the other workers' newest backup is of step {agreed}, which this "
                                f"worker does not have (it has {mine}); remove every worker's backup to restart.")
    return agreed


def begin_period(callbacks, period, steps, periods):
    """Start a validation period on the callbacks as `fit` starts an epoch, with its length in their `params`:
    RunBackup then takes the backup due at the period's last step at its end, after the validation. (Without
    the length it wrote step N twice, before and after the validation, and workers killed between the two
    resumed at different places: one validating, one training, failing in a collective.)"""
    for callback in callbacks:
        callback.set_params({"epochs": periods, "steps": steps, "verbose": 0})
        callback.on_epoch_begin(period)


def _check_same_position(strategy, backup_dir, state):
    """Stop with a clear error when the workers' backups of the agreed step are at different places of the run
    (period, step in it), instead of failing later in a collective whose shapes differ between the workers."""
    rows = _gather(strategy, [[float(state["epoch"]), float(state.get("step_in_epoch", 0))]])
    positions = {tuple(int(v) for v in row) for row in rows}
    if len(positions) > 1:
        raise RuntimeError(f"{backup_dir}: the workers' backups of step {state['iterations']} are at different places "
                           f"of the run (period, step in it: {sorted(positions)}); remove every worker's backup "
                           "folder to restart the run.")


def _gather(strategy, values):
    """Every worker's `values` (a list, the same length on each), stacked along the first axis in worker
    order, as a NumPy array: one collective that every worker must join."""
    import tensorflow as tf

    mine = tf.constant(values)

    @tf.function
    def gather():
        return strategy.gather(strategy.run(lambda: mine), axis=0)

    return gather().numpy()


def _barrier(strategy):
    import tensorflow as tf

    @tf.function
    def all_reduce():
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)

    all_reduce()


def _accumulate(sums, values):
    for key, value in values.items():
        sums[key] = sums.get(key, 0.0) + float(value)


def _logs(sums):
    """Mean loss terms over steps and per-image metric means from (total, images) sums."""
    logs = {}
    steps = sums.get("_steps", 0.0) or 1.0
    for key, value in sums.items():
        if key.startswith("_"):
            continue
        if key.endswith("/total"):
            name = key[:-6]
            logs[name] = value / max(sums[f"{name}/images"], 1.0)
        elif not key.endswith("/images"):
            logs[key] = value / steps
    return logs


class DistributedStep:
    """One synchronous step on every replica: loss (+ regularisation), gradients, and summed statistics.

    Each replica's loss is its local mean divided by the number of replicas, so the all-reduced
    gradient is the gradient of the global-batch mean, as on one device. Per-image metrics are
    returned as sums (metric total, images) and reduced with SUM, so they equal one device's.
    """

    def __init__(self, strategy, model, loss, metrics, replicas):
        import tensorflow as tf

        self.strategy, self.model, self.loss, self.replicas = strategy, model, loss, replicas
        self.terms = getattr(loss, "term_names", ())
        self.depth_metrics = [m for m in metrics if hasattr(m, "batch_sums")]
        self.train = tf.function(lambda iterator: self._run(iterator, True))
        self.evaluate = tf.function(lambda iterator: self._run(iterator, False))

    def _run(self, iterator, training):
        import tensorflow as tf

        values = self.strategy.run(self._replica_step, args=(next(iterator), training))
        return {key: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                for key, value in values.items()}

    def _replica_step(self, batch, training):
        import tensorflow as tf
        from keras import ops

        x, y = batch
        model, optimizer = self.model, self.model.optimizer
        with tf.GradientTape() as tape:
            pred = model(x, training=training)
            total = self.loss(y, pred)  # the local mean / replicas (Keras losses and losses.scale_for_replicas)
            if model.losses:
                total = total + ops.sum(ops.stack(model.losses)) / self.replicas
            scaled = optimizer.scale_loss(total) if training else total
        if training:
            variables = model.trainable_variables
            optimizer.apply(tape.gradient(scaled, variables), variables)
        values = {"loss": total, "_steps": tf.constant(1.0 / self.replicas)}
        if self.terms:
            for name, value in self.loss.terms(y, pred).items():
                values[name] = ops.cast(value, "float32") / self.replicas
        for metric in self.depth_metrics:
            values[f"{metric.name}/total"], values[f"{metric.name}/images"] = metric.batch_sums(y, pred)
        return values
