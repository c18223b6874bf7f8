"""Figures of a spiking network at work, in the style of the paper's Figure 4.

Pure functions: each takes a :class:`~exactsnn.spiking.SpikingNetwork` and the
:class:`~exactsnn.simulate.Simulation` of a run made with ``record=True`` (plus the raw inputs
``x`` of that run where input spikes are drawn) and returns a :class:`matplotlib.figure.Figure`;
nothing is shown or saved, and pyplot's global state is not touched.

The membrane potential of neuron i of a hidden layer, for t ≥ t_start = t_min^(n-1), is
    V_i(t) = α_i (t − t_start) + Σ_j J_ij (t − max(t_j, t_start))⁺,
and that of a read-out neuron the same with W_ij in place of J_ij and input times clipped to
[t_start, t_min^(L)]; its value at t_min^(L) is the logit.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "layer_input_times",
    "potential",
    "raster",
    "spike_time_histogram",
    "membrane_potentials",
    "output_potentials",
    "robustness",
]

_WINDOW_COLOR = "0.92"


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
        t = np.asarray(pool.on_times(t))
    inputs = [t[0]]
    for n, sl in enumerate(net.hidden_layers):
        s = sim.spike_times[n][sample : sample + 1]
        for pool in sl.layer.pools:
            s = np.asarray(pool.on_times(s))
        inputs.append(s[0])
    return inputs


def _receptive_field(sl, t_in: np.ndarray, position: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(input times, weights) of the neuron at ``position`` (spatial indices, channel)."""
    layer = sl.layer
    channel = position[-1]
    if layer.kind == "dense":
        return np.asarray(t_in, np.float64).reshape(-1), layer.weight[:, channel]
    padded = np.asarray(layer.padded(np.asarray(t_in, np.float64)[None], sl.t_min))[0]
    kh, kw = layer.weight.shape[:2]
    rows = position[0] * layer.strides[0] + np.arange(kh) * layer.dilation[0]
    cols = position[1] * layer.strides[1] + np.arange(kw) * layer.dilation[1]
    patch = padded[rows[:, None], cols[None, :], :]
    return patch.reshape(-1), layer.weight[..., channel].reshape(-1)


def potential(sl, t_in: np.ndarray, position: tuple, t: np.ndarray) -> np.ndarray:
    """V(t) of the neuron at ``position`` of layer ``sl`` given its layer's input times ``t_in``.

    ``t_in`` is one sample's input to the layer (no batch axis), ``position`` indexes the
    layer's output (``(i,)`` for dense, ``(row, col, channel)`` for conv).  Before t_start the
    potential is 0.
    """
    t = np.asarray(t, np.float64)
    times, weight = _receptive_field(sl, t_in, position)
    alpha = float(np.broadcast_to(sl.alpha, sl.layer.output_shape)[position])
    if sl.hidden:
        weight = weight / (1.0 - sl.layer.weight_sum[position[-1]])
        times = np.maximum(times, sl.t_start)
    else:
        times = np.clip(times, sl.t_start, sl.t_min)
    ramp = np.maximum(t[:, None] - times[None, :], 0.0) @ weight
    v = alpha * (t - sl.t_start) + ramp
    return np.where(t >= sl.t_start, v, 0.0)


def _shade_windows(ax, net, *, label: bool = False) -> None:
    ax.axvspan(0.0, 1.0, color=_WINDOW_COLOR, zorder=0)
    for n, sl in enumerate(net.hidden_layers):
        ax.axvspan(sl.t_min, sl.t_max, color=_WINDOW_COLOR if n % 2 else "0.85", zorder=0)
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
    fig = Figure(figsize=(7, 1.3 + 1.1 * len(times)), layout="constrained")
    axes = fig.subplots(len(times), 1, sharex=True, squeeze=False)[:, 0]
    for ax, t, name in zip(axes, times, names):
        flat = t.reshape(-1)
        keep = _subsample(flat.size, max_neurons)
        _shade_windows(ax, net)
        ax.scatter(flat[keep], keep, s=2, c="k", marker="|", linewidths=0.6)
        ax.set_ylabel(f"{name}\nneuron", fontsize=8)
        ax.set_ylim(-0.5, flat.size - 0.5)
    axes[-1].set_xlabel("time")
    axes[-1].set_xlim(0.0, net.latency * 1.02)
    fig.suptitle(f"Spikes of test sample {sample} (every neuron fires once)")
    return fig


def spike_time_histogram(net, sim, sample: int = 0, *, bins: int = 60) -> Figure:
    """Histogram of the spike times of each hidden layer for one sample."""
    _check_recorded(net, sim, sample)
    fig = Figure(figsize=(7, 3.2), layout="constrained")
    ax = fig.subplots()
    _shade_windows(ax, net)
    edges = np.linspace(1.0, net.latency, bins + 1) if net.latency > 1.0 else bins
    for s, name in zip(sim.spike_times, _layer_names(net)):
        ax.hist(s[sample].reshape(-1), bins=edges, histtype="step", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("spike time")
    ax.set_ylabel("spikes")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"Spike times of test sample {sample}")
    return fig


