"""Simulating the single-spike network: a certified fast path and an event-driven reference.

The **event-driven** engine does what the neurons do: per neuron, sort the input spikes,
walk the piecewise-linear potential from t_min^(n-1) and take the first threshold
crossing (or the forced spike at t_max^(n)).

The **fast** engine (default, DESIGN §4) computes every neuron's closed-form crossing
    t_i = (ϑ_i + α_i t_min^(n-1) + Σ_j J_ij t_j) / (α_i + Σ_j J_ij)
with one matmul/convolution and *certifies* it: on [t_min^(n-1), T], T the last input
time, V_i(t) ≤ α_i (T − t_min^(n-1)) + Σ_{J_ij > 0} J_ij (T − t_j).  If that bound is
below ϑ_i, the neuron cannot fire before all its inputs have arrived, so the closed form is
its first crossing.  A neuron certified for *every* input (the bound with all excitatory
inputs at t_min^(n-1)) skips the per-sample check.  Uncertified neurons go through the
event-driven solver, so both engines return the same spikes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import ops
from .fastpath import compiled
from .serialize import register
from .spiking import SpikingLayer, SpikingNetwork

_CHUNK = 1 << 21  # elements per block of the event-driven solver (bounded memory)


@register
@dataclass
class Simulation:
    """What one simulation run produced.

    Counts are totals over the samples; per-layer arrays are indexed by hidden layer.
    A spike *deviates* when it is not at t_max − ReLU(W x̂ + b) inside the window
    [t_min, t_max], x̂ the values its actual input spikes code (an early crossing, or a
    value beyond the window B_n).
    """

    logits: np.ndarray  # (N, classes)
    deviating: np.ndarray  # (hidden layers,)
    spikes: np.ndarray  # (hidden layers,) spikes emitted
    nonzero: np.ndarray  # (hidden layers,) spikes before t_max (non-zero values)
    neurons: np.ndarray  # (hidden layers,) neurons per sample
    synaptic_events: float  # total over samples
    certified: int = 0
    fallback: int = 0
    max_time_error: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (hidden layers,) vs ReLU
    spike_times: list = field(default_factory=list)  # per hidden layer (N, *shape) when recorded
    engine: str = "fast"

    @property
    def n_samples(self) -> int:
        return len(self.logits)

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.logits, axis=1)

    @staticmethod
    def concat(parts: list["Simulation"]) -> "Simulation":
        """Gather the simulations of consecutive parts of a data set."""
        if not parts:
            raise ValueError("nothing to gather")
        first = parts[0]
        errs = [p.max_time_error for p in parts if p.max_time_error.size]
        return Simulation(
            logits=np.concatenate([p.logits for p in parts]),
            deviating=sum(p.deviating for p in parts),
            spikes=sum(p.spikes for p in parts),
            nonzero=sum(p.nonzero for p in parts),
            neurons=first.neurons,
            synaptic_events=float(sum(p.synaptic_events for p in parts)),
            certified=int(sum(p.certified for p in parts)),
            fallback=int(sum(p.fallback for p in parts)),
            max_time_error=np.max(errs, axis=0) if len(errs) == len(parts) else np.zeros(0),
            spike_times=[np.concatenate(ts) for ts in zip(*[p.spike_times for p in parts])]
            if all(p.spike_times for p in parts) else [],
            engine=first.engine,
        )


# --------------------------------------------------------------------------- event-driven


def first_crossings(tau, w, alpha, theta, t_start: float) -> np.ndarray:
    """First time V reaches ϑ, for neurons sharing sorted input times.

    tau (P, F) sorted input times (already ≥ t_start), w (P, F, C) their weights J in the
    same order, alpha and theta (P, C).  V is piecewise linear: on the segment that starts
    at event k, V(t) = α(t − t_start) + t C_k − D_k with C_k = Σ_{m≤k} w_m,
    D_k = Σ_{m≤k} w_m τ_m, and slope α + C_k.  Returns (P, C), +inf where V never reaches ϑ.
    """
    P, F = tau.shape
    C = w.shape[2]
    zeros = np.zeros((P, 1, C))
    cum_w = np.concatenate([zeros, np.cumsum(w, axis=1)], axis=1)
    cum_wt = np.concatenate([zeros, np.cumsum(w * tau[:, :, None], axis=1)], axis=1)
    start = np.concatenate([np.full((P, 1), t_start), tau], axis=1)[:, :, None]
    end = np.concatenate([tau, np.full((P, 1), np.inf)], axis=1)[:, :, None]
    a = alpha[:, None, :]
    th = theta[:, None, :]
    v = a * (start - t_start) + start * cum_w - cum_wt
    slope = a + cum_w
    with np.errstate(divide="ignore", invalid="ignore"):
        # V(t) = α(t − t_start) + t C_k − D_k = ϑ solved directly, without the
        # cancellation of start + (ϑ − V_k)/slope; the same expression as the closed form.
        cand = (th + a * t_start + cum_wt) / slope
    inside = (v < th) & (slope > 0) & (cand <= end)
    crossing = np.where(inside, cand, np.inf).min(axis=1)
    # A crossing exactly at a segment boundary may be lost to round-off on both sides;
    # V ≥ ϑ at a segment's start then dates it.
    reached = np.where(v >= th, start, np.inf).min(axis=1)
    return np.minimum(crossing, reached)


def _patch_index(layer, positions):
    """Row and column indices of the receptive fields of conv output ``positions`` (K, 2)."""
    kh, kw = layer.weight.shape[:2]
    rows = positions[:, 0:1] * layer.strides[0] + np.arange(kh)[None, :] * layer.dilation[0]
    cols = positions[:, 1:2] * layer.strides[1] + np.arange(kw)[None, :] * layer.dilation[1]
    return rows[:, :, None], cols[:, None, :]


def _patches(group, tp: np.ndarray, samples, positions) -> np.ndarray:
    """Input times of the receptive fields: (K, F) for K (sample, position) pairs."""
    if group.kind == "dense":
        return tp[samples]
    rows, cols = _patch_index(group, positions)
    return tp[samples[:, None, None], rows, cols, :].reshape(len(samples), -1)


def _event_layer(sl: SpikingLayer, inputs: list) -> np.ndarray:
    """Event-driven first crossings of every neuron of a layer; ``inputs`` padded times per group."""
    layer = sl.layer
    J = np.concatenate([sl.group_J(g).reshape(-1, layer.channels) for g in layer.groups])
    batch = len(inputs[0])
    out = np.empty((batch,) + layer.output_shape)
    alpha = np.broadcast_to(sl.alpha, layer.output_shape).reshape(-1, layer.channels)
    theta = np.broadcast_to(sl.threshold, layer.output_shape).reshape(-1, layer.channels)
    F, C = J.shape
    step = max(1, _CHUNK // (F * C))
    if layer.kind == "dense":
        grid = np.zeros((1, 2), int)
    else:
        ho, wo, _ = layer.output_shape
        grid = np.stack(np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij"), -1).reshape(-1, 2)
    for b in range(batch):
        samples = np.full(len(grid), b)
        times = np.concatenate([_patches(g, tp, samples, grid) for g, tp in zip(layer.groups, inputs)], axis=1)
        times = np.maximum(times, sl.t_start)
        order = np.argsort(times, axis=1, kind="stable")
        tau = np.take_along_axis(times, order, axis=1)
        res = np.empty((len(times), C))
        for s in range(0, len(times), step):
            w = J[order[s : s + step]]
            res[s : s + step] = first_crossings(tau[s : s + step], w, alpha[s : s + step], theta[s : s + step], sl.t_start)
        out[b] = res.reshape(layer.output_shape)
    return np.minimum(out, sl.t_max)


def _event_neurons(sl: SpikingLayer, inputs: list, index: tuple) -> np.ndarray:
    """Event-driven first crossings of selected neurons; ``index`` = (sample, *position, channel).

    Neurons of one sample and position share their receptive field: its input times are
    gathered and sorted once, and each neuron walks them with its own weights.
    """
    layer = sl.layer
    b, c = index[0], index[-1]
    alpha = np.broadcast_to(sl.alpha, layer.output_shape)[index[1:]]
    theta = np.broadcast_to(sl.threshold, layer.output_shape)[index[1:]]
    conv = layer.kind == "conv"
    keys = np.stack([b, index[1], index[2]], 1) if conv else b[:, None]
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    out = np.empty(len(b))
    F = sum(int(np.prod(g.weight.shape[:-1])) for g in layer.groups)
    step = max(1, _CHUNK // F)
    for s in range(0, len(unique), step):
        u = unique[s : s + step]
        times, J = _neuron_patches(sl, inputs, u[:, 0], u[:, 1:] if conv else None)
        order = np.argsort(times, axis=1, kind="stable")
        tau_u = np.take_along_axis(times, order, axis=1)
        chunk = np.flatnonzero((inverse >= s) & (inverse < s + len(u)))
        for k in range(0, len(chunk), step):
            sel = chunk[k : k + step]
            row = inverse[sel] - s
            w = J[order[row], c[sel][:, None]][:, :, None]
            out[sel] = first_crossings(tau_u[row], w, alpha[sel][:, None], theta[sel][:, None], sl.t_start)[:, 0]
    return np.minimum(out, sl.t_max)


def _neuron_patches(sl: SpikingLayer, inputs: list, samples, positions):
    """Receptive-field times (K, F) of neurons at (sample, position), all synapse groups,
    clamped at t_start; and the matching J rows (F, C)."""
    layer = sl.layer
    times = np.concatenate([_patches(g, tp, samples, positions) for g, tp in zip(layer.groups, inputs)], axis=1)
    J = np.concatenate([sl.group_J(g).reshape(-1, layer.channels) for g in layer.groups])
    return np.maximum(times, sl.t_start), J


def _per_input_bound(v_T, S, inhibition) -> np.ndarray:
    """Upper bound of V on [t_start, T] with one choice per inhibitory input.

    With s = T − t and x_j = T − t_j, V(T − s) = α (S − s) + Σ_j J_ij (x_j − s)^+.  An
    inhibitory term is at most J_ij (x_j − s) for an input that came early (x_j ≥ S/4) and at
    most 0 for a late one; with the (convex) excitatory terms the majorant is convex in s,
    so its maximum is at s = 0, V(T) + Σ_late |J_ij| x_j, or at s = S, Σ_early |J_ij| (S − x_j).
    ``inhibition`` lists (x, apply) per synapse group, ``apply(y)`` = Σ_j |J⁻_ij| y_j.
    """
    late_bound, early_bound = v_T, 0.0
    for x, apply in inhibition:
        late = x < 0.25 * S
        late_bound = late_bound + apply(np.where(late, x, 0.0))
        early_bound = early_bound + apply(np.where(late, 0.0, S - x))
    return np.maximum(late_bound, early_bound)


def grid_certify(sl: SpikingLayer, inputs: list, index: tuple, T, bins: int = 8) -> np.ndarray:
    """Certify selected neurons with finer bounds of their potential (True = certified).

    First a convex majorant with one choice per inhibitory input (linear if it came early,
    0 if late).  Then [t_start, T] is cut into ``bins`` equal bins τ_0 < … < τ_K.  On a bin, inputs that arrived
    before it add a linear term, those after it nothing, and those inside it J_j (t − t_j)^+:
    convex for J_j > 0, and at most 0 for J_j < 0.  Dropping the in-bin inhibitory terms
    leaves a convex majorant, so on the bin V ≤ max(V(τ_k), V(τ_{k+1}) + Σ_{in bin, J<0} |J_j| (τ_{k+1} − t_j)).
    If every bin stays below ϑ the neuron cannot fire before T.  Neurons sharing a receptive
    field share the patch, and the bound is a handful of matrix products per bin.
    """
    layer = sl.layer
    b, c = index[0], index[-1]
    positions = np.stack(index[1:3], 1) if layer.kind == "conv" else np.zeros((len(b), 2), int)
    keys = np.stack([b, positions[:, 0], positions[:, 1]], 1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    alpha = np.broadcast_to(sl.alpha, layer.output_shape)[index[1:]]
    theta = np.broadcast_to(sl.threshold, layer.output_shape)[index[1:]]
    ok = np.zeros(len(b), bool)
    F = sum(int(np.prod(g.weight.shape[:-1])) for g in layer.groups)
    step = max(1, _CHUNK // (4 * F))
    for s in range(0, len(unique), step):
        u = unique[s : s + step]
        times, J = _neuron_patches(sl, inputs, u[:, 0], u[:, 1:] if layer.kind == "conv" else None)
        sel = np.flatnonzero((inverse >= s) & (inverse < s + len(u)))
        row, col = inverse[sel] - s, c[sel]
        channels, ch_index = np.unique(col, return_inverse=True)
        Jc, Jneg = J[:, channels], np.maximum(-J[:, channels], 0.0)
        t_hi = np.asarray(T, np.float64).reshape(-1)[u[:, 0]] if np.ndim(T) else np.full(len(u), float(T))
        grid = sl.t_start + (t_hi - sl.t_start)[:, None] * np.linspace(0.0, 1.0, bins + 1)[None, :]
        a, th = alpha[sel], theta[sel]
        # First the two-sided bound of layer_spikes with a per-input choice: an inhibitory
        # input that arrived early (x_j ≥ S/4) is bounded by J_ij (x_j − s), a late one by 0.
        S = (t_hi - sl.t_start)[:, None]
        x = t_hi[:, None] - times
        v_T = a * S[row, 0] + (x @ Jc)[row, ch_index]
        bound = _per_input_bound(v_T, S, [(x, lambda y: (y @ Jneg)[row, ch_index])])
        done = bound < th
        ok[sel[done]] = True
        left = ~done
        if not left.any():
            continue
        sel, row, ch_index, a, th = sel[left], row[left], ch_index[left], a[left], th[left]
        good = np.ones(len(sel), bool)
        v_lo = np.zeros(len(sel))  # V(t_start) = 0
        for k in range(bins):
            lo, hi = grid[:, k : k + 1], grid[:, k + 1 : k + 2]
            v_hi_all = np.maximum(hi - times, 0.0) @ Jc
            v_hi = a * (hi[row, 0] - sl.t_start) + v_hi_all[row, ch_index]
            inside = ((times > lo) & (times <= hi)) * (hi - times)
            corr = (inside @ Jneg)[row, ch_index]
            good &= (v_lo < th) & (v_hi + corr < th)
            v_lo = v_hi
        ok[sel] = good
    return ok


# --------------------------------------------------------------------------- one layer


def padded_inputs(sl: SpikingLayer, times: dict) -> list[np.ndarray]:
    """Input spike times per synapse group, delayed, with padded taps spiking at t_min^(n)
    (value 0); flattened for dense groups.  ``times`` maps layer index to pooled spike times."""
    out = []
    for g, delay in zip(sl.layer.groups, sl.group_delays()):
        t = np.asarray(times[g.source], np.float64)
        if delay:
            t = t + delay
        out.append(t.reshape(len(t), -1) if g.kind == "dense" else np.asarray(g.padded(t, sl.t_min)))
    return out


def _synaptic_sum(layer, tp_values, weight) -> np.ndarray:
    if layer.kind == "dense":
        return tp_values @ weight.reshape(tp_values.shape[1], -1)
    return ops.conv2d(tp_values, weight, layer.strides, layer.dilation).numpy()


def _input_values(sl: SpikingLayer, inputs: list) -> np.ndarray:
    """Σ_groups W x̃ with x̃_j = t_min − clip(t_j, t_start, t_min): what the inputs that arrived
    inside the input window contribute by t_min (silent ones, t = +inf, contribute 0)."""
    return sum(
        _synaptic_sum(g, sl.t_min - np.clip(tp, sl.t_start, sl.t_min), g.weight)
        for g, tp in zip(sl.layer.groups, inputs)
    )


def b1_layer_spikes(sl: SpikingLayer, inputs: list):
    """Spike times of a B1 layer (+inf = silent) and ideal times t_max − ReLU(W x̂ + b).

    V(t_min^(n)) = Σ_j W_ij (t_min^(n) − t_j) over the inputs that spiked in
    [t_min^(n-1), t_min^(n)) (clamped at t_min^(n-1); silent and late inputs add nothing),
    then V rises with slope α_i, so the spike is at t_min^(n) + (ϑ_i − V)/α_i, at once if
    V ≥ ϑ_i already (clipped value), and never if that time is ≥ t_max^(n).  The neuron
    cannot fire while inputs arrive, so there is no early crossing to look for and both
    engines use this expression.
    """
    v = _input_values(sl, inputs)
    spikes = sl.t_min + np.maximum(sl.threshold - v, 0.0) / sl.alpha
    spikes = np.where(spikes < sl.t_max, spikes, np.inf)
    return spikes, sl.t_max - np.maximum(v + sl.layer.bias, 0.0)


def layer_spikes(sl: SpikingLayer, inputs: list, engine: str = "fast", noisy_inputs: bool = False):
    """Spike times of a hidden α-model layer given its padded input times per synapse group.

    Returns (spikes, ideal, certified, fallback) where ideal = t_max − ReLU(W x̂ + b) with
    x̂ = t_min − t_j the values the actual inputs code (a spike elsewhere, or before t_min,
    deviates).
    """
    layer = sl.layer
    groups = layer.groups
    s, pos_sum, neg_sum = sl.weight_sums
    one_minus = 1.0 - s
    j_sum = s / one_minus
    w_x = sum(_synaptic_sum(g, sl.t_min - tp, g.weight) for g, tp in zip(groups, inputs))
    ideal = sl.t_max - np.maximum(w_x + layer.bias, 0.0)
    if engine == "event":
        spikes = _event_layer(sl, inputs)
        return spikes, ideal, 0, spikes.size
    if engine != "fast":
        raise ValueError(f"unknown engine {engine!r}: use 'fast' or 'event'")
    alpha, theta = sl.alpha, sl.threshold
    if sl.alpha_is_one:
        closed = sl.t_max - (w_x + layer.bias)  # the closed form with α = 1, without re-deriving it from ϑ
    else:
        closed = (theta + alpha * sl.t_start + j_sum * sl.t_min - w_x / one_minus) / (alpha + j_sum)
    spikes = np.minimum(closed, sl.t_max)
    batch = len(inputs[0])
    j_pos_sum = pos_sum / one_minus
    if noisy_inputs:
        # Inputs may arrive after t_min^(n): the bounds run to the sample's last input.
        last = np.max([tp.reshape(batch, -1).max(axis=1) for tp in inputs], axis=0)
        T = np.maximum(last, sl.t_min).reshape((batch,) + (1,) * len(layer.output_shape))
        certified = np.zeros((batch,) + layer.output_shape, bool)
        channels = np.arange(layer.channels)
    else:
        T = sl.t_min
        width = sl.t_min - sl.t_start
        certified = np.broadcast_to(alpha * width + j_pos_sum * width < theta, (batch,) + layer.output_shape).copy()
        channels = np.flatnonzero(~certified.reshape(-1, layer.channels).all(axis=0))
    if channels.size:
        # With s = T − t ∈ [0, S] and x_j = T − t_j: V(T − s) = α (S − s) + Σ_j J_ij (x_j − s)^+.
        # Excitatory terms are convex in s.  An inhibitory term lies below μ J_ij (x_j − s) for
        # any μ ∈ [0, 1]; the majorant is then convex, with its maximum at s = 0 or s = S:
        #   a0 + μ n0  and  μ n1,   a0 = α S + J⁺x,  n0 = J⁻x ≤ 0,  n1 = J⁻x − S ΣJ⁻ ≥ 0.
        # μ = 0 is the excitation-only bound; the μ that balances both ends is the tightest.
        a, th = alpha[..., channels], theta[..., channels]
        S = T - sl.t_start
        reach = [T - np.maximum(tp, sl.t_start) for tp in inputs]
        j_pos_x = sum(_synaptic_sum(g, x, np.maximum(g.weight[..., channels], 0.0)) for g, x in zip(groups, reach))
        if noisy_inputs or any(tp.min() < sl.t_start for tp in inputs):
            j_x = sum(_synaptic_sum(g, x, g.weight[..., channels]) for g, x in zip(groups, reach))
        else:
            j_x = w_x[..., channels]  # x_j = t_min − t_j: W x is already known
        cm = one_minus[channels]
        a0 = a * S + j_pos_x / cm
        n0 = (j_x - j_pos_x) / cm
        n1 = n0 - S * neg_sum[channels] / cm
        with np.errstate(divide="ignore", invalid="ignore"):
            mu = np.clip(np.nan_to_num(a0 / (n1 - n0), nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
        certified[..., channels] |= np.maximum(a0 + mu * n0, mu * n1) < th
        keep = ~certified[..., channels].reshape(-1, channels.size).all(axis=0)
        channels, j_x = channels[keep], j_x[..., keep]
        if channels.size and (~certified).mean() > 0.01:
            # Many left: the per-input bound of grid_certify is cheaper as two convolutions
            # over the whole layer than on gathered receptive fields.
            cm = one_minus[channels]
            v_T = alpha[..., channels] * S + j_x / cm
            inhibition = [
                (x, lambda y, g=g: _synaptic_sum(g, y, np.maximum(-g.weight[..., channels], 0.0) / cm))
                for g, x in zip(groups, reach)
            ]
            certified[..., channels] |= _per_input_bound(v_T, S, inhibition) < theta[..., channels]
    index, times = settle(sl, inputs, np.nonzero(~certified), T)
    spikes[index] = times
    n_fallback = int(index[0].size)
    return spikes, ideal, spikes.size - n_fallback, n_fallback


def settle(sl: SpikingLayer, inputs: list, index: tuple, T) -> tuple[tuple, np.ndarray]:
    """Neurons the cheap certificates left: certify what :func:`grid_certify` can, and solve
    the rest event by event.  Returns the index of those solved and their spike times."""
    if index[0].size:
        fine = grid_certify(sl, inputs, index, T)
        index = tuple(i[~fine] for i in index)
    times = _event_neurons(sl, inputs, index) if index[0].size else np.zeros(0)
    return index, times


def _compiled_layer_spikes(sl: SpikingLayer, times: dict):
    """One hidden α-model layer on the compiled fast path (:mod:`exactsnn.fastpath`).

    Returns (spike times as a tensor, certified, fallback, deviating, non-zero).  Neurons the
    compiled certificate leaves go through :func:`settle`; a layer with inputs outside its
    input window (an upstream deviation) through :func:`layer_spikes`, which then bounds V
    up to the last input.
    """
    tf = ops._tf()
    layer = compiled(sl)
    spikes, ideal, left, n_left, inside = layer.step(tuple(times[g.source] for g in sl.layer.groups))
    n_fallback = 0
    if not bool(inside):
        spikes, ideal, _, n_fallback = layer_spikes(sl, padded_inputs(sl, times), "fast", noisy_inputs=True)
        spikes, ideal = tf.constant(spikes), tf.constant(ideal)
    elif int(n_left):
        index = tuple(tf.where(left).numpy().T)
        index, solved = settle(sl, padded_inputs(sl, times), index, sl.t_min)
        n_fallback = len(solved)
        if n_fallback:
            spikes = tf.tensor_scatter_nd_update(spikes, np.stack(index, 1), solved)
    deviating, nonzero = layer.counts(spikes, ideal)
    size = int(np.prod(spikes.shape))
    return spikes, size - n_fallback, n_fallback, int(deviating), int(nonzero)


def readout(out: SpikingLayer, inputs: list, neuron: str = "alpha") -> np.ndarray:
    """Potential of the read-out neurons at t_min^(L), flattened to (N, classes).

    α-model: α (t_min^(L) − t_min^(L-1)) + Σ_j W_ij (t_min^(L) − t_j)^+; B1: b + Σ_j W_ij (t_min^(L) − t_j)^+
    (silent inputs, t_j = +inf, add nothing).
    """
    base = out.layer.bias if neuron == "b1" else out.alpha * (out.t_min - out.t_start)
    v = base + _input_values(out, inputs)
    return v.reshape(len(v), -1)


def synaptic_events(sl: SpikingLayer, times: dict) -> float:
    """Synaptic events caused by a layer's input spikes: Σ over real synapses whose presynaptic neuron fired."""
    total = 0.0
    for g in sl.layer.groups:
        t = np.asarray(times[g.source], np.float64)
        fired = np.isfinite(t).astype(np.float64)
        if g.kind == "dense":
            total += float(fired.reshape(len(fired), -1).sum() * g.channels)
            continue
        kh, kw, _, cout = g.weight.shape
        per_position = g.padded(fired.sum(axis=-1, keepdims=True), 0.0)
        taps = ops.conv2d(per_position, np.ones((kh, kw, 1, 1)), g.strides, g.dilation)
        total += float(np.sum(taps)) * cout
    return total


