"""Phase 2: the single-spike network (DESIGN §2), a plain data object.

Layer n's neurons fire in [t_min^(n), t_max^(n)]; their potential starts at
t_start = t_min^(n-1).  The neurons' dynamics, thresholds and input coding are those of the
network's neuron model (:mod:`exactsnn.neurons`: the 2023 α-model or B1); with the parameters
of :func:`spiking_network` a hidden neuron fires at t_max^(n) − ReLU(W x + b)_i.  Simulating
the network is :func:`exactsnn.simulate` (this module imports nothing from the simulator).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .neurons import AlphaNeuron, neuron_model
from .preprocessed import PreprocessedNetwork
from .synapses import Synapses
from .serialize import register


@register
@dataclass
class SpikingLayer:
    """A layer of single-spike neurons (``hidden``) or the non-spiking read-out layer.

    ``layer`` holds the scaled weights W and bias b (and the geometry); the synaptic
    weights are J = α W / (1 − Σ_j W_ij) (:attr:`J`).  Hidden neurons fire in
    [t_min, t_max]; their potential starts at ``t_start`` = t_min of the previous layer.
    ``threshold`` ϑ and ``alpha`` α have the layer's output shape.  For the read-out,
    ``alpha`` = b / (t_min − t_start) and the potential at t_min is the logit.
    """

    layer: Synapses
    t_start: float
    t_min: float
    t_max: float
    threshold: np.ndarray
    alpha: np.ndarray
    delays: list = field(default_factory=list)  # synaptic delay of each skip group of ``layer``

    @cached_property
    def weight_sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(Σ_j W_ij, Σ_j W⁺_ij, Σ_j W⁻_ij) per output channel over all synapse groups.

        They do not depend on the data: computed once, not per simulated batch.
        """
        c = self.layer.channels
        pos = sum(np.maximum(g.weight, 0.0).reshape(-1, c).sum(0) for g in self.layer.groups)
        neg = sum(np.minimum(g.weight, 0.0).reshape(-1, c).sum(0) for g in self.layer.groups)
        return self.layer.weight_sum, pos, neg  # the same S as the thresholds were built with

    @cached_property
    def synapse_weights_by_channel(self) -> np.ndarray:
        """J as one C-contiguous (channels, synapses) array over all synapse groups (the main
        group's receptive field, then each skip's): what the event-driven walk reads."""
        c = self.layer.channels
        J = np.concatenate([g.per_synapse(self.group_J(g)).reshape(-1, c) for g in self.layer.groups])
        return np.ascontiguousarray(J.T)

    def group_delays(self) -> list[float]:
        """Delay of every synapse group: 0 for the main one, then the skips'."""
        return [0.0] + [float(d) for d in self.delays]

    @property
    def hidden(self) -> bool:
        return self.layer.relu

    @property
    def window(self) -> float:
        """B_n = t_max^(n) − t_min^(n)."""
        return self.t_max - self.t_min

    @property
    def J_sum(self) -> np.ndarray:
        """Σ_j J_ij per output channel for α = 1: S / (1 − S)."""
        s = self.weight_sums[0]
        return s / (1.0 - s)

    @property
    def J(self) -> np.ndarray:
        """J_ij = W_ij / (1 − Σ_j W_ij) for α = 1 (eq. of DESIGN §2), main synapse group."""
        return self.group_J(self.layer)

    def group_J(self, group: Synapses) -> np.ndarray:
        """J of one synapse group for α = 1 (:meth:`AlphaNeuron.synaptic_weights`); Σ_j W_ij
        runs over all groups of the neuron."""
        return AlphaNeuron.synaptic_weights(group.weight, self.weight_sums[0])

    @property
    def neurons(self) -> int:
        return int(np.prod(self.layer.output_shape))


