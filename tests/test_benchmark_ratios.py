"""benchmarks/run_all.py's ratios to the matmul rate (issue 17): which matmul each figure is divided by.

The headline figure divides the median step by the median of the matmuls timed between the steps in the same process
(the interleaved measurement `cpu_step.py --local-matmul` records); the lower bound divides the median step by the best
matmul anywhere in the run. Synthetic numbers, so that each definition gives a different value and a mix-up fails.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_run_all():
    # experiments/ has a `common` module too: let the benchmark script import its own, then put things back.
    saved = {name: sys.modules.pop(name) for name in ("common", "report") if name in sys.modules}
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("bench_run_all", BENCHMARKS / "run_all.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
        for name in ("common", "report"):
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    return module


def measurement(step_gflops, seconds, matmuls, cpu_gflops):
    """One mode's row as cpu_step.py writes it: steps of `step_gflops` GFLOP taking `seconds`, a matmul rate timed
    before each step and after the last."""
    import statistics

    achieved = step_gflops / statistics.median(seconds)
    return {"achieved_gflops": achieved, "achieved_gflops_best": step_gflops / min(seconds),
            "gflops_per_cpu_s": cpu_gflops, "seconds": seconds, "local_matmul_gflops": matmuls,
            "local_flops_ratio": achieved / statistics.median(matmuls)}


def test_headline_ratio_is_the_step_over_the_matmuls_between_its_steps():
    run_all = load_run_all()
    bf16_train = measurement(1000.0, [2.0, 2.5, 4.0], [500.0, 540.0, 380.0, 300.0], 800.0)
    results = {
        "matmul": {"float32": {"gflops_best": 300.0, "gflops_per_cpu_s": 200.0},
                   "bfloat16": {"gflops_best": 560.0, "gflops_per_cpu_s": 400.0}},
        "matmul_end": {"bfloat16": {"gflops_best": 1190.0}},  # a burst at the end of the run
        "cpu": {"hqmd_baseline_plus": {
            "float32": {"modes": {"train": measurement(600.0, [3.0, 3.0], [250.0, 250.0, 250.0], 150.0)}},
            "mixed_bfloat16": {"modes": {"train": bf16_train,
                                         "infer": measurement(100.0, [0.5, 0.5], [900.0, 1000.0, 950.0], 300.0)}},
        }},
    }
    run_all.finalize_ratios(results)
    entry = results["cpu"]["hqmd_baseline_plus"]
    # The median step (2.5 s: 400 GFLOP/s) over the median of the four matmuls between the steps (440).
    assert entry["train_flops_ratio_bf16"] == pytest.approx(400 / 440)
    # The best bfloat16 matmul of the run is the 1190 burst at the end (not a bfloat16 inference neighbour, 1000).
    assert results["matmul_reference"]["bfloat16"]["gflops"] == 1190.0
    assert entry["train_flops_ratio_bf16_vs_best_matmul"] == pytest.approx(400 / 1190)
    assert entry["train_flops_ratio_bf16_best_step"] == pytest.approx(500 / 1190)
    assert entry["train_flops_ratio_bf16_per_cpu_s"] == pytest.approx(800 / 400)
    assert entry["train_flops_ratio_bf16_vs_f32_matmul"] == pytest.approx(400 / 300)
    # float32 against float32 matmuls only (the best is the start stage's 300, not any bfloat16 one).
    assert entry["train_flops_ratio"] == pytest.approx(200 / 250)
    assert entry["train_flops_ratio_vs_best_matmul"] == pytest.approx(200 / 300)
    assert results["cpu"]["hqmd_baseline_plus"]["mixed_bfloat16"]["modes"]["infer"]["flops_ratio"] == pytest.approx(
        200 / 950)