def _pick_neurons(spikes: np.ndarray, t_max: float, count: int) -> list[tuple]:
    """Up to ``count`` neurons, evenly over those that fire before t_max (non-zero values)."""
    flat = spikes.reshape(-1)
    active = np.flatnonzero(flat < t_max - 1e-12)
    pool = active if active.size else np.arange(flat.size)
    pool = pool[np.argsort(flat[pool], kind="stable")]
    chosen = pool[_subsample(pool.size, count)]
    return [np.unravel_index(i, spikes.shape) for i in chosen]


def membrane_potentials(net, sim, x, sample: int = 0, *, neurons: int = 5, points: int = 400) -> Figure:
    """Membrane potentials of ``neurons`` neurons per hidden layer for one sample.

    Each trace starts at t_min^(n-1), crosses its threshold (dashed) at the spike (dot).
    """
    inputs = layer_input_times(net, x, sim, sample)
    hidden = net.hidden_layers
    fig = Figure(figsize=(7, 1.0 + 2.0 * len(hidden)), layout="constrained")
    axes = fig.subplots(len(hidden), 1, squeeze=False)[:, 0]
    for n, (ax, sl, name) in enumerate(zip(axes, hidden, _layer_names(net))):
        spikes = sim.spike_times[n][sample]
        t = np.linspace(sl.t_start, sl.t_max, points)
        ax.axvspan(sl.t_min, sl.t_max, color=_WINDOW_COLOR, zorder=0)
        for k, position in enumerate(_pick_neurons(spikes, sl.t_max, neurons)):
            color = f"C{k % 10}"
            v = potential(sl, inputs[n], position, t)
            theta = float(sl.threshold[position])
            t_spike = float(spikes[position])
            ax.plot(t, v, color=color, lw=1)
            ax.axhline(theta, color=color, lw=0.6, ls="--")
            ax.plot([t_spike], [theta], "o", color=color, ms=3)
        ax.set_xlim(sl.t_start, sl.t_max)
        ax.set_ylabel(f"{name}\nV(t)", fontsize=8)
    axes[-1].set_xlabel("time")
    fig.suptitle(f"Membrane potentials, test sample {sample}")
    return fig


def output_potentials(net, sim, x, sample: int = 0, *, points: int = 200) -> Figure:
    """Potentials of the read-out neurons for one sample; their values at t_min^(L) are the logits."""
    inputs = layer_input_times(net, x, sim, sample)
    out = net.output
    t = np.linspace(out.t_start, out.t_min, points)
    logits = sim.logits[sample]
    predicted = int(np.argmax(logits))
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.subplots()
    for c in range(out.layer.output_shape[-1]):
        v = potential(out, inputs[-1], (c,), t)
        ax.plot(t, v, lw=2.0 if c == predicted else 0.8, label=f"{c}" + (" (predicted)" if c == predicted else ""))
        ax.plot([out.t_min], [logits[c]], "o", color=ax.lines[-1].get_color(), ms=3)
    ax.set_xlabel("time")
    ax.set_ylabel("V(t)")
    ax.legend(fontsize=6, ncol=2, loc="upper left")
    ax.set_title(f"Read-out potentials of test sample {sample}; logits at t = {out.t_min:.4g}")
    return fig


_KNOB_LABELS = {
    "zeta": "time-window margin ζ",
    "noise_sigma": "spike-time noise σ",
    "alpha_sigma": "α mismatch σ_α",
}


def robustness(rows, knob: str, *, title: str = "") -> Figure:
    """Accuracy and agreement (mean over trials, trial range shaded) against one parameter.

    ``rows``: a pandas DataFrame with columns value, accuracy_snn, agreement and
    accuracy_original (one row per trial), as written to results/robustness.csv.
    """
    stats = rows.groupby("value")[["accuracy_snn", "agreement"]].agg(["mean", "min", "max"])
    values = stats.index.to_numpy(dtype=float)
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    for column, label in (("accuracy_snn", "SNN accuracy"), ("agreement", "agreement")):
        ax.plot(values, stats[column]["mean"], "o-", label=label)
        ax.fill_between(values, stats[column]["min"], stats[column]["max"], alpha=0.2)
    if "accuracy_original" in rows:
        ax.axhline(float(rows["accuracy_original"].iloc[0]), color="k", ls="--", lw=0.8, label="ReLU accuracy")
    positive = values[values > 0]
    if knob != "zeta" and positive.size and np.all(values >= 0):
        # Noise levels span decades; a zero level (no noise) sits at the left edge.
        if positive.size == values.size:
            ax.set_xscale("log")
        else:
            ax.set_xscale("symlog", linthresh=float(positive.min()))
            ax.set_xlim(left=0.0)
    ax.set_xlabel(_KNOB_LABELS.get(knob, knob))
    ax.set_ylabel("fraction of test samples")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig
