"""Export a trained model for serving: a TensorFlow SavedModel, a lean `.keras` file, or ONNX.

SavedModel (`format="saved_model"`, loads with TensorFlow alone, no hqdepth or Keras code needed):

- `serving_default(images)`: uint8 RGB `[N, H, W, 3]` of any size -> `{"depth": float32 metres [N, H, W, 1]}`
  at the same size. Inside: cast to float, bilinear resize (`tf.image.resize`, half-pixel centres, no
  antialiasing, which is what `cv2.resize` INTER_LINEAR and so `hqdepth predict` do) to the model's input size,
  the model, bilinear resize of the depth back to H x W.
- `serve(images)`: float32 RGB 0..255 `[N, h, w, 3]` at the model's own input size -> `{"depth": [N, h, w, 1]}`.
- `metadata()`: constants `model_name`, `max_depth`, `input_size` ([H, W]; [0, 0] = free), `version` (hqdepth)
  and `json` (everything below, as a JSON string).
- `assets.extra/hqdepth.json`: the same metadata as a file (model name, recipe, max depth, input size,
  package and library versions, signatures).

The weights are saved as variables. `freeze=True` (`--freeze`) writes them into the graph as constants instead
(serving only; `saved_model.pb` then carries them). Before the models used fused batch norm, freezing brought HQMD
baseline+ at 289x385 batch 1 on a 2-core CPU from 1.40x to 1.17x ONNX Runtime's latency; with fused batch norm both
are within noise of each other (1.18x variables, 1.16x frozen, `benchmarks/RESULTS.md`), so the default keeps
variables: the same numbers as Keras, fine-tunable, weights outside the graph proto.

`precision="bfloat16"` (`--precision bfloat16`) computes in bfloat16 except the depth head (`bfloat16_twin`): about
twice as fast on CPUs with bfloat16 units, depths within bfloat16 rounding. Serving processes on a CPU should set
`TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1` (docs/predict-export.md, "Fast CPU serving"): oneDNN then reorders each
convolution's weights once instead of on every call (HQMD baseline+, batch 1: 1.37x -> 0.97x ONNX Runtime).

A model with a free input size (None spatial dims) runs at the run config's `data.input_size` or `input_size`
given here; without either, at `hqdepth.predict.free_size` of the image (computed in the graph).

`format="keras"`: `DIR/model.keras` without optimizer state + `DIR/hqdepth.json`.
`format="onnx"`: `DIR/model.onnx` (Keras 3 `model.export(format="onnx")`, i.e. tf2onnx; float32 RGB 0..255
`[N, h, w, 3]` at the model's input size, no resizing inside; the caller resizes) + `DIR/hqdepth.json`; the
metadata is also stored in the ONNX model's `metadata_props`. Needs `pip install hqdepth[onnx]`.
"""

import copy
import json
import shutil
import time
from pathlib import Path

import numpy as np

from hqdepth.depth_model import EXPORT_METADATA
from hqdepth.errors import ConfigError, DataError
from hqdepth.predict import FREE_SIZE_MAX_SIDE, FREE_SIZE_MULTIPLE, DepthModel, free_size, load

FORMATS = ("saved_model", "keras", "onnx")
PRECISIONS = ("float32", "bfloat16")
METADATA_FILE = EXPORT_METADATA  # beside model.keras / model.onnx, in a SavedModel's assets.extra


def _versions():
    import keras
    import tensorflow as tf

    from hqdepth import __version__

    return {"hqdepth": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__}


