"""The event-driven solver: first crossings of selected neurons (or of whole layers), each
receptive field gathered and sorted once, neurons walked by :func:`.kernels.walk`."""

from __future__ import annotations

import numpy as np

from ..spiking import SpikingLayer
from ..synapses import ConvSynapses, DenseSynapses
from .kernels import DENSE_GEOMETRY, walk


def first_crossings(tau, w, alpha, theta, t_start: float) -> np.ndarray:
    """First time V reaches ϑ, for neurons sharing input times (see :func:`.kernels.walk`).

    tau (P, F) input times (any: an input before t_start counts from its arrival), w (P, F, C)
    their weights J, alpha and theta (P, C).
    Returns (P, C), +inf where V never reaches ϑ.
    """
    P, F, C = np.shape(w)
    JT = np.ascontiguousarray(np.transpose(w, (0, 2, 1)).reshape(P * C, F), np.float64)
    out = walk(_time_rows(tau), np.arange(P + 1) * C, np.arange(P * C), JT,
               np.ascontiguousarray(alpha, np.float64).reshape(-1), np.ascontiguousarray(theta, np.float64).reshape(-1),
               float(t_start), np.full(P, np.inf), False)
    return out.reshape(P, C)


def _time_rows(times) -> tuple:
    """Fields of :func:`.kernels.walk` whose input times are the rows of ``times`` (U, F)."""
    times = np.ascontiguousarray(times, np.float64)
    U = len(times)
    geometry = np.array([DENSE_GEOMETRY], np.int64)
    zeros = np.zeros(U, np.int64)
    return ((times.reshape(U, 1, 1, -1),), geometry, np.ones(1), np.zeros(1), 0.0, np.arange(U), zeros, zeros)


def _all_neurons(layer, sample: int) -> tuple:
    """Index (sample, *position, channel) of every neuron of one sample, in the layer's order."""
    shape = layer.output_shape
    return (np.full(int(np.prod(shape)), sample), *(i.reshape(-1) for i in np.indices(shape)))


def event_layer(sl: SpikingLayer, inputs: list, horizons, values: bool = False) -> np.ndarray:
    """Crossings before ``horizons`` (per sample) of every neuron of a layer, NaN where none
    (then the closed form stands); one sample at a time keeps the index arrays small.
    ``inputs`` as for :func:`_event_neurons`."""
    layer = sl.layer
    batch = len(inputs[0])
    out = np.empty((batch,) + layer.output_shape)
    for b in range(batch):
        index = _all_neurons(layer, b)
        out[b] = event_neurons(sl, inputs, index, horizons, values, bounds=False).reshape(layer.output_shape)
    return out


def event_neurons(sl: SpikingLayer, inputs: list, index: tuple, horizon=np.inf,
                   values: bool = False, bounds: bool = True) -> np.ndarray:
    """Event-driven first crossings of selected neurons; ``index`` = (sample, *position, channel).

    ``inputs`` per synapse group: padded input times (as :func:`padded_inputs` gives them), or
    with ``values`` the sources' values x = t_min^(n) − t, unpadded (the compiled path's).
    Neurons of one sample and position share their receptive field: its input times are
    gathered (:func:`_gather_row`, no copy of the layer's inputs) and sorted once, and each
    neuron walks them with its own weights (:func:`.kernels.walk`, which with ``bounds`` first tries to
    certify it).  A finite ``horizon`` (one, or one per sample: no input comes later, except
    at it) asks only for crossings before it, NaN elsewhere.
    """
    layer = sl.layer
    b, c = index[0], index[-1]
    alpha = np.ascontiguousarray(np.broadcast_to(sl.alpha, layer.output_shape)[index[1:]], np.float64)
    theta = np.ascontiguousarray(np.broadcast_to(sl.threshold, layer.output_shape)[index[1:]], np.float64)
    conv = isinstance(layer, ConvSynapses)
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
    out[by_field] = walk(field_data, starts, c[by_field], sl.synapse_weights_by_channel, alpha[by_field],
                         theta[by_field], float(sl.t_start), horizons, bounds)
    return np.minimum(out, sl.t_max)  # NaN stays NaN


def _gather_source(group, src, t_min: float, values: bool) -> tuple:
    """(inputs as (B, H, W, C) float64, geometry, scale, offset) of one synapse group for
    :func:`_gather_row`; a dense group is a convolution whose kernel covers its whole input."""
    src = np.ascontiguousarray(src, np.float64)
    scale, offset = (-1.0, t_min) if values else (1.0, 0.0)
    if isinstance(group, DenseSynapses):
        return src.reshape(len(src), 1, 1, -1), DENSE_GEOMETRY, scale, offset
    kh, kw = group.weight.shape[:2]
    if values:  # unpadded, cropped to ``used`` by the bounds
        top, left, H, W = group.pads[0], group.pads[2], *group.used
    else:  # padded and cropped already
        top, left, H, W = 0, 0, *src.shape[1:3]
    return src, (kh, kw, *group.strides, *group.dilation, top, left, H, W), scale, offset
