"""Both engines against a brute-force reference of the α-model (tests/reference.py).

Inside the exact regime the reference must reproduce the scaled ReLU network (which
validates the reference); outside it — ζ ≤ 0, spike-time noise, edited thresholds — the
engines must follow the α-model as the reference simulates it: inputs count from their own
arrival, also before t_start; the threshold is the stored ϑ; the read-out reads raw times.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest

import exactsnn

import reference as ref
import random_networks as rn

keras = pytest.importorskip("keras")

ZETAS = [0.5, 0.0, -0.3, -0.5]
NOISE = [(0.05, 0.5), (0.05, 0.0)]  # (σ, ζ)
RTOL = 1e-9


def run(net, x, engine="fast", **kwargs):
    """One simulation by the library, spike times recorded (the one place that names its API).
    Inputs beyond the input range are simulated as they are: these tests study that regime."""
    return exactsnn.simulate(net, x, engine=engine, record=True, allow_outside_range=True, **kwargs)


def assert_close(got, want, what: str, rtol: float = RTOL):
    """|got − want| ≤ rtol · max(1, |want|) everywhere, with a message that sizes the error."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, want {want.shape}"
    err = np.abs(got - want) / np.maximum(1.0, np.abs(want))
    bad = ~(err <= rtol)
    if bad.any():
        i = np.unravel_index(np.nanargmax(np.where(bad, np.nan_to_num(err, nan=np.inf), -1.0)), err.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {err.size} values off, max relative error "
            f"{np.nanmax(np.nan_to_num(err, nan=np.inf)):.3g} (at {tuple(int(v) for v in i)}: got {got[i]!r}, want {want[i]!r})"
        )


# --------------------------------------------------------------------------- networks


def _conv_a():
    L = keras.layers
    return keras.Sequential([
        keras.Input((8, 8, 2)),
        L.Conv2D(3, 5, padding="same"), L.ReLU(),
        L.Conv2D(4, 3, strides=2, padding="valid"), L.ReLU(),
        L.Conv2D(3, 1, padding="same"), L.ReLU(),
        L.Flatten(), L.Dense(4),
    ])


def _conv_b():
    L = keras.layers
    return keras.Sequential([
        keras.Input((9, 9, 1)),
        L.MaxPooling2D(2, strides=1, padding="same"),  # a pool of the input times
        L.Conv2D(3, 3, strides=2, padding="same"), L.MaxPooling2D(2, strides=1, padding="same"), L.ReLU(),
        L.Conv2D(4, 5, strides=2, padding="same"), L.ReLU(),
        L.Conv2D(3, 1, strides=2, padding="valid"), L.ReLU(),
        L.Flatten(), L.Dense(3),
    ])


def _bn_pool():
    """BN after the ReLU with negative scales, folded through a max pool (pools of latest spikes),
    and an explicit zero padding before a pool (pads spiking at t_max)."""
    L = keras.layers
    return keras.Sequential([
        keras.Input((8, 8, 2)),
        L.Conv2D(4, 3, padding="same"), L.ReLU(), L.BatchNormalization(),
        L.MaxPooling2D(2, strides=2, padding="valid"),
        L.Conv2D(3, 3, padding="same"), L.ReLU(),
        L.ZeroPadding2D(1), L.MaxPooling2D(2, strides=2),
        L.Flatten(), L.Dense(3),
    ])


def _residual_dense():
    L = keras.layers
    inp = keras.Input((6,))
    x = L.Dense(6, activation="relu")(inp)
    h = L.Dense(5, activation="relu")(x)
    x = L.ReLU()(L.Add()([x, L.Dense(6)(h)]))
    return keras.Model(inp, L.Dense(3)(x))


