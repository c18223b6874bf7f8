"""The certified fast path of one α-model layer, compiled once and kept in TensorFlow.

:func:`exactsnn.simulate.simulate` runs every hidden layer of a noise-free α-model network
through :class:`CompiledLayer`: spike times stay TensorFlow tensors from the input to the
read-out, and each layer is one traced graph of

* the closed form  t_i = (ϑ_i + α_i t_min^(n-1) + Σ_j J_ij t_j) / (α_i + Σ_j J_ij)
  (= t_max − (W x + b) for α = 1, DESIGN §2) from one float64 convolution W x,
  x_j = t_min^(n) − t_j;
* the certificate that no neuron reaches ϑ before its last input (DESIGN §4): with
  s = t_min − t ∈ [0, S], S = t_min^(n) − t_min^(n-1), and all inputs inside the input window
  (0 ≤ x_j ≤ S),  V(t_min − s) = α (S − s) + Σ_j J_ij (x_j − s)^+.  Excitatory terms are convex
  in s; for any μ ∈ [0, 1] an inhibitory one is ≤ μ J_ij (x_j − s), so V is below a convex
  majorant whose maximum is at an end of [0, S]:
      V ≤ max( α S + ((1 − μ) W⁺x + μ W x) / (1 − Σ_j W_ij),  μ (W x − W⁺x − S ΣW⁻) / (1 − Σ_j W_ij) ).
  μ = clip(a0 / (n1 − n0), 0, 1) balances both ends (any μ is a valid bound);
* the only other product, W⁺x, in **float32** (4× cheaper than float64 here) with a rigorous
  error bound: every term is ≥ 0, so the rounding of W⁺ and x to float32 and the float32
  dot product of F terms keep |p₃₂ − W⁺x| ≤ γ_{F+2} W⁺x, γ_k = k u / (1 − k u), u = 2⁻²⁴
  (any summation order, fused multiply-add or not).  We use 2 γ_{F+2} and an absolute
  2⁻¹⁰⁰ F max W⁺ for flushed subnormals: upper bounds where the majorant grows with W⁺x,
  lower bounds where it falls.

Neurons the certificate leaves, and layers whose inputs are not all inside their window (an
upstream deviation), go to the NumPy certificates and the event-driven solver of
:mod:`exactsnn.simulate`, which only then see NumPy copies.
"""

from __future__ import annotations

import numpy as np

from .spiking import SpikingLayer

_U32 = 2.0 ** -24


def _tf():
    import tensorflow as tf

    return tf


def _gamma(k: int) -> float:
    return k * _U32 / (1.0 - k * _U32)


