"""Callbacks of a training run: TensorBoard scalars and images, checkpoints, resumable backup, progress.

Steps on every x-axis are optimizer iterations, so a resumed run continues its curves where the
interrupted one stopped.
"""

import json
import math
import time
from pathlib import Path

import keras
import numpy as np

from hqdepth.predict import colorize


def learning_rate(optimizer):
    """The optimizer's current rate as a float (schedules evaluated at the current iteration)."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def iterations(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def depth_panels(images, gts, preds):
    """uint8 (N, H, 3W, 3) rows of RGB | ground truth | prediction; GT and prediction share a colour scale.

    The scale of each row runs from 0 to the 99th percentile of its valid ground truth (or of the
    prediction when no pixel is valid); black marks pixels without ground truth.
    """
    rows = []
    for image, gt, pred in zip(images, gts, preds):
        gt, pred = gt[..., 0], pred[..., 0]
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

    Training scalars go to `log_dir/train` every `every_steps` optimizer steps, validation scalars
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
        self.write_scalars("train", {"epoch": epoch + 1, "learning_rate": learning_rate(self.model.optimizer)}, step)
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
        if self.every_steps and iterations(self.model) % self.every_steps == 0:
            self._save(self.latest_path)

    def on_epoch_end(self, epoch, logs=None):
        self._save(self.latest_path)
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        value = float(value)
        better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        if better:
            self.best = value
            self._save(self.best_path)
            if self.enabled:
                self.state_path.write_text(json.dumps({"monitor": self.monitor, "value": value, "epoch": epoch + 1,
                                                       "step": iterations(self.model)}))


class RunBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that also records the step within the epoch and the optimizer iteration.

    Keras restores weights, optimizer state (so the schedule) and the epoch; the trainer uses
    `step_in_epoch` to finish an interrupted epoch with the steps it had left. Always saves at the
    end of an epoch; the backup is kept until the run has written its results.
    """

    def __init__(self, backup_dir, save_freq="epoch", enabled=True):
        super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=False)
        self.enabled = enabled
        self._step_in_epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._step_in_epoch = 0

    def on_train_batch_end(self, batch, logs=None):
        self._step_in_epoch = batch + 1
        super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        self._last_batch_seen = 0
        self._step_in_epoch = 0
        self._save_model()

    def _save_model(self):
        if not self.enabled:
            return
        super()._save_model()
        metadata = {"epoch": self._current_epoch, "step_in_epoch": self._step_in_epoch,
                    "iterations": iterations(self.model), "saved_at": time.time()}
        Path(self._training_metadata_path).write_text(json.dumps(metadata))

    @staticmethod
    def read_state(backup_dir):
        path = Path(backup_dir) / "training_metadata.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text())


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


def format_duration(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