def _residual_conv():
    """A conv residual block with an identity shortcut, then one with a strided projection."""
    L = keras.layers
    inp = keras.Input((6, 6, 2))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(3, 3, padding="same")(inp)))
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(3, 3, padding="same")(x)))
    h = L.BatchNormalization()(L.Conv2D(3, 3, padding="same")(h))
    x = L.ReLU()(L.Add()([h, x]))
    h = L.ReLU()(L.Conv2D(4, 3, strides=2, padding="same")(x))
    h = L.Conv2D(4, 1, padding="same")(h)
    x = L.ReLU()(L.Add()([h, L.Conv2D(4, 3, strides=2, padding="same")(x)]))  # a padded, delayed skip
    return keras.Model(inp, L.Dense(3)(L.Flatten()(x)))


def _avg_conv():
    """Average pooling folded into the next convolution: a kernel on an input cropped to the
    rows and columns the pool used (7 → 6)."""
    L = keras.layers
    return keras.Sequential([
        keras.Input((7, 7, 2)),
        L.Conv2D(3, 3, padding="same"), L.ReLU(),
        L.AveragePooling2D(2),
        L.Conv2D(4, 3, padding="same"), L.ReLU(),
        L.Flatten(), L.Dense(3),
    ])


def _dense():
    L = keras.layers
    return keras.Sequential([
        keras.Input((16,)), L.Dense(32, activation="relu"), L.Dense(16, activation="relu"), L.Dense(5),
    ])


BUILDERS = {
    "dense": (_dense, (16,)),
    "conv_a": (_conv_a, (8, 8, 2)),
    "conv_b": (_conv_b, (9, 9, 1)),
    "bn_pool": (_bn_pool, (8, 8, 2)),
    "residual_dense": (_residual_dense, (6,)),
    "residual_conv": (_residual_conv, (6, 6, 2)),
    "avg_conv": (_avg_conv, (7, 7, 2)),
}
NETWORKS = list(BUILDERS)


@functools.lru_cache(maxsize=None)
def network(name: str, seed: int = 0):
    """(model, preprocessed network, x_sample, x_test) of one fixed random network.

    Biases N(0, 0.2²), random BN statistics with half the scales negative, inputs U(−3, 3)
    with X_n from 256 samples.  Of the 24 test inputs 18 are fresh; 6 are the sample inputs
    that drive the first hidden layer highest, scaled by 1.25 (beyond the input range: raw
    inputs are not clipped, they spike before t = 0), so that at ζ = 0 some first-layer
    values exceed the window and spike before t_min — inputs before the next layer's t_start.
    """
    from exactsnn.importers.keras import import_keras
    from exactsnn.preprocess import preprocess

    build, shape = BUILDERS[name]
    keras.utils.set_random_seed(seed)
    model = build()
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            gamma = rng.uniform(0.5, 1.5, c) * np.where(np.arange(c) % 2, -1.0, 1.0)
            layer.set_weights([gamma, rng.normal(0.0, 0.5, c), rng.normal(0.0, 0.3, c), rng.uniform(0.5, 2.0, c)])
    rn.randomise_biases(model, rng, scale=0.2)
    x_sample = rng.uniform(-3.0, 3.0, (256,) + shape)
    prep = preprocess(import_keras(model), x_sample, input_range=(-3.0, 3.0))
    _, hidden = prep.forward(x_sample, return_hidden=True)
    top = np.argsort(hidden[0].reshape(len(x_sample), -1).max(axis=1))[-6:]
    x_test = np.concatenate([rng.uniform(-3.0, 3.0, (18,) + shape), 1.25 * x_sample[top]])
    return model, prep, x_sample, x_test


def snn(name: str, zeta: float):
    """A fresh spiking network (the engines cache compiled constants on its layers)."""
    from exactsnn.spiking import spiking_network

    return spiking_network(network(name)[1], zeta=zeta)


# --------------------------------------------------------------------------- the walk


def _potential(t, times, weights):
    """V(t) = Σ_events w (t − t_event)⁺ on a grid (the α onset is one of the events)."""
    return (weights[None, :] * np.maximum(t[:, None] - times[None, :], 0.0)).sum(1)


