"""Simulating the single-spike network: a certified fast path and an event-driven reference.

Once a neuron's last input has arrived its potential is a line, which crosses ϑ_i at the
closed form
    t_i = (ϑ_i + α_i t_min^(n-1) + Σ_j J_ij t_j) / (α_i + Σ_j J_ij)
(= t_max − (W x + b)_i for α = 1, DESIGN §2), computed for a whole layer with one
matmul/convolution.  The engines differ in how they settle what happens before:

* **event-driven** (``engine="event"``): every neuron sorts its input spikes and walks its
  piecewise-linear potential from t_min^(n-1) up to its last input (:func:`_walk`, Numba,
  one sort per receptive field); a crossing there is its spike, otherwise the closed form
  (or the forced spike at t_max^(n)).
* **fast** (default, DESIGN §4): a bound proves, for nearly every neuron at once, that V_i
  stays below ϑ_i until the last input (:mod:`exactsnn.fastpath`); only the neurons it
  leaves are walked, after two cheaper per-neuron bounds.

Both take the same closed form, so they agree to the last bit unless a bound is wrong.
Noise-free α-model networks run layer by layer as traced TensorFlow steps with values
x = t_max − t between layers; with spike-time noise, or after an upstream deviation puts an
input outside its window, a layer runs here in NumPy, looking up to the sample's last input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from numba import njit, prange

from . import ops
from .fastpath import compiled
from .serialize import register
from .spiking import SpikingLayer, SpikingNetwork



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


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _stays_below(row, wrow, a, th, t_start, horizon):  # pragma: no cover - compiled
    """True if V provably stays below ϑ up to ``horizon`` = T, by one pass over the inputs.

    With s = T − t ∈ [0, S] and x_j = T − τ_j, V(T − s) = α (S − s) + Σ_j J_j (x_j − s)^+.
    Split at s = σ.  On [0, σ] the inputs with x_j ≥ σ add the line J_j (x_j − s); of the
    later ones the excitatory add convex terms and the inhibitory at most 0, so the maximum is
    at an end:  s = 0: α S + Σ_{x≥σ} J x + Σ_{x<σ} J⁺ x;  s = σ: α (S − σ) + Σ_{x≥σ} J (x − σ).
    On [σ, S] the later inputs have not arrived; of the earlier ones the inhibitory are at
    most μ J_j (x_j − s) for any μ ∈ [0, 1] (convex again):  s = σ: α (S − σ) + Σ⁺ − μ Σ⁻,
    s = S: μ Σ_{x≥σ} |J⁻| (S − x), Σ^± = Σ_{x≥σ} |J^±| (x − σ), μ balancing both.  The
    potential of these neurons peaks at T (where the closed form already says V < ϑ), which
    the split at a small σ keeps almost tight.  Four splits, σ = S/64 … S/2; a margin covers
    the round-off of the sums (summed in any order, so that the loop vectorises).
    """
    S = horizon - t_start
    for sigma in (S / 64.0, S / 16.0, S / 4.0, S / 2.0):
        lin = 0.0  # Σ_{x≥σ} J (x − σ)
        lin_w = 0.0  # Σ_{x≥σ} J
        late_pos = 0.0  # Σ_{x<σ} J⁺ x
        e_pos = 0.0
        e_neg = 0.0
        e_far = 0.0
        size = 0.0
        for j in range(row.shape[0]):  # branch-free, so that it vectorises
            w = wrow[j]
            x = horizon - row[j]
            early = 1.0 if x >= sigma else 0.0
            w_pos = max(w, 0.0)
            w_neg = max(-w, 0.0)
            d = early * (x - sigma)
            size += abs(w)
            lin += w * d
            lin_w += early * w
            e_pos += w_pos * d
            e_neg += w_neg * d
            e_far += early * w_neg * (S - x)
            late_pos += (1.0 - early) * w_pos * x
        size *= S
        # Each sum, in any order: error ≤ (F + 2) ε Σ|terms| ≤ (F + 2) ε S Σ|J|.
        margin = 1e-9 * max(abs(th), 1.0) + 8.0 * (row.shape[0] + 2) * 2.3e-16 * size
        limit = th - margin
        near_end = a * S + lin + sigma * lin_w + late_pos
        split = a * (S - sigma)
        if near_end >= limit or split + lin >= limit:
            continue
        mu = min(max((split + e_pos) / (e_neg + e_far), 0.0), 1.0) if e_neg + e_far > 0.0 else 0.0
        if split + e_pos - mu * e_neg < limit and mu * e_far < limit:
            return True
    return False


@njit(cache=True, nogil=True)
def _gather_row(sources, geometry, scales, offsets, pad_time, t_start, b, r0, c0, row):  # pragma: no cover - compiled
    """Input times of one receptive field into ``row``, synapse group after synapse group.

    sources[g] (B, H, W, C) holds group g's inputs as times (scale 1, offset 0) or as values
    x (t = offset + scale x with offset t_min^(n), scale −1); the field is output position
    (r0, c0) of sample b.  geometry[g] = (kh, kw, stride h, stride w, dilation h, dilation w,
    pad top, pad left, used H, used W): taps outside the used input are padding and spike at
    ``pad_time``.  Times are not clamped: an input before t_start counts from its own arrival
    (DESIGN §2).  In the synapse order (row, column, channel) of J.
    """
    k = 0
    for g in range(len(sources)):
        src = sources[g]
        kh, kw, sh, sw = geometry[g, 0], geometry[g, 1], geometry[g, 2], geometry[g, 3]
        dh, dw, top, left, H, W = geometry[g, 4], geometry[g, 5], geometry[g, 6], geometry[g, 7], geometry[g, 8], geometry[g, 9]
        scale, offset = scales[g], offsets[g]
        C = src.shape[3]
        for i in range(kh):
            r = r0 * sh + i * dh - top
            for j in range(kw):
                c = c0 * sw + j * dw - left
                if 0 <= r < H and 0 <= c < W:
                    for ch in range(C):
                        row[k] = offset + scale * src[b, r, c, ch]
                        k += 1
                else:
                    for ch in range(C):
                        row[k] = pad_time
                        k += 1


# A dense group as :func:`_gather_row` reads it: a 1×1 field over the flattened input.
_DENSE_GEOMETRY = (1, 1, 1, 1, 1, 1, 0, 0, 1, 1)

_BINS = 32  # bins of the window for :func:`_bins_below`


@njit(cache=True, nogil=True)
def _bin_inputs(row, t_start, horizon, order, bounds, edges):  # pragma: no cover - compiled
    """Counting sort of the inputs before ``horizon`` into the bins of :func:`_bins_below`:
    edges[k] = k S / K (relative to t_start); bin k's inputs are order[bounds[k]:bounds[k+1]].
    Membership follows the computed edges exactly (τ − t_start ∈ [edges[k], edges[k+1]))."""
    K = edges.shape[0] - 1
    S = horizon - t_start
    for k in range(K):
        edges[k] = S * k / K
    edges[K] = S
    n = row.shape[0]
    index = np.empty(n, np.int64)
    counts = np.zeros(K + 1, np.int64)
    for j in range(n):
        index[j] = -1
        if row[j] < horizon:
            u = row[j] - t_start
            k = min(int(u * K / S), K - 1)
            while k > 0 and u < edges[k]:
                k -= 1
            while k < K - 1 and u >= edges[k + 1]:
                k += 1
            index[j] = k
            counts[k + 1] += 1
    for k in range(K):
        counts[k + 1] += counts[k]
    bounds[:] = counts
    for j in range(n):
        k = index[j]
        if k >= 0:
            order[counts[k]] = j
            counts[k] += 1


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _bins_below(row, wrow, a, th, t_start, order, bounds, edges):  # pragma: no cover - compiled
    """True if V provably stays below ϑ up to the horizon, bin by bin (:func:`_bin_inputs`).

    With u = t − t_start on bin k = [e_k, e_{k+1}], the inputs of earlier bins add the line
    C_k u − D_k (C_k = Σ J_j, D_k = Σ J_j u_j over them), so with α u it is largest at an
    end; an input of the bin adds J_j (u − u_j)^+ ≤ J⁺_j (e_{k+1} − u_j):
        max_u V ≤ max((α + C_k) e_k, (α + C_k) e_{k+1}) − D_k + Σ_bin J⁺_j (e_{k+1} − u_j).
    Tight up to the excitation inside one bin: it certifies the neurons whose potential
    peaks well inside the window, where the split bound (:func:`_stays_below`) is loose,
    at the cost of a counting sort per receptive field instead of a sort.  The margin covers
    the round-off of the sums as in :func:`_stays_below`.
    """
    K = edges.shape[0] - 1
    size = 0.0
    for j in range(row.shape[0]):
        size += abs(wrow[j])
    margin = 1e-9 * max(abs(th), 1.0) + 8.0 * (row.shape[0] + 2) * 2.3e-16 * size * edges[K]
    limit = th - margin
    C = 0.0
    D = 0.0
    for k in range(K):
        cw = 0.0
        cwt = 0.0
        reach = 0.0
        end = edges[k + 1]
        for m in range(bounds[k], bounds[k + 1]):
            j = order[m]
            w = wrow[j]
            u = row[j] - t_start
            cw += w
            cwt += w * u
            reach += max(w, 0.0) * (end - u)
        if max((a + C) * edges[k], (a + C) * end) - D + reach >= limit:
            return False
        C += cw
        D += cwt
    return True


@njit(cache=True, nogil=True)
def _first_crossing(row, order, wrow, a, th, t_start, horizon):  # pragma: no cover - compiled
    """First t < ``horizon`` with V(t) ≥ ϑ of one α-model neuron, NaN if none before it
    (+inf for an infinite horizon).

    V(t) = α (t − t_start)^+ + Σ_j J_j (t − τ_j)^+ (DESIGN §2): the α current switches on at
    t_start and every input counts from its own arrival, before t_start too.  The events (the
    inputs ``row[order]``, sorted, all before the horizon, and the α onset at t_start) cut time
    into segments; after the events up to one, V(t) = C t − D with C = Σ w, D = Σ w τ over
    them (w = J_j at τ_j, w = α at t_start).  V = 0 before the first event.  The first
    segment that starts at V ≥ ϑ dates the crossing at its start (a crossing exactly at an
    event, whatever the round-off on either side); otherwise the first one whose line
    reaches ϑ before its end, at (ϑ + D)/C — after the last event this is the closed form
    (ϑ + α t_start + Σ_j J_j τ_j)/(α + Σ_j J_j).
    """
    n = order.shape[0]
    C = 0.0
    D = 0.0
    i = 0
    alpha_on = False
    start = min(t_start, row[order[0]]) if n > 0 else t_start
    while True:
        next_input = row[order[i]] if i < n else np.inf
        last = alpha_on and i == n
        end = horizon if last else (min(next_input, t_start) if not alpha_on else next_input)
        if start * C - D >= th:
            return start
        if C > 0.0:
            cand = (th + D) / C
            # Before the horizon: a crossing exactly at it is the closed form's.
            if cand < end or (cand == end and not last):
                return cand
        if last:
            return np.nan if horizon < np.inf else np.inf
        if not alpha_on and t_start <= next_input:
            C += a
            D += a * t_start
            alpha_on = True
            start = t_start
        else:
            w = wrow[order[i]]
            C += w
            D += w * next_input
            i += 1
            start = next_input


@njit(cache=True, nogil=True, parallel=True)
def _walk(fields, starts, chans, JT, alpha, theta, t_start, horizons, bounds):  # pragma: no cover - compiled
    """First crossings of neurons grouped by receptive field, fields in parallel.

    ``fields`` describes U receptive fields for :func:`_gather_row` (each field's F input
    times gathered into a buffer of its thread); the neurons of field u are
    starts[u] … starts[u+1] − 1, with channels chans; JT (C, F) weights J per channel and
    synapse, in the fields' synapse order.  Each neuron walks its piecewise-linear potential
    (:func:`_first_crossing`); +inf where V never reaches ϑ.

    A finite ``horizons[u]`` says that no input of field u comes later, except at it (the
    sample's last input; t_min^(n) when every input is in its window), and asks only for
    crossings before it: NaN marks the neurons without one, whose crossing is then the closed
    form after all inputs, which the caller has.  With ``bounds`` a neuron that
    :func:`_stays_below` or then :func:`_bins_below` certifies skips the walk (the fast
    engine's fallback; the event engine walks every neuron); the others sort and walk only the
    inputs before the horizon (each field once).  The bounds assume every input at or after
    t_start; a field with an earlier input (outside the exact regime) is walked.
    """
    sources, geometry, scales, offsets, pad_time, samples, rows, cols = fields
    U = samples.shape[0]
    out = np.empty(chans.shape[0])
    for u in prange(U):
        row = np.empty(JT.shape[1])
        _gather_row(sources, geometry, scales, offsets, pad_time, t_start, samples[u], rows[u], cols[u], row)
        horizon = horizons[u]
        in_window = row.shape[0] == 0 or row.min() >= t_start
        order = np.empty(0, np.int64)
        sorted_ = False
        binned = np.empty(0, np.int64)  # allocated when a neuron of the field needs the bins
        bin_starts = np.empty(0, np.int64)
        edges = np.empty(0)
        for k in range(starts[u], starts[u + 1]):
            c, a, th = chans[k], alpha[k], theta[k]
            result = np.nan if horizon < np.inf else np.inf
            certified = False
            if bounds and in_window and horizon < np.inf:
                certified = _stays_below(row, JT[c], a, th, t_start, horizon)
                if not certified:
                    if edges.shape[0] == 0:
                        binned = np.empty(row.shape[0], np.int64)
                        bin_starts = np.empty(_BINS + 1, np.int64)
                        edges = np.empty(_BINS + 1)
                        _bin_inputs(row, t_start, horizon, binned, bin_starts, edges)
                    certified = _bins_below(row, JT[c], a, th, t_start, binned, bin_starts, edges)
            if not certified:
                if not sorted_:
                    before = np.nonzero(row < horizon)[0]
                    order = before[np.argsort(row[before])]
                    sorted_ = True
                result = _first_crossing(row, order, JT[c], a, th, t_start, horizon)
            out[k] = result
    return out


def first_crossings(tau, w, alpha, theta, t_start: float) -> np.ndarray:
    """First time V reaches ϑ, for neurons sharing input times (see :func:`_walk`).

    tau (P, F) input times (≥ t_start), w (P, F, C) their weights J, alpha and theta (P, C).
    Returns (P, C), +inf where V never reaches ϑ.
    """
    P, F, C = np.shape(w)
    JT = np.ascontiguousarray(np.transpose(w, (0, 2, 1)).reshape(P * C, F), np.float64)
    out = _walk(_time_rows(tau), np.arange(P + 1) * C, np.arange(P * C), JT,
                np.ascontiguousarray(alpha, np.float64).reshape(-1), np.ascontiguousarray(theta, np.float64).reshape(-1),
                float(t_start), np.full(P, np.inf), False)
    return out.reshape(P, C)


def _time_rows(times) -> tuple:
    """Fields of :func:`_walk` whose input times are the rows of ``times`` (U, F)."""
    times = np.ascontiguousarray(times, np.float64)
    U = len(times)
    geometry = np.array([_DENSE_GEOMETRY], np.int64)
    zeros = np.zeros(U, np.int64)
    return ((times.reshape(U, 1, 1, -1),), geometry, np.ones(1), np.zeros(1), 0.0, np.arange(U), zeros, zeros)


def _all_neurons(layer, sample: int) -> tuple:
    """Index (sample, *position, channel) of every neuron of one sample, in the layer's order."""
    shape = layer.output_shape
    return (np.full(int(np.prod(shape)), sample), *(i.reshape(-1) for i in np.indices(shape)))


def _event_layer(sl: SpikingLayer, inputs: list, horizons, values: bool = False) -> np.ndarray:
    """Crossings before ``horizons`` (per sample) of every neuron of a layer, NaN where none
    (then the closed form stands); one sample at a time keeps the index arrays small.
    ``inputs`` as for :func:`_event_neurons`."""
    layer = sl.layer
    batch = len(inputs[0])
    out = np.empty((batch,) + layer.output_shape)
    for b in range(batch):
        index = _all_neurons(layer, b)
        out[b] = _event_neurons(sl, inputs, index, horizons, values, bounds=False).reshape(layer.output_shape)
    return out


def _event_neurons(sl: SpikingLayer, inputs: list, index: tuple, horizon=np.inf,
                   values: bool = False, bounds: bool = True) -> np.ndarray:
    """Event-driven first crossings of selected neurons; ``index`` = (sample, *position, channel).

    ``inputs`` per synapse group: padded input times (as :func:`padded_inputs` gives them), or
    with ``values`` the sources' values x = t_min^(n) − t, unpadded (the compiled path's).
    Neurons of one sample and position share their receptive field: its input times are
    gathered (:func:`_gather_row`, no copy of the layer's inputs) and sorted once, and each
    neuron walks them with its own weights (:func:`_walk`, which with ``bounds`` first tries to
    certify it).  A finite ``horizon`` (one, or one per sample: no input comes later, except
    at it) asks only for crossings before it, NaN elsewhere.
    """
    layer = sl.layer
    b, c = index[0], index[-1]
    alpha = np.ascontiguousarray(np.broadcast_to(sl.alpha, layer.output_shape)[index[1:]], np.float64)
    theta = np.ascontiguousarray(np.broadcast_to(sl.threshold, layer.output_shape)[index[1:]], np.float64)
    conv = layer.kind == "conv"
    ho, wo = layer.output_shape[:2] if conv else (1, 1)
    key = (b * ho + index[1]) * wo + index[2] if conv else b
    fields, inverse = np.unique(key, return_inverse=True)
    by_field = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[by_field], np.arange(len(fields) + 1))
    parts = [_gather_source(g, src, sl.t_min, values) for g, src in zip(layer.groups, inputs)]
    samples, rows, cols = fields // (ho * wo), (fields // wo) % ho, fields % wo
    field_data = (tuple(p[0] for p in parts), np.array([p[1] for p in parts], np.int64),
                  np.array([p[2] for p in parts]), np.array([p[3] for p in parts]), float(sl.t_min), samples, rows, cols)
    horizons = np.asarray(horizon, np.float64)[samples] if np.ndim(horizon) > 0 else np.full(len(fields), float(horizon))
    out = np.empty(len(b))
    out[by_field] = _walk(field_data, starts, c[by_field], sl.synapse_weights_by_channel, alpha[by_field],
                          theta[by_field], float(sl.t_start), horizons, bounds)
    return np.minimum(out, sl.t_max)  # NaN stays NaN


def _gather_source(group, src, t_min: float, values: bool) -> tuple:
    """(inputs as (B, H, W, C) float64, geometry, scale, offset) of one synapse group for
    :func:`_gather_row`; a dense group is a convolution whose kernel covers its whole input."""
    src = np.ascontiguousarray(src, np.float64)
    scale, offset = (-1.0, t_min) if values else (1.0, 0.0)
    if group.kind == "dense":
        return src.reshape(len(src), 1, 1, -1), _DENSE_GEOMETRY, scale, offset
    kh, kw = group.weight.shape[:2]
    if values:  # unpadded, cropped to ``used`` by the bounds
        top, left, H, W = group.pads[0], group.pads[2], *group.used
    else:  # padded and cropped already
        top, left, H, W = 0, 0, *src.shape[1:3]
    return src, (kh, kw, *group.strides, *group.dilation, top, left, H, W), scale, offset


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

    After a sample's last input (t_min^(n), or later with ``noisy_inputs``) the potential is a
    line, which crosses ϑ at the closed form; both engines take it there and look for
    crossings before that horizon only, the event engine for every neuron, the fast engine for
    the neurons its bound does not certify.  So the two agree to the last bit unless the bound
    is wrong.  Returns (spikes, ideal, certified, fallback) where ideal = t_max − ReLU(W x̂ + b)
    with x̂ = t_min − t_j the values the actual inputs code (a spike elsewhere, or before
    t_min, deviates).
    """
    layer = sl.layer
    groups = layer.groups
    s, pos_sum, neg_sum = sl.weight_sums
    one_minus = 1.0 - s
    j_sum = s / one_minus
    w_x = sum(_synaptic_sum(g, sl.t_min - tp, g.weight) for g, tp in zip(groups, inputs))
    ideal = sl.t_max - np.maximum(w_x + layer.bias, 0.0)
    if engine not in ("fast", "event"):
        raise ValueError(f"unknown engine {engine!r}: use 'fast' or 'event'")
    alpha, theta = sl.alpha, sl.threshold
    # The closed form from the network's own ϑ, α and J (Σ_j J_ij t_j = ΣJ t_min − W x/(1 − S)).
    closed = (theta + alpha * sl.t_start + j_sum * sl.t_min - w_x / one_minus) / (alpha + j_sum)
    spikes = np.minimum(closed, sl.t_max)
    batch = len(inputs[0])
    if noisy_inputs:  # inputs may arrive after t_min^(n)
        last = np.max([tp.reshape(batch, -1).max(axis=1) for tp in inputs], axis=0)
        horizon = np.maximum(last, sl.t_min)
    else:
        horizon = np.full(batch, sl.t_min)
    if engine == "event":
        early = _event_layer(sl, inputs, horizon)
        crossed = ~np.isnan(early)
        spikes[crossed] = early[crossed]
        return spikes, ideal, 0, spikes.size
    j_pos_sum = pos_sum / one_minus
    # Integration starts at the earliest event: t_start, or an input that came before it.
    first = np.min([tp.reshape(batch, -1).min(axis=1) for tp in inputs], axis=0)
    t_lo = np.minimum(first, sl.t_start)
    expand = (batch,) + (1,) * len(layer.output_shape)
    if noisy_inputs:
        # The bounds run to the sample's last input.
        T = horizon.reshape(expand)
        certified = np.zeros((batch,) + layer.output_shape, bool)
        channels = np.arange(layer.channels)
    else:
        T = sl.t_min
        width = sl.t_min - sl.t_start
        # All excitation at t_start still stays below ϑ (for samples without earlier inputs).
        static = np.broadcast_to(alpha * width + j_pos_sum * width < theta, (batch,) + layer.output_shape)
        certified = static & (first >= sl.t_start).reshape(expand)
        channels = np.flatnonzero(~certified.reshape(-1, layer.channels).all(axis=0))
    if channels.size:
        # With s = T − t ∈ [0, S'], S' = T − t_lo, and x_j = T − t_j ≤ S':
        #   V(T − s) = α (S − s)^+ + Σ_j J_ij (x_j − s)^+,  S = T − t_start.
        # The α term and excitatory terms are convex in s.  An inhibitory term lies below
        # μ J_ij (x_j − s) for any μ ∈ [0, 1]; the majorant is then convex, with its maximum
        # at s = 0 or s = S':
        #   a0 + μ n0  and  μ n1,   a0 = α S + J⁺x,  n0 = J⁻x ≤ 0,  n1 = J⁻x − S' ΣJ⁻ ≥ 0.
        # μ = 0 is the excitation-only bound; the μ that balances both ends is the tightest.
        a, th = alpha[..., channels], theta[..., channels]
        S = T - sl.t_start
        S_lo = T - t_lo.reshape(expand)
        reach = [T - tp for tp in inputs]
        j_pos_x = sum(_synaptic_sum(g, x, np.maximum(g.weight[..., channels], 0.0)) for g, x in zip(groups, reach))
        if noisy_inputs:
            j_x = sum(_synaptic_sum(g, x, g.weight[..., channels]) for g, x in zip(groups, reach))
        else:
            j_x = w_x[..., channels]  # x_j = t_min − t_j: W x is already known
        cm = one_minus[channels]
        a0 = a * S + j_pos_x / cm
        n0 = (j_x - j_pos_x) / cm
        n1 = n0 - S_lo * neg_sum[channels] / cm
        with np.errstate(divide="ignore", invalid="ignore"):
            mu = np.clip(np.nan_to_num(a0 / (n1 - n0), nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
        certified[..., channels] |= np.maximum(a0 + mu * n0, mu * n1) < th
    index = np.nonzero(~certified)
    if index[0].size:
        early = _event_neurons(sl, inputs, index, horizon)
        crossed = ~np.isnan(early)
        spikes[tuple(i[crossed] for i in index)] = early[crossed]
    n_fallback = int(index[0].size)
    return spikes, ideal, spikes.size - n_fallback, n_fallback


def _compiled_layer(sl: SpikingLayer, values: dict, times, engine: str = "fast") -> tuple:
    """One hidden α-model layer on the compiled path (:mod:`exactsnn.fastpath`).

    ``values`` maps layer index to its pooled values x = t_max − t (a float64 tensor) and an
    upper bound of them; ``times[source]`` gives a source's spike times as a NumPy array.
    Returns (x, certified, fallback, deviating, non-zero, upper bound of x).  Neurons the
    compiled certificate leaves (with ``engine="event"``: all neurons) go through the
    event-driven solver (:func:`_event_neurons`) up to t_min^(n); after it the closed form of
    the compiled step stands.  A layer with inputs outside its input window (an upstream
    deviation) goes through :func:`layer_spikes`, which then looks up to the last input.
    """
    tf = ops._tf()
    sources = [g.source for g in sl.layer.groups]
    tol = 1e-9 * max(1.0, abs(sl.t_max))
    # A delayed skip's bound B_s ≤ B_{n-1} = S holds for the windows as chosen; computed from
    # the rounded end points they may differ by an ulp, which is no input outside the window.
    if max(values[s][1] for s in sources) > sl.t_min - sl.t_start + 4.0 * np.spacing(sl.t_min):
        spikes, ideal, cert, fall = layer_spikes(sl, padded_inputs(sl, times), engine, noisy_inputs=True)
        deviating = int(((np.abs(spikes - ideal) > tol) | (spikes < sl.t_min - tol)).sum())
        x = sl.t_max - spikes
        return tf.constant(x), cert, fall, deviating, int((x > tol).sum()), float(x.max())
    layer = compiled(sl)
    srcs = tuple(values[s][0] for s in sources)
    x, counts, where, x_left, ideal = layer.step(srcs)
    if engine == "event":
        return _event_on_values(sl, srcs, x, tol)
    nonzero, deviating, beyond, n_left = (int(c) for c in counts.numpy())
    bound, n_fallback = (np.inf if beyond else sl.window), 0
    size = int(np.prod(x.shape))
    if n_left:
        inputs = [np.asarray(values[s][0]) for s in sources]  # views
        # Every input is inside its window here: none comes after t_min^(n), the horizon.
        # NaN: no crossing before it, the closed form stands.
        early = _event_neurons(sl, inputs, tuple(where.numpy().T), horizon=sl.t_min, values=True)
        n_fallback = len(early)
        crossed = ~np.isnan(early)
        x_left = x_left.numpy()
        if crossed.any():
            at, solved = tf.boolean_mask(where, crossed), sl.t_max - early[crossed]
            x = tf.tensor_scatter_nd_update(x, at, solved)
            x_left[crossed] = solved
        # Count the neurons the compiled certificate left, with their final spikes.
        ideal = ideal.numpy()
        deviating += _deviating(sl, x_left, ideal, tol)
        nonzero += int((x_left > tol).sum())
        if np.any(x_left > sl.window):
            bound = np.inf
    return x, size - n_fallback, n_fallback, deviating, nonzero, bound


def _deviating(sl: SpikingLayer, x, relu, tol: float) -> int:
    """How many values x = t_max − t are not ReLU(W x̂ + b) (an early crossing) or lie beyond
    the window B_n (a spike before t_min^(n))."""
    return int(((np.abs(x - relu) > tol) | (x > sl.window + tol)).sum())


def _event_on_values(sl: SpikingLayer, srcs: tuple, closed, tol: float) -> tuple:
    """The event engine on the compiled path: every neuron walks its inputs up to t_min^(n);
    where it has not crossed by then, the closed form ``closed`` of the compiled step (the
    fast engine's own) stands.  Returns what :func:`_compiled_layer` returns."""
    tf = ops._tf()
    x = closed.numpy().copy()
    relu = np.maximum(compiled(sl).affine(srcs).numpy(), 0.0)
    early = _event_layer(sl, [np.asarray(v) for v in srcs], np.full(len(x), sl.t_min), values=True)
    crossed = ~np.isnan(early)
    x[crossed] = sl.t_max - early[crossed]
    deviating = _deviating(sl, x, relu, tol)
    bound = np.inf if np.any(x > sl.window) else sl.window
    return tf.constant(x), 0, x.size, deviating, int((x > tol).sum()), bound


def readout(out: SpikingLayer, inputs: list, neuron: str = "alpha") -> np.ndarray:
    """Potential of the read-out neurons at t_min^(L), flattened to (N, classes).

    α-model: α (t_min^(L) − t_min^(L-1)) + Σ_j W_ij (t_min^(L) − t_j)^+ over the raw t_j;
    B1: b + Σ_j W_ij (t_min^(L) − max(t_j, t_min^(L-1)))^+ (silent inputs, t_j = +inf, add nothing).
    """
    if neuron == "b1":
        v = out.layer.bias + _input_values(out, inputs)
    else:  # raw input times: an input before t_start counts from its arrival
        v = out.alpha * (out.t_min - out.t_start) + sum(
            _synaptic_sum(g, np.maximum(out.t_min - tp, 0.0), g.weight) for g, tp in zip(out.layer.groups, inputs)
        )
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
    # Noise-free α-model networks keep values x = t_max − t in TensorFlow (exactsnn.fastpath).
    compiled_path = not b1 and noise_sigma == 0
    t_maxes = {-1: 1.0, **{n: sl.t_max for n, sl in enumerate(hidden)}}
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
            x0 = 1.0 - t
            # An input after t_min^(1) (a raw value below the input range) takes the NumPy path.
            bound = float(x0.max(initial=0.0)) if np.all(x0 >= 0.0) else np.inf
            x0 = ops._tf().constant(x0)
            state = {-1: (x0, bound)}
            times = _TimesOf(state, t_maxes)
        for n, sl in enumerate(hidden):
            tol = 1e-9 * max(1.0, abs(sl.t_max))
            if compiled_path:
                values_out, cert, fall, dev, nz, bound = _compiled_layer(sl, state, times, engine)
                certified += cert
                fallback += fall
                deviating[n] += dev
                nonzero[n] += nz
                spikes_total[n] += cert + fall
                spikes = sl.t_max - values_out.numpy() if record or relu_reference else None
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
                max_err[n] = max(max_err[n], float(np.abs(compare - (sl.t_max - h)).max(initial=0.0)))
                for pool in sl.layer.pools:
                    h = np.asarray(pool.on_values(h))
                values[n] = h
            if rngs:
                spikes = spikes + _noise(rngs, spikes.shape[1:], noise_sigma)
            if record:
                recorded[n].append(spikes)
            if compiled_path:
                if sl.layer.pools:
                    values_out = compiled(sl).pool(values_out)
                state[n] = (values_out, bound)
            else:
                for pool in sl.layer.pools:
                    spikes = np.asarray(pool.on_times(spikes, sl.t_max))
                times[n] = spikes
            for src in [s for s, user in last_use.items() if user == n]:
                (state if compiled_path else times).pop(src, None)
        if compiled_path:
            out = compiled(net.output)
            logits.append(out.logits(tuple(state[g.source][0] for g in net.output.layer.groups)))
            continue
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


class _TimesOf:
    """Spike times t = t_max − x of the compiled path's values, as NumPy arrays, on demand
    (for the NumPy certificates, the event-driven solver and the read-out)."""

    def __init__(self, state: dict, t_maxes: dict):
        self.state, self.t_maxes = state, t_maxes

    def __getitem__(self, source: int) -> np.ndarray:
        return self.t_maxes[source] - np.asarray(self.state[source][0])


def _noise(rngs, shape, sigma) -> np.ndarray:
    return np.stack([rng.normal(0.0, sigma, size=shape) for rng in rngs])
