"""Backend-agnostic model/loss code: the JAX backend gives the TensorFlow backend's numbers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).with_name("backend_check.py")


def run_backend(backend, folder, save_weights=False):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", "JAX_PLATFORMS": "cpu"}
    if backend == "jax":  # XLA compile time dominates on a CPU (HQMD: 175 -> 149 s); numerics within the tolerances
        env["XLA_FLAGS"] = " ".join([env.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0",
                                     "--xla_llvm_disable_expensive_passes=true"]).strip()
    command = [sys.executable, str(SCRIPT), str(folder), backend] + (["--save-weights"] if save_weights else [])
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]


def test_jax_backend_matches_tensorflow_on_every_model(tmp_path):
    """HQMD, then the FCN autoencoder, ResNet-50 + transposed convs, BTS, MRPAN and their losses: the same weights
    give the same numbers (one process per backend)."""
    pytest.importorskip("jax")
    run_backend("tensorflow", tmp_path, save_weights=True)
    run_backend("jax", tmp_path)
    check_hqmd(tmp_path)
    check_other_models(tmp_path)


def read(folder, backend, part):
    return json.loads((folder / f"{backend}.{part}.json").read_text())


def check_hqmd(folder):
    tf_result, jax_result = read(folder, "tensorflow", "hqmd"), read(folder, "jax", "hqmd")
    assert tf_result["backend"] == "tensorflow" and jax_result["backend"] == "jax"
    for name, value in tf_result["losses"].items():
        assert jax_result["losses"][name] == pytest.approx(value, abs=1e-5), name
    for key in ("output_mean", "train_loss_step1"):
        assert jax_result[key] == pytest.approx(tf_result[key], abs=1e-5), key
    # The SGD update of the decoder/ASPP weights agrees. Not to 1e-5: on a randomly initialised
    # ResNet the gradients are ill-conditioned (batch-norm backprop cancels large terms), so
    # TensorFlow alone changes them by ~2% with oneDNN on or off; a wrong gradient differs by O(1).
    tf_update = np.concatenate([v.ravel() for v in np.load(folder / "tensorflow.hqmd.json.update.npz").values()])
    jax_update = np.concatenate([v.ravel() for v in np.load(folder / "jax.hqmd.json.update.npz").values()])
    assert np.linalg.norm(tf_update) > 0
    assert np.linalg.norm(jax_update - tf_update) / np.linalg.norm(tf_update) < 0.05
    tf_change = tf_result["train_loss_step2"] - tf_result["train_loss_step1"]
    jax_change = jax_result["train_loss_step2"] - jax_result["train_loss_step1"]
    assert tf_change < 0 and jax_change < 0  # the step lowers the loss in both


def check_other_models(folder):
    tf_result, jax_result = read(folder, "tensorflow", "other"), read(folder, "jax", "other")
    assert jax_result["backend"] == "jax" and set(jax_result["losses"]) == set(tf_result["losses"])
    for name, value in tf_result["losses"].items():
        assert jax_result["losses"][name] == pytest.approx(value, abs=1e-5), name
    tf_outputs = np.load(folder / "tensorflow.other.json.outputs.npz")
    jax_outputs = np.load(folder / "jax.other.json.outputs.npz")
    assert sorted(tf_outputs.files) == sorted(jax_outputs.files) and len(tf_outputs.files) == 8  # mrpan: 5 scales
    for key in tf_outputs.files:
        expected, actual = tf_outputs[key], jax_outputs[key]
        assert actual.shape == expected.shape, key
        assert float(actual.mean()) == pytest.approx(float(expected.mean()), abs=1e-5), key
        # Element-wise: 1e-5 of the output's range (FCN, BTS: [0, 1]; MRPAN is linear, up to ~10). The
        # random ResNet-50 in batch-norm training mode over 2x2 maps amplifies float32 round-off to
        # ~2e-5 in resnet50_transposed (a wrong op differs by > 0.1 there).
        scale = max(1.0, float(np.abs(expected).max())) * (5.0 if key.startswith("resnet50") else 1.0)
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5 * scale, err_msg=key)


def test_gpu_benchmark_trains_on_jax_without_tensorflow():
    """`benchmarks/gpu.py` (the GPU machine has JAX but no TensorFlow and no network) runs the hqmd_plus_full step:
    random backbone weights instead of the recipe's ImageNet file, and no TensorFlow import anywhere on the way
    (`--block-tensorflow` makes one an error). A CPU smoke run of its worker."""
    pytest.importorskip("jax")
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "HQDEPTH_OFFLINE": "1",
           "XLA_FLAGS": "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"}
    command = [sys.executable, str(root / "benchmarks" / "gpu.py"), "--worker", "ours", "--size", "17x25", "--batch",
               "1", "--steps", "1", "--warmup", "1", "--metrics", "none", "--precision", "float32", "--block-tensorflow"]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=root)
    assert completed.returncode == 0, completed.stderr[-3000:]
    (line,) = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(line[len("RESULT "):])
    assert "error" not in result and result["tensorflow_imported"] is False, result
    assert result["images_per_s"] > 0 and np.isfinite(result["loss"])
