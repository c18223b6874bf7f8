"""Phase 1, weight scaling (DESIGN §2, step 5): per-neuron positive factors so that
Σ_j W_ij ∈ [lower, upper], undone on the layers that read the neuron.  The network function
is unchanged."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .preprocessed import PreprocessedNetwork
from .synapses import Synapses


def scale_weights(net: PreprocessedNetwork, lower: float = -10.0, upper: float = 0.99) -> PreprocessedNetwork:
    """Rescale every hidden neuron so that Σ_j W_ij ∈ [lower, upper] (DESIGN §2, step 5).

    Neuron i's weights (all synapse groups) and bias are multiplied by f_i = upper/S_i if
    S_i > upper, lower/S_i if S_i < lower, else 1 (f_i > 0, so ReLU(f z) = f ReLU(z) and
    pooling commute with it); every synapse group reading neuron i — skip connections
    included — divides its weights from i by f_i.  Σ_j W_ij < 1 makes the final slope
    α + Σ_j J_ij of every neuron positive.
    """
    if not (lower < 0 < upper < 1):
        raise ValueError(f"weight-sum bounds must satisfy lower < 0 < upper < 1, got [{lower}, {upper}]")
    layers = list(net.layers)
    for n in range(len(layers) - 1):
        layer = layers[n]
        s = layer.weight_sum
        f = np.ones_like(s)
        f = np.where(s > upper, upper / np.where(s > upper, s, 1.0), f)
        f = np.where(s < lower, lower / np.where(s < lower, s, 1.0), f)
        layers[n] = replace(layer, weight=layer.weight * f, bias=layer.bias * f,
                            skips=[replace(g, weight=g.weight * f) for g in layer.skips])
        for m in range(n + 1, len(layers)):
            groups = [_divide_inputs(g, f) if g.source == n else g for g in layers[m].groups]
            layers[m] = replace(groups[0], skips=groups[1:])
    return replace(net, layers=layers, lower=float(lower), upper=float(upper))


def _divide_inputs(group: Synapses, f: np.ndarray) -> Synapses:
    return replace(group, weight=group.input_scaled(np.broadcast_to(1.0 / f, group.input_shape[-1:])))
