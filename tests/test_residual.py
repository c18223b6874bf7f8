"""Residual networks map exactly with synaptic delays on the skip connections (issue 8)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import exactsnn
from exactsnn.importers.keras import keras_logits

import random_networks as rn
from test_mapping import SETTINGS, check_drawn, check_exact

keras = pytest.importorskip("keras")


@settings(max_examples=15, **SETTINGS)
@given(st.data(), st.integers(0, 2**16), st.sampled_from(["alpha", "b1"]))
def test_random_residual_conv_networks_are_exact(data, seed, neuron):
    check_drawn(rn.draw_residual_network, data, seed, neuron=neuron)


@settings(max_examples=10, **SETTINGS)
@given(st.data(), st.integers(0, 2**16))
def test_random_residual_dense_networks_are_exact(data, seed):
    check_drawn(rn.draw_dense_residual_network, data, seed)


def test_an_early_crossing_at_a_merge_is_detected_by_both_engines():
    """Glorot-sized residual branches can make a merge neuron fire before its last input."""
    draws = iter([3, 3, 2, 3, 7, (-200.0, 200.0)])

    class _Fixed:  # replays one falsifying example of the generator
        integers = sampled_from = booleans = staticmethod(lambda *a: None)

    keras.utils.set_random_seed(0)
    model = rn.draw_dense_residual_network(lambda _: next(draws), _Fixed, branch_std=None)
    model, x, r = rn.finish(model, lambda _: next(draws), _Fixed, 0)
    snn = exactsnn.convert(model, x, input_range=r)
    fast = exactsnn.simulate(snn, x, record=True)
    event = exactsnn.simulate(snn, x, engine="event", record=True)
    merge = snn.hidden_layers[-1]
    assert fast.deviating[-1] > 0 and np.array_equal(fast.deviating, event.deviating)
    early = fast.spike_times[-1] < merge.t_min
    assert early.any()  # fired inside its input window, before the skip spikes all arrived
    np.testing.assert_array_equal(fast.spike_times[-1], event.spike_times[-1])


def test_skip_inputs_arrive_inside_the_merge_window():
    L = keras.layers
    keras.utils.set_random_seed(1)
    inp = keras.Input((5,))
    x = L.Dense(5, activation="relu")(inp)
    h = L.Dense(4, activation="relu")(x)
    out = L.Dense(2)(L.ReLU()(L.Add()([x, L.Dense(5)(h)])))
    model = keras.Model(inp, out)
    xs = np.random.default_rng(0).uniform(0, 1, (30, 5))
    snn, _ = check_exact(model, xs, (0.0, 1.0))
    first, second, merge = snn.hidden_layers
    (delay,) = merge.delays
    assert delay == pytest.approx(second.t_max - first.t_max)
    # a skip value x ≤ B_1 delayed by D lands in [t_min, t_max] of the merge's input window
    assert second.window >= first.window
    assert merge.t_start == second.t_min


def test_keras_resnet50_with_random_batch_norm_matches_keras():
    model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
    rng = np.random.default_rng(0)
    rn.randomise_batch_norm(model, rng)
    x = rng.uniform(-1, 1, (4, 64, 64, 3))
    ref = keras_logits(model, x)
    snn = exactsnn.convert(model, x, input_range=(-1.0, 1.0))
    sim = exactsnn.simulate(snn, x)
    assert sim.deviating.sum() == 0
    np.testing.assert_allclose(sim.logits, ref, atol=1e-9 * np.abs(ref).max())
