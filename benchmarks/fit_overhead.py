"""Where the time of a `hqdepth train` step goes outside the compiled step: the same step timed four ways.

    python benchmarks/fit_overhead.py [--recipe hqmd_plus_full] [--size 64x96] [--batch 16] [--steps 12]
                                      [--precision mixed_bfloat16] [--scenes 16000] [--parts onbatch,memory,data,full]

One model is built and compiled as the trainer does it (`hqdepth.training.trainer`: model, loss, optimizer with
its schedule, compiled metrics, variables built before the first step), then each part runs `--steps` timed steps
after a warm-up and reports the median and mean seconds per step:

- `onbatch`: `model.train_on_batch` on one fixed in-memory batch (what `benchmarks/cpu_step.py` times);
- `memory`: `model.fit` on that batch repeated by `tf.data` (the fit loop's own cost), no callbacks;
- `data`: `model.fit` on the synthetic training pipeline the trainer uses (scenes rendered on the fly), no
  callbacks: the difference to `memory` is what rendering costs while the step runs (2 cores are shared);
- `full`: as `data` with the trainer's callbacks (TensorBoard, CSV, checkpoints, backup, progress) in a
  temporary run folder; the checkpoint and backup saves, which happen every `checkpoint_every_steps`, are timed
  separately (`save_latest_s`, `save_backup_s`) and so are one validation and its TensorBoard images.

Per-step times come from a callback that only reads the clock in `on_train_batch_end`. The last line is
`RESULT {json}` (benchmarks/common.py) with the load average at the start and the end.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit  # noqa: E402


def step_clock():
    """A Keras callback that records `time.perf_counter()` at the end of every training batch."""
    import keras

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times, self.cpu = [], []

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter())
            self.cpu.append(time.process_time())

    return Clock()


def summarise(times, warmup, cpu=None):
    """Median/mean of the step intervals after `warmup` steps; with `cpu` (process CPU seconds at the same
    moments) also the median CPU seconds per step, which other jobs on a shared machine hardly change."""
    steps = [b - a for a, b in zip(times[warmup:], times[warmup + 1:])]
    result = {"median_s": statistics.median(steps), "mean_s": statistics.fmean(steps), "steps": len(steps),
              "seconds": [round(s, 4) for s in steps]}
    if cpu is not None:
        result["cpu_median_s"] = statistics.median([b - a for a, b in zip(cpu[warmup:], cpu[warmup + 1:])])
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="hqmd_plus_full")
    parser.add_argument("--size", default="64x96")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--scenes", type=int, default=16000)
    parser.add_argument("--set", action="append", default=[], dest="sets", help="extra recipe override")
    parser.add_argument("--parts", default="onbatch,memory,data,full")
    args = parser.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    from hqdepth.training import recipes, trainer

    load_start = os.getloadavg()[0]
    height, width = (int(v) for v in args.size.split("x"))
    data = f"synthetic:{args.scenes}?size={height}x{width}"
    sets = [f"data.input_size=[{height}, {width}]", f"train.batch_size={args.batch}", "train.max_steps=1000",
            "data.cache=false", "data.augmentation=none", "model.options.bn_momentum=0.9",
            "model.options.freeze=none", "model.options.backbone_weights=none", "evaluation.protocol=custom",
            "evaluation.protocol_options={min_depth: 0.001, max_depth: 10.0}", f"train.precision={args.precision}",
            "train.validation_steps=2", *args.sets]
    config = recipes.resolve_config(args.recipe, sets=sets)
    keras.config.set_dtype_policy(args.precision)
    keras.utils.set_random_seed(0)
    train_ds = trainer.load_split(config, data, "train", args.batch, train=True)
    model = trainer.build_model(config)
    loss = trainer.build_loss(config)
    model.compile(optimizer=trainer.build_optimizer(config, 1000, 1000, model), loss=loss,
                  metrics=trainer.compile_metrics(loss, config))
    trainer.build_before_fit(model, train_ds)

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.batch, height, width, 3)).astype("float32")
    y = rng.uniform(0.5, 9.0, (args.batch, height, width, 1)).astype("float32")
    result = {"recipe": args.recipe, "size": [height, width], "batch": args.batch, "precision": args.precision}
    total = args.steps + args.warmup + 1
    parts = args.parts.split(",")

    if "onbatch" in parts:
        stamps, cpu = [], []
        for _ in range(total):
            model.train_on_batch(x, y)
            stamps.append(time.perf_counter())
            cpu.append(time.process_time())
        result["onbatch"] = summarise(stamps, args.warmup, cpu)
        print("onbatch", result["onbatch"]["median_s"], result["onbatch"]["cpu_median_s"], flush=True)
    if "memory" in parts:
        clock = step_clock()
        memory = tf.data.Dataset.from_tensors((x, y)).repeat()
        model.fit(memory, epochs=1, steps_per_epoch=total, callbacks=[clock], verbose=0)
        result["memory"] = summarise(clock.times, args.warmup, clock.cpu)
        print("memory", result["memory"]["median_s"], result["memory"]["cpu_median_s"], flush=True)
    if "data" in parts:
        clock = step_clock()
        model.fit(train_ds, epochs=1, steps_per_epoch=total, callbacks=[clock], verbose=0)
        result["data"] = summarise(clock.times, args.warmup, clock.cpu)
        print("data", result["data"]["median_s"], result["data"]["cpu_median_s"], flush=True)
    if "full" in parts:
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder)
            plan = trainer.Plan(config, args.scenes, 1)
            val_ds = trainer.load_split(config, data, "val", args.batch, train=False)
            images, depths = trainer.fixed_validation_samples(config, data, config["train"]["image_samples"])
            backup = trainer.RunBackupFactory(out, config)
            callbacks = trainer.make_callbacks(config, out, plan, images, depths, backup, print_fn=lambda *a: None)
            clock = step_clock()
            model.fit(train_ds, epochs=1, steps_per_epoch=total, callbacks=callbacks + [clock], verbose=2)
            result["full"] = summarise(clock.times, args.warmup, clock.cpu)
            print("full", result["full"]["median_s"], result["full"]["cpu_median_s"], flush=True)
            checkpoints = next(c for c in callbacks if type(c).__name__ == "RunCheckpoints")
            start = time.perf_counter()
            checkpoints._save(checkpoints.latest_path)
            result["save_latest_s"] = time.perf_counter() - start
            saver = callbacks[-1]
            start = time.perf_counter()
            saver._save_model()
            result["save_backup_s"] = time.perf_counter() - start
            start = time.perf_counter()
            model.evaluate(val_ds, steps=2, verbose=0)
            result["validation_2_batches_s"] = time.perf_counter() - start
            board = next(c for c in callbacks if type(c).__name__ == "TensorBoardLogger")
            start = time.perf_counter()
            board.write_images(1)
            result["tensorboard_images_s"] = time.perf_counter() - start
            print({k: round(v, 3) for k, v in result.items() if k.endswith("_s")}, flush=True)
    result.update(load_start=load_start, load_end=os.getloadavg()[0])
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