@register
@dataclass
class SpikingNetwork:
    """The converted network: input coding, spiking layers and the read-out.

    Inputs x in the raw domain become spikes in [t_min^(0), t_max^(0)] = [0, 1] by the neuron
    model's input coding of x̂ = (x − p)/(q − p).  ``neuron`` names the model: "alpha" (the
    2023 α-model) or "b1" (:mod:`exactsnn.neurons`).
    """

    input_shape: tuple
    input_range: tuple
    input_pools: list
    layers: list
    X: np.ndarray
    zeta: float
    alpha_sigma: float = 0.0
    alpha_seed: int = 0
    neuron: str = "alpha"

    def __post_init__(self):
        self.input_shape = tuple(int(s) for s in self.input_shape)
        self.input_range = tuple(float(v) for v in self.input_range)
        self.X = np.asarray(self.X, np.float64)
        neuron_model(self.neuron)  # refuse an unknown model when the network is made

    @property
    def model(self):
        """The neuron model's type (:mod:`exactsnn.neurons`)."""
        return neuron_model(self.neuron)

    @property
    def hidden_layers(self) -> list:
        return [l for l in self.layers if l.hidden]

    @property
    def output(self) -> SpikingLayer:
        return self.layers[-1]

    @property
    def latency(self) -> float:
        """t_min^(L) = 1 + Σ_{n<L} B_n: when the logits are read."""
        return self.output.t_min

    @property
    def hidden_neurons(self) -> int:
        return sum(l.neurons for l in self.hidden_layers)

    @property
    def relu_macs(self) -> int:
        return sum(l.layer.macs for l in self.layers)

    def input_times(self, x) -> np.ndarray:
        """Input spike times of raw inputs x: the model's coding of x̂ = (x − p)/(q − p)."""
        p, q = self.input_range
        x = np.asarray(x, np.float64)
        if x.ndim != len(self.input_shape) + 1 or x.shape[1:] != self.input_shape:
            raise ValueError(f"inputs have shape {x.shape[1:]}, the network expects {self.input_shape}")
        return self.model.input_times((x - p) / (q - p))

    def save(self, path) -> None:
        from .serialize import save

        save(self, path)

    def check_loaded(self, path) -> None:
        """Refuse a loaded network whose parts do not fit together (:func:`exactsnn.checks.check_spiking`)."""
        from .checks import check_spiking

        check_spiking(self, path, Synapses, SpikingLayer)

    def scaled_network(self) -> PreprocessedNetwork:
        """The Phase 1 network this SNN computes exactly."""
        return PreprocessedNetwork(
            self.input_shape, self.input_range, [l.layer for l in self.layers], self.input_pools, self.X
        )


def window_widths(X: np.ndarray, zeta: float, skip_sources=()) -> list[float]:
    """B_n = (1 + ζ) X_n per hidden layer, widened where residual connections need it.

    A skip group of layer k reads layer s < k − 1, whose value x codes a spike at
    t_max^(s) − x.  Delayed by D = t_max^(k-1) − t_max^(s) it arrives at t_max^(k-1) − x,
    inside layer k's input window [t_min^(k-1), t_max^(k-1)] whenever x ≤ B_{k-1}.  Since
    x ≤ B_s on every input that fits layer s's own window, B_{k-1} ≥ B_s suffices: then
    the merge neuron sees one affine map of inputs in one window and the analysis of
    DESIGN §2 holds unchanged (B_{-1} = 1, the input window).
    ``skip_sources[k]`` lists the sources of layer k's skip groups.
    A layer silent on the whole sample (X_n = 0) gets the window of X_n = 1: a zero-width
    window would leave the next layer (the read-out in particular) no time to integrate.
    """
    if not zeta > -1.0:
        raise ValueError(f"zeta must be > -1 (the window (1 + zeta) X_n must be positive), got {zeta}")
    widths: list[float] = []
    for j, x_j in enumerate(np.asarray(X, np.float64)):
        b = (1.0 + zeta) * (float(x_j) if x_j > 0 else 1.0)
        sources = skip_sources[j + 1] if j + 1 < len(skip_sources) else ()
        for src in sources:
            if src < j:
                b = max(b, 1.0 if src < 0 else widths[src])
        widths.append(b)
    return widths


