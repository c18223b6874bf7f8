"""Phase 1, folding (DESIGN §2, steps 2–4): the input range, batch normalisation before and
after the ReLU (through max pooling with per-channel sign, through flatten), average pooling
and the position-dependent biases that zero padding leaves behind (a bias *map*), folded into
the synapse groups of :class:`exactsnn.preprocessed.PreprocessedNetwork`.  The network
function is unchanged."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from . import ir, ops
from .preprocessed import PreprocessedNetwork
from .synapses import ConvSynapses, DenseSynapses, Pool, PooledDenseSynapses, Synapses


class FoldingError(ValueError):
    """The layer sequence cannot be folded into an exact ReLU chain."""


def _sign(s: np.ndarray) -> np.ndarray:
    return np.where(s < 0, -1.0, 1.0)


def _synapses(name: str, node, in_shape: tuple) -> Synapses:
    if isinstance(node, ir.Dense):
        if int(np.prod(in_shape)) != node.weight.shape[0]:
            raise FoldingError(f"layer {name!r}: expects {node.weight.shape[0]} inputs, gets shape {in_shape}")
        return DenseSynapses(name, node.weight.copy(), node.bias.copy(), in_shape)
    if len(in_shape) != 3:
        raise FoldingError(f"layer {name!r}: Conv2D needs an (H, W, C) input, gets {in_shape}")
    h, w, _ = in_shape
    kh, kw = node.kernel.shape[:2]
    if node.padding == "same":
        pt, pb = ops.same_padding(h, kh, node.strides[0], node.dilation[0])
        pl, pr = ops.same_padding(w, kw, node.strides[1], node.dilation[1])
    else:
        pt = pb = pl = pr = 0
    out_h = ops.conv_output_size(h + pt + pb, kh, node.strides[0], node.dilation[0])
    out_w = ops.conv_output_size(w + pl + pr, kw, node.strides[1], node.dilation[1])
    if out_h < 1 or out_w < 1:
        raise FoldingError(f"layer {name!r}: kernel {kh}x{kw} does not fit its {h}x{w} input")
    bias_map = np.broadcast_to(node.bias, (out_h, out_w, node.bias.size)).copy()
    return ConvSynapses(
        name, node.kernel.copy(), bias_map, in_shape, strides=node.strides,
        dilation=node.dilation, pads=(pt, pb, pl, pr), used=(h, w),
    )


def fold_channel_affine(layer: Synapses, scale: np.ndarray, shift: np.ndarray) -> Synapses:
    """Fold y = scale · x + shift (per input channel, or per feature of a flat input) into ``layer``.

    W' = W · diag(scale);  b' = b + W · shift, where for a convolution W · shift is the
    convolution of the constant image ``shift`` *with zero padding*: near the borders fewer
    taps see the constant, so b' is a bias map (DESIGN §2, steps 3–4).
    """
    scale = np.broadcast_to(np.asarray(scale, np.float64), layer.input_shape[-1:])
    shift = np.broadcast_to(np.asarray(shift, np.float64), layer.input_shape[-1:])
    return replace(layer, weight=layer.input_scaled(scale), bias=layer.bias + layer.on_constant(shift))


def fold_output_affine(layer: Synapses, scale: np.ndarray, shift: np.ndarray) -> Synapses:
    """Fold y = scale · z + shift (per output channel) into z = W x + b: W' = W·scale, b' = b·scale + shift."""
    return replace(layer, weight=layer.weight * scale, bias=layer.bias * scale + shift)


def fold_flatten(layer: Synapses, shape: tuple) -> Synapses:
    """A dense layer after Flatten reads the unflattened tensor (row-major, channels last)."""
    return replace(layer, input_shape=shape)


def fold_global_avg_pool(layer: DenseSynapses, shape: tuple) -> PooledDenseSynapses:
    """W'[h, w, c, o] = W[c, o] / (H·W): global average pooling is linear; kept factored
    (:class:`PooledDenseSynapses` stores W and the input shape)."""
    return layer.as_kind(PooledDenseSynapses, input_shape=shape)


def fold_zero_padding(layer: Synapses, pads: tuple, shape: tuple, name: str) -> Synapses:
    """Explicit zero padding (t, b, l, r) before a layer is part of that layer's own padding.

    A convolution adds it to its pads; a dense layer drops the weights of the padded
    positions, which only ever multiply zeros.
    """
    t, b, l, r = pads
    h, w, c = shape
    layer = layer.explicit()  # a pooled layer's weights per padded position
    if isinstance(layer, DenseSynapses):
        weight = layer.weight.reshape(h + t + b, w + l + r, c, layer.channels)[t : t + h, l : l + w]
        return replace(layer, weight=weight.reshape(-1, layer.channels).copy(), input_shape=shape)
    if layer.used != (h + t + b, w + l + r):
        raise FoldingError(f"layer {name!r}: zero padding before a folded average pool is not supported")
    pt, pb, pl, pr = layer.pads
    return replace(layer, input_shape=shape, pads=(pt + t, pb + b, pl + l, pr + r), used=(h, w))


def fold_avg_pool_into_dense(layer: DenseSynapses, node: ir.AvgPool2D, shape: tuple) -> DenseSynapses:
    """W' = Pᵀ W for the (linear) average-pooling map P, obtained as its exact adjoint."""
    import tensorflow as tf

    layer = layer.explicit()
    n_out = layer.channels
    x = tf.zeros((n_out,) + shape, tf.float64)
    pooled = layer.input_shape
    cotangent = tf.reshape(tf.transpose(tf.constant(layer.weight)), (n_out,) + pooled)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.nn.avg_pool2d(x, node.size, node.strides, node.padding.upper())
        total = tf.reduce_sum(y * cotangent)
    weight = tape.gradient(total, x).numpy().reshape(n_out, -1).T
    return replace(layer, weight=weight, input_shape=shape)


