"""A brute-force reference simulator of the α-model (DESIGN §2), for the tests only.

It shares no code with the library's engines: plain NumPy, reading the network's parameters
from its data objects (SpikingNetwork, SpikingLayer, the synapse groups, Pool) and nothing else.
It follows the model literally, without closed forms, certificates or horizons:

* Inputs x spike at t = 1 − (x − p)/(q − p) (x is not clipped, so x > q spikes before 0).
  With spike-time noise σ, sample k (global index ``sample_offset + k``) has its own
  ``np.random.default_rng([noise_seed, sample_offset + k])``; the inputs draw first
  (t += N(0, σ²), then t = max(t, 0)), then every hidden layer in order draws noise for its
  spikes (not clipped).  Pools act on the (noisy) times.
* Hidden neuron i of a layer: J_ij = W_ij / (1 − S_i), S_i = Σ_j W_ij over all synapse
  groups of its channel; α_i and ϑ_i are read from the layer.  Its events are its input
  spikes — the source's pooled spike times plus the group's delay; padded conv taps spike
  at the layer's own t_min — and the onset of the α current at t_start.  The potential
  V_i(t) = α_i (t − t_start)⁺ + Σ_j J_ij (t − t_j)⁺ is piecewise linear between events; the
  spike is the first t ≥ t_lo = min(events) with V_i(t) ≥ ϑ_i, but at the latest t_max.
* The read-out's potential at its t_min, α_i (t_min − t_start) + Σ_j W_ij (t_min − t_j)⁺
  with its W (not J), are the logits.
* A hidden spike deviates when it is not at t_max − ReLU(Σ_j W_ij x̂_j + b_i),
  x̂_j = t_min − t_j over the actual input times, or lies before t_min (tolerance
  1e-9 · max(1, |t_max|)); counted on the spikes before noise is added.

:func:`first_spike` is the walk of one neuron written as a loop (the specification);
:func:`first_spikes` is the same walk for many neurons at once, which the simulation uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# --------------------------------------------------------------------------- one neuron


def first_spike(times, weights, theta: float, t_max: float) -> float:
    """Spike time of one neuron from its events, walking the potential segment by segment.

    ``times``/``weights``: every event (input spikes with their J, and the α onset t_start
    with weight α).  V = 0 before the first event; after the events up to time e,
    V(t) = C t − D with C = Σ w, D = Σ w t_event.  A segment [e, next) that starts with
    V ≥ ϑ fires at e; otherwise, with slope C > 0, its line reaches ϑ at (ϑ + D) / C, a spike
    if that is before the next event.  Never, or at or after t_max: the spike is at t_max.
    """
    times = np.asarray(times, np.float64)
    weights = np.asarray(weights, np.float64)
    distinct = np.unique(times)  # sorted
    if theta <= 0.0:
        return min(float(distinct[0]), t_max)
    C = D = 0.0
    for k, e in enumerate(distinct):
        arriving = times == e
        C += float(weights[arriving].sum())
        D += float((weights[arriving] * e).sum())
        if C * e - D >= theta:
            return min(float(e), t_max)
        nxt = distinct[k + 1] if k + 1 < len(distinct) else np.inf
        if C > 0.0:
            crossing = (theta + D) / C
            if crossing < nxt:
                return min(float(crossing), t_max)
    return t_max


def first_spikes(times, weights, theta, t_max: float) -> np.ndarray:
    """:func:`first_spike` for M neurons at once: ``times``, ``weights`` (M, E), ``theta`` (M,).

    Events at equal times are taken one after the other (a segment of length 0 between them);
    V is continuous, so this changes nothing but round-off.
    """
    times = np.asarray(times, np.float64)
    weights = np.asarray(weights, np.float64)
    theta = np.asarray(theta, np.float64)[:, None]
    order = np.argsort(times, axis=1, kind="stable")
    e = np.take_along_axis(times, order, axis=1)
    w = np.take_along_axis(weights, order, axis=1)
    C = np.cumsum(w, axis=1)  # slope on the segment that starts at e[:, k]
    D = np.cumsum(w * e, axis=1)
    V = C * e - D  # potential at e[:, k]
    nxt = np.concatenate([e[:, 1:], np.full((len(e), 1), np.inf)], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = np.where(C > 0.0, (theta + D) / C, np.inf)
    at_start = V >= theta
    inside = (C > 0.0) & (crossing < nxt)
    hit = at_start | inside
    k = np.argmax(hit, axis=1)[:, None]
    spike = np.where(np.take_along_axis(at_start, k, 1), np.take_along_axis(e, k, 1),
                     np.take_along_axis(crossing, k, 1))[:, 0]
    spike = np.where(hit.any(axis=1), spike, np.inf)
    spike = np.where(theta[:, 0] <= 0.0, e[:, 0], spike)
    return np.minimum(spike, t_max)


# --------------------------------------------------------------------------- geometry


def pool_times(pool, t, pad_time: float) -> np.ndarray:
    """Sign-aware max pooling of spike times (N, H, W, C): a channel with sign > 0 takes the
    earliest spike of its window, one with sign < 0 the latest.  Explicit ``pool.pads`` are
    spikes at ``pad_time``; ``padding="same"`` leaves the positions it pads out (as Keras)."""
    t = np.asarray(t, np.float64)
    top, bottom, left, right = pool.pads
    t = np.pad(t, [(0, 0), (top, bottom), (left, right), (0, 0)], constant_values=pad_time)
    N, H, W, C = t.shape
    (kh, kw), (sh, sw) = pool.size, pool.strides
    if pool.padding == "same":
        Ho, Wo = -(-H // sh), -(-W // sw)
        pt = max((Ho - 1) * sh + kh - H, 0) // 2
        pl = max((Wo - 1) * sw + kw - W, 0) // 2
    else:
        Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
        pt = pl = 0
    sign = np.asarray(pool.sign, np.float64)
    out = np.empty((N, Ho, Wo, C))
    for r in range(Ho):
        r0 = r * sh - pt
        for c in range(Wo):
            c0 = c * sw - pl
            window = t[:, max(r0, 0) : min(r0 + kh, H), max(c0, 0) : min(c0 + kw, W), :]
            out[:, r, c, :] = np.where(sign > 0, window.min(axis=(1, 2)), window.max(axis=(1, 2)))
    return out


def group_fields(group, source_times, delay: float, pad_time: float):
    """Input times of one synapse group for every neuron position, and its weights.

    Returns (N, P, F) times (P output positions, 1 for dense) and W as (F, C).  Dense: the
    flattened source.  Conv: the source cropped to ``used``, delayed, then padded by ``pads``
    with spikes at ``pad_time`` (not delayed); tap (i, j) of output (r, c) reads padded
    position (r·s_h + i·d_h, c·s_w + j·d_w) (cross-correlation, as Keras).
    """
    t = np.asarray(source_times, np.float64) + delay
    N = len(t)
    if group.weight.ndim == 2:  # dense: a matrix on the flattened source
        return t.reshape(N, 1, -1), group.weight
    kh, kw, cin, cout = group.weight.shape
    top, bottom, left, right = group.pads
    t = t[:, : group.used[0], : group.used[1], :]
    t = np.pad(t, [(0, 0), (top, bottom), (left, right), (0, 0)], constant_values=pad_time)
    Ho, Wo, _ = group.output_shape
    (sh, sw), (dh, dw) = group.strides, group.dilation
    fields = np.empty((N, Ho, Wo, kh, kw, cin))
    for r in range(Ho):
        for c in range(Wo):
            for i in range(kh):
                for j in range(kw):
                    fields[:, r, c, i, j, :] = t[:, r * sh + i * dh, c * sw + j * dw, :]
    return fields.reshape(N, Ho * Wo, kh * kw * cin), group.weight.reshape(kh * kw * cin, cout)


def layer_fields(sl, times: dict):
    """(N, P, F) input times of a layer's neurons over all synapse groups, and W (F, C).

    Group 0 (main) has delay 0, skip group k the delay ``sl.delays[k − 1]``; padded taps
    spike at the layer's own t_min."""
    groups = sl.layer.groups
    delays = [0.0] + [float(d) for d in sl.delays]
    assert len(delays) == len(groups)
    parts = [group_fields(g, times[g.source], d, sl.t_min) for g, d in zip(groups, delays)]
    return np.concatenate([p[0] for p in parts], axis=2), np.concatenate([p[1] for p in parts], axis=0)


