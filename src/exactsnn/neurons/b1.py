"""The B1 model, after Stanojevic et al., "High-performance deep spiking neural networks with
0.3 spikes per neuron", Nature Communications 15, 6793 (2024), as this project defines it.

During [t_start, t_min^(n)) = [t_min^(n-1), t_min^(n)) a hidden neuron integrates
dV/dt = Σ_j W_ij H(t − t_j) and cannot fire; from t_min^(n) on the input currents are off and
dV/dt = α_i (= 1); ϑ_i = B_n − b_i.  It fires at t_max^(n) − (W x + b)_i if that value is
positive and stays silent otherwise (absence codes 0), so spikes per neuron = activation
density.  The read-out's potential at t_min^(L) is b + Σ_j W_ij (t_min^(L) − t_j).

Inputs outside the integration window (possible only with spike-time noise or an upstream
value beyond its window): an input before t_start counts from t_start, since the neuron
integrates only inside [t_start, t_min); an input after t_min adds nothing.  A B1 neuron never
fires while inputs arrive, so there is no early crossing to search for.
"""

from __future__ import annotations

import numpy as np

from .alpha import AlphaNeuron


class B1Neuron:
    """The B1 model: silence codes 0, spikes only for positive values."""

    name = "b1"
    silent_zero = True
    crosses_while_integrating = False
    synapse = "W"

    @staticmethod
    def input_times(unit):
        """t = 1 − x̂, and no spike (t = +inf) for an input of value ≤ 0."""
        t = 1.0 - unit
        return np.where(t >= 1.0, np.inf, t)

    @staticmethod
    def synaptic_weights(weight, weight_sum, alpha=1.0):
        """The synapses carry W itself."""
        return weight

    @staticmethod
    def threshold(weight_sum, bias, t_start: float, t_min: float, t_max: float, alpha=1.0):
        """ϑ_i = B_n − b_i (α = 1: the ramp from t_min^(n) reaches ϑ at t_max − (W x + b))."""
        return (t_max - t_min) - bias

    #: α of the read-out is stored as in the α-model; B1's read-out adds b instead.
    readout_alpha = staticmethod(AlphaNeuron.readout_alpha)

    @staticmethod
    def arrived(t, t_start: float, t_min: float):
        """t_min − max(t, t_start), 0 for inputs at or after t_min (silent ones, t = +inf)."""
        return t_min - np.clip(t, t_start, t_min)

    @staticmethod
    def readout_base(alpha, bias, t_start: float, t_min: float):
        """The read-out adds its bias: V(t_min^(L)) = b + Σ_j W_ij (t_min − t_j)."""
        return bias

    @staticmethod
    def spike_time(theta, alpha, t_min: float, t_max: float, v):
        """From V(t_min) = v the ramp α reaches ϑ at t_min + (ϑ − v)⁺/α (at once if v ≥ ϑ);
        +inf (silent) if that is not before t_max."""
        spikes = t_min + np.maximum(theta - v, 0.0) / alpha
        return np.where(spikes < t_max, spikes, np.inf)

    @staticmethod
    def potential(t, input_times, weights, alpha: float, threshold: float, t_start: float, t_min: float):
        """V(t): Σ_j W_ij (min(t, t_min) − max(t_j, t_start))⁺, then + α (t − t_min)⁺."""
        t = np.asarray(t, np.float64)
        held = np.minimum(t, t_min)[..., None]
        tj = np.maximum(np.asarray(input_times, np.float64), t_start)
        v = (weights * np.maximum(held - tj, 0.0)).sum(-1)
        return v + alpha * np.maximum(t - t_min, 0.0)