def fold_avg_pool_into_conv(layer: ConvSynapses, node: ir.AvgPool2D, shape: tuple, name: str) -> ConvSynapses:
    """Compose a ``valid`` average pool (size p, stride s) with the following convolution.

    The result is one convolution on the pool's input with kernel size (k − 1)·d·s + p,
    stride s_conv·s and K'[u] = Σ_{a·d·s + m = u} K[a] / p (per axis).  The input is cropped
    to the rows the pool reads; the convolution's zero padding scales by s, which equals
    padding the pooled map with zeros only when the pool windows tile the input (s = p).
    """
    if node.padding != "valid":
        raise FoldingError(f"layer {name!r}: average pooling with 'same' padding cannot be folded into a convolution")
    if any(layer.pads) and tuple(node.size) != tuple(node.strides):
        raise FoldingError(
            f"layer {name!r}: overlapping average pooling followed by a zero-padded convolution "
            "cannot be folded into one convolution"
        )
    kh, kw, cin, cout = layer.weight.shape
    (ph, pw), (sh, sw), (dh, dw) = node.size, node.strides, layer.dilation
    new = np.zeros(((kh - 1) * dh * sh + ph, (kw - 1) * dw * sw + pw, cin, cout))
    for a in range(kh):
        for b in range(kw):
            r, c = a * dh * sh, b * dw * sw
            new[r : r + ph, c : c + pw] += layer.weight[a, b] / (ph * pw)
    pt, pb, pl, pr = layer.pads
    used = ((layer.used[0] - 1) * sh + ph, (layer.used[1] - 1) * sw + pw)
    return replace(
        layer, weight=new, input_shape=shape, strides=(layer.strides[0] * sh, layer.strides[1] * sw),
        dilation=(1, 1), pads=(pt * sh, pb * sh, pl * sw, pr * sw), used=used,
    )


@dataclass
class ChannelAffine:
    """A step before a layer: y = scale · x + shift per channel (the input range, a batch
    normalisation after a ReLU); folded by :func:`fold_channel_affine`."""

    scale: np.ndarray  # (C,)
    shift: np.ndarray  # (C,)

    def fold(self, layer: Synapses) -> Synapses:
        return fold_channel_affine(layer, self.scale, self.shift)


@dataclass
class FlattenStep:
    """A step before a layer: row-major flattening of an input of ``shape``."""

    shape: tuple

    def fold(self, layer: Synapses) -> Synapses:
        return fold_flatten(layer, self.shape)


@dataclass
class GlobalAvgPoolStep:
    """A step before a layer: global average pooling of an input of ``shape``."""

    shape: tuple

    def fold(self, layer: Synapses) -> Synapses:
        if type(layer) is not DenseSynapses:
            raise FoldingError(f"layer {layer.name!r}: global average pooling must be followed by Dense")
        return fold_global_avg_pool(layer, self.shape)