def test_the_walk_of_one_neuron_matches_its_potential_on_a_fine_grid():
    rng = np.random.default_rng(0)
    dt = 1e-4
    checked = 0
    for _ in range(300):
        f = int(rng.integers(1, 8))
        times = np.round(rng.uniform(-1.0, 2.0, f + 1), 1)  # ties on purpose
        weights = rng.normal(0.0, 1.5, f + 1)
        theta = rng.uniform(-0.2, 2.0)
        t_max = 4.0
        got = ref.first_spike(times, weights, theta, t_max)
        grid = np.arange(times.min(), t_max + dt, dt)
        v = _potential(grid, times, weights)
        hit = np.flatnonzero(v >= theta)
        want = min(grid[hit[0]], t_max) if hit.size else t_max
        if theta <= 0:
            assert got == times.min()
            continue
        assert want - dt - 1e-12 <= got <= want + 1e-12, (times, weights, theta, got, want)
        assert got == t_max or _potential(np.array([got]), times, weights)[0] >= theta - 1e-9
        checked += got < t_max
    assert checked > 100


def test_the_vectorised_walk_equals_the_walk_of_one_neuron():
    rng = np.random.default_rng(1)
    M, E = 2000, 9
    times = np.round(rng.uniform(-1.0, 3.0, (M, E)), 1)  # many ties
    weights = rng.normal(0.0, 1.0, (M, E))
    theta = rng.uniform(-0.3, 3.0, M)
    got = ref.first_spikes(times, weights, theta, 3.5)
    want = np.array([ref.first_spike(times[i], weights[i], theta[i], 3.5) for i in range(M)])
    assert_close(got, want, "vectorised walk", rtol=1e-12)
    assert (got < 3.5).sum() > 500 and (got == 3.5).sum() > 100


def _hand_network(theta=None):
    """2 inputs → 1 hidden neuron → 1 read-out, built from the data objects.

    W = (2, −1.5), b = 0: S = 0.5, J = (4, −3); X = 1, ζ = 0.5: t_start = 0, t_min = 1,
    t_max = 2.5, ϑ = 2.5 + 1.5 · 1 − 0 = 4.  Read-out W = 1, b = 0: α = 0.
    """
    from exactsnn.preprocess import DenseSynapses, PreprocessedNetwork
    from exactsnn.spiking import spiking_network

    hidden = DenseSynapses("h", np.array([[2.0], [-1.5]]), np.array([0.0]), (2,))
    out = DenseSynapses("o", np.array([[1.0]]), np.array([0.0]), (1,), relu=False, source=0)
    net = spiking_network(PreprocessedNetwork((2,), (0.0, 1.0), [hidden, out], [], np.array([1.0])), zeta=0.5)
    if theta is not None:
        net.layers[0].threshold[...] = theta
    return net


@pytest.mark.parametrize("theta, spike", [
    # x = (1.25, 0): inputs at t = −0.25 (J = 4, before t_start = 0) and t = 1 (J = −3).
    # On [−0.25, 0] V = 4 (t + 0.25), V(0) = 1; on [0, 1] V = 5 t + 1: ϑ = 4 at t = 0.6,
    # before the inhibitory input (an early crossing; clamping the input to t_start would give
    # 0.8, and the ReLU value 2 · 1.25 = 2.5 says t_max − 2.5 = 0).
    (None, 0.6),
    (0.5, -0.125),  # crossed before t_start, on the early input alone: 4 (t + 0.25) = 0.5
    (-1.0, -0.25),  # ϑ ≤ 0: fires at the earliest event
    (8.0, 2.0),  # V(1) = 6 < 8; then V = 5 t + 1 − 3 (t − 1) = 2 t + 4 = 8 at t = 2
    (20.0, 2.5),  # 2 t + 4 = 20 at t = 8: never before t_max
])
def test_one_neuron_with_an_early_input_by_hand(theta, spike):
    x = np.array([[1.25, 0.0]])
    r = ref.simulate(_hand_network(theta), x)
    assert r.spikes[0][0, 0] == pytest.approx(spike, abs=1e-12)
    assert r.logits[0, 0] == pytest.approx(2.5 - spike, abs=1e-12)  # α_out = 0, W_out = 1, t_min = 2.5
    assert r.early_inputs[0] == 1
    assert r.deviating[0] == 1  # the ReLU value is 2.5: t_max − 2.5 = 0 ≠ the spike
    for engine in ("fast", "event"):
        sim = run(_hand_network(theta), x, engine)
        assert_close(sim.spike_times[0], r.spikes[0], f"{engine} engine, hidden spike")
        assert_close(sim.logits, r.logits, f"{engine} engine, logits")
        assert sim.deviating[0] == 1


