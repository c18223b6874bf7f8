"""The event-driven solver against a brute-force potential, and early crossings."""

from __future__ import annotations

import numpy as np
import pytest

import exactsnn
from exactsnn.simulator import event as E
from exactsnn.simulator import kernels as K
from exactsnn.simulator import first_crossings

keras = pytest.importorskip("keras")


def brute_force_first_crossing(times, weights, alpha, theta, t_start, t_end, dt=1e-5):
    """First grid time where V(t) = α(t − t_start) + Σ_j J_j (t − max(t_j, t_start))^+ reaches ϑ."""
    grid = np.arange(t_start, t_end + dt, dt)
    tj = np.maximum(times, t_start)
    v = alpha * (grid - t_start) + (weights[None, :] * np.maximum(grid[:, None] - tj[None, :], 0.0)).sum(1)
    hit = np.flatnonzero(v >= theta)
    return grid[hit[0]] if hit.size else np.inf


def test_first_crossings_match_a_brute_force_potential():
    rng = np.random.default_rng(0)
    for _ in range(200):
        f = rng.integers(1, 8)
        times = rng.uniform(0, 2, f)
        w = rng.normal(0, 1.5, f)
        alpha = rng.uniform(0.2, 1.5)
        theta = rng.uniform(-0.2, 3)
        order = np.argsort(times)
        got = first_crossings(times[order][None], w[order][None, :, None], np.array([[alpha]]), np.array([[theta]]), 0.0)[0, 0]
        want = brute_force_first_crossing(times, w, alpha, theta, 0.0, 6.0)
        if np.isinf(want):
            assert got > 6.0 - 1e-5
        else:
            assert abs(got - want) <= 2e-5


def _potential_at_inputs(times, weights, alpha, t_start):
    """V at every input time (where its maximum on [t_start, T] is, V being piecewise linear)."""
    return alpha * (times - t_start) + (weights[None, :] * np.maximum(times[:, None] - times[None, :], 0.0)).sum(1)


def test_the_split_bound_of_the_walk_never_certifies_a_neuron_that_reaches_threshold():
    rng = np.random.default_rng(5)
    t_start, horizon = 0.5, 3.0
    certified = 0
    for _ in range(3000):
        f = int(rng.integers(1, 40))
        # Many inputs at the horizon (value 0), the rest anywhere in the window.
        times = np.where(rng.uniform(size=f) < 0.4, horizon, rng.uniform(t_start, horizon, f))
        w = rng.normal(0, 1.0, f) * rng.choice([0.1, 1.0, 10.0])
        alpha = rng.uniform(0.5, 1.5)
        v = _potential_at_inputs(np.append(times, horizon), np.append(w, 0.0), alpha, t_start)
        theta = v.max() * rng.uniform(0.8, 1.3) + rng.uniform(-0.1, 0.1)
        if K._stays_below(times, w, alpha, theta, t_start, horizon):
            certified += 1
            assert v.max() < theta
    assert certified > 300  # the bound is not vacuous


def test_the_bin_bound_of_the_walk_never_certifies_a_neuron_that_reaches_threshold():
    """Also with inputs exactly on bin edges and at t_start, and potentials peaking mid-window
    (early excitation, late inhibition), where the split bound gives up."""
    rng = np.random.default_rng(8)
    t_start, horizon = 0.5, 3.0
    bins = K._BINS
    edges_t = t_start + (horizon - t_start) * np.arange(bins) / bins
    certified = beyond_split = 0
    for _ in range(3000):
        f = int(rng.integers(1, 60))
        times = rng.uniform(t_start, horizon, f)
        kind = rng.uniform(size=f)
        times = np.where(kind < 0.3, horizon, np.where(kind < 0.45, rng.choice(edges_t, f), times))
        w = np.where(times < (t_start + horizon) / 2, 1.0, -1.0) * rng.uniform(0, 1.0, f) * rng.choice([0.1, 1.0, 10.0])
        w = np.where(rng.uniform(size=f) < 0.2, -w, w)
        alpha = rng.uniform(0.5, 1.5)
        v = _potential_at_inputs(np.append(times, horizon), np.append(w, 0.0), alpha, t_start)
        theta = v.max() * rng.uniform(0.8, 1.3) + rng.uniform(-0.1, 0.1)
        order, bounds, edges = np.empty(f, np.int64), np.empty(bins + 1, np.int64), np.empty(bins + 1)
        K._bin_inputs(times, t_start, horizon, order, bounds, edges)
        assert np.all(np.diff(bounds) >= 0) and bounds[-1] == np.sum(times < horizon)
        if K._bins_below(times, w, alpha, theta, t_start, order, bounds, edges):
            certified += 1
            beyond_split += not K._stays_below(times, w, alpha, theta, t_start, horizon)
            assert v.max() < theta
    assert certified > 300 and beyond_split > 50  # not vacuous, and tighter where it matters


