"""The layers of the scaled ReLU network of Phase 1: one small dataclass per kind.

:class:`DenseSynapses`, :class:`ConvSynapses` and :class:`PooledDenseSynapses` (global
average pooling then Dense, kept factored) are synapse groups z = W x + b (a layer's
neurons are its main group plus the skips of residual connections); :class:`Pool` is the
sign-aware max pooling of a layer's outputs.  Shapes are checked once, in ``__post_init__``.
Each kind computes its own products and shapes, so nothing outside this module asks which
kind a layer is to do arithmetic with it.

On disk both synapse kinds keep the layout they had as one ``AffineLayer`` class with a
``kind`` field: :data:`KINDS` maps that tag to the class, for the ``.npz`` files
(:func:`exactsnn.serialize.register_variants`) and the HDF5 export alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import ClassVar

import numpy as np

from . import ops
from .serialize import register, register_variants


@register
@dataclass
class Pool:
    """Sign-aware max pooling of a layer's outputs.

    Channel c takes the maximum where sign[c] > 0 and the minimum where sign[c] < 0 (a
    negative batch-norm scale folded through the pool).  On spike times t = t_max − x this
    is the earliest spike, respectively the latest.  ``pads`` (top, bottom, left, right)
    is explicit zero padding (a ZeroPadding2D before the pool): value 0, i.e. a spike at
    t_max; ``padding="same"`` instead ignores the padded positions, as Keras does.
    """

    size: tuple
    strides: tuple
    padding: str
    sign: np.ndarray  # (C,) of ±1
    pads: tuple = (0, 0, 0, 0)

    def __post_init__(self):
        self.size, self.strides = tuple(self.size), tuple(self.strides)
        self.pads = tuple(int(v) for v in self.pads)
        self.sign = np.where(np.asarray(self.sign, np.float64) < 0, -1.0, 1.0)

    def _pad(self, x, value):
        if not any(self.pads):
            return x
        return ops.pad_input(x, self.pads, tuple(x.shape[1:3]), value)

    def on_values(self, x):
        return ops.signed_max_pool(self._pad(x, 0.0), self.size, self.strides, self.padding, self.sign)

    def on_times(self, t, t_max: float = 0.0):
        t = self._pad(np.asarray(t, np.float64), t_max)
        return -ops.signed_max_pool(-t, self.size, self.strides, self.padding, self.sign)

    def output_shape(self, shape):
        t, b, l, r = self.pads
        shape = (shape[0] + t + b, shape[1] + l + r, shape[2])
        return ops.pooled_shape(shape, self.size, self.strides, self.padding)

    def same_as(self, other: "Pool") -> bool:
        return (self.size, self.strides, self.padding, self.pads) == (
            other.size, other.strides, other.padding, other.pads
        ) and np.array_equal(self.sign, other.sign)


@dataclass
class Synapses:
    """One synapse group z = W x + b of the preprocessed chain (the fields both kinds share).

    ``relu`` marks hidden layers; ``pools`` act on their outputs, after the ReLU.
    ``source`` is the index of the layer whose (pooled) output it reads (−1: the input).
    ``skips`` are further synapse groups of the same neurons reading earlier layers
    (residual connections), each with its own source and geometry and a zero bias;
    ``bias`` is the neurons' total bias.
    """

    kind: ClassVar[str]  # the tag it is saved under (:data:`KINDS`), and its name in listings

    name: str
    weight: np.ndarray  # dense (n_in, n_out); conv (kh, kw, c_in, c_out)
    bias: np.ndarray  # the output shape: dense (n_out,); conv (H_out, W_out, c_out)
    input_shape: tuple  # of the source's (pooled) output
    relu: bool = True
    pools: list = field(default_factory=list)
    source: int = -1
    skips: list = field(default_factory=list)

    def __post_init__(self):
        self.weight = np.asarray(self.weight, np.float64)
        self.bias = np.asarray(self.bias, np.float64)
        self.input_shape = tuple(int(s) for s in self.input_shape)
        self._check_weight()
        if self.bias.shape != self.output_shape:
            raise ValueError(f"{self.name}: bias {self.bias.shape} is not of output shape {self.output_shape}")

    @property
    def channels(self) -> int:
        return self.weight.shape[-1]

    @property
    def pooled_shape(self) -> tuple:
        shape = self.output_shape
        for pool in self.pools:
            shape = pool.output_shape(shape)
        return shape

    @property
    def groups(self) -> list["Synapses"]:
        """All synapse groups of these neurons: this one, then the skips."""
        return [self] + list(self.skips)

    @property
    def own_weight_sum(self) -> np.ndarray:
        return self.weight.reshape(-1, self.channels).sum(axis=0)

    @property
    def weight_sum(self) -> np.ndarray:
        """Σ_j W_ij over the whole receptive field (padded taps, skips included), per output channel."""
        return sum(g.own_weight_sum for g in self.groups)

    @property
    def fan_in(self) -> int:
        """Synapses of one neuron in this group, padded taps included."""
        return int(np.prod(self.weight.shape[:-1]))

    def linear(self, x, weight=None, pad_value: float = 0.0):
        """Σ_j W_ij x_j (no bias) in NumPy; padded positions take ``pad_value``."""
        return self.product(self.inputs(x, pad_value), weight)

    def apply(self, x):
        """z = W x + b with zero padding, in float64."""
        return self.linear(x) + self.bias

    def apply_groups(self, outputs: dict):
        """z = Σ_groups W_g x_{source(g)} + b with zero padding; ``outputs`` maps layer index to its pooled output."""
        return sum(g.linear(outputs[g.source]) for g in self.groups) + self.bias

    def per_synapse(self, w: np.ndarray) -> np.ndarray:
        """``w`` (of :attr:`weight`'s shape: W, J, …) with one entry per synapse, in the layout
        a dense or convolution weight has; only a factored kind (:class:`PooledDenseSynapses`)
        expands it."""
        return w

    def as_kind(self, cls: type, **changes) -> "Synapses":
        """These fields (with ``changes``) as synapses of the kind ``cls``."""
        return cls(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})

    def explicit(self) -> "Synapses":
        """These synapses with one weight per synapse (:meth:`per_synapse`): what a format or
        a simulator that knows only the dense and convolution kinds reads."""
        skips = [g.explicit() for g in self.skips]
        if all(a is b for a, b in zip(skips, self.skips)):
            return self
        return replace(self, skips=skips)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one forward pass (padded taps and skips included)."""
        return sum(g.fan_in * int(np.prod(self.output_shape)) for g in self.groups)

    @property
    def synapses(self) -> int:
        """Synapses from real (not padded) inputs: Σ over output neurons of their in-bounds taps."""
        return sum(g.own_synapses for g in self.groups)


@dataclass
class DenseSynapses(Synapses):
    """z_i = Σ_j W_ij x_j + b_i on the flattened (row-major, channels-last) input.

    ``weight`` (n_in, n_out) with n_in = ∏ ``input_shape``; ``bias`` (n_out,).
    """

    kind: ClassVar[str] = "dense"

    def _check_weight(self):
        if self.weight.shape[0] != int(np.prod(self.input_shape)):
            raise ValueError(f"{self.name}: weight {self.weight.shape} does not fit input {self.input_shape}")

    @property
    def output_shape(self) -> tuple:
        return (self.weight.shape[1],)

    @property
    def kernel(self) -> np.ndarray:
        """W as the product takes it: (fan-in, channels)."""
        return self.weight.reshape(-1, self.channels)

    def inputs(self, x, pad_value: float = 0.0) -> np.ndarray:
        """The input as :meth:`product` reads it: flattened per sample (nothing is padded)."""
        return np.asarray(x, np.float64).reshape(len(x), -1)

    def product(self, inputs, weight=None) -> np.ndarray:
        """Σ_j W_ij x_j of :meth:`inputs`; ``weight`` (default W) of W's shape."""
        weight = self.weight if weight is None else weight
        return inputs @ weight.reshape(inputs.shape[1], -1)

    def on_constant(self, value: np.ndarray) -> np.ndarray:
        """W c for the input c that is ``value`` (per input channel) everywhere."""
        return np.broadcast_to(value, self.input_shape).ravel() @ self.weight

    def input_scaled(self, scale: np.ndarray) -> np.ndarray:
        """W · diag(s) for ``scale`` s per input channel, tiled over the flattened input."""
        rows = np.broadcast_to(scale, self.input_shape).ravel()
        return self.weight * rows[:, None]

    def tf_inputs(self, x):
        """The input as :meth:`tf_product` reads it, in TensorFlow: flattened."""
        tf = ops._tf()
        return tf.reshape(x, [tf.shape(x)[0], -1])

    def tf_product(self, inputs, kernel):
        """Σ_j W_ij x_j of :meth:`tf_inputs` with ``kernel`` (of :attr:`kernel`'s shape), in TensorFlow."""
        return ops._tf().matmul(inputs, kernel)

    def synaptic_events(self, fired: np.ndarray) -> float:
        """Σ over synapses whose presynaptic neuron fired (``fired`` 1 or 0 per input and sample)."""
        return float(fired.reshape(len(fired), -1).sum() * self.channels)

    @property
    def own_synapses(self) -> int:
        return int(self.weight.size)

    def fault(self, in_shape: tuple) -> tuple[str, str] | None:
        """(field, what is wrong) of what a loaded file can hold that ``__post_init__`` lets through."""
        if self.weight.ndim != 2:
            return "weight", f"of a dense layer has shape {self.weight.shape}, expected 2 axes"
        return None


@dataclass
class ConvSynapses(Synapses):
    """z[p, o] = Σ_{a,b,c} W[a, b, c, o] · x̃[s·p + d·(a, b), c] + b[p, o] (cross-correlation, as Keras).

    ``weight`` (kh, kw, c_in, c_out); x̃ is the input cropped to ``used`` rows/columns and
    padded by ``pads`` = (top, bottom, left, right), s the ``strides``, d the ``dilation``.
    ``bias`` is a map (H_out, W_out, c_out) because folding constants through zero padding
    makes it position dependent (DESIGN §2, step 4).
    """

    kind: ClassVar[str] = "conv"

    strides: tuple = (1, 1)
    dilation: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)
    used: tuple = (0, 0)

    def __post_init__(self):
        for name in ("strides", "dilation", "pads", "used"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        super().__post_init__()

    def _check_weight(self):
        if len(self.input_shape) != 3 or self.weight.shape[2] != self.input_shape[2]:
            raise ValueError(f"{self.name}: kernel {self.weight.shape} does not fit input {self.input_shape}")

    @property
    def output_shape(self) -> tuple:
        kh, kw = self.weight.shape[:2]
        h = self.used[0] + self.pads[0] + self.pads[1]
        w = self.used[1] + self.pads[2] + self.pads[3]
        return (
            ops.conv_output_size(h, kh, self.strides[0], self.dilation[0]),
            ops.conv_output_size(w, kw, self.strides[1], self.dilation[1]),
            self.channels,
        )

    @property
    def kernel(self) -> np.ndarray:
        """W as the product takes it: (kh, kw, c_in, c_out)."""
        return self.weight

    def padded(self, x, pad_value: float):
        return ops.pad_input(x, self.pads, self.used, pad_value)

    def inputs(self, x, pad_value: float = 0.0) -> np.ndarray:
        """The input as :meth:`product` reads it: cropped to ``used``, padded with ``pad_value``."""
        return np.asarray(self.padded(x, pad_value))

    def product(self, inputs, weight=None) -> np.ndarray:
        """Σ_j W_ij x_j of :meth:`inputs` (a ``valid`` convolution); ``weight`` (default W) of W's shape."""
        weight = self.weight if weight is None else weight
        return ops.conv2d(inputs, weight, self.strides, self.dilation).numpy()

    def on_constant(self, value: np.ndarray) -> np.ndarray:
        """W c for the input c that is ``value`` (per input channel) everywhere, with zero
        padding: a map, since near the borders fewer taps see the constant."""
        return self.linear(np.broadcast_to(value, (1,) + self.input_shape))[0]

    def input_scaled(self, scale: np.ndarray) -> np.ndarray:
        """W · diag(s) for ``scale`` s per input channel."""
        return self.weight * scale[None, None, :, None]

    def tf_inputs(self, x):
        """The input as :meth:`tf_product` reads it, in TensorFlow: cropped to ``used`` (the
        padding is the convolution's own)."""
        if tuple(self.used) != tuple(self.input_shape[:2]):
            return x[:, : self.used[0], : self.used[1], :]
        return x

    def tf_product(self, inputs, kernel):
        """Σ_j W_ij x_j of :meth:`tf_inputs` with ``kernel``, zeros at the ``pads`` given to the
        convolution as explicit padding (no padded copy of the input is made)."""
        return ops.padded_conv2d(inputs, kernel, self.strides, self.dilation, self.pads)

    def tap_counts(self, x: np.ndarray) -> np.ndarray:
        """Per output position, Σ of x (N, H, W, 1) over its in-bounds taps (padded taps count 0)."""
        kh, kw = self.weight.shape[:2]
        return ops.conv2d(self.padded(x, 0.0), np.ones((kh, kw, 1, 1)), self.strides, self.dilation)

    def synaptic_events(self, fired: np.ndarray) -> float:
        """Σ over real synapses whose presynaptic neuron fired (``fired`` 1 or 0 per input and sample)."""
        return float(np.sum(self.tap_counts(fired.sum(axis=-1, keepdims=True)))) * self.channels

    @property
    def own_synapses(self) -> int:
        kh, kw, cin, cout = self.weight.shape
        taps = self.tap_counts(np.ones((1,) + self.input_shape[:2] + (1,)))
        return int(round(float(np.sum(taps)))) * cin * cout

    def fault(self, in_shape: tuple) -> tuple[str, str] | None:
        """(field, what is wrong) of what a loaded file can hold that ``__post_init__`` lets through."""
        if self.weight.ndim != 4:
            return "weight", f"of a convolution has shape {self.weight.shape}, expected 4 axes"
        if any(s < 1 for s in self.strides + self.dilation) or len(self.strides + self.dilation) != 4:
            return "strides", f"strides {self.strides} and dilation {self.dilation} must be 2 positive integers each"
        if len(self.pads) != 4 or any(v < 0 for v in self.pads):
            return "pads", f"{self.pads} must be 4 integers >= 0"
        if len(self.used) != 2 or not all(0 < u <= s for u, s in zip(self.used, in_shape[:2])):
            return "used", f"{self.used} does not fit the input {tuple(in_shape)}"
        if any(s < 1 for s in self.output_shape):
            return "weight", f"kernel {self.weight.shape} leaves an empty output {self.output_shape}"
        return None


@dataclass
class PooledDenseSynapses(DenseSynapses):
    """Global average pooling then Dense, kept factored: z_o = Σ_c W[c, o] · mean_{h,w} x[h, w, c] + b_o.

    As synapses it is the dense layer of weights W[c, o] / (H·W) on the flattened (H, W, C)
    input (DESIGN §2, step 2: the pooling is linear), but it stores the (C, O) matrix: the
    classifier of ResNet50 at 224×224 is 1.6 MB so, 800 MB expanded.  Sums over synapses
    (Σ_j W_ij, Σ_j W⁺_ij) equal those of the (C, O) matrix, since H·W > 0 divides every
    weight of a channel alike; one weight per synapse is :meth:`per_synapse`.
    """

    kind: ClassVar[str] = "pooled_dense"

    def _check_weight(self):
        if len(self.input_shape) != 3 or self.weight.ndim != 2 or self.weight.shape[0] != self.input_shape[2]:
            raise ValueError(f"{self.name}: weight {self.weight.shape} does not fit pooled input {self.input_shape}")

    @property
    def positions(self) -> int:
        """H·W, the positions the pooling averages."""
        return self.input_shape[0] * self.input_shape[1]

    @property
    def fan_in(self) -> int:
        return self.positions * self.input_shape[2]

    def per_synapse(self, w: np.ndarray) -> np.ndarray:
        """(H·W·C, O): w[c, o] / (H·W) at every position, rows in the flattened input's order."""
        w = np.asarray(w, np.float64) / self.positions
        return np.broadcast_to(w, (self.positions,) + w.shape).reshape(-1, w.shape[-1])

    def explicit(self) -> DenseSynapses:
        return self.as_kind(DenseSynapses, weight=self.per_synapse(self.weight),
                            skips=[g.explicit() for g in self.skips])

    def _pooled(self, inputs):
        return np.asarray(inputs, np.float64).reshape(len(inputs), self.positions, -1).mean(axis=1)

    def product(self, inputs, weight=None) -> np.ndarray:
        """Σ_c W_co mean_{h,w} x of :meth:`inputs` (flattened); ``weight`` (default W) (C, O)."""
        weight = self.weight if weight is None else weight
        return self._pooled(inputs) @ weight.reshape(self.input_shape[2], -1)

    def on_constant(self, value: np.ndarray) -> np.ndarray:
        """W c for the input c that is ``value`` (per input channel) everywhere: its mean is c."""
        return np.broadcast_to(value, self.input_shape[2:]) @ self.weight

    def input_scaled(self, scale: np.ndarray) -> np.ndarray:
        """W · diag(s) for ``scale`` s per input channel."""
        return self.weight * np.broadcast_to(scale, self.input_shape[2:])[:, None]

    def tf_product(self, inputs, kernel):
        """Σ_c W_co mean_{h,w} x of :meth:`tf_inputs` (flattened) in TensorFlow.  In float32
        the mean rounds at most H·W times per channel and the product C + 1 times per output,
        within the γ_{H·W·C + 2} that :attr:`fan_in` gives the certificate's error terms."""
        tf = ops._tf()
        pooled = tf.reduce_mean(tf.reshape(inputs, [tf.shape(inputs)[0], self.positions, self.input_shape[2]]), axis=1)
        return tf.matmul(pooled, kernel)

    @property
    def own_synapses(self) -> int:
        return int(self.weight.size) * self.positions

    def fault(self, in_shape: tuple) -> tuple[str, str] | None:
        if self.weight.ndim != 2:
            return "weight", f"of a pooled dense layer has shape {self.weight.shape}, expected 2 axes"
        return None


#: The kind tag each synapse class is saved under.
KINDS = {cls.kind: cls for cls in (DenseSynapses, ConvSynapses, PooledDenseSynapses)}

#: What a synapse group without a convolution's geometry is saved with (the layout of the
#: single ``AffineLayer`` class the files were written with before the kinds had classes).
SAVED_GEOMETRY = {"strides": (1, 1), "dilation": (1, 1), "pads": (0, 0, 0, 0), "used": (0, 0)}

register_variants(
    "AffineLayer", "kind", KINDS,
    layout=("name", "kind", "weight", "bias", "input_shape", "relu", "pools", "strides", "dilation", "pads",
            "used", "source", "skips"),
    defaults=SAVED_GEOMETRY,
)
