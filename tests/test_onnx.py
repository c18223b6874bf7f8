"""The ONNX importer against witnesses that nobody here wrote.

* onnxruntime runs every ONNX model (float32): the float64 evaluation of the imported network
  description (:func:`exactsnn.evaluate.evaluate`) equals its logits to float32 tolerance, and
  the SNN's predictions equal its predictions wherever the top-two margin exceeds that tolerance.
* ONNX's own reference evaluator runs a float64 copy of each hand-built model: the imported
  description equals it to 1e-12 (so layouts, pads and flatten orders are exact, not just close).
* PyTorch in float64 runs the exported PyTorch models (LeNet, a VGG-style net with batch
  normalisation, torchvision's resnet18 at 64×64): the description equals it to 1e-10.
* Keras: a Keras model exported to ONNX converts to the same SNN as the Keras model itself.

Models are built with ``onnx.helper`` or exported in the tests (a session-scoped fixture), never
committed.  Every SNN's logits equal the description's float64 evaluation to 1e-9.
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import exactsnn  # noqa: E402
from exactsnn import ir  # noqa: E402
from exactsnn.evaluate import evaluate  # noqa: E402
from exactsnn.importers.onnx import OnnxImportError, UnsupportedOperatorError, import_onnx  # noqa: E402

FLOAT32_TOL = 1e-5  # onnxruntime's float32 logits against float64, relative to the largest |logit|
SNN_TOL = 1e-9  # the SNN's read-out against the float64 evaluation (DESIGN §6)
REF_TOL = 1e-12  # float64 against float64


# ------------------------------------------------------------------------------- witnesses


def _ort():
    return pytest.importorskip("onnxruntime")


def ort_logits(model, x) -> np.ndarray:
    """onnxruntime's outputs on ``x`` (the model's own input layout), one run per sample when
    the model's batch size is fixed."""
    ort = _ort()
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.asarray(x, np.float32)
    if isinstance(inp.shape[0], int):
        return np.concatenate([sess.run(None, {inp.name: x[i : i + 1]})[0] for i in range(len(x))]).astype(np.float64)
    return sess.run(None, {inp.name: x})[0].astype(np.float64)


def as_double(model):
    """A copy of ``model`` computing in float64: initializers, Constant nodes, casts and I/O types."""
    m = copy.deepcopy(model)
    g = m.graph
    for k, init in enumerate(g.initializer):
        if init.data_type == TensorProto.FLOAT:
            g.initializer[k].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float64), init.name))
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = TensorProto.DOUBLE
    for node in g.node:
        for a in node.attribute:
            if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float64)))
            if node.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT:
                a.i = TensorProto.DOUBLE
    return m


def reference_logits(model, x) -> np.ndarray:
    """ONNX's reference evaluator (NumPy, by the ONNX project) on the float64 copy of ``model``."""
    from onnx.reference import ReferenceEvaluator

    m = as_double(model)
    sess = ReferenceEvaluator(m)
    name = m.graph.input[0].name
    x = np.asarray(x, np.float64)
    if m.graph.input[0].type.tensor_type.shape.dim[0].HasField("dim_value"):  # a fixed batch size
        return np.concatenate([np.asarray(sess.run(None, {name: x[i : i + 1]})[0], np.float64) for i in range(len(x))])
    return np.asarray(sess.run(None, {name: x})[0], np.float64)


def logits_model(model):
    """``model`` read out before its final Softmax (what the SNN reproduces), for onnxruntime."""
    m = copy.deepcopy(model)
    last = next(n for n in m.graph.node if m.graph.output[0].name in n.output)
    if last.op_type in ("Softmax", "LogSoftmax"):
        m.graph.output[0].name = last.input[0]
        m.graph.node.remove(last)
    return m


def channels_last(x):
    x = np.asarray(x, np.float64)
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def check_snn(graph, x_ir, logits_ref, *, x_sample=None, input_range=None):
    """Convert ``graph``, simulate it on ``x_ir`` and hold it to the float64 evaluation and to
    the witness ``logits_ref`` (float32): returns the numbers for the report."""
    x_sample = x_ir if x_sample is None else x_sample
    if input_range is None:
        input_range = (float(min(x_sample.min(), x_ir.min())), float(max(x_sample.max(), x_ir.max())))
    ours = evaluate(graph, x_ir)
    net = exactsnn.convert(graph, x_sample, input_range=input_range)
    sim = exactsnn.simulate(net, x_ir)
    scale = max(1.0, float(np.abs(ours).max()))
    snn_err = float(np.abs(sim.logits - ours).max())
    assert snn_err <= SNN_TOL * scale, snn_err
    assert int(sim.deviating.sum()) == 0
    top = np.sort(logits_ref, axis=1)
    decided = (top[:, -1] - top[:, -2]) > 2 * FLOAT32_TOL * scale
    agree = sim.predictions == logits_ref.argmax(1)
    assert agree[decided].all(), np.flatnonzero(~agree & decided)
    return {"snn_vs_ir": snn_err, "agreement": float(agree.mean()), "decided": int(decided.sum()),
            "deviating": int(sim.deviating.sum()), "net": net, "sim": sim}