def test_the_walk_with_a_horizon_reports_only_crossings_before_it():
    rng = np.random.default_rng(6)
    t_start, horizon = 0.0, 2.0
    fields = 400
    times = np.where(rng.uniform(size=(fields, 12)) < 0.3, horizon, rng.uniform(t_start, horizon, (fields, 12)))
    JT = rng.normal(0, 1.0, (3, 12))
    chans = rng.integers(0, 3, fields)
    alpha = rng.uniform(0.5, 1.5, fields)
    theta = rng.uniform(0.0, 4.0, fields)
    starts = np.arange(fields + 1)
    full = K.walk(E._time_rows(times), starts, chans, JT, alpha, theta, t_start, np.full(fields, np.inf), False)
    early = K.walk(E._time_rows(times), starts, chans, JT, alpha, theta, t_start, np.full(fields, horizon), True)
    before = full < horizon
    assert before.any() and (~before).any()
    np.testing.assert_allclose(early[before], full[before], rtol=0, atol=1e-12)
    assert np.all(np.isnan(early[~before]))
    # The bounds only skip walks: without them (the event engine) the result is the same.
    walked = K.walk(E._time_rows(times), starts, chans, JT, alpha, theta, t_start, np.full(fields, horizon), False)
    np.testing.assert_array_equal(walked, early)


def test_the_float32_certificate_never_certifies_past_the_exact_bound():
    """Thresholds from 1e-8 to 1e-2 (relative) on either side of the exact bound: where float32
    rounding of W⁺x could decide, the margin must keep the neuron uncertified."""
    import tensorflow as tf

    from exactsnn.simulator.fastpath import CompiledLayer
    from exactsnn.synapses import DenseSynapses
    from exactsnn.spiking import SpikingLayer

    rng = np.random.default_rng(7)
    F, C, S = 50, 4000, 1.0
    W = rng.normal(0, 0.3, (F, C))
    W -= (W.sum(0) - 0.5) / F  # Σ_j W_ij = 0.5
    x = rng.uniform(0, S, (1, F)) * (rng.uniform(size=(1, F)) < 0.7)
    p, wx = x @ np.maximum(W, 0.0), x @ W
    cm, neg = 1.0 - W.sum(0), np.minimum(W, 0.0).sum(0)
    a0, n0 = S + p / cm, (wx - p) / cm
    n1 = n0 - S * neg / cm
    mu = np.clip(a0 / (n1 - n0), 0.0, 1.0)
    exact = np.maximum(a0 + mu * n0, mu * n1)[0]  # the tightest bound of this family
    theta = exact * (1.0 + rng.choice([-1.0, 1.0], C) * 10.0 ** rng.uniform(-8, -2, C))
    layer = DenseSynapses("d", W, np.zeros(C), (F,))
    sl = SpikingLayer(layer, 0.0, S, 2 * S, theta, np.ones(C))
    left = CompiledLayer(sl).step((tf.constant(x),))[2].numpy()  # (sample, neuron)
    certified = np.ones(C, bool)
    certified[left[:, 1]] = False
    assert not np.asarray(CompiledLayer(sl).constants.static).any()
    assert np.all(exact[certified] < theta[certified])
    assert certified.any() and (theta > exact).sum() > certified.sum()  # the margin costs a little