def time_windows(X: np.ndarray, zeta: float, skip_sources=()) -> list[tuple[float, float, float]]:
    """(t_start, t_min, t_max) per hidden layer: t_min^(0) = 0, t_max^(0) = 1,
    t_min^(n) = t_max^(n-1), t_max^(n) = t_min^(n) + B_n (:func:`window_widths`)."""
    windows, t_prev_min, t_prev_max = [], 0.0, 1.0
    for width in window_widths(X, zeta, skip_sources):
        t_min = t_prev_max
        windows.append((t_prev_min, t_min, t_min + width))
        t_prev_min, t_prev_max = t_min, t_min + width
    return windows


def spiking_network(
    prep: PreprocessedNetwork, *, zeta: float = 0.5, alpha_sigma: float = 0.0, alpha_seed: int = 0,
    neuron: str = "alpha",
) -> SpikingNetwork:
    """Build the α-model SNN from the scaled network (Phase 2).

    Windows from X_n and ζ (:func:`time_windows`), J and ϑ for α = 1 (the model's
    ``synaptic_weights`` and ``threshold``, :mod:`exactsnn.neurons`).
    With ``alpha_sigma`` > 0 each hidden neuron gets α_i = 1 + N(0, σ_α²), drawn once from
    ``alpha_seed``, while J and ϑ stay those of α = 1 (device mismatch).  The read-out has
    α_i = b_i / (t_min^(L) − t_min^(L-1)), so its potential at t_min^(L) is b + W x.
    ``neuron="b1"``: ϑ_i = B_n − b_i and the read-out adds b to its potential instead.
    """
    model = neuron_model(neuron)
    if not (alpha_sigma >= 0 and np.isfinite(alpha_sigma)):
        # NumPy would draw with |σ_α| and the result be labelled with the negative value.
        raise ValueError(f"alpha_sigma must be a finite number >= 0, got {alpha_sigma!r}")
    if len(prep.X) != len(prep.hidden):
        raise ValueError("the preprocessed network has no X_n for its hidden layers; run preprocess first")
    if np.any(prep.X < 0):
        raise ValueError("X_n must be non-negative")
    if any(s >= 1.0 for l in prep.hidden for s in l.weight_sum):
        raise ValueError("a hidden neuron has Σ_j W_ij ≥ 1; scale the weights first (scale_weights)")
    rng = np.random.default_rng(alpha_seed)
    skip_sources = [[g.source for g in l.skips] for l in prep.layers]
    windows = time_windows(prep.X, zeta, skip_sources)
    t_maxes = {-1: 1.0, **{k: w[2] for k, w in enumerate(windows)}}
    layers = []
    for k, (layer, (t_start, t_min, t_max)) in enumerate(zip(prep.hidden, windows)):
        theta = model.threshold(layer.weight_sum, layer.bias, t_start, t_min, t_max)
        alpha = np.ones(layer.output_shape)
        if alpha_sigma > 0:
            alpha = alpha + rng.normal(0.0, alpha_sigma, size=alpha.shape)
        delays = [t_maxes[k - 1] - t_maxes[g.source] for g in layer.skips]
        layers.append(SpikingLayer(layer, t_start, t_min, t_max, np.broadcast_to(theta, layer.output_shape).copy(),
                                   alpha, delays))
    out = prep.layers[-1]
    k = len(prep.hidden)
    t_start, t_min = (windows[-1][1], windows[-1][2]) if windows else (0.0, 1.0)
    alpha_out = model.readout_alpha(out.bias, t_start, t_min)
    delays = [t_maxes[k - 1] - t_maxes[g.source] for g in out.skips]
    layers.append(SpikingLayer(out, t_start, t_min, t_min, np.full(out.output_shape, np.nan), alpha_out, delays))
    return SpikingNetwork(
        prep.input_shape, prep.input_range, prep.input_pools, layers, prep.X, float(zeta),
        float(alpha_sigma), int(alpha_seed), neuron,
    )
