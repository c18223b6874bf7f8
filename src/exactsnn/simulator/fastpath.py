"""The certified fast path of one α-model layer, compiled once and kept in TensorFlow.

:func:`exactsnn.simulate` runs every hidden layer of a noise-free α-model network
through :class:`CompiledLayer`.  Between layers it carries the values x = t_max − t of the
spikes (float64) as TensorFlow tensors: an input
spike at t_j reaches layer n as x_j = t_min^(n) − t_j, delayed skips included.  Each layer is
one traced graph of

* the closed form  t_i = (ϑ_i + α_i t_min^(n-1) + Σ_j J_ij t_j) / (α_i + Σ_j J_ij)
  (= t_max − (W x + b) for α = 1, DESIGN §2) from one float64 convolution W x;
* the certificate that no neuron reaches ϑ before its last input (DESIGN §4): with
  s = t_min − t ∈ [0, S], S = t_min^(n) − t_min^(n-1), and all inputs inside the input window
  (0 ≤ x_j ≤ S),  V(t_min − s) = α (S − s) + Σ_j J_ij (x_j − s)^+.  Excitatory terms are convex
  in s; for any μ ∈ [0, 1] an inhibitory one is ≤ μ J_ij (x_j − s), so V is below a convex
  majorant whose maximum is at an end of [0, S]:
      V ≤ max( α S + ((1 − μ) W⁺x + μ W x) / (1 − Σ_j W_ij),  μ (W x − W⁺x − S ΣW⁻) / (1 − Σ_j W_ij) ).
  any μ is a valid bound; the test of :func:`_certify` finds the best one;
* the only other product, W⁺x, in **float32** (4× cheaper than float64 here) with a rigorous
  error bound: every term is ≥ 0, so the rounding of W⁺ and x to float32 and the float32
  dot product of F terms keep |p₃₂ − W⁺x| ≤ γ_{F+2} W⁺x, γ_k = k u / (1 − k u), u = 2⁻²⁴
  (any summation order, fused multiply-add or not).  We use 2 γ_{F+2} and an absolute
  2⁻¹⁰⁰ F max W⁺ for flushed subnormals: upper bounds where the majorant grows with W⁺x,
  lower bounds where it falls.

The neurons left go to the event-driven walk of :mod:`.event` and :mod:`.kernels`, which first tries
two tighter per-neuron bounds.  A layer whose inputs are not all inside their window (after an
upstream deviation) runs in NumPy there instead.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np
import xxhash

from .. import ops
from ..neurons import AlphaNeuron, deviates, tolerance
from ..spiking import SpikingLayer
from ..synapses import ConvSynapses, DenseSynapses

_U32 = 2.0 ** -24
#: Plans of the edge majorant (AlphaNeuron.bin_excess), (bins, excess groups), cheapest
#: first: K − 1 float32 products at the interior edges and one per excess group.  On a random
#: VGG16 at 224×224 (uniform noise) the excess, not the edges, is what leaves neurons (without
#: it 2 bins certify every neuron of every layer), so splitting it is often worth more than more
#: bins: (3, 2) left 0.00–1.3 % of block3_conv2…block5 where (4, 1) left 0.07–2.2 %; block2
#: needs (6, 2).  Each layer climbs while the neurons left cost more to walk than the next plan's
#: extra products (:func:`.layers._certified_step`).  Cheaper plans exist ((2, 1) certified half
#: of ResNet50's layers) but every plan a layer tries is one more compilation, whose code stays
#: for the life of the process: starting ResNet50 at (2, 1) held 0.25 GiB more and took twice
#: as long on its first batch.  Convolutions stop at 8 bins (each holds float32 copies of the
#: input and output: memory); a dense layer's products are stacked along the batch and read W
#: once, so more bins cost little there (VGG16's fc1, fan-in 25,088: (8, 4) left 0.9 %,
#: (16, 1) 10 %).
CONV_EDGE_PLANS = ((3, 2), (4, 2), (6, 2), (8, 2))
DENSE_EDGE_PLANS = ((4, 2), (8, 4), (16, 8))
#: What one walked neuron is taken to cost, in float32 products of the whole layer per neuron.
#: The hardest leftovers cost far more (25–35 µs per neuron of VGG16's block3 against 11–12 ns
#: per neuron and product: 2,000–3,000; 8 µs against 12 ns in ResNet50: 650), but a product also
#: has a fixed cost per call, and photographs leave easier neurons.  Measured at 224×224 (random
#: weights, 4 images in batches of 2, one process per run, alternating, in the same hour):
#: VGG16 on uniform noise 1.26–1.37 s per image at 100 (20,435 walked), 1.07–1.16 at 300 or
#: 1,000 (5,862 / 3,612; block3_conv2 and conv3 at (4, 2) instead of (3, 2)); on photographs
#: 1.18–1.23 at 100, 1.03–1.26 at 300, 1.22–1.28 at 1,000; ResNet50 on noise 0.52–0.54 at 100,
#: 0.50–0.51 at 1,000.
WALK_PRODUCTS = 300
#: Layers with at least this fan-in start with the edge majorant alone (the convex one leaves
#: 12–99 % of VGG16's neurons at 224×224, fan-in 576–4608, and was dropped from every such
#: layer of VGG16 and ResNet50 after their first batch); the others start with the convex one
#: and add the edge one when it leaves more than 1 % (:func:`.layers.compiled_layer`).
_EDGE_FAN_IN = 512
_HISTOGRAM_BINS = 64
_HISTOGRAM_SAMPLE = 1 << 15


def _tf():
    import tensorflow as tf

    if not _quiet_tracing.installed:
        tf.get_logger().addFilter(_quiet_tracing)
        _quiet_tracing.installed = True
    return tf


def _quiet_tracing(record) -> bool:
    """Drops TensorFlow's retracing warning about our own layers: every layer's steps are
    traced once, and TensorFlow counts the traces of all instances of a method together."""
    message = record.getMessage()
    ours = ("CompiledLayer", "CompiledReadout", "_edge_inputs", "_certify")
    return not ("triggered tf.function retracing" in message and any(name in message for name in ours))


_quiet_tracing.installed = False


def _gamma(k: int) -> float:
    return k * _U32 / (1.0 - k * _U32)


class _Constants(NamedTuple):
    """What the fused pass (:func:`_certify`) reads of one layer, all tensors: a Python float
    would be a constant of the trace, and layers of the same shapes could not share it."""

    line: tuple  # (c, g) of the closed form
    bias: Any
    theta: Any
    static: Any
    alpha: Any
    alpha_S: Any
    inv_one_minus: Any
    S_neg: Any
    abs_sum: Any
    t_min: Any
    t_max: Any
    window: Any
    width: Any
    tol: Any
    rel: Any
    abs: Any
    abs_edges: Any
    skip_w: tuple = ()  # the identity shortcuts' diagonals, float64
    skip_w_pos: tuple = ()  # their W⁺ (float32), when the convex majorant runs
    skip_w_neg: tuple = ()  # their |W⁻| (float64), when the edge majorant runs


def _shared(fn):
    """``fn`` traced and compiled by XLA once for all layers: layers whose inputs have the same
    shapes (ResNet50's repeated blocks) share one compilation, its code and its first-call time."""
    if fn not in _shared.functions:
        _shared.functions[fn] = _tf().function(fn, jit_compile=True, reduce_retracing=True, autograph=False)
    return _shared.functions[fn]


_shared.functions = {}


class CompiledLayer:
    """Data-independent constants of one hidden α-model layer as tensors, and its traced steps."""

    def __init__(self, sl: SpikingLayer):
        tf = _tf()
        layer = sl.layer
        self.sl = sl
        s, pos_sum, neg_sum = sl.weight_sums
        c = layer.channels
        self.groups = []
        fan_in, max_pos, max_abs, abs_sum = 0, 0.0, 0.0, np.zeros(c)
        for k, g in enumerate(layer.groups):
            fan_in += g.fan_in
            max_pos = max(max_pos, float(g.weight.max(initial=0.0)))  # = max W⁺, without a copy of W⁺
            diagonal = k > 0 and _is_diagonal(g)  # a skip group; the main one is convolved
            # The majorants' weights (W⁺, W, |W⁻| in float32) are made when a plan first needs them.
            self.groups.append(dict(group=g, diagonal=diagonal, w=tf.constant(_kernel(g, diagonal), tf.float64)))
            if not diagonal:
                magnitude = np.abs(g.weight)
                abs_sum = abs_sum + magnitude.reshape(-1, c).sum(0)
                max_abs = max(max_abs, float(magnitude.max(initial=0.0)))
        out = layer.output_shape
        if out[-1] >= 2 ** _COUNT_BITS:
            raise ValueError(f"layer {layer.name!r}: {out[-1]:,} neurons in a row (its last axis); the compiled "
                             f"path counts rows of fewer than {2 ** _COUNT_BITS:,}")
        one_minus = 1.0 - s
        width = sl.t_min - sl.t_start
        # Certified for every input: all excitation at t_min^(n-1) still stays below ϑ.
        static = AlphaNeuron.static_certificate(sl.alpha, pos_sum, s, width, sl.threshold)
        # Per-neuron maps that are the same at every position (α = 1, no border effects) are
        # kept per channel: a VGG16 at 224×224 has 13.6 million neurons, 109 MB per map.
        f64 = functools.partial(tf.constant, dtype=tf.float64)
        self.constants = _Constants(
            line=tuple(f64(v) for v in closed_form(sl)),
            bias=f64(per_channel(layer.bias, out)),
            theta=f64(per_channel(sl.threshold, out)),
            static=tf.constant(per_channel(static, out)),
            alpha=f64(per_channel(sl.alpha, out)),
            alpha_S=f64(per_channel(sl.alpha * width, out)),
            inv_one_minus=f64(1.0 / one_minus),
            S_neg=f64(-width * neg_sum),  # S Σ|W⁻| ≥ 0
            # The edge majorant's float32 products: Σ_j |W_ij| (x_j − c)⁺ ≤ (c_K − c) Σ_j |W_ij|.
            abs_sum=f64(abs_sum),
            t_min=f64(sl.t_min),
            t_max=f64(sl.t_max),
            window=f64(sl.window),
            width=f64(width),
            tol=f64(tolerance(sl.t_max)),
            rel=f64(2.0 * _gamma(fan_in + 2)),
            abs=f64(2.0 ** -100 * fan_in * max(max_pos, 1.0)),
            abs_edges=f64(2.0 ** -100 * fan_in * max(max_abs, 1.0)),
            skip_w=tuple(g["w"] for g in self.groups if g["diagonal"]),
        )
        # Which majorants run (the convex one: W⁺x; the edge one), chosen from the counts.
        self.edge_plans = CONV_EDGE_PLANS if isinstance(layer, ConvSynapses) else DENSE_EDGE_PLANS
        self.plan = (False, *self.edge_plans[0]) if fan_in >= _EDGE_FAN_IN else (True, 0, 1)
        self.edges_help = True
        self.step = tf.function(self._step, reduce_retracing=True, autograph=False)
        self.pool = tf.function(self._pool, jit_compile=True, reduce_retracing=True, autograph=False)

    _WEIGHTS = {  # key: what of W (float32 in a convolved group, float64 in an identity shortcut)
        "w_pos": lambda w: np.maximum(w, 0.0),
        "w32": lambda w: w,
        "w_neg": lambda w: np.maximum(-w, 0.0),
    }

    def _weight(self, g: dict, key: str):
        """A majorant's weights of group ``g``, made on first use (also while a step is being
        traced: outside the graph, so that it is a captured constant that :meth:`use` can drop)."""
        if g.get(key) is None:
            tf = _tf()
            dtype = tf.float64 if g["diagonal"] and key == "w_neg" else tf.float32
            with tf.init_scope():
                g[key] = tf.constant(self._WEIGHTS[key](_kernel(g["group"], g["diagonal"])), dtype)
        return g[key]

    def use(self, plan: tuple) -> None:
        """Step with ``plan`` = (convex, bins, groups) from now on (:meth:`_step`); the
        majorants' weights it does not need are dropped, with the traces that hold them (VGG16's
        float32 copies are 0.55 GB each)."""
        convex, bins, groups = plan
        unused = ([] if convex else ["w_pos"]) + ([] if bins else ["w32", "w_neg"])
        dropped = False
        for g in self.groups:
            for key in unused:
                if g.get(key) is not None:
                    g[key], dropped = None, True
        if dropped:
            self.step = _tf().function(self._step, reduce_retracing=True, autograph=False)
        self.plan = plan

    def _inputs(self, values: tuple) -> list:
        """x_j = t_min^(n) − t_j per synapse group: the source's values (a delayed skip arrives
        at t_min^(n) − x_j, see :func:`exactsnn.spiking.window_widths`)."""
        return [self._input(g, h) for g, h in zip(self.groups, values)]

    @staticmethod
    def _input(g, h):
        """One group's input: flattened (dense) or cropped to ``used`` (conv); padded taps
        (x = 0) are the convolution's explicit padding."""
        return g["group"].tf_inputs(h)

    @staticmethod
    def _product(g, x, w):
        if g["diagonal"]:  # an identity shortcut: one multiplication per channel
            return x * w
        return g["group"].tf_product(x, w)

    def _step(self, values: tuple, convex: bool = True, bins: int = 0, groups: int = 1):
        """Values x = t_max − t of the layer's spikes and what the certificates found.

        ``values`` are the sources' (pooled) values, all inside this layer's input window (the
        caller checks).  ``convex`` says whether the convex majorant runs, ``bins`` how many
        bins the edge majorant has (0: none) and ``groups`` into how many products its excess
        is split (bin k in group k mod ``groups``); a neuron is certified if either holds.  Returns
        (x, counts, left, x and ReLU(W x + b) at left, z = W x + b) where counts are the numbers
        of neurons that are certified and spike before t_max, certified and deviate, certified
        and lie beyond the window B_n, not certified, certified by the convex majorant only and
        by the edge majorant only;
        ``left`` indexes the fourth.  z is the fused pass's own output (the event engine's
        reference for every neuron), so returning it costs nothing.
        """
        tf = _tf()
        xs = self._inputs(values)
        convs = [(g, x) for g, x in zip(self.groups, xs) if not g["diagonal"]]
        wx = tf.add_n([self._product(g, x, g["w"]) for g, x in convs])
        p32 = tf.add_n([self._product(g, tf.cast(x, tf.float32), self._weight(g, "w_pos")) for g, x in convs]) if convex else None
        edge_terms = self._edge_products(xs, bins, groups) if bins else None
        # Identity shortcuts are one multiplication per neuron: done inside the fused pass.
        skips = tuple(x for g, x in zip(self.groups, xs) if g["diagonal"])
        diagonal = [g for g in self.groups if g["diagonal"]]
        constants = self.constants._replace(  # the identity shortcuts' weights the plan reads
            skip_w_pos=tuple(self._weight(g, "w_pos") for g in diagonal) if convex else (),
            skip_w_neg=tuple(self._weight(g, "w_neg") for g in diagonal) if bins else (),
        )
        x, counts, uncertified, z = _shared(_certify)(wx, p32, edge_terms, skips, constants)

        def gather():  # the neurons left, their x and ReLU(W x + b)
            left = tf.where(uncertified)
            return left, tf.gather_nd(x, left), tf.maximum(tf.gather_nd(z, left), 0.0)

        def nothing():  # most layers: a pass over the mask saved
            return tf.zeros([0, len(x.shape)], tf.int64), tf.zeros([0], tf.float64), tf.zeros([0], tf.float64)

        left, x_left, ideal = tf.cond(counts[3] > 0, gather, nothing)
        return x, counts, left, x_left, ideal, z

    def _edge_products(self, xs: list, bins: int, groups: int) -> tuple:
        """(P(c_k) for the interior edges, Σ_j |W⁻_ij| excess_j per excess group, edges) in
        float32 products of the non-diagonal synapse groups; the identity shortcuts add theirs
        in the fused pass."""
        tf = _tf()
        convs = [(g, x) for g, x in zip(self.groups, xs) if not g["diagonal"]]
        diagonal = tuple(g["diagonal"] for g in self.groups)
        shifted, excess, edges = _shared(_edge_inputs)(tuple(xs), diagonal, bins, groups)

        def summed(inputs: tuple, key: str) -> tuple:  # Σ over synapse groups, per input tensor
            per_group = (self._products(g, v, key) for (g, _), v in zip(convs, inputs))
            return tuple(tf.add_n(list(p)) for p in zip(*per_group))

        return summed(shifted, "w32"), summed(excess, "w_neg"), edges

    def _products(self, g: dict, inputs: tuple, key: str) -> list:
        """The majorant's weights ``key`` of synapse group ``g`` times each of ``inputs``.  A
        dense group's are stacked along the batch: one product reads W once (at a small batch
        it is bound by reading W).  A convolution's are not: its workspace (the unfolded input)
        would grow with the stack."""
        tf = _tf()
        w = self._weight(g, key)
        if isinstance(g["group"], DenseSynapses) and len(inputs) > 1:
            return tf.split(self._product(g, tf.concat(inputs, axis=0), w), len(inputs), axis=0)
        return [self._product(g, v, w) for v in inputs]

    def _pool(self, x):
        """Sign-aware pooling on values (:func:`exactsnn.ops.signed_max_pool`): the earliest
        spike (max) where the sign is +, the latest (min) where −; explicit pads are value 0."""
        tf = _tf()
        for pool in self.sl.layer.pools:
            top, bottom, left, right = pool.pads
            if top or bottom or left or right:
                x = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
            x = ops.signed_max_pool(x, pool.size, pool.strides, pool.padding, pool.sign)
        return x


class CompiledReadout:
    """The read-out layer's potential at t_min^(L) from the compiled path's values (see
    :func:`.layers.readout`): α (t_min^(L) − t_min^(L-1)) + Σ_j W_ij (t_min^(L) − t_j)⁺.  On this
    path no spike comes after t_max, so every value x_j = t_min^(L) − t_j is ≥ 0 and the
    positive part is x_j itself (an input before t_min^(L-1), x_j > S, counts from its arrival).
    Dense groups (the usual read-out: 10–1000 neurons) multiply in NumPy, which is several
    times faster than a TensorFlow call for such small products; convolutions in TensorFlow."""

    def __init__(self, sl: SpikingLayer):
        tf = _tf()
        layer = sl.layer
        self.sl = sl
        self.base = np.broadcast_to(AlphaNeuron.readout_base(sl.alpha, layer.bias, sl.t_start, sl.t_min),
                                    layer.output_shape)
        self.groups = [
            dict(group=g, diagonal=False, w=tf.constant(_kernel(g, False), tf.float64) if isinstance(g, ConvSynapses)
                 else _kernel(g, False))
            for g in layer.groups
        ]
        self.conv = tf.function(self._conv, reduce_retracing=True, autograph=False)

    def _conv(self, g_index: int, x):
        g = self.groups[g_index]
        return CompiledLayer._product(g, CompiledLayer._input(g, x), g["w"])

    def logits(self, values: tuple) -> np.ndarray:
        """(N, classes) logits from the sources' values (tensors), one per synapse group."""
        v = self.base
        for k, (g, x) in enumerate(zip(self.groups, values)):
            if isinstance(g["group"], DenseSynapses):
                with _one_blas_thread():
                    v = v + g["group"].product(g["group"].inputs(x), g["w"])
            else:
                v = v + self.conv(k, x).numpy()
        return v.reshape(len(v), -1)


def _one_blas_thread():
    """BLAS on one thread for a small product between TensorFlow and Numba calls: OpenBLAS's
    threads keep spinning after it and take the cores from the next layer (measured on fc:
    the read-out took 3 ms per batch of 256 in the simulation loop, 0.4 ms on one thread)."""
    from threadpoolctl import ThreadpoolController

    if _one_blas_thread.controller is None:  # after NumPy has loaded its BLAS
        _one_blas_thread.controller = ThreadpoolController()
    return _one_blas_thread.controller.limit(limits=1, user_api="blas")


_one_blas_thread.controller = None


def _kernel(group, diagonal: bool) -> np.ndarray:
    """A synapse group's W as its product takes it: the diagonal of an identity shortcut, the
    kernel of a convolution, a (fan-in, channels) matrix of a dense group."""
    if diagonal:
        return np.diagonal(group.weight[0, 0])
    return group.kernel


def _is_diagonal(group) -> bool:
    """A 1×1 convolution, stride 1, unpadded, over the whole input, with a diagonal kernel
    (what an identity shortcut becomes after folding and scaling): x · diag per channel."""
    w = group.weight
    if not isinstance(group, ConvSynapses) or w.shape[:2] != (1, 1) or w.shape[2] != w.shape[3]:
        return False
    if tuple(group.strides) != (1, 1) or any(group.pads) or tuple(group.used) != tuple(group.input_shape[:2]):
        return False
    return not np.any(w[0, 0] - np.diag(np.diagonal(w[0, 0])))


def _edges(xs: list, bins: int):
    """Edges 0 = c_0 ≤ … ≤ c_K = the sample's largest input, per sample (B, K + 1), for the
    edge majorant.  Any edges give a valid bound; these make it tight: a bin of width Δ
    holding n inputs costs about n Δ, so Δ ∝ density^(-1/2) (from a histogram of the main
    group's positive inputs, up to 2¹⁵ of them per sample) spreads that evenly."""
    tf = _tf()
    batch = tf.shape(xs[0])[0]
    top = tf.reduce_max(tf.stack([tf.reduce_max(tf.reshape(x, [batch, -1]), axis=1) for x in xs]), axis=0)
    main = tf.reshape(xs[0], [batch, -1])
    # The density from every s-th input (s odd: across the channels, a power of two): the
    # histogram is a serial scatter, 13 ms for VGG16's block2 input of 3.2 M values.
    per_sample = xs[0].shape[1:]  # static even where the batch is not (reshape loses it)
    n = per_sample.num_elements() if per_sample.is_fully_defined() else tf.reduce_prod(tf.shape(xs[0])[1:])
    stride = (n + _HISTOGRAM_SAMPLE - 1) // _HISTOGRAM_SAMPLE
    main = main[:, :: stride + 1 - stride % 2]
    nb = _HISTOGRAM_BINS
    scale = tf.math.divide_no_nan(tf.constant(float(nb), tf.float64), top)[:, None]
    cell = tf.clip_by_value(tf.cast(main * scale, tf.int32), 0, nb - 1)
    # (B, nb) per row; the raw op takes the size as a constant, which XLA needs.
    density = tf.raw_ops.DenseBincount(input=cell, size=nb, weights=tf.cast(main > 0.0, tf.float64))
    root = tf.sqrt(density)
    cdf = tf.concat([tf.zeros([batch, 1], tf.float64), tf.cumsum(root, axis=1)], axis=1)
    total = cdf[:, -1:]
    cdf = tf.where(total > 0.0, cdf / tf.where(total > 0.0, total, 1.0),
                   tf.linspace(tf.constant(0.0, tf.float64), 1.0, nb + 1)[None, :])
    targets = tf.tile(tf.constant(np.arange(1, bins) / bins)[None, :], [batch, 1])
    i = tf.clip_by_value(tf.searchsorted(cdf, targets, side="left"), 1, nb)
    below, above = tf.gather(cdf, i - 1, batch_dims=1), tf.gather(cdf, i, batch_dims=1)
    frac = tf.clip_by_value(tf.math.divide_no_nan(targets - below, above - below), 0.0, 1.0)
    inner = (tf.cast(i - 1, tf.float64) + frac) * (top[:, None] / nb)
    inner = tf.minimum(tf.maximum(inner, 0.0), top[:, None])
    return tf.concat([tf.zeros([batch, 1], tf.float64), inner, top[:, None]], axis=1)


def _per_sample(c, like):
    """A per-sample scalar (B,) broadcast against a (B, ...) tensor."""
    tf = _tf()
    return tf.reshape(c, tf.concat([tf.shape(c), tf.ones([tf.rank(like) - 1], tf.int32)], axis=0))


def _edge_inputs(xs: tuple, diagonal: tuple, bins: int, groups: int):
    """The edges (:func:`_edges`, from all synapse groups' inputs) and the float32 inputs
    of the edge majorant's products of the convolved groups (``diagonal`` false), in one
    compiled pass (:func:`_shared`): (x − c_k)⁺ for the interior edges and the bin excess of
    every input, one tensor per excess group."""
    tf = _tf()
    edges = _edges(xs, bins)
    shifted, excess = [], []
    for x in (x for d, x in zip(diagonal, xs) if not d):
        c = [_per_sample(edges[:, k], x) for k in range(bins + 1)]
        shifted.append(tuple(tf.cast(tf.maximum(x - c[k], 0.0), tf.float32) for k in range(1, len(c) - 1)))
        excess.append(tuple(tf.cast(e, tf.float32) for e in _excess(x, c, groups)))
    return tuple(shifted), tuple(excess), edges


def _excess(x, c: list, groups: int) -> list:
    """:meth:`AlphaNeuron.bin_excess` of every input, bins from the edges ``c``, split by
    the input's bin k into ``groups`` tensors (group k mod ``groups``, zero elsewhere)."""
    tf = _tf()
    low, high, group = c[0], c[1], tf.zeros_like(x)
    for k in range(1, len(c) - 1):
        past = x >= c[k]
        low, high = tf.where(past, c[k], low), tf.where(past, c[k + 1], high)
        if groups > 1:
            group = tf.where(past, tf.constant(float(k % groups), x.dtype), group)
    excess = AlphaNeuron.bin_excess(x, low, high, maximum=tf.maximum)
    if groups == 1:
        return [excess]
    return [tf.where(group == float(m), excess, 0.0) for m in range(groups)]


def _certify(wx, p32, edge_terms, skips: tuple, consts: _Constants):
    """The element-wise part of :meth:`CompiledLayer._step`, fused by XLA into one pass over
    the layer (the float64 convolutions stay outside: XLA's are many times slower on the
    CPU); the layer's constants ``consts``, so that layers of the same shapes share it (:func:`_shared`).

    The convex majorant (with ``p32``): the bound with the best μ, without a division:
    with A₀ and A₁ the t_min end at μ = 0 and 1 (αS + J⁺x and αS + J x, J⁺x from the upper
    bound of W⁺x) and B₁ ≥ 0 the t_start end at μ = 1 ((W x − W⁺x − S ΣW⁻)/(1 − ΣW), from
    the lower bound), some μ ∈ [0, 1] gives max((1 − μ) A₀ + μ A₁, μ B₁) < ϑ  iff  ϑ > 0
    and (A₀ < ϑ, or A₁ < ϑ and (A₀ − ϑ) B₁ < ϑ (A₀ − A₁)).

    The edge majorant (with ``edge_terms``, :meth:`AlphaNeuron.bin_excess`): every mixed-
    sign float32 product P(c) is within 2 γ_{F+2} Σ_j |W_ij| (x_j − c)⁺ ≤ 2 γ_{F+2}
    (c_K − c) Σ_j |W_ij| of the exact one, the excess product (terms ≥ 0) within 2 γ_{F+2}
    of itself; plus the subnormal term as for W⁺x, and 10⁻⁹ ϑ for the float64 sums.
    """
    tf = _tf()
    p = tf.cast(p32, tf.float64) if p32 is not None else None
    for m, x in enumerate(skips):
        wx = wx + x * consts.skip_w[m]
        if p is not None:
            p = p + x * tf.cast(consts.skip_w_pos[m], tf.float64)
    z = wx + consts.bias
    spikes = AlphaNeuron.spike_time(consts.line, wx, consts.t_max, minimum=tf.minimum)
    deviating = deviates(spikes, consts.t_max - tf.maximum(z, 0.0), consts.t_min, consts.tol)
    x = consts.t_max - spikes
    th = consts.theta
    a1 = consts.alpha_S + wx * consts.inv_one_minus
    certified = consts.static
    convex = edge = None
    if p is not None:
        a0 = consts.alpha_S + (p * (1.0 + consts.rel) + consts.abs) * consts.inv_one_minus
        b1 = (wx - (p * (1.0 - consts.rel) - consts.abs) + consts.S_neg) * consts.inv_one_minus
        convex = AlphaNeuron.certified(a0, a1, b1, th)
        certified = certified | convex
    if edge_terms is not None:
        at_edges, q32, edges = edge_terms
        bins = len(at_edges) + 1
        c = [_per_sample(edges[:, k], wx) for k in range(bins + 1)]
        # The identity shortcuts' edges, broadcast against their inputs.
        c_skip = [[_per_sample(edges[:, k], xd) for k in range(bins + 1)] for xd in skips]
        top = c[bins]
        at = [a1]  # V at the edges; c_0 = 0: V(t_min), exact
        for k in range(1, bins):
            pk = tf.cast(at_edges[k - 1], tf.float64)
            for w, xd, cd in zip(consts.skip_w, skips, c_skip):
                pk = pk + tf.maximum(xd - cd[k], 0.0) * w
            err = consts.rel * (top - c[k]) * consts.abs_sum + consts.abs_edges
            at.append(AlphaNeuron.edge_potential(consts.alpha, consts.width, c[k], pk + err, consts.inv_one_minus))
        at.append(AlphaNeuron.edge_potential(consts.alpha, consts.width, top, 0.0, consts.inv_one_minus))
        # Bin k: its larger end plus the excess of its group (its own and other bins' ≥ 0).
        groups = len(q32)
        skip_excess = [_excess(xd, cd, groups) for xd, cd in zip(skips, c_skip)]
        bound = None
        for m in range(groups):
            q = tf.cast(q32[m], tf.float64) * (1.0 + consts.rel) + consts.abs_edges
            for w, e in zip(consts.skip_w_neg, skip_excess):
                q = q + e[m] * w
            ends = functools.reduce(tf.maximum, [tf.maximum(at[k], at[k + 1]) for k in range(m, bins, groups)])
            in_group = ends + q * consts.inv_one_minus
            bound = in_group if bound is None else tf.maximum(bound, in_group)
        edge = (th > 0.0) & (bound < th - 1e-9 * tf.maximum(tf.abs(th), 1.0))
        certified = certified | edge
    uncertified = tf.logical_not(certified)
    if convex is not None and edge is not None:
        alone = (convex & tf.logical_not(edge), edge & tf.logical_not(convex))
    else:
        alone = (tf.zeros_like(certified),) * 2
    # The counts of _step, reduced in the same pass.
    counted = (certified & (x > consts.tol), certified & deviating, certified & (x > consts.window), uncertified) + alone
    return x, _counts(counted), uncertified, z


#: Bits of one count in a packed word of :func:`_counts`: a row (the last axis) holds fewer
#: neurons than this allows (:class:`CompiledLayer` checks).
_COUNT_BITS = 21


def _counts(flags: tuple):
    """How many entries of each of the six boolean tensors ``flags`` (of one shape) are true,
    as int64.  Three flags share an int64 word, 21 bits each, and each word is summed along the
    last axis before the rest: no row holds 2²¹ neurons, so no field carries into the next.
    XLA fuses the element-wise pass into every reduction that reads it, so one reduction per
    flag recomputed the pass six times: two words took 1.6–1.9× less time than six int64
    reductions (ResNet50's conv2 layers at 224×224, batches of 16; :func:`_certify` with the
    counts took 2.7–3.7× as long as without them)."""
    tf = _tf()
    field = (1 << _COUNT_BITS) - 1
    counts = []
    for first in range(0, len(flags), 3):
        shared = flags[first : first + 3]
        word = functools.reduce(tf.bitwise.bitwise_or, [
            tf.bitwise.left_shift(tf.cast(f, tf.int64), _COUNT_BITS * k) for k, f in enumerate(shared)
        ])
        rows = tf.reduce_sum(word, axis=-1)
        counts += [tf.reduce_sum(tf.bitwise.bitwise_and(tf.bitwise.right_shift(rows, _COUNT_BITS * k), field))
                   for k in range(len(shared))]
    return tf.stack(counts)


def forget_if_edited(sl: SpikingLayer) -> None:
    """Drop the constants kept with a layer (:func:`closed_form`, :func:`compiled`) when its
    thresholds or α have changed since they were made, so that an edited network simulates as
    edited.  Called once per simulation run: a 128-bit XXH3 digest of both arrays, read in place
    (4 ms for VGG16's 13.6 million thresholds at 224×224, where BLAKE2b over a copy took 0.2 s:
    6 % of a two-image call)."""
    digest = xxhash.xxh3_128()
    for a in (sl.threshold, sl.alpha):
        a = np.ascontiguousarray(a)
        digest.update(str((a.shape, a.dtype.str)).encode())
        digest.update(a)
    key = digest.digest()
    cache = sl.__dict__
    if cache.get("_parameters") != key:
        cache.pop("_closed_form", None)
        cache.pop("_compiled", None)
        cache["_parameters"] = key


def closed_form(sl: SpikingLayer) -> tuple:
    """(c, g) of the layer's closed form (:meth:`AlphaNeuron.closed_form`), computed once and
    kept with the layer (both paths use the same constants, so they agree to the bit), per
    channel where they are the same at every position (:func:`per_channel`)."""
    cache = sl.__dict__
    if "_closed_form" not in cache:
        out = sl.layer.output_shape
        line = AlphaNeuron.closed_form(sl.threshold, sl.alpha, sl.t_start, sl.t_min, sl.weight_sums[0])
        cache["_closed_form"] = tuple(per_channel(v, out) for v in line)
    return cache["_closed_form"]


def per_channel(a, shape: tuple) -> np.ndarray:
    """``a`` broadcast to a layer's output ``shape``, or only its last axis (one value per
    channel, which broadcasts the same way) when it is the same at every position."""
    a = np.broadcast_to(np.asarray(a), shape)
    if len(shape) > 1:
        rows = a.reshape(-1, shape[-1])
        if np.array_equal(rows, np.broadcast_to(rows[:1], rows.shape)):
            return rows[0].copy()
    return np.ascontiguousarray(a)


def compiled(sl: SpikingLayer):
    """The layer's :class:`CompiledLayer` (hidden) or :class:`CompiledReadout`, built on first
    use and kept with the layer."""
    cache = sl.__dict__
    if "_compiled" not in cache:
        cache["_compiled"] = CompiledLayer(sl) if sl.hidden else CompiledReadout(sl)
    return cache["_compiled"]