def check_import(model, x, *, reference=True, layout="auto"):
    """Import ``model`` and compare the description's float64 evaluation with onnxruntime
    (float32 tolerance) and, for hand-built models, with the float64 ONNX reference (1e-12)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    graph = import_onnx(model, input_layout=layout)
    x_ir = channels_last(x) if (np.ndim(x) == 4 and graph.nodes[graph.source].shape != x.shape[1:]) else np.asarray(x, np.float64)
    ours = evaluate(graph, x_ir)
    model = logits_model(model)
    ort = ort_logits(model, x)
    scale = max(1.0, float(np.abs(ort).max()))
    assert ours.shape == ort.reshape(len(ort), -1).shape
    err = float(np.abs(ours - ort.reshape(len(ort), -1)).max())
    assert err <= FLOAT32_TOL * scale, err
    if reference:
        ref = reference_logits(model, x).reshape(len(x), -1)
        assert np.abs(ours - ref).max() <= REF_TOL * scale, np.abs(ours - ref).max()
    return graph, x_ir, ort.reshape(len(ort), -1)


# --------------------------------------------------------------------- hand-built models


class Builder:
    """An ONNX graph written node by node with onnx.helper, random float32 weights."""

    def __init__(self, shape, seed=0, batch="N", name="x"):
        self.rng = np.random.default_rng(seed)
        self.shape, self.batch, self.input = tuple(shape), batch, name
        self.nodes, self.inits, self.k = [], [], 0

    def const(self, value, dtype=None) -> str:
        self.k += 1
        arr = np.asarray(value, dtype or (np.int64 if np.asarray(value).dtype.kind in "iu" else np.float32))
        name = f"c{self.k}"
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def node(self, op, inputs, outputs=1, name=None, **attrs):
        self.k += 1
        name = name or f"{op.lower()}{self.k}"
        outs = [f"{name}_out{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        return outs[0] if outputs == 1 else outs

    def weights(self, *shape, fan_in):
        return self.rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)

    def conv(self, x, cin, cout, k=3, bias=True, **attrs):
        kh, kw = (k, k) if isinstance(k, int) else k
        ins = [x, self.const(self.weights(cout, cin, kh, kw, fan_in=cin * kh * kw))]
        if bias:
            ins.append(self.const(self.rng.normal(0.0, 0.1, cout)))
        return self.node("Conv", ins, **attrs)

    def gemm(self, x, n_in, n_out, **attrs):
        w = self.weights(n_out, n_in, fan_in=n_in) if attrs.get("transB") else self.weights(n_in, n_out, fan_in=n_in)
        return self.node("Gemm", [x, self.const(w), self.const(self.rng.normal(0.0, 0.1, n_out))], **attrs)

    def bn(self, x, c, **attrs):
        gamma = self.rng.normal(1.0, 0.5, c)
        gamma[: max(1, c // 3)] *= -1.0  # negative scales: sign-aware pooling and folding
        stats = [gamma, self.rng.normal(0, 0.2, c), self.rng.normal(0, 0.2, c), self.rng.uniform(0.25, 1.75, c)]
        return self.node("BatchNormalization", [x] + [self.const(s) for s in stats], **attrs)

    def relu(self, x):
        return self.node("Relu", [x])

    def head(self, x, n_in, classes=5):
        """Flatten, then Gemm: the logits."""
        return self.gemm(self.node("Flatten", [x], axis=1), n_in, classes, transB=1)

    def model(self, out, opset=17, rank=2):
        inp = helper.make_tensor_value_info(self.input, TensorProto.FLOAT, [self.batch, *self.shape])
        outp = helper.make_tensor_value_info(out, TensorProto.FLOAT, [self.batch] + [f"d{k}" for k in range(1, rank)])
        graph = helper.make_graph(self.nodes, "exactsnn_test", [inp], [outp], self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = min(m.ir_version, 8)  # readable by every onnxruntime we may meet
        onnx.checker.check_model(m)
        return m

    def data(self, n=24):
        return self.rng.normal(0.0, 1.0, (n, *self.shape)).astype(np.float32)


def case_conv_pads():
    """Conv: explicit symmetric pads (= TensorFlow same), asymmetric pads, stride 2 with pads
    on an even image (not TensorFlow's same), dilation 2, a 1×3 kernel with strides (2, 1)."""
    b = Builder((3, 12, 12))
    h = b.relu(b.conv(b.input, 3, 6, 3, pads=[1, 1, 1, 1]))  # 12 × 12 (TensorFlow same)
    h = b.relu(b.conv(h, 6, 8, 3, strides=[2, 2], pads=[1, 1, 1, 1]))  # 6 × 6 (same would pad 0, 1)
    h = b.relu(b.conv(h, 8, 8, 3, pads=[2, 0, 1, 1]))  # [top, left, bottom, right]: 7 × 5
    h = b.relu(b.conv(h, 8, 8, 3, dilations=[2, 2], pads=[2, 2, 2, 2]))  # 7 × 5
    h = b.relu(b.conv(h, 8, 4, (1, 3), strides=[2, 1], pads=[0, 1, 0, 1]))  # 4 × 5
    return b.model(b.head(h, 4 * 4 * 5)), b.data()


def case_conv_auto_pad():
    """Conv with auto_pad SAME_UPPER and SAME_LOWER at stride 2 (they differ), VALID, no bias."""
    b = Builder((2, 11, 10))
    h = b.relu(b.conv(b.input, 2, 5, 3, strides=[2, 2], auto_pad="SAME_UPPER"))  # 6 × 5
    h = b.relu(b.conv(h, 5, 5, 2, strides=[2, 2], auto_pad="SAME_LOWER"))  # 3 × 3
    h = b.relu(b.conv(h, 5, 6, 2, auto_pad="VALID", bias=False))  # 2 × 2
    return b.model(b.head(h, 6 * 2 * 2)), b.data()


def case_batch_norm():
    """BatchNormalization before the ReLU (a conv's output) and after it (folded into the next layer)."""
    b = Builder((3, 8, 8))
    h = b.relu(b.bn(b.conv(b.input, 3, 6, 3, pads=[1, 1, 1, 1]), 6, epsilon=1e-3))
    h = b.bn(h, 6)  # after the ReLU
    h = b.relu(b.conv(h, 6, 4, 3))  # 6 × 6
    return b.model(b.head(h, 4 * 6 * 6)), b.data()


def case_max_pool():
    """MaxPool: valid; pads that are TensorFlow's same, before the ReLU; pads that are not
    (k3 s2 p1 after a ReLU, zero-padded); ceil_mode on an odd image."""
    b = Builder((3, 12, 12))
    h = b.relu(b.conv(b.input, 3, 6, 3, pads=[1, 1, 1, 1]))  # 12
    h = b.node("MaxPool", [h], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])  # 6 (same would pad 0, 1)
    h = b.conv(h, 6, 6, 3, pads=[1, 1, 1, 1])
    h = b.relu(b.node("MaxPool", [h], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]))  # same: 6
    h = b.relu(b.conv(h, 6, 6, 2))  # 5
    h = b.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)  # 3 (floor: 2)
    h = b.relu(b.conv(h, 6, 4, 1))
    h = b.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])  # valid: 1
    return b.model(b.head(h, 4)), b.data()


