"""Callbacks of a training run: TensorBoard scalars and images, checkpoints, resumable backup, progress.

Steps on every x-axis are optimizer iterations, so a resumed run continues its curves where the
interrupted one stopped.
"""

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from hqdepth.predict import colorize

log = logging.getLogger("hqdepth")


def learning_rate(optimizer):
    """The rate of the step just taken, as a float: a schedule evaluated at iterations - 1, since the optimizer's
    `learning_rate` is already the next step's (after step k of a run the logs show the rate step k used, as the
    plan line's "at the last step")."""
    schedule = getattr(optimizer, "_learning_rate", None)
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        step = max(int(keras.ops.convert_to_numpy(optimizer.iterations)) - 1, 0)
        return float(keras.ops.convert_to_numpy(schedule(step)))
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def iterations(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def depth_panels(images, gts, preds):
    """uint8 (N, H, 3W, 3) rows of RGB | ground truth | prediction; GT and prediction share a colour scale.

    The scale of each row runs from 0 to the 99th percentile of its valid ground truth (or of the
    prediction when no pixel is valid); black marks pixels without ground truth. Maps of another size than
    the image (the `hu` recipe's half-size training depth) are shown at the image's size (nearest).
    """
    from hqdepth.resample import resize_nearest_pil

    rows = []
    for image, gt, pred in zip(images, gts, preds):
        gt, pred = (m[..., 0] if m.shape[:2] == image.shape[:2] else resize_nearest_pil(m[..., 0], *image.shape[:2])
                    for m in (np.asarray(gt), np.asarray(pred)))
        valid = np.isfinite(gt) & (gt > 0)
        top = np.percentile(gt[valid], 99) if valid.any() else np.percentile(pred, 99)
        top = max(float(top), 1e-6)
        gt_rgb = colorize(np.where(valid, gt, 0.0), value_range=(0.0, top))
        gt_rgb[~valid] = 0
        rows.append(np.concatenate([np.clip(image, 0, 255).astype(np.uint8), gt_rgb, colorize(pred, value_range=(0.0, top))],
                                   axis=1))
    return np.stack(rows)


class TensorBoardLogger(keras.callbacks.Callback):
    """Scalars for every logged loss term and metric plus the learning rate, and depth images.

    Training scalars go to `log_dir/train` every `every_steps` optimizer steps and at the end of each validation
    period (a run shorter than `every_steps` still gets its curve), validation scalars
    (logs keys `val_*`, written without the prefix so both runs share a tag) to `log_dir/validation`
    at each validation, and `validation/depth` images: RGB | ground truth | prediction for fixed
    validation samples (`images`: the model's inputs, an array or (images, focals); `depths`). The
    prediction is the model's final depth (`hqdepth.models.depth_model`: the finest map of a
    deep-supervision model, at the input size). Only the chief writes (`enabled`).
    """

    def __init__(self, log_dir, images=None, depths=None, every_steps=10, enabled=True):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.images, self.depths = images, depths
        self.every_steps = max(int(every_steps), 1)
        self.enabled = enabled
        self._writers = {}
        self._view = None  # (model, its inference view)

    def _writer(self, name):
        import tensorflow as tf

        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(str(self.log_dir / name))
        return self._writers[name]

    def write_scalars(self, name, values, step):
        import tensorflow as tf

        if not self.enabled:
            return
        with self._writer(name).as_default(step=step):
            for key, value in values.items():
                if isinstance(value, (int, float, np.floating, np.integer)) or np.ndim(value) == 0:
                    tf.summary.scalar(key, float(value))

    def write_images(self, step):
        import tensorflow as tf

        from hqdepth.models import depth_model

        if not self.enabled or self.images is None:
            return
        if self._view is None or self._view[0] is not self.model:
            self._view = (self.model, depth_model(self.model))
        rgb = self.images[0] if isinstance(self.images, tuple) else self.images
        preds = np.asarray(keras.ops.convert_to_numpy(self._view[1](self.images, training=False)), dtype=np.float32)
        with self._writer("validation").as_default(step=step):
            tf.summary.image("depth", depth_panels(rgb, self.depths, preds), max_outputs=len(rgb))

    def on_train_batch_end(self, batch, logs=None):
        step = iterations(self.model)
        if step % self.every_steps == 0 and logs:
            values = {k: v for k, v in logs.items() if not k.startswith("val_")}
            values["learning_rate"] = learning_rate(self.model.optimizer)
            self.write_scalars("train", values, step)

    def on_epoch_end(self, epoch, logs=None):
        step = iterations(self.model)
        validation = {k[4:]: v for k, v in (logs or {}).items() if k.startswith("val_")}
        if validation:
            self.write_scalars("validation", validation, step)
        values = {"epoch": epoch + 1}
        if step % self.every_steps:  # not written by on_train_batch_end: the period's training scalars end here
            values.update({k: v for k, v in (logs or {}).items() if not k.startswith("val_")})
            values["learning_rate"] = learning_rate(self.model.optimizer)
        self.write_scalars("train", values, step)
        self.write_images(step)
        self.flush()

    def flush(self):
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        self.flush()


class RunCheckpoints(keras.callbacks.Callback):
    """`latest.keras` every `every_steps` steps and after each validation; `best.keras` when `monitor` improves.

    The best value so far is kept in `checkpoints/best.json`, so a resumed run compares against it.
    """

    def __init__(self, folder, monitor="val_rmse", mode="min", every_steps=None, enabled=True):
        super().__init__()
        self.folder = Path(folder)
        self.monitor, self.mode = monitor, mode
        self.every_steps = every_steps
        self.enabled = enabled
        self.best_path = self.folder / "best.keras"
        self.latest_path = self.folder / "latest.keras"
        self.state_path = self.folder / "best.json"
        self.best = None
        if self.state_path.is_file():
            self.best = json.loads(self.state_path.read_text()).get("value")

    def _save(self, path):
        if self.enabled:
            self.folder.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(path.stem + ".tmp.keras")
            self.model.save(temporary)
            temporary.replace(path)  # a kill during saving never leaves a truncated checkpoint

    def on_train_batch_end(self, batch, logs=None):
        step = iterations(self.model)
        if self.every_steps and step % self.every_steps == 0:
            self._save(self.latest_path)
            self._latest_step = step

    def on_epoch_end(self, epoch, logs=None):
        if getattr(self, "_latest_step", None) != iterations(self.model):  # not saved at this step already
            self._save(self.latest_path)
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        value = float(value)
        better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        if better:
            self.best = value
            if self.enabled and self.latest_path.is_file():
                # latest.keras was written from these very weights just above: copy it (a second
                # serialisation of model and optimizer costs seconds per validation on a CPU).
                temporary = self.best_path.with_name(self.best_path.stem + ".tmp.keras")
                shutil.copyfile(self.latest_path, temporary)
                temporary.replace(self.best_path)
            else:
                self._save(self.best_path)
            if self.enabled:
                write_atomically(self.state_path, json.dumps({"monitor": self.monitor, "value": value, "epoch": epoch + 1,
                                                              "step": iterations(self.model)}))


def write_atomically(path, data, fsync=True):
    """Write `data` (str or bytes) to `path` through a temporary file in the same folder and `os.replace`.

    A reader sees the old file or the new one, never a partial one, whatever moment the writer is
    killed at (SIGKILL, pre-emption); with `fsync` the data also reaches the disk before the rename,
    so a power loss cannot leave a renamed but empty file.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "wb") as file:
        file.write(data.encode("utf-8") if isinstance(data, str) else data)
        if fsync:
            file.flush()
            os.fsync(file.fileno())
    os.replace(temporary, path)
    if fsync:
        _fsync_folder(path.parent)


def _fsync_folder(folder):
    """Make a rename in `folder` durable (no-op where folders cannot be opened, e.g. Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _fsync_file(path):
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def trim_metrics_csv(path, epochs):
    """Keep the header and the rows of the first `epochs` epochs of a CSVLogger file (atomically).

    A run killed after it logged a validation but before the backup of that epoch redoes the epoch
    when resumed; trimming the rows the backup does not cover keeps one row per validation period."""
    path = Path(path)
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    if not lines:
        return
    kept = [lines[0]] + [line for line in lines[1:] if line.split(",", 1)[0].strip().isdigit()
                         and int(line.split(",", 1)[0]) < epochs]
    if len(kept) != len(lines):
        write_atomically(path, "".join(kept))


def trim_event_files(log_dir, step):
    """Drop the summaries after `step` from the run's TensorBoard event files (`log_dir`/train and /validation, each
    file rewritten atomically; a record cut short by a kill goes too): a run resumed from its backup at `step` (0:
    started again before its first backup) logs those steps again, and TensorBoard would show both, its curves
    jumping back. A file that cannot be read is left as it is, with a warning."""
    import tensorflow as tf

    folders = [Path(log_dir) / name for name in ("train", "validation")]
    for leftover in [path for folder in folders for path in folder.glob(".events.out.tfevents.*.tmp-*")]:
        leftover.unlink()  # a rewrite killed before its rename
    for path in sorted(path for folder in folders for path in folder.glob("events.out.tfevents.*")):
        kept, changed = [], False
        try:
            for record in tf.data.TFRecordDataset(str(path)):
                data = record.numpy()
                event = tf.compat.v1.Event.FromString(data)
                if event.step > step and event.HasField("summary"):
                    changed = True
                else:
                    kept.append(data)
        except tf.errors.DataLossError:  # the last record was cut short
            changed = True
        except (tf.errors.OpError, ValueError) as error:
            log.warning("%s: not trimmed to step %d (%s); TensorBoard may show those steps twice.", path, step, error)
            continue
        if changed:
            temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            with tf.io.TFRecordWriter(str(temporary)) as writer:
                for data in kept:
                    writer.write(data)
            os.replace(temporary, path)


class MetricsCSV(keras.callbacks.CSVLogger):
    """`CSVLogger` (append mode) with a `step` column (the optimizer steps done at that validation; periods can
    differ in length, e.g. the last one), whose columns stay aligned when a resumed run logs other metrics than the
    rows already in the file (e.g. `val_dbe_acc` from a setting added since the run started, or `step` in a run
    begun before it existed): before its first row it rewrites the file once, atomically, with the union of the
    columns ("NA" where a row has no value). Keras' logger would append rows of the new columns under the old
    header."""

    def on_epoch_end(self, epoch, logs=None):
        logs = {**(logs or {}), "step": iterations(self.model)}  # a copy: the other callbacks' logs are unchanged
        path = Path(self.filename)
        if self.keys is None and logs and self.append and path.is_file() and path.stat().st_size:
            import csv

            with open(path, newline="") as file:
                rows = list(csv.reader(file, delimiter=self.sep))
            header, keys = rows[0], sorted(logs)
            if header[1:] != keys:
                keys = sorted(set(header[1:]) | set(keys))
                old = [dict(zip(header, row)) for row in rows[1:]]
                lines = [self.sep.join(["epoch"] + keys)] + [
                    self.sep.join([row.get("epoch", "NA")] + [row.get(key, "NA") for key in keys]) for row in old]
                self.csv_file.close()
                write_atomically(path, "\n".join(lines) + "\n")
                self.csv_file = open(path, "a")
                self.keys = keys
        super().on_epoch_end(epoch, logs)


def _finite(logs):
    """False when the logs carry a non-finite training loss (the weights are then not worth keeping)."""
    loss = (logs or {}).get("loss")
    try:
        return loss is None or math.isfinite(float(loss))
    except (TypeError, ValueError):
        return True


class RunBackup(keras.callbacks.BackupAndRestore):
    """Crash-safe `BackupAndRestore`: a kill at any moment resumes from the last complete backup.

    A backup is two files in `backup_dir`:

    - `state-<iterations>.weights.h5`: Keras' `save_weights` of the compiled model, i.e. the model
      variables (batch-norm statistics included) and the optimizer's (its iteration, hence the
      schedule, and its moments). Written under a temporary name, flushed to disk, then renamed.
    - `training_metadata.json`: which weights file is current, the epoch, the step within the epoch,
      the optimizer iteration and `extra` (the trainer records its data seed). Written the same way;
      this rename is the moment the new backup becomes the current one.

    The previous weights file is deleted only after the new metadata is in place, so whatever moment
    the process dies at, the metadata names a complete weights file of the same step. Leftover
    temporary files and unreferenced weights of an interrupted save are removed by the next save.
    (Keras' own callback overwrites `latest.weights.h5` and the JSON in place, and its
    `double_checkpoint` copies files non-atomically; neither survives a kill during the write.)

    Restoring sets the model and optimizer variables only; the trainer starts each `fit` at the
    position the state gives. A backup due at the last step of an epoch is taken at the end of the
    epoch instead (after its validation), so a resumed run never skips a validation.
    The trainer uses `step_in_epoch` to finish an interrupted epoch with the steps it had left and
    `iterations` to place the input pipeline where the backed-up run stopped reading. Steps whose
    training loss is not finite are not backed up (the backup stays at the last finite state). With `keep=k`
    the k-1 backups before the current one stay restorable (`previous` in the metadata; set
    `at_iterations` to restore one): workers of a cluster that were killed between their saves of
    the same step restore the newest step they all have. Give
    `steps_per_epoch` (all epochs but the last have it) when a fit can start mid-epoch: the step
    within the epoch is then computed from the iteration, not from the batch index of that fit. Always saves at
    the end of an epoch; the backup is kept until the run has written its results. With
    `enabled=False` (a worker that is not the chief) nothing is written but the state is restored.
    """

    METADATA = "training_metadata.json"

    def __init__(self, backup_dir, save_freq="epoch", enabled=True, extra=None, steps_per_epoch=None, keep=1):
        super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=False)
        self.enabled = enabled
        self.extra = dict(extra or {})
        self.steps_per_epoch = steps_per_epoch
        self.keep = max(int(keep), 1)
        self.at_iterations = None  # restore this backed-up iteration (None: the latest, 0: none)
        self._step_in_epoch = 0

    def on_train_begin(self, logs=None):
        self._load_model()

    def restore(self, model):
        """Restore the current backup into `model` now (the trainer calls this before its first `fit`, which
        restores again: a run killed after its last backup has no `fit` left to call)."""
        self.set_model(model)
        self._load_model()

    def _load_model(self):
        """Restore weights and optimizer state from the current backup (or the one `at_iterations` names)."""
        if self.at_iterations == 0:
            return
        state = self.read_state(self.backup_dir, self.at_iterations)
        if state is None:
            if self.at_iterations is not None:
                raise FileNotFoundError(f"{self.backup_dir}: no backup of iteration {self.at_iterations}.")
            return
        weights = self.weights_path(self.backup_dir, state)
        if not weights.is_file():
            raise FileNotFoundError(f"{self._training_metadata_path} names {weights}, which does not exist; the "
                                    "backup folder was changed by hand. Remove it to start the run afresh.")
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(str(weights))
        # Not `model._initial_epoch` (Keras' callback sets it, and fit then ignores its `initial_epoch`):
        # the trainer computes where each fit call starts from the state (`read_state`).

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch  # the epoch a save within it belongs to (a resumed fit starts mid-run)
        self._step_in_epoch = 0

    def on_train_batch_end(self, batch, logs=None):
        self._step_in_epoch = batch + 1
        steps = (self.params or {}).get("steps")
        if self._should_save_on_batch(batch) and not (steps and batch + 1 >= steps) and _finite(logs):
            self._save_model()  # the last step of an epoch is backed up at its end, after the validation

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        self._last_batch_seen = 0
        self._step_in_epoch = 0
        if _finite(logs):  # a loss that became NaN (TerminateOnNaN) leaves the last finite backup in place
            self._save_model()

    def _save_model(self):
        if not self.enabled:
            return
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        step = iterations(self.model)
        name = f"state-{step:08d}.weights.h5"
        temporary = folder / f".tmp-{os.getpid()}-{name}"  # Keras wants the .weights.h5 ending
        self.model.save_weights(str(temporary), overwrite=True)
        _fsync_file(temporary)
        os.replace(temporary, folder / name)
        step_in_epoch = self._step_in_epoch
        if step_in_epoch and self.steps_per_epoch:
            # From the iteration: a fit that resumed mid-epoch numbers its batches from 0.
            step_in_epoch = step - self._current_epoch * self.steps_per_epoch
        metadata = {"format": 2, "weights": name, "epoch": self._current_epoch, "step_in_epoch": step_in_epoch,
                    "iterations": step, "saved_at": time.time(), **self.extra}
        if self.keep > 1:  # the states before it stay restorable (workers agree on a common one)
            old = self.read_state(folder) or {}
            history = [old] + old.pop("previous", []) if old else []
            metadata["previous"] = [entry for entry in history if entry["iterations"] != step][:self.keep - 1]
        write_atomically(self._training_metadata_path, json.dumps(metadata))
        kept = {name} | {entry["weights"] for entry in metadata.get("previous", [])}
        for path in folder.iterdir():  # older states and what an interrupted save left behind
            if path.name not in kept and (path.name.startswith(("state-", ".tmp-", f".{self.METADATA}.tmp-"))
                                      or path.name in ("latest.weights.h5", "latest.weights.h5.bkp")):
                path.unlink(missing_ok=True)

    @classmethod
    def weights_path(cls, backup_dir, state):
        """The weights file a backup state refers to (`latest.weights.h5` for backups of older versions)."""
        return Path(backup_dir) / state.get("weights", "latest.weights.h5")

    @classmethod
    def read_state(cls, backup_dir, iterations=None):
        """The current backup's metadata (dict), or None when there is no backup; with `iterations`, the
        kept backup of that iteration (`keep` > 1), or None."""
        path = Path(backup_dir) / cls.METADATA
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        if iterations is None:
            return state
        for entry in [state] + state.get("previous", []):
            if entry["iterations"] == iterations:
                return entry
        return None


class RunProgress(keras.callbacks.Callback):
    """One line per epoch/validation: where the run is, the monitored value and the time left for the run."""

    def __init__(self, total_steps, steps_done=0, monitor="val_rmse", print_fn=print):
        super().__init__()
        self.total_steps = total_steps
        self.steps_at_start = steps_done
        self.monitor = monitor
        self.print_fn = print_fn

    def on_train_begin(self, logs=None):
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        step = iterations(self.model)
        done = step - self.steps_at_start
        elapsed = time.time() - self.start
        left = (self.total_steps - step) * elapsed / done if done > 0 else float("nan")
        value = (logs or {}).get(self.monitor)
        shown = f", {self.monitor} {value:.4f}" if value is not None else ""
        self.print_fn(f"step {step}/{self.total_steps} (epoch {epoch + 1}){shown}, lr "
                      f"{learning_rate(self.model.optimizer):.3g}, run time left ~{format_duration(left)}")


class PeriodProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar with the run's number of validation periods in its "Epoch k/N" header.

    The trainer fits a run in segments (a resumed part of a period, the full periods, a shorter last period), and
    Keras' own logger would number each segment's epochs against that segment's end: "Epoch 3/3" then "Epoch 4/4"
    in a run of four periods whose last is shorter, "Epoch 2/2" in a resume of step 4 of a run of three."""

    def __init__(self, periods):
        super().__init__()
        self.periods = periods

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.periods


def format_duration(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class GeometryValidation(keras.callbacks.Callback):
    """The iBims-1 geometric metrics (`hqdepth.geometry`) of fixed validation samples, at each validation.

    `samples`: [(rgb uint8 (H, W, 3), ground-truth depth (H, W) with 0 = none, focal or None, ground truth)],
    the ground truth being `geometry.ground_truth_from_meta` of the sample's meta (true edges, plane ids +
    normals + intrinsics); the trainer reads them once (`trainer.geometry_validation_samples`). At the end of
    every epoch that validated (its logs hold `val_*` keys) each sample is predicted on its whole frame the
    "resize" way (`model_testing.predict_depth`: resized to the model's input, the prediction back to the
    frame) and scored with a fresh `GeometryEvaluator` (planes of >= 5 % of the frame unless
    `plane_min_pixels` says otherwise); the means go into the logs as `val_dbe_acc`,
    `val_dbe_comp` (samples with edges), `val_pe_plan`, `val_pe_orie` (samples with planes) and
    `val_dde_0`, `val_dde_minus`, `val_dde_plus`, so that the CSV log, TensorBoard, the printed line and
    results.json carry them like the other validation metrics. A metric whose ground truth no sample has
    is not added (nothing is derived from the depth); one that has it but scores nothing (e.g. no plane
    large enough) is NaN. Put it before the callbacks that read the logs.
    """

    def __init__(self, samples, config=None, version="v2", plane_min_pixels=None):
        super().__init__()
        self.samples = list(samples)
        self.config = config
        self.version = version
        self.plane_min_pixels = plane_min_pixels
        self._view = None  # (keras model, its DepthModel)

    def evaluator(self):
        """A fresh `GeometryEvaluator`; `plane_min_pixels` None = the iBims 5 % rule on each sample's frame (the
        official 15,360 pixels on 640x480, the same share of a smaller validation frame)."""
        from hqdepth.geometry import GeometryEvaluator

        return GeometryEvaluator(self.version, plane_min_pixels=self.plane_min_pixels)

    def compute(self, model=None):
        """{metric: mean} over the samples for `model` (default: the model being trained)."""
        from hqdepth.depth_model import DepthModel
        from hqdepth.model_testing import predict_depth
        from hqdepth.resample import resize_bilinear_cv2

        model = model or self.model
        if self._view is None or self._view[0] is not model:
            self._view = (model, DepthModel.from_keras(model, config=self.config))
        depth_model = self._view[1]
        evaluator = self.evaluator()
        for rgb, gt, focal, truth in self.samples:
            prediction = predict_depth(depth_model, rgb, focal=focal)
            if prediction.shape != gt.shape:
                prediction = resize_bilinear_cv2(prediction, *gt.shape)
            evaluator.add(prediction, gt, **truth)
        missing = evaluator.not_computed()
        return {name: float(value) for name, value in evaluator.result().items() if name not in missing}

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not self.samples or not any(key.startswith("val_") for key in logs):
            return
        logs.update({f"val_{name}": value for name, value in self.compute().items()})
