"""Phase 1: turn an imported network into a scaled ReLU chain ready for the spiking mapping.

Every function here takes one plain object and returns the next (DESIGN §2, Phase 1):

* :func:`fold_network` — input range [p, q], batch normalisation before and after the ReLU
  (through max pooling with per-channel sign, through flatten), average pooling and the
  position-dependent biases that zero padding leaves behind (a bias *map*);
* :func:`scale_weights` — per-neuron positive factors so that Σ_j W_ij ∈ [lower, upper],
  undone on the next layer;
* :func:`max_activations` — X_n of every hidden layer in one forward pass.

The network function is unchanged by all three; :func:`preprocess` chains them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import tensorflow as tf

from . import ir, ops
from .serialize import register


@register
@dataclass
class Pool:
    """Sign-aware max pooling of a layer's outputs.

    Channel c takes the maximum where sign[c] > 0 and the minimum where sign[c] < 0 (a
    negative batch-norm scale folded through the pool).  On spike times t = t_max − x this
    is the earliest spike, respectively the latest.
    """

    size: tuple
    strides: tuple
    padding: str
    sign: np.ndarray  # (C,) of ±1

    def __post_init__(self):
        self.size, self.strides = tuple(self.size), tuple(self.strides)
        self.sign = np.where(np.asarray(self.sign, np.float64) < 0, -1.0, 1.0)

    def on_values(self, x):
        return ops.signed_max_pool(x, self.size, self.strides, self.padding, self.sign)

    def on_times(self, t):
        return -ops.signed_max_pool(-tf.convert_to_tensor(t, tf.float64), self.size, self.strides, self.padding, self.sign)

    def output_shape(self, shape):
        return ops.pooled_shape(shape, self.size, self.strides, self.padding)


@register
@dataclass
class AffineLayer:
    """One parameterised layer z = W x + b of the preprocessed chain.

    Dense: ``weight`` (n_in, n_out) acts on the flattened input, ``bias`` (n_out,).
    Conv: ``weight`` (kh, kw, c_in, c_out); the input is cropped to ``used`` rows/columns
    and padded by ``pads`` = (top, bottom, left, right), then convolved ``valid``;
    ``bias`` is a map (H_out, W_out, c_out) because folding constants through zero padding
    makes it position dependent (DESIGN §2, step 4).
    ``relu`` marks hidden layers; ``pools`` act on their outputs, after the ReLU.
    """

    name: str
    kind: str  # "dense" | "conv"
    weight: np.ndarray
    bias: np.ndarray
    input_shape: tuple
    relu: bool = True
    pools: list = field(default_factory=list)
    strides: tuple = (1, 1)
    dilation: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)
    used: tuple = (0, 0)

    def __post_init__(self):
        self.weight = np.asarray(self.weight, np.float64)
        self.bias = np.asarray(self.bias, np.float64)
        self.input_shape = tuple(int(s) for s in self.input_shape)
        for name in ("strides", "dilation", "pads", "used"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.kind == "dense":
            if self.weight.shape[0] != int(np.prod(self.input_shape)):
                raise ValueError(f"{self.name}: weight {self.weight.shape} does not fit input {self.input_shape}")
        elif self.kind == "conv":
            if len(self.input_shape) != 3 or self.weight.shape[2] != self.input_shape[2]:
                raise ValueError(f"{self.name}: kernel {self.weight.shape} does not fit input {self.input_shape}")
        else:
            raise ValueError(f"{self.name}: unknown layer kind {self.kind!r}")
        if self.bias.shape != self.output_shape:
            raise ValueError(f"{self.name}: bias {self.bias.shape} is not of output shape {self.output_shape}")

    @property
    def channels(self) -> int:
        return self.weight.shape[-1]

    @property
    def output_shape(self) -> tuple:
        if self.kind == "dense":
            return (self.weight.shape[1],)
        kh, kw = self.weight.shape[:2]
        h = self.used[0] + self.pads[0] + self.pads[1]
        w = self.used[1] + self.pads[2] + self.pads[3]
        return (
            ops.conv_output_size(h, kh, self.strides[0], self.dilation[0]),
            ops.conv_output_size(w, kw, self.strides[1], self.dilation[1]),
            self.channels,
        )

    @property
    def pooled_shape(self) -> tuple:
        shape = self.output_shape
        for pool in self.pools:
            shape = pool.output_shape(shape)
        return shape

    @property
    def weight_sum(self) -> np.ndarray:
        """Σ_j W_ij over the whole receptive field (padded taps included), per output channel."""
        return self.weight.reshape(-1, self.channels).sum(axis=0)

    def padded(self, x, pad_value: float):
        return ops.pad_input(x, self.pads, self.used, pad_value)

    def linear(self, x, weight=None, pad_value: float = 0.0):
        """Σ_j W_ij x_j (no bias); padded positions take ``pad_value``."""
        weight = self.weight if weight is None else weight
        if self.kind == "dense":
            x = np.asarray(x, np.float64).reshape(len(x), -1)
            return x @ weight
        return ops.conv2d(self.padded(x, pad_value), weight, self.strides, self.dilation).numpy()

    def apply(self, x):
        """z = W x + b with zero padding, in float64."""
        return self.linear(x) + self.bias

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one forward pass (padded taps included)."""
        per_output = int(np.prod(self.weight.shape[:-1]))
        return per_output * int(np.prod(self.output_shape))

    @property
    def synapses(self) -> int:
        """Synapses from real (not padded) inputs: Σ over output neurons of their in-bounds taps."""
        if self.kind == "dense":
            return int(self.weight.size)
        kh, kw, cin, cout = self.weight.shape
        ones = np.ones((1,) + self.input_shape[:2] + (1,))
        taps = ops.conv2d(self.padded(ones, 0.0), np.ones((kh, kw, 1, 1)), self.strides, self.dilation)
        return int(round(float(np.sum(taps)))) * cin * cout


