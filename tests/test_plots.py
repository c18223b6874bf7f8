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


def _sweep():
    import pandas as pd

    return pd.DataFrame({
        "value": [0.0, 0.0, 0.01, 0.01, 0.1, 0.1],
        "accuracy_snn": [0.9, 0.9, 0.88, 0.89, 0.5, 0.6],
        "agreement": [1.0, 1.0, 0.97, 0.98, 0.5, 0.55],
        "accuracy_original": [0.9] * 6,
    })


def test_robustness_figure_builds():
    from matplotlib.figure import Figure

    fig = plots.robustness(_sweep(), "noise_sigma", title="digits fc")
    assert isinstance(fig, Figure) and fig.axes[0].get_xscale() == "symlog"


def _drawn(fig):
    """The figure drawn on an Agg canvas, and its renderer (window extents need a draw)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _legend_outside_axes(fig, renderer):
    assert fig.legends, "the figure has no legend"
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), "the legend lies on an axes"


def test_histogram_legend_covers_no_bars():
    from matplotlib.patches import Polygon
    from matplotlib.transforms import Bbox

    net, x, sim = _run(conv_digits_net, "alpha")
    fig = plots.spike_time_histogram(net, sim, sample=0)
    renderer = _drawn(fig)
    ax = fig.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Polygon)]
    assert len(bars) == len(net.hidden_layers)
    legend = fig.legends[0].get_window_extent(renderer)
    frame = ax.get_window_extent(renderer)
    for bar in bars:
        # The step outline starts at count 0, far below a log axis: only what the axes
        # shows of it (clipped to the axes) can be covered.
        shown = Bbox.intersection(bar.get_window_extent(renderer), frame)
        assert shown is not None and not legend.overlaps(shown)
    _legend_outside_axes(fig, renderer)
    assert "τ_c" in ax.get_xlabel()


@pytest.mark.parametrize("build", [conv_digits_net, deviating_dense_net])
def test_potentials_are_drawn_relative_to_each_threshold(build):
    """V/ϑ: every trace ends at its spike at 1 and stays below it, whatever the size of ϑ."""
    net, x, sim = _run(build, "alpha")
    fig = plots.membrane_potentials(net, sim, x, sample=0, neurons=4, points=80)
    renderer = _drawn(fig)
    for ax in fig.axes:
        traces = [line for line in ax.lines if len(line.get_xdata()) > 2]
        assert traces
        for line in traces:
            v = np.asarray(line.get_ydata(), float)
            assert abs(v[-1] - 1.0) <= 1e-6 and v.max() <= 1.0 + 1e-6
        assert "τ_c" in ax.get_xlabel() and "ϑ" in ax.get_ylabel()
    _legend_outside_axes(fig, renderer)


def test_potentials_span_thresholds_of_very_different_size():
    """Thresholds a thousand times apart: on V/ϑ both traces fill the same range."""
    net, x, sim = _run(conv_digits_net, "alpha")
    sl = net.hidden_layers[0]
    theta = np.broadcast_to(sl.threshold, sl.layer.output_shape)
    assert theta.max() / theta[theta > 0].min() > 10  # the case the normalisation is for
    fig = plots.membrane_potentials(net, sim, x, sample=0, neurons=5, points=80)
    ax = fig.axes[0]
    top, bottom = ax.get_ylim()[1], ax.get_ylim()[0]
    assert top < 1.5 and bottom > -1.0


def test_robustness_plot_draws_mean_spread_and_every_trial():
    from matplotlib.collections import PathCollection, PolyCollection

    rows = _sweep()
    fig = plots.robustness(rows, "noise_sigma", title="digits fc")
    renderer = _drawn(fig)
    ax = fig.axes[0]
    spreads = [c for c in ax.collections if isinstance(c, PolyCollection)]
    trials = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(spreads) == 2  # accuracy and agreement
    assert [len(c.get_offsets()) for c in trials] == [len(rows), len(rows)]
    # The shaded band of the accuracy spans the trials' range at σ = 0.1 (0.5 to 0.6).
    band = spreads[0].get_paths()[0].vertices
    at = band[np.isclose(band[:, 0], 0.1)][:, 1]
    assert np.isclose(at.min(), 0.5) and np.isclose(at.max(), 0.6)
    assert ax.get_xlabel() == "spike-time noise σ (τ_c)"
    _legend_outside_axes(fig, renderer)


def test_robustness_plot_of_one_trial_per_value():
    rows = _sweep().drop_duplicates("value")
    fig = plots.robustness(rows.assign(value=[-0.5, 0.0, 0.5]), "zeta")
    _drawn(fig)
    assert "ζ" in fig.axes[0].get_xlabel() and fig.axes[0].get_xscale() == "linear"


def test_plots_refuse_a_run_without_spike_times():
    net, x = dense_digits_net("alpha")
    sim = exactsnn.simulate(net, x[:2])
    with pytest.raises(ValueError, match="record=True"):
        plots.raster(net, sim, x[:2])
