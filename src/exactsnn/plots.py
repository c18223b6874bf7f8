"""Figures of a spiking network at work, in the style of the paper's Figure 4.

Pure functions: each takes a :class:`~exactsnn.spiking.SpikingNetwork` and the
:class:`~exactsnn.simulator.Simulation` of a run made with ``record=True`` (plus the raw inputs
``x`` of that run where input spikes are drawn) and returns a :class:`matplotlib.figure.Figure`;
nothing is shown or saved, and pyplot's global state is not touched.

The membrane potentials are the network's neuron model's (:mod:`exactsnn.neurons`,
``model.potential``): for the α-model, neuron i of a hidden layer has
    V_i(t) = α_i (t − t_start)⁺ + Σ_j J_ij (t − t_j)⁺,   t_start = t_min^(n-1),
every input counting from its own arrival (also one before t_start) and V = 0 before the
first event; B1 integrates W in [t_start, t_min^(n)), then ramps with α.  A read-out neuron
has the model's potential of its inputs with weights W plus the model's constant part
(``readout_base``: α-model α (t_min^(L) − t_start), B1 b), drawn as the current that
delivers it over [t_start, t_min^(L)] (for the α-model its α current); its value at t_min^(L)
is the logit.

All figures share one look (:func:`figure`, :func:`style_axes`): sizes chosen so that text
stays legible where the HTML report shows a figure at its saved width (savefig at 150 dpi),
legends outside the axes so that they cover no data, time in units of τ_c.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .synapses import DenseSynapses
from .tables import KNOB_LABELS

__all__ = [
    "layer_input_times",
    "potential",
    "raster",
    "spike_time_histogram",
    "membrane_potentials",
    "output_potentials",
    "robustness",
    "figure",
    "style_axes",
    "FONT_SIZES",
    "TIME_LABEL",
]

_WINDOW_COLOR = "0.92"
_PREVIOUS_WINDOW_COLOR = "0.85"

FONT_SIZES = {"title": 12, "label": 10.5, "tick": 9.5, "legend": 9.5}
TIME_LABEL = "time (τ_c)"


def figure(width: float, height: float) -> Figure:
    """A new figure in the common style (constrained layout, which also places the legends
    put outside the axes with ``loc="outside ..."``)."""
    return Figure(figsize=(width, height), layout="constrained")


def style_axes(ax, *, xlabel: str | None = None, ylabel: str | None = None, title: str | None = None) -> None:
    """Labels, tick sizes and frame of one axes in the common style."""
    ax.tick_params(labelsize=FONT_SIZES["tick"])
    ax.spines[["top", "right"]].set_visible(False)
    if xlabel is not None:
        ax.set_xlabel(xlabel, fontsize=FONT_SIZES["label"])
    if ylabel is not None:
        ax.set_ylabel(ylabel, fontsize=FONT_SIZES["label"])
    if title is not None:
        ax.set_title(title, fontsize=FONT_SIZES["title"])


def _outside_legend(fig, handles, *, ncol: int, loc: str = "outside upper center"):
    """A figure legend outside every axes: it can hide no data."""
    return fig.legend(handles=handles, loc=loc, ncol=ncol, fontsize=FONT_SIZES["legend"], frameon=False)


def _layer_names(net) -> list[str]:
    return [f"layer {n + 1} ({sl.layer.kind})" for n, sl in enumerate(net.hidden_layers)]


def _check_recorded(net, sim, sample: int) -> None:
    if len(sim.spike_times) != len(net.hidden_layers):
        raise ValueError("the simulation has no spike times: run simulate(..., record=True)")
    if not 0 <= sample < sim.n_samples:
        raise ValueError(f"sample {sample} is not one of the {sim.n_samples} simulated samples")


def layer_input_times(net, x, sim, sample: int = 0) -> list[np.ndarray]:
    """Input spike times of every layer for one sample, after pooling.

    Entry 0 is the coded input (shape of the first layer's input), entry n the spikes of
    hidden layer n after its pools; the last entry is the read-out's input.  ``x`` holds the
    raw inputs of the simulated run.
    """
    _check_recorded(net, sim, sample)
    t = net.input_times(np.asarray(x)[sample : sample + 1])
    for pool in net.input_pools:
        t = np.asarray(pool.on_times(t, 1.0))  # explicit pads: value 0, a spike at t_max
    inputs = [t[0]]
    for n, sl in enumerate(net.hidden_layers):
        s = sim.spike_times[n][sample : sample + 1]
        for pool in sl.layer.pools:
            s = np.asarray(pool.on_times(s, sl.t_max))
        inputs.append(s[0])
    return inputs


def _receptive_field(sl, model, group_inputs: list, position: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(input times, synaptic weights) of the neuron at ``position`` (spatial indices, channel),
    over all synapse groups of the layer (``group_inputs``: one sample's input of each group,
    delays not yet added).  Padded taps spike at t_min^(n); the weights are the model's
    ``synaptic_weights`` for hidden layers, W for the read-out."""
    layer = sl.layer
    channel = position[-1]
    times, weights = [], []
    for g, delay, t_in in zip(layer.groups, sl.group_delays(), group_inputs):
        t_in = np.asarray(t_in, np.float64) + delay
        w = g.per_synapse(model.synaptic_weights(g.weight, layer.weight_sum) if sl.hidden else g.weight)
        if isinstance(g, DenseSynapses):
            times.append(t_in.reshape(-1))
            weights.append(np.asarray(w)[:, channel])
            continue
        padded = np.asarray(g.padded(t_in[None], sl.t_min))[0]
        kh, kw = g.weight.shape[:2]
        rows = position[0] * g.strides[0] + np.arange(kh) * g.dilation[0]
        cols = position[1] * g.strides[1] + np.arange(kw) * g.dilation[1]
        times.append(padded[rows[:, None], cols[None, :], :].reshape(-1))
        weights.append(np.asarray(w)[..., channel].reshape(-1))
    return np.concatenate(times), np.concatenate(weights)


def potential(sl, t_in: np.ndarray, position: tuple, t: np.ndarray, *, model, skip_inputs=()) -> np.ndarray:
    """V(t) of the neuron at ``position`` of layer ``sl`` given its layer's input times ``t_in``.

    ``t_in`` is one sample's input to the layer (no batch axis), ``position`` indexes the
    layer's output (``(i,)`` for dense, ``(row, col, channel)`` for conv); ``model`` is the
    network's neuron model (``net.model``).  A layer with residual connections also needs the
    input of each skip group (``skip_inputs``, in the order of ``sl.layer.skips``; undelayed).
    Hidden layers: the model's ``potential``; read-out: see the module docstring.
    """
    skips = list(sl.layer.skips)
    if len(skip_inputs) != len(skips):
        raise ValueError(f"layer {sl.layer.name!r} has {len(skips)} skip groups: pass their inputs as skip_inputs")
    t = np.asarray(t, np.float64)
    times, weight = _receptive_field(sl, model, [t_in, *skip_inputs], position)
    alpha = float(np.broadcast_to(sl.alpha, sl.layer.output_shape)[position])
    if sl.hidden:
        theta = float(np.broadcast_to(sl.threshold, sl.layer.output_shape)[position])
        return model.potential(t, times, weight, alpha, theta, sl.t_start, sl.t_min)
    bias = float(np.broadcast_to(sl.layer.bias, sl.layer.output_shape)[position])
    base = model.readout_base(alpha, bias, sl.t_start, sl.t_min)
    ramp = np.clip((t - sl.t_start) / (sl.t_min - sl.t_start), 0.0, 1.0)
    return base * ramp + model.potential(t, times, weight, 0.0, np.nan, sl.t_start, sl.t_min)


def _group_inputs(sl, inputs: list) -> tuple:
    """(main group's input, skip groups' inputs) of a layer from :func:`layer_input_times`."""
    main, *skips = [inputs[g.source + 1] for g in sl.layer.groups]
    return main, skips


def _shade_windows(ax, net, *, label: bool = False) -> None:
    ax.axvspan(0.0, 1.0, color=_WINDOW_COLOR, zorder=0)
    for n, sl in enumerate(net.hidden_layers):
        ax.axvspan(sl.t_min, sl.t_max, color=_WINDOW_COLOR if n % 2 else _PREVIOUS_WINDOW_COLOR, zorder=0)
    ax.axvline(net.latency, color="k", lw=0.8, ls=":", label="read-out" if label else None)


def _subsample(count: int, limit: int) -> np.ndarray:
    if count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(int))