def export_size(model, input_size=None):
    """The (H, W) the export runs the model at: its fixed input size, else `input_size`, else the run config's;
    None = free (decided per image, `input_size="free"`: also when the run config gives a size)."""
    if input_size == "free":
        if model.input_size is not None:
            raise ConfigError(f"the model has a fixed input size {model.input_size[0]}x{model.input_size[1]}; it "
                              "cannot be exported with a free one.")
        if model.test_input() == "hu":
            raise ConfigError("the run's recipe tests on the 228x304 crop of the image scaled to 240x320 (nyu-hu), "
                              "which a free-size export does not do: export at a size (--input-size HxW).")
        return None
    if input_size is not None:
        input_size = tuple(int(v) for v in input_size)
        if len(input_size) != 2 or min(input_size) < 1:
            raise ConfigError(f"input size must be two positive integers HxW, got {input_size}.")
    if model.input_size is not None:
        if input_size is not None and input_size != model.input_size:
            raise ConfigError(f"the model has a fixed input size {model.input_size[0]}x{model.input_size[1]}; "
                              f"--input-size {input_size[0]}x{input_size[1]} cannot change it.")
        return model.input_size
    if input_size is not None:
        model.check_size(*input_size, f"--input-size {input_size[0]}x{input_size[1]}")
    return input_size or model.config_size