@register
@dataclass
class PreprocessedNetwork:
    """The scaled ReLU network of Phase 1.

    Its inputs are the raw inputs mapped to [0, 1] with ``input_range`` = (p, q);
    ``input_pools`` act on them before the first layer.  ``X`` holds X_n, the largest
    ReLU output of each hidden layer on the training sample.
    """

    input_shape: tuple
    input_range: tuple
    layers: list
    input_pools: list = field(default_factory=list)
    X: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lower: float = -10.0
    upper: float = 0.99

    def __post_init__(self):
        self.input_shape = tuple(int(s) for s in self.input_shape)
        self.input_range = tuple(float(v) for v in self.input_range)
        self.X = np.asarray(self.X, np.float64)

    @property
    def hidden(self) -> list:
        return [l for l in self.layers if l.relu]

    def normalise(self, x) -> np.ndarray:
        """Raw inputs to the unit interval the SNN codes: u = (x − p) / (q − p)."""
        p, q = self.input_range
        x = np.asarray(x, np.float64)
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"inputs have shape {x.shape[1:]}, the network expects {self.input_shape}")
        return (x - p) / (q - p)

    def forward(self, x, return_hidden: bool = False, batch_size: int = 512):
        """Float64 logits of the scaled ReLU network; optionally every hidden layer's ReLU output."""
        logits, hidden = [], []
        for start in range(0, len(x), batch_size):
            h = self.normalise(x[start : start + batch_size])
            for pool in self.input_pools:
                h = pool.on_values(h)
            acts = []
            for layer in self.layers:
                h = layer.apply(h)
                if layer.relu:
                    h = np.maximum(h, 0.0)
                    acts.append(h)
                    for pool in layer.pools:
                        h = pool.on_values(h)
                    h = np.asarray(h)
            logits.append(h)
            hidden.append(acts)
        logits = np.concatenate(logits) if logits else np.zeros((0,))
        if not return_hidden:
            return logits
        return logits, [np.concatenate([a[n] for a in hidden]) for n in range(len(self.hidden))]

    def predict(self, x) -> np.ndarray:
        return np.argmax(self.forward(x), axis=1)

    def save(self, path) -> None:
        from .serialize import save

        save(self, path)


class FoldingError(ValueError):
    """The layer sequence cannot be folded into an exact ReLU chain."""


def _sign(s: np.ndarray) -> np.ndarray:
    return np.where(s < 0, -1.0, 1.0)


def _affine_layer(name: str, node, in_shape: tuple) -> AffineLayer:
    if isinstance(node, ir.Dense):
        if int(np.prod(in_shape)) != node.weight.shape[0]:
            raise FoldingError(f"layer {name!r}: expects {node.weight.shape[0]} inputs, gets shape {in_shape}")
        return AffineLayer(name, "dense", node.weight.copy(), node.bias.copy(), in_shape)
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
    return AffineLayer(
        name, "conv", node.kernel.copy(), bias_map, in_shape, strides=node.strides,
        dilation=node.dilation, pads=(pt, pb, pl, pr), used=(h, w),
    )