def raster(net, sim, x, sample: int = 0, *, max_neurons: int = 2000) -> Figure:
    """Spike raster per layer (input and hidden layers) for one sample; windows shaded.

    Layers with more than ``max_neurons`` neurons show an evenly spaced subset.
    """
    _check_recorded(net, sim, sample)
    times = [net.input_times(np.asarray(x)[sample : sample + 1])[0]]
    times += [s[sample] for s in sim.spike_times]
    names = ["input"] + _layer_names(net)
    fig = figure(7, 1.6 + 1.2 * len(times))
    axes = fig.subplots(len(times), 1, sharex=True, squeeze=False)[:, 0]
    for ax, t, name in zip(axes, times, names):
        flat = t.reshape(-1)
        keep = _subsample(flat.size, max_neurons)
        keep = keep[np.isfinite(flat[keep])]  # silent neurons (a silent_zero model) have no spike
        _shade_windows(ax, net)
        ax.scatter(flat[keep], keep, s=3, c="k", marker="|", linewidths=0.7)
        style_axes(ax, ylabel=f"{name}\nneuron")
        ax.set_ylim(-0.5, flat.size - 0.5)
    style_axes(axes[-1], xlabel=TIME_LABEL)
    axes[-1].set_xlim(0.0, net.latency * 1.02)
    _outside_legend(fig, _window_handles(), ncol=2, loc="outside lower center")
    coding = "silence codes 0" if net.model.silent_zero else "every neuron fires once"
    fig.suptitle(f"Spikes of test sample {sample} ({coding})", fontsize=FONT_SIZES["title"])
    return fig


