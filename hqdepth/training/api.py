"""The public Python face of a recipe: the pieces of a paper setting for your own `model.fit`.

    import hqdepth

    r = hqdepth.recipe("hqmd_plus_full", overrides={"data.input_size": [64, 96],
                                                     "model.options.backbone_weights": "none",
                                                     "model.options.freeze": "none"})
    train, val = r.datasets("synthetic:64?size=64x96")   # tf.data with the recipe's augmentation and batch
    model = r.build_model()                              # initialised as the recipe says, in its precision
    r.compile(model)                                     # loss, optimizer + schedule, metrics
    model.fit(train, validation_data=val, epochs=r.epochs, steps_per_epoch=r.steps_per_epoch,
              validation_steps=r.validation_steps, callbacks=r.callbacks("runs/mine"))
    r.evaluate(model, "synthetic:16?size=64x96")          # the recipe's protocol, tested as the paper tests

Every piece can be swapped: any `tf.data` of `(image 0..255, depth metres)` batches, your own callbacks,
or `r.compile(model, optimizer=...)`. `hqdepth train` runs the same pieces (`Recipe.train`), so with
the same recipe, data and seed it ends with the same weights as the plain `model.fit` above.

`datasets()` fixes the run length for the data it is given: `epochs` and `steps_per_epoch` count
validation periods (a Keras "epoch" is one period of `train.validation_every_steps`, or one pass), and
the schedule's length (`compile`) is the recipe's whole run on that dataset.
"""

import copy

from hqdepth.errors import ConfigError
from hqdepth.training import recipes as recipes_lib


def recipe(source, overrides=None, sets=(), config_files=()):
    """A `Recipe` from a recipe name, a YAML/JSON file or a dict of recipe fields.

    `overrides`: {dotted.field: value} applied after the recipe (e.g. {"train.batch_size": 4}); `sets`:
    `--set`-style "dotted.field=value" strings; `config_files`: YAML/JSON files merged in between.
    Unknown fields are refused with the known ones listed.
    """
    if isinstance(source, Recipe):
        source = source.config
    source = copy.deepcopy(source) if isinstance(source, dict) else source
    return Recipe(recipes_lib.resolve_config(source, list(config_files), list(sets), overrides))