def fold_channel_affine(layer: AffineLayer, scale: np.ndarray, shift: np.ndarray) -> AffineLayer:
    """Fold y = scale · x + shift (per input channel, or per feature of a flat input) into ``layer``.

    W' = W · diag(scale);  b' = b + W · shift, where for a convolution W · shift is the
    convolution of the constant image ``shift`` *with zero padding*: near the borders fewer
    taps see the constant, so b' is a bias map (DESIGN §2, steps 3–4).
    """
    scale = np.broadcast_to(np.asarray(scale, np.float64), layer.input_shape[-1:])
    shift = np.broadcast_to(np.asarray(shift, np.float64), layer.input_shape[-1:])
    if layer.kind == "dense":
        s = np.broadcast_to(scale, layer.input_shape).ravel()
        c = np.broadcast_to(shift, layer.input_shape).ravel()
        return replace(layer, weight=layer.weight * s[:, None], bias=layer.bias + c @ layer.weight)
    const = np.broadcast_to(shift, (1,) + layer.input_shape)
    bias = layer.bias + layer.linear(const)[0]
    return replace(layer, weight=layer.weight * scale[None, None, :, None], bias=bias)


def fold_output_affine(layer: AffineLayer, scale: np.ndarray, shift: np.ndarray) -> AffineLayer:
    """Fold y = scale · z + shift (per output channel) into z = W x + b: W' = W·scale, b' = b·scale + shift."""
    return replace(layer, weight=layer.weight * scale, bias=layer.bias * scale + shift)


def fold_flatten(layer: AffineLayer, shape: tuple) -> AffineLayer:
    """A dense layer after Flatten reads the unflattened tensor (row-major, channels last)."""
    return replace(layer, input_shape=shape)


def fold_global_avg_pool(layer: AffineLayer, shape: tuple) -> AffineLayer:
    """W'[h, w, c, o] = W[c, o] / (H·W): global average pooling is linear."""
    h, w, c = shape
    weight = np.broadcast_to(layer.weight[None, None] / (h * w), (h, w, c, layer.channels))
    return replace(layer, weight=weight.reshape(-1, layer.channels).copy(), input_shape=shape)


def fold_zero_padding(layer: AffineLayer, pads: tuple, shape: tuple, name: str) -> AffineLayer:
    """Explicit zero padding (t, b, l, r) before a layer is part of that layer's own padding.

    A convolution adds it to its pads; a dense layer drops the weights of the padded
    positions, which only ever multiply zeros.
    """
    t, b, l, r = pads
    h, w, c = shape
    if layer.kind == "dense":
        weight = layer.weight.reshape(h + t + b, w + l + r, c, layer.channels)[t : t + h, l : l + w]
        return replace(layer, weight=weight.reshape(-1, layer.channels).copy(), input_shape=shape)
    if layer.used != (h + t + b, w + l + r):
        raise FoldingError(f"layer {name!r}: zero padding before a folded average pool is not supported")
    pt, pb, pl, pr = layer.pads
    return replace(layer, input_shape=shape, pads=(pt + t, pb + b, pl + l, pr + r), used=(h, w))


def fold_avg_pool_into_dense(layer: AffineLayer, node: ir.AvgPool2D, shape: tuple) -> AffineLayer:
    """W' = Pᵀ W for the (linear) average-pooling map P, obtained as its exact adjoint."""
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


def fold_avg_pool_into_conv(layer: AffineLayer, node: ir.AvgPool2D, shape: tuple, name: str) -> AffineLayer:
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


