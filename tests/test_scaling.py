"""benchmarks/scaling.py: the all-reduce arithmetic against a simulated ring, and the counts it uses against the model.

The simulation below moves real NumPy chunks around a ring (reduce-scatter, then all-gather), checks that
every member ends with the sum, and times each step as the slowest link's bytes / bandwidth + one latency:
a derivation independent of the closed formulas in the script.
"""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_scaling():
    spec = importlib.util.spec_from_file_location("bench_scaling", ROOT / "benchmarks" / "scaling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


scaling = load_scaling()


def simulate_ring(values, bandwidth, alpha, bytes_per_element=4):
    """Ring all-reduce of `values` (members x elements). Returns (result per member, seconds)."""
    n, elements = values.shape
    chunks = np.array_split(np.arange(elements), n)
    buffers = values.astype(np.float64).copy()
    seconds = 0.0
    # Reduce-scatter: at step s member i sends chunk (i - s) mod n to member i + 1, which adds it.
    for step in range(n - 1):
        sent = [(i, (i - step) % n, buffers[i, chunks[(i - step) % n]].copy()) for i in range(n)]
        for i, c, data in sent:
            buffers[(i + 1) % n, chunks[c]] += data
        seconds += alpha + max(len(data) for _, _, data in sent) * bytes_per_element / bandwidth
    # Member i now holds the full sum of chunk (i + 1) mod n. All-gather: pass the finished chunks on.
    for step in range(n - 1):
        sent = [(i, (i + 1 - step) % n, buffers[i, chunks[(i + 1 - step) % n]].copy()) for i in range(n)]
        for i, c, data in sent:
            buffers[(i + 1) % n, chunks[c]] = data
        seconds += alpha + max(len(data) for _, _, data in sent) * bytes_per_element / bandwidth
    return buffers, seconds


@pytest.mark.parametrize("members", [2, 3, 4, 8])
def test_ring_formula_matches_a_simulated_ring(members):
    rng = np.random.default_rng(members)
    elements = 64 * members  # divisible: every chunk the same size, as the closed formula assumes
    values = rng.normal(size=(members, elements))
    bandwidth, alpha = 12.5e9, 20e-6
    result, seconds = simulate_ring(values, bandwidth, alpha)
    np.testing.assert_allclose(result, np.broadcast_to(values.sum(axis=0), result.shape), rtol=1e-12, atol=1e-12)
    assert seconds == pytest.approx(scaling.ring_allreduce_s(4 * elements, members, bandwidth, alpha), rel=1e-12)
    # and the textbook form: 2 (N-1) steps of S/N bytes each
    assert seconds == pytest.approx(2 * (members - 1) * (alpha + 4 * elements / members / bandwidth), rel=1e-12)


def test_ring_edge_cases_and_large_message_limit():
    assert scaling.ring_allreduce_s(1e9, 1, 1e9, 1.0) == 0.0
    # Bytes each member sends approach 2 S as N grows: the bandwidth term never exceeds 2 S / B.
    s, b = 160.6e6, 12.5e9
    times = [scaling.ring_allreduce_s(s, n, b) for n in (2, 4, 64, 4096)]
    assert times == sorted(times) and times[-1] < 2 * s / b
    assert times[0] == pytest.approx(s / b)


def test_hierarchical_reduces_to_the_ring_and_matches_a_simulation():
    s, b_in, b_out, a_in, a_out = 4 * 40_000_000, 400e9, 12.5e9, 5e-6, 20e-6
    assert scaling.hierarchical_allreduce_s(s, 8, 1, b_in, b_out, a_in, a_out) == pytest.approx(
        scaling.ring_allreduce_s(s, 8, b_in, a_in))
    assert scaling.hierarchical_allreduce_s(s, 1, 4, b_in, b_out, a_in, a_out) == pytest.approx(
        scaling.ring_allreduce_s(s, 4, b_out, a_out))
    # g GPUs x M machines: reduce-scatter + all-gather inside (half a ring each), and g concurrent rings of
    # S/g across machines whose traffic shares one link per machine (bandwidth b_out / g each).
    g, m = 4, 3
    elements = g * m * 10
    rng = np.random.default_rng(0)
    values = rng.normal(size=(g * m, elements))
    _, inside = simulate_ring(values[:g], b_in, a_in)
    shards = np.stack([values[k * g:(k + 1) * g].sum(axis=0)[: elements // g] for k in range(m)])
    _, across = simulate_ring(shards, b_out / g, a_out)
    assert scaling.hierarchical_allreduce_s(4 * elements, g, m, b_in, b_out, a_in, a_out) == pytest.approx(
        inside + across, rel=1e-12)


def test_step_model_and_rows():
    plain, overlapped = scaling.step_model(0.03, 0.01, 0.002, train_factor=3.0, tail_fraction=0.0)
    assert plain == pytest.approx(0.042)
    assert overlapped == pytest.approx(0.032)  # all-reduce hidden under a 20 ms backward
    plain, overlapped = scaling.step_model(0.03, 0.05, 0.0, train_factor=3.0, tail_fraction=0.2)
    assert overlapped == pytest.approx(0.01 + 0.04 + 0.01)
    rows = scaling.gpu_rows(61.35)
    single = [r for r in rows if r["gpus"] == 1]
    assert single and all(r["efficiency"] == 1.0 and r["syncbn_ms"] == 0 for r in single)
    for r in rows:
        assert r["global_batch"] == scaling.BATCH * r["gpus"]
        assert r["efficiency"] <= r["efficiency_overlap"] <= r["efficiency_best"] <= 1.0
        assert r["compute_ms"] == pytest.approx(
            1e3 * 3 * 61.35e9 * 8 / (scaling.GPUS[r["gpu"]]["peak_tflops"] * 1e12 * r["utilisation"]))
    assert scaling.small_allreduce_s(1, 1) == 0.0
    assert scaling.small_allreduce_s(8, 2) == pytest.approx(
        scaling.LATENCY["launch_s"] + 2 * 3 * scaling.LATENCY["nvlink_s"] + 2 * 1 * scaling.LATENCY["network_s"])
    assert math.isclose(4 * scaling.TRAINABLE_PARAMS / 1e6, 160.649284)


def test_counts_equal_the_models():
    """The trainable parameters (the gradients all-reduced), all parameters and synchronised batch norms of the
    recipe's model; none depends on the input size, so a tiny one is built."""
    from shape_helpers import shapes_only

    from hqdepth.flops import count_flops

    with shapes_only():  # counts and FLOPs read shapes only: the random initial values are not drawn
        model = scaling.recipe_model((33, 49))[1]
    assert scaling.trainable_count(model) == scaling.TRAINABLE_PARAMS
    assert model.count_params() == scaling.ALL_PARAMS
    assert scaling.sync_bn_layers(model) == scaling.SYNC_BN_LAYERS

    # Training FLOPs: every product once forward, once for its input gradient (not the stem, whose input is
    # the image) and once for its kernel gradient (not the frozen stem and first stage, conv1_* / conv2_*; the
    # resizes are element-wise work, no products).
    count = count_flops(model)
    frozen = [e for e in count.layers if e.macs and e.name.startswith(("conv1_", "conv2_"))]
    assert frozen and all(not model.get_layer(e.name).trainable for e in frozen)
    stem = 2 * sum(e.macs for e in count.layers if e.name == "conv1_conv")
    train = scaling.training_flops(model, count)
    assert train["forward"] == count.flops
    assert train["input_grad"] == count.flops - stem
    assert not [e for e in count.layers if e.macs and e.kind == "BilinearResize"]
    assert train["weight_grad"] == count.flops - 2 * sum(e.macs for e in frozen)
    assert 2.8 < train["factor"] < 3.0
