"""Shared test settings: quiet TensorFlow, fresh Keras state, the real-data folder."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# Tests never touch the network: pretrained files are only read from the cache (hqdepth.weights.pretrained).
os.environ["HQDEPTH_OFFLINE"] = "1"
# Under pytest-xdist (`make test`: 2 workers), each worker's TensorFlow gets its share of the cores instead of
# one thread pool per core each, which made the workers (and the processes tests start) fight over the cores.
# Measured on the 2-core Xeon VM (test_models_other, test_train_other and test_models, -n 2, two rounds
# interleaved): 346 / 323 s with TensorFlow's pools, 314 / 306 s with one intra- and one inter-op thread each;
# the whole suite the same afternoon: 22 min 00 s without, 18 min 12 s with.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    from hqdepth.data.tools import default_workers  # the cores this process may use (no TensorFlow import)

    _SHARE = str(max(1, default_workers() // _WORKERS))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", _SHARE)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", _SHARE)

import pytest  # noqa: E402


# One seed for every random test: HQDEPTH_TEST_SEED, or a fresh one per session. It is printed in the
# report header and beside every failure, so `HQDEPTH_TEST_SEED=N pytest ...` replays a failing run.
TEST_SEED = int(os.environ.get("HQDEPTH_TEST_SEED") or int.from_bytes(os.urandom(4), "little"))
os.environ["HQDEPTH_TEST_SEED"] = str(TEST_SEED)  # pytest-xdist workers (started after this) share the seed


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


# The `slow` tier (`make test-fast` = `-m "not slow"` leaves it out; `make test` runs everything).
# Measured with `pytest --durations` on a 2-core VM: a test is slow when it takes more than about
# 2 s on a quiet machine (full-size models, training runs, fresh TensorFlow processes, conversions).
# Files whose tests share an expensive module fixture (a training run, a converted checkpoint) are
# slow as a whole: marking only the first test would move the fixture's cost to the next one.
# Entries: a file, a test function (all its parameters) or one parametrised node id.
SLOW_TESTS = (
    # whole files
    "tests/test_training_runs.py",
    "tests/test_train_other.py",
    "tests/test_docs_examples.py",
    "tests/test_export.py",
    "tests/test_backends.py",
    "tests/test_weights_slim.py",
    "tests/test_weights_torch.py",
    # single tests
    "tests/test_api.py::test_model_fit_with_the_recipe_pieces_equals_hqdepth_train",
    "tests/test_api.py::test_pieces_can_be_swapped",
    "tests/test_backbone.py::test_output_stride_32_reproduces_keras_applications",
    "tests/test_backbone.py::test_output_stride_16_loads_same_file_and_has_stride_16",
    "tests/test_backbone.py::test_legacy_h5_loads_by_name_and_partial_files_are_refused",
    "tests/test_demo.py::test_precision_probe_returns_a_valid_choice",
    "tests/test_demo.py::test_tiny_demo_writes_summary_and_report",
    "tests/test_docs.py::test_mkdocs_builds_strict_and_offline",
    "tests/test_evaluation.py::test_cli_missing_file_exits_2_without_traceback",
    "tests/test_models.py::test_feature_sizes_at_paper_input_and_output_range",
    "tests/test_models.py::test_keras_round_trip_safe_mode",
    "tests/test_models.py::test_mixed_precision_builds_outputs_float32_and_trains",
    "tests/test_models.py::test_output_is_max_depth_sigmoid_of_logits",
    "tests/test_models.py::test_parameter_count_matches_independent_count",
    "tests/test_models_other.py::test_bts_densenet161_parameter_count",
    "tests/test_models_other.py::test_bts_focal_scaling_round_trip_and_fit",
    "tests/test_models_other.py::test_bts_resnet50_parameter_count_freezing_and_float16",
    "tests/test_models_other.py::test_fcn_autoencoder_float16_and_short_fit",
    "tests/test_models_other.py::test_fcn_autoencoder_size_range_and_round_trip",
    "tests/test_models_other.py::test_mrpan_count_outputs_and_round_trip",
    "tests/test_models_other.py::test_mrpan_deep_supervision_fit_with_a_custom_backbone",
    "tests/test_models_other.py::test_mrpan_sarpn_refine_count_and_single_output_float16",
    "tests/test_models_other.py::test_resnet50_transposed_size_freezing_round_trip_float16_and_fit",
    "tests/test_pipeline.py::test_any_indexed_source_and_errors",
    "tests/test_pipeline.py::test_sharding_with_input_context",
    "tests/test_pipeline.py::test_shuffle_repeat_and_determinism",
    "tests/test_pipeline.py::test_tfrecord_records_without_focal",
    "tests/test_pipeline.py::test_tfrecord_shards_read_natively_give_the_same_samples",
    "tests/test_pipeline.py::test_tfrecord_skip_bad_uses_the_reader_and_counts",
    "tests/test_pipeline.py::test_tfrecord_with_focal_scales_with_the_resize",
    "tests/test_pipeline.py::test_cache_and_infinite_repeat",
    "tests/test_pretrained.py::test_cached_and_local_files_are_used_without_the_network",
    "tests/test_pretrained.py::test_named_initialisations_are_converted_once_from_the_cache",
    "tests/test_pretrained.py::test_a_failed_download_names_the_file_and_the_alternatives",
    "tests/test_protocol_testing.py::test_a_savedmodel_of_fixed_size_is_refused_for_native_testing",
    "tests/test_protocol_testing.py::test_free_size_model_shares_weights_and_keeps_the_fixed_size_result",
    "tests/test_protocol_testing.py::test_predict_runs_a_bts_run_at_the_photo_size",
    "tests/test_protocol_testing.py::test_an_aspect_change_is_never_silent",
)


def _is_slow(nodeid):
    path, _, name = nodeid.partition("::")
    function = name.split("[", 1)[0]
    return any(entry in (path, f"{path}::{function}", nodeid) for entry in SLOW_TESTS)


def pytest_collection_modifyitems(config, items):
    """Mark the tests listed in `SLOW_TESTS` `slow` (tests may also carry `@pytest.mark.slow` themselves)."""
    for item in items:
        if _is_slow(item.nodeid):
            item.add_marker(pytest.mark.slow)


def pytest_collection_finish(session):
    """Exempt what importing the test modules created (TensorFlow, Keras, JAX: about 370,000 objects that live
    as long as the process) from Python's cycle collector: a full collection then walks only what the tests
    made. `clear_session()`'s `gc.collect()` fell from 0.3 s to 0.006 s (2-core Xeon), and so do the
    collections Python starts by itself while TensorFlow traces a graph."""
    import gc

    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _reset_keras_policy(request):
    """Each test starts in float32 with a clean Keras session.

    `clear_session()`'s default `gc.collect()` cost about 0.5 s with TensorFlow loaded before the imports
    were frozen (`pytest_collection_finish`) - over 60 % of the fast tier's time when run after every
    test - so the full collection runs only after a `slow` test (the ones that build full-size models);
    otherwise Python's own collector frees the rest."""
    yield
    if "keras" in __import__("sys").modules:
        import keras

        keras.config.set_dtype_policy("float32")
        keras.backend.clear_session(free_memory=request.node.get_closest_marker("slow") is not None)