def case_average_pool():
    """AveragePool: count_include_pad 1 with pads, count_include_pad 0 with TensorFlow-same pads,
    valid, ceil_mode where it changes nothing."""
    b = Builder((3, 12, 12))
    h = b.relu(b.conv(b.input, 3, 6, 3, pads=[1, 1, 1, 1]))
    h = b.node("AveragePool", [h], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)  # 7
    h = b.relu(b.conv(h, 6, 6, 3, pads=[1, 1, 1, 1]))
    h = b.node("AveragePool", [h], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)  # 3 (no partial window)
    h = b.relu(b.conv(h, 6, 6, 1))
    h = b.node("AveragePool", [h], kernel_shape=[2, 2], strides=[1, 1], auto_pad="SAME_UPPER", count_include_pad=0)  # 3
    return b.model(b.head(h, 6 * 3 * 3)), b.data()


def case_global_pools():
    """GlobalAveragePool → Flatten, ReduceMean over H, W (opset 18: axes as an input), GlobalMaxPool, Squeeze."""
    b = Builder((3, 8, 8))
    h = b.relu(b.conv(b.input, 3, 6, 3, pads=[1, 1, 1, 1]))
    g1 = b.node("Flatten", [b.node("GlobalAveragePool", [h])], axis=1)
    h2 = b.relu(b.conv(h, 6, 6, 3))
    g2 = b.node("ReduceMean", [h2, b.const([2, 3])], keepdims=0)
    h3 = b.relu(b.conv(h2, 6, 6, 3))
    g3 = b.node("Squeeze", [b.node("GlobalMaxPool", [h3]), b.const([3, 2])])
    out = b.node("Add", [b.node("Add", [b.gemm(g1, 6, 4, transB=1), b.gemm(g2, 6, 4)]), b.gemm(g3, 6, 4, transB=1)])
    return b.model(out, opset=18), b.data()


def case_residual():
    """Residual merges: Add of a block and its input, Sum of a block and a 1×1 projection."""
    b = Builder((4, 8, 8))
    x = b.relu(b.conv(b.input, 4, 6, 3, pads=[1, 1, 1, 1]))
    y = b.conv(b.relu(b.conv(x, 6, 6, 3, pads=[1, 1, 1, 1])), 6, 6, 3, pads=[1, 1, 1, 1])
    x = b.relu(b.node("Add", [y, x]))
    y = b.bn(b.conv(b.relu(b.conv(x, 6, 8, 3, strides=[2, 2], pads=[1, 1, 1, 1])), 8, 8, 3, pads=[1, 1, 1, 1]), 8)
    proj = b.bn(b.conv(x, 6, 8, 1, strides=[2, 2], bias=False), 8)
    x = b.relu(b.node("Sum", [y, proj]))
    return b.model(b.head(b.node("GlobalAveragePool", [x]), 8)), b.data()


def case_flatten_orders():
    """Flatten after an NCHW conv (channel-major), a Transpose to NHWC before a Reshape
    (the order tf2onnx writes), a Reshape whose shape the graph computes (Shape → Gather →
    Unsqueeze → Concat, as an exporter leaves it without constant folding), Unsqueeze/Squeeze."""
    b = Builder((3, 6, 5))
    h = b.relu(b.conv(b.input, 3, 4, 3, pads=[1, 1, 1, 1]))  # 4 × 6 × 5
    flat = b.node("Flatten", [h], axis=1)
    nhwc = b.node("Reshape", [b.node("Transpose", [h], perm=[0, 2, 3, 1]), b.const([0, -1])])
    n = b.node("Unsqueeze", [b.node("Gather", [b.node("Shape", [h]), b.const(0)], axis=0), b.const([0])])
    computed = b.node("Reshape", [h, b.node("Concat", [n, b.const([-1])], axis=0)])
    squeezed = b.node("Squeeze", [b.node("Unsqueeze", [computed, b.const([2, 3])]), b.const([3, 2])])
    z = [b.gemm(flat, 120, 5, transB=1), b.gemm(nhwc, 120, 5), b.node("MatMul", [squeezed, b.const(b.weights(120, 5, fan_in=120))])]
    return b.model(b.node("Add", [b.node("Add", [z[0], z[1]]), z[2]])), b.data()


