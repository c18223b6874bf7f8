"""Phase 2's data object (exactsnn.spiking): windows, delays, thresholds, α and refusals.

The numbers are worked by hand from DESIGN §2: B_n = (1 + ζ) X_n, t_min^(n) = t_max^(n-1),
J = α W / (1 − ΣW), ϑ = α (t_max − t_start) + B_n ΣJ − (α + ΣJ) b (α-model), ϑ = B_n − b (B1),
read-out α = b / (t_min^(L) − t_min^(L-1)).  That the network built this way fires where the ReLU
says is the simulator's and the property tests' business (test_mapping, test_dynamics).
"""

from __future__ import annotations

import numpy as np
import pytest

import exactsnn
from exactsnn.preprocess import DenseSynapses, PreprocessedNetwork
from exactsnn.spiking import spiking_network, time_windows, window_widths


def test_windows_chain_and_widen_a_silent_layer():
    # B = 1.5 X; the silent layer (X = 0) gets the width of X = 1.
    assert window_widths(np.array([2.0, 0.0, 4.0]), 0.5) == [3.0, 1.5, 6.0]
    assert time_windows(np.array([2.0, 0.0, 4.0]), 0.5) == [(0.0, 1.0, 4.0), (1.0, 4.0, 5.5), (4.0, 5.5, 11.5)]
    with pytest.raises(ValueError, match="zeta must be > -1"):
        window_widths(np.array([1.0]), -1.0)


def test_a_skip_widens_the_window_it_arrives_through():
    # Layer 2 reads layer 0 through a skip: B_1 ≥ B_0, so the delayed spikes of layer 0 fall
    # into layer 2's input window; from the input (source −1) the bound is the input window, 1.
    assert window_widths(np.array([5.0, 2.0]), 0.0, [[], [], [0]]) == [5.0, 5.0]
    assert window_widths(np.array([0.3, 0.2]), 0.0, [[], [], [-1]]) == [0.3, 1.0]
    assert window_widths(np.array([5.0, 2.0]), 0.0) == [5.0, 2.0]


def _net(**options):
    """2 inputs → 2 hidden → 1 read-out; X = 2, ζ = 0.5: windows (0, 1, 4), read-out t_min = 4."""
    hidden = DenseSynapses("h", np.array([[0.5, -1.0], [-0.25, 0.5]]), np.array([0.1, -0.2]), (2,))
    out = DenseSynapses("o", np.array([[1.0], [2.0]]), np.array([0.3]), (2,), relu=False, source=0)
    prep = PreprocessedNetwork((2,), (0.0, 1.0), [hidden, out], [], np.array([2.0]))
    return spiking_network(prep, zeta=0.5, **options)


def test_alpha_model_thresholds_and_read_out_by_hand():
    net = _net()
    h, o = net.layers
    assert (h.t_start, h.t_min, h.t_max) == (0.0, 1.0, 4.0) and (o.t_start, o.t_min) == (1.0, 4.0)
    # S = (0.25, −0.5): ΣJ = S / (1 − S) = (1/3, −1/3); ϑ = 4 + 3 ΣJ − (1 + ΣJ) b
    expected = np.array([4 + 1 - (4 / 3) * 0.1, 4 - 1 + (2 / 3) * 0.2])
    np.testing.assert_allclose(h.threshold, expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(h.J, np.array([[0.5, -1.0], [-0.25, 0.5]]) / (1 - np.array([0.25, -0.5])),
                               rtol=0, atol=1e-15)
    assert np.all(h.alpha == 1.0)
    np.testing.assert_allclose(o.alpha, [0.3 / 3.0], rtol=0, atol=1e-16)  # b / (t_min^(L) − t_min^(L-1))
    assert np.isnan(o.threshold).all()  # the read-out never fires


def test_b1_thresholds_are_the_window_minus_the_bias():
    h = _net(neuron="b1").layers[0]
    np.testing.assert_allclose(h.threshold, [3.0 - 0.1, 3.0 + 0.2], rtol=0, atol=1e-15)


def test_device_mismatch_moves_alpha_only_and_is_seeded():
    exact, noisy, again = _net(), _net(alpha_sigma=0.1, alpha_seed=3), _net(alpha_sigma=0.1, alpha_seed=3)
    assert not np.array_equal(noisy.layers[0].alpha, exact.layers[0].alpha)
    assert np.array_equal(noisy.layers[0].alpha, again.layers[0].alpha)
    assert np.array_equal(noisy.layers[0].threshold, exact.layers[0].threshold)  # ϑ and J of α = 1
    assert np.array_equal(noisy.layers[0].J, exact.layers[0].J)
    assert np.array_equal(noisy.layers[-1].alpha, exact.layers[-1].alpha)


def test_residual_delays_are_the_gap_between_the_windows():
    # 2 hidden layers, the read-out reading layer 0 through a skip: D = t_max^(1) − t_max^(0).
    h0 = DenseSynapses("h0", np.eye(2) * 0.5, np.zeros(2), (2,))
    h1 = DenseSynapses("h1", np.eye(2) * 0.5, np.zeros(2), (2,), source=0)
    skip = DenseSynapses("o/skip", np.ones((2, 1)), np.zeros(1), (2,), relu=False, source=0)
    out = DenseSynapses("o", np.ones((2, 1)), np.zeros(1), (2,), relu=False, source=1, skips=[skip])
    net = spiking_network(PreprocessedNetwork((2,), (0.0, 1.0), [h0, h1, out], [], np.array([2.0, 1.0])), zeta=0.0)
    l0, l1, o = net.layers
    assert (l0.t_max, l1.t_max) == (3.0, 5.0)  # B_1 = max(1, B_0) = 2
    assert o.delays == [l1.t_max - l0.t_max]


@pytest.mark.parametrize("change, message", [
    (dict(X=np.array([])), "no X_n"),
    (dict(X=np.array([-1.0])), "non-negative"),
    (dict(weight=np.array([[0.75, 0.0], [0.5, 0.0]])), "Σ_j W_ij ≥ 1"),
])
def test_refusals_name_the_problem(change, message):
    weight = change.get("weight", np.array([[0.5, -1.0], [-0.25, 0.5]]))
    hidden = DenseSynapses("h", weight, np.zeros(2), (2,))
    out = DenseSynapses("o", np.ones((2, 1)), np.zeros(1), (2,), relu=False, source=0)
    prep = PreprocessedNetwork((2,), (0.0, 1.0), [hidden, out], [], change.get("X", np.array([1.0])))
    with pytest.raises(ValueError, match=message):
        spiking_network(prep)


@pytest.mark.parametrize("sigma", [-0.1, float("nan")])
def test_alpha_sigma_must_be_a_finite_non_negative_number(sigma):
    with pytest.raises(ValueError, match="alpha_sigma"):
        _net(alpha_sigma=sigma)


def test_saved_and_loaded_to_the_bit(tmp_path):
    net = _net(alpha_sigma=0.05, neuron="b1")
    net.save(tmp_path / "snn.npz")
    back = exactsnn.load(tmp_path / "snn.npz")
    assert (back.neuron, back.zeta, back.alpha_sigma) == ("b1", 0.5, 0.05)
    for a, b in zip(net.layers, back.layers):
        assert (a.t_start, a.t_min, a.t_max, a.delays) == (b.t_start, b.t_min, b.t_max, b.delays)
        for name in ("threshold", "alpha", "J"):
            assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
