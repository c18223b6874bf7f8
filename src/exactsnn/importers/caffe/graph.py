"""The graph builder: a :class:`~.reader.CaffeNet` → the network description (:class:`exactsnn.ir.Graph`).

The result is made of the same node types the Keras and ONNX importers produce, in float64, so
Phase 1, Phase 2, the simulator and the command line take it unchanged.  Caffe's layers map to

* ``Convolution`` → :class:`~exactsnn.ir.Conv2D`, ``padding="same"`` where Caffe's symmetric
  pad is TensorFlow's (stride 1, pad = dilation·(kernel − 1)/2), else a
  :class:`~exactsnn.ir.ZeroPadding2D` (``<layer>/pad``) before a ``valid`` convolution;
* ``InnerProduct`` → :class:`~exactsnn.ir.Dense`, after a :class:`~exactsnn.ir.Flatten`
  (``<layer>/flatten``) when it reads an image;
* ``Pooling`` → :class:`~exactsnn.ir.MaxPool2D`, :class:`~exactsnn.ir.AvgPool2D` (see
  :func:`pool_geometry` for Caffe's rounding);
* ``ReLU`` → :class:`~exactsnn.ir.ReLU`, ``Flatten`` → :class:`~exactsnn.ir.Flatten`;
* ``Dropout`` (identity at inference) and the final ``Softmax`` → no node: the read-out
  reproduces the logits before the softmax, as with the other importers.

Layout.  Caffe computes channel-first, (C, H, W); the network description is channels last,
(H, W, C), like Keras.  Kernels (out, in, kh, kw) become (kh, kw, in, out), inner-product
weights (out, in) become (in, out), and the rows of the first inner product after an image are
permuted: Caffe's flat index of element (c, h, w) is c·H·W + h·W + w, that of
:class:`~exactsnn.ir.Flatten` is (h·W + w)·C + c.  The converted network therefore takes
``x.transpose(0, 2, 3, 1)`` of Caffe's input, in the channel order the net was trained with
(BGR minus the mean for the Places365 VGG16, :func:`exactsnn.imagesets.caffe_preprocess`).
"""

from __future__ import annotations

import numpy as np

from ... import ir, ops
from .reader import CaffeLayer, CaffeNet, check_supported, read_caffe_net

__all__ = ["caffe_graph", "caffe_pool_size", "import_caffe", "pool_geometry", "unique_name"]


def unique_name(base: str, used: set) -> str:
    """:func:`exactsnn.ir.unique_name` of ``base`` among ``used``, to which it is added."""
    name = ir.unique_name(base, used)
    used.add(name)
    return name


