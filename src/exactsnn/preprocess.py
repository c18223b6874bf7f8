"""Phase 1: turn an imported network into a scaled ReLU chain ready for the spiking mapping.

Every step takes one plain object and returns the next (DESIGN §2, Phase 1); each lives in
the module of what it does, and all are importable from here:

* :func:`fold_network` (:mod:`exactsnn.folding`) — input range [p, q], batch normalisation
  before and after the ReLU (through max pooling with per-channel sign, through flatten),
  average pooling and the position-dependent biases that zero padding leaves behind (a bias
  *map*);
* :func:`scale_weights` (:mod:`exactsnn.scaling`) — per-neuron positive factors so that
  Σ_j W_ij ∈ [lower, upper], undone on the next layer;
* :func:`max_activations` (here) — X_n of every hidden layer in one forward pass; for a
  sample in parts, :func:`part_maxima` per part and :func:`merge_maxima` over them.

The network function is unchanged by all three; :func:`preprocess` chains them.  The network
they pass along is :class:`PreprocessedNetwork` (:mod:`exactsnn.preprocessed`), its layers
those of :mod:`exactsnn.synapses`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import ir
from .datasets import part_range
from .folding import (AvgPoolStep, ChannelAffine, FlattenStep, FoldingError, GlobalAvgPoolStep, ZeroPaddingStep,
                      fold_avg_pool_into_conv, fold_avg_pool_into_dense, fold_channel_affine, fold_flatten,
                      fold_global_avg_pool, fold_network, fold_output_affine, fold_zero_padding)
from .preprocessed import ACTIVATION_BUDGET, PreprocessedNetwork
from .scaling import scale_weights
from .synapses import ConvSynapses, DenseSynapses, Pool, PooledDenseSynapses, Synapses

__all__ = [
    "ACTIVATION_BUDGET", "AvgPoolStep", "ChannelAffine", "ConvSynapses", "DenseSynapses", "FlattenStep",
    "FoldingError", "GlobalAvgPoolStep", "Pool", "PooledDenseSynapses", "PreprocessedNetwork", "Synapses",
    "ZeroPaddingStep",
    "batch_ranges", "fold_avg_pool_into_conv", "fold_avg_pool_into_dense", "fold_channel_affine", "fold_flatten",
    "fold_global_avg_pool", "fold_network", "fold_output_affine", "fold_zero_padding", "max_activations",
    "merge_maxima", "part_maxima", "preprocess", "scale_weights",
]


def batch_ranges(n: int, batch_size: int, parts: int = 1, part: int = 0) -> list[tuple[int, int]]:
    """The forward batches [start, stop) of part ``part`` of ``n`` samples cut into batches of
    ``batch_size`` whose runs are dealt in order to ``parts`` near-equal parts (a part may get
    none).  Every batch of a part is a batch of the unsplit pass: a product can round by the
    batch's size, so parts cut elsewhere would not give the unsplit X_n bit for bit."""
    if batch_size < 1 or not 0 <= part < parts:
        raise ValueError(f"part {part} of {parts} in batches of {batch_size} does not exist")
    first, stop = part_range(-(-int(n) // batch_size), parts, part)  # the part's run of batches
    return [(k * batch_size, min((k + 1) * batch_size, int(n))) for k in range(first, stop)]


def _maxima(net: PreprocessedNetwork, batches) -> np.ndarray:
    # ReLU outputs are ≥ 0, so zeros are the maxima of no batch at all.
    X = np.zeros(len(net.hidden))
    for x in batches:
        for _, maxima in net.batches(x, max(len(x), 1), hidden="max"):
            X = np.maximum(X, maxima)
    return X


def max_activations(net: PreprocessedNetwork, x_sample, batch_size: int | None = None) -> np.ndarray:
    """X_n = max over the sample and the neurons of hidden layer n's ReLU output, one pass, a
    running maximum per batch (memory independent of the sample's size; ``batch_size`` None:
    up to 256 as :meth:`PreprocessedNetwork.batch_size` allows)."""
    if len(x_sample) == 0:
        raise ValueError("the training sample for X_n is empty")
    ranges = batch_ranges(len(x_sample), batch_size or net.batch_size(256))
    return _maxima(net, (x_sample[start:stop] for start, stop in ranges))


def part_maxima(net: PreprocessedNetwork, batches, clip_inputs: bool = False) -> np.ndarray:
    """Per hidden layer, the largest ReLU output over ``batches`` (raw inputs, read one at a
    time by the caller, so that a part of the X_n sample holds one batch whatever its size),
    each checked as :func:`preprocess` checks its sample; zeros where there are no batches.
    The X_n of the whole sample is :func:`merge_maxima` of its parts'."""
    from .checks import check_inputs

    checked = (check_inputs(x, net.input_shape, net.input_range, what="X_n sample", clip=clip_inputs)
               for x in batches)
    return _maxima(net, checked)


def merge_maxima(parts, samples) -> np.ndarray:
    """X_n from the per-part maxima of :func:`part_maxima` and the samples each part had:
    the maximum of the maxima, which is exactly the maximum over the whole sample."""
    parts = [np.asarray(p, np.float64) for p in parts]
    if sum(int(n) for n in samples) == 0:
        raise ValueError("the training sample for X_n is empty")
    if len({p.shape for p in parts}) != 1:
        raise ValueError(f"the parts' maxima have different shapes: {sorted({p.shape for p in parts})}")
    return np.max(np.stack(parts), axis=0)


def preprocess(graph: ir.Graph, x_sample, *, input_range=(0.0, 1.0), lower=-10.0, upper=0.99,
               clip_inputs: bool = False) -> PreprocessedNetwork:
    """Phase 1: fold, scale, and measure X_n on ``x_sample`` (raw input domain).

    The sample must be finite, of the graph's input shape and inside ``input_range``, or is
    clipped to it with ``clip_inputs`` (:func:`exactsnn.checks.check_inputs`): a NaN would
    make X_n NaN, a value beyond the range an X_n the inputs the SNN codes never reach.
    """
    from .checks import check_inputs

    net = scale_weights(fold_network(graph, input_range), lower, upper)
    x_sample = check_inputs(x_sample, net.input_shape, net.input_range, what="X_n sample", clip=clip_inputs)
    return replace(net, X=max_activations(net, x_sample))