def _window_handles() -> list:
    """Legend entries for what :func:`_shade_windows` draws."""
    return [
        Patch(color=_PREVIOUS_WINDOW_COLOR, label="time windows (alternating shades)"),
        Line2D([], [], color="k", lw=0.8, ls=":", label="read-out at t_min^(L)"),
    ]


def spike_time_histogram(net, sim, sample: int = 0, *, bins: int = 60) -> Figure:
    """Histogram of the spike times of each hidden layer for one sample."""
    _check_recorded(net, sim, sample)
    fig = figure(7, 3.8)
    ax = fig.subplots()
    _shade_windows(ax, net)
    edges = np.linspace(1.0, net.latency, bins + 1) if net.latency > 1.0 else bins
    for s, name in zip(sim.spike_times, _layer_names(net)):
        t = s[sample].reshape(-1)
        ax.hist(t[np.isfinite(t)], bins=edges, histtype="step", lw=1.4, label=name)
    ax.set_yscale("log")
    style_axes(ax, xlabel=f"spike {TIME_LABEL}", ylabel="spikes per bin",
               title=f"Spike times of test sample {sample}")
    handles, _ = ax.get_legend_handles_labels()
    _outside_legend(fig, handles + _window_handles(), ncol=3, loc="outside lower center")
    return fig