def test_layers_of_the_same_shapes_share_the_fused_pass_but_not_their_constants():
    """Two dense layers of one shape, their thresholds far above and below every potential:
    each keeps its own certificate and spike times while one compilation of the fused pass
    (fastpath._shared) serves both."""
    import tensorflow as tf

    from exactsnn.neurons import AlphaNeuron
    from exactsnn.simulator.fastpath import CompiledLayer, _certify, _shared
    from exactsnn.synapses import DenseSynapses
    from exactsnn.spiking import SpikingLayer

    rng = np.random.default_rng(5)
    F, C, S = 37, 23, 1.0
    x = tf.constant(rng.uniform(0, S, (3, F)))
    steps = []
    fused = _shared(_certify)
    for k, scale in enumerate((1e3, 1e-3)):
        W = rng.normal(0, 0.2, (F, C))
        W -= (W.sum(0) - 0.4) / F
        layer = DenseSynapses(f"d{k}", W, rng.normal(0, 0.1, C), (F,))
        sl = SpikingLayer(layer, 0.0, S, 2 * S + k, np.full(C, scale), np.ones(C))
        before = fused.experimental_get_tracing_count()
        x_out, counts, left = CompiledLayer(sl).step((x,), True, 0)[:3]
        steps.append((before, fused.experimental_get_tracing_count()))
        # Its own closed form (t_max differs) and its own certificate.
        c, g = (np.broadcast_to(v, (C,)) for v in AlphaNeuron.closed_form(sl.threshold, sl.alpha, 0.0, S, W.sum(0)))
        np.testing.assert_allclose(x_out.numpy(), sl.t_max - np.minimum(c - g * (x.numpy() @ W), sl.t_max),
                                   rtol=0, atol=1e-12)
        assert (len(left), int(counts.numpy()[3])) == ((0, 0) if k == 0 else (3 * C, 3 * C))
    assert steps[1][1] >= 1  # the layers' steps ran through the shared function
    assert steps[1][1] == steps[1][0]  # and the second layer traced nothing new


def test_the_packed_counts_of_the_fused_pass_are_the_counts():
    """fastpath._counts sums three flags per int64 word: every count is right for rows of up
    to thousands of neurons, all set or none, with shapes known or not at trace time (XLA,
    reduce_retracing: the fused pass is traced with unknown dimensions)."""
    import tensorflow as tf

    from exactsnn.simulator.fastpath import _counts

    rng = np.random.default_rng(11)
    packed = tf.function(lambda *f: _counts(f), jit_compile=True, reduce_retracing=True, autograph=False)
    for shape in [(3, 4095), (2, 5, 7, 2048), (1, 1), (4, 3, 3, 1), (2, 9, 9, 300)]:
        # p = 1: a field at its largest, every neuron of every row (random() < 1 always).
        flags = [rng.random(shape) < p for p in (0.0, 1.0, 0.5, 0.999, 0.001, 0.3)]
        expected = [int(f.sum()) for f in flags]
        assert packed(*(tf.constant(f) for f in flags)).numpy().tolist() == expected, shape


