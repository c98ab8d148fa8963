"""The training engine: a resolved recipe + a dataset SPEC -> a run folder, through `model.fit`.

Run folder:
    config.yaml            the resolved recipe (what `--set` and config files made of it)
    checkpoints/latest.keras, checkpoints/best.keras (+ best.json)
    backup/                the resumable state (callbacks.RunBackup: weights + optimizer, data position), removed when done
    logs/train, logs/validation   TensorBoard
    metrics.csv            one row per validation ("epoch" = validation period)
    model.keras            the final model
    results.json           final train/validation logs and the test evaluation with the recipe's protocol

Rerunning the same command continues an interrupted run from its last backup; a finished run is
reported, not retrained. Backups are crash-safe: every file a resume reads (backup weights and
metadata, config.yaml, results.json, best.json) is written to a temporary name and renamed, and a
backup replaces the previous one only once it is complete, so a run killed at any moment (SIGKILL,
pre-emption) resumes from the last complete backup (`train.checkpoint_every_steps`, else every
validation period). What a resume restores:

- always: the model variables (batch-norm statistics included), the optimizer's variables (Adam's
  moments, the iteration, so the schedule), the position (validation period and step within it),
  and the data position: the training stream continues after the batches the backed-up steps
  consumed, in the same order, each sample with the same augmentation (`hqdepth.data.load`,
  `start_batches`; the data seed is `train.seed`, or one drawn at the start and kept in the backup).
  Steps done after the last backup are redone on the same batches. metrics.csv rows of periods
  the backup does not cover are dropped and logged again; TensorBoard may hold such steps twice.
- with `train.deterministic: true` (op determinism, a seed, ordered input), the weights at the end
  are those of the same run uninterrupted (equal on the CPU; tests/test_training_runs.py kills runs
  at random moments). Without it, the order of the samples is the same but the float reductions of
  TensorFlow may differ from run to run, as between two uninterrupted runs.
- how the data position is reached: indexed sources without `cache`, `skip_bad` or `shuffle_buffer`
  compute it (the permutation of pass p is a function of (seed, p)); `tfrecord:`, `cache`, `skip_bad`
  and `shuffle_buffer` read the consumed samples again and drop them (exact for a seeded run, costs
  the reading; a TFRecord run with `deterministic` off reads its shards in a nondeterministic order,
  so it continues at the right count of samples but not with the same ones).
- not restored: the skipped-record counts of `skip_bad` of the interrupted session and Keras'
  running means of the training metrics within the interrupted period (its logged row averages the
  steps of the last session).
"""

import json
import math
import os
import shutil
import time
import warnings
from pathlib import Path

from hqdepth import strict_json
from hqdepth.errors import ConfigError, DataError, errors_from_tensorflow
from hqdepth.training import recipes as recipes_lib

CONFIG_FILE = "config.yaml"
RESULTS_FILE = "results.json"


# ------------------------------------------------------------------------------------ environment


def gpu_count():
    import tensorflow as tf

    return len(tf.config.list_logical_devices("GPU"))


def resolve_precision(name):
    """The Keras dtype policy for --precision; auto = mixed_float16 on a GPU, float32 on a CPU."""
    if name == "auto":
        return "mixed_float16" if gpu_count() else "float32"
    return name


def whole_frame_validation(config):
    """Whether the recipe's augmentation validates on whole frames of another size than its training crops: `bts`
    (and its aliases bts_nyu, bts_kitti), whose class says so (`augment.BTSAugmentation.whole_frame_validation`,
    tested to agree). Read from the name, without importing the augmentations' TensorFlow, so that a Keras-on-JAX
    process (`benchmarks/gpu.py`) builds models too."""
    name = config["data"]["augmentation"]
    return str(name or "none").partition("?")[0].strip().lower().replace("-", "_") in WHOLE_FRAME_AUGMENTATIONS


WHOLE_FRAME_AUGMENTATIONS = ("bts", "bts_nyu", "bts_kitti")


def check_whole_frames(config, spec):
    """With whole-frame validation (`whole_frame_validation`), a `ConfigError` now when the first validation frame
    is not a size the model takes (BTS: multiples of 32), rather than a shape error inside the first validation,
    hours into the run."""
    from hqdepth.models import size_multiple

    if not whole_frame_validation(config):
        return
    model = config["model"]
    multiple = size_multiple(model["name"], model["options"])
    split = config["data"]["val_split"]
    for element, _ in load_split(config, spec, split, None, train=False, batch=False).take(1).as_numpy_iterator():
        height, width = (element[0] if isinstance(element, tuple) else element).shape[:2]
        if height % multiple or width % multiple:
            raise ConfigError(
                f"{config['name']} validates on whole frames, as its official code does, and the {split} frames of "
                f"{spec} are {height}x{width}, not multiples of {multiple} as {model['name']} needs. Validate on NYU's "
                f"480x640 frames or KITTI frames of at least 352x1216 (the KB crop), e.g. with --val-data.")


def apply_precision(config):
    """Set Keras' global dtype policy (`train.precision`) and TensorFlow's TF32 switch (`train.tf32`); returns
    (policy, tf32).

    On Ampere and later GPUs TensorFlow multiplies float32 convolutions and matrices in TF32 (10-bit mantissa
    products) unless told not to. `train.tf32` null (default): off when the policy is float32, so that float32
    means float32 (the papers' GPUs had no TF32; the paper recipes train in float32 to match them), on otherwise
    (TensorFlow's default); true / false: as given. CPUs have no TF32: nothing changes there."""
    import keras
    import tensorflow as tf

    policy = resolve_precision(config["train"]["precision"])
    keras.config.set_dtype_policy(policy)
    tf32 = config["train"]["tf32"]
    tf32 = policy != "float32" if tf32 is None else tf32
    tf.config.experimental.enable_tensor_float_32_execution(tf32)
    return policy, tf32


def precision_note(policy, tf32):
    """The precision as the run's first lines print it: the policy, and TF32 where a GPU would use it."""
    return f"{policy}{' (TF32 on)' if tf32 else ' (no TF32)'}" if gpu_count() else policy