def case_arithmetic():
    """Per-channel Mul, Add, Sub (both ways) and Div (the form tf2onnx gives batch normalisation),
    Clip(min 0) as a ReLU, Pad, Constant nodes for weights and shapes, Cast to float."""
    b = Builder((3, 7, 7))
    h = b.conv(b.input, 3, 5, 3)  # 5 × 5
    h = b.node("Mul", [h, b.const(b.rng.normal(0, 1, (5, 1, 1)))])
    h = b.node("Add", [b.const(b.rng.normal(0, 0.3, (1, 5, 1, 1))), h])
    h = b.node("Clip", [h, b.const(np.float32(0.0))])  # min 0, no max: a ReLU
    h = b.node("Sub", [h, b.const(b.rng.normal(0, 0.3, (5, 1, 1)))])
    h = b.node("Div", [h, b.const(b.rng.uniform(0.5, 2.0, (5, 1, 1)))])
    h = b.node("Sub", [b.const(np.float32(0.25)), h])
    h = b.node("Pad", [h, b.const([0, 0, 1, 2, 0, 0, 2, 1])])  # H: 1 top, 2 bottom; W: 2 left, 1 right
    w = b.node("Constant", [], value=numpy_helper.from_array(b.weights(4, 5, 3, 3, fan_in=45).astype(np.float32)))
    h = b.relu(b.node("Conv", [h, w]))  # 6 × 6
    h = b.node("Cast", [h], to=TensorProto.FLOAT)
    shape = b.node("Constant", [], value=numpy_helper.from_array(np.array([-1, 144], np.int64)))
    return b.model(b.gemm(b.node("Reshape", [h, shape]), 144, 5, transB=1), opset=13), b.data()


def case_mlp_softmax():
    """Gemm (alpha, beta, C of shape (1, n), transB both ways), MatMul + Add, Dropout,
    Identity, a final Softmax; a flat input; opset 11."""
    b = Builder((20,))
    h = b.node("Gemm", [b.input, b.const(b.weights(16, 20, fan_in=20)), b.const(b.rng.normal(0, 0.1, (1, 16)))],
               transB=1, alpha=0.5, beta=2.0)
    h = b.node("Dropout", [b.relu(h)], ratio=0.3)
    h = b.node("Add", [b.node("MatMul", [h, b.const(b.weights(16, 12, fan_in=16))]), b.const(b.rng.normal(0, 0.1, 12))])
    logits = b.gemm(b.node("Identity", [b.relu(h)]), 12, 6)
    soft = b.node("Softmax", [logits], axis=1)
    return (b.model(soft, opset=11), b.model(logits, opset=11)), b.data()


def case_nhwc_input():
    """A channels-last input that the model transposes to NCHW itself (tf2onnx's pattern), and
    back to NHWC before its flatten; a fixed batch size of 1 and Reshape [1, -1]."""
    b = Builder((6, 6, 3), batch=1)
    h = b.node("Transpose", [b.input], perm=[0, 3, 1, 2])
    h = b.relu(b.conv(h, 3, 4, 3, pads=[1, 1, 1, 1]))
    h = b.node("Reshape", [b.node("Transpose", [h], perm=[0, 2, 3, 1]), b.const([1, -1])])
    h = b.node("Add", [b.node("MatMul", [h, b.const(b.weights(144, 5, fan_in=144))]), b.const(b.rng.normal(0, 0.1, 5))])
    return b.model(h), b.data()


def case_nhwc_single_channel():
    """tf2onnx's form of the NHWC → NCHW transpose for one channel: a Reshape to (N, 1, H, W)."""
    b = Builder((8, 8, 1))
    h = b.node("Reshape", [b.input, b.const([-1, 1, 8, 8])])
    h = b.relu(b.conv(h, 1, 4, 3, pads=[1, 1, 1, 1]))
    return b.model(b.head(h, 4 * 8 * 8)), b.data()