@pytest.mark.parametrize("bins, groups", [(4, 1), (8, 1), (3, 2), (4, 4)])
def test_the_edge_majorant_never_certifies_past_the_potential(bins, groups):
    """A wide dense layer (fan-in 1500, mixed signs, 40 % of the inputs at t_min): thresholds
    from 1e-8 to 3 (relative) on either side of the potential's true maximum over the input
    window, taken at every input (V is piecewise linear).  The edge majorant, float32 products
    and all, must leave every neuron with ϑ ≤ max V uncertified, and certify most of those with
    ϑ > 1.5 max V (at fan-ins like this the convex one certifies few), whether the excess is
    one product or split by bin into ``groups``."""
    import tensorflow as tf

    from exactsnn.synapses import DenseSynapses
    from exactsnn.simulator.fastpath import CompiledLayer
    from exactsnn.spiking import SpikingLayer

    rng = np.random.default_rng(11)
    F, C, S = 1500, 600, 3.0
    W = rng.normal(0, 1.0 / np.sqrt(F), (F, C))
    W -= np.maximum(W.sum(0) - 0.9, 0.0) / F  # Σ_j W_ij ≤ 0.9
    x = rng.gamma(1.5, 0.4, (1, F)).clip(0, S) * (rng.uniform(size=(1, F)) < 0.6)
    alpha = rng.uniform(0.8, 1.2, C)
    inv = 1.0 / (1.0 - W.sum(0))
    breaks = np.concatenate([[0.0, S], x[0]])
    v = np.stack([alpha * (S - s) + (np.maximum(x - s, 0.0) @ W)[0] * inv for s in breaks])
    top = v.max(0)
    assert np.all(top > 0)
    theta = top * (1.0 + rng.choice([-1.0, 1.0], C) * 10.0 ** rng.uniform(-8, 0.5, C))
    layer = DenseSynapses("d", W, np.zeros(C), (F,))
    sl = SpikingLayer(layer, 0.0, S, 2 * S, theta, alpha)
    compiled = CompiledLayer(sl)
    assert not np.asarray(compiled.constants.static).any()
    left = compiled.step((tf.constant(x),), False, bins, groups)[2].numpy()
    certified = np.ones(C, bool)
    certified[left[:, 1]] = False
    assert np.all(top[certified] < theta[certified])
    assert certified[theta > 1.5 * top].mean() > 0.5
    if groups > 1:  # each bin with only its group's excess: never looser than one product
        assert len(left) <= len(compiled.step((tf.constant(x),), False, bins, 1)[2])
    convex_left = compiled.step((tf.constant(x),), True, 0)[2].numpy()
    assert C - len(convex_left) < 0.5 * certified.sum()


def _early_crossing_model():
    L = keras.layers
    model = keras.Sequential([keras.Input((2,)), L.Dense(1, activation="relu"), L.Dense(1)])
    # Σ W = 0.5 needs no scaling; the late input (value 0) has the positive weight.
    model.layers[0].set_weights([np.array([[2.0], [-1.5]]), np.array([2.3])])
    model.layers[1].set_weights([np.array([[1.0]]), np.array([0.0])])
    return model


@pytest.mark.parametrize("engine", ["fast", "event"])
def test_a_neuron_crossing_before_its_last_input_is_reported(engine):
    model = _early_crossing_model()
    x = np.array([[0.0, 1.0]])  # x1 = 0 spikes at t = 1 (late), x2 = 1 at t = 0 (early)
    snn = exactsnn.convert(model, x)
    sl = snn.hidden_layers[0]
    relu_value = max(2.3 - 1.5, 0.0)
    sim = exactsnn.simulate(snn, x, engine=engine, record=True)
    spike = sim.spike_times[0][0, 0]
    # The real neuron: potential from t_min^(0) = 0 with the inputs' actual times.
    J = sl.J[:, 0]
    want = brute_force_first_crossing(np.array([1.0, 0.0]), J, 1.0, sl.threshold[0], 0.0, sl.t_max)
    assert spike < sl.t_max - relu_value - 1e-3  # earlier than the ReLU value says
    assert abs(spike - want) <= 2e-5
    assert sim.deviating[0] == 1
    assert sim.fallback >= 1


def test_window_overflow_is_counted():
    L = keras.layers
    model = keras.Sequential([keras.Input((1,)), L.Dense(1, activation="relu"), L.Dense(1)])
    model.layers[0].set_weights([np.array([[0.5]]), np.array([0.0])])
    model.layers[1].set_weights([np.array([[1.0]]), np.array([0.0])])
    snn = exactsnn.convert(model, np.array([[0.1]]))  # X_1 = 0.05, window 0.075
    sim = exactsnn.simulate(snn, np.array([[1.0]]))  # value 0.5 does not fit the window
    assert sim.deviating[0] == 1


