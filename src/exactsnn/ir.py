"""The framework-free network description produced by the importers.

One small dataclass per kind of node; fields are float64 NumPy arrays (shape in the
comment) or plain values.  Shapes are checked once, in ``__post_init__``.  A network is a
:class:`Graph` of named nodes and directed edges, so merges fit later without a redesign;
the importers currently produce chains.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .serialize import register


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    a, b = v
    return (int(a), int(b))


@register
@dataclass
class Input:
    """The network input x^(0), in the raw domain the trained model takes."""

    shape: tuple  # (H, W, C) or (n,)

    def __post_init__(self):
        self.shape = tuple(int(s) for s in self.shape)


@register
@dataclass
class Dense:
    """z = x W + b on the flattened input."""

    weight: np.ndarray  # (n_in, n_out)
    bias: np.ndarray  # (n_out,)

    def __post_init__(self):
        self.weight, self.bias = _f64(self.weight), _f64(self.bias)
        if self.weight.ndim != 2 or self.bias.shape != (self.weight.shape[1],):
            raise ValueError(f"Dense: weight {self.weight.shape} and bias {self.bias.shape} do not match")


@register
@dataclass
class Conv2D:
    """z[p, o] = Σ_{a,b,c} K[a, b, c, o] · x_pad[s·p + d·(a, b), c] + b[o] (channels last)."""

    kernel: np.ndarray  # (kh, kw, c_in, c_out)
    bias: np.ndarray  # (c_out,)
    strides: tuple = (1, 1)
    padding: str = "valid"  # "valid" | "same"
    dilation: tuple = (1, 1)

    def __post_init__(self):
        self.kernel, self.bias = _f64(self.kernel), _f64(self.bias)
        self.strides, self.dilation = _pair(self.strides), _pair(self.dilation)
        if self.kernel.ndim != 4 or self.bias.shape != (self.kernel.shape[3],):
            raise ValueError(f"Conv2D: kernel {self.kernel.shape} and bias {self.bias.shape} do not match")
        if self.padding not in ("valid", "same"):
            raise ValueError(f"Conv2D: padding must be 'valid' or 'same', not {self.padding!r}")


@register
@dataclass
class BatchNorm:
    """Inference-time batch normalisation as a per-channel affine map y = scale · x + shift.

    scale = γ / sqrt(σ² + ε), shift = β − μ · scale.
    """

    scale: np.ndarray  # (C,)
    shift: np.ndarray  # (C,)

    def __post_init__(self):
        self.scale, self.shift = _f64(self.scale), _f64(self.shift)
        if self.scale.shape != self.shift.shape or self.scale.ndim != 1:
            raise ValueError(f"BatchNorm: scale {self.scale.shape} and shift {self.shift.shape} do not match")


@register
@dataclass
class ReLU:
    """y = max(0, x)."""


@register
@dataclass
class MaxPool2D:
    """y = max over each pool window (padding, if any, is ignored)."""

    size: tuple
    strides: tuple
    padding: str = "valid"

    def __post_init__(self):
        self.size, self.strides = _pair(self.size), _pair(self.strides)


@register
@dataclass
class AvgPool2D:
    """y = mean over each pool window (with ``same`` padding, over the valid entries only)."""

    size: tuple
    strides: tuple
    padding: str = "valid"

    def __post_init__(self):
        self.size, self.strides = _pair(self.size), _pair(self.strides)


@register
@dataclass
class GlobalAvgPool2D:
    """y[c] = mean over all positions of channel c."""


@register
@dataclass
class ZeroPadding2D:
    """Pads the (H, W, C) input with zeros: ``pads`` = (top, bottom, left, right)."""

    pads: tuple

    def __post_init__(self):
        self.pads = tuple(int(v) for v in self.pads)
        if len(self.pads) != 4 or min(self.pads) < 0:
            raise ValueError(f"ZeroPadding2D: pads must be four non-negative ints, got {self.pads}")


@register
@dataclass
class Add:
    """y = Σ of the incoming tensors (a residual merge)."""


@register
@dataclass
class Flatten:
    """Row-major (channels-last) flattening."""


def unique_name(base: str, taken) -> str:
    """``base``, or the first of ``base_2``, ``base_3``, ... that is not in ``taken``: how the
    importers name a node (or a Keras layer) whose name is already in use."""
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


@register
@dataclass
class Graph:
    """Named nodes and directed edges (source, target).

    ``source`` names the Input node; ``output`` the node whose value are the logits.
    Nodes are kept in a topological order (every node after its inputs).
    """

    nodes: dict = field(default_factory=dict)  # name -> node
    edges: list = field(default_factory=list)  # [(source, target), ...]
    source: str = ""
    output: str = ""

    def __post_init__(self):
        self.edges = [tuple(e) for e in self.edges]

    def add(self, name: str, node, after=None) -> None:
        """Append ``node`` fed by the node(s) ``after`` (none for the input)."""
        if name in self.nodes:
            raise ValueError(f"duplicate node name {name!r}")
        inputs = [after] if isinstance(after, str) else list(after or [])
        for src in inputs:
            if src not in self.nodes:
                raise ValueError(f"node {name!r}: unknown input {src!r}")
        self.nodes[name] = node
        self.edges.extend((src, name) for src in inputs)
        if not inputs:
            self.source = name
        self.output = name

    def inputs(self, name: str) -> list[str]:
        """Names of the nodes feeding ``name``, in the order they were given."""
        return [a for a, b in self.edges if b == name]

    def order(self) -> list[str]:
        """Node names in topological order (the order they were added)."""
        return list(self.nodes)

    def chain(self) -> list[str]:
        """Node names from the input to the output, for a graph that is a straight chain."""
        nxt: dict[str, str] = {}
        for a, b in self.edges:
            if a in nxt:
                raise ValueError(f"node {a!r} feeds more than one node; only chains are supported")
            nxt[a] = b
        order, name = [self.source], self.source
        while name in nxt:
            name = nxt[name]
            order.append(name)
        if len(order) != len(self.nodes):
            raise ValueError("graph is not a single chain from its input to its output")
        return order