class Recipe:
    """A resolved recipe (`config`, a plain dict) and the calls that turn it into Keras objects."""

    def __init__(self, config):
        self.config = config
        self.plan = None
        self.validation_steps = None
        self._data = None
        self._val_data = None

    # ------------------------------------------------------------------------------- the recipe itself

    @property
    def name(self):
        return self.config["name"]

    def to_yaml(self):
        """The recipe as YAML; `hqdepth.recipe(yaml.safe_load(text))` gives the same recipe back (strings that
        read as numbers are quoted)."""
        return recipes_lib.dump_yaml(self.config)

    def __repr__(self):
        return f"Recipe({self.name!r}: {recipes_lib.summary_line(self.config)})"

    # ----------------------------------------------------------------------------------------- data

    def datasets(self, data, val_data=None, replicas=1, start_batches=0, data_seed=None):
        """(train, val) `tf.data` datasets of a SPEC (e.g. "nyu-mat:/data/nyu.mat", "synthetic:64"):
        the training split repeated, shuffled and augmented as the recipe says, batched at the global
        batch; the validation split as the recipe validates. Fixes the run length (`plan`, `epochs`,
        `steps_per_epoch`, `validation_steps`) for this dataset. `start_batches`/`data_seed` continue a
        training stream after that many batches (what a resumed run does)."""
        from hqdepth.training import trainer

        train_split, val_split = self.config["data"]["train_split"], self.config["data"]["val_split"]
        val_data = val_data or data
        self.plan = trainer.Plan(self.config, trainer.split_length(data, train_split), replicas)
        val_count = trainer.split_length(val_data, val_split)
        steps = self.config["train"]["validation_steps"]
        self.validation_steps = steps if steps is not None else max(val_count // self.plan.global_batch,
                                                                     1 if val_count else 0)
        self._data, self._val_data = data, val_data
        train = trainer.load_split(self.config, data, train_split, self.plan.global_batch, train=True,
                                   seed=data_seed, start_batches=start_batches)
        val = trainer.load_split(self.config, val_data, val_split, self.plan.global_batch, train=False)
        return train, val

    def _require_plan(self, what):
        if self.plan is None:
            raise ConfigError(f"Recipe.{what} needs the run length, which depends on the dataset: call "
                              f"recipe.datasets(DATA) first.")
        return self.plan

    @property
    def epochs(self):
        """Keras epochs of the run (validation periods) on the dataset given to `datasets()`."""
        return self._require_plan("epochs").periods

    @property
    def steps_per_epoch(self):
        """Optimizer steps per Keras epoch (one validation period)."""
        return self._require_plan("steps_per_epoch").period

    # ---------------------------------------------------------------------------------------- model

    def build_model(self, fetch=True):
        """The recipe's model at `data.input_size` (a BTS recipe's then takes any size, for its validation on
        whole frames: `trainer.build_model`), in the recipe's precision, initialised as it says.

        The backbone initialisation is checked and, for a named one, downloaded/converted once and
        cached (`hqdepth.weights.pretrained`); `train.seed` seeds the initialisation. With `model.init` the model
        gets that trained model's weights instead (`trainer.load_initial_weights`). Sets Keras' global
        dtype policy (`train.precision`; auto = mixed_float16 on a GPU, float32 on a CPU) and TensorFlow's TF32
        switch (`train.tf32`: off under float32 by default) before building.
        """
        import keras

        from hqdepth.training import trainer

        initial_weights = trainer.prepare_initialisation(self.config, print_fn=lambda *a, **k: None) if fetch else None
        trainer.apply_precision(self.config)
        trainer.set_determinism(self.config)
        if self.config["train"]["seed"] is not None:
            keras.utils.set_random_seed(int(self.config["train"]["seed"]))
        return trainer.build_model(self.config, initial_weights=initial_weights)

    def compile(self, model, optimizer=None, loss=None, metrics=None, **kwargs):
        """`model.compile` with the recipe's loss, optimizer + schedule (over the whole run on the dataset
        of `datasets()`), metrics (loss terms + depth metrics) and `jit_compile`; any of them can be given
        instead. Returns the model."""
        from hqdepth.training import trainer

        plan = self._require_plan("compile") if optimizer is None else self.plan
        loss = loss or trainer.build_loss(self.config)
        if optimizer is None:
            optimizer = trainer.build_optimizer(self.config, plan.steps_per_epoch, plan.total_steps, model)
        if metrics is None:
            metrics = trainer.compile_metrics(loss, self.config)
        kwargs.setdefault("jit_compile", bool(self.config["train"]["jit_compile"]))
        trainer.apply_batch_groups(model, loss, self.config)
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
        return model

    # ------------------------------------------------------------------------------------ callbacks

    def callbacks(self, out, image_samples=None, backup=True, print_fn=print):
        """The run callbacks writing into the run folder `out`: TerminateOnNaN, CSV log, TensorBoard (scalars and
        depth images of fixed validation samples), checkpoints (latest/best), progress, and the backup a
        rerun resumes from (`backup=False` leaves it out); first, when the validation data carries true edges or
        planes, the iBims geometric metrics (`val_dbe_acc`, ...; `evaluation.geometry_samples`). The folder gets
        the config (`config.yaml`) as `train` writes it, so that `train` into it later resumes this config and
        refuses another; a folder holding another config's training is refused here, and so is one holding a backup
        or a finished run (`model.fit` would start its epochs and data from the beginning: `train` resumes it)."""
        from pathlib import Path

        from hqdepth.training import trainer

        plan = self._require_plan("callbacks")
        out = trainer.prepare_run_folder(Path(out), self.config)  # writes config.yaml: `train` then resumes or refuses
        held = trainer.resume_point(out, backup=backup)
        if held:  # model.fit would start its epochs and data stream again
            raise ConfigError(f"{out} holds {held} of this recipe: Recipe.train(data, \"{out}\") or `hqdepth train` "
                              "resumes it (or reports it finished) exactly; a model.fit with these callbacks would "
                              "start its epochs and data stream again. Train a new run in another folder.")
        count = self.config["train"]["image_samples"] if image_samples is None else image_samples
        images, depths = trainer.fixed_validation_samples(self.config, self._val_data, count)
        factory = trainer.RunBackupFactory(out, self.config)
        geometry = trainer.geometry_validation(self.config, self._val_data,
                                               (self.validation_steps or 0) * plan.global_batch, print_fn)
        callbacks = trainer.make_callbacks(self.config, out, plan, images, depths, factory, print_fn=print_fn,
                                           geometry=geometry)
        return callbacks if backup else callbacks[:-1]

    # ----------------------------------------------------------------------------------- evaluation

    def evaluate(self, model, data):
        """The recipe's evaluation protocol on the test split of `data` (SPEC), each image run as the
        paper's test code runs it; returns `hqdepth.evaluation` results (`.metrics`, `.to_dict()`)."""
        from hqdepth.training import trainer

        return trainer.evaluate_in_memory(model, self.config, data)

    # ------------------------------------------------------------------------------------ the engine

    def train(self, data, out, val_data=None, test_data=None, overwrite=False, verbose="auto", print_fn=print):
        """Everything `hqdepth train` does: a run folder with config, logs, checkpoints, resume from a backup,
        the final model and a test evaluation; returns the results dict (`results.json`: None for a loss or metric
        that is not finite)."""
        from hqdepth.training import trainer

        return trainer.train(self.config, data, out, val_data=val_data, test_data=test_data, overwrite=overwrite,
                             verbose=verbose, print_fn=print_fn)
