"""Property tests of the exact mapping on random networks (DESIGN §6)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import exactsnn
from exactsnn.importers.keras import keras_logits

import random_networks as rn

keras = pytest.importorskip("keras")

SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def _untied(logits: np.ndarray) -> np.ndarray:
    """Samples whose two largest logits differ by more than round-off (ties excluded)."""
    top = np.sort(logits, axis=1)[:, -2:]
    return (top[:, 1] - top[:, 0]) > 1e-9 * max(1.0, np.abs(logits).max())


def check_exact(model, x, input_range, neuron="alpha", edges_only=True, **convert_kw):
    ref = keras_logits(model, x)
    snn = exactsnn.convert(model, x, input_range=input_range, neuron=neuron, **convert_kw)
    sim = exactsnn.simulate(snn, x, relu_reference=True, record=True)
    scale = max(1.0, np.abs(ref).max())
    assert int(sim.deviating.sum()) == 0
    np.testing.assert_allclose(sim.logits, ref, rtol=0, atol=1e-9 * scale)
    keep = _untied(ref)
    assert np.array_equal(sim.predictions[keep], ref.argmax(1)[keep])
    if neuron == "alpha":  # exactly one spike per hidden neuron
        assert np.array_equal(sim.spikes, sim.neurons * len(x))
    else:  # B1: a spike exactly for every non-zero activation
        _, hidden = snn.scaled_network().forward(x, return_hidden=True)
        density = np.array([int((h > 0).sum()) for h in hidden])
        assert np.array_equal(sim.spikes, density)
        assert np.array_equal(sim.nonzero, density)
    for sl, err in zip(snn.hidden_layers, sim.max_time_error):
        assert err <= 1e-9 * max(1.0, sl.t_max)
    # Both engines take the same closed form after the last input; the event engine walks
    # every neuron before it, the fast one only those it cannot certify: any difference at
    # all would be a certificate that let an early crossing through.
    event = exactsnn.simulate(snn, x, engine="event", record=True)
    for a, b in zip(sim.spike_times, event.spike_times):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(event.logits, ref, rtol=0, atol=1e-9 * scale)
    if neuron == "alpha" and edges_only:  # the edge majorant alone (the wide layers' plan) certifies as safely
        alone = exactsnn.simulate(snn, x, record=True) if _edges_only(snn) else sim
        for a, b in zip(alone.spike_times, event.spike_times):
            np.testing.assert_array_equal(a, b)
    return snn, sim


def _edges_only(snn) -> bool:
    """Plan every compiled hidden layer to the edge majorant alone (3 bins, the excess in 2
    products; never changed);
    False when the network takes no compiled path."""
    from exactsnn.simulator.fastpath import CompiledLayer, compiled

    layers = [compiled(sl) for sl in snn.hidden_layers]
    for layer in layers:
        if isinstance(layer, CompiledLayer):
            layer.edges_help = False
            layer.use((False, 3, 2))
    return bool(layers)


def check_drawn(generator, data, seed, neuron="alpha"):
    """Draw a network with ``generator`` (random_networks.draw_*), seed it, check it is exact;
    every other seed also with the edge majorant alone (each plan compiles its own steps)."""
    keras.utils.set_random_seed(seed)
    model, x, r = rn.finish(generator(data.draw, st), data.draw, st, seed)
    return check_exact(model, x, r, neuron=neuron, edges_only=seed % 2 == 0)


@settings(max_examples=25, **SETTINGS)
@given(st.data(), st.integers(0, 2**16))
def test_random_dense_networks_are_exact(data, seed):
    check_drawn(rn.draw_dense_network, data, seed)


@settings(max_examples=30, **SETTINGS)
@given(st.data(), st.integers(0, 2**16))
def test_random_conv_networks_are_exact(data, seed):
    check_drawn(rn.draw_conv_network, data, seed)


@settings(max_examples=20, **SETTINGS)
@given(st.data(), st.integers(0, 2**16), st.sampled_from(["dense", "conv"]))
def test_random_networks_are_exact_with_b1_neurons(data, seed, kind):
    check_drawn(rn.draw_dense_network if kind == "dense" else rn.draw_conv_network, data, seed, neuron="b1")


@settings(max_examples=10, **SETTINGS)
@given(st.data(), st.integers(0, 2**16))
def test_average_pooling_folded_into_conv_is_exact(data, seed):
    check_drawn(rn.draw_avg_conv_network, data, seed)


@pytest.mark.slow
@settings(max_examples=150, **SETTINGS)
@given(st.data(), st.integers(0, 2**16), st.sampled_from(["dense", "conv", "avg"]), st.sampled_from(["alpha", "b1"]))
def test_many_random_networks_are_exact(data, seed, kind, neuron):
    draw = {"dense": rn.draw_dense_network, "conv": rn.draw_conv_network, "avg": rn.draw_avg_conv_network}[kind]
    check_drawn(draw, data, seed, neuron=neuron)


def test_silent_hidden_layer_keeps_the_output_bias():
    L = keras.layers
    model = keras.Sequential([keras.Input((3,)), L.Dense(4, activation="relu"), L.Dense(2)])
    model.layers[0].set_weights([-np.ones((3, 4)), -np.ones(4)])  # never active on [0, 1]
    model.layers[1].set_weights([np.ones((4, 2)), np.array([0.3, -0.2])])
    x = np.random.default_rng(0).uniform(0, 1, (5, 3))
    snn, sim = check_exact(model, x, (0.0, 1.0))
    assert snn.X[0] == 0.0
    np.testing.assert_allclose(sim.logits, np.tile([0.3, -0.2], (5, 1)), atol=1e-12)


def test_save_load_round_trip(tmp_path):
    L = keras.layers
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((6, 6, 1)), L.Conv2D(3, 3, padding="same"), L.BatchNormalization(), L.ReLU(),
        L.MaxPooling2D(2), L.Flatten(), L.Dense(4),
    ])
    rn.randomise_batch_norm(model, np.random.default_rng(1))
    x = np.random.default_rng(2).uniform(0, 16, (10, 6, 6, 1))
    snn = exactsnn.convert(model, x, input_range=(0, 16))
    snn.save(tmp_path / "snn.npz")
    loaded = exactsnn.load(tmp_path / "snn.npz")
    assert np.array_equal(exactsnn.simulate(loaded, x).logits, exactsnn.simulate(snn, x).logits)
    assert loaded.latency == snn.latency
