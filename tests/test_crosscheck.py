"""The Brian2 cross-check: an independent simulator reproduces our spike times and logits."""

from __future__ import annotations

import numpy as np
import pytest

import exactsnn
from exactsnn import crosscheck as cc
from exactsnn.ops import conv_output_size
from exactsnn.synapses import ConvSynapses, Pool

import random_networks as rn

keras = pytest.importorskip("keras")

# Brian2 2.9 calls pyparsing's camelCase API, deprecated in pyparsing 3.3.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:brian2.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pyparsing.*"),
]


@pytest.fixture(scope="module")
def brian2():
    try:
        return cc._import_brian2()
    except ImportError as err:  # not installed, or Brian2 2.9 on NumPy ≥ 2.4
        pytest.skip(str(err))


def _digits():
    from sklearn.datasets import load_digits

    return load_digits().images.astype(np.float64)  # raw values in [0, 16]


def dense_digits_net(neuron, zeta=0.5):
    keras.utils.set_random_seed(3)
    L = keras.layers
    model = keras.Sequential([keras.Input((64,)), L.Dense(24, activation="relu"), L.Dense(12, activation="relu"), L.Dense(10)])
    rn.randomise_biases(model, np.random.default_rng(3))
    x = _digits().reshape(-1, 64)
    return exactsnn.convert(model, x[:300], input_range=(0.0, 16.0), neuron=neuron, zeta=zeta), x[1000:1012]


def deviating_dense_net(neuron):
    """The dense digits network outside the exact regime: windows of half the largest value
    (ζ = −0.5) and the first layer's thresholds lowered to 0.3 ϑ, so that its neurons fire
    while their inputs still arrive, many before the second layer's t_start; two neurons of
    the second layer get ϑ = −1 and ϑ = 0, which fire at their first event (an early input)."""
    net, x = dense_digits_net(neuron, zeta=-0.5)
    first, second = net.hidden_layers
    first.threshold = first.threshold * 0.3
    second.threshold[:2] = [-1.0, 0.0]
    return net, x


def conv_digits_net(neuron):
    """Padding, a stride-1 'same' pool with a negative folded BN scale (latest-spike pooling), a valid pool."""
    keras.utils.set_random_seed(1)
    L = keras.layers
    model = keras.Sequential([
        keras.Input((8, 8, 1)), L.Conv2D(4, 3, padding="same"), L.ReLU(), L.BatchNormalization(),
        L.MaxPooling2D(2, strides=1, padding="same"), L.Conv2D(6, 3), L.ReLU(), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(16, activation="relu"), L.Dense(10),
    ])
    rng = np.random.default_rng(0)
    rn.randomise_batch_norm(model, rng)
    rn.randomise_biases(model, rng)
    x = _digits()[..., None]
    net = exactsnn.convert(model, x[:300], input_range=(0.0, 16.0), neuron=neuron)
    assert np.any(net.layers[0].layer.pools[0].sign < 0) and any(p for p in net.layers[0].layer.pads)
    return net, x[1000:1006]


def residual_net(neuron):
    """Residual merges (one skip delayed by a window, one not) and a zero-padded max pool."""
    keras.utils.set_random_seed(2)
    L = keras.layers
    inp = keras.Input((8, 8, 2))
    a = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    b = L.Conv2D(4, 3, padding="same", activation="relu")(a)
    c = L.ReLU()(L.Add()([L.Conv2D(4, 3, padding="same")(b), a]))
    c = L.MaxPooling2D(2)(L.ZeroPadding2D(((1, 0), (0, 1)))(c))
    h = L.Dense(12, activation="relu")(L.Flatten()(c))
    h = L.ReLU()(L.Add()([L.Dense(12)(h), h]))
    model = keras.Model(inp, L.Dense(5)(h))
    rng = np.random.default_rng(0)
    rn.randomise_biases(model, rng)
    x = rng.uniform(0, 1, (50, 8, 8, 2))
    net = exactsnn.convert(model, x, neuron=neuron)
    assert any(d > 0 for sl in net.layers for d in sl.delays)
    assert any(any(p.pads) for sl in net.layers for p in sl.layer.pools)
    return net, x[:6]


# --------------------------------------------------------------------------- without Brian2