def caffe_pool_size(size: int, k: int, s: int, p: int, ceil: bool) -> int:
    """Caffe's pooled output size along one axis (``PoolingLayer::Reshape``).

    ⌈(size + 2p − k) / s⌉ + 1 (⌊·⌋ with ``round_mode: FLOOR``), minus one if the last window
    would start in the end padding.
    """
    span = size + 2 * p - k
    out = (-(-span // s) if ceil else span // s) + 1
    if p > 0 and (out - 1) * s >= size + p:
        out -= 1  # the last window must start inside the image
    return out


def pool_geometry(layer: CaffeLayer, shape, nonnegative: bool):
    """(size, strides, padding, pads, output (H, W)) of a Caffe pooling layer on a (C, H, W) blob.

    Caffe rounds pooled sizes up.  Where rounding down gives the same size the pool is
    ``valid``; where TensorFlow's ``same`` padding gives Caffe's windows (no pad, and the
    windows overhang at the end only) it is ``same`` (a ``same`` average divides by the real
    entries, as Caffe's does there).  Otherwise a max pool gets explicit zero ``pads`` (top,
    bottom, left, right), exact because its input is ≥ 0 (after a ReLU) and every Caffe window
    holds at least one real value; ``pads`` is None when no padding node is needed.  Anything
    else is refused with a :class:`ValueError` naming the layer.
    """
    _, h, w = shape
    p = layer.params
    if p["global_pooling"]:
        if any(p["pad"]) or p["stride"] != (1, 1):
            raise ValueError(f"Caffe layer {layer.name!r}: global pooling with padding or stride is not supported")
        return (h, w), (1, 1), "valid", None, (1, 1)
    k, s, pad = p["kernel"], p["stride"], p["pad"]
    ceil = p["round_mode"] == "CEIL"
    out = tuple(caffe_pool_size(n, k[i], s[i], pad[i], ceil) for i, n in enumerate((h, w)))
    if any(pad[i] >= k[i] for i in range(2)):
        raise ValueError(f"Caffe layer {layer.name!r}: pooling padding {pad} must be smaller than the kernel {k}")
    if any(o <= 0 for o in out):
        raise ValueError(f"Caffe layer {layer.name!r}: pooling kernel {k} is larger than its input {(h, w)}")
    if pad == (0, 0):
        valid = tuple(ops.conv_output_size(n, k[i], s[i]) for i, n in enumerate((h, w)))
        if valid == out:
            return k, s, "valid", None, out
        same = tuple(-(-n // s[i]) for i, n in enumerate((h, w)))
        top = tuple(ops.same_padding(n, k[i], s[i])[0] for i, n in enumerate((h, w)))
        if same == out and top == (0, 0):
            return k, s, "same", None, out  # TensorFlow's 'same' pads at the end only, like Caffe here
    if p["method"] != "MAX":
        raise ValueError(
            f"Caffe layer {layer.name!r}: {p['method']} pooling whose output size {out} needs padding "
            "(Caffe's ceil rounding or pad) cannot be reproduced exactly"
        )
    if not nonnegative:
        raise ValueError(
            f"Caffe layer {layer.name!r}: max pooling with Caffe's padding/ceil rounding (output {out}) "
            "is reproduced with zero padding, which is exact only on non-negative inputs (after a ReLU); "
            "this pooling layer's input can be negative"
        )
    extra = tuple(max(0, (out[i] - 1) * s[i] + k[i] - n - pad[i]) for i, n in enumerate((h, w)))
    padded = tuple(n + pad[i] + extra[i] for i, n in enumerate((h, w)))
    if tuple(ops.conv_output_size(padded[i], k[i], s[i]) for i in range(2)) != out:
        raise ValueError(f"Caffe layer {layer.name!r}: pooling geometry {k}/{s}/{pad} cannot be reproduced")
    return k, s, "valid", (pad[0], extra[0], pad[1], extra[1]), out


def _weight_and_bias(layer: CaffeLayer, n_out: int, expected: tuple, what: str):
    """The weight blob (as stored) and the bias (zeros without ``bias_term``) of a weighted layer."""
    if not layer.blobs:
        raise ValueError(f"Caffe layer {layer.name!r} has no weights (is it in the caffemodel?)")
    weight = layer.blobs[0]
    if weight.size != int(np.prod(expected)):
        raise ValueError(f"Caffe layer {layer.name!r}: weight blob {weight.shape} does not match {what}")
    if not layer.params["bias_term"]:
        return weight, np.zeros(n_out)
    if len(layer.blobs) < 2:
        raise ValueError(f"Caffe layer {layer.name!r} has bias_term set but no bias blob")
    bias = layer.blobs[1].reshape(-1)
    if bias.shape != (n_out,):
        raise ValueError(f"Caffe layer {layer.name!r}: bias blob {layer.blobs[1].shape} does not match ({n_out},)")
    return weight, bias


class _Builder:
    """Walks the chain of Caffe layers and appends their IR nodes, following the blob's Caffe shape."""

    def __init__(self, net: CaffeNet, shape: tuple):
        self.graph = ir.Graph()
        self.used: set = set()
        self.shape = shape  # (C, H, W), or (n,) once flat
        self.nonnegative = False  # the current blob is known to be ≥ 0 (after a ReLU)
        self.flat_from = None  # (C, H, W) of a flattened blob no inner product has read yet
        self.finished = False  # a Softmax was read: nothing may follow
        c, h, w = shape
        self._add(net.input_name or "data", ir.Input((h, w, c)))

    def _add(self, name: str, node) -> None:
        self.graph.add(unique_name(name, self.used), node, after=self.graph.output or None)

    def _image(self, layer: CaffeLayer, what: str) -> tuple:
        if len(self.shape) != 3:
            raise ValueError(f"Caffe layer {layer.name!r}: {what} after an inner product")
        return self.shape

    def _flatten(self, name: str) -> None:
        self._add(name, ir.Flatten())
        self.flat_from, self.shape = self.shape, (int(np.prod(self.shape)),)

    def convolution(self, layer: CaffeLayer) -> None:
        """z = W ∗ x + b over the zero-padded input (Caffe's ConvolutionLayer, group 1)."""
        c, h, w = self._image(layer, "convolution")
        p = layer.params
        if p["group"] != 1:
            raise ValueError(f"Caffe layer {layer.name!r}: grouped convolution (group={p['group']}) is not supported")
        if p["axis"] != 1:
            raise ValueError(f"Caffe layer {layer.name!r}: convolution axis {p['axis']} is not supported")
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = p["kernel"], p["stride"], p["pad"], p["dilation"]
        n_out = p["num_output"]
        weight, bias = _weight_and_bias(layer, n_out, (n_out, c, kh, kw), f"({n_out}, {c}, {kh}, {kw})")
        ho = ops.conv_output_size(h + 2 * ph, kh, sh, dh)
        wo = ops.conv_output_size(w + 2 * pw, kw, sw, dw)
        if ho <= 0 or wo <= 0:
            raise ValueError(f"Caffe layer {layer.name!r}: kernel larger than its padded input {(h, w)}")
        same = (sh, sw) == (1, 1) and dh * (kh - 1) == 2 * ph and dw * (kw - 1) == 2 * pw
        if (ph or pw) and not same:
            self._add(f"{layer.name}/pad", ir.ZeroPadding2D((ph, ph, pw, pw)))
        kernel = weight.reshape(n_out, c, kh, kw).transpose(2, 3, 1, 0)
        padding = "same" if (same and (ph or pw)) else "valid"
        self._add(layer.name, ir.Conv2D(kernel, bias, (sh, sw), padding, (dh, dw)))
        self.shape, self.nonnegative = (n_out, ho, wo), False

    def pooling(self, layer: CaffeLayer) -> None:
        """Max or mean over each window (Caffe's PoolingLayer, MAX and AVE)."""
        shape = self._image(layer, "pooling")
        method = layer.params["method"]
        if method not in ("MAX", "AVE"):
            raise ValueError(f"Caffe layer {layer.name!r}: {method} pooling is not supported")
        size, strides, padding, pads, out = pool_geometry(layer, shape, self.nonnegative)
        if pads is not None:
            self._add(f"{layer.name}/pad", ir.ZeroPadding2D(pads))
        pool = ir.MaxPool2D if method == "MAX" else ir.AvgPool2D
        self._add(layer.name, pool(size, strides, padding))
        self.shape = (shape[0],) + tuple(out)  # max and mean of values ≥ 0 stay ≥ 0

    def flatten(self, layer: CaffeLayer) -> None:
        p = layer.params
        if p.get("axis", 1) != 1 or p.get("end_axis", -1) not in (-1, len(self.shape)):
            raise ValueError(f"Caffe layer {layer.name!r}: only Flatten from axis 1 to the end is supported")
        if len(self.shape) == 3:
            self._flatten(layer.name)

    def inner_product(self, layer: CaffeLayer) -> None:
        """z = W x + b on Caffe's flattened input (InnerProductLayer; W stored (out, in) or, transposed, (in, out))."""
        p = layer.params
        if p["axis"] != 1:
            raise ValueError(f"Caffe layer {layer.name!r}: inner product axis {p['axis']} is not supported")
        if len(self.shape) == 3:
            self._flatten(f"{layer.name}/flatten")
        n_in, n_out = self.shape[0], p["num_output"]
        weight, bias = _weight_and_bias(layer, n_out, (n_out, n_in), f"{n_out} outputs x {n_in} inputs")
        weight = weight.reshape(n_in, n_out).T if p["transpose"] else weight.reshape(n_out, n_in)
        if self.flat_from is not None:
            # Caffe's input index is c*H*W + h*W + w; ir.Flatten's is (h*W + w)*C + c.
            weight = weight.reshape((n_out,) + tuple(self.flat_from)).transpose(0, 2, 3, 1).reshape(n_out, n_in)
            self.flat_from = None
        self._add(layer.name, ir.Dense(weight.T, bias))
        self.shape, self.nonnegative = (n_out,), False

    def relu(self, layer: CaffeLayer) -> None:
        slope = layer.params["negative_slope"]
        if slope != 0.0:
            raise ValueError(f"Caffe layer {layer.name!r}: leaky ReLU (negative_slope={slope}) is not supported")
        self._add(layer.name, ir.ReLU())
        self.nonnegative = True

    def dropout(self, layer: CaffeLayer) -> None:
        if not layer.params.get("scale_train", True):
            raise ValueError(f"Caffe layer {layer.name!r}: dropout with scale_train: false scales at test time")

    def softmax(self, layer: CaffeLayer) -> None:
        if len(self.shape) != 1 or layer.params["axis"] not in (1, -1):
            raise ValueError(f"Caffe layer {layer.name!r}: only a softmax over a flat vector is supported")
        self.finished = True


_STEPS = {
    "Convolution": _Builder.convolution,
    "Pooling": _Builder.pooling,
    "Flatten": _Builder.flatten,
    "InnerProduct": _Builder.inner_product,
    "ReLU": _Builder.relu,
    "Dropout": _Builder.dropout,
    "Softmax": _Builder.softmax,
}


def caffe_graph(net: CaffeNet, input_shape=None) -> ir.Graph:
    """The network description of a Caffe net read by :func:`~.reader.read_caffe_net`.

    ``input_shape`` (Caffe's order (C, H, W)) overrides the prototxt's.  The layers must form
    one straight chain from the input, each layer reading the blob the previous one wrote;
    what cannot be reproduced exactly is refused with a :class:`ValueError` naming the layer.
    """
    shape = input_shape if input_shape is not None else net.input_shape
    if shape is None:
        raise ValueError("the prototxt gives no input shape; pass input_shape=(C, H, W)")
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"input shape {shape} must be (C, H, W)")
    builder = _Builder(net, shape)
    current = net.input_name
    for layer in net.layers:
        check_supported(layer)
        if layer.type == "Input":
            continue
        if builder.finished:
            raise ValueError(f"Caffe layer {layer.name!r} ({layer.type}) follows the final Softmax")
        if len(layer.bottoms) != 1 or len(layer.tops) != 1 or (current is not None and layer.bottoms[0] != current):
            raise ValueError(
                f"Caffe layer {layer.name!r} ({layer.type}) takes {list(layer.bottoms)} and gives {list(layer.tops)}; "
                f"only straight chains are supported (expected input {current!r})"
            )
        current = layer.tops[0]
        _STEPS[layer.type](builder, layer)
    graph = builder.graph
    if not any(isinstance(node, (ir.Conv2D, ir.Dense)) for node in graph.nodes.values()):
        raise ValueError("the Caffe network has no Convolution or InnerProduct layer")
    return graph


def import_caffe(prototxt, caffemodel, *, input_shape=None) -> ir.Graph:
    """Translate a Caffe net (``deploy.prototxt`` + ``.caffemodel``) into an :class:`exactsnn.ir.Graph`.

    ``prototxt`` is a path or the prototxt text (see :func:`~.reader.read_caffe_net`);
    ``input_shape`` (C, H, W) overrides the prototxt's.  The graph takes channels-last inputs,
    ``x.transpose(0, 2, 3, 1)`` of Caffe's (see the module docstring); no Keras is involved.
    """
    return caffe_graph(read_caffe_net(prototxt, caffemodel), input_shape)