def test_a_second_hand_sample_and_the_read_out():
    """x = (0, 1): inputs at t = 1 (J = 4) and t = 0 (J = −3), with the α onset at 0: V = −2 t
    on [0, 1], then V = −2 + 2 (t − 1) = 4 at t = 4 > t_max: the spike is at t_max = 2.5 (the
    ReLU value max(−1.5, 0) = 0: no deviation) and the logit α_out · 1.5 + (2.5 − 2.5) = 0."""
    net = _hand_network()
    x = np.array([[1.25, 0.0], [0.0, 1.0]])
    r = ref.simulate(net, x)
    np.testing.assert_allclose(r.spikes[0][:, 0], [0.6, 2.5], atol=1e-12)
    np.testing.assert_allclose(r.logits[:, 0], [1.9, 0.0], atol=1e-12)
    assert r.deviating[0] == 1
    for engine in ("fast", "event"):
        sim = run(_hand_network(), x, engine)
        assert_close(sim.logits, r.logits, f"{engine} engine, logits")
        assert sim.deviating[0] == 1


def test_noise_streams_by_hand():
    """Sample k draws from default_rng([seed, offset + k]): the inputs' noise first (then
    t = max(t, 0)), then the hidden layer's (not clipped); the read-out adds nothing for a
    hidden spike after its t_min."""
    x = np.array([[1.25, 0.0], [0.3, 0.6], [0.9, 0.05]])
    sigma, seed, offset = 0.4, 11, 7
    r = ref.simulate(_hand_network(), x, noise_sigma=sigma, noise_seed=seed, sample_offset=offset)
    logits = []
    for k in range(len(x)):
        rng = np.random.default_rng([seed, offset + k])
        t_in = np.maximum(1.0 - x[k] + rng.normal(0.0, sigma, 2), 0.0)
        np.testing.assert_array_equal(r.fields[0][k, 0], t_in)
        clean = ref.first_spike(np.append(t_in, 0.0), [4.0, -3.0, 1.0], 4.0, 2.5)
        assert r.spikes[0][k, 0] == pytest.approx(clean, abs=1e-12)
        noisy = clean + rng.normal(0.0, sigma, 1)[0]
        assert r.noisy_spikes[0][k, 0] == pytest.approx(noisy, abs=1e-12)
        logits.append(max(2.5 - noisy, 0.0))
    np.testing.assert_allclose(r.logits[:, 0], logits, rtol=0, atol=1e-12)
    assert r.late_inputs[-1] > 0  # a hidden spike after the read-out's t_min = 2.5
    _compare(_hand_network, x, noise_sigma=sigma, noise_seed=seed, sample_offset=offset)


# --------------------------------------------------------------------------- exact regime


