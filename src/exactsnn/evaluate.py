"""A float64 forward pass of the network description (:class:`exactsnn.ir.Graph`), node by node.

Each node computes the equation its class in :mod:`exactsnn.ir` states, on channels-last
tensors, with nothing folded: this is the imported network as it was imported, the reference
that Phase 1's folded and scaled network (:meth:`exactsnn.preprocess.PreprocessedNetwork.forward`)
and the spiking network are compared with when the original model does not compute in float64
itself (an ONNX model: onnxruntime computes in float32).  ``same`` padding is TensorFlow's,
and a ``same`` average pool divides by the entries inside the image, as ir.AvgPool2D says.
"""

from __future__ import annotations

import numpy as np

from . import ir, ops

__all__ = ["evaluate"]


def _value(node, inputs: list):
    """The output of one node for its input tensors (TensorFlow, float64)."""
    tf = ops._tf()
    x = inputs[0] if inputs else None
    if isinstance(node, ir.Dense):
        return tf.matmul(tf.reshape(x, [tf.shape(x)[0], -1]), node.weight) + node.bias
    if isinstance(node, ir.Conv2D):
        return tf.nn.conv2d(x, node.kernel, strides=[1, *node.strides, 1], padding=node.padding.upper(),
                            dilations=[1, *node.dilation, 1]) + node.bias
    if isinstance(node, ir.BatchNorm):
        return x * node.scale + node.shift
    if isinstance(node, ir.ReLU):
        return tf.maximum(x, tf.constant(0.0, tf.float64))
    if isinstance(node, ir.MaxPool2D):
        return tf.nn.max_pool2d(x, node.size, node.strides, node.padding.upper())
    if isinstance(node, ir.AvgPool2D):
        return tf.nn.avg_pool2d(x, node.size, node.strides, node.padding.upper())
    if isinstance(node, ir.GlobalAvgPool2D):
        return tf.reduce_mean(x, axis=[1, 2])
    if isinstance(node, ir.ZeroPadding2D):
        top, bottom, left, right = node.pads
        return tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
    if isinstance(node, ir.Add):
        return tf.add_n(inputs)
    if isinstance(node, ir.Flatten):
        return tf.reshape(x, [tf.shape(x)[0], -1])
    raise ValueError(f"cannot evaluate a {type(node).__name__} node")


def evaluate(graph: ir.Graph, x, batch_size: int = 256) -> np.ndarray:
    """Float64 outputs of ``graph`` on raw inputs ``x`` (N, *input shape), flattened per sample."""
    tf = ops._tf()
    x = np.asarray(x, np.float64)
    shape = graph.nodes[graph.source].shape
    if x.shape[1:] != tuple(shape):
        raise ValueError(f"inputs have shape {x.shape[1:]}, the network expects {tuple(shape)}")
    order = graph.order()
    last = {}  # node -> the last node reading it, so that activations are dropped early
    for k, name in enumerate(order):
        for src in graph.inputs(name):
            last[src] = k
    out = []
    for start in range(0, len(x), batch_size):
        values = {graph.source: tf.constant(x[start : start + batch_size])}
        for k, name in enumerate(order[1:], start=1):
            values[name] = _value(graph.nodes[name], [values[s] for s in graph.inputs(name)])
            for src in graph.inputs(name):
                if last[src] == k and src != graph.output:
                    values.pop(src, None)
            if name == graph.output:
                break
        y = values[graph.output]
        out.append(np.asarray(y).reshape(len(y), -1))
    return np.concatenate(out) if out else np.zeros((0, 0))