# --------------------------------------------------------------------------- network


def simulate(
    net: SpikingNetwork,
    x,
    *,
    engine: str = "fast",
    noise_sigma: float = 0.0,
    noise_seed: int = 0,
    batch_size: int = 256,
    progress: bool = False,
    sample_offset: int = 0,
    record: bool = False,
    relu_reference: bool = False,
) -> Simulation:
    """Run the spiking network on raw inputs ``x`` (the domain the original model takes).

    ``noise_sigma`` adds N(0, σ²) to every spike time (inputs too, clipped at ≥ 0); the
    noise of sample k is drawn from ``(noise_seed, sample_offset + k)``, so splitting a data
    set into parts gives the same result as one run.  ``relu_reference`` also runs the
    scaled ReLU network and reports max |t_spike − (t_max − x)| per layer.
    """
    x = np.asarray(x)
    hidden = net.hidden_layers
    n_hidden = len(hidden)
    deviating = np.zeros(n_hidden, np.int64)
    spikes_total = np.zeros(n_hidden, np.int64)
    nonzero = np.zeros(n_hidden, np.int64)
    max_err = np.zeros(n_hidden)
    certified = fallback = 0
    b1 = net.neuron == "b1"
    events = 0.0 if b1 else float(len(x) * sum(sl.layer.synapses for sl in net.layers))
    logits, recorded = [], [[] for _ in hidden]
    starts = range(0, len(x), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"simulate ({engine})", unit="batch")
    last_use = net.scaled_network().last_use()
    # The noise-free α-model fast engine keeps spike times in TensorFlow (exactsnn.fastpath).
    compiled_path = engine == "fast" and not b1 and noise_sigma == 0
    if engine not in ("fast", "event"):
        raise ValueError(f"unknown engine {engine!r}: use 'fast' or 'event'")
    for start in starts:
        xb = np.asarray(x[start : start + batch_size], np.float64)
        rngs = [np.random.default_rng([noise_seed, sample_offset + start + k]) for k in range(len(xb))] if noise_sigma > 0 else None
        t = net.input_times(xb)
        if rngs:
            t = np.maximum(t + _noise(rngs, t.shape[1:], noise_sigma), 0.0)
        for pool in net.input_pools:
            t = np.asarray(pool.on_times(t, 1.0))
        times = {-1: t}
        if relu_reference:
            h = (xb - net.input_range[0]) / (net.input_range[1] - net.input_range[0])
            for pool in net.input_pools:
                h = np.asarray(pool.on_values(h))
            values = {-1: h}
        if compiled_path:
            times = {-1: ops._tf().constant(t)}
        for n, sl in enumerate(hidden):
            tol = 1e-9 * max(1.0, abs(sl.t_max))
            if compiled_path:
                spikes, cert, fall, dev, nz = _compiled_layer_spikes(sl, times)
                certified += cert
                fallback += fall
                deviating[n] += dev
                nonzero[n] += nz
                spikes_total[n] += cert + fall
                compare = spikes
            else:
                inputs = padded_inputs(sl, times)
                if b1:
                    events += synaptic_events(sl, times)
                    spikes, ideal = b1_layer_spikes(sl, inputs)
                    fired = np.isfinite(spikes)
                    compare = np.where(fired, spikes, sl.t_max)
                else:
                    spikes, ideal, cert, fall = layer_spikes(sl, inputs, engine, noisy_inputs=noise_sigma > 0)
                    certified += cert
                    fallback += fall
                    fired, compare = np.ones(spikes.shape, bool), spikes
                deviating[n] += int(((np.abs(compare - ideal) > tol) | (compare < sl.t_min - tol)).sum())
                spikes_total[n] += int(fired.sum())
                nonzero[n] += int((compare < sl.t_max - tol).sum())
            if relu_reference:
                h = np.maximum(sl.layer.apply_groups(values), 0.0)
                max_err[n] = max(max_err[n], float(np.abs(np.asarray(compare) - (sl.t_max - h)).max(initial=0.0)))
                for pool in sl.layer.pools:
                    h = np.asarray(pool.on_values(h))
                values[n] = h
            if rngs:
                spikes = spikes + _noise(rngs, spikes.shape[1:], noise_sigma)
            if record:
                recorded[n].append(np.asarray(spikes))
            if compiled_path:
                spikes = compiled(sl).pool(spikes) if sl.layer.pools else spikes
            else:
                for pool in sl.layer.pools:
                    spikes = np.asarray(pool.on_times(spikes, sl.t_max))
            times[n] = spikes
            for src in [s for s, user in last_use.items() if user == n]:
                times.pop(src, None)
        inputs = padded_inputs(net.output, times)
        if b1:
            events += synaptic_events(net.output, times)
        logits.append(readout(net.output, inputs, net.neuron))
    n_out = net.output.layer.output_shape
    return Simulation(
        logits=np.concatenate(logits) if logits else np.zeros((0, int(np.prod(n_out)))),
        deviating=deviating,
        spikes=spikes_total,
        nonzero=nonzero,
        neurons=np.array([sl.neurons for sl in hidden], np.int64),
        synaptic_events=events,
        certified=certified,
        fallback=fallback,
        max_time_error=max_err if relu_reference else np.zeros(0),
        spike_times=[np.concatenate(r) for r in recorded] if record and logits else [],
        engine=engine,
    )


def _noise(rngs, shape, sigma) -> np.ndarray:
    return np.stack([rng.normal(0.0, sigma, size=shape) for rng in rngs])