def _parse_after_relu(graph: ir.Graph, names: list, i: int, shape: tuple, scale, shift):
    """Collect what follows a ReLU (or the input) up to the next Dense/Conv2D.

    Max pools come first and commute with the pending per-channel affine map (with a sign);
    everything after the first linear reshaping (average pool, flatten) is folded into the
    next layer.  Returns (pools, fold steps, shape, index of the next node).
    """
    pools, steps = [], [("affine", scale, shift)]
    linear_seen = None
    while i < len(names):
        name, node = names[i], graph.nodes[names[i]]
        if isinstance(node, (ir.Dense, ir.Conv2D)):
            break
        if isinstance(node, ir.BatchNorm):
            if node.scale.size != shape[-1]:
                raise FoldingError(f"layer {name!r}: {node.scale.size} channels, the tensor has {shape[-1]}")
            if linear_seen is None:
                _, s, c = steps[0]
                steps[0] = ("affine", node.scale * s, node.scale * c + node.shift)
            else:
                steps.append(("affine", node.scale, node.shift))
        elif isinstance(node, ir.MaxPool2D):
            if linear_seen is not None:
                raise FoldingError(
                    f"layer {name!r}: max pooling after {linear_seen!r} (average pooling or flatten) "
                    "has no exact single-spike counterpart"
                )
            if len(shape) != 3:
                raise FoldingError(f"layer {name!r}: max pooling needs an (H, W, C) input, gets {shape}")
            pool = Pool(node.size, node.strides, node.padding, _sign(steps[0][1] * np.ones(shape[-1])))
            pools.append(pool)
            shape = pool.output_shape(shape)
        elif isinstance(node, ir.AvgPool2D):
            if len(shape) != 3:
                raise FoldingError(f"layer {name!r}: average pooling needs an (H, W, C) input, gets {shape}")
            steps.append(("avg", node, shape, name))
            shape = ops.pooled_shape(shape, node.size, node.strides, node.padding)
            linear_seen = name
        elif isinstance(node, ir.GlobalAvgPool2D):
            if len(shape) != 3:
                raise FoldingError(f"layer {name!r}: global average pooling needs an (H, W, C) input")
            steps.append(("gap", shape))
            shape = (shape[-1],)
            linear_seen = name
        elif isinstance(node, ir.ZeroPadding2D):
            if len(shape) != 3:
                raise FoldingError(f"layer {name!r}: zero padding needs an (H, W, C) input, gets {shape}")
            steps.append(("zeropad", node.pads, shape, name))
            t, b, l, r = node.pads
            shape = (shape[0] + t + b, shape[1] + l + r, shape[2])
            linear_seen = name
        elif isinstance(node, ir.Flatten):
            steps.append(("flatten", shape))
            shape = (int(np.prod(shape)),)
            linear_seen = name
        elif isinstance(node, ir.ReLU):
            raise FoldingError(f"layer {name!r}: a ReLU must follow a Dense or Conv2D layer")
        else:
            raise FoldingError(f"layer {name!r}: unexpected node {type(node).__name__}")
        if any(s <= 0 for s in shape):
            raise FoldingError(f"layer {name!r}: output shape {shape} is empty")
        i += 1
    return pools, steps, shape, i


def _fold_steps(layer: AffineLayer, steps: list) -> AffineLayer:
    for step in reversed(steps):
        kind = step[0]
        if kind == "affine":
            layer = fold_channel_affine(layer, step[1], step[2])
        elif kind == "flatten":
            layer = fold_flatten(layer, step[1])
        elif kind == "gap":
            if layer.kind != "dense":
                raise FoldingError(f"layer {layer.name!r}: global average pooling must be followed by Dense")
            layer = fold_global_avg_pool(layer, step[1])
        elif kind == "zeropad":
            layer = fold_zero_padding(layer, step[1], step[2], step[3])
        elif kind == "avg":
            _, node, shape, name = step
            if layer.kind == "dense":
                layer = fold_avg_pool_into_dense(layer, node, shape)
            else:
                layer = fold_avg_pool_into_conv(layer, node, shape, name)
    return layer