CASES = {
    "conv_pads": case_conv_pads,
    "conv_auto_pad": case_conv_auto_pad,
    "batch_norm": case_batch_norm,
    "max_pool": case_max_pool,
    "average_pool": case_average_pool,
    "global_pools": case_global_pools,
    "residual": case_residual,
    "flatten_orders": case_flatten_orders,
    "arithmetic": case_arithmetic,
    "nhwc_input": case_nhwc_input,
    "nhwc_single_channel": case_nhwc_single_channel,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hand_built_models_match_onnxruntime_reference_and_snn(case):
    model, x = CASES[case]()
    graph, x_ir, ort = check_import(model, x)
    check_snn(graph, x_ir, ort)


def test_final_softmax_is_dropped_and_the_logits_match():
    (with_softmax, logits_model), x = case_mlp_softmax()
    graph, x_ir, ort = check_import(logits_model, x)
    imported = import_onnx(with_softmax)
    assert np.array_equal(evaluate(imported, x_ir), evaluate(graph, x_ir))
    probs = ort_logits(with_softmax, x)
    assert np.array_equal(probs.argmax(1), ort.argmax(1))
    check_snn(imported, x_ir, ort)


def test_nhwc_input_is_recognised_and_can_be_forced():
    model, x = case_nhwc_input()
    assert import_onnx(model).nodes["x"].shape == (6, 6, 3)  # the model's own channels-last input
    assert import_onnx(case_nhwc_single_channel()[0]).nodes["x"].shape == (8, 8, 1)
    with pytest.raises(UnsupportedOperatorError, match=r"needs an \(N, C, H, W\) image"):
        import_onnx(model, input_layout="NCHW")


def test_nchw_input_becomes_channels_last():
    model, x = case_conv_pads()
    graph = import_onnx(model)
    assert graph.nodes["x"].shape == (12, 12, 3)
    with pytest.raises(ValueError, match=r"inputs have shape \(3, 12, 12\), the network expects \(12, 12, 3\)"):
        evaluate(graph, x)


def test_an_add_after_a_matmul_becomes_its_bias():
    (_, logits_model), _ = case_mlp_softmax()
    graph = import_onnx(logits_model)
    kinds = [type(n).__name__ for n in graph.nodes.values()]
    assert kinds == ["Input", "Dense", "ReLU", "Dense", "ReLU", "Dense"]


# ------------------------------------------------------------------------------- refusals


def _refusal(build, opset=17, shape=(3, 6, 6)):
    """A small model whose node 'bad' is built by ``build(b, h)``, h a ReLU image."""
    b = Builder(shape)
    h = b.relu(b.conv(b.input, shape[0], 4, 3, pads=[1, 1, 1, 1])) if len(shape) == 3 else b.relu(b.gemm(b.input, shape[0], 6))
    out = build(b, h)
    if out is None:
        return None
    return b.model(out, opset=opset)


REFUSALS = {
    "sigmoid": (lambda b, h: b.head(b.node("Sigmoid", [h], name="bad"), 144), "Sigmoid", "only ReLU"),
    "tanh": (lambda b, h: b.head(b.node("Tanh", [h], name="bad"), 144), "Tanh", "only ReLU"),
    "leaky_relu": (lambda b, h: b.head(b.node("LeakyRelu", [h], name="bad", alpha=0.1), 144), "LeakyRelu", "only ReLU"),
    "relu6": (lambda b, h: b.head(b.node("Clip", [h, b.const(np.float32(0)), b.const(np.float32(6))], name="bad"), 144),
              "Clip", "ReLU6"),
    "concat": (lambda b, h: b.head(b.node("Concat", [h, h], name="bad", axis=1), 288), "Concat", "merges"),
    "grouped_conv": (lambda b, h: b.head(b.relu(b.node("Conv", [h, b.const(b.weights(4, 2, 3, 3, fan_in=18))], name="bad",
                                                        group=2, pads=[1, 1, 1, 1])), 144), "Conv", "group = 2"),
    "softmax_inside": (lambda b, h: b.head(b.node("Softmax", [h], name="bad", axis=1), 144), "Softmax", "last operation"),
    "product": (lambda b, h: b.head(b.node("Mul", [h, h], name="bad"), 144), "Mul", "products"),
    "matmul_two_tensors": (lambda b, h: b.node("MatMul", [b.node("Flatten", [h]), b.node("Flatten", [h])], name="bad"),
                           "MatMul", "products"),
    "pool_pads_on_signed_values": (lambda b, h: b.head(b.relu(b.node("MaxPool", [b.conv(h, 4, 4, 3)], name="bad",
                                                                    kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])), 16),
                                   "MaxPool", "may be negative"),
    "avg_exclude_pad_not_same": (lambda b, h: b.head(b.node("AveragePool", [h], name="bad", kernel_shape=[3, 3], strides=[2, 2],
                                                          pads=[1, 1, 1, 1], count_include_pad=0), 36),
                                 "AveragePool", "count_include_pad = 0"),
    "transpose_batch": (lambda b, h: b.head(b.node("Transpose", [h], name="bad", perm=[1, 0, 2, 3]), 144), "Transpose", "batch axis"),
    "reshape_batch": (lambda b, h: b.node("Reshape", [h, b.const([1, -1])], name="bad"), "Reshape", "batch axis"),
    "other_domain": (None, "FusedConv", "domain 'com.microsoft'"),  # built in the test: it needs its opset
    "bn_training": (lambda b, h: b.head(b.bn(h, 4, name="bad", training_mode=1), 144), "BatchNormalization", "training mode"),
    "conv_transpose": (lambda b, h: b.head(b.node("ConvTranspose", [h, b.const(b.weights(4, 4, 2, 2, fan_in=16))], name="bad"), 196),
                       "ConvTranspose", "transposed"),
    "slice": (lambda b, h: b.head(b.node("Slice", [h, b.const([0]), b.const([2]), b.const([1])], name="bad"), 72), "Slice",
              "selecting parts"),
}


def _check_message(err, op, reason):
    msg = str(err)
    assert "\n" not in msg, msg
    assert "'bad'" in msg and f"({op})" in msg and reason in msg, msg


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_unsupported_operators_are_refused_in_one_line_naming_the_node(case):
    build, op, reason = REFUSALS[case]
    if case == "other_domain":
        b = Builder((3, 6, 6))
        out = b.head(b.node("FusedConv", [b.relu(b.conv(b.input, 3, 4, 3, pads=[1, 1, 1, 1]))], name="bad", domain="com.microsoft"), 144)
        inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])
        graph = helper.make_graph(b.nodes, "g", [inp], [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 5])], b.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    else:
        model = _refusal(build)
    with pytest.raises(UnsupportedOperatorError) as info:
        import_onnx(model)
    _check_message(info.value, op, reason)
    assert info.value.node_name == "bad" and info.value.op_type == op


def test_dynamic_dimensions_other_than_the_batch_are_refused():
    b = Builder((3, 6, 6))
    out = b.head(b.relu(b.conv(b.input, 3, 4, 3, pads=[1, 1, 1, 1])), 144)
    model = b.model(out)
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    with pytest.raises(OnnxImportError) as info:
        import_onnx(model)
    msg = str(info.value)
    assert "\n" not in msg and "'x'" in msg and "axis 2 is dynamic (height)" in msg, msg


def test_an_nchw_output_of_more_than_one_position_is_refused():
    b = Builder((3, 6, 6))
    model = b.model(b.conv(b.relu(b.conv(b.input, 3, 4, 3, pads=[1, 1, 1, 1])), 4, 2, 3), rank=4)
    with pytest.raises(OnnxImportError, match="another element order"):
        import_onnx(model)