def per_position(a, shape) -> np.ndarray:
    """A parameter of the layer's output shape (or broadcastable to it) as (P, C)."""
    a = np.broadcast_to(np.asarray(a, np.float64), shape)
    return a.reshape(-1, shape[-1])


# --------------------------------------------------------------------------- network


def count_outside(fields, t_start: float, t_min: float, late: bool = False) -> int:
    """Input spikes before t_start (or with ``late`` after t_min), beyond round-off: a delayed
    skip spike at t_max^(s) + (t_max^(k-1) − t_max^(s)) may land an ulp after t_min."""
    tol = 1e-9 * max(1.0, abs(t_min))
    return int((fields > t_min + tol).sum() if late else (fields < t_start - tol).sum())


@dataclass
class Reference:
    logits: np.ndarray  # (N, classes)
    spikes: list  # per hidden layer, (N, *shape): before noise, before pooling
    noisy_spikes: list  # per hidden layer: after noise (= spikes without noise), before pooling
    ideal: list  # per hidden layer: t_max − ReLU(W x̂ + b) over the actual inputs
    deviating: np.ndarray  # per hidden layer
    early_inputs: np.ndarray  # per hidden layer, the read-out last: input spikes before t_start
    late_inputs: np.ndarray  # per hidden layer, the read-out last: input spikes after t_min
    early_spikes: np.ndarray  # per hidden layer: spikes before t_min (before noise)
    fields: list = field(default_factory=list)  # per layer (read-out last): the (N, P, F) input times