@pytest.mark.parametrize("seed", range(6))
def test_explicit_synapses_reproduce_the_convolution(seed):
    rng = np.random.default_rng(seed)
    k, s, d = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(1, 3))
    h, cin, cout = int(rng.integers(5, 9)), int(rng.integers(1, 3)), int(rng.integers(1, 3))
    pads = tuple(int(v) for v in rng.integers(0, 3, 4))
    used = (h - int(rng.integers(0, 2)), h - int(rng.integers(0, 2)))
    w = rng.normal(size=(k, k, cin, cout))
    ho = conv_output_size(used[0] + pads[0] + pads[1], k, s, d)
    wo = conv_output_size(used[1] + pads[2] + pads[3], k, s, d)
    if ho < 1 or wo < 1:
        pytest.skip("kernel larger than the padded input")
    layer = ConvSynapses("c", w, np.zeros((ho, wo, cout)), (h, h, cin), strides=(s, s), dilation=(d, d), pads=pads, used=used)
    x = rng.normal(size=(3, h, h, cin))
    pad_value = 0.7
    conn = cc.connections(layer, w)
    flat = x.reshape(3, -1)
    got = np.zeros((3, int(np.prod(layer.output_shape))))
    for b in range(3):
        np.add.at(got[b], conn.post, conn.weight * flat[b, conn.pre])
    got += pad_value * conn.pad_weight
    want = layer.linear(x, pad_value=pad_value).reshape(3, -1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("pads", [(0, 0, 0, 0), (1, 0, 0, 2)])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("stride", [1, 2])
def test_pool_connections_reproduce_sign_aware_pooling(padding, stride, pads):
    import dataclasses

    if any(pads) and "pads" not in {f.name for f in dataclasses.fields(Pool)}:
        pytest.skip("this exactsnn has no explicitly padded pools")
    rng = np.random.default_rng(stride)
    shape = (5, 5, 3)
    kw = {"pads": pads} if any(pads) else {}
    pool = Pool((2, 2), (stride, stride), padding, np.array([1.0, -1.0, 1.0]), **kw)
    t_max = 1.5
    t = rng.uniform(0, 1, (2,) + shape)
    pc = cc.pool_connections(pool, shape)
    size = int(np.prod(pool.output_shape(shape)))
    sign = pool.sign[np.arange(size) % 3]
    got = np.empty((2, size))
    for b in range(2):
        first = np.full(size, np.inf)
        last = np.full(size, -np.inf)
        np.minimum.at(first, pc.post, t[b].ravel()[pc.pre])
        np.maximum.at(last, pc.post, t[b].ravel()[pc.pre])
        first = np.where(pc.pad_count > 0, np.minimum(first, t_max), first)
        last = np.where(pc.pad_count > 0, np.maximum(last, t_max), last)
        got[b] = np.where(sign > 0, first, last)
    want = pool.on_times(t, t_max) if any(pads) else pool.on_times(t)
    np.testing.assert_array_equal(got, np.asarray(want).reshape(2, -1))
    assert pc.count.min() >= 1 and np.all(pc.count >= pc.pad_count)
    assert (pc.pad_count.sum() > 0) == any(pads)


def test_error_bound_grows_with_the_weight_norm():
    net, _ = dense_digits_net("alpha")
    bounds, logit_bound = cc.error_bounds(net, 1e-3)
    assert bounds[0] >= 1e-3 and all(b2 >= 1e-3 for b2 in bounds) and logit_bound > 0
    half, _ = cc.error_bounds(net, 5e-4)
    np.testing.assert_allclose(np.array(half) * 2, bounds)


@pytest.mark.parametrize("neuron", ["alpha", "b1"])
@pytest.mark.parametrize("build", [dense_digits_net, conv_digits_net, residual_net, deviating_dense_net])
def test_interval_bounds_contain_the_effect_of_shifted_inputs(build, neuron):
    """Without Brian2: exactsnn's own spikes for inputs moved by ≤ dt/2 lie within the bounds,
    outside the exact regime too (there the a priori bound does not apply)."""
    net, x = build(neuron)
    dt = 2e-3
    ref = exactsnn.simulate(net, x, record=True)
    bounds, logit_bound, decided = cc.interval_bounds(net, x, dt, ref.spike_times, ref.logits)
    p, q = net.input_range
    rng = np.random.default_rng(0)
    shift = rng.uniform(-0.5, 0.5, x.shape) * dt * (q - p)
    moved = np.clip(np.where(x > p, x + shift, x), p, q)  # B1: a silent input stays silent
    sim = exactsnn.simulate(net, moved, record=True)
    a_priori, _ = cc.error_bounds(net, dt)
    exact_regime = build is not deviating_dense_net
    for sl, t, t0, bound, worst in zip(net.hidden_layers, sim.spike_times, ref.spike_times, bounds, a_priori):
        diff = np.abs(np.minimum(t, sl.t_max) - np.minimum(t0, sl.t_max))
        assert np.all(diff <= bound + 1e-9)
        assert not exact_regime or np.all(bound <= worst + 1e-12)
    assert np.all(np.abs(sim.logits - ref.logits) <= logit_bound + 1e-9)
    assert decided.shape == (len(x),)


# --------------------------------------------------------------------------- with Brian2


def _check(df, net, n_samples):
    assert bool(df["within_bound"].all()), df.to_string()
    assert df.attrs["unexplained"] == 0 and df.attrs["agreement"] == 1.0
    assert (df["bound"] <= df["a_priori"] + 1e-12).all()
    hidden = df[df.quantity == "spike time"]
    assert (hidden["missing"] == 0).all() and (hidden["extra"] == 0).all()
    if not net.model.silent_zero:  # one spike per neuron in both simulators
        assert (hidden["spikes_brian2"] == hidden["neurons"] * n_samples).all()
        assert (hidden["spikes_exactsnn"] == hidden["neurons"] * n_samples).all()


@pytest.mark.parametrize("neuron", ["alpha", "b1"])
def test_brian2_agrees_on_a_dense_digits_network(brian2, neuron):
    net, x = dense_digits_net(neuron)
    df = cc.crosscheck(net, x, dt=1e-3)
    _check(df, net, len(x))
    assert df.attrs["max_abs_dt"] < 0.05  # a few grid steps, far below the windows (B_n ≈ 1–10)


@pytest.mark.parametrize("neuron", ["alpha", "b1"])
def test_brian2_agrees_on_a_conv_network_with_padding_and_pooling(brian2, neuron):
    net, x = conv_digits_net(neuron)
    df = cc.crosscheck(net, x, dt=2e-3)
    _check(df, net, len(x))


@pytest.mark.parametrize("neuron", ["alpha", "b1"])
def test_brian2_agrees_on_a_residual_network_with_delays(brian2, neuron):
    net, x = residual_net(neuron)
    df = cc.crosscheck(net, x, dt=2e-3)
    _check(df, net, len(x))


def test_brian2_agrees_outside_the_exact_regime(brian2):
    """Neurons that fire before their last input, inputs that arrive before t_start (they
    count from their arrival), neurons with ϑ ≤ 0 that fire before their own t_start: Brian2
    follows the α-model there too, every difference within its interval bound."""
    from exactsnn.simulator import first_crossings

    net, x = deviating_dense_net("alpha")
    dt = 1e-3
    df = cc.crosscheck(net, x, dt=dt)
    hidden = df[df.quantity == "spike time"]
    # It is the deviation regime: spikes before the last input in both layers, early inputs
    # to the second layer and to the read-out, spikes even before their layer's t_start.
    assert (hidden["early_spikes"] > 0).all() and (hidden["deviating_exactsnn"] > 0).all()
    assert (df["early_inputs"].iloc[1:] > 0).all()
    ref = exactsnn.simulate(net, x, record=True)
    first, second = net.hidden_layers
    assert np.all(ref.spike_times[1][:, :2] < second.t_start)
    # Within the bounds; the a priori bound does not apply here.
    _check(df.assign(a_priori=np.inf), net, len(x))
    assert df["a_priori"].isna().all()
    assert df.attrs["max_abs_dt"] < 10 * dt and df.attrs["max_logit_diff"] < 0.05
    # The bounds are tight enough to tell the model from one that clamps early inputs at
    # t_start: that would move spikes of the second layer by more than their bound.
    bounds, _, _ = cc.interval_bounds(net, x, dt, ref.spike_times, ref.logits)
    n = len(x)
    clamped = first_crossings(np.maximum(ref.spike_times[0], second.t_start), np.broadcast_to(second.J, (n,) + second.J.shape),
                              np.broadcast_to(second.alpha, (n, 12)), np.broadcast_to(second.threshold, (n, 12)),
                              second.t_start)
    moved = np.abs(np.minimum(clamped, second.t_max) - ref.spike_times[1]) > bounds[1]
    assert moved[:, 2:].any()


def test_brian2_agrees_on_b1_outside_the_exact_regime(brian2):
    """B1 with values beyond their windows: neurons that fire at t_min^(n) at once."""
    net, x = deviating_dense_net("b1")
    df = cc.crosscheck(net, x, dt=1e-3)
    assert bool(df["within_bound"].all()) and df.attrs["unexplained"] == 0, df.to_string()
    assert df["deviating_exactsnn"].sum() > 0


def test_main_crosscheck_prints_the_table_and_writes_csv(brian2, tmp_path, capsys):
    import pandas as pd

    net, x = dense_digits_net("alpha")
    net.save(tmp_path / "snn.npz")
    np.save(tmp_path / "x.npy", x)
    df = cc.main_crosscheck(tmp_path / "snn.npz", tmp_path / "x.npy", dt=1e-3, n=4, output=tmp_path / "cc.csv")
    out = capsys.readouterr().out
    assert "prediction agreement 100.00 %" in out and "within its bound: True" in out
    assert df.attrs["samples"] == 4
    saved = pd.read_csv(tmp_path / "cc.csv")
    assert list(saved["quantity"]) == ["spike time", "spike time", "logit"]


@pytest.mark.workflow
def test_crosscheck_rule_writes_results_crosscheck_csv(brian2, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd

    root = Path(__file__).parents[1]
    config = tmp_path / "cc.yaml"
    config.write_text(
        "benchmarks:\n"
        "  - {dataset: digits, model: fc, architecture: digits_fc, recipe: adam_mnist, epochs: 2,"
        " seed: 0, batch_size: 32, parts: 1}\n"
        "robustness: {benchmarks: []}\nfigures: {benchmarks: []}\n"
        "crosscheck: {samples: 3, dt: 0.01}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(root / "workflow" / "Snakefile"), "--configfile", str(config),
         "--cores", "2", "-d", str(tmp_path), "results/crosscheck.csv"],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = pd.read_csv(tmp_path / "results" / "crosscheck.csv")
    assert set(table.neuron) == {"alpha", "b1"} and table.within_bound.all()
    assert (table.agreement == 1.0).all() and (table.samples == 3).all()
