"""Import an ONNX model (PyTorch, TensorFlow/Keras, ... exports) into the network description.

The model is read with the ``onnx`` package alone (its protobuf classes, ``numpy_helper`` and,
to fold constant sub-graphs, its reference evaluator); no runtime is needed to import.  The
result is the same :class:`exactsnn.ir.Graph` that :func:`exactsnn.importers.keras.import_keras`
builds, made of the same node types, so Phase 1, Phase 2, the simulator, the workflow and the
command line take it unchanged.  Weights are converted to float64 as they are read.

Operators (semantics as in the ONNX operator specification, default domain):

* ``Gemm`` (``transB``, ``alpha``, ``beta``, ``C`` broadcast; ``transA = 0``) and ``MatMul``
  with a constant right-hand side, followed or not by ``Add`` → :class:`~exactsnn.ir.Dense`;
* ``Conv`` (2-D, any kernel, strides, dilations, explicit ``pads`` and every ``auto_pad``,
  ``group = 1``) → :class:`~exactsnn.ir.Conv2D`, with ``padding="same"`` when the pads are
  TensorFlow's, else a :class:`~exactsnn.ir.ZeroPadding2D` before a ``valid`` convolution;
* ``BatchNormalization`` (inference), and ``Mul``/``Add``/``Sub``/``Div`` of a tensor by a
  per-channel constant → :class:`~exactsnn.ir.BatchNorm` (an ``Add`` right after a ``Conv``,
  ``Gemm`` or ``MatMul`` goes into its bias instead);
* ``Relu``, and ``Clip`` with min 0 and no max → :class:`~exactsnn.ir.ReLU`;
* ``MaxPool`` (pads, strides, ``ceil_mode``; TensorFlow-``same`` pads on any input, other
  pads on non-negative inputs, where a zero pad equals ONNX's ignored one), ``GlobalMaxPool``
  → :class:`~exactsnn.ir.MaxPool2D`;
* ``AveragePool`` (``count_include_pad = 1`` with any pads; ``0`` with TensorFlow-``same`` pads,
  which divide by the real entries as ONNX does), ``GlobalAveragePool``, ``ReduceMean`` over
  H and W → :class:`~exactsnn.ir.AvgPool2D`, :class:`~exactsnn.ir.GlobalAvgPool2D`;
* ``Pad`` (constant 0, spatial axes) → :class:`~exactsnn.ir.ZeroPadding2D`;
* ``Add``/``Sum`` of two tensors (residual merges) → :class:`~exactsnn.ir.Add`;
* ``Flatten``, ``Reshape``, ``Transpose``, ``Squeeze``, ``Unsqueeze``, ``Identity``,
  ``Dropout``, ``Cast`` to float: no node of their own (see *Layout*);
* a final ``Softmax`` or ``LogSoftmax``: dropped, as the Keras importer drops the final
  softmax (the read-out reproduces the logits before it, and the argmax is the same);
* initializers, ``Constant`` nodes, and shape arithmetic (``Shape``, ``Gather``, ``Concat``,
  ...) whether the exporter folded it into constants or not: folded here, with the batch size
  of the input (a dynamic batch stands for any size).

Anything else is refused with :class:`UnsupportedOperatorError`, one line that names the node,
its op type and why: other activations (``Sigmoid``, ``Tanh``, ``LeakyRelu``, ``Clip`` with a
max, ...), ``Concat``, grouped convolutions, products of two tensors, a softmax before the end,
dimensions other than the batch that are not fixed, ...  What the importer can represent but
the mapping cannot (a hidden layer without ReLU, say) is refused by Phase 1
(:class:`exactsnn.preprocess.FoldingError`), naming the node as well.

Layout.  ONNX images are NCHW; the network description is channels last, (H, W, C), like
Keras.  The converted network therefore takes ``x.transpose(0, 2, 3, 1)`` of the ONNX model's
NCHW input, unless the model itself starts by transposing a channels-last input to NCHW (as
tf2onnx and Keras' ``export(format="onnx")`` do), in which case its input is already
channels last and is taken as it is (``input_layout="auto"`` tries NCHW, then NHWC).  Every
ONNX tensor is followed as an *index map* into the values of one node of the description:
``index[position]`` is the row-major position, in that node's output, of the element at
``position`` of the ONNX tensor (batch axis left out).  Reshape, Transpose, Flatten, Squeeze
and Unsqueeze only rearrange the map, so any chain of them is exact; a convolution or pool
needs the map of an NCHW view of a channels-last node, and a Gemm/MatMul reads any flat map,
whose order goes into its weight rows.  So the flatten after an NCHW convolution is
channel-major, as in the exporting framework, and a transposed flatten (tf2onnx's NHWC
order) comes out right as well.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np

from .. import ir, ops

__all__ = ["OnnxImportError", "UnsupportedOperatorError", "import_onnx", "load_onnx", "SUPPORTED_OPS"]

SUPPORTED_OPS = (
    "Gemm", "MatMul", "Conv", "BatchNormalization", "Relu", "Clip", "MaxPool", "GlobalMaxPool",
    "AveragePool", "GlobalAveragePool", "ReduceMean", "Pad", "Add", "Sum", "Sub", "Mul", "Div",
    "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Cast",
    "Softmax", "LogSoftmax", "Constant", "Shape", "Size",
)

# Stands for a dynamic batch size while shape arithmetic (Shape → Gather → Concat → Reshape)
# is folded; any value works, one that no exporter writes as a constant is safest.
_BATCH_PROBE = 17

_NON_RELU = "only ReLU hidden units can be coded exactly by one spike time in a bounded window"
_ACTIVATIONS = {
    "Sigmoid", "Tanh", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "HardSigmoid",
    "HardSwish", "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Swish", "Relu6",
}
_REASONS = {
    "Concat": "concatenation is not supported: merges in the network description are sums (Add)",
    "Split": "selecting parts of a tensor is not supported",
    "Slice": "selecting parts of a tensor is not supported",
    "Gather": "selecting parts of a tensor is not supported",
    "ConvTranspose": "transposed convolutions are not supported",
    "LRN": "local response normalisation is not linear in the data: no exact spiking counterpart",
    "InstanceNormalization": "normalisation by statistics of the data itself is not linear: no exact spiking counterpart",
    "LayerNormalization": "normalisation by statistics of the data itself is not linear: no exact spiking counterpart",
    "GroupNormalization": "normalisation by statistics of the data itself is not linear: no exact spiking counterpart",
    "If": "control flow is not supported",
    "Loop": "control flow is not supported",
    "Scan": "control flow is not supported",
}
_FLOAT_TYPES = {1, 11}  # TensorProto.FLOAT, DOUBLE: casting between them keeps float64 values
_HALF_TYPES = {10, 16}  # FLOAT16, BFLOAT16


class OnnxImportError(ValueError):
    """The model as a whole cannot be imported (inputs, outputs, shapes)."""


class UnsupportedOperatorError(OnnxImportError):
    """A node that the network description cannot represent exactly; the message names it."""

    def __init__(self, node, reason: str):
        label = node.name or (node.output[0] if len(node.output) else "?")
        super().__init__(f"node {label!r} ({node.op_type}): {reason}")
        self.node_name = label
        self.op_type = node.op_type


class _LayoutError(UnsupportedOperatorError):
    """A tensor is not laid out as its operator needs (the other input layout may fit)."""


@dataclass
class _Tensor:
    """A data tensor of the ONNX graph, as a view of one node of the description.

    ``index`` has the ONNX tensor's per-sample shape (batch axis left out); ``index[pos]`` is
    the row-major position, in the output of IR node ``node``, of the element at ``pos``.
    ``nonneg``: every value is ≥ 0 (a ReLU output, pooled or padded with zeros).  ``fresh``:
    the tensor is the direct output of the Dense/Conv2D ``node`` (an Add may join its bias).
    """

    node: str
    index: np.ndarray
    nonneg: bool = False
    fresh: bool = False


def _canonical(shape: tuple) -> np.ndarray:
    """The index map of the NCHW (or flat) view of a channels-last IR tensor of ``shape``."""
    positions = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    return positions.transpose(2, 0, 1) if len(shape) == 3 else positions


def _attrs(node) -> dict:
    from onnx import helper

    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        out[a.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _pool_size(size: int, kernel: int, stride: int, dilation: int, before: int, after: int, ceil: bool):
    """Output length along one axis (ONNX Conv/MaxPool/AveragePool with explicit pads).

    floor or ceil of (size + pads − effective kernel) / stride, plus 1; with ``ceil_mode`` a
    window that would start in the end padding is dropped (ONNX operators spec, MaxPool).
    """
    span = size + before + after - ((kernel - 1) * dilation + 1)
    if span < 0:
        return 0
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= size + before:
        out -= 1
    return out


class _Importer:
    def __init__(self, model, layout: str):
        self.model = model
        self.layout = layout
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.graph = ir.Graph()
        self.shapes: dict[str, tuple] = {}  # IR node -> output shape (per sample)
        self.consts: dict[str, np.ndarray] = {}
        self.tensors: dict[str, _Tensor] = {}
        self.flattened: dict[str, str] = {}  # IR node -> the Flatten node made of it
        self.uses: dict[str, int] = {}  # ONNX tensor -> number of readers

    # ---------------------------------------------------------------- the model as a whole

    def run(self) -> ir.Graph:
        from onnx import numpy_helper

        g = self.model.graph
        for init in g.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        for sparse in g.sparse_initializer:
            self.consts[sparse.values.name] = numpy_helper.to_array(sparse)
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise OnnxImportError(
                f"the model has {len(inputs)} data inputs ({', '.join(i.name for i in inputs)}); exactly one is supported"
            )
        if len(g.output) != 1:
            raise OnnxImportError(f"the model has {len(g.output)} outputs; exactly one (the logits) is supported")
        self.output = g.output[0].name
        self._input(inputs[0])
        nodes = self._needed(g)
        for node in nodes:
            for name in node.input:
                if name:
                    self.uses[name] = self.uses.get(name, 0) + 1
        self.uses[self.output] = self.uses.get(self.output, 0) + 1
        for node in nodes:
            self._node(node)
        return self._finish()

    def _input(self, vi) -> None:
        if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            raise OnnxImportError(f"input {vi.name!r} has no tensor shape; export the model with a fixed input size")
        dims = []
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            elif axis == 0:
                dims.append(None)
            else:
                raise OnnxImportError(
                    f"input {vi.name!r}: axis {axis} is dynamic ({d.dim_param or 'unknown size'}); only the batch "
                    "axis may be, so export the model with a fixed input size"
                )
        if not dims:
            raise OnnxImportError(f"input {vi.name!r} is a scalar; a batch of samples is expected")
        self.batch = dims[0] or _BATCH_PROBE
        per = tuple(dims[1:])
        if len(per) == 1:
            shape, index = per, np.arange(per[0], dtype=np.int64)
        elif len(per) == 3 and self.layout == "NCHW":
            shape = (per[1], per[2], per[0])
            index = _canonical(shape)
        elif len(per) == 3:
            shape, index = per, np.arange(int(np.prod(per)), dtype=np.int64).reshape(per)
        else:
            raise OnnxImportError(
                f"input {vi.name!r} has shape (N, {', '.join(map(str, per))}); only (N, features) and "
                "(N, C, H, W) inputs are supported"
            )
        name = self._unique(vi.name or "input")
        self.graph.add(name, ir.Input(shape))
        self.shapes[name] = tuple(shape)
        self.tensors[vi.name] = _Tensor(name, index)

    def _needed(self, g) -> list:
        """The nodes the output depends on, in a topological order (the file's, if it is one)."""
        producer = {}
        for node in g.node:
            for out in node.output:
                if out:
                    producer[out] = node
        needed, todo = set(), [self.output]
        while todo:
            node = producer.get(todo.pop())
            if node is None or id(node) in needed:
                continue
            needed.add(id(node))
            todo.extend(i for i in node.input if i)
        in_file = [n for n in g.node if id(n) in needed]
        known = set(self.consts) | set(self.tensors)
        ordered = []
        for node in in_file:
            if any(i and i not in known for i in node.input):
                break
            known.update(node.output)
            ordered.append(node)
        if len(ordered) == len(in_file):
            return in_file
        # Not sorted in the file (the spec asks for it, not every writer complies): sort here.
        ordered, done, pending = [], set(self.consts) | set(self.tensors), list(in_file)
        while pending:
            ready = [n for n in pending if all(not i or i in done for i in n.input)]
            if not ready:
                missing = sorted({i for n in pending for i in n.input if i and i not in done and i not in producer})
                raise OnnxImportError(f"the graph reads tensors that nothing produces: {', '.join(missing) or 'a cycle'}")
            for node in ready:
                done.update(node.output)
            ordered.extend(ready)
            pending = [n for n in pending if n not in ready]
        return ordered

    def _finish(self) -> ir.Graph:
        if self.output in self.consts:
            raise OnnxImportError(f"output {self.output!r} is a constant: it does not depend on the input")
        t = self.tensors[self.output]
        size = int(np.prod(self.shapes[t.node]))
        if t.index.size != size or not np.array_equal(t.index.ravel(), np.arange(size)):
            raise OnnxImportError(
                f"output {self.output!r} has shape (N, {', '.join(map(str, t.index.shape))}) in another element order "
                "than the network description's channels-last logits; flatten the logits (or pool to 1×1) in the model"
            )
        self.graph.output = t.node
        return self.graph

    # ------------------------------------------------------------------------ helpers

    def _unique(self, base: str) -> str:
        return ir.unique_name(base, self.graph.nodes)

    def _add(self, base: str, node, after: str | list, shape: tuple) -> str:
        name = self._unique(base)
        self.graph.add(name, node, after=after)
        self.shapes[name] = tuple(int(s) for s in shape)
        return name

    @staticmethod
    def _label(node) -> str:
        return node.name or node.output[0]

    def _const(self, node, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise UnsupportedOperatorError(node, f"{what} must be a constant (an initializer or a Constant node)")
        return self.consts[name]

    def _spatial(self, node, t: _Tensor) -> tuple:
        """(H, W, C) of a tensor that is the NCHW view of a channels-last IR node, else refuse."""
        shape = self.shapes[t.node]
        if len(shape) == 3 and t.index.shape == (shape[2], shape[0], shape[1]) and np.array_equal(t.index, _canonical(shape)):
            return shape
        raise _LayoutError(
            node,
            f"needs an (N, C, H, W) image, but its input is a rearranged view of shape (N, "
            f"{', '.join(map(str, t.index.shape))}) (a Reshape/Transpose that is not undone before it)",
        )

    def _flat(self, name: str) -> str:
        """The IR node holding ``name``'s values flattened (itself when already flat)."""
        if len(self.shapes[name]) == 1:
            return name
        if name not in self.flattened:
            self.flattened[name] = self._add(f"{name}/flatten", ir.Flatten(), name, (int(np.prod(self.shapes[name])),))
        return self.flattened[name]

    def _broadcast(self, node, const, shape: tuple) -> np.ndarray:
        """A constant broadcast (numpy rules, as ONNX) to the data's per-sample ``shape``."""
        c = np.asarray(const, np.float64)
        if c.ndim > len(shape):
            lead = c.shape[: c.ndim - len(shape)]
            if any(d != 1 for d in lead):
                raise UnsupportedOperatorError(node, f"a constant of shape {c.shape} varies along the batch axis")
            c = c.reshape(c.shape[c.ndim - len(shape):])
        try:
            if np.broadcast_shapes(c.shape, shape) != tuple(shape):
                raise ValueError
        except ValueError:
            raise UnsupportedOperatorError(
                node, f"a constant of shape {c.shape} does not broadcast to the data's per-sample shape {tuple(shape)}"
            ) from None
        return np.broadcast_to(c, shape)

    def _per_channel(self, node, t: _Tensor, values: np.ndarray) -> np.ndarray:
        """The per-channel vector (C,) of the IR node behind ``t`` that equals ``values``,
        given on ``t``'s ONNX shape; refuse if it varies over positions."""
        shape = self.shapes[t.node]
        full = np.empty(int(np.prod(shape)))
        full[t.index.ravel()] = values.ravel()
        full = full.reshape(shape)
        if len(shape) == 1:
            return full
        vec = full.reshape(-1, shape[-1])
        if not np.all(vec == vec[0]):
            raise UnsupportedOperatorError(node, "a constant that varies over image positions has no per-channel counterpart")
        return vec[0].copy()

    def _alias(self, node, t: _Tensor, index=None) -> None:
        """The output is the input's values rearranged (or not): no node of its own."""
        self.tensors[node.output[0]] = replace(t, index=t.index if index is None else index, fresh=False)

    def _axes(self, node, attrs: dict, position: int) -> list[int] | None:
        """``axes`` as an attribute (older opsets) or as a constant input (newer)."""
        if "axes" in attrs:
            return [int(a) for a in attrs["axes"]]
        if len(node.input) > position and node.input[position]:
            return [int(a) for a in np.ravel(self._const(node, node.input[position], "axes"))]
        return None

    # ------------------------------------------------------------------------ dispatch

    def _node(self, node) -> None:
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOperatorError(node, f"operators of domain {node.domain!r} are not supported")
        present = [i for i in node.input if i]
        for name in present:
            if name not in self.consts and name not in self.tensors:
                raise OnnxImportError(f"node {self._label(node)!r} ({node.op_type}): its input {name!r} is not known")
        if node.op_type == "Constant":
            self._constant(node)
            return
        if not any(i in self.tensors for i in present):
            self._fold(node)
            return
        op = node.op_type
        if op in _ACTIVATIONS:
            raise UnsupportedOperatorError(node, _NON_RELU)
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            raise UnsupportedOperatorError(node, _REASONS.get(op, f"{op} has no exact single-spike counterpart in exactsnn"))
        handler(node, _attrs(node))

    def _constant(self, node) -> None:
        from onnx import numpy_helper

        a = _attrs(node)
        if "value" in a:
            value = numpy_helper.to_array(a["value"])
        elif "value_float" in a or "value_int" in a:
            value = np.array(a.get("value_float", a.get("value_int")))
        elif "value_floats" in a or "value_ints" in a:
            value = np.array(a.get("value_floats", a.get("value_ints")))
        else:
            raise UnsupportedOperatorError(node, f"a constant given as {', '.join(a) or 'nothing'} is not supported")
        self.consts[node.output[0]] = value

    def _fold(self, node) -> None:
        """A node of constants only: evaluated once, with ONNX's reference implementation."""
        from onnx.reference import ReferenceEvaluator

        feeds = {i: self.consts[i] for i in node.input if i}
        try:
            outs = ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds)
        except Exception as err:  # the reference raises many types for what it cannot do
            raise UnsupportedOperatorError(node, f"cannot fold this constant sub-graph ({type(err).__name__}: {err})".splitlines()[0]) from err
        for name, value in zip(node.output, outs):
            if name:
                self.consts[name] = np.asarray(value)

    # ------------------------------------------------------------------ shape bookkeeping

    def _op_Shape(self, node, a) -> None:
        t = self.tensors[node.input[0]]
        shape = np.array([self.batch, *t.index.shape], np.int64)
        start, end = a.get("start", 0), a.get("end")
        self.consts[node.output[0]] = shape[start:end]

    def _op_Size(self, node, a) -> None:
        self.consts[node.output[0]] = np.array(self.batch * self.tensors[node.input[0]].index.size, np.int64)

    def _op_Identity(self, node, a) -> None:
        self._alias(node, self.tensors[node.input[0]])

    def _op_Dropout(self, node, a) -> None:
        if len(node.input) > 2 and node.input[2]:
            if bool(np.ravel(self._const(node, node.input[2], "training_mode"))[0]):
                raise UnsupportedOperatorError(node, "dropout in training mode is random: no exact counterpart")
        if len(node.output) > 1 and node.output[1] and self.uses.get(node.output[1], 0):
            raise UnsupportedOperatorError(node, "the dropout mask output is not supported")
        self._alias(node, self.tensors[node.input[0]])

    def _op_Cast(self, node, a) -> None:
        to = int(a.get("to", 1))
        if to in _HALF_TYPES:
            raise UnsupportedOperatorError(node, "casting to half precision rounds the values: not exact")
        if to not in _FLOAT_TYPES:
            raise UnsupportedOperatorError(node, f"casting the data to a non-float type ({to}) is not supported")
        self._alias(node, self.tensors[node.input[0]])

    def _op_Flatten(self, node, a) -> None:
        t = self.tensors[node.input[0]]
        axis = int(a.get("axis", 1))
        if axis < 0:
            axis += t.index.ndim + 1
        if axis == 0 or int(np.prod(t.index.shape[: axis - 1])) != 1:
            raise UnsupportedOperatorError(node, f"flattening at axis {a.get('axis', 1)} merges the batch axis with others")
        self._alias(node, t, t.index.reshape(-1))

    def _op_Reshape(self, node, a) -> None:
        t = self.tensors[node.input[0]]
        target = [int(v) for v in np.ravel(self._const(node, node.input[1], "the target shape"))]
        full = [self.batch, *t.index.shape]
        if not a.get("allowzero", 0):
            target = [full[k] if v == 0 and k < len(full) else v for k, v in enumerate(target)]
        total = self.batch * t.index.size
        if target.count(-1) > 1:
            raise UnsupportedOperatorError(node, f"target shape {target} has more than one -1")
        if -1 in target:
            known = int(np.prod([v for v in target if v != -1]))
            target[target.index(-1)] = total // known if known else 0
        if int(np.prod(target)) != total or not target or target[0] != self.batch:
            raise UnsupportedOperatorError(
                node, f"reshaping (N, {', '.join(map(str, t.index.shape))}) to {target} changes the batch axis"
            )
        self._alias(node, t, t.index.reshape(target[1:]))

    def _op_Transpose(self, node, a) -> None:
        t = self.tensors[node.input[0]]
        perm = [int(p) for p in a.get("perm", range(t.index.ndim, -1, -1))]
        if perm[0] != 0:
            raise UnsupportedOperatorError(node, f"permutation {perm} moves the batch axis")
        self._alias(node, t, t.index.transpose([p - 1 for p in perm[1:]]))

    def _op_Squeeze(self, node, a) -> None:
        t = self.tensors[node.input[0]]
        axes = self._axes(node, a, 1)
        rank = t.index.ndim + 1
        if axes is None:
            keep = [d for d in t.index.shape if d != 1]
        else:
            axes = sorted(ax % rank for ax in axes)
            if 0 in axes:
                raise UnsupportedOperatorError(node, "squeezing the batch axis is not supported")
            if any(t.index.shape[ax - 1] != 1 for ax in axes):
                raise UnsupportedOperatorError(node, f"axes {axes} are not of size 1")
            keep = [d for k, d in enumerate(t.index.shape) if k + 1 not in axes]
        self._alias(node, t, t.index.reshape(keep))

    def _op_Unsqueeze(self, node, a) -> None:
        t = self.tensors[node.input[0]]
        axes = self._axes(node, a, 1)
        if axes is None:
            raise UnsupportedOperatorError(node, "Unsqueeze without axes")
        rank = t.index.ndim + 1 + len(axes)
        axes = sorted(ax % rank for ax in axes)
        if 0 in axes:
            raise UnsupportedOperatorError(node, "a new axis before the batch axis is not supported")
        shape = list(t.index.shape)
        for ax in axes:
            shape.insert(ax - 1, 1)
        self._alias(node, t, t.index.reshape(shape))

    # --------------------------------------------------------------------- affine maps

    def _dense(self, node, t: _Tensor, weight: np.ndarray, bias: np.ndarray) -> None:
        """z = x W + b on a flat tensor; the rows of W go where ``t``'s elements are."""
        if t.index.ndim != 1:
            raise _LayoutError(
                node, f"needs a flat (N, features) input, got (N, {', '.join(map(str, t.index.shape))}); flatten it first"
            )
        if weight.shape[0] != t.index.size:
            raise UnsupportedOperatorError(node, f"weight of shape {weight.shape} does not fit {t.index.size} inputs")
        rows = np.empty_like(weight)
        rows[t.index] = weight
        src = self._flat(t.node)
        name = self._add(self._label(node), ir.Dense(rows, bias), src, (weight.shape[1],))
        self.tensors[node.output[0]] = _Tensor(name, np.arange(weight.shape[1], dtype=np.int64), fresh=True)

    def _op_Gemm(self, node, a) -> None:
        """Y = α A B + β C (B transposed if transB), A the data (ONNX Gemm)."""
        if node.input[0] not in self.tensors:
            raise UnsupportedOperatorError(node, "the data must be the first operand (A)")
        if a.get("transA", 0):
            raise UnsupportedOperatorError(node, "transA = 1 would transpose the batch axis")
        b = np.asarray(self._const(node, node.input[1], "the weight B"), np.float64)
        if b.ndim != 2:
            raise UnsupportedOperatorError(node, f"weight B of shape {b.shape} is not a matrix")
        weight = (b.T if a.get("transB", 0) else b) * float(a.get("alpha", 1.0))
        if len(node.input) > 2 and node.input[2]:
            c = self._broadcast(node, self._const(node, node.input[2], "the bias C"), (weight.shape[1],))
            bias = float(a.get("beta", 1.0)) * c
        else:
            bias = np.zeros(weight.shape[1])
        self._dense(node, self.tensors[node.input[0]], weight, np.array(bias, np.float64))

    def _op_MatMul(self, node, a) -> None:
        x, w = node.input[0], node.input[1]
        if x in self.tensors and w in self.tensors:
            raise UnsupportedOperatorError(node, "products of two tensors have no exact spiking counterpart")
        if x not in self.tensors:
            raise UnsupportedOperatorError(node, "a constant times the data (data on the right) is not supported")
        weight = np.asarray(self.consts[w], np.float64)
        if weight.ndim != 2:
            raise UnsupportedOperatorError(node, f"a constant of shape {weight.shape} is not a weight matrix")
        self._dense(node, self.tensors[x], weight, np.zeros(weight.shape[1]))

    def _pads(self, node, a, size: tuple, kernel: tuple, strides: tuple, dilations: tuple) -> tuple:
        """(top, bottom, left, right) from ``pads`` or ``auto_pad`` (ONNX Conv / pooling)."""
        auto = a.get("auto_pad", "NOTSET")
        if auto == "VALID":
            return (0, 0, 0, 0)
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out = []
            for n, k, s, d in zip(size, kernel, strides, dilations):
                total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
                small, large = total // 2, total - total // 2
                out += [small, large] if auto == "SAME_UPPER" else [large, small]
            return tuple(out)
        if auto != "NOTSET":
            raise UnsupportedOperatorError(node, f"auto_pad {auto!r} is not known")
        pads = [int(p) for p in a.get("pads", [0, 0, 0, 0])]
        if len(pads) != 4:
            raise UnsupportedOperatorError(node, f"pads {pads} are not those of a 2-D operator")
        if min(pads) < 0:
            raise UnsupportedOperatorError(node, f"negative pads {pads} (cropping) are not supported")
        return (pads[0], pads[2], pads[1], pads[3])

    @staticmethod
    def _same(size: tuple, kernel: tuple, strides: tuple, dilations=(1, 1)) -> tuple:
        """TensorFlow's ``same`` pads (top, bottom, left, right), which ir's ``padding="same"`` means."""
        top, bottom = ops.same_padding(size[0], kernel[0], strides[0], dilations[0])
        left, right = ops.same_padding(size[1], kernel[1], strides[1], dilations[1])
        return (top, bottom, left, right)

    def _op_Conv(self, node, a) -> None:
        """Y = W ⋆ X + B, cross-correlation over zero-padded X (ONNX Conv), as ir.Conv2D."""
        t = self.tensors[node.input[0]]
        w = np.asarray(self._const(node, node.input[1], "the weight"), np.float64)
        if w.ndim != 4:
            raise UnsupportedOperatorError(node, f"only 2-D convolutions are supported (weight of shape {w.shape})")
        if int(a.get("group", 1)) != 1:
            raise UnsupportedOperatorError(node, f"grouped or depthwise convolution (group = {a['group']}) is not supported")
        h, wd, c = self._spatial(node, t)
        out_c, in_c, kh, kw = w.shape
        if in_c != c:
            raise UnsupportedOperatorError(node, f"weight for {in_c} input channels, the image has {c}")
        strides = tuple(int(s) for s in a.get("strides", (1, 1)))
        dilations = tuple(int(d) for d in a.get("dilations", (1, 1)))
        pads = self._pads(node, a, (h, wd), (kh, kw), strides, dilations)
        if len(node.input) > 2 and node.input[2]:
            bias = np.asarray(self._const(node, node.input[2], "the bias"), np.float64).reshape(out_c)
        else:
            bias = np.zeros(out_c)
        src, padding = t.node, "valid"
        if pads == self._same((h, wd), (kh, kw), strides, dilations) and any(pads):
            padding = "same"
        elif any(pads):
            pt, pb, pl, pr = pads
            src = self._add(f"{self._label(node)}/pad", ir.ZeroPadding2D(pads), src, (h + pt + pb, wd + pl + pr, c))
        out = (_pool_size(h, kh, strides[0], dilations[0], pads[0], pads[1], False),
               _pool_size(wd, kw, strides[1], dilations[1], pads[2], pads[3], False), out_c)
        if min(out) < 1:
            raise UnsupportedOperatorError(node, f"kernel {kh}×{kw} does not fit the {h}×{wd} image")
        kernel = w.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
        name = self._add(self._label(node), ir.Conv2D(kernel, bias, strides, padding, dilations), src, out)
        self.tensors[node.output[0]] = _Tensor(name, _canonical(out), fresh=True)

    def _op_BatchNormalization(self, node, a) -> None:
        """y = γ (x − μ) / sqrt(σ² + ε) + β per channel (axis 1), inference form."""
        if a.get("training_mode", 0):
            raise UnsupportedOperatorError(node, "batch normalisation in training mode uses the batch's statistics")
        if any(o and self.uses.get(o, 0) for o in node.output[1:]):
            raise UnsupportedOperatorError(node, "the running-statistics outputs are not supported")
        t = self.tensors[node.input[0]]
        gamma, beta, mean, var = (np.asarray(self._const(node, n, what), np.float64).ravel()
                                  for n, what in zip(node.input[1:5], ("scale", "bias", "mean", "variance")))
        eps = float(a.get("epsilon", 1e-5))
        scale = gamma / np.sqrt(var + eps)
        self._channel_affine(node, t, scale, beta - mean * scale, per_axis1=True)

    def _channel_affine(self, node, t: _Tensor, scale, shift, per_axis1: bool = False) -> None:
        """y = scale · x + shift with constants that are per channel of the IR node behind ``t``.

        ``per_axis1``: the vectors are indexed by ONNX axis 1 (batch normalisation); otherwise
        they are constants broadcast against the whole tensor (Mul, Add, ...)."""
        shape = t.index.shape
        if per_axis1:
            if not shape or len(scale) != shape[0]:
                raise UnsupportedOperatorError(node, f"{len(scale)} channels, the tensor has shape (N, {', '.join(map(str, shape))})")
            expand = (len(scale),) + (1,) * (len(shape) - 1)
            scale, shift = np.reshape(scale, expand), np.reshape(shift, expand)
        s = self._per_channel(node, t, self._broadcast(node, scale, shape))
        c = self._per_channel(node, t, self._broadcast(node, shift, shape))
        name = self._add(self._label(node), ir.BatchNorm(s, c), t.node, self.shapes[t.node])
        nonneg = t.nonneg and bool(np.all(s >= 0) and np.all(c >= 0))
        self.tensors[node.output[0]] = _Tensor(name, t.index, nonneg=nonneg)

    def _elementwise(self, node, op: str) -> None:
        """x ∘ c for a constant c (Add, Sub, Mul, Div), or the sum of two tensors."""
        first, second = node.input[0], node.input[1]
        if first in self.tensors and second in self.tensors:
            if op != "Add":
                raise UnsupportedOperatorError(
                    node, "products and differences of two tensors have no exact spiking counterpart (merges are sums)"
                )
            self._sum(node, [first, second])
            return
        data_first = first in self.tensors
        data = first if data_first else second
        t = self.tensors[data]
        c = np.asarray(self.consts[second if data_first else first], np.float64)
        one, zero = np.ones(()), np.zeros(())
        if op == "Add":
            scale, shift = one, c
        elif op == "Sub":
            scale, shift = (one, -c) if data_first else (-one, c)
        elif op == "Mul":
            scale, shift = c, zero
        elif data_first:  # Div
            scale, shift = 1.0 / c, zero
        else:
            raise UnsupportedOperatorError(node, "dividing a constant by the data is not linear")
        if scale is one and t.fresh and self.uses.get(data, 0) == 1:
            # z = W x + b followed by + c, and nothing else reads z: one layer with bias b + c.
            irnode = self.graph.nodes[t.node]
            irnode.bias = irnode.bias + self._per_channel(node, t, self._broadcast(node, shift, t.index.shape))
            self.tensors[node.output[0]] = replace(t, fresh=True)
            return
        self._channel_affine(node, t, scale, shift)

    def _op_Add(self, node, a) -> None:
        self._elementwise(node, "Add")

    def _op_Sub(self, node, a) -> None:
        self._elementwise(node, "Sub")

    def _op_Mul(self, node, a) -> None:
        self._elementwise(node, "Mul")

    def _op_Div(self, node, a) -> None:
        self._elementwise(node, "Div")

    def _op_Sum(self, node, a) -> None:
        if any(i not in self.tensors for i in node.input):
            raise UnsupportedOperatorError(node, "a sum with constants is not supported (use Add)")
        if len(node.input) == 1:
            self._alias(node, self.tensors[node.input[0]])
        else:
            self._sum(node, list(node.input))

    def _sum(self, node, names: list) -> None:
        """A residual merge: the operands must be the same layout of equally shaped nodes."""
        ts = [self.tensors[n] for n in names]
        first = ts[0]
        for t in ts[1:]:
            if t.index.shape != first.index.shape:
                raise UnsupportedOperatorError(
                    node, f"adding tensors of shapes {first.index.shape} and {t.index.shape} (broadcasting) is not supported"
                )
            if self.shapes[t.node] != self.shapes[first.node] or not np.array_equal(t.index, first.index):
                raise _LayoutError(node, "the operands are laid out differently (a Reshape/Transpose on one of them)")
        name = self._add(self._label(node), ir.Add(), [t.node for t in ts], self.shapes[first.node])
        self.tensors[node.output[0]] = _Tensor(name, first.index, nonneg=all(t.nonneg for t in ts))

    # ----------------------------------------------------------------- ReLU and pooling

    def _relu(self, node) -> None:
        t = self.tensors[node.input[0]]
        name = self._add(self._label(node), ir.ReLU(), t.node, self.shapes[t.node])
        self.tensors[node.output[0]] = _Tensor(name, t.index, nonneg=True)

    def _op_Relu(self, node, a) -> None:
        self._relu(node)

    def _op_Clip(self, node, a) -> None:
        lo, hi = a.get("min"), a.get("max")
        if len(node.input) > 1 and node.input[1]:
            lo = float(np.ravel(self._const(node, node.input[1], "min"))[0])
        if len(node.input) > 2 and node.input[2]:
            hi = float(np.ravel(self._const(node, node.input[2], "max"))[0])
        if lo == 0 and (hi is None or hi == np.inf):
            self._relu(node)  # max(x, 0): a ReLU
            return
        raise UnsupportedOperatorError(node, f"Clip to [{lo}, {hi}] (ReLU6 and the like): {_NON_RELU}")

    def _pool_geometry(self, node, a, t: _Tensor):
        h, w, c = self._spatial(node, t)
        kernel = tuple(int(k) for k in a["kernel_shape"]) if "kernel_shape" in a else None
        if kernel is None or len(kernel) != 2:
            raise UnsupportedOperatorError(node, f"only 2-D pooling is supported (kernel_shape {kernel})")
        strides = tuple(int(s) for s in a.get("strides", (1, 1)))
        if any(int(d) != 1 for d in a.get("dilations", (1, 1))):
            raise UnsupportedOperatorError(node, f"dilated pooling (dilations {a['dilations']}) is not supported")
        pads = self._pads(node, a, (h, w), kernel, strides, (1, 1))
        ceil = bool(a.get("ceil_mode", 0))
        if a.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
            out = (-(-h // strides[0]), -(-w // strides[1]))
        else:
            out = (_pool_size(h, kernel[0], strides[0], 1, pads[0], pads[1], ceil),
                   _pool_size(w, kernel[1], strides[1], 1, pads[2], pads[3], ceil))
        if min(out) < 1:
            raise UnsupportedOperatorError(node, f"pool {kernel[0]}×{kernel[1]} does not fit the {h}×{w} image")
        floor = (_pool_size(h, kernel[0], strides[0], 1, pads[0], pads[1], False),
                 _pool_size(w, kernel[1], strides[1], 1, pads[2], pads[3], False))
        return (h, w, c), kernel, strides, pads, out, floor

    def _pooled(self, node, t: _Tensor, pool, src: str, out: tuple, c: int) -> None:
        name = self._add(self._label(node), pool, src, (out[0], out[1], c))
        self.tensors[node.output[0]] = _Tensor(name, _canonical((out[0], out[1], c)), nonneg=t.nonneg)

    def _op_MaxPool(self, node, a) -> None:
        """y = max over each window, padded entries ignored (ONNX MaxPool)."""
        if len(node.output) > 1 and node.output[1] and self.uses.get(node.output[1], 0):
            raise UnsupportedOperatorError(node, "the indices output is not supported")
        t = self.tensors[node.input[0]]
        (h, w, c), kernel, strides, pads, out, _ = self._pool_geometry(node, a, t)
        pt, pb, pl, pr = pads
        valid = (_pool_size(h, kernel[0], strides[0], 1, 0, 0, False), _pool_size(w, kernel[1], strides[1], 1, 0, 0, False))
        if not any(pads) and out == valid:
            self._pooled(node, t, ir.MaxPool2D(kernel, strides, "valid"), t.node, out, c)
        elif pads == self._same((h, w), kernel, strides) and out == (-(-h // strides[0]), -(-w // strides[1])):
            self._pooled(node, t, ir.MaxPool2D(kernel, strides, "same"), t.node, out, c)
        elif t.nonneg and max(pt, pb) < kernel[0] and max(pl, pr) < kernel[1]:
            # On values ≥ 0 a zero pad never wins a max, so it equals ONNX's ignored pad, also for
            # the extra end rows ceil_mode adds (each window keeps at least one real entry).
            bottom = max(pb, (out[0] - 1) * strides[0] + kernel[0] - h - pt)
            right = max(pr, (out[1] - 1) * strides[1] + kernel[1] - w - pl)
            padded = (h + pt + bottom, w + pl + right, c)
            src = self._add(f"{self._label(node)}/pad", ir.ZeroPadding2D((pt, bottom, pl, right)), t.node, padded)
            self._pooled(node, t, ir.MaxPool2D(kernel, strides, "valid"), src, out, c)
        else:
            raise UnsupportedOperatorError(
                node,
                f"pads {list(pads)} (top, bottom, left, right; ceil_mode {int(bool(a.get('ceil_mode', 0)))}) are not "
                "TensorFlow's 'same' padding, and on an input that may be negative a zero pad is not an ignored one "
                "(pool after the Relu)",
            )

    def _op_GlobalMaxPool(self, node, a) -> None:
        t = self.tensors[node.input[0]]
        h, w, c = self._spatial(node, t)
        self._pooled(node, t, ir.MaxPool2D((h, w), (h, w), "valid"), t.node, (1, 1), c)

    def _op_AveragePool(self, node, a) -> None:
        """y = mean over each window (ONNX AveragePool; pads counted iff count_include_pad)."""
        t = self.tensors[node.input[0]]
        (h, w, c), kernel, strides, pads, out, floor = self._pool_geometry(node, a, t)
        if out != floor:
            raise UnsupportedOperatorError(
                node, "ceil_mode adds windows that run past the padding; their divisor has no counterpart in exactsnn"
            )
        include = bool(a.get("count_include_pad", 0))
        pt, pb, pl, pr = pads
        if not any(pads):
            self._pooled(node, t, ir.AvgPool2D(kernel, strides, "valid"), t.node, out, c)
        elif include:
            padded = (h + pt + pb, w + pl + pr, c)
            src = self._add(f"{self._label(node)}/pad", ir.ZeroPadding2D(pads), t.node, padded)
            self._pooled(node, t, ir.AvgPool2D(kernel, strides, "valid"), src, out, c)
        elif pads == self._same((h, w), kernel, strides) and out == (-(-h // strides[0]), -(-w // strides[1])):
            self._pooled(node, t, ir.AvgPool2D(kernel, strides, "same"), t.node, out, c)
        else:
            raise UnsupportedOperatorError(
                node,
                f"pads {list(pads)} (top, bottom, left, right) with count_include_pad = 0 divide by the real entries, "
                "which the network description expresses only for TensorFlow's 'same' padding",
            )

    def _gap(self, node, t: _Tensor, keepdims: bool) -> None:
        h, w, c = self._spatial(node, t)
        name = self._add(self._label(node), ir.GlobalAvgPool2D(), t.node, (c,))
        index = np.arange(c, dtype=np.int64)
        self.tensors[node.output[0]] = _Tensor(name, index.reshape(c, 1, 1) if keepdims else index, nonneg=t.nonneg)

    def _op_GlobalAveragePool(self, node, a) -> None:
        self._gap(node, self.tensors[node.input[0]], keepdims=True)

    def _op_ReduceMean(self, node, a) -> None:
        t = self.tensors[node.input[0]]
        axes = self._axes(node, a, 1)
        rank = t.index.ndim + 1
        if axes is None or sorted(ax % rank for ax in axes) != [2, 3] or rank != 4:
            raise UnsupportedOperatorError(node, f"a mean over axes {axes} is not supported (only over H and W of an NCHW image)")
        self._gap(node, t, keepdims=bool(a.get("keepdims", 1)))

    def _op_Pad(self, node, a) -> None:
        """Zero padding of H and W (ONNX Pad, mode constant, value 0)."""
        t = self.tensors[node.input[0]]
        if a.get("mode", "constant") != "constant":
            raise UnsupportedOperatorError(node, f"{a['mode']!r} padding is not zero padding")
        value = a.get("value", 0.0)
        if len(node.input) > 2 and node.input[2]:
            value = float(np.ravel(self._const(node, node.input[2], "the pad value"))[0])
        if value != 0:
            raise UnsupportedOperatorError(node, f"padding with {value} instead of 0 is not supported")
        pads = [int(p) for p in (a["pads"] if "pads" in a else np.ravel(self._const(node, node.input[1], "pads")))]
        rank = t.index.ndim + 1
        axes = self._axes(node, {}, 3) or list(range(rank))
        begin, end = [0] * rank, [0] * rank
        for k, ax in enumerate(axes):
            begin[ax % rank], end[ax % rank] = pads[k], pads[k + len(axes)]
        h, w, c = self._spatial(node, t)
        if begin[:2] != [0, 0] or end[:2] != [0, 0] or min(begin + end) < 0:
            raise UnsupportedOperatorError(node, f"pads {pads}: only non-negative padding of H and W is supported")
        zp = (begin[2], end[2], begin[3], end[3])
        name = self._add(self._label(node), ir.ZeroPadding2D(zp), t.node, (h + zp[0] + zp[1], w + zp[2] + zp[3], c))
        out = self.shapes[name]
        self.tensors[node.output[0]] = _Tensor(name, _canonical(out), nonneg=t.nonneg)

    # ----------------------------------------------------------------------- read-out

    def _softmax(self, node, a) -> None:
        if node.output[0] != self.output:
            raise UnsupportedOperatorError(
                node, f"{node.op_type} is only allowed as the last operation (the read-out codes the logits before it)"
            )
        t = self.tensors[node.input[0]]
        axis = int(a.get("axis", 1 if self.opset < 13 else -1))
        if t.index.ndim != 1 or axis not in (1, -1):
            raise UnsupportedOperatorError(node, f"{node.op_type} over axis {axis} of (N, {', '.join(map(str, t.index.shape))})")
        self._alias(node, t)

    _op_Softmax = _softmax
    _op_LogSoftmax = _softmax


def load_onnx(path):
    """Read an ONNX file (weights in external data files included) as an ``onnx.ModelProto``."""
    import onnx

    return onnx.load(os.fspath(path))


def import_onnx(model, *, input_layout: str = "auto") -> ir.Graph:
    """Translate an ONNX model into an :class:`exactsnn.ir.Graph` of float64 nodes.

    ``model`` is an ``onnx.ModelProto``, a path to a ``.onnx`` file or its bytes.
    ``input_layout`` says how an image input is laid out: ``"NCHW"`` (PyTorch), ``"NHWC"``
    (a model that transposes its input to NCHW itself, as tf2onnx writes), or ``"auto"``:
    NCHW unless the model only fits NHWC.  The network description always takes channels-last
    inputs: ``x.transpose(0, 2, 3, 1)`` of an NCHW model's input.  Operators that have no exact
    counterpart raise :class:`UnsupportedOperatorError` naming the node (see the module
    docstring for what is supported).
    """
    import onnx

    if isinstance(model, (bytes, bytearray)):
        model = onnx.load_model_from_string(bytes(model))
    elif not isinstance(model, onnx.ModelProto):
        model = load_onnx(model)
    if input_layout not in ("auto", "NCHW", "NHWC"):
        raise ValueError(f"input_layout must be 'auto', 'NCHW' or 'NHWC', not {input_layout!r}")
    if input_layout != "auto":
        return _Importer(model, input_layout).run()
    try:
        return _Importer(model, "NCHW").run()
    except _LayoutError as first:
        try:
            return _Importer(model, "NHWC").run()
        except _LayoutError:
            raise first from None