def input_times(net, x) -> np.ndarray:
    """t = 1 − (x − p)/(q − p) for raw inputs x, not clipped (before noise and pooling)."""
    p, q = net.input_range
    return 1.0 - (np.asarray(x, np.float64) - p) / (q - p)


def simulate(net, x, *, noise_sigma: float = 0.0, noise_seed: int = 0, sample_offset: int = 0) -> Reference:
    """Run the α-model network ``net`` on raw inputs ``x`` (N, *input_shape)."""
    x = np.asarray(x, np.float64)
    assert x.shape[1:] == tuple(net.input_shape)
    N = len(x)
    rngs = None
    if noise_sigma > 0:
        rngs = [np.random.default_rng([noise_seed, sample_offset + k]) for k in range(N)]

    def noise(shape):
        return np.stack([rng.normal(0.0, noise_sigma, size=shape) for rng in rngs])

    t = input_times(net, x)
    if rngs:
        t = np.maximum(t + noise(tuple(net.input_shape)), 0.0)
    for pool in net.input_pools:
        t = pool_times(pool, t, 1.0)
    times = {-1: t}
    *hidden, out = net.layers
    spikes, noisy, ideals, deviating, early, late, early_spikes, all_fields = [], [], [], [], [], [], [], []
    for n, sl in enumerate(hidden):
        shape = tuple(sl.layer.output_shape)
        fields, W = layer_fields(sl, times)  # (N, P, F), (F, C)
        _, P, F = fields.shape
        C = shape[-1]
        S = sum(g.weight.reshape(-1, C).sum(axis=0) for g in sl.layer.groups)
        J = W / (1.0 - S)  # (F, C)
        alpha = per_position(sl.alpha, shape)  # (P, C)
        theta = per_position(sl.threshold, shape)
        # Events of neuron (sample, position, channel): its F inputs and the α onset.
        ev_t = np.empty((N, P, C, F + 1))
        ev_w = np.empty((N, P, C, F + 1))
        ev_t[..., :F] = fields[:, :, None, :]
        ev_w[..., :F] = J.T[None, None]
        ev_t[..., F] = sl.t_start
        ev_w[..., F] = alpha[None]
        th = np.broadcast_to(theta[None], (N, P, C)).reshape(-1)
        t_spike = first_spikes(ev_t.reshape(-1, F + 1), ev_w.reshape(-1, F + 1), th, sl.t_max).reshape((N,) + shape)
        bias = per_position(sl.layer.bias, shape)
        relu = np.maximum(np.einsum("npf,fc->npc", sl.t_min - fields, W) + bias, 0.0).reshape((N,) + shape)
        ideal = sl.t_max - relu
        tol = 1e-9 * max(1.0, abs(sl.t_max))
        deviating.append(int(((np.abs(t_spike - ideal) > tol) | (t_spike < sl.t_min - tol)).sum()))
        early.append(count_outside(fields, sl.t_start, sl.t_min))
        late.append(count_outside(fields, sl.t_start, sl.t_min, late=True))
        early_spikes.append(int((t_spike < sl.t_min - tol).sum()))
        spikes.append(t_spike)
        ideals.append(ideal)
        all_fields.append(fields)
        t_noisy = t_spike + noise(shape) if rngs else t_spike
        noisy.append(t_noisy)
        for pool in sl.layer.pools:
            t_noisy = pool_times(pool, t_noisy, sl.t_max)
        times[n] = t_noisy
    fields, W = layer_fields(out, times)
    shape = tuple(out.layer.output_shape)
    alpha = per_position(out.alpha, shape)
    logits = alpha[None] * (out.t_min - out.t_start) + np.einsum("npf,fc->npc", np.maximum(out.t_min - fields, 0.0), W)
    early.append(count_outside(fields, out.t_start, out.t_min))
    late.append(count_outside(fields, out.t_start, out.t_min, late=True))
    all_fields.append(fields)
    return Reference(
        logits=logits.reshape(N, -1), spikes=spikes, noisy_spikes=noisy, ideal=ideals,
        deviating=np.array(deviating, np.int64), early_inputs=np.array(early, np.int64),
        late_inputs=np.array(late, np.int64), early_spikes=np.array(early_spikes, np.int64), fields=all_fields,
    )
