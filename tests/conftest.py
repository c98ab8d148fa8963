"""Shared test settings: quiet TensorFlow, fresh Keras state, the real-data folder."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402


@pytest.fixture
def realdata():
    """The shared real RGB-D samples (HQDEPTH_REALDATA); tests using it skip when it is unset."""
    folder = os.environ.get("HQDEPTH_REALDATA")
    if not folder:
        pytest.skip("HQDEPTH_REALDATA is not set")
    path = Path(folder)
    if not path.is_dir():
        pytest.fail(f"HQDEPTH_REALDATA={folder} is not a directory")
    return path.resolve()  # tests write paths into list files read from other folders


@pytest.fixture(autouse=True)
def _reset_keras_policy():
    """Each test starts in float32 with a clean Keras session."""
    yield
    if "keras" in __import__("sys").modules:
        import keras

        keras.config.set_dtype_policy("float32")
        keras.backend.clear_session()