def _pick_neurons(spikes: np.ndarray, threshold: np.ndarray, t_max: float, count: int) -> list[tuple]:
    """Up to ``count`` neurons with ϑ > 0, evenly over those that fire before t_max (non-zero
    values) in order of their spikes.  A neuron with ϑ ≤ 0 fires at its first event and has no
    V/ϑ to draw."""
    flat = spikes.reshape(-1)
    positive = np.broadcast_to(threshold, spikes.shape).reshape(-1) > 0
    active = np.flatnonzero((flat < t_max - 1e-12) & positive)
    pool = active if active.size else np.flatnonzero(positive)
    pool = pool[np.argsort(flat[pool], kind="stable")]
    chosen = pool[_subsample(pool.size, count)]
    return [np.unravel_index(i, spikes.shape) for i in chosen]


def membrane_potentials(net, sim, x, sample: int = 0, *, neurons: int = 5, points: int = 400) -> Figure:
    """Membrane potentials of ``neurons`` neurons per hidden layer for one sample, each divided
    by its own threshold: V_i(t)/ϑ_i, so that every trace reaches 1 at its spike whatever the
    scale of ϑ_i (thresholds differ by orders of magnitude within a layer).

    Each trace starts at t_min^(n-1) (or at the layer's first input, if one arrives before)
    and ends at its spike (dot), where it crosses 1 (dashed); the layer's own window
    [t_min^(n), t_max^(n)] is shaded.
    """
    inputs = layer_input_times(net, x, sim, sample)
    hidden = net.hidden_layers
    fig = figure(7, 1.4 + 2.2 * len(hidden))
    axes = fig.subplots(len(hidden), 1, squeeze=False)[:, 0]
    for n, (ax, sl, name) in enumerate(zip(axes, hidden, _layer_names(net))):
        spikes = sim.spike_times[n][sample]
        threshold = np.broadcast_to(sl.threshold, spikes.shape)
        main, skips = _group_inputs(sl, inputs)
        arrivals = np.concatenate([np.ravel(u) + d for u, d in zip([main, *skips], sl.group_delays())])
        start = float(np.min(arrivals, initial=sl.t_start))  # inputs may come before t_start
        ax.axvspan(sl.t_min, sl.t_max, color=_WINDOW_COLOR, zorder=0)
        ax.axhline(1.0, color="k", lw=0.8, ls="--", zorder=1)
        for k, position in enumerate(_pick_neurons(spikes, threshold, sl.t_max, neurons)):
            color = f"C{k % 10}"
            t_spike = float(spikes[position])
            end = t_spike if np.isfinite(t_spike) else sl.t_max  # a silent neuron never fires
            t = np.linspace(start, max(end, start), points)
            v = potential(sl, main, position, t, model=net.model, skip_inputs=skips)
            ax.plot(t, v / float(threshold[position]), color=color, lw=1.3)
            if np.isfinite(t_spike):
                ax.plot([t_spike], [1.0], "o", color=color, ms=4.5, zorder=3)
        ax.set_xlim(start, sl.t_max)
        style_axes(ax, xlabel=TIME_LABEL, ylabel=f"{name}\nV / ϑ")
    handles = [
        Line2D([], [], color="C0", lw=1.3, label="V/ϑ of one neuron (one colour each)"),
        Line2D([], [], color="k", lw=0.8, ls="--", label="threshold (V = ϑ)"),
        Line2D([], [], color="C0", marker="o", ls="", ms=4.5, label="spike"),
        Patch(color=_WINDOW_COLOR, label="layer's window [t_min, t_max]"),
    ]
    _outside_legend(fig, handles, ncol=2, loc="outside lower center")
    fig.suptitle(f"Membrane potentials, test sample {sample}", fontsize=FONT_SIZES["title"])
    return fig