def test_what_the_mapping_cannot_fold_is_refused_by_phase1_naming_the_node():
    from exactsnn.preprocess import FoldingError

    b = Builder((8,))
    hidden = b.gemm(b.input, 8, 6, transB=1)  # no ReLU after it
    model = b.model(b.gemm(hidden, 6, 3, transB=1))
    with pytest.raises(FoldingError, match=f"{b.nodes[0].name!r}.*without a ReLU"):
        exactsnn.convert(model, np.zeros((2, 8)))


# ------------------------------------------------------------------ PyTorch, exported here


def _torchvision():
    """torchvision, or a skip.

    torchvision's ``_meta_registrations`` registers fake kernels for ``torchvision::nms`` and
    ``qnms`` without checking that its C++ operators loaded (the others it checks).  Beside a CPU
    build of torch (the CI installs one, see .ci/run) a PyPI torchvision's CUDA extension does
    not load, so the import fails on those two.  Declaring the two schemas then lets it import;
    only the detection operators are missing, which resnet18 does not use."""
    torch = pytest.importorskip("torch")
    try:
        import torchvision
    except RuntimeError as err:
        if "torchvision::nms" not in str(err):
            raise
        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _torchvision.keep = lib  # the definitions live as long as the library object
        import torchvision
    return torchvision


def _randomise_bn(torch, model, seed):
    """Random running statistics and affine parameters (negative scales included) for every BN."""
    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            c = mod.num_features
            mod.running_mean.copy_(0.2 * torch.randn(c, generator=g))
            mod.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.25)
            mod.weight.data.copy_(torch.randn(c, generator=g) * 0.6 + 0.8)
            mod.bias.data.copy_(0.2 * torch.randn(c, generator=g))


def _torch_nets(torch):
    nn = torch.nn

    class LeNet(nn.Module):
        """LeNet-5 on 28×28 digits, flattened with x.view(x.size(0), -1)."""

        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
            self.f1, self.f2, self.f3 = nn.Linear(16 * 5 * 5, 120), nn.Linear(120, 84), nn.Linear(84, 10)

        def forward(self, x):
            x = nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
            x = nn.functional.avg_pool2d(torch.relu(self.c2(x)), 2)
            x = x.view(x.size(0), -1)
            return self.f3(torch.relu(self.f2(torch.relu(self.f1(x)))))

    def vgg():
        """VGG-style: BN before and after the ReLU, max pooling with padding, dropout, BatchNorm1d."""
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),  # 30
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1), nn.BatchNorm2d(16),  # 15 (pads -inf, on ReLU outputs)
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),  # 8 (floor: 7)
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),  # 4
            nn.AvgPool2d(2),  # 2
            nn.Flatten(), nn.Linear(32 * 2 * 2, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10),
        )

    return {"lenet": (LeNet, (1, 28, 28)), "vgg_bn": (vgg, (3, 30, 30))}


@pytest.fixture(scope="session")
def torch_exports(tmp_path_factory):
    """PyTorch models exported once per run: name -> (path, float64 torch model, input shape).

    The default exporter (torch.export, dynamo=True) for all three; the TorchScript exporter
    too where it is still there, without constant folding, so that shape arithmetic and
    BatchNormalization nodes stay in the file.  (The default exporter folds batch normalisation
    into the convolutions in float32, so its files differ from the float64 model by float32
    rounding; the unfolded ones equal it to float64 round-off.)"""
    torch = pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("torch_onnx")
    torch.manual_seed(0)
    models = {}
    for name, (make, shape) in _torch_nets(torch).items():
        models[name] = (make(), shape)
    tv = _torchvision()
    models["resnet18"] = (tv.models.resnet18(weights=None), (3, 64, 64))
    out = {}
    for seed, (name, (model, shape)) in enumerate(models.items()):
        _randomise_bn(torch, model, seed)
        model.eval()
        dummy = torch.zeros(2, *shape)
        path = folder / f"{name}.onnx"
        batch = torch.export.Dim("batch", min=1)
        torch.onnx.export(model, (dummy,), str(path), dynamo=True, dynamic_shapes=({0: batch},), verbose=False)
        out[name] = (path, model, shape)
        legacy = folder / f"{name}_torchscript.onnx"
        try:
            torch.onnx.export(model, (dummy,), str(legacy), dynamo=False, do_constant_folding=False,
                              input_names=["x"], dynamic_axes={"x": {0: "N"}})
        except Exception:  # the TorchScript exporter may be gone in a later torch
            continue
        out[f"{name}_torchscript"] = (legacy, model, shape)
    return out


def _torch64(model, x):
    torch = pytest.importorskip("torch")
    m = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        return m(torch.tensor(np.asarray(x, np.float64))).numpy()


