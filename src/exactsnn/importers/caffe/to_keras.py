"""The optional Keras export behind ``exactsnn caffe2keras``: a Caffe net, through its network
description (:func:`~.graph.import_caffe`), as a channel-last Keras model.

One parse and one set of layout rules serve both ways out: the Keras model is built node by
node from the :class:`exactsnn.ir.Graph` the graph builder made, so importing the saved model
with :func:`exactsnn.importers.keras.import_keras` gives back the same nodes and weights.
"""

from __future__ import annotations

import os
import re

import numpy as np

from ... import ir
from .graph import caffe_graph, unique_name
from .reader import read_caffe_net

__all__ = ["caffe_to_keras", "keras_model", "main_caffe2keras"]


def _keras_name(name: str, used: set) -> str:
    """``name`` with the characters Keras refuses in layer names (``/``, spaces, ...) replaced, made unique."""
    return unique_name(re.sub(r"[^A-Za-z0-9_.\-]", "_", name) or "layer", used)


# The Keras layer of each node kind the graph builder makes (``opts``: name, dtype, activation).
_LAYERS = {
    ir.Conv2D: lambda keras, n, opts: keras.layers.Conv2D(
        n.kernel.shape[3], n.kernel.shape[:2], strides=n.strides, padding=n.padding, dilation_rate=n.dilation, **opts
    ),
    ir.Dense: lambda keras, n, opts: keras.layers.Dense(n.weight.shape[1], **opts),
    ir.MaxPool2D: lambda keras, n, opts: keras.layers.MaxPooling2D(n.size, strides=n.strides, padding=n.padding, **opts),
    ir.AvgPool2D: lambda keras, n, opts: keras.layers.AveragePooling2D(
        n.size, strides=n.strides, padding=n.padding, **opts
    ),
    ir.ZeroPadding2D: lambda keras, n, opts: keras.layers.ZeroPadding2D((n.pads[:2], n.pads[2:]), **opts),
    ir.Flatten: lambda keras, n, opts: keras.layers.Flatten(**opts),
    ir.ReLU: lambda keras, n, opts: keras.layers.ReLU(**opts),
}


def keras_model(graph: ir.Graph, *, softmax: str | None = None, dtype=None, name: str = "caffe_net"):
    """A Keras model computing ``graph``, a chain of the node kinds :func:`~.graph.caffe_graph` makes.

    A ReLU node right after a Conv2D/Dense node becomes that layer's activation.  With
    ``softmax`` (the name of the Caffe softmax layer) the output goes through a softmax: the
    last Dense layer's activation, or a Softmax layer of that name after a ReLU.  ``dtype``
    (e.g. ``"float64"``) sets every layer's dtype; weights are cast to it.  Every Conv2D and
    Dense layer has a bias, as its node does (zeros for a Caffe layer without ``bias_term``).
    Layer names are the nodes' names, with characters Keras refuses replaced by ``_``
    (``conv2/pad`` → ``conv2_pad``).
    """
    import keras

    order = graph.chain()
    kw = {"dtype": dtype} if dtype is not None else {}
    used: set = set()
    shape = graph.nodes[order[0]].shape
    inputs = keras.Input(shape=shape, name=_keras_name(order[0], used), **kw)
    x, weighted, last_activation, k = inputs, [], None, 1
    while k < len(order):
        node = graph.nodes[order[k]]
        make = _LAYERS.get(type(node))
        if make is None:
            raise TypeError(f"node {order[k]!r}: a {type(node).__name__} has no Keras layer here")
        opts = {"name": _keras_name(order[k], used), **kw}
        weights = isinstance(node, (ir.Conv2D, ir.Dense))
        fused = weights and k + 1 < len(order) and isinstance(graph.nodes[order[k + 1]], ir.ReLU)
        if weights:
            final = k == len(order) - 1
            opts["activation"] = "relu" if fused else ("softmax" if softmax and final and isinstance(node, ir.Dense) else None)
        layer = make(keras, node, opts)
        x = layer(x)
        if weights:
            weighted.append((layer, node))
        last_activation = opts.get("activation")
        k += 2 if fused else 1
    if softmax and last_activation != "softmax":
        x = keras.layers.Softmax(name=_keras_name(softmax, used), **kw)(x)
    model = keras.Model(inputs, x, name=_keras_name(name, set()))
    for layer, node in weighted:
        kernel = node.kernel if isinstance(node, ir.Conv2D) else node.weight
        layer.set_weights([np.asarray(v, dtype=layer.kernel.dtype) for v in (kernel, node.bias)])
    return model


def caffe_to_keras(prototxt, caffemodel, *, input_shape=None, softmax: bool = True, dtype=None, name=None):
    """Build a channel-last Keras model equal to the Caffe net (``deploy.prototxt`` + ``.caffemodel``).

    ``input_shape`` (Caffe's order (C, H, W)) overrides the prototxt's.  The Keras input is
    (H, W, C), in the channel order the Caffe net was trained with (BGR for Caffe's ImageNet
    and Places models).  The layers are those of :func:`~.graph.caffe_graph` (:mod:`.graph`
    gives the rules for padding and Caffe's ceil-rounded pools), see :func:`keras_model`; a final
    Caffe Softmax is kept unless ``softmax=False``.  ``dtype`` (e.g. ``"float64"``) sets every
    layer's dtype.
    """
    net = read_caffe_net(prototxt, caffemodel)
    graph = caffe_graph(net, input_shape)
    final_softmax = next((layer.name for layer in net.layers if layer.type == "Softmax"), None)
    return keras_model(graph, softmax=final_softmax if softmax else None, dtype=dtype,
                       name=name or net.name or "caffe_net")


def main_caffe2keras(prototxt, caffemodel, out_path, **kwargs) -> str:
    """Convert a Caffe net to Keras and save it as ``out_path`` (a ``.keras`` file, written atomically)."""
    out_path = os.fspath(out_path)
    if not out_path.endswith(".keras"):
        raise ValueError(f"the output file must end in .keras, not {out_path!r}")
    model = caffe_to_keras(prototxt, caffemodel, **kwargs)
    from ...serialize import atomic

    with atomic(out_path) as tmp:
        model.save(tmp)
    return out_path