@dataclass
class ZeroPaddingStep:
    """A step before a layer: the zero padding ``pads`` (top, bottom, left, right) of the
    node ``name`` on an input of ``shape``."""

    pads: tuple
    shape: tuple
    name: str

    def fold(self, layer: Synapses) -> Synapses:
        return fold_zero_padding(layer, self.pads, self.shape, self.name)


@dataclass
class AvgPoolStep:
    """A step before a layer: the average pooling ``node`` (named ``name``) of an input of ``shape``."""

    node: ir.AvgPool2D
    shape: tuple
    name: str

    def fold(self, layer: Synapses) -> Synapses:
        if isinstance(layer, DenseSynapses):
            return fold_avg_pool_into_dense(layer, self.node, self.shape)
        return fold_avg_pool_into_conv(layer, self.node, self.shape, self.name)


def _fold_steps(layer: Synapses, steps: list) -> Synapses:
    """Fold the steps met before ``layer`` into it, the last one first."""
    for step in reversed(steps):
        layer = step.fold(layer)
    return layer


@dataclass
class _Branch:
    """A linear function of one layer's (pooled) output, while the graph is being folded.

    Before a Dense/Conv2D is met the branch is *raw*: ``pre`` lists the linear steps applied
    to the source since its pools (the first a :class:`ChannelAffine`).  After it, ``layer``
    holds the synaptic map with everything before it folded in, and ``pools`` the max pools
    met between the map and the ReLU.
    """

    source: int
    shape: tuple
    pre: list
    taken: int = 0  # how many of the source's pools this branch went through
    layer: Synapses | None = None
    pools: list = field(default_factory=list)

    @property
    def plain(self) -> bool:
        """Raw, with nothing but the leading per-channel affine map after the source's pools."""
        return self.layer is None and len(self.pre) == 1


def _identity_layer(name: str, shape: tuple, source: int) -> Synapses:
    """The synaptic map of a raw branch in a sum (an identity shortcut): W = I."""
    c = shape[-1]
    if len(shape) == 3:
        return ConvSynapses(name, np.eye(c).reshape(1, 1, c, c), np.zeros(shape), shape, source=source,
                            used=shape[:2])
    n = int(np.prod(shape))
    return DenseSynapses(name, np.eye(n), np.zeros(n), shape, source=source)


