"""The α-model of Stanojevic et al. (Neural Networks, 2023), DESIGN §2.

A hidden neuron i of layer n integrates from the first event on, with no reset:
    V_i(t) = α_i (t − t_start)⁺ + Σ_j J_ij (t − t_j)⁺,   t_start = t_min^(n-1),
every input counting from its own arrival t_j (also one that arrives before t_start: a
neuron of the layer before that fired early).  It fires once, at the first t with
V_i(t) = ϑ_i, at the latest at t_max^(n) (that spike codes 0).  The read-out does not spike;
its potential at t_min^(L) is the logit.

Every function here is one equation, and each is the only place that equation is written.
Arithmetic-only functions take NumPy arrays and TensorFlow tensors alike.
"""

from __future__ import annotations

import numpy as np
from numba import njit


class AlphaNeuron:
    """The α-model: one spike per neuron, the value x coded at t_max^(n) − x."""

    name = "alpha"
    #: A value ≤ 0 is a spike at t_max (the model has no silent neurons).
    silent_zero = False
    #: A neuron can cross ϑ while inputs still arrive (a walk or a certificate decides).
    crosses_while_integrating = True
    #: The synapses carry J (not W).
    synapse = "J"

    # ------------------------------------------------------------------ parameters

    @staticmethod
    def input_times(unit):
        """t = 1 − x̂ for inputs x̂ = (x − p)/(q − p) (values in [0, 1] inside the range)."""
        return 1.0 - unit

    @staticmethod
    def synaptic_weights(weight, weight_sum, alpha=1.0):
        """J_ij = α_i W_ij / (1 − Σ_j W_ij)."""
        return alpha * weight / (1.0 - weight_sum)

    @staticmethod
    def threshold(weight_sum, bias, t_start: float, t_min: float, t_max: float, alpha=1.0):
        """ϑ_i = α_i (t_max^(n) − t_min^(n-1)) + B_n Σ_j J_ij − (α_i + Σ_j J_ij) b_i."""
        j_sum = alpha * weight_sum / (1.0 - weight_sum)
        return alpha * (t_max - t_start) + (t_max - t_min) * j_sum - (alpha + j_sum) * bias

    @staticmethod
    def readout_alpha(bias, t_start: float, t_min: float):
        """α_i of the read-out, b_i / (t_min^(L) − t_min^(L-1)): its potential at t_min^(L)
        is then b + W x."""
        return bias / (t_min - t_start)

    # ------------------------------------------------------------------ spike times

    @staticmethod
    def closed_form(theta, alpha, t_start: float, t_min: float, weight_sum):
        """The crossing after the last input as a line in the values x_j = t_min^(n) − t_j:
            t_i = (ϑ_i + α_i t_start + Σ_j J_ij t_j) / (α_i + Σ_j J_ij) = c_i − g_i Σ_j W_ij x_j,
            c_i = (ϑ_i + α_i t_start + ΣJ t_min) / (α_i + ΣJ),  g_i = 1 / ((1 − ΣW)(α_i + ΣJ)),
        since Σ_j J_ij t_j = ΣJ t_min − Σ_j W_ij x_j / (1 − ΣW).  Returns (c, g), which depend
        only on the network: computed once per layer.  For the thresholds of :meth:`threshold`
        with α = 1, c = t_max − b and g = 1 (up to round-off): t = t_max − (W x + b)."""
        one_minus = 1.0 - weight_sum
        j_sum = weight_sum / one_minus
        denominator = alpha + j_sum
        return (theta + alpha * t_start + j_sum * t_min) / denominator, 1.0 / (one_minus * denominator)

    @staticmethod
    def spike_time(line, wx, t_max: float, minimum=np.minimum):
        """t_i = min(c_i − g_i wx_i, t_max^(n)): the closed form (``line`` = (c, g) of
        :meth:`closed_form`) with the forced spike at t_max^(n); wx = Σ_j W_ij (t_min^(n) − t_j)
        over the raw input times.  ``minimum``: np.minimum or tf.minimum."""
        c, g = line
        return minimum(c - g * wx, t_max)

    @staticmethod
    def static_certificate(alpha, pos_sum, weight_sum, width: float, theta):
        """No crossing before the last input for any inputs inside [t_start, t_min]: all the
        excitation at t_start, α S + S Σ J⁺ < ϑ with S = t_min − t_start."""
        return alpha * width + pos_sum / (1.0 - weight_sum) * width < theta

    @staticmethod
    def certified(a0, a1, b1, theta):
        """No crossing before the last input (DESIGN §4), from three values of a convex majorant.

        With s = T − t ∈ [0, S'] (T the last input, S' = T − the first event) and
        x_j = T − t_j:  V(T − s) = α (S − s)⁺ + Σ_j J_ij (x_j − s)⁺.  The α term and the
        excitatory terms are convex in s; for any μ ∈ [0, 1] an inhibitory one is below
        μ J_ij (x_j − s), so V is below a convex majorant with its maximum at an end:
            s = 0:  (1 − μ) A₀ + μ A₁,   A₀ = α S + J⁺x,  A₁ = α S + J x;
            s = S': μ B₁,                B₁ = J⁻x − S' ΣJ⁻ ≥ 0.
        The majorant grows with A₀, A₁ and B₁, so upper bounds of them may be passed (the
        float32 products of the fast path).  Some μ gives max((1 − μ) A₀ + μ A₁, μ B₁) < ϑ iff
        ϑ > 0 and (A₀ < ϑ, or A₁ < ϑ and (A₀ − ϑ) B₁ < ϑ (A₀ − A₁)); no division.
        """
        return (theta > 0.0) & ((a0 < theta) | ((a1 < theta) & ((a0 - theta) * b1 < theta * (a0 - a1))))

    @staticmethod
    def edge_potential(alpha, width: float, edge, edge_sum, inv_one_minus):
        """V(t_min − c) = α (S − c) + Σ_j J_ij (x_j − c)⁺ at an edge c ∈ [0, S] of the input
        window (s = t_min − t, x_j = t_min − t_j ∈ [0, S]), from P(c) = Σ_j W_ij (x_j − c)⁺
        (``edge_sum``) and J = W / (1 − Σ_j W_ij) (``inv_one_minus`` = 1 / (1 − Σ_j W_ij))."""
        return alpha * (width - edge) + edge_sum * inv_one_minus

    @staticmethod
    def bin_excess(x, low, high, maximum=np.maximum):
        """(x − c_k)(c_{k+1} − x) / (c_{k+1} − c_k) for an input x in the bin [c_k, c_{k+1}]:
        how far (x − s)⁺ can lie below its chord over the bin (0 at the edges, Δ/4 at most).

        The edge majorant.  With edges 0 = c_0 < … < c_K ≥ every x_j, on a bin the inputs of
        other bins and the α current are linear in s, and an input of the bin is convex, so
        J_ij (x_j − s)⁺ ≤ its chord for J_ij > 0 and ≤ chord + |J_ij| ``bin_excess`` for
        J_ij < 0.  The chord of the sum is largest at an end, so for every s ∈ [0, S]
            V(t_min − s) ≤ max_k V(t_min − c_k) + Σ_j |J⁻_ij| bin_excess(x_j),
        (beyond c_K only the α current is left, a line between V(t_min − c_K) and V(t_min − S) =
        0, below ϑ > 0 if the rest is), with the edge values from
        :meth:`edge_potential`: K − 1 products P(c_k) and one of |W⁻| with the excess, where
        the convex majorant of :meth:`certified` needs one of W⁺.  Only bin k's own inputs
        lie off the chord on bin k, so with the excess split by bin into G products (bin k in
        group g = k mod G, Q_g = Σ_{j in group g} |J⁻_ij| bin_excess(x_j) ≥ bin k's share)
            V(t_min − s) ≤ max_g ( max_{k in group g} max(V(t_min − c_k), V(t_min − c_{k+1})) + Q_g ),
        which G = 1 reduces to the bound above; each added product takes an excess that grows
        like the bin width off the bound of all the other bins.  It is tight up to the
        inhibition inside one bin, which is what keeps it useful at fan-ins of thousands,
        where W⁺x is many times W x and the convex majorant certifies almost nothing.
        ``low``/``high``: the bin's edges (equal: an empty bin, 0); ``maximum``: np.maximum or
        tf.maximum."""
        return maximum((x - low) * (high - x), 0.0) / maximum(high - low, 1e-300)

    # ------------------------------------------------------------------ read-out

    @staticmethod
    def arrived(t, t_start: float, t_min: float):
        """What an input at t contributes per unit weight to a potential read at t_min:
        (t_min − t)⁺, from its own arrival (before t_start too)."""
        return np.maximum(t_min - t, 0.0)

    @staticmethod
    def readout_base(alpha, bias, t_start: float, t_min: float):
        """The α current's part of the read-out potential at t_min^(L): α (t_min − t_start)."""
        return alpha * (t_min - t_start)

    # ------------------------------------------------------------------ potential

    @staticmethod
    def potential(t, input_times, weights, alpha: float, threshold: float, t_start: float, t_min: float):
        """V(t) = α (t − t_start)⁺ + Σ_j w_j (t − t_j)⁺ at the times ``t`` (any shape)."""
        t = np.asarray(t, np.float64)[..., None]
        v = alpha * np.maximum(t[..., 0] - t_start, 0.0)
        return v + (weights * np.maximum(t - np.asarray(input_times, np.float64), 0.0)).sum(-1)


@njit(cache=True, nogil=True)
def first_crossing(row, order, wrow, a, th, t_start, horizon):  # pragma: no cover - compiled
    """First t < ``horizon`` with V(t) ≥ ϑ of one α-model neuron, NaN if none before it
    (+inf for an infinite horizon): the crossing search of the event-driven walk.

    The events (the inputs ``row[order]``, sorted, all before the horizon, and the α onset at
    t_start) cut time into segments; after the events up to one, V(t) = C t − D with
    C = Σ w, D = Σ w τ over them (w = J_j at τ_j, w = α at t_start).  V = 0 before the first
    event.  The first segment that starts at V ≥ ϑ dates the crossing at its start (a crossing
    exactly at an event, whatever the round-off on either side); otherwise the first one whose
    line reaches ϑ before its end, at (ϑ + D)/C — after the last event this is the closed form
    (ϑ + α t_start + Σ_j J_j τ_j)/(α + Σ_j J_j) of :meth:`AlphaNeuron.closed_form`.
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
