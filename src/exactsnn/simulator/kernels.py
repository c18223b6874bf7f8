"""The compiled kernels of the event-driven walk (Numba): gathering receptive fields, two
per-neuron upper bounds of the α-model potential (:mod:`exactsnn.neurons.alpha`) that spare
most neurons the sort, and the walk itself, fields in parallel."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..neurons.alpha import first_crossing


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
DENSE_GEOMETRY = (1, 1, 1, 1, 1, 1, 0, 0, 1, 1)

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


@njit(cache=True, nogil=True, parallel=True)
def walk(fields, starts, chans, JT, alpha, theta, t_start, horizons, bounds):  # pragma: no cover - compiled
    """First crossings of neurons grouped by receptive field, fields in parallel.

    ``fields`` describes U receptive fields for :func:`_gather_row` (each field's F input
    times gathered into a buffer of its thread); the neurons of field u are
    starts[u] … starts[u+1] − 1, with channels chans; JT (C, F) weights J per channel and
    synapse, in the fields' synapse order.  Each neuron walks its piecewise-linear potential
    (:func:`exactsnn.neurons.alpha.first_crossing`); +inf where V never reaches ϑ.

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
                result = first_crossing(row, order, JT[c], a, th, t_start, horizon)
            out[k] = result
    return out