def metadata(model, size, fmt):
    """The metadata saved with an export (JSON-serialisable)."""
    signatures = {
        "saved_model": {
            "serving_default": "images: uint8 [N, H, W, 3] RGB, any size -> depth: float32 [N, H, W, 1] metres, "
                               "same size (bilinear resize in and out)",
            "serve": "images: float32 [N, h, w, 3] RGB 0..255 at input_size -> depth: float32 [N, h, w, 1] metres",
            "metadata": "no input -> model_name, max_depth, input_size, version, json",
            **({"serving_with_focal": "images: uint8 [N, H, W, 3] RGB, any size; focal: float32 [N] pixels at that "
                                      "size -> depth as serving_default's, x focal (scaled to the run size) / "
                                      f"{model.reference_focal:g}"} if model.reference_focal else {}),
        },
        "keras": {"model.keras": "float32 [N, h, w, 3] RGB 0..255 -> float32 [N, h, w, 1] metres"},
        "onnx": {"model.onnx": "float32 [N, h, w, 3] RGB 0..255 at input_size -> float32 [N, h, w, 1] metres"},
    }[fmt]
    return {
        "format": fmt,
        "model_name": model.name,
        "max_depth": model.max_depth,
        "input_size": list(size) if size else None,
        "free_size_rule": None if size else _rule_text(*model.free_size_rule()),  # (multiple, plus_one, max_side)
        "recipe": model.config,
        "source": str(model.loaded) if model.loaded else model.note,
        "depth_unit": "metres",
        # a focal-aware model (BTS KITTI) runs at this focal (px, at the run size); depth x focal / it for another
        "reference_focal": model.reference_focal,
        "input": "RGB, 0..255 (uint8 for serving_default)",
        "signatures": signatures,
        "versions": _versions(),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# What an export writes: only a folder holding nothing else is replaced by --overwrite.
EXPORT_ENTRIES = {"saved_model.pb", "fingerprint.pb", "variables", "assets", "assets.extra", METADATA_FILE,
                  "model.keras", "model.onnx"}


def _prepare_out(out, overwrite):
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder.")
    entries = list(out.iterdir()) if out.is_dir() else []
    if entries:
        others = sorted(entry.name for entry in entries if entry.name not in EXPORT_ENTRIES)
        if others:  # said first: --overwrite would not help
            raise ConfigError(f"--out {out} holds files that are not from an export ({', '.join(others[:5])}); "
                              "--overwrite replaces only a previous export. Choose a new folder.")
        if not overwrite:
            raise ConfigError(f"--out {out} holds an export; pass --overwrite to replace it.")
        for entry in entries:
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _as_keras_backed(model):
    if isinstance(model, DepthModel):
        depth_model = model
    elif isinstance(model, (str, Path)):
        depth_model = load(model)
    else:
        depth_model = DepthModel.from_keras(model)
    if depth_model.keras_model is None:
        raise ConfigError(f"{depth_model.loaded} is already a SavedModel; export needs a .keras file or a training "
                          "run folder.")
    return depth_model


def export(model, out, format="saved_model", input_size=None, overwrite=False, opset=None, freeze=False,
           precision="float32"):
    """Export `model` (a path, `DepthModel` or `keras.Model`) to the folder `out`. Returns
    {"format", "path" (what to load), "metadata"}. `freeze`: SavedModel weights as graph constants.
    `precision="bfloat16"`: the SavedModel computes in bfloat16 (`bfloat16_twin`), inputs and depth float32."""
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}.")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown export precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    for option, used in (("--freeze", freeze), ("--precision bfloat16", precision != "float32")):
        if used and format != "saved_model":
            raise ConfigError(f"{option} applies to the SavedModel format only, not {format!r}.")
    model = _as_keras_backed(model)
    size = export_size(model, input_size)
    if format == "onnx" and size is None:
        raise ConfigError("an ONNX export needs a fixed input size: pass --input-size HxW (the model takes any size"
                          f"{'' if input_size == 'free' else ' and no run config gives one'}).")
    if format == "onnx":
        _check_onnx_available()
    meta = metadata(model, size, format)
    if format == "saved_model":
        meta["weights"] = "frozen into the graph (serving only)" if freeze else "variables"
        meta["precision"] = precision
    out = _prepare_out(out, overwrite)
    if format == "saved_model":
        net = bfloat16_twin(model.keras_model) if precision == "bfloat16" else model.keras_model
        _write_saved_model(model, net, out, size, meta, freeze)
        path = out
    elif format == "keras":
        path = out / "model.keras"
        model.keras_model.save(path)
        (out / METADATA_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    else:
        path = out / "model.onnx"
        _write_onnx(model, path, size, meta, opset)
        (out / METADATA_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return {"format": format, "path": path, "metadata": meta}


# ---------------------------------------------------------------------------------------------- SavedModel


def _rule_text(multiple, plus_one, max_side=FREE_SIZE_MAX_SIDE):
    return (f"image scaled so that its longer side is <= {max_side}, each side rounded to the nearest "
            f"{multiple}k{'+1' if plus_one else ''}")


def _tf_free_size(height, width, multiple=FREE_SIZE_MULTIPLE, plus_one=True, max_side=FREE_SIZE_MAX_SIDE):
    """`hqdepth.predict.free_size` in TensorFlow ops (float64, floor(x + 0.5) rounding as there)."""
    import tensorflow as tf

    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    scale = tf.minimum(tf.constant(1.0, tf.float64), float(max_side) / tf.maximum(h, w))
    offset = 1 if plus_one else 0

    def side(value):
        k = tf.maximum(tf.constant(1.0, tf.float64), tf.floor((value * scale - offset) / multiple + 0.5))
        return tf.cast(k, tf.int32) * multiple + offset

    return tf.stack([side(h), side(w)])


def bfloat16_twin(net):
    """A copy of the functional model `net` computing in bfloat16 (Keras' `mixed_bfloat16` policy: float32
    weights, bfloat16 arithmetic) except its depth head (`_depth_head`: the last conv and what follows it, e.g. the
    upsampling of the logits and the sigmoid scaling to metres, stay float32, or depths of 4-10 m would round to
    3-6 cm steps).

    On CPUs with bfloat16 units (AMX, AVX512-BF16) oneDNN runs the convolutions at about twice the float32 rate;
    the depth then differs from the float32 model's by the rounding of bfloat16 activations (measured in
    docs/predict-export.md, "Fast CPU serving")."""
    import keras

    config = net.get_config()
    head = _depth_head(net, config)

    def retype(node, in_head=False):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy" and not in_head:
                return {**node, "config": {**node["config"], "name": "mixed_bfloat16"}}
            return {key: retype(value, in_head) for key, value in node.items()}
        if isinstance(node, (list, tuple)):
            return [retype(value, in_head) for value in node]
        return node

    config["layers"] = [retype(layer, layer["name"] in head) for layer in config["layers"]]
    twin = keras.Model.from_config(config)
    twin.set_weights(net.get_weights())
    return twin


def _depth_head(net, config):
    """Names of the layers of functional model `net` (`config` its config) from its outputs back to the first layer
    with weights on each path, that one included (inputs excluded): the output layer alone would leave the logits
    conv of a model that upsamples its logits in bfloat16."""
    inbound = {layer["name"]: [entry[0] for entry in _keras_histories(layer.get("inbound_nodes", []))]
               for layer in config["layers"]}
    inputs = {entry[0] for entry in _keras_histories(config["input_layers"])}
    head, paths = set(), [entry[0] for entry in _keras_histories(config["output_layers"])]
    while paths:
        name = paths.pop()
        if name in head or name in inputs:
            continue
        head.add(name)
        if not net.get_layer(name).weights:
            paths += inbound[name]
    return head


def _keras_histories(node):
    """Every [layer name, node index, tensor index] reference inside a piece of a functional config."""
    if isinstance(node, dict):
        if "keras_history" in node:
            yield node["keras_history"]
            return
        for value in node.values():
            yield from _keras_histories(value)
    elif isinstance(node, (list, tuple)):
        if len(node) == 3 and isinstance(node[0], str) and all(isinstance(v, int) for v in node[1:]):
            yield node
            return
        for value in node:
            yield from _keras_histories(value)


def _write_saved_model(model, net, out, size, meta, freeze):
    import tensorflow as tf

    from hqdepth import __version__

    height, width = size if size else (None, None)
    multiple, plus_one, max_side = model.free_size_rule()
    model_spec = tf.TensorSpec([None, height, width, 3], tf.float32, name="images")

    @tf.function(input_signature=[model_spec])
    def network(images):
        return tf.cast(net(images, training=False), tf.float32)

    if freeze:
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        frozen = convert_variables_to_constants_v2(network.get_concrete_function())

        def depth_of(images):
            return tf.nest.flatten(frozen(images))[0]
    else:
        depth_of = network

    def photo_depth(images):
        """Depth at the photos' size and the width they ran at."""
        shape = tf.shape(images)
        height, width = shape[1], shape[2]
        pixels = tf.cast(images, tf.float32)
        target = tf.constant(size, tf.int32) if size else _tf_free_size(
            height, width, multiple=multiple, plus_one=plus_one, max_side=max_side)
        depth = depth_of(tf.image.resize(pixels, target, method="bilinear"))
        return tf.image.resize(depth, tf.stack([height, width]), method="bilinear"), target[1], width

    def serving_default(images):
        return {"depth": photo_depth(images)[0]}

    def serving_with_focal(images, focal):
        # as the model's FocalScaling layer: depth x focal / reference, the focal scaled to the size the photo ran at
        depth, run_width, width = photo_depth(images)
        scale = focal * tf.cast(run_width, tf.float32) / tf.cast(width, tf.float32) / model.reference_focal
        return {"depth": depth * tf.reshape(scale, [-1, 1, 1, 1])}

    text = json.dumps(meta)

    def metadata_fn():
        return {"model_name": tf.constant(str(model.name)),
                "max_depth": tf.constant(float("nan") if model.max_depth is None else model.max_depth, tf.float32),
                "input_size": tf.constant(list(size) if size else [0, 0], tf.int32),
                "version": tf.constant(__version__),
                "json": tf.constant(text)}

    module = tf.Module()
    if not freeze:
        module.variables_of_model = list(net.variables)  # tracked: saved as variables
    module.serving_default = tf.function(serving_default,
                                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    module.serve = tf.function(lambda images: {"depth": depth_of(images)}, input_signature=[model_spec])
    module.metadata = tf.function(metadata_fn, input_signature=[])
    names = ["serving_default", "serve", "metadata"]
    if model.reference_focal:
        module.serving_with_focal = tf.function(serving_with_focal, input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.uint8, name="images"), tf.TensorSpec([None], tf.float32, name="focal")])
        names.append("serving_with_focal")
    signatures = {name: getattr(module, name).get_concrete_function() for name in names}
    try:
        # Serving needs no gradients; saving the resize's custom gradient fails on frozen graphs.
        tf.saved_model.save(module, str(out), signatures=signatures,
                            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    except Exception as error:
        raise DataError(f"cannot write the SavedModel to {out}: {error}") from None
    extra = out / "assets.extra"
    extra.mkdir(exist_ok=True)
    (extra / METADATA_FILE).write_text(json.dumps(meta, indent=1) + "\n")


# -------------------------------------------------------------------------------------------------- ONNX


def _check_onnx_available():
    missing = []
    for module in ("tf2onnx", "onnx"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ConfigError(f"ONNX export needs {' and '.join(missing)}: pip install 'hqdepth[onnx]' "
                          "(tf2onnx, onnx, onnxruntime).")


def _write_onnx(model, path, size, meta, opset=None):
    import warnings

    import keras
    import onnx

    spec = keras.InputSpec(shape=(None, *size, 3), dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # tf2onnx probes np.object
        try:
            model.keras_model.export(str(path), format="onnx", input_signature=[spec], opset_version=opset,
                                     verbose=False)
        except Exception as error:
            raise DataError(f"ONNX conversion failed: {type(error).__name__}: {error}") from None
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in (("hqdepth", json.dumps(meta)), ("model_name", str(model.name)),
                       ("max_depth", repr(model.max_depth)), ("input_size", json.dumps(list(size)))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


# ------------------------------------------------------------------------------------------------ checks


def check_export(model, result, seed=0):
    """Max |exported - Keras| (metres) on random images: [(description, max abs difference)].

    For a SavedModel: serving_default at the model size and at a non-model size, and serve; for ONNX the
    onnxruntime session at the model size; for keras the reloaded file. `model` is the exported `DepthModel`.
    """
    from hqdepth.predict import predict_images

    model = _as_keras_backed(model)
    rng = np.random.default_rng(seed)
    exported_size = result["metadata"]["input_size"]
    multiple, plus_one, max_side = model.free_size_rule()
    size = exported_size or list(free_size(65, 97, multiple, max_side=max_side, plus_one=plus_one))
    reference = model
    if exported_size and model.input_size is None:
        # a free-size Keras model (a BTS run's) exported at `size`: the SavedModel resizes every image to it
        reference = copy.copy(model)
        reference.size_override = tuple(exported_size)
    elif not exported_size and model.config_size is not None:
        # exported free although the run has a size: the SavedModel rounds each image by the free-size rule
        reference = copy.copy(model)
        reference.config_size = None
    fmt, path = result["format"], Path(result["path"])
    report = []
    base = rng.integers(0, 256, (2, *size, 3), dtype=np.uint8)
    expected = model(base.astype(np.float32))
    if fmt == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        got = loaded.signatures["serve"](images=tf.constant(base.astype(np.float32)))["depth"].numpy()[..., 0]
        report.append((f"serve {size[0]}x{size[1]}", float(np.abs(got - expected).max())))
        got = loaded.signatures["serving_default"](images=tf.constant(base))["depth"].numpy()[..., 0]
        report.append((f"serving_default {size[0]}x{size[1]}", float(np.abs(got - expected).max())))
        other = rng.integers(0, 256, (2, size[0] + 23, size[1] + 41, 3), dtype=np.uint8)
        # (random sizes: the aspect change of their resize is expected, not news to the user)
        want = np.stack(predict_images(reference, list(other.astype(np.float32)), warn=lambda note: None))
        got = loaded.signatures["serving_default"](images=tf.constant(other))["depth"].numpy()[..., 0]
        report.append((f"serving_default {other.shape[1]}x{other.shape[2]}", float(np.abs(got - want).max())))
    elif fmt == "onnx":
        try:
            import onnxruntime
        except ImportError:
            raise ConfigError("checking an ONNX export needs onnxruntime: pip install 'hqdepth[onnx]'.") from None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        got = session.run(None, {name: base.astype(np.float32)})[0][..., 0]
        report.append((f"onnxruntime {size[0]}x{size[1]}", float(np.abs(got - expected).max())))
    else:
        reloaded = load(path)
        got = reloaded(base.astype(np.float32))
        report.append((f"reloaded .keras {size[0]}x{size[1]}", float(np.abs(got - expected).max())))
    return report