def output_potentials(net, sim, x, sample: int = 0, *, points: int = 200) -> Figure:
    """Potentials of the read-out neurons for one sample; their values at t_min^(L) are the logits."""
    inputs = layer_input_times(net, x, sim, sample)
    out = net.output
    t = np.linspace(out.t_start, out.t_min, points)
    logits = sim.logits[sample]
    predicted = int(np.argmax(logits))
    fig = figure(7.5, 4.0)
    ax = fig.subplots()
    main, skips = _group_inputs(out, inputs)
    for c in range(out.layer.output_shape[-1]):
        v = potential(out, main, (c,), t, model=net.model, skip_inputs=skips)
        chosen = c == predicted
        ax.plot(t, v, lw=2.2 if chosen else 1.0, label=f"class {c}" + (" (predicted)" if chosen else ""),
                zorder=3 if chosen else 2)
        ax.plot([out.t_min], [logits[c]], "o", color=ax.lines[-1].get_color(), ms=4)
    ax.axvline(out.t_min, color="k", lw=0.8, ls=":", label=f"read-out at t_min^(L)\n= {out.t_min:.4g} τ_c (logits)")
    ax.set_xlim(out.t_start, out.t_min + 0.02 * (out.t_min - out.t_start))
    style_axes(ax, xlabel=TIME_LABEL, ylabel="V(t)",
               title=f"Read-out potentials of test sample {sample}")
    handles, _ = ax.get_legend_handles_labels()
    _outside_legend(fig, handles, ncol=1, loc="outside right upper")
    return fig


def robustness(rows, knob: str, *, title: str = "") -> Figure:
    """Accuracy and agreement against one parameter: mean over the trials (line), their range
    (shaded, min to max) and every trial (small dots).

    ``rows``: a pandas DataFrame with columns value, accuracy_snn, agreement and
    accuracy_original (one row per trial), as written to results/robustness.csv.
    """
    from matplotlib.ticker import PercentFormatter

    measures = (("accuracy_snn", "SNN accuracy"), ("agreement", "agreement with ReLU"))
    stats = rows.groupby("value")[[c for c, _ in measures]].agg(["mean", "min", "max"])
    values = stats.index.to_numpy(dtype=float)
    fig = figure(7, 4.4)
    ax = fig.subplots()
    handles = []
    for k, (column, label) in enumerate(measures):
        color = f"C{k}"
        (line,) = ax.plot(values, stats[column]["mean"], "o-", color=color, lw=1.6, ms=5, label=f"{label}: mean")
        spread = ax.fill_between(values, stats[column]["min"], stats[column]["max"], color=color, alpha=0.2,
                                 lw=0, label="range over the trials")
        trials = ax.scatter(rows["value"], rows[column], s=10, facecolors="none", edgecolors=color, lw=0.7,
                            alpha=0.8, zorder=3, label="one trial")
        handles.append([line, spread, trials])
    if "accuracy_original" in rows:
        handles[0].append(ax.axhline(float(rows["accuracy_original"].iloc[0]), color="k", ls="--", lw=0.9,
                                     label="ReLU network's accuracy"))
    if len(handles[0]) > len(handles[1]):
        handles[1].append(Line2D([], [], ls="", label=" "))  # keeps the two legend columns aligned
    handles = handles[0] + handles[1]
    positive = values[values > 0]
    if knob != "zeta" and positive.size and np.all(values >= 0):
        # Noise levels span decades; a zero level (no noise) sits at the left edge.
        if positive.size == values.size:
            ax.set_xscale("log")
        else:
            ax.set_xscale("symlog", linthresh=float(positive.min()))
            ax.set_xlim(left=0.0)
    lowest = float(np.nanmin(rows[[c for c, _ in measures]].to_numpy(dtype=float)))
    # Not 0 to 1: the interesting part is how far below 100 % the trials fall.
    ax.set_ylim(max(0.0, lowest - 0.05 * max(1.0 - lowest, 0.02)) - 0.005, 1.005)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=None))
    style_axes(ax, xlabel=KNOB_LABELS.get(knob, knob), ylabel="test samples", title=title or None)
    ax.grid(True, color="0.9", lw=0.6)
    _outside_legend(fig, handles, ncol=2, loc="outside lower center")
    return fig