def cluster_workers():
    """Number of workers in TF_CONFIG (0 when unset)."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return 0
    try:
        cluster = json.loads(text).get("cluster", {})
    except ValueError:
        raise ConfigError(f"TF_CONFIG is not valid JSON: {text[:200]!r}") from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def resolve_strategy_name(name):
    if name == "auto":
        if cluster_workers() > 1:
            return "multiworker"
        return "mirrored" if gpu_count() > 1 else "default"
    if name == "multiworker" and cluster_workers() == 0:
        raise ConfigError("--strategy multiworker needs TF_CONFIG describing the cluster (see docs/training.md, "
                          "'Several machines').")
    return name


def make_strategy(name):
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"unknown strategy {name!r}")


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


# ---------------------------------------------------------------------------------- model pieces


def build_loss(config):
    import keras

    from hqdepth import losses

    name, options = config["loss"]["name"], dict(config["loss"]["options"])
    cls = getattr(losses, name, None)
    if isinstance(cls, type) and issubclass(cls, keras.losses.Loss):
        try:
            return cls(**options)
        except TypeError as error:
            raise ConfigError(f"loss {name}: {error}") from None
    if options:
        raise ConfigError(f"loss {name!r} is not an hqdepth loss; Keras losses take no options here.")
    try:
        return keras.losses.get(name)
    except ValueError:
        raise ConfigError(f"unknown loss {name!r}; hqdepth losses: HQMDLoss, HuLoss, BerHu, ... "
                          "(classes of hqdepth.losses) or a Keras loss name.") from None


def build_optimizer(config, steps_per_epoch, total_steps, model=None):
    """The recipe's optimizer and schedule. With `optimizer.decay_encoder_only`, `model`'s decoder is
    exempt from weight decay (call before the optimizer is built, i.e. before the first step); without
    a model the setting is only checked."""
    from hqdepth.training.optimizers import get_optimizer
    from hqdepth.training.schedules import build_schedule

    section = config["optimizer"]
    rate = build_schedule(config["schedule"]["name"], section["learning_rate"], config["schedule"]["options"],
                          steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    try:
        optimizer = get_optimizer(section["name"], {"learning_rate": rate, **section["options"]}, section["fused"])
    except (ValueError, TypeError) as error:
        raise ConfigError(f"optimizer {section['name']!r} with options {section['options']}: {error}") from None
    if section["decay_encoder_only"]:
        exclude_decoder_from_weight_decay(optimizer, model, config)
    return optimizer


def exclude_decoder_from_weight_decay(optimizer, model, config):
    """`optimizer.decay_encoder_only`: weight decay on the encoder only, as the BTS code does
    (its AdamW parameter groups give the decoder weight_decay 0)."""
    from hqdepth.models import get_entry

    name = config["model"]["name"]
    if not (optimizer.weight_decay or getattr(optimizer, "l2_weight_decay", 0)):
        raise ConfigError(f"optimizer.decay_encoder_only is set but optimizer {config['optimizer']['name']!r} has no "
                          "weight decay (optimizer.options.weight_decay or l2_weight_decay).")
    decoder_variables = get_entry(name).decoder_variables
    if decoder_variables is None:
        raise ConfigError(f"optimizer.decay_encoder_only: model {name!r} does not say which variables are its "
                          "decoder (register_model(decoder_variables=...)); set it to false.")
    if model is not None:
        optimizer.exclude_from_weight_decay(var_list=decoder_variables(model))


def protocol_of(config):
    """The evaluation protocol of a config; `evaluation.protocol_options` builds or changes it."""
    from hqdepth.evaluation import custom_protocol, get_protocol

    name, options = config["evaluation"]["protocol"], dict(config["evaluation"]["protocol_options"])
    try:
        return custom_protocol(**options) if name == "custom" else get_protocol(name, **options)
    except TypeError as error:
        raise ConfigError(f"evaluation.protocol_options {options}: {error}") from None


def compile_metrics(loss, config):
    from hqdepth import metrics

    protocol = protocol_of(config)
    min_depth = config["evaluation"]["min_depth"] or protocol.min_depth
    max_depth = protocol.max_depth or config["evaluation"]["max_depth"]
    terms = loss.term_metrics() if hasattr(loss, "term_metrics") else []
    return terms + metrics.depth_metrics(min_depth=min_depth, max_depth=max_depth)


GEOMETRY_LOGS = ("val_dbe_acc", "val_dbe_comp", "val_pe_plan", "val_pe_orie", "val_dde_0", "val_dde_minus",
                 "val_dde_plus")  # what `callbacks.GeometryValidation` adds to the logs


def check_monitor(config, model, metrics, geometry, validates=True):
    """Refuse a `train.monitor` that the run never logs (then no best.keras would be chosen, without a word): the
    loss (and each output's, `NAME_loss`, for a model of several outputs such as MRPAN), the compiled `metrics`,
    their `val_` forms, and the geometric ones with `geometry`. Not checked for a run that does not validate."""
    if not validates:
        return
    outputs = list(getattr(model, "output_names", None) or [])
    names = ["loss"] + ([f"{name}_loss" for name in outputs] if len(outputs) > 1 else []) + [
        getattr(metric, "name", str(metric)) for metric in metrics]
    logged = names + [f"val_{name}" for name in names] + (list(GEOMETRY_LOGS) if geometry else [])
    monitor = config["train"]["monitor"]
    if monitor not in logged:
        raise ConfigError(f"train.monitor={monitor!r} is not logged by this run; it logs "
                          f"{', '.join(name for name in logged if name.startswith('val_')) or ', '.join(logged)}.")


def build_model(config, initialise=True, initial_weights=None):
    """The recipe's model at its input size, initialised as the recipe says (`hqdepth.weights.pretrained`) or, with
    `model.init`, with a trained model's weights (`load_initial_weights`: `initial_weights` when
    `prepare_initialisation` read them before a distribution strategy existed, else read here; not with
    `initialise=False`, for a resume that restores its backup),
    its convolutions' kernel gradients as `train.kernel_gradients` says (`kernel_gradients`), and the bias gradients
    of its 16-bit transposed convolutions and dense layers summed in float32 (`use_float32_bias_gradients`).

    Where the recipe validates on whole frames larger than its training crops (BTS: 480x640 NYU frames, KITTI's
    352x1216 KB crop, as the official online evaluation does; `whole_frame_validation`), the model is built at
    the input size and then takes any size (`free_size_model`, the same layers): the crops set the shapes of
    each training step, the frames those of each validation."""
    from hqdepth.layers.weight_gradients import use_float32_bias_gradients, use_matmul_kernel_gradients
    from hqdepth.models import build_model as build
    from hqdepth.models.inference import free_size_model
    from hqdepth.weights import pretrained

    size = config["data"]["input_size"]
    input_shape = (*size, 3) if size else None
    model = build(config["model"]["name"], input_shape=input_shape, **pretrained.model_options(config))
    if size and whole_frame_validation(config):
        model = free_size_model(model)
    init = init_file(config) if initialise else None
    if init is not None:
        load_initial_weights(model, init, initial_weights)
    if kernel_gradients(config) == "matmul":
        # a deterministic run may not depend on timings: the forward passes stay TensorFlow's convolutions
        use_matmul_kernel_gradients(model, forward="native" if config["train"]["deterministic"] else "auto")
    use_float32_bias_gradients(model)  # 16-bit transposed convs and dense layers: float32 bias gradients
    return model


def kernel_gradients(config):
    """`train.kernel_gradients` resolved: "auto" is "matmul" when the global dtype policy computes in bfloat16
    on TensorFlow without a GPU (where oneDNN's bfloat16 kernel-gradient convolutions are slow), else
    "tensorflow"."""
    import keras

    mode = config["train"]["kernel_gradients"]
    if mode != "auto":
        return mode
    if keras.backend.backend() != "tensorflow" or keras.config.dtype_policy().compute_dtype != "bfloat16":
        return "tensorflow"
    import tensorflow as tf

    return "tensorflow" if tf.config.list_physical_devices("GPU") else "matmul"


def kernel_gradients_note(config):
    """", kernel gradients as matrix products" for the run's plan line when `kernel_gradients` resolves so, else ""."""
    return ", kernel gradients as matrix products" if kernel_gradients(config) == "matmul" else ""


def init_file(config):
    """The file `model.init` names, checked (a run folder: its final model.keras); None when unset."""
    init = config["model"].get("init")
    if init is None or init == "":
        return None
    if not isinstance(init, str):
        raise ConfigError(f"model.init={init!r}: expected the path of a .keras model or a run folder.")
    path = Path(init)
    if path.is_dir():
        if not (path / "model.keras").is_file():
            best = path / "checkpoints" / "best.keras"
            raise ConfigError(f"model.init={init}: the folder has no model.keras (a finished run's final model)"
                              + (f"; name a .keras file instead, e.g. {best}." if best.is_file() else "."))
        return path / "model.keras"
    if not path.is_file():
        raise ConfigError(f"model.init={init}: no such file or folder.")
    if not path.name.endswith(".keras"):
        raise ConfigError(f"model.init={init}: expected a .keras model or a run folder (a backbone's .weights.h5 "
                          "file is model.options.backbone_weights).")
    return path


def read_initial_weights(path):
    """{weight name: array} of the Keras model saved at `path`; ConfigError when some are not finite (its run
    diverged)."""
    import keras
    import numpy as np

    from hqdepth.depth_model import register_keras_objects

    register_keras_objects()
    try:
        source = keras.saving.load_model(path, compile=False)
    except Exception as error:  # keras raises many types for a bad file
        raise DataError(f"model.init: cannot load the Keras model {path}: {error}") from None
    weights = {weight.path: keras.ops.convert_to_numpy(weight) for weight in source.weights}
    broken = [name for name, value in weights.items() if not np.isfinite(value).all()]
    if broken:
        raise ConfigError(f"model.init={path}: {len(broken)} of its weights are not finite (e.g. {broken[0]}); the "
                          "run that wrote it diverged.")
    return weights


def load_initial_weights(model, path, given=None):
    """Set every weight of `model` to the one of the same name (e.g. `decoder_conv1/kernel`) in the model saved at
    `path` (`given`: its weights as `read_initial_weights` returned them; read now when None). ConfigError naming
    the differences when it is not the same network (another model, or other model options)."""
    given = read_initial_weights(path) if given is None else given
    wanted = {weight.path: weight for weight in model.weights}
    lacking = [name for name in wanted if name not in given]
    extra = [name for name in given if name not in wanted]
    reshaped = [f"{name}: file {given[name].shape} vs model {tuple(weight.shape)}" for name, weight in wanted.items()
                if name in given and given[name].shape != tuple(weight.shape)]
    differences = [f"{what} (e.g. {', '.join(names[:3])})" for what, names in (
        (f"the file lacks {len(lacking)} of the {len(wanted)} weights of the recipe's {model.name}", lacking),
        (f"the file has {len(extra)} weights the model does not", extra),
        (f"{len(reshaped)} shapes differ", reshaped)) if names]
    if differences:
        raise ConfigError(f"model.init={path} is not the network this recipe builds: {'; '.join(differences)}. It "
                          "must come from the same model and model options.")
    for name, weight in wanted.items():
        weight.assign(given[name].astype(weight.dtype))


def prepare_initialisation(config, print_fn=print, read_init=True):
    """Check the recipe's backbone initialisation and fetch/convert its file now, before anything is built. With
    `model.init`: read that model's weights instead and return them, for `build_model` (`read_model_init`; not with
    `read_init=False`, and None then and without `model.init`)."""
    from hqdepth.weights import pretrained

    if config["model"].get("init"):
        return read_model_init(config, print_fn) if read_init else None
    weights = pretrained.check_initialisation(config)
    if weights is None:
        return None
    model = config["model"]
    version = pretrained.backbone_version(model["name"], model["options"])
    path = pretrained.resolve(weights, version)
    print_fn(f"  initialisation: {pretrained.describe(weights)}" + (f" -> {path}" if path and path != weights else ""))
    return None


def read_model_init(config, print_fn=print):
    """The weights of the model `model.init` names (`read_initial_weights`), said through `print_fn`."""
    init = init_file(config)
    print_fn(f"  initialisation: the weights of {init} (model.init; the recipe's backbone initialisation is not "
             "loaded)")
    return read_initial_weights(init)


def resume_point(out, backup=True):
    """What a (single-process) run into `out` takes over rather than starting from its initialisation: "a finished
    run" (its results), "the backup of step N" (not with `backup=False`), or None."""
    from hqdepth.training.callbacks import RunBackup

    if (read_results(Path(out)) or {}).get("status") == "finished":
        return "a finished run"
    state = RunBackup.read_state(Path(out) / "backup") if backup else None
    return f"the backup of step {state.get('iterations', '?')}" if state else None


def _resumes(out, overwrite):
    """Whether a run into `out` takes over what is there (`resume_point`; then model.init's file need not exist any
    more)."""
    return not overwrite and resume_point(out) is not None


def build_before_fit(model, dataset):
    """Create the metric and optimizer variables before the first step, from the dataset's element spec.

    Variables created while `fit` traces its step make TensorFlow trace it a second time (for MRPAN
    on a 2-core CPU, a third of the time a 2-step run takes). Keras does this itself
    under a distribution strategy; under the default one it defers building to the trace. Uses
    Keras' `_symbolic_build` when it exists; without it nothing changes but the time.
    """
    if getattr(model, "_distribute_strategy", None) is None and hasattr(model, "_symbolic_build"):
        model._symbolic_build(data_batch=dataset.element_spec)


def apply_batch_groups(model, loss, config, replicas=1):
    """Batch statistics and loss grouping of a run (`train.batch_groups`, G): with G > 1 the global batch is G equal
    groups, each normalised by its own batch statistics (moving averages: the first group's) and scored on its own
    (the group losses averaged), as G GPUs with plain batch norm under DistributedDataParallel compute them; on
    `replicas` devices each holds G / replicas groups. With G = 1 and several replicas the statistics cover the
    global batch (`synchronize_batchnorm`), as one device with the whole batch sees them."""
    import keras

    from hqdepth.layers import FusedBatchNormalization
    from hqdepth.losses import DepthLoss

    groups = config["train"]["batch_groups"]
    per_replica = max(groups // replicas, 1)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, FusedBatchNormalization):
            layer.batch_groups = per_replica  # also back to 1: a model file keeps the setting it was trained with
        elif isinstance(layer, keras.layers.BatchNormalization) and per_replica > 1:
            raise ConfigError(f"train.batch_groups={groups}: layer {layer.name} is a Keras BatchNormalization, "
                              "which cannot normalise groups (hqdepth.layers.FusedBatchNormalization can).")
    if isinstance(loss, DepthLoss):
        loss.batch_groups = per_replica
    if groups == 1 and replicas > 1:
        synchronize_batchnorm(model)


def synchronize_batchnorm(model):
    """Batch statistics over the global batch on every replica (as one device with the whole batch sees them)."""
    import keras

    count = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
            count += 1
    return count


# ------------------------------------------------------------------------------------------- data


def split_length(spec, split):
    from hqdepth.data import open_source

    try:
        return len(open_source(spec, split=split))
    except ConfigError as error:
        raise ConfigError(f"--data {spec}, split {split!r}: {error}") from None


def shared_with_training(config, data, spec, role):
    """A warning when the `role` split ("val", "test": its first `evaluation.test_samples`) of `spec` holds training
    samples of `data`, e.g. a folder or list without split subfolders, which gives the same samples for every split;
    "" otherwise, or when a source cannot tell (`Source.sample_names`) or cannot be opened (the run says why
    elsewhere; a multi-worker chief must not fail alone here)."""
    from hqdepth.data import open_source

    split = config["data"][f"{role}_split"]
    try:
        names = [open_source(source, split=name).sample_names()
                 for source, name in ((data, config["data"]["train_split"]), (spec, split))]
    except Exception:  # noqa: BLE001 - only a warning
        return ""
    if names[0] is None or names[1] is None:
        return ""
    if role == "test" and config["evaluation"]["test_samples"]:
        names[1] = names[1][: int(config["evaluation"]["test_samples"])]
    shared = len(set(names[0]).intersection(names[1]))
    if not shared:
        return ""
    what = {"val": "validation", "test": "test"}[role]
    return (f"{shared} of the {len(names[1])} {what} samples ({spec}, split {split}) are training samples "
            f"(a source without a {split} split gives the same samples for every split): the {what} metrics measure "
            f"the fit, not how the model generalises; give separate data with --{role}-data.")


def print_shared_splits(config, data, val_data, test_data, print_fn):
    """`shared_with_training` of the validation data (None: no validation) and of the test data (when tested)."""
    roles = [("val", val_data), ("test", test_data or data if config["train"]["test_evaluation"] else None)]
    for role, spec in roles:
        warning = spec and shared_with_training(config, data, spec, role)
        if warning:
            print_fn(f"  warning: {warning}")


def load_split(config, spec, split, global_batch, *, train, input_context=None, repeat=None, batch=True, seed=None,
               start_batches=0, bad_records=None):
    """The `hqdepth.data.load` dataset of a split as the recipe says; `seed` replaces `train.seed` (the data
    seed of a run without one), `start_batches` continues the stream after that many batches (resume),
    `bad_records` counts the samples `data.skip_bad` drops (one `BadRecords` over several datasets)."""
    from hqdepth.data import load

    data = config["data"]
    seeded = config["train"]["seed"] is not None or bool(config["train"].get("deterministic"))
    return load(
        spec, split, recipe=data["augmentation"], recipe_options=data["augmentation_options"],
        batch_size=global_batch if batch else None, size=data["input_size"],
        mode="train" if train else "val", shuffle=train and data["shuffle"],
        seed=config["train"]["seed"] if seed is None else seed, deterministic=True if seeded else None,
        start_batches=start_batches, bad_records=bad_records,
        cache=data["cache"], repeat=train if repeat is None else repeat, drop_remainder=train,
        skip_bad=data["skip_bad"], with_focal=data["with_focal"], input_context=input_context,
        shuffle_buffer=data["shuffle_buffer"],
    )


def check_input_size(config, spec):
    """Refuse, before building anything, an input size the model cannot take (e.g. BTS: multiples of 32):
    `data.input_size`, or with a free size (null) the first training image's size."""
    import math

    from hqdepth.data import open_source
    from hqdepth.models import size_multiple

    name = config["model"]["name"]
    multiple = size_multiple(name, config["model"]["options"])
    if multiple == 1:
        return
    size, where = config["data"]["input_size"], "data.input_size"
    if size is None:
        source = open_source(spec, split=config["data"]["train_split"])
        if not len(source):
            return
        size = source[0].rgb.shape[:2]
        where = f"data.input_size is null (each image's own size) and {spec} has"
    if size[0] % multiple or size[1] % multiple:
        fit = [math.ceil(v / multiple) * multiple for v in size]
        raise ConfigError(f"model {name} needs an input height and width that are multiples of {multiple}; {where} "
                          f"{size[0]}x{size[1]}. Use e.g. --set data.input_size=[{fit[0]},{fit[1]}].")


def check_depth_scale(config, spec, print_fn=print, samples=3):
    """Warn when most ground-truth pixels of the first training samples lie beyond the recipe's max depth: depth
    read with the wrong scale (e.g. SUN RGB-D's bit-rotated PNGs taken as millimetres) would otherwise train
    silently against a clipped or masked target."""
    import numpy as np

    from hqdepth.data import open_source

    max_depth = config["model"]["options"].get("max_depth") or config["evaluation"]["max_depth"]
    if not max_depth:
        return
    source = open_source(spec, split=config["data"]["train_split"])
    read_sample = getattr(source, "depth_sample", source.__getitem__)  # what the pipeline reads
    depths = []
    for index in range(min(samples, len(source))):
        try:
            depth = np.asarray(read_sample(index).depth, dtype=np.float64)
        except Exception:  # noqa: BLE001 - the pipeline reports a bad sample (or, with data.skip_bad, skips it)
            continue
        depths.append(depth[np.isfinite(depth) & (depth > 0)])
    valid = np.concatenate(depths) if depths else np.zeros(0)
    if valid.size and np.median(valid) > max_depth:
        print_fn(f"  warning: the ground truth of the first {len(depths)} training samples of {spec} has a median of "
                 f"{np.median(valid):.1f} m (max {valid.max():.1f} m), beyond the recipe's max depth {max_depth:g} m: "
                 "is its depth scale right? (a SPEC's ?scale=, docs/datasets.md; `hqdepth data stats` shows the range)")


def check_augmentation(config):
    """The training augmentation (`data.augmentation`, `data.augmentation_options`, at `data.input_size`), built to
    check its name and options before any data is read: a misspelt name is a ConfigError listing the known ones,
    not a failure after the data summary. Returns it (an `hqdepth.data.augment.Recipe`)."""
    from hqdepth.data.augment import get_recipe

    data = config["data"]
    return get_recipe(data["augmentation"], "train", data["input_size"], **data["augmentation_options"])


def check_focal_zoom(config, print_fn=print):
    """Warn when a focal-aware model (`data.with_focal`, BTS) trains at a size its augmentation reaches by resizing
    the frames (`data.input_size` other than the published crop): the focal lengths are resized with them, so the
    depth the model can output (max_depth x sigmoid x focal / reference focal) shrinks by that factor, and a test at
    native resolution (the KB crop, whole NYU frames) shows it another scale than it trained and validated on."""
    data = config["data"]
    if not data["with_focal"] or data["input_size"] is None:
        return
    recipe = check_augmentation(config)
    if recipe.default_size is None or tuple(recipe.size) == tuple(recipe.default_size):
        return
    zoom = recipe.size[1] / recipe.default_size[1]
    protocol = protocol_of(config)
    tested = config["train"]["test_evaluation"] and protocol.test_input in ("native", "kb_crop")
    print_fn(f"  warning: {recipe.name} augmentation at {recipe.size[0]}x{recipe.size[1]}, {zoom:.2f} of its published "
             f"{recipe.default_size[0]}x{recipe.default_size[1]} crop: frames and their focal lengths are resized by "
             f"{zoom:.2f}, so the largest depth this focal-aware model can output (max_depth x sigmoid x focal / "
             f"reference focal) is {zoom:.2f} of the published setting's"
             + (f", and the test ({protocol.name}) runs frames at native resolution, {1 / zoom:.2g}x the scale it "
                "trained and validated on: its test metrics compare with neither" if tested else "")
             + ". Reduced sizes are for quick runs.")


def check_test_frames(config, spec):
    """Fail before training, not after it, when the first test frame does not fit the protocol: its ground truth
    not the frame the protocol's crop is defined on (`Evaluator.check_ground_truth`: e.g. nyu-eigen, in pixels of
    480x640, on small synthetic scenes; kitti-garg, in fractions of the full frame, on KB-cropped ground truth),
    or a frame the protocol runs at its own size that the model cannot take (BTS: multiples of 32), or smaller
    than the KB crop it cuts. Opens the test data only for protocols with such a check."""
    from hqdepth.data import open_source
    from hqdepth.evaluator import Evaluator
    from hqdepth.models import size_multiple
    from hqdepth.protocols import KB_CROP_SIZE

    protocol = protocol_of(config)
    if not config["train"]["test_evaluation"] or not (protocol.frame_size or protocol.crops_in_fractions
                                                      or protocol.test_input in ("native", "kb_crop")):
        return
    split = config["data"]["test_split"]
    source = open_source(spec, split=split)
    try:
        depth = source[0].depth if len(source) else None
    except DataError:  # the test evaluation reports the sample (or skips it with data.skip_bad)
        return
    if depth is None:
        return
    try:
        Evaluator(protocol).check_ground_truth(depth.shape, f"{spec}, split {split}", advice=(
            "Test on other data (--test-data SPEC; for KITTI, full frames: no kb_crop=true), --set "
            "evaluation.protocol=custom (whole image) or --set train.test_evaluation=false."))
    except DataError as error:
        raise ConfigError(str(error)) from None
    multiple = size_multiple(config["model"]["name"], config["model"]["options"])
    height, width = depth.shape[:2]
    if protocol.test_input == "kb_crop" and (height < KB_CROP_SIZE[0] or width < KB_CROP_SIZE[1]):
        raise ConfigError(f"{spec}, split {split}: evaluation.protocol {protocol.name} runs the network on the KB crop "
                          f"352x1216 of each frame, and the test frames are {height}x{width}: test on KITTI frames "
                          "(--test-data SPEC), --set evaluation.protocol=custom or --set train.test_evaluation=false.")
    if protocol.test_input == "native" and (height % multiple or width % multiple):
        raise ConfigError(f"{spec}, split {split}: evaluation.protocol {protocol.name} runs the network on whole "
                          f"{height}x{width} frames, and {config['model']['name']} needs sides that are multiples of "
                          f"{multiple}: test on frames of such a size (NYU's 480x640), on the KB crop of KITTI frames "
                          "(kitti-garg, kitti-eigen) or --set train.test_evaluation=false.")


def fixed_validation_samples(config, spec, count):
    """(inputs, depths) of the first `count` validation samples (TensorBoard images): inputs are the
    images, or (images, focals) for a focal-aware model (`data.with_focal`); numpy arrays."""
    import numpy as np

    if not count:
        return None, None
    dataset = load_split(config, spec, config["data"]["val_split"], None, train=False, batch=False).take(count)
    elements, depths = [], []
    for element, depth in dataset.as_numpy_iterator():
        elements.append(element)
        depths.append(depth)
    if not elements:
        return None, None
    if isinstance(elements[0], tuple):
        return tuple(np.stack(part) for part in zip(*elements)), np.stack(depths)
    return np.stack(elements), np.stack(depths)


def geometry_validation_samples(config, spec, count):
    """The first `count` validation samples that carry geometric ground truth (true edges or planes,
    `hqdepth.geometry.ground_truth_from_meta`), as `callbacks.GeometryValidation` takes them:
    [(rgb, depth (H, W), focal or None, ground truth)]. [] when `count` is 0 or the split's first sample has
    no edges or planes (a dataset without them: nothing is derived from the depth)."""
    import numpy as np

    from hqdepth.data import open_source
    from hqdepth.geometry import ground_truth_from_meta

    if not count:
        return []
    source = open_source(spec, split=config["data"]["val_split"])
    samples = []
    for index in range(min(int(count), len(source))):
        try:
            sample = source[index]
        except DataError:
            if config["data"]["skip_bad"]:
                continue
            raise
        truth = ground_truth_from_meta(sample.meta)
        if "edges" not in truth and "plane_ids" not in truth:
            if not samples and index == 0:
                return []
            continue
        depth = np.asarray(sample.depth, np.float32)
        samples.append((np.asarray(sample.rgb), depth[..., 0] if depth.ndim == 3 else depth, sample.meta.get("focal"),
                        truth))
    return samples


def geometry_validation(config, spec, validation_samples, print_fn=print):
    """`callbacks.GeometryValidation` on at most `evaluation.geometry_samples` of the samples one validation
    reads (`validation_samples` = validation batches x global batch), or None when it is off (0), there is
    no validation, or the data has no edges or planes. Planes are scored from 5 % of each validation frame
    (`GeometryEvaluator`'s default: the official 640x480 count, the same share of smaller frames)."""
    from hqdepth.training.callbacks import GeometryValidation

    count = min(config["evaluation"]["geometry_samples"], validation_samples)
    samples = geometry_validation_samples(config, spec, count)
    if not samples:
        return None
    with_edges = sum("edges" in truth for *_, truth in samples)
    with_planes = sum("plane_ids" in truth for *_, truth in samples)
    print_fn(f"  iBims geometric metrics at each validation on {len(samples)} validation samples (true edges in "
             f"{with_edges}, planes in {with_planes}; evaluation.geometry_samples={config['evaluation']['geometry_samples']})")
    return GeometryValidation(samples, config=config)


# ---------------------------------------------------------------------------------------- the plan


class Plan:
    """Steps and epochs of a run. A Keras "epoch" is one validation period."""

    def __init__(self, config, train_samples, replicas):
        train = config["train"]
        self.replicas = replicas
        if train["batch_size_is_global"]:
            if train["batch_size"] % replicas:
                raise ConfigError(f"train.batch_size={train['batch_size']} is global (batch_size_is_global) and must "
                                  f"divide among {replicas} replicas.")
            self.global_batch = train["batch_size"]
        else:
            self.global_batch = train["batch_size"] * replicas
        groups = train["batch_groups"]  # a positive integer (recipes.validate)
        if self.global_batch % groups or (groups > 1 and groups % replicas):
            raise ConfigError(f"train.batch_groups={groups} must divide the global batch ({self.global_batch}) and, "
                              f"if above 1, be a multiple of the {replicas} replicas.")
        if train_samples < self.global_batch and not train["steps_per_epoch"]:
            raise ConfigError(f"the training split has {train_samples} samples, fewer than one global batch "
                              f"({self.global_batch}).")
        self.train_samples = train_samples
        self.steps_per_epoch = train["steps_per_epoch"] or (math.ceil(train_samples / self.global_batch)
                                                            if train["epoch_steps"] == "ceil"
                                                            else train_samples // self.global_batch)
        # The schedule's length: a fixed number of steps, else epochs of this dataset; max_steps cuts a quick
        # run short (and its schedule with it).
        self.total_steps = train["max_steps"] or train["total_steps"] or train["epochs"] * self.steps_per_epoch
        self.period = min(train["validation_every_steps"] or self.steps_per_epoch, self.total_steps)
        self.periods = math.ceil(self.total_steps / self.period)

    def describe(self, config):
        """The plan in words: steps, what they mean in epochs of this dataset, the rate at start and end."""
        from hqdepth.training.schedules import build_schedule

        schedule = config["schedule"]
        rate = build_schedule(schedule["name"], config["optimizer"]["learning_rate"], schedule["options"],
                              steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps)
        first, last = (float(rate(step)) if callable(rate) else rate for step in (0, self.total_steps - 1))
        source = ("train.max_steps" if config["train"]["max_steps"] else
                  "train.total_steps" if config["train"]["total_steps"] else f"{config['train']['epochs']} epochs")
        return (f"plan: {self.total_steps} optimizer steps ({source}) = {self.total_steps / self.steps_per_epoch:.4g} "
                f"epochs of {self.train_samples} samples at global batch {self.global_batch} "
                f"({counted(self.steps_per_epoch, 'step')} per epoch); learning rate {first:.3g} at the first step, "
                f"{last:.3g} at the last ({schedule['name']} schedule)")

    def steps_in(self, period):
        return min(self.period, self.total_steps - period * self.period)

    def segments(self, period=0, step_in_period=0):
        """[(initial_epoch, epochs, steps_per_epoch)] fit calls from a position to the end."""
        out = []
        if step_in_period:
            out.append((period, period + 1, self.steps_in(period) - step_in_period))
            period += 1
        full_end = self.total_steps // self.period
        if period < full_end:
            out.append((period, full_end, self.period))
            period = full_end
        if period < self.periods:
            out.append((period, self.periods, self.steps_in(period)))
        return [s for s in out if s[2] > 0]


# ------------------------------------------------------------------------------------------ the run


def validation_batches(config, val_count, global_batch):
    """(batches per validation, a note): `train.validation_steps`, or with null every full batch of the validation
    split (one partial batch when it holds less than one), but never more batches than the split holds (Keras
    would cut the validation short with "Your input ran out of data")."""
    steps = config["train"]["validation_steps"]
    available = math.ceil(val_count / global_batch)
    if steps is None:
        return max(val_count // global_batch, 1 if val_count else 0), ""
    if steps > available:
        return available, f" (all {val_count} samples; train.validation_steps asks for {steps})"
    return steps, ""


def counted(number, word):
    """'1 step', '2 steps', '3 batches'."""
    return f"{number} {word}" if number == 1 else f"{number} {word}{'es' if word.endswith(('s', 'ch')) else 's'}"


def prepare_run_folder(out, config, overwrite=False):
    """Create or reopen a run folder; refuse one that holds a different config, unless nothing was trained in it
    (no backup, checkpoint, final model or results: a run stopped by a check before or at its first step takes the
    corrected command, and what that attempt logged goes)."""
    out = Path(out)
    saved = out / CONFIG_FILE
    trained = _trained(out)
    if not saved.is_file() and not overwrite and trained:
        raise ConfigError(f"{out} holds training state ({', '.join(trained[:4])}) but no {CONFIG_FILE}, so the "
                          "config that made it is unknown (e.g. written by Recipe.callbacks before they wrote one): "
                          "use a new --out, or --overwrite to start this folder afresh.")
    if saved.is_file() and not overwrite:
        previous = _with_new_defaults(recipes_lib.load_yaml(saved.read_text()), recipes_lib.DEFAULTS)
        if previous != json.loads(json.dumps(config)):
            if trained:
                changed = sorted(_differences(previous, config))
                further = (f" To continue training from this run's final weights (the schedule starts again): a "
                           f"new --out with --init {out} (model.init)." if (out / "model.keras").is_file() else "")
                raise ConfigError(f"{out} holds a run with another config (differs in: {', '.join(changed[:8])}). "
                                  f"Use a new --out, or --overwrite to start this folder afresh.{further}")
            overwrite = True
    if overwrite and out.exists():
        for name in (CONFIG_FILE, RESULTS_FILE, "metrics.csv", "model.keras"):
            (out / name).unlink(missing_ok=True)
        for name in ("checkpoints", "backup", "logs"):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    recipes_lib.dump(config, saved)
    return out


def _trained(out):
    """What in a run folder shows that something was trained in it (results, final model, backup, checkpoints, a
    worker's folder), by name; [] when nothing."""
    return ([name for name in (RESULTS_FILE, "model.keras", "backup") if (out / name).exists()]
            + [f"checkpoints/{p.name}" for p in sorted(out.glob("checkpoints/*.keras"))]
            + [p.name for p in sorted(out.glob(".worker-*"))])


def _with_new_defaults(previous, defaults):
    """A saved config with the settings added to DEFAULTS since it was written, at their defaults (a run
    started before a setting existed continues; a changed value of it still counts as another config)."""
    if not isinstance(previous, dict) or not isinstance(defaults, dict):
        return previous
    out = dict(previous)
    for key, value in defaults.items():
        if key not in out:
            out[key] = json.loads(json.dumps(value))
        elif key != "options":
            out[key] = _with_new_defaults(out[key], value)
    return out


def _differences(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in set(a) | set(b):
            yield from _differences(a.get(key), b.get(key), f"{prefix}{key}.")
    elif a != b and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b)):
        yield prefix.rstrip(".")


def finished_run_message(out, previous, data):
    """What a rerun of a finished run says: nothing to do, and that its --data is not used when it names other data
    than the run was trained on (the results printed next are the run's)."""
    other = previous.get("data") not in (None, data)
    return (f"{out} holds a finished run; nothing to do (--overwrite retrains it)."
            + (f" It was trained on {previous['data']}; --data {data} is not used." if other else ""))


def read_results(out):
    path = Path(out) / RESULTS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


@errors_from_tensorflow()
def train(config, data, out, *, val_data=None, test_data=None, overwrite=False, verbose="auto", print_fn=print):
    """Train a resolved config on `data` (SPEC) into the run folder `out`; returns the results dict. A bad sample
    the pipeline meets raises the `DataError` naming it (not TensorFlow's wrapper of it)."""
    import keras

    from hqdepth.models import registry

    registry.check_options(config["model"]["name"], config["model"]["options"])  # before any data is read
    strategy_name = resolve_strategy_name(config["train"]["strategy"])
    if strategy_name != "multiworker":  # importing the augmentations starts TensorFlow: a cluster checks them later
        check_augmentation(config)
    # a cluster reads model.init once its strategy exists (TensorFlow may not run before) and it knows its backups
    initial_weights = prepare_initialisation(
        config, print_fn, read_init=strategy_name != "multiworker" and not _resumes(out, overwrite))
    check_input_size(config, data)
    check_test_frames(config, test_data or data)
    if strategy_name == "multiworker":
        from hqdepth.training.multiworker import train_multiworker

        return train_multiworker(config, data, out, val_data=val_data, test_data=test_data, overwrite=overwrite,
                                 print_fn=print_fn)
    out = Path(out)
    previous = read_results(out)
    if previous and previous.get("status") == "finished" and not overwrite:
        prepare_run_folder(out, config)  # still refuse a different config
        print_fn(finished_run_message(out, previous, data))
        print_summary(previous, print_fn)
        return previous
    out = prepare_run_folder(out, config, overwrite=overwrite)

    policy, tf32 = apply_precision(config)
    strategy = make_strategy(strategy_name)
    replicas = strategy.num_replicas_in_sync
    val_data = val_data or data
    plan = Plan(config, split_length(data, config["data"]["train_split"]), replicas)
    val_count = split_length(val_data, config["data"]["val_split"])
    validation_steps, validation_note = validation_batches(config, val_count, plan.global_batch)
    print_fn(f"run {out}: {recipes_lib.summary_line(config)}")
    print_fn(f"  data {data}: {plan.train_samples} training samples, {val_count} validation samples; "
             f"strategy {strategy_name} ({replicas} replica{'s' * (replicas > 1)}), global batch "
             f"{plan.global_batch}, precision {precision_note(policy, tf32)}"
             f"{', XLA' * bool(config['train']['jit_compile'])}"
             f"{kernel_gradients_note(config)}")
    print_fn(f"  {plan.describe(config)}")
    print_fn(f"  validation every {counted(plan.period, 'step')} on {counted(validation_steps, 'batch')}"
             f"{validation_note}")
    print_shared_splits(config, data, val_data if validation_steps else None, test_data, print_fn)
    check_depth_scale(config, data, print_fn)
    check_focal_zoom(config, print_fn)

    if config["train"]["seed"] is not None:
        keras.utils.set_random_seed(int(config["train"]["seed"]))
    set_determinism(config)
    backup = RunBackupFactory(out, config, data, plan.train_samples)
    state = backup.state()
    backup.check_data(state, print_fn)
    done = (state or {}).get("iterations", 0)
    from hqdepth.data.pipeline import BadRecords

    bad_records = BadRecords()  # skipped samples of this session, over every fit call's dataset
    train_ds = load_split(config, data, config["data"]["train_split"], plan.global_batch, train=True,
                          seed=backup.data_seed, start_batches=done, bad_records=bad_records)
    val_ds = load_split(config, val_data, config["data"]["val_split"], plan.global_batch, train=False)
    if validation_steps:
        check_whole_frames(config, val_data)
    images, depths = fixed_validation_samples(config, val_data, config["train"]["image_samples"])
    geometry = geometry_validation(config, val_data, validation_steps * plan.global_batch, print_fn)

    with strategy.scope():
        # a resume restores the backup, not model.init
        model = build_model(config, initialise=not state, initial_weights=initial_weights)
        initial_weights = None  # the model has them: not kept through training
        loss = build_loss(config)
        apply_batch_groups(model, loss, config, replicas)
        optimizer = build_optimizer(config, plan.steps_per_epoch, plan.total_steps, model)
        metrics = compile_metrics(loss, config)
        check_monitor(config, model, metrics, geometry, validates=bool(validation_steps))
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics,
                      jit_compile=bool(config["train"]["jit_compile"]))
        build_before_fit(model, train_ds)

    position = (state["epoch"], state.get("step_in_epoch", 0)) if state else (0, 0)
    if state:
        print_fn(resuming_line(state, plan))
    callbacks = make_callbacks(config, out, plan, images, depths, backup, steps_done=state and state.get("iterations"),
                               print_fn=print_fn, geometry=geometry)
    if state:
        callbacks[-1].restore(model)  # the RunBackup; also when no step is left (killed after the last backup)
    from hqdepth.training.callbacks import PeriodProgbar, trim_event_files, trim_metrics_csv

    callbacks.insert(-1, PeriodProgbar(plan.periods))  # Keras' bar, numbered by the run's periods across segments
    trim_metrics_csv(out / "metrics.csv", position[0])  # rows of periods the backup does not cover are redone
    trim_event_files(out / "logs", state["iterations"] if state else 0)  # and so are the steps after the backup
    if verbose == "auto":
        verbose = 1 if _interactive() else 2
    start = time.time()
    history = {}
    for initial_epoch, epochs, steps in plan.segments(*position):
        if done != (state or {}).get("iterations", 0) or initial_epoch != position[0]:
            # fit starts a new iterator: the stream continues at the steps done, not from its start
            train_ds = load_split(config, data, config["data"]["train_split"], plan.global_batch, train=True,
                                  seed=backup.data_seed, start_batches=done, bad_records=bad_records)
        with warnings.catch_warnings():
            if config["data"]["skip_bad"]:
                # The training data repeats, so only a validation can run out: its skipped samples (counted) left
                # fewer batches, and Keras' "Your input ran out of data; interrupting training" would be false.
                warnings.filterwarnings("ignore", message="Your input ran out of data")
            result = model.fit(train_ds, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                               validation_data=val_ds if validation_steps else None,
                               validation_steps=validation_steps or None, callbacks=callbacks, verbose=verbose,
                               shuffle=False)  # the pipeline shuffles
        for key, values in result.history.items():
            history.setdefault(key, []).extend(values)
        done = iterations_of(model)
        if model.stop_training:
            break
    status = "stopped: loss became NaN" if _nan(history) else "finished"
    results = finish_run(model, config, out, data, test_data, plan, history, status, time.time() - start, print_fn,
                         steps_at_start=(state or {}).get("iterations", 0), bad_records=bad_records)
    if status == "finished":
        shutil.rmtree(out / "backup", ignore_errors=True)
    print_summary(results, print_fn)
    return results


def set_determinism(config):
    """`train.deterministic`: TensorFlow op determinism (same inputs -> same results on every run, at some
    cost in speed); the seeds are set by the caller from `train.seed`."""
    if config["train"].get("deterministic"):
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def iterations_of(model):
    from hqdepth.training.callbacks import iterations

    return iterations(model)


class RunBackupFactory:
    """The run folder's backup location and state, and the seed of the training data order.

    `data_seed`: `train.seed`, or without one a random seed drawn when the run starts and kept in
    the backup, so a resumed run continues the same data order where it stopped. The backup also keeps the
    training data's SPEC and sample count (`check_data`)."""

    def __init__(self, out, config, data=None, train_samples=None):
        import random

        self.dir = Path(out) / "backup"
        self.every = config["train"]["checkpoint_every_steps"]
        self.data, self.train_samples = data, train_samples
        state = self.state() or {}
        seed = config["train"]["seed"]
        self.data_seed = int(seed) if seed is not None else state.get("data_seed", random.randrange(2**31 - 1))

    def check_data(self, state, print_fn):
        """Refuse to resume on training data of another size than the backup's (the data order and position
        would mean other samples); another SPEC with as many samples is taken as the same data moved, and said."""
        if not state or self.data is None:
            return
        before, count = state.get("data"), state.get("train_samples")
        if count is not None and count != self.train_samples:
            raise ConfigError(
                f"{self.dir.parent}: the backup at step {state.get('iterations', '?')} was written training on "
                f"{before} ({count} samples); --data {self.data} has {self.train_samples}. Resume with the run's data, "
                f"or start afresh with a new --out or --overwrite.")
        if before is not None and before != self.data:
            print_fn(f"  note: resuming on --data {self.data}; the backup was written training on {before} (as many "
                     f"samples, {count}: taken as the same data in another place)")

    def state(self):
        from hqdepth.training.callbacks import RunBackup

        return RunBackup.read_state(self.dir)

    def callback(self, enabled=True, period=None, keep=1):
        from hqdepth.training.callbacks import RunBackup

        return RunBackup(str(self.dir), save_freq=self.every or "epoch", enabled=enabled,
                         extra={"data_seed": self.data_seed, "data": self.data, "train_samples": self.train_samples},
                         steps_per_epoch=period, keep=keep)


def make_callbacks(config, out, plan, images, depths, backup, steps_done=None, chief=True, print_fn=print,
                   geometry=None):
    """The run's callbacks; `geometry` (a `callbacks.GeometryValidation`, from `geometry_validation`) goes
    first, so that the logs every other callback reads carry its `val_dbe_*`, `val_pe_*`, `val_dde_*`."""
    import keras

    from hqdepth.training.callbacks import MetricsCSV, RunCheckpoints, RunProgress, TensorBoardLogger

    train = config["train"]
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        TensorBoardLogger(out / "logs", images, depths, every_steps=train["log_every_steps"], enabled=chief),
        RunCheckpoints(out / "checkpoints", train["monitor"], train["monitor_mode"], train["checkpoint_every_steps"],
                       enabled=chief),
        RunProgress(plan.total_steps, steps_done or 0, train["monitor"], print_fn=print_fn),
    ]
    if chief:
        callbacks.insert(1, MetricsCSV(str(out / "metrics.csv"), append=True))
    if geometry is not None:
        callbacks.insert(0, geometry)
    callbacks.append(backup.callback(enabled=chief, period=plan.period))  # last: saves after the checkpoints and logs are written
    return callbacks


def _interactive():
    import sys

    return sys.stdout.isatty()


def _nan(history):
    loss = history.get("loss", [])
    return bool(loss) and not math.isfinite(loss[-1])


def resuming_line(state, plan):
    """What a run resuming from its backup `state` prints: the step and where in the run's periods it is."""
    period, step = state["epoch"], state.get("step_in_epoch", 0)
    where = (f"period {period + 1}, step {step} of it" if period < plan.periods else
             "every period trained: the run stopped before it finished")
    return f"  resuming from the backup at step {state.get('iterations', '?')} ({where})"


def _floats(logs):
    return {k: float(v[-1] if isinstance(v, list) else v) for k, v in logs.items()}


def _last_logged(out):
    """The last row of the run's metrics.csv as logs (a session that had no step left to train, e.g. killed during
    the test evaluation, has no history of its own); {} without one."""
    import csv

    path = Path(out) / "metrics.csv"
    if not path.is_file():
        return {}
    with path.open() as file:
        rows = list(csv.DictReader(file))
    logs = {}
    for key, value in (rows[-1] if rows else {}).items():
        if key not in ("epoch", "step"):
            try:
                logs[key] = float(value)
            except (TypeError, ValueError):
                pass  # "NA": a column this row has no value in
    return logs


def finish_run(model, config, out, data, test_data, plan, history, status, seconds, print_fn, chief=True,
               steps_at_start=0, bad_records=None):
    """Save the final model, evaluate on the test split, write results.json (chief only); with `bad_records`
    (`data.skip_bad`) the bad training samples met this session (`count`, each once), the reads skipped (`reads`:
    every pass, samples read ahead for steps not taken, and those a resume reads again to find its position) and
    the first messages."""
    from hqdepth.training.callbacks import iterations

    out = Path(out)
    results = {
        "recipe": config["name"], "status": status, "run": str(out), "data": data,
        "steps": iterations(model), "steps_this_session": iterations(model) - steps_at_start,
        "total_steps": plan.total_steps, "global_batch": plan.global_batch,
        "replicas": plan.replicas, "train_seconds_this_session": round(seconds, 1),
        "final_logs": _floats(history) if history else _last_logged(out),
        "model": str(out / "model.keras"), "logs": str(out / "logs"),
    }
    if bad_records is not None and config["data"]["skip_bad"]:
        results["skipped_bad_records_this_session"] = {"count": bad_records.distinct, "reads": bad_records.total,
                                                       "first": bad_records.messages[:5]}
    best = out / "checkpoints" / "best.json"
    if best.is_file():
        results["best"] = {**json.loads(best.read_text()), "path": str(out / "checkpoints" / "best.keras")}
    if not chief:
        return strict_json.finite_or_none(results)
    model.save(out / "model.keras")
    if status == "finished" and config["train"]["test_evaluation"]:
        flip = config["evaluation"]["flip"]
        print_fn(f"test evaluation ({config['evaluation']['protocol']} protocol{', flip' if flip else ''}) on "
                 f"{test_data or data} split {config['data']['test_split']} ...")
        evaluation = evaluate_in_memory(model, config, test_data or data)
        # the model the run ends with (model.keras), not checkpoints/best.keras (chosen on the validation data):
        # `hqdepth evaluate --model RUN` scores the best checkpoint, `--model RUN/model.keras` this one
        results["test"] = {**evaluation.to_dict(), "flip": flip, "model": "final (model.keras)"}
        warning = shared_with_training(config, data, test_data or data, "test")
        if warning:
            results["test"]["warning"] = warning
    from hqdepth.training.callbacks import write_atomically

    results = strict_json.finite_or_none(results)  # as results.json has them: null for a metric that is not finite
    write_atomically(out / RESULTS_FILE, strict_json.dumps(results, indent=1))  # a rerun reads it
    return results


def evaluate_in_memory(model, config, data):
    """The recipe's protocol on the test split (`evaluation.evaluate_source`): each image run as the protocol's
    official test runs the network (`Protocol.test_input`: BTS on the whole NYU frame or the KITTI KB crop at
    native resolution with each frame's focal, HQMD resized to its input, Hu/SARPN on the 228x304 crop; a
    model built for fixed-size crops is rebuilt with a free input size, weights shared), then evaluated at
    full resolution; with `evaluation.ssim` also SSIM of the depth maps (tf.image.ssim, max_val = the
    protocol's or the recipe's max depth); with `evaluation.flip` each prediction is the mean with the mirrored
    prediction of the mirrored image."""
    from hqdepth.data import open_source
    from hqdepth.evaluation import evaluate_source
    from hqdepth.predict import DepthModel

    protocol = protocol_of(config)
    source = open_source(data, split=config["data"]["test_split"])
    evaluation = config["evaluation"]
    return evaluate_source(DepthModel.from_keras(model, config=config), source, protocol,
                           name=f"{data} test sample", limit=evaluation["test_samples"], ssim=evaluation["ssim"],
                           ssim_max_val=protocol.max_depth or evaluation["max_depth"], flip=evaluation["flip"],
                           skip_bad=bool(config.get("data", {}).get("skip_bad")))


def print_summary(results, print_fn=print):
    number = strict_json.number  # results.json holds null for a metric that is not finite
    run = Path(results["run"])
    print_fn("")
    print_fn(f"run {results['recipe']}: {results['status']} after {results['steps']} of {results['total_steps']} steps")
    print_fn(f"  run folder   {run}")
    print_fn(f"  final model  {results['model']}")
    if "best" in results:
        best = results["best"]
        print_fn(f"  best         {best['path']} ({best['monitor']} {number(best['value'])} at step {best['step']})")
    print_fn(f"  TensorBoard  tensorboard --logdir {results['logs']}")
    logs = results.get("final_logs", {})
    if logs:
        shown = ", ".join(f"{k} {number(v)}" for k, v in logs.items() if k in ("loss", "rmse", "val_loss", "val_rmse",
                                                                            "val_abs_rel", "val_d1"))
        print_fn(f"  last logs    {shown}")
    if "test" in results:
        test = results["test"]
        print_fn(f"  test of the final model ({test.get('protocol', '')}, {test.get('count', '?')} images): "
                 + ", ".join(f"{k} {number(v)}" for k, v in test["metrics"].items()))
        if test.get("warning"):
            print_fn(f"  warning: {test['warning']}")
