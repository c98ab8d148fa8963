"""Shared test settings: quiet TensorFlow, fresh Keras state, the real-data folder."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402


# One seed for every random test: HQDEPTH_TEST_SEED, or a fresh one per session. It is printed in the
# report header and beside every failure, so `HQDEPTH_TEST_SEED=N pytest ...` replays a failing run.
TEST_SEED = int(os.environ.get("HQDEPTH_TEST_SEED") or int.from_bytes(os.urandom(4), "little"))


def pytest_report_header(config):
    return f"HQDEPTH_TEST_SEED={TEST_SEED} (set it to replay the random tests of this run)"


def pytest_configure(config):
    """Print the reason of every skip in the summary (`-rs`), also under `make test`'s -q."""
    chars = config.option.reportchars or ""
    if "s" not in chars and "a" not in chars and "A" not in chars:
        config.option.reportchars = chars + "s"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.sections.append(("random seed", f"replay with HQDEPTH_TEST_SEED={TEST_SEED}"))


@pytest.fixture
def test_seed(request):
    """The session's seed mixed with the test's name: tests draw different numbers, all replayable."""
    import zlib

    return (TEST_SEED + zlib.crc32(request.node.nodeid.encode())) % 2**32


@pytest.fixture
def rng(test_seed):
    """A NumPy generator seeded from HQDEPTH_TEST_SEED (see `test_seed`)."""
    import numpy as np

    return np.random.default_rng(test_seed)


def _realdata_required():
    """Under CI (CI=true) with ../shared/realdata beside the project, real-data tests must run."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "realdata"
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") and shared.is_dir()


@pytest.fixture
def realdata():
    """The shared real RGB-D samples (HQDEPTH_REALDATA); tests using it skip when it is unset, and fail
    instead under CI when ../shared/realdata exists (a CI that forgot to set it must not pass silently)."""
    folder = os.environ.get("HQDEPTH_REALDATA")
    if not folder:
        if _realdata_required():
            pytest.fail("HQDEPTH_REALDATA is not set, but CI=true and ../shared/realdata exists: set "
                        "HQDEPTH_REALDATA to that folder (.ci/run does).")
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
