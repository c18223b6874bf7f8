"""What a simulation holds in memory, and the batch size that fits a budget.

The default engine keeps, per hidden layer, the network's arrays (NumPy, float64) and their
compiled copies (TensorFlow constants: W in float64 and up to three float32 copies for the
majorants, per-neuron maps for ϑ, α, the bias and the closed form), plus J by channel for the
walk; per sample, the widest layer's tensors while it is stepped: its input values, W x,
z, the values and flags, the float32 inputs and products of the edge majorant
(:mod:`.fastpath`).  :func:`simulation_memory` adds these up from the network's shapes, without
running it; the benchmark ``benchmarks/bench_scale.py`` and ``tests/test_scale.py`` check it
against measured peaks.  :func:`phase1_memory` does the same for a Phase 1 part (X_n and the
reference predictions), which holds the scaled network and the original's float64 copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..preprocessed import PreprocessedNetwork
from ..spiking import SpikingNetwork
from ..synapses import ConvSynapses
from .fastpath import CONV_EDGE_PLANS, DENSE_EDGE_PLANS, _is_diagonal

#: The process itself: Python, NumPy, TensorFlow, XLA's and Numba's compiled code, allocator
#: pools (tests/test_scale.py: a VGG16 of an eighth of the width at 224×224 peaked at 1.33 GB for
#: a batch of 4, about 0.5 GB of it the network and its tensors).
RUNTIME_BYTES = 1024 * 2**20
#: The allowance on the network's items for what they do not list (see the end of
#: :func:`simulation_memory`).
UNLISTED = 1.25


@dataclass(frozen=True)
class SimulationMemory:
    """Bytes a process needs to simulate a network: ``fixed`` (the network and its compiled
    copies, the runtime) and ``per_sample`` (the widest layer's tensors, per sample)."""

    fixed: int
    per_sample: int

    def total(self, batch_size: int) -> int:
        return self.fixed + batch_size * self.per_sample

    def batch_size(self, budget_bytes: float, largest: int) -> int:
        """The largest batch ≤ ``largest`` whose total fits ``budget_bytes`` (at least 1)."""
        room = (budget_bytes - self.fixed) // max(self.per_sample, 1)
        return int(min(max(room, 1), largest))


def simulation_memory(net: SpikingNetwork) -> SimulationMemory:
    """An upper estimate of what :func:`exactsnn.simulate` holds on ``net`` (default engine)."""
    fixed, per_sample = RUNTIME_BYTES, 0
    readout = net.layers[-1]
    for sl in net.layers:
        layer = sl.layer
        weights = sum(int(np.prod(g.weight.shape)) for g in layer.groups)
        neurons = int(np.prod(layer.output_shape))
        if sl is readout:
            # No majorant and no walk: NumPy W, and a dense group multiplies it in NumPy while a
            # convolution has it as a float64 constant (ResNet50's classifier, the global
            # average pool folded in, has 100 M weights: 44 bytes each would be 4.4 GB too many).
            fixed += sum(int(np.prod(g.weight.shape)) * (16 if isinstance(g, ConvSynapses) else 8)
                         for g in layer.groups)
        else:
            # An identity shortcut is multiplied by its diagonal (float64 constants of W and
            # |W⁻|); it keeps its NumPy W and J by channel for the walk.
            diagonal = [g for g in layer.skips if _is_diagonal(g)]
            fixed += sum(int(np.prod(g.weight.shape)) * (8 + 8) + 2 * 8 * g.channels for g in diagonal)
            # Every other group: NumPy W, the float64 constant, W⁺ / W / |W⁻| in float32 (all
            # three while the first plan runs both majorants), J by channel for the walk, and a
            # float64 temporary while a float32 copy is made.
            weights -= sum(int(np.prod(g.weight.shape)) for g in diagonal)
            fixed += weights * (8 + 8 + 3 * 4 + 8 + 8)
        # ϑ, α and the bias of the network; ϑ, the bias, c and g as constants and c, g in NumPy
        # (per channel where they can be, full maps counted); the static flag.
        fixed += neurons * (3 * 8 + 6 * 8 + 1)
        inputs = sum(int(np.prod(g.input_shape)) for g in layer.groups)
        bins, groups = (CONV_EDGE_PLANS if isinstance(layer, ConvSynapses) else DENSE_EDGE_PLANS)[-1]
        # Inputs: the values (float64, the source's pooled tensor), the shifted float32 copies, the
        # excess per group.  Outputs: W x, z, x and the spikes, the float32 products at the
        # edges, the excess products and the convex one, the mask of the neurons left.
        step = inputs * (8 + 4 * (bins - 1 + groups)) + neurons * (4 * 8 + 4 * (bins - 1 + groups) + 4 + 1)
        # A convolution's workspace: its input unfolded, one row of the kernel's taps per output.
        step += sum(8 * g.fan_in * int(np.prod(layer.output_shape[:-1]))
                    for g in layer.groups if isinstance(g, ConvSynapses))
        per_sample = max(per_sample, step)
    # What the items above miss (temporaries while the constants are made, TensorFlow's own
    # buffers): VGG16 at 224×224, batches of 2, peaked at 10.04 GiB against 9.81 itemised when
    # all float32 copies and per-neuron maps were kept (8.30 GiB since, 10.4 estimated; ResNet50
    # 3.39 GiB, 4.42 estimated).
    network = (fixed - RUNTIME_BYTES) * UNLISTED
    return SimulationMemory(fixed=int(RUNTIME_BYTES + network), per_sample=int(per_sample * UNLISTED))


def phase1_memory(net: PreprocessedNetwork, chunk: int):
    """An upper estimate of what a Phase 1 part holds (a :class:`SimulationMemory`:
    ``total(batch)`` bytes for forward batches of ``batch``), ``chunk`` test samples read at a
    time for the reference predictions.

    Fixed: the process (the simulator's ``RUNTIME_BYTES``); per weight of the scaled network,
    its NumPy array and TensorFlow constant (float64), and the original (counted by the same
    weights) as loaded and as read from its file (float32), its float64 copy and, while the copy's
    weights are set, their float64 and float32 temporaries; the bias maps; a chunk of raw inputs
    and its float64 copy.  Per sample of a batch: the widest layer's activations
    (:meth:`PreprocessedNetwork.sample_bytes`) of the scaled network and as much again for the
    original's forward pass, and the raw input.  ``benchmarks/bench_phase1.py``: VGG16 at
    224×224, batches of 2, a chunk of 2, peaked at 7.34 GiB (8.58 estimated)."""
    weights = sum(int(np.prod(g.weight.shape)) for layer in net.layers for g in layer.groups)
    biases = sum(int(np.size(layer.bias)) for layer in net.layers)
    inputs = int(np.prod(net.input_shape))
    items = weights * (8 + 8 + 4 + 4 + 8 + 8 + 4) + 8 * biases + 2 * 8 * inputs * int(chunk)
    per_sample = 2 * net.sample_bytes() + 8 * inputs
    return SimulationMemory(fixed=int(RUNTIME_BYTES + UNLISTED * items), per_sample=int(UNLISTED * per_sample))