def test_noise_is_reproducible_and_independent_of_batching():
    L = keras.layers
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), L.Dense(8, activation="relu"), L.Dense(5, activation="relu"), L.Dense(3)])
    x = np.random.default_rng(1).uniform(0, 1, (12, 6))
    snn = exactsnn.convert(model, x)
    a = exactsnn.simulate(snn, x, noise_sigma=0.01, noise_seed=4, batch_size=12, record=True)
    b = exactsnn.simulate(snn, x, noise_sigma=0.01, noise_seed=4, batch_size=5, record=True)
    c = exactsnn.simulate(snn, x, noise_sigma=0.01, noise_seed=5, batch_size=12)
    d = exactsnn.simulate(snn, x[5:], noise_sigma=0.01, noise_seed=4, sample_offset=5)
    e = exactsnn.simulate(snn, x, noise_sigma=0.01, noise_seed=4, engine="event", record=True)
    assert np.array_equal(a.logits, b.logits)
    assert not np.array_equal(a.logits, c.logits)
    np.testing.assert_array_equal(d.logits, a.logits[5:])
    for s1, s2 in zip(a.spike_times, e.spike_times):  # fast = event, to the bit (see test_mapping)
        np.testing.assert_array_equal(s1, s2)


@pytest.mark.parametrize("engine", ["fast", "event"])
def test_results_do_not_depend_on_the_batch_size(engine):
    L = keras.layers
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(4, 3, padding="same", activation="relu"), L.MaxPooling2D(),
                              L.Flatten(), L.Dense(5, activation="relu"), L.Dense(3)])
    x = np.random.default_rng(3).uniform(0, 1, (13, 6, 6, 2))
    snn = exactsnn.convert(model, x)
    whole = exactsnn.simulate(snn, x, engine=engine, batch_size=13, record=True)
    parts = exactsnn.simulate(snn, x, engine=engine, batch_size=4, record=True)
    # Equal up to round-off: the convolutions may block a batch of 4 differently from one of 13.
    np.testing.assert_allclose(parts.logits, whole.logits, rtol=0, atol=1e-12)
    for a, b in zip(parts.spike_times, whole.spike_times):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    for key in ("deviating", "spikes", "nonzero"):
        np.testing.assert_array_equal(getattr(parts, key), getattr(whole, key))
    assert (parts.certified, parts.fallback) == (whole.certified, whole.fallback)


def test_alpha_noise_changes_spikes_but_not_parameters():
    L = keras.layers
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), L.Dense(8, activation="relu"), L.Dense(3)])
    x = np.random.default_rng(1).uniform(0, 1, (10, 6))
    clean = exactsnn.convert(model, x)
    noisy = exactsnn.convert(model, x, alpha_sigma=1e-3, alpha_seed=7)
    again = exactsnn.convert(model, x, alpha_sigma=1e-3, alpha_seed=7)
    np.testing.assert_array_equal(noisy.hidden_layers[0].threshold, clean.hidden_layers[0].threshold)
    np.testing.assert_array_equal(noisy.hidden_layers[0].alpha, again.hidden_layers[0].alpha)
    assert np.abs(noisy.hidden_layers[0].alpha - 1).max() > 0
    fast = exactsnn.simulate(noisy, x, record=True)
    event = exactsnn.simulate(noisy, x, engine="event", record=True)
    np.testing.assert_array_equal(fast.spike_times[0], event.spike_times[0])
    assert np.abs(fast.spike_times[0] - exactsnn.simulate(clean, x, record=True).spike_times[0]).max() > 0