def _torch_inputs(shape, n, seed):
    """Images in [0, 1] normalised with torchvision's ImageNet mean and std (3 channels) or
    digits in [0, 1] (1 channel); returns the inputs and their range (p, q)."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(size=(n, *shape))
    if shape[0] != 3:
        return u, (0.0, 1.0)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return (u - mean[:, None, None]) / std[:, None, None], TORCHVISION_RANGE


# The raw range of torchvision-normalised images: (0 − mean) / std and (1 − mean) / std over the channels.
TORCHVISION_RANGE = (-0.485 / 0.229, (1 - 0.406) / 0.225)


@pytest.mark.parametrize("name", ["lenet", "lenet_torchscript", "vgg_bn", "vgg_bn_torchscript"])
def test_pytorch_exports_convert_exactly(torch_exports, name):
    if name not in torch_exports:
        pytest.skip(f"{name}: this torch has no TorchScript exporter")
    path, model, shape = torch_exports[name]
    x_sample, input_range = _torch_inputs(shape, 64, 0)
    x, _ = _torch_inputs(shape, 32, 1)
    graph, x_ir, ort = check_import(path, x.astype(np.float32), reference=False)
    x = x_ir.transpose(0, 3, 1, 2)  # the float32-rounded inputs every witness sees
    torch64 = _torch64(model, x)
    ours = evaluate(graph, x_ir)
    tol = 1e-10 if name.endswith("_torchscript") else 1e-6  # float32-folded batch norm, see torch_exports
    assert np.abs(ours - torch64).max() <= tol * max(1.0, np.abs(torch64).max())
    check_snn(graph, x_ir, ort, x_sample=channels_last(x_sample), input_range=input_range)


def test_torchvision_resnet18_converts_and_matches_onnxruntime_on_64_inputs(torch_exports, capsys):
    """The issue's criterion: resnet18 (random weights, random BN statistics, 64×64), exported by
    torch.onnx.export, converted and simulated: 100 % agreement with onnxruntime on 64 inputs, 0
    deviating spikes."""
    path, model, shape = torch_exports["resnet18"]
    x_sample, input_range = _torch_inputs(shape, 64, 2)
    x, _ = _torch_inputs(shape, 64, 3)
    x = x.astype(np.float32).astype(np.float64)
    graph, x_ir, ort = check_import(path, x, reference=False)
    ours = evaluate(graph, x_ir)
    torch64 = _torch64(model, x)
    scale = float(np.abs(torch64).max())
    assert np.abs(ours - torch64).max() <= 1e-6 * scale  # batch norm folded in float32 by the exporter
    result = check_snn(graph, x_ir, ort, x_sample=channels_last(x_sample), input_range=input_range)
    assert result["agreement"] == 1.0 and result["deviating"] == 0
    unfolded = float("nan")
    if "resnet18_torchscript" in torch_exports:  # BatchNormalization nodes kept: float64 against float64
        path, _, _ = torch_exports["resnet18_torchscript"]
        scripted = import_onnx(path)
        unfolded = float(np.abs(evaluate(scripted, x_ir[:8]) - torch64[:8]).max())
        assert unfolded <= 1e-10 * scale
        assert sum(isinstance(n, ir.BatchNorm) for n in scripted.nodes.values()) == 20
    with capsys.disabled():
        print(
            f"\nresnet18 64x64, 64 inputs: agreement {result['agreement']:.2%} with onnxruntime "
            f"({result['decided']} beyond the float32 margin), deviating spikes {result['deviating']}, "
            f"max |SNN - IR| {result['snn_vs_ir']:.2e}, max |IR - torch float64| {np.abs(ours - torch64).max():.2e} "
            f"(exporter's float32 BN folding; unfolded export: {unfolded:.2e}), "
            f"max |IR - onnxruntime| {np.abs(ours - ort).max():.2e} (logits up to {scale:.3g}), "
            f"{result['net'].hidden_neurons} hidden neurons"
        )


# ------------------------------------------------------------------------- Keras, exported


def _keras_export(model, path):
    pytest.importorskip("tf2onnx")
    model.export(str(path), format="onnx", verbose=False)
    return onnx.load(str(path))


def _keras_model(keras, bn: bool):
    L = keras.layers
    inp = keras.Input((12, 12, 3))
    h = L.Conv2D(6, 3, padding="same", activation="relu")(inp)
    if bn:
        h = L.BatchNormalization()(h)  # after the ReLU
    y = L.Conv2D(6, 3, padding="same")(h)
    if bn:
        y = L.BatchNormalization()(y)  # before the ReLU
    h = L.ReLU()(L.Add()([h, y]))
    h = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(h)  # asymmetric pads in ONNX
    h = L.MaxPooling2D(2)(h)  # 3 × 3
    h = L.Flatten()(h)  # channels-last order: a Transpose before the Reshape in ONNX
    h = L.Dense(16, activation="relu")(h)
    return keras.Model(inp, L.Dense(10, activation="softmax")(h))


def _same_snn(a, b, tol):
    assert a.input_shape == b.input_shape and len(a.layers) == len(b.layers)
    np.testing.assert_allclose(a.X, b.X, rtol=tol, atol=0)
    for la, lb in zip(a.layers, b.layers):
        for field in ("weight", "bias"):
            wa, wb = getattr(la.layer, field), getattr(lb.layer, field)
            assert wa.shape == wb.shape
            assert np.abs(wa - wb).max() <= tol * max(1.0, np.abs(wa).max()), (la.layer.name, field)
        assert abs(la.t_min - lb.t_min) <= tol * la.t_min and abs(la.t_max - lb.t_max) <= tol * max(1.0, la.t_max)
        if la.hidden:
            assert np.abs(la.threshold - lb.threshold).max() <= tol * max(1.0, np.abs(la.threshold).max())


@pytest.mark.parametrize("bn", [False, True], ids=["plain", "batch_norm"])
def test_keras_model_exported_to_onnx_gives_the_same_snn(tmp_path, bn):
    """Without batch normalisation the weights cross over as float32 values unchanged, so the
    two SNNs agree to 1e-12.  tf2onnx writes batch normalisation as a Mul and an Add whose
    constants it computed in float32 (γ/√(σ²+ε), β − μ·scale), so there the SNNs agree to the
    float32 rounding of those constants (1e-6)."""
    keras = pytest.importorskip("keras")
    from random_networks import randomise_batch_norm, randomise_biases

    from exactsnn.importers.keras import keras_logits

    rng = np.random.default_rng(5)
    keras.utils.set_random_seed(5)
    model = _keras_model(keras, bn)
    randomise_biases(model, rng)
    if bn:
        randomise_batch_norm(model, rng)
    x = rng.uniform(0, 1, (40, 12, 12, 3)).astype(np.float32).astype(np.float64)
    model(x[:1])
    proto = _keras_export(model, tmp_path / "model.onnx")
    graph, x_ir, ort = check_import(proto, x, reference=False)
    assert graph.nodes[graph.source].shape == (12, 12, 3)  # tf2onnx's channels-last input, as it is
    tol = 1e-6 if bn else 1e-12
    from_keras = exactsnn.convert(model, x, input_range=(0, 1))
    from_onnx = exactsnn.convert(graph, x, input_range=(0, 1))
    _same_snn(from_keras, from_onnx, tol)
    sim_k, sim_o = exactsnn.simulate(from_keras, x), exactsnn.simulate(from_onnx, x)
    assert np.abs(sim_k.logits - sim_o.logits).max() <= tol * max(1.0, np.abs(sim_k.logits).max())
    assert np.array_equal(sim_o.predictions, keras_logits(model, x).argmax(1))
    assert sim_o.deviating.sum() == 0


# ------------------------------------------------------------------------ command line


def test_cli_converts_an_onnx_file(tmp_path, capsys):
    from exactsnn.cli import main

    model, x = case_residual()
    onnx.save(model, str(tmp_path / "net.onnx"))
    x_ir = channels_last(x)
    np.save(tmp_path / "x.npy", x_ir)
    lo, hi = float(x_ir.min()), float(x_ir.max())
    assert main(["convert", str(tmp_path / "net.onnx"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "snn.npz"),
                 "--input-range", str(lo), str(hi)]) == 0
    assert main(["predict", str(tmp_path / "snn.npz"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "out.npz")]) == 0
    out = np.load(tmp_path / "out.npz")
    ours = evaluate(import_onnx(model), x_ir)
    assert np.abs(out["logits"] - ours).max() <= SNN_TOL * max(1.0, np.abs(ours).max())
    assert "0 deviating spikes" in capsys.readouterr().out


def test_cli_refuses_an_unsupported_operator_in_one_line(tmp_path, capsys):
    from exactsnn.cli import main

    onnx.save(_refusal(REFUSALS["sigmoid"][0]), str(tmp_path / "net.onnx"))
    np.save(tmp_path / "x.npy", np.zeros((2, 6, 6, 3)))
    assert main(["convert", str(tmp_path / "net.onnx"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "s.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("exactsnn: error:") and "'bad' (Sigmoid)" in err, err
    (tmp_path / "broken.onnx").write_bytes(b"not a protobuf")
    assert main(["convert", str(tmp_path / "broken.onnx"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "s.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot load as an ONNX model" in err, err
    onnx.save(_refusal(lambda b, h: b.head(h, 144)), str(tmp_path / "good.onnx"))
    np.save(tmp_path / "x_nchw.npy", np.zeros((2, 3, 6, 6)))  # the layout the ONNX model takes: not what the SNN takes
    assert main(["convert", str(tmp_path / "good.onnx"), str(tmp_path / "x_nchw.npy"), "-o", str(tmp_path / "s.npz")]) == 2
    assert "arrays of shape (N, 6, 6, 3) expected, got (2, 3, 6, 6)" in capsys.readouterr().err


# ---------------------------------------------------------------------------- workflow


def _digits_onnx(path):
    """A LeNet-like ONNX model for the 8×8 digits (NCHW, random weights), written to ``path``."""
    b = Builder((1, 8, 8), seed=11)
    h = b.relu(b.bn(b.conv(b.input, 1, 8, 3, pads=[1, 1, 1, 1]), 8))
    h = b.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])  # 4 × 4
    h = b.relu(b.gemm(b.node("Flatten", [h], axis=1), 128, 32, transB=1))
    onnx.save(b.model(b.node("Softmax", [b.gemm(h, 32, 10, transB=1)], axis=1)), str(path))


@pytest.mark.workflow
def test_workflow_benchmark_from_an_onnx_file(tmp_path):
    """A benchmark that names an .onnx weights file instead of an architecture: it is imported
    (rule onnx_model), not trained, and its row is exact like every other."""
    from test_workflow import check_exact, job_counts, read_table, snakemake, write_config

    weights = tmp_path / "digits_net.onnx"
    _digits_onnx(weights)
    row = {"dataset": "digits", "model": "onnxnet", "weights": str(weights), "parts": 2, "test_samples": 90}
    bad = write_config(tmp_path / "bad.yaml", benchmarks=[{**row, "recipe": "adam_mnist"}])
    result = snakemake("-n", "--configfile", str(bad), workdir=tmp_path / "bad")
    assert result.returncode != 0 and "config key 'benchmarks[0].recipe'" in result.stdout + result.stderr
    config = write_config(tmp_path / "onnx.yaml", benchmarks=[row])
    run = tmp_path / "run"
    planned = snakemake("-n", "--configfile", str(config), workdir=run)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    counts = job_counts(planned.stdout)
    assert counts["onnx_model"] == 1 and "train" not in counts
    result = snakemake("--cores", "2", "--configfile", str(config), workdir=run, timeout=900)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    table = read_table(run)
    check_exact(table)
    assert table.loc[0, "model"] == "onnxnet" and table.loc[0, "test_samples"] == 90
    assert (run / "results" / "train" / "digits" / "onnxnet" / "model.onnx").is_file()


def test_readme_pytorch_example(tmp_path, monkeypatch, capsys):
    """The README's PyTorch block runs and shows what it claims."""
    import re
    from pathlib import Path

    pytest.importorskip("torch")
    pytest.importorskip("onnxscript")  # the default exporter needs it
    text = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"## PyTorch and other frameworks: ONNX models\n.*?```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "agreement 1.0" in out and "deviating spikes 0" in out, out