@pytest.mark.parametrize("name", NETWORKS)
def test_reference_is_the_relu_network_in_the_exact_regime(name):
    """ζ = 0.5, no noise, on the inputs X_n was taken from: logits = the scaled ReLU network's
    (and the Keras model's), spike times = t_max − ReLU values, nothing deviates."""
    from exactsnn.importers.keras import keras_logits

    model, prep, x_sample, _ = network(name)
    net = snn(name, 0.5)
    x = x_sample[:24]
    r = ref.simulate(net, x)
    relu_logits, relu_hidden = net.scaled_network().forward(x, return_hidden=True)
    assert_close(r.logits, relu_logits, "reference logits vs the scaled ReLU network")
    scale = max(1.0, np.abs(relu_logits).max())
    np.testing.assert_allclose(r.logits, keras_logits(model, x), rtol=0, atol=1e-9 * scale)
    for n, (sl, h) in enumerate(zip(net.layers[:-1], relu_hidden)):
        assert_close(r.spikes[n], sl.t_max - h, f"reference spikes of hidden layer {n} vs t_max − ReLU")
        assert np.array_equal(r.spikes[n], r.noisy_spikes[n])
    assert r.deviating.sum() == 0 and r.early_inputs.sum() == 0 and r.late_inputs.sum() == 0
    # The vectorised walk once more against the loop, on some neurons of the first layer.
    sl = net.layers[0]
    fields, W = ref.layer_fields(sl, {-1: _pooled_input(net, x)})
    shape = sl.layer.output_shape
    C = shape[-1]
    J = W / (1.0 - sum(g.weight.reshape(-1, C).sum(0) for g in sl.layer.groups))
    alpha, theta = ref.per_position(sl.alpha, shape), ref.per_position(sl.threshold, shape)
    spikes = r.spikes[0].reshape(len(x), -1, C)
    rng = np.random.default_rng(0)
    for _ in range(20):
        b, p, c = rng.integers(len(x)), rng.integers(fields.shape[1]), rng.integers(C)
        one = ref.first_spike(np.append(fields[b, p], sl.t_start), np.append(J[:, c], alpha[p, c]), theta[p, c], sl.t_max)
        assert_close(one, spikes[b, p, c], "walk of one neuron")


def _pooled_input(net, x):
    t = ref.input_times(net, x)
    for pool in net.input_pools:
        t = ref.pool_times(pool, t, 1.0)
    return t


# --------------------------------------------------------------------------- deviation regime


def _compare(net_factory, x, **noise):
    """Reference, fast and event engines on fresh copies of one network; returns the reference."""
    r = ref.simulate(net_factory(), x, **noise)
    fast = run(net_factory(), x, "fast", **noise)
    event = run(net_factory(), x, "event", **noise)
    assert len(fast.spike_times) == len(event.spike_times) == len(r.spikes)
    for n in range(len(r.spikes)):
        for engine, sim in (("fast", fast), ("event", event)):
            assert_close(sim.spike_times[n], r.noisy_spikes[n], f"{engine} engine, spike times of hidden layer {n}")
    for engine, sim in (("fast", fast), ("event", event)):
        assert_close(sim.logits, r.logits, f"{engine} engine, logits")
    for n in range(len(r.spikes)):
        assert np.array_equal(fast.spike_times[n], event.spike_times[n]), f"fast ≠ event, hidden layer {n}"
    assert np.array_equal(fast.logits, event.logits), "fast ≠ event, logits"
    for engine, sim in (("fast", fast), ("event", event)):
        assert np.array_equal(sim.deviating, r.deviating), f"{engine} engine deviating {sim.deviating}, reference {r.deviating}"
    return r


def _exercised(r, zeta, sigma):
    """The case is not vacuous: ζ ≤ 0 has inputs before t_start and deviating neurons; noise
    has inputs after t_min."""
    if zeta <= 0:  # (early inputs of the first layer, from raw inputs beyond q, do not count)
        assert r.early_inputs[1:].sum() > 0, "no input arrives before its layer's t_start"
        assert r.deviating.sum() > 0, "no neuron deviates"
    if sigma > 0:
        assert r.late_inputs.sum() > 0, "no input arrives after its layer's t_min"


@pytest.mark.parametrize("zeta", ZETAS)
@pytest.mark.parametrize("name", NETWORKS)
def test_engines_follow_the_reference_outside_the_exact_regime(name, zeta):
    x = network(name)[3]
    r = _compare(lambda: snn(name, zeta), x)
    _exercised(r, zeta, 0.0)


@pytest.mark.parametrize("sigma, zeta", NOISE)
@pytest.mark.parametrize("name", NETWORKS)
def test_engines_follow_the_reference_with_spike_time_noise(name, sigma, zeta):
    x = network(name)[3]
    r = _compare(lambda: snn(name, zeta), x, noise_sigma=sigma, noise_seed=3, sample_offset=5)
    _exercised(r, zeta, sigma)
    # The noise really is per spike: the recorded times differ from the noise-free walk.
    assert all(np.abs(a - b).max() > 0 for a, b in zip(r.noisy_spikes, r.spikes))


