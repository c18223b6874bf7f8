"""The original code's per-neuron sort-and-gather simulation, re-implemented for comparison.

This is the *algorithm* of Stanojevic et al.'s reference implementation (TensorFlow, float64,
compiled with ``tf.function``), re-implemented here, not copied:

for every hidden layer, per sample and output position (a row of P = batch × positions),

1. gather the input spike times of the receptive field, t_j (P, F) — for a convolution the
   input is padded with t_min^(n) (a padded tap codes 0) and cut into patches;
2. sort them: the sort indices give the order in which input spikes arrive;
3. gather the synaptic weight matrix J (F, C) in that order, once per row: (P, F, C) —
   the step that makes the memory and time O(P × F × C);
4. cumulative sums over the sorted inputs give, after input k, the slope α + Σ_{m≤k} J_m and
   the crossing candidate t_k = (ϑ + α t_min^(n-1) + Σ_{m≤k} J_m t_m) / (α + Σ_{m≤k} J_m);
5. the spike is the first candidate that comes before the next input spike with a positive
   slope, clipped at t_max^(n).

Max pooling is the earliest spike (sign-aware, like the library's pools); the read-out is
α (t_min^(L) − t_min^(L-1)) + Σ_j W_ij (t_min^(L) − t_j).  The parameters (J, ϑ, α, windows)
are those of an :class:`exactsnn.SpikingNetwork`, so its spikes can be checked against ours.

Differences from the original that do not change the cost: thresholds are per neuron (a map
over positions) instead of the original's nine hard-coded border regions; the first valid
segment is found with a min over indices instead of ``argmax`` on a 0/1 mask (whose tie
breaking TensorFlow does not promise); no zero-σ noise tensor is added to every output.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

_NEVER = 1.0e6  # "next spike" after the last input, as in the original


def first_spike(tj, J, alpha, theta_plus, t_max):
    """Sort-and-gather first crossing for P rows of F inputs and C neurons.

    tj (P, F) input times, J (F, C) synaptic weights, alpha and theta_plus = ϑ + α t_min^(n-1)
    broadcastable to (P, C).  Returns (P, C).
    """
    order = tf.argsort(tj, axis=1)  # (P, F)
    t_sorted = tf.gather(tj, order, batch_dims=1)  # (P, F)
    J_sorted = tf.gather(J, order, axis=0)  # (P, F, C): the weight matrix, gathered per row
    slope = tf.cumsum(J_sorted, axis=1) + alpha[:, None, :]
    weighted = tf.cumsum(J_sorted * t_sorted[:, :, None], axis=1)
    candidate = (weighted + theta_plus[:, None, :]) / slope  # (P, F, C)
    rows = tf.shape(tj)[0]
    nxt = tf.concat([t_sorted[:, 1:], tf.fill([rows, 1], tf.constant(_NEVER, tj.dtype))], axis=1)
    valid = (candidate < nxt[:, :, None]) & (slope > 0)
    F = tf.shape(tj)[1]
    idx = tf.range(F)[None, :, None]
    first = tf.reduce_min(tf.where(valid, idx, F), axis=1)  # (P, C), F where none is valid
    safe = tf.minimum(first, F - 1)
    spike = tf.gather(tf.transpose(candidate, [0, 2, 1]), safe[:, :, None], batch_dims=2)[:, :, 0]
    spike = tf.where(first < F, spike, t_max)
    return tf.minimum(spike, t_max)


def _pool_times(t, pool):
    """Earliest spike per window (latest where the pool's sign is negative)."""
    ksize = [1, pool.size[0], pool.size[1], 1]
    strides = [1, pool.strides[0], pool.strides[1], 1]
    pad = pool.padding.upper()
    earliest = -tf.nn.max_pool2d(-t, ksize, strides, pad)
    sign = np.asarray(pool.sign)
    if np.all(sign > 0):
        return earliest
    latest = tf.nn.max_pool2d(t, ksize, strides, pad)
    return tf.where(tf.constant(sign > 0), earliest, latest)


class SortAndGather:
    """A compiled sort-and-gather simulator of a :class:`exactsnn.SpikingNetwork`."""

    def __init__(self, snn):
        self.snn = snn
        self.fn = tf.function(
            self._forward,
            input_signature=[tf.TensorSpec((None,) + tuple(snn.input_shape), tf.float64)],
        )

    def _spikes(self, sl, t):
        """Spike times of hidden layer ``sl`` (before its pools) from its input times ``t``."""
        layer = sl.layer
        C = layer.channels
        J = tf.constant(sl.J.reshape(-1, C))
        out_shape = layer.output_shape
        batch = tf.shape(t)[0]
        positions = int(np.prod(out_shape[:-1])) if layer.kind == "conv" else 1
        alpha = np.broadcast_to(sl.alpha, out_shape).reshape(positions, C)
        theta_plus = np.broadcast_to(sl.threshold + sl.alpha * sl.t_start, out_shape).reshape(positions, C)
        if layer.kind == "conv":
            kh, kw = layer.weight.shape[:2]
            t = t[:, : layer.used[0], : layer.used[1], :]
            top, bottom, left, right = layer.pads
            t = tf.pad(t, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=sl.t_min)
            patches = tf.image.extract_patches(
                t, sizes=[1, kh, kw, 1], strides=[1, *layer.strides, 1], rates=[1, *layer.dilation, 1],
                padding="VALID",
            )
            tj = tf.reshape(patches, (-1, J.shape[0]))
            alpha = tf.reshape(tf.tile(tf.constant(alpha)[None], [batch, 1, 1]), (-1, C))
            theta_plus = tf.reshape(tf.tile(tf.constant(theta_plus)[None], [batch, 1, 1]), (-1, C))
        else:
            tj = tf.reshape(t, (batch, -1))
            alpha = tf.tile(tf.constant(alpha), [batch, 1])
            theta_plus = tf.tile(tf.constant(theta_plus), [batch, 1])
        ti = first_spike(tj, J, alpha, theta_plus, tf.constant(sl.t_max, tf.float64))
        return tf.reshape(ti, tf.concat([[batch], out_shape], axis=0))

    def _forward(self, t):
        snn = self.snn
        for pool in snn.input_pools:
            t = _pool_times(t, pool)
        for sl in snn.hidden_layers:
            t = self._spikes(sl, t)
            for pool in sl.layer.pools:
                t = _pool_times(t, pool)
        out = snn.output
        if out.layer.kind != "dense":
            raise NotImplementedError("sort-and-gather read-out: only a dense output layer")
        tj = tf.reshape(t, (tf.shape(t)[0], -1))
        W = tf.constant(out.layer.weight)
        return out.alpha * (out.t_min - out.t_start) + tf.matmul(out.t_min - tj, W)

    def hidden_times(self, x):
        """Spike times of every hidden layer (before pooling) for raw inputs ``x``; eager, for checks."""
        t = tf.constant(self.snn.input_times(x))
        for pool in self.snn.input_pools:
            t = _pool_times(t, pool)
        times = []
        for sl in self.snn.hidden_layers:
            t = self._spikes(sl, t)
            times.append(t.numpy())
            for pool in sl.layer.pools:
                t = _pool_times(t, pool)
        return times

    def logits(self, x, batch_size: int = 1) -> np.ndarray:
        """Read-out potentials for raw inputs ``x``, ``batch_size`` samples per compiled call."""
        out = []
        for start in range(0, len(x), batch_size):
            t = self.snn.input_times(np.asarray(x[start : start + batch_size], np.float64))
            out.append(self.fn(tf.constant(t)).numpy())
        return np.concatenate(out)
