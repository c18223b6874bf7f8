"""Figures: the membrane potentials they draw are the neuron model's, and the figures build."""

from __future__ import annotations

import numpy as np
import pytest

import exactsnn
from exactsnn import plots

pytest.importorskip("keras")
pytest.importorskip("matplotlib")

from test_crosscheck import conv_digits_net, dense_digits_net, deviating_dense_net, residual_net  # noqa: E402

BUILDS = [dense_digits_net, conv_digits_net, residual_net]


def _run(build, neuron):
    net, x = build(neuron)
    x = x[:3]
    return net, x, exactsnn.simulate(net, x, record=True, engine="event")


def _all_positions(sl):
    return [tuple(int(i) for i in p) for p in np.ndindex(*sl.layer.output_shape)]


@pytest.mark.parametrize("neuron", ["alpha", "b1"])
@pytest.mark.parametrize("build", BUILDS + [deviating_dense_net])
def test_readout_potential_at_t_min_is_the_logit(build, neuron):
    net, x, sim = _run(build, neuron)
    out = net.output
    for sample in range(len(x)):
        inputs = plots.layer_input_times(net, x, sim, sample)
        main, *skips = [inputs[g.source + 1] for g in out.layer.groups]
        v = [plots.potential(out, main, (c,), [out.t_min], model=net.model, skip_inputs=skips)[0]
             for c in range(out.layer.output_shape[-1])]
        np.testing.assert_allclose(v, sim.logits[sample], rtol=1e-9, atol=1e-9)


def _check_hidden_crossings(net, x, sim, min_checked=1):
    """Every neuron that fires inside its window has V(t_spike) = ϑ and V < ϑ before (a fine
    grid between its first event and the spike; B1: from t_min^(n) on, where it may fire)."""
    model = net.model
    checked = early = 0
    for sample in range(len(x)):
        inputs = plots.layer_input_times(net, x, sim, sample)
        for n, sl in enumerate(net.hidden_layers):
            main, *skips = [inputs[g.source + 1] for g in sl.layer.groups]
            spikes = sim.spike_times[n][sample]
            last_input = max(float(np.max(np.where(np.isfinite(u), u + d, -np.inf), initial=-np.inf))
                             for u, d in zip([main, *skips], sl.group_delays()))
            for position in _all_positions(sl):
                t_spike = float(spikes[position])
                if not t_spike < sl.t_max:  # forced at t_max, or silent
                    continue
                theta = float(sl.threshold[position])
                start = sl.t_min if not model.crosses_while_integrating else min(sl.t_start, float(np.min(main)))
                before = np.linspace(start, t_spike, 200)[:-1]
                v = plots.potential(sl, main, position, np.append(before, t_spike), model=model, skip_inputs=skips)
                if theta > 0 and (model.crosses_while_integrating or t_spike > sl.t_min):
                    assert abs(v[-1] - theta) <= 1e-9 * max(1.0, abs(theta)), (n, position, v[-1], theta)
                else:  # B1 at t_min at once, or ϑ ≤ 0 at the first event: V ≥ ϑ already
                    assert v[-1] >= theta - 1e-9 * max(1.0, abs(theta))
                if theta > 0:
                    assert np.all(v[:-1] < theta + 1e-9 * abs(theta)), (n, position)
                checked += 1
                early += t_spike < last_input
    assert checked >= min_checked
    return early


@pytest.mark.parametrize("neuron", ["alpha", "b1"])
@pytest.mark.parametrize("build", BUILDS)
def test_hidden_potential_reaches_its_threshold_at_the_spike(build, neuron):
    net, x, sim = _run(build, neuron)
    _check_hidden_crossings(net, x, sim)


def test_early_firing_neurons_reach_their_threshold_at_the_spike():
    """Outside the exact regime: neurons that fire while inputs arrive, inputs that arrive
    before t_start (counted from their arrival), neurons with ϑ ≤ 0 firing at their first input."""
    net, x, sim = _run(deviating_dense_net, "alpha")
    second = net.hidden_layers[1]
    assert np.any(sim.spike_times[0] < second.t_start)  # early inputs of the second layer
    assert _check_hidden_crossings(net, x, sim) > 0  # spikes before the neuron's last input
    # ϑ = −1 and ϑ = 0: the spike is the first event, where V = 0.
    inputs = plots.layer_input_times(net, x, sim, 0)
    np.testing.assert_allclose(sim.spike_times[1][0, :2], np.min(inputs[1]))
    v = plots.potential(second, inputs[1], (0,), [np.min(inputs[1])], model=net.model)
    assert v[0] == 0.0


def test_potential_needs_the_skip_inputs():
    net, x, sim = _run(residual_net, "alpha")
    sl = next(sl for sl in net.layers if sl.layer.skips)
    with pytest.raises(ValueError, match="skip"):
        plots.potential(sl, np.zeros(sl.layer.input_shape), (0,) * len(sl.layer.output_shape), [1.0], model=net.model)


@pytest.mark.parametrize("neuron", ["alpha", "b1"])
@pytest.mark.parametrize("build", [conv_digits_net, deviating_dense_net])
def test_figures_build(build, neuron):
    from matplotlib.figure import Figure

    net, x, sim = _run(build, neuron)
    figures = [
        plots.raster(net, sim, x, sample=1),
        plots.spike_time_histogram(net, sim, sample=1),
        plots.membrane_potentials(net, sim, x, sample=1, neurons=3, points=50),
        plots.output_potentials(net, sim, x, sample=1, points=50),
    ]
    for fig in figures:
        assert isinstance(fig, Figure) and fig.axes
        fig.canvas.draw() if hasattr(fig.canvas, "draw") else None


def test_robustness_figure_builds():
    import pandas as pd
    from matplotlib.figure import Figure

    rows = pd.DataFrame({
        "value": [0.0, 0.0, 0.01, 0.01, 0.1, 0.1],
        "accuracy_snn": [0.9, 0.9, 0.88, 0.89, 0.5, 0.6],
        "agreement": [1.0, 1.0, 0.97, 0.98, 0.5, 0.55],
        "accuracy_original": [0.9] * 6,
    })
    fig = plots.robustness(rows, "noise_sigma", title="digits fc")
    assert isinstance(fig, Figure) and fig.axes[0].get_xscale() == "symlog"


def test_plots_refuse_a_run_without_spike_times():
    net, x = dense_digits_net("alpha")
    sim = exactsnn.simulate(net, x[:2])
    with pytest.raises(ValueError, match="record=True"):
        plots.raster(net, sim, x[:2])