class CompiledLayer:
    """Data-independent constants of one hidden α-model layer as tensors, and its traced steps."""

    def __init__(self, sl: SpikingLayer):
        tf = _tf()
        layer = sl.layer
        self.sl = sl
        s, pos_sum, neg_sum = sl.weight_sums
        c = layer.channels
        self.groups = []
        fan_in, max_pos = 0, 0.0
        for g, delay in zip(layer.groups, sl.group_delays()):
            pos = np.maximum(g.weight, 0.0)
            fan_in += int(np.prod(g.weight.shape[:-1]))
            max_pos = max(max_pos, float(pos.max(initial=0.0)))
            w = g.weight if g.kind == "conv" else g.weight.reshape(-1, c)
            self.groups.append(dict(
                group=g, delay=float(delay),
                w=tf.constant(w, tf.float64),
                w_pos=tf.constant(np.maximum(w, 0.0), tf.float32),
            ))
        out = layer.output_shape
        one_minus = 1.0 - s
        width = sl.t_min - sl.t_start
        self.rel = 2.0 * _gamma(fan_in + 2)
        self.abs = 2.0 ** -100 * fan_in * max(max_pos, 1.0)
        # Certified for every input: all excitation at t_min^(n-1) still stays below ϑ.
        static = sl.alpha * width + pos_sum / one_minus * width < sl.threshold
        self.static = tf.constant(np.broadcast_to(static, out))
        self.bias = tf.constant(np.broadcast_to(layer.bias, out), tf.float64)
        self.alpha = tf.constant(np.broadcast_to(sl.alpha, out), tf.float64)
        self.theta = tf.constant(np.broadcast_to(sl.threshold, out), tf.float64)
        self.one_minus = tf.constant(one_minus, tf.float64)
        self.neg_sum = tf.constant(neg_sum, tf.float64)
        self.j_sum = tf.constant(s / one_minus, tf.float64)
        self.tol = 1e-9 * max(1.0, abs(sl.t_max))
        self.step = tf.function(self._step, reduce_retracing=True)
        self.pool = tf.function(self._pool, reduce_retracing=True)
        self.counts = tf.function(self._counts, reduce_retracing=True)

    def _inputs(self, times: tuple):
        """x_j = t_min^(n) − t_j per synapse group (delayed, cropped, padded taps x = 0)."""
        tf = _tf()
        sl = self.sl
        xs = []
        for g, t in zip(self.groups, times):
            geo = g["group"]
            t = t + g["delay"] if g["delay"] else t
            if geo.kind == "dense":
                xs.append(sl.t_min - tf.reshape(t, [tf.shape(t)[0], -1]))
                continue
            t = t[:, : geo.used[0], : geo.used[1], :]
            top, bottom, left, right = geo.pads
            if top or bottom or left or right:
                t = tf.pad(t, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=sl.t_min)
            xs.append(sl.t_min - t)
        return xs

    @staticmethod
    def _product(g, x, w):
        tf = _tf()
        geo = g["group"]
        if geo.kind == "dense":
            return tf.matmul(x, w)
        return tf.nn.conv2d(x, w, strides=[1, *geo.strides, 1], padding="VALID", dilations=[1, *geo.dilation, 1])

    def _step(self, times: tuple):
        """(spikes, ideal, uncertified mask, number uncertified, all inputs inside the window)."""
        tf = _tf()
        sl = self.sl
        xs = self._inputs(times)
        S = sl.t_min - sl.t_start
        inside = tf.reduce_all([tf.reduce_all((x >= 0.0) & (x <= S)) for x in xs])
        wx = tf.add_n([self._product(g, x, g["w"]) for g, x in zip(self.groups, xs)])
        p32 = tf.add_n([self._product(g, tf.cast(x, tf.float32), g["w_pos"]) for g, x in zip(self.groups, xs)])
        p = tf.cast(p32, tf.float64)
        p_hi = p * (1.0 + self.rel) + self.abs
        p_lo = p * (1.0 - self.rel) - self.abs
        z = wx + self.bias
        ideal = sl.t_max - tf.maximum(z, 0.0)
        if sl.alpha_is_one:
            closed = sl.t_max - z
        else:
            closed = (self.theta + self.alpha * sl.t_start + self.j_sum * sl.t_min - wx / self.one_minus) / (
                self.alpha + self.j_sum
            )
        spikes = tf.minimum(closed, sl.t_max)
        a0 = self.alpha * S + p / self.one_minus
        n0 = (wx - p) / self.one_minus
        n1 = n0 - S * self.neg_sum / self.one_minus
        mu = tf.clip_by_value(tf.math.divide_no_nan(a0, n1 - n0), 0.0, 1.0)
        at_t_min = self.alpha * S + ((1.0 - mu) * p_hi + mu * wx) / self.one_minus
        at_t_start = mu * (wx - p_lo - S * self.neg_sum) / self.one_minus
        certified = self.static | (tf.maximum(at_t_min, at_t_start) < self.theta)
        left = tf.logical_not(certified)
        return spikes, ideal, left, tf.math.count_nonzero(left), inside

    def _counts(self, spikes, ideal):
        """(deviating, non-zero) spikes: not at t_max − ReLU(W x̂ + b) or before t_min; before t_max."""
        tf = _tf()
        sl, tol = self.sl, self.tol
        deviating = (tf.abs(spikes - ideal) > tol) | (spikes < sl.t_min - tol)
        return tf.math.count_nonzero(deviating), tf.math.count_nonzero(spikes < sl.t_max - tol)

    def _pool(self, spikes):
        """Sign-aware pooling on times: the earliest spike (max of values), or the latest."""
        tf = _tf()
        t_max = self.sl.t_max
        for pool in self.sl.layer.pools:
            top, bottom, left, right = pool.pads
            if top or bottom or left or right:
                spikes = tf.pad(spikes, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=t_max)
            ksize, st, pad = [1, *pool.size, 1], [1, *pool.strides, 1], pool.padding.upper()
            earliest = -tf.nn.max_pool2d(-spikes, ksize, st, pad)
            if np.all(pool.sign > 0):
                spikes = earliest
            else:
                spikes = tf.where(tf.constant(pool.sign > 0), earliest, tf.nn.max_pool2d(spikes, ksize, st, pad))
        return spikes


def compiled(sl: SpikingLayer) -> CompiledLayer:
    """The layer's :class:`CompiledLayer`, built on first use and kept with the layer."""
    cache = sl.__dict__
    if "_compiled" not in cache:
        cache["_compiled"] = CompiledLayer(sl)
    return cache["_compiled"]