def fold_network(graph: ir.Graph, input_range=(0.0, 1.0)) -> PreprocessedNetwork:
    """Fold the input range, batch normalisation, average pooling and padding constants.

    Input range: x = p + (q − p)·u, so the first layer sees u ∈ [0, 1] with
    W' = (q − p) W and b' = b + p Σ W (a bias map for padded convolutions).
    BN before the ReLU: W' = s W, b' = s b + c per output channel; a max pool between the
    layer and the ReLU moves behind the ReLU with the sign of the scales after it.
    BN after the ReLU: folded into the next layer per input channel, through max pooling
    (pool sign = sign of s) and flatten.  The result computes the same function.
    """
    p, q = (float(v) for v in input_range)
    if not q > p:
        raise ValueError(f"input range [{p}, {q}] must have p < q")
    names = graph.chain()
    source = graph.nodes[names[0]]
    if not isinstance(source, ir.Input):
        raise FoldingError("the graph must start with an Input node")
    shape = source.shape
    channels = shape[-1]
    pools, steps, shape, i = _parse_after_relu(
        graph, names, 1, shape, np.full(channels, q - p), np.full(channels, p)
    )
    input_pools = pools
    layers: list[AffineLayer] = []
    if i == len(names):
        raise FoldingError("the network has no Dense or Conv2D layer")
    while i < len(names):
        name = names[i]
        layer = _fold_steps(_affine_layer(name, graph.nodes[name], shape), steps)
        i += 1
        # Between the layer and its ReLU: batch norms and max pools only.
        scale, shift = np.ones(layer.channels), np.zeros(layer.channels)
        pre_pools = []
        while i < len(names) and not isinstance(graph.nodes[names[i]], (ir.ReLU, ir.Dense, ir.Conv2D)):
            nname, node = names[i], graph.nodes[names[i]]
            if isinstance(node, ir.BatchNorm):
                if node.scale.size != layer.channels:
                    raise FoldingError(f"layer {nname!r}: {node.scale.size} channels, {name!r} has {layer.channels}")
                scale, shift = node.scale * scale, node.scale * shift + node.shift
                for pool in pre_pools:
                    pool.sign = pool.sign * _sign(node.scale)
            elif isinstance(node, ir.MaxPool2D) and layer.kind == "conv":
                pre_pools.append(Pool(node.size, node.strides, node.padding, np.ones(layer.channels)))
            elif isinstance(node, ir.Flatten) and i == len(names) - 1:
                pass
            else:
                raise FoldingError(
                    f"layer {nname!r} ({type(node).__name__}) between {name!r} and its ReLU cannot be mapped exactly"
                )
            i += 1
        layer = fold_output_affine(layer, scale, shift)
        if i == len(names):
            if pre_pools:
                raise FoldingError(f"layer {name!r}: max pooling of the logits cannot be read out by the output layer")
            layer = replace(layer, relu=False)
            layers.append(layer)
            break
        if not isinstance(graph.nodes[names[i]], ir.ReLU):
            raise FoldingError(
                f"layer {name!r} is followed by {names[i]!r} without a ReLU: a hidden layer without ReLU "
                "cannot be mapped exactly (negative values cannot be coded by one spike time in its window)"
            )
        i += 1
        if i == len(names):
            raise FoldingError(f"layer {name!r} is the output layer and must not have a ReLU")
        post_pools, steps, shape, i = _parse_after_relu(
            graph, names, i, layer.output_shape if not pre_pools else _shape_after(layer.output_shape, pre_pools),
            np.ones(layer.channels), np.zeros(layer.channels),
        )
        layers.append(replace(layer, relu=True, pools=pre_pools + post_pools))
        if i == len(names):
            raise FoldingError(f"the network ends after {names[-1]!r}; the last layer must be Dense or Conv2D")
    return PreprocessedNetwork(source.shape, (p, q), layers, input_pools)


def _shape_after(shape, pools):
    for pool in pools:
        shape = pool.output_shape(shape)
    return shape


def scale_weights(net: PreprocessedNetwork, lower: float = -10.0, upper: float = 0.99) -> PreprocessedNetwork:
    """Rescale every hidden neuron so that Σ_j W_ij ∈ [lower, upper] (DESIGN §2, step 5).

    Neuron i's weights and bias are multiplied by f_i = upper/S_i if S_i > upper,
    lower/S_i if S_i < lower, else 1 (f_i > 0, so ReLU(f z) = f ReLU(z) and pooling commute
    with it); the next layer's weights from neuron i are divided by f_i.  Σ_j W_ij < 1
    makes the final slope α + Σ_j J_ij of every neuron positive.
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
        layers[n] = replace(layer, weight=layer.weight * f, bias=layer.bias * f)
        nxt = layers[n + 1]
        inv = np.broadcast_to(1.0 / f, nxt.input_shape[-1:])
        if nxt.kind == "dense":
            rows = np.broadcast_to(inv, nxt.input_shape).ravel()
            layers[n + 1] = replace(nxt, weight=nxt.weight * rows[:, None])
        else:
            layers[n + 1] = replace(nxt, weight=nxt.weight * inv[None, None, :, None])
    return replace(net, layers=layers, lower=float(lower), upper=float(upper))


def max_activations(net: PreprocessedNetwork, x_sample) -> np.ndarray:
    """X_n = max over the sample and the neurons of hidden layer n's ReLU output, one pass."""
    x_sample = np.asarray(x_sample, np.float64)
    if len(x_sample) == 0:
        raise ValueError("the training sample for X_n is empty")
    _, hidden = net.forward(x_sample, return_hidden=True)
    return np.array([float(h.max()) for h in hidden])


def preprocess(graph: ir.Graph, x_sample, *, input_range=(0.0, 1.0), lower=-10.0, upper=0.99) -> PreprocessedNetwork:
    """Phase 1: fold, scale, and measure X_n on ``x_sample`` (raw input domain)."""
    net = scale_weights(fold_network(graph, input_range), lower, upper)
    return replace(net, X=max_activations(net, x_sample))