# --------------------------------------------------------------------------- edited thresholds


NEURON = 3  # the neuron whose threshold "one_lower" lowers


def _edit_thresholds(net, kind: str, layer: int = 0, neuron: int = NEURON):
    """The stored thresholds of one hidden layer of ``net`` edited in place."""
    th = net.layers[layer].threshold
    if kind == "double":
        th *= 2.0
    elif kind == "plus":
        th += 0.2
    elif kind == "minus":
        th -= 0.2
    elif kind == "one_lower":
        flat = th.reshape(-1)  # a view
        flat[neuron] -= 0.7 * abs(flat[neuron]) + 0.1
    else:
        raise ValueError(kind)
    return net


def _edit(kind: str, name: str = "dense", layer: int = 0, neuron: int = NEURON):
    """A fresh network with the stored thresholds of one hidden layer edited."""
    return lambda: _edit_thresholds(copy.deepcopy(snn(name, 0.5)), kind, layer, neuron)


@pytest.mark.parametrize("kind, name, layer", [
    ("double", "dense", 0), ("plus", "dense", 1), ("minus", "dense", 0), ("one_lower", "dense", 0),
    ("plus", "conv_a", 0), ("one_lower", "residual_dense", 2),
])
def test_engines_read_the_stored_threshold(kind, name, layer):
    x = network(name)[3]
    make = _edit(kind, name, layer)
    r = _compare(make, x)
    base = ref.simulate(snn(name, 0.5), x)
    sim = run(make(), x)
    changed = np.abs(sim.spike_times[layer] - base.spikes[layer])
    assert changed.max() > 1e-3, "editing ϑ did not move any spike"
    assert np.abs(sim.logits - base.logits).max() > 1e-6, "editing ϑ did not change the logits"
    if kind == "one_lower":
        # That neuron fires earlier than its ReLU value says on some samples, the others do not move.
        flat = changed.reshape(len(x), -1)
        now, before = (t.reshape(len(x), -1)[:, NEURON] for t in (sim.spike_times[layer], base.spikes[layer]))
        assert flat[:, NEURON].max() > 1e-3 and np.all(now <= before + 1e-12)
        assert np.all(np.delete(flat, NEURON, axis=1) <= 1e-9 * max(1.0, abs(make().layers[layer].t_max)))  # round-off
        assert r.deviating[layer] > 0


def test_a_network_edited_in_place_after_a_simulation_simulates_as_edited():
    """The compiled constants kept with a layer (closed form, fused pass) are made again when ϑ
    or α of the same network object change between two runs (fastpath.forget_if_edited)."""
    x = network("dense")[3]
    net = copy.deepcopy(snn("dense", 0.5))
    before = run(net, x)
    # Layer 1 runs the compiled path (layer 0 gets inputs beyond the range: the NumPy one).
    edited = run(_edit_thresholds(net, "one_lower", layer=1), x)
    assert_close(edited.logits, ref.simulate(net, x).logits, "edited ϑ, same object")
    assert np.abs(edited.logits - before.logits).max() > 1e-6, "the edit was not read"
    np.asarray(net.layers[1].alpha)[...] = 1.05  # α, in place as well
    assert_close(run(net, x).logits, ref.simulate(net, x).logits, "edited α, same object")


def test_an_edited_threshold_is_read_after_save_and_load(tmp_path):
    """The stored ϑ travels with the saved network and the engines read it from there."""
    import exactsnn

    x = network("dense")[3]
    path = tmp_path / "edited.npz"
    _edit("plus", "dense", 1)().save(path)
    r = _compare(lambda: exactsnn.load(path), x)
    assert_close(r.logits, ref.simulate(_edit("plus", "dense", 1)(), x).logits, "reference on the loaded network", rtol=0)