class _Folder:
    """Walks the graph in topological order and builds the preprocessed layers (DESIGN §2, §3)."""

    def __init__(self, graph: ir.Graph, input_range):
        p, q = (float(v) for v in input_range)
        if not q > p:
            raise ValueError(f"input range [{p}, {q}] must have p < q")
        self.graph = graph
        self.range = (p, q)
        self.layers: list[Synapses] = []
        self.pools: dict[int, list[Pool]] = {-1: []}
        self.uses: list[tuple[str, int, int]] = []  # (layer name, source, pools taken)

    def run(self) -> PreprocessedNetwork:
        graph = self.graph
        values: dict[str, list[_Branch]] = {}
        source = graph.nodes[graph.source]
        if not isinstance(source, ir.Input):
            raise FoldingError("the graph must start with an Input node")
        p, q = self.range
        c = source.shape[-1]
        values[graph.source] = [_Branch(-1, source.shape, [ChannelAffine(np.full(c, q - p), np.full(c, p))])]
        for name in graph.order()[1:]:
            node = graph.nodes[name]
            inputs = [values[i] for i in graph.inputs(name)]
            if isinstance(node, ir.Add):
                shapes = {b.shape for v in inputs for b in v}
                if len(shapes) != 1:
                    raise FoldingError(f"layer {name!r}: cannot add tensors of shapes {sorted(shapes)}")
                values[name] = [b for v in inputs for b in v]
            else:
                values[name] = self.step(name, node, inputs[0])
        out = values[graph.output]
        if any(b.layer is None for b in out) or any(b.pools for b in out):
            if isinstance(graph.nodes[graph.output], ir.ReLU):
                raise FoldingError(f"layer {graph.output!r}: the output layer must not have a ReLU")
            raise FoldingError(
                f"the output {graph.output!r} must be a Dense or Conv2D layer (with batch normalisation) "
                "read out without ReLU or pooling"
            )
        self.make_layer(graph.output, out, relu=False)
        for layer_name, src, taken in self.uses:
            if taken != len(self.pools[src]):
                raise FoldingError(
                    f"layer {layer_name!r} reads the output of "
                    f"{'the input' if src < 0 else repr(self.layers[src].name)} before its max pooling, "
                    "another layer after it: a spiking layer has one pooled output"
                )
        layers = [replace(l, pools=self.pools.get(k, [])) for k, l in enumerate(self.layers)]
        return PreprocessedNetwork(source.shape, self.range, layers, self.pools[-1])

    def step(self, name: str, node, value: list[_Branch]) -> list[_Branch]:
        if isinstance(node, ir.ReLU):
            if all(b.layer is None for b in value) and len(value) == 1:
                raise FoldingError(f"layer {name!r}: a ReLU must follow a Dense or Conv2D layer")
            k = self.make_layer(name, value, relu=True)
            layer = self.layers[k]
            shape = layer.output_shape
            for pool in self.pools[k]:
                shape = pool.output_shape(shape)
            ones, zeros = np.ones(layer.channels), np.zeros(layer.channels)
            return [_Branch(k, shape, [ChannelAffine(ones, zeros)], taken=len(self.pools[k]))]
        if isinstance(node, ir.BatchNorm):
            return self.batch_norm(name, node, value)
        if isinstance(node, (ir.Dense, ir.Conv2D)):
            if len(value) != 1 or value[0].layer is not None:
                what = f"layer {value[0].layer.name!r}" if len(value) == 1 else "a sum of layers"
                raise FoldingError(
                    f"{what} is followed by {name!r} without a ReLU: a hidden layer without ReLU "
                    "cannot be mapped exactly (negative values cannot be coded by one spike time in its window)"
                )
            b = value[0]
            layer = replace(_fold_steps(_synapses(name, node, b.shape), b.pre), source=b.source)
            return [_Branch(b.source, layer.output_shape, b.pre, b.taken, layer)]
        if isinstance(node, ir.MaxPool2D):
            return [self.max_pool(name, node, value)]
        if isinstance(node, (ir.AvgPool2D, ir.GlobalAvgPool2D, ir.Flatten, ir.ZeroPadding2D)):
            if name == self.graph.output and isinstance(node, ir.Flatten):
                return value  # flattening the logits changes nothing
            out = []
            for b in value:
                if b.layer is not None:
                    raise FoldingError(
                        f"layer {name!r} ({type(node).__name__}) between {b.layer.name!r} and its ReLU "
                        "cannot be mapped exactly"
                    )
                out.append(self.linear_step(name, node, b))
            return out
        raise FoldingError(f"layer {name!r}: unexpected node {type(node).__name__}")

    def batch_norm(self, name, node, value):
        out = []
        for i, b in enumerate(value):
            if node.scale.size != b.shape[-1]:
                raise FoldingError(f"layer {name!r}: {node.scale.size} channels, the tensor has {b.shape[-1]}")
            shift = node.shift if i == 0 else np.zeros_like(node.shift)  # a sum gets the shift once
            if b.layer is not None:
                pools = [replace(pl, sign=pl.sign * _sign(node.scale)) for pl in b.pools]
                out.append(replace(b, layer=fold_output_affine(b.layer, node.scale, shift), pools=pools))
            elif b.plain:
                s0, c0 = b.pre[0].scale, b.pre[0].shift
                out.append(replace(b, pre=[ChannelAffine(node.scale * s0, node.scale * c0 + shift)]))
            else:
                out.append(replace(b, pre=b.pre + [ChannelAffine(node.scale, shift)]))
        return out

    def max_pool(self, name, node, value) -> _Branch:
        if len(value) != 1:
            raise FoldingError(f"layer {name!r}: max pooling of a sum before its ReLU cannot be mapped exactly")
        b = value[0]
        if len(b.shape) != 3:
            raise FoldingError(f"layer {name!r}: max pooling needs an (H, W, C) input, gets {b.shape}")
        if b.layer is not None:
            if not isinstance(b.layer, ConvSynapses):
                raise FoldingError(f"layer {name!r}: max pooling needs a convolution before it")
            pool = Pool(node.size, node.strides, node.padding, np.ones(b.shape[-1]))
            return replace(b, pools=b.pools + [pool], shape=pool.output_shape(b.shape))
        pads, shape, pre = (0, 0, 0, 0), b.shape, b.pre
        if len(pre) == 2 and isinstance(pre[1], ZeroPaddingStep) and np.all(pre[0].shift == 0):
            # zero padding right before the pool: value 0, a spike at t_max
            pads, shape, pre = pre[1].pads, pre[1].shape, pre[:1]
        elif len(pre) != 1:
            raise FoldingError(
                f"layer {name!r}: max pooling after average pooling, flatten or padding has no exact "
                "single-spike counterpart"
            )
        pool = Pool(node.size, node.strides, node.padding, _sign(pre[0].scale * np.ones(shape[-1])), pads)
        pools = self.pools[b.source]
        if b.taken < len(pools):
            if not pools[b.taken].same_as(pool):
                raise FoldingError(f"layer {name!r}: the output it pools is also pooled differently elsewhere")
        else:
            pools.append(pool)
        return replace(b, pre=pre, taken=b.taken + 1, shape=pool.output_shape(shape))

    def linear_step(self, name, node, b: _Branch) -> _Branch:
        shape = b.shape
        if isinstance(node, ir.Flatten):
            return replace(b, pre=b.pre + [FlattenStep(shape)], shape=(int(np.prod(shape)),))
        if len(shape) != 3:
            raise FoldingError(f"layer {name!r}: {type(node).__name__} needs an (H, W, C) input, gets {shape}")
        if isinstance(node, ir.AvgPool2D):
            new = ops.pooled_shape(shape, node.size, node.strides, node.padding)
            step = AvgPoolStep(node, shape, name)
        elif isinstance(node, ir.GlobalAvgPool2D):
            new, step = (shape[-1],), GlobalAvgPoolStep(shape)
        else:
            t, bo, l, r = node.pads
            new, step = (shape[0] + t + bo, shape[1] + l + r, shape[2]), ZeroPaddingStep(node.pads, shape, name)
        if any(v <= 0 for v in new):
            raise FoldingError(f"layer {name!r}: output shape {new} is empty")
        return replace(b, pre=b.pre + [step], shape=new)

    def make_layer(self, name: str, value: list[_Branch], relu: bool) -> int:
        """Turn a sum of branches into the next layer's synapse groups."""
        k = len(self.layers)
        groups = []
        for b in value:
            layer = b.layer
            if layer is None:
                layer = replace(_fold_steps(_identity_layer(f"{name}/identity", b.shape, b.source), b.pre),
                                source=b.source)
            groups.append(layer)
            self.uses.append((name, b.source, b.taken))
        main = [g for g in groups if g.source == k - 1]
        if not main:
            raise FoldingError(
                f"layer {name!r} does not read the layer before it: only chains with residual "
                "(skip) connections are supported"
            )
        first = main[0]
        skips = [replace(g, bias=np.zeros_like(g.bias)) for g in groups if g is not first]
        bias = sum(g.bias for g in groups)
        pooled = [b for b in value if b.pools]
        if len(pooled) > 1 or (pooled and len(value) > 1):
            raise FoldingError(f"layer {name!r}: max pooling inside a residual sum cannot be mapped exactly")
        self.pools[k] = list(pooled[0].pools) if pooled else []
        self.layers.append(replace(first, name=first.name if len(groups) == 1 else name, bias=bias,
                                   skips=skips, relu=relu))
        return k


def fold_network(graph: ir.Graph, input_range=(0.0, 1.0)) -> PreprocessedNetwork:
    """Fold the input range, batch normalisation, average pooling and padding constants.

    Input range: x = p + (q − p)·u, so the first layer sees u ∈ [0, 1] with
    W' = (q − p) W and b' = b + p Σ W (a bias map for padded convolutions).
    BN before the ReLU: W' = s W, b' = s b + c per output channel; a max pool between the
    layer and the ReLU moves behind the ReLU with the sign of the scales after it.
    BN after the ReLU: folded into the next layer per input channel, through max pooling
    (pool sign = sign of s) and flatten.  A residual ``Add`` makes the merge neurons read
    several layers: one synapse group per branch (identity shortcuts get W = I).  The
    result computes the same function.
    """
    return _Folder(graph, input_range).run()