def test_b1_spikes_only_for_positive_values_and_counts_synaptic_events():
    L = keras.layers
    model = keras.Sequential([keras.Input((3,)), L.Dense(2, activation="relu"), L.Dense(1)])
    model.layers[0].set_weights([np.array([[0.6, -1.0], [0.3, -0.5], [0.0, 0.0]]), np.array([0.0, 0.0])])
    model.layers[1].set_weights([np.array([[1.0], [1.0]]), np.array([0.25])])
    x = np.array([[0.4, 0.2, 0.0]])  # third input is zero: silent in B1
    snn = exactsnn.convert(model, x, neuron="b1")
    sim = exactsnn.simulate(snn, x, record=True)
    t = sim.spike_times[0][0]
    sl = snn.hidden_layers[0]
    assert np.isclose(t[0], sl.t_max - 0.3) and np.isinf(t[1])  # Σ W = 0.9: no scaling
    assert sim.spikes[0] == 1 and sim.deviating[0] == 0
    # 2 input spikes × 2 hidden neurons + 1 hidden spike × 1 read-out neuron
    assert sim.synaptic_events == 5.0
    np.testing.assert_allclose(sim.logits, [[0.55]], atol=1e-12)
    alpha = exactsnn.simulate(exactsnn.convert(model, x), x)
    assert alpha.synaptic_events == 3 * 2 + 2 * 1


def test_b1_window_overflow_fires_at_t_min_and_is_counted():
    L = keras.layers
    model = keras.Sequential([keras.Input((1,)), L.Dense(1, activation="relu"), L.Dense(1)])
    model.layers[0].set_weights([np.array([[0.5]]), np.array([0.0])])
    model.layers[1].set_weights([np.array([[1.0]]), np.array([0.0])])
    snn = exactsnn.convert(model, np.array([[0.1]]), neuron="b1")
    sim = exactsnn.simulate(snn, np.array([[1.0]]), record=True)
    assert sim.spike_times[0][0, 0] == snn.hidden_layers[0].t_min
    assert sim.deviating[0] == 1


@pytest.mark.parametrize("engine", ["fast", "event"])
def test_thresholds_edited_after_a_simulation_are_simulated(engine):
    """The engines keep per-layer constants with the layer; an edit of ϑ (in place, after a
    run) must reach the next run, as if the edited network had been loaded afresh."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), L.Dense(8, activation="relu"), L.Dense(3)])
    x = np.random.default_rng(1).uniform(0, 1, (10, 6))
    snn = exactsnn.convert(model, x)
    before = exactsnn.simulate(snn, x, engine=engine)
    assert before.deviating.sum() == 0
    snn.layers[0].threshold[...] *= 0.5
    after = exactsnn.simulate(snn, x, engine=engine, record=True)
    fresh = exactsnn.simulate(_reloaded(snn), x, engine=engine, record=True)
    assert after.deviating.sum() > 0
    np.testing.assert_array_equal(after.logits, fresh.logits)
    np.testing.assert_array_equal(after.spike_times[0], fresh.spike_times[0])


def _reloaded(net):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        net.save(Path(d) / "net.npz")
        return exactsnn.load(Path(d) / "net.npz")


def test_a_wide_layer_simulates_in_batches_of_any_size():
    """A layer with fan-in ≥ 512 starts with the edge majorant, whose compiled input pass
    samples its histogram by the per-sample size: a short last batch retraces the step with
    the batch dimension unknown (where reshaping also loses the per-sample size)."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,)), L.Dense(64, activation="relu"), L.Dense(10)])
    x = np.random.default_rng(0).uniform(0, 1, (7, 784))
    snn = exactsnn.convert(model, x)
    whole = exactsnn.simulate(snn, x, batch_size=7, record=True)
    parts = exactsnn.simulate(snn, x, batch_size=3, record=True)
    scale = np.abs(whole.logits).max()
    np.testing.assert_allclose(parts.logits, whole.logits, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(parts.spike_times[0], whole.spike_times[0], rtol=0, atol=1e-12 * scale)
    assert parts.certified + parts.fallback == whole.certified + whole.fallback == 7 * 64
