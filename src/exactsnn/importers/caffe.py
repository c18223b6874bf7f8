"""Read Caffe networks (``deploy.prototxt`` + ``.caffemodel``) without Caffe, and rebuild them in Keras.

Caffe stores a network as a ``NetParameter`` protocol buffer: the architecture as text
(``deploy.prototxt``) and the trained weights as binary (``.caffemodel``).  This module
declares the part of Caffe's schema (``src/caffe/proto/caffe.proto``) that a feed-forward
ReLU classifier needs, with Caffe's own field numbers, and parses both files with the
``protobuf`` package alone.  Fields it does not declare are skipped, so real files that use
other options (fillers, learning-rate multipliers, engines, ...) still parse.

Supported layers, in one straight chain: ``Input``, ``Convolution``, ``ReLU`` (slope 0),
``Pooling`` (MAX; AVE when it needs no padding), ``InnerProduct``, ``Flatten``, ``Dropout``
(identity at inference) and a final ``Softmax``.  Both the current ``layer`` field and the
legacy ``layers`` field (V1 layers with enum types) of ``NetParameter`` are read.  Anything
else (LRN, Eltwise, Concat, BatchNorm, ...) is refused with a :class:`ValueError` naming the
layer and its type.

Layout conversions done by :func:`caffe_to_keras` (Caffe is channel-first, Keras here is
channel-last):

* convolution kernels (out, in, kh, kw) -> (kh, kw, in, out);
* the first inner product after a convolution/pooling block: its input is Caffe's flatten of
  a (C, H, W) blob, Keras flattens (H, W, C), so the weight rows are permuted accordingly;
* inner-product weights (out, in) -> Dense kernels (in, out).

Input images must be given in the layout Caffe's net expects, channel-last: for the Places365
VGG16 that is BGR minus the ImageNet mean (see :func:`exactsnn.imagesets.caffe_preprocess`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

__all__ = [
    "CaffeLayer",
    "CaffeNet",
    "SUPPORTED_TYPES",
    "caffe_schema",
    "read_caffe_net",
    "caffe_to_keras",
    "main_caffe2keras",
]

# --------------------------------------------------------------------------------------
# The schema: a subset of caffe.proto with Caffe's field numbers
# --------------------------------------------------------------------------------------

_OPT, _REP = 1, 3  # FieldDescriptorProto labels (LABEL_OPTIONAL, LABEL_REPEATED)

# V1LayerParameter.LayerType (legacy ``layers`` field): enum value -> name.
_V1_LAYER_TYPES = {
    "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3,
    "CONTRASTIVE_LOSS": 37, "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6,
    "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7, "ELTWISE": 25, "EXP": 38, "FLATTEN": 8,
    "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "HINGE_LOSS": 28, "IM2COL": 11, "IMAGE_DATA": 12,
    "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29,
    "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34, "POOLING": 17, "POWER": 26, "RELU": 18,
    "SIGMOID": 19, "SIGMOID_CROSS_ENTROPY_LOSS": 27, "SILENCE": 36, "SOFTMAX": 20,
    "SOFTMAX_LOSS": 21, "SPLIT": 22, "SLICE": 33, "TANH": 23, "WINDOW_DATA": 24,
    "THRESHOLD": 31,
}

# V1 enum name -> the type string current Caffe uses for the same layer.
_V1_TYPE_NAMES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DATA": "Data", "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU",
    "SIGMOID": "Sigmoid", "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence", "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split", "SLICE": "Slice", "TANH": "TanH", "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold", "NONE": "None",
}

SUPPORTED_TYPES = ("Input", "Convolution", "ReLU", "Pooling", "InnerProduct", "Flatten", "Dropout", "Softmax")


def _schema_file(raw_blobs: bool):
    """A ``FileDescriptorProto`` with the subset of caffe.proto this importer reads.

    With ``raw_blobs`` the packed float/double arrays of ``BlobProto`` are declared as
    ``bytes`` (same wire type), so a large caffemodel's weights can be turned into NumPy
    arrays with ``np.frombuffer`` instead of element by element.
    """
    from google.protobuf import descriptor_pb2 as d

    F = d.FieldDescriptorProto
    fdp = d.FileDescriptorProto(name="exactsnn_caffe_subset.proto", package="caffe", syntax="proto2")

    def enum(parent, name, values):
        e = parent.enum_type.add(name=name)
        for k, v in values.items():
            e.value.add(name=k, number=v)

    def message(name, fields, parent=None):
        m = (parent.nested_type if parent is not None else fdp.message_type).add(name=name)
        for spec in fields:
            fname, number, label, ftype = spec[:4]
            opts = spec[4] if len(spec) > 4 else {}
            f = m.field.add(name=fname, number=number, label=label, type=ftype)
            if "type_name" in opts:
                f.type_name = opts["type_name"]
            if "default" in opts:
                f.default_value = opts["default"]
            if opts.get("packed"):
                f.options.packed = True
        return m

    enum(fdp, "Phase", {"TRAIN": 0, "TEST": 1})
    message("BlobShape", [("dim", 1, _REP, F.TYPE_INT64, {"packed": True})])
    if raw_blobs:
        data = [("data", 5, _REP, F.TYPE_BYTES), ("double_data", 8, _REP, F.TYPE_BYTES)]
    else:
        data = [
            ("data", 5, _REP, F.TYPE_FLOAT, {"packed": True}),
            ("double_data", 8, _REP, F.TYPE_DOUBLE, {"packed": True}),
        ]
    message(
        "BlobProto",
        [("shape", 7, _OPT, F.TYPE_MESSAGE, {"type_name": ".caffe.BlobShape"})]
        + data
        + [
            ("num", 1, _OPT, F.TYPE_INT64, {"default": "0"}),
            ("channels", 2, _OPT, F.TYPE_INT64, {"default": "0"}),
            ("height", 3, _OPT, F.TYPE_INT64, {"default": "0"}),
            ("width", 4, _OPT, F.TYPE_INT64, {"default": "0"}),
        ],
    )
    message("NetStateRule", [("phase", 1, _OPT, F.TYPE_ENUM, {"type_name": ".caffe.Phase"})])
    message(
        "ConvolutionParameter",
        [
            ("num_output", 1, _OPT, F.TYPE_UINT32),
            ("bias_term", 2, _OPT, F.TYPE_BOOL, {"default": "true"}),
            ("pad", 3, _REP, F.TYPE_UINT32),
            ("kernel_size", 4, _REP, F.TYPE_UINT32),
            ("group", 5, _OPT, F.TYPE_UINT32, {"default": "1"}),
            ("stride", 6, _REP, F.TYPE_UINT32),
            ("pad_h", 9, _OPT, F.TYPE_UINT32, {"default": "0"}),
            ("pad_w", 10, _OPT, F.TYPE_UINT32, {"default": "0"}),
            ("kernel_h", 11, _OPT, F.TYPE_UINT32),
            ("kernel_w", 12, _OPT, F.TYPE_UINT32),
            ("stride_h", 13, _OPT, F.TYPE_UINT32),
            ("stride_w", 14, _OPT, F.TYPE_UINT32),
            ("axis", 16, _OPT, F.TYPE_INT32, {"default": "1"}),
            ("dilation", 18, _REP, F.TYPE_UINT32),
        ],
    )
    pool = message(
        "PoolingParameter",
        [
            ("pool", 1, _OPT, F.TYPE_ENUM, {"type_name": ".caffe.PoolingParameter.PoolMethod", "default": "MAX"}),
            ("kernel_size", 2, _OPT, F.TYPE_UINT32),
            ("stride", 3, _OPT, F.TYPE_UINT32, {"default": "1"}),
            ("pad", 4, _OPT, F.TYPE_UINT32, {"default": "0"}),
            ("kernel_h", 5, _OPT, F.TYPE_UINT32),
            ("kernel_w", 6, _OPT, F.TYPE_UINT32),
            ("stride_h", 7, _OPT, F.TYPE_UINT32),
            ("stride_w", 8, _OPT, F.TYPE_UINT32),
            ("pad_h", 9, _OPT, F.TYPE_UINT32, {"default": "0"}),
            ("pad_w", 10, _OPT, F.TYPE_UINT32, {"default": "0"}),
            ("global_pooling", 12, _OPT, F.TYPE_BOOL, {"default": "false"}),
            (
                "round_mode", 13, _OPT, F.TYPE_ENUM,
                {"type_name": ".caffe.PoolingParameter.RoundMode", "default": "CEIL"},
            ),
        ],
    )
    enum(pool, "PoolMethod", {"MAX": 0, "AVE": 1, "STOCHASTIC": 2})
    enum(pool, "RoundMode", {"CEIL": 0, "FLOOR": 1})
    message(
        "InnerProductParameter",
        [
            ("num_output", 1, _OPT, F.TYPE_UINT32),
            ("bias_term", 2, _OPT, F.TYPE_BOOL, {"default": "true"}),
            ("axis", 5, _OPT, F.TYPE_INT32, {"default": "1"}),
            ("transpose", 6, _OPT, F.TYPE_BOOL, {"default": "false"}),
        ],
    )
    message("ReLUParameter", [("negative_slope", 1, _OPT, F.TYPE_FLOAT, {"default": "0"})])
    message(
        "DropoutParameter",
        [
            ("dropout_ratio", 1, _OPT, F.TYPE_FLOAT, {"default": "0.5"}),
            # only in some Caffe forks; false would make test-time output scaled
            ("scale_train", 2, _OPT, F.TYPE_BOOL, {"default": "true"}),
        ],
    )
    message("SoftmaxParameter", [("axis", 2, _OPT, F.TYPE_INT32, {"default": "1"})])
    message(
        "FlattenParameter",
        [
            ("axis", 1, _OPT, F.TYPE_INT32, {"default": "1"}),
            ("end_axis", 2, _OPT, F.TYPE_INT32, {"default": "-1"}),
        ],
    )
    message("InputParameter", [("shape", 1, _REP, F.TYPE_MESSAGE, {"type_name": ".caffe.BlobShape"})])

    def msg(name, number, type_name, label=_OPT):
        return (name, number, label, F.TYPE_MESSAGE, {"type_name": f".caffe.{type_name}"})

    message(
        "LayerParameter",
        [
            ("name", 1, _OPT, F.TYPE_STRING),
            ("type", 2, _OPT, F.TYPE_STRING),
            ("bottom", 3, _REP, F.TYPE_STRING),
            ("top", 4, _REP, F.TYPE_STRING),
            msg("blobs", 7, "BlobProto", _REP),
            msg("include", 8, "NetStateRule", _REP),
            msg("exclude", 9, "NetStateRule", _REP),
            ("phase", 10, _OPT, F.TYPE_ENUM, {"type_name": ".caffe.Phase"}),
            msg("convolution_param", 106, "ConvolutionParameter"),
            msg("dropout_param", 108, "DropoutParameter"),
            msg("inner_product_param", 117, "InnerProductParameter"),
            msg("pooling_param", 121, "PoolingParameter"),
            msg("relu_param", 123, "ReLUParameter"),
            msg("softmax_param", 125, "SoftmaxParameter"),
            msg("flatten_param", 135, "FlattenParameter"),
            msg("input_param", 143, "InputParameter"),
        ],
    )
    v1 = message(
        "V1LayerParameter",
        [
            ("bottom", 2, _REP, F.TYPE_STRING),
            ("top", 3, _REP, F.TYPE_STRING),
            ("name", 4, _OPT, F.TYPE_STRING),
            ("type", 5, _OPT, F.TYPE_ENUM, {"type_name": ".caffe.V1LayerParameter.LayerType"}),
            msg("blobs", 6, "BlobProto", _REP),
            msg("convolution_param", 10, "ConvolutionParameter"),
            msg("dropout_param", 12, "DropoutParameter"),
            msg("inner_product_param", 17, "InnerProductParameter"),
            msg("pooling_param", 19, "PoolingParameter"),
            msg("relu_param", 30, "ReLUParameter"),
            msg("include", 32, "NetStateRule", _REP),
            msg("exclude", 33, "NetStateRule", _REP),
            msg("softmax_param", 39, "SoftmaxParameter"),
        ],
    )
    enum(v1, "LayerType", _V1_LAYER_TYPES)
    message(
        "NetParameter",
        [
            ("name", 1, _OPT, F.TYPE_STRING),
            msg("layers", 2, "V1LayerParameter", _REP),
            ("input", 3, _REP, F.TYPE_STRING),
            ("input_dim", 4, _REP, F.TYPE_INT64),
            msg("input_shape", 8, "BlobShape", _REP),
            msg("layer", 100, "LayerParameter", _REP),
        ],
    )
    return fdp


@lru_cache(maxsize=None)
def caffe_schema(raw_blobs: bool = False) -> dict:
    """Message classes for the caffe.proto subset: name -> class (``NetParameter``, ``BlobProto``, ...).

    Each call variant lives in its own descriptor pool, so it never clashes with a real
    ``caffe_pb2`` that may be imported in the same process.
    """
    from google.protobuf import descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    fdp = _schema_file(raw_blobs)
    pool.Add(fdp)
    names = [m.name for m in fdp.message_type]
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{n}")) for n in names}


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


@dataclass
class CaffeLayer:
    """One Caffe layer: its type (current Caffe spelling), connections, parameters and weights."""

    name: str
    type: str  # "Convolution", "Pooling", ... (V1 enum types are translated)
    bottoms: tuple
    tops: tuple
    params: dict = field(default_factory=dict)  # normalised parameters, see _layer_params
    blobs: list = field(default_factory=list)  # float64 arrays in Caffe's layout and shape


@dataclass
class CaffeNet:
    """A Caffe network read from a prototxt (+ weights from a caffemodel)."""

    name: str
    input_name: str | None
    input_shape: tuple | None  # (C, H, W), Caffe's order, without the batch axis
    layers: list  # [CaffeLayer], in the prototxt's order, TEST-phase layers only
    legacy: bool = False  # the prototxt used the V1 ``layers`` field

    def layer(self, name: str) -> CaffeLayer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


def _pair_param(values, h, w, has_hw: bool, default: int, what: str, layer: str) -> tuple[int, int]:
    if has_hw:
        return int(h), int(w)
    values = [int(v) for v in values]
    if len(values) == 0:
        return default, default
    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise ValueError(f"Caffe layer {layer!r}: {what} has {len(values)} values; only 2-D layers are supported")


def _conv_params(p, layer: str) -> dict:
    kernel = _pair_param(
        p.kernel_size, p.kernel_h, p.kernel_w, p.HasField("kernel_h") or p.HasField("kernel_w"), 0, "kernel_size", layer
    )
    if min(kernel) <= 0:
        raise ValueError(f"Caffe layer {layer!r}: convolution without a kernel size")
    return {
        "num_output": int(p.num_output),
        "bias_term": bool(p.bias_term),
        "kernel": kernel,
        "stride": _pair_param(
            p.stride, p.stride_h, p.stride_w, p.HasField("stride_h") or p.HasField("stride_w"), 1, "stride", layer
        ),
        "pad": _pair_param(p.pad, p.pad_h, p.pad_w, p.HasField("pad_h") or p.HasField("pad_w"), 0, "pad", layer),
        "dilation": _pair_param(p.dilation, 0, 0, False, 1, "dilation", layer),
        "group": int(p.group),
        "axis": int(p.axis),
    }


def _pool_params(p, layer: str) -> dict:
    method = {0: "MAX", 1: "AVE", 2: "STOCHASTIC"}[p.pool]
    has_k = p.HasField("kernel_h") or p.HasField("kernel_w")
    if has_k:
        kernel = (int(p.kernel_h), int(p.kernel_w))
    elif p.HasField("kernel_size"):
        kernel = (int(p.kernel_size),) * 2
    else:
        kernel = None
    if kernel is None and not p.global_pooling:
        raise ValueError(f"Caffe layer {layer!r}: pooling without a kernel size")
    stride = (
        (int(p.stride_h), int(p.stride_w)) if (p.HasField("stride_h") or p.HasField("stride_w")) else (int(p.stride),) * 2
    )
    pad = (int(p.pad_h), int(p.pad_w)) if (p.HasField("pad_h") or p.HasField("pad_w")) else (int(p.pad),) * 2
    return {
        "method": method,
        "kernel": kernel,
        "stride": stride,
        "pad": pad,
        "global_pooling": bool(p.global_pooling),
        "round_mode": {0: "CEIL", 1: "FLOOR"}[p.round_mode],
    }


def _layer_params(msg, ltype: str) -> dict:
    name = msg.name
    if ltype == "Convolution":
        return _conv_params(msg.convolution_param, name)
    if ltype == "Pooling":
        return _pool_params(msg.pooling_param, name)
    if ltype == "InnerProduct":
        p = msg.inner_product_param
        return {
            "num_output": int(p.num_output),
            "bias_term": bool(p.bias_term),
            "axis": int(p.axis),
            "transpose": bool(p.transpose),
        }
    if ltype == "ReLU":
        return {"negative_slope": float(msg.relu_param.negative_slope)}
    if ltype == "Dropout":
        return {
            "dropout_ratio": float(msg.dropout_param.dropout_ratio),
            "scale_train": bool(msg.dropout_param.scale_train),
        }
    if ltype == "Softmax":
        return {"axis": int(msg.softmax_param.axis)}
    if ltype == "Flatten" and hasattr(msg, "flatten_param"):
        return {"axis": int(msg.flatten_param.axis), "end_axis": int(msg.flatten_param.end_axis)}
    if ltype == "Input" and hasattr(msg, "input_param"):
        return {"shapes": [tuple(int(d) for d in s.dim) for s in msg.input_param.shape]}
    return {}


def _layer_type(msg, legacy: bool) -> str:
    if not legacy:
        return msg.type
    enum_name = msg.DESCRIPTOR.fields_by_name["type"].enum_type.values_by_number[msg.type].name
    return _V1_TYPE_NAMES.get(enum_name, enum_name)


def _in_test_phase(msg) -> bool:
    """Caffe's NetState filtering for the TEST phase (phase rules only; levels/stages ignored)."""

    def matches(rule):
        return not rule.HasField("phase") or rule.phase == 1

    if len(msg.include):
        return any(matches(r) for r in msg.include)
    return not any(matches(r) for r in msg.exclude)


def _blob_array(blob, layer: str, index: int) -> np.ndarray:
    """A BlobProto as a float64 array (legacy num/channels/height/width shapes kept 4-D)."""
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:
        shape = (int(blob.num), int(blob.channels), int(blob.height), int(blob.width))
        if shape == (0, 0, 0, 0):
            shape = (0,)
    if len(blob.data):
        values = blob.data
        dtype = np.float32
    else:
        values = blob.double_data
        dtype = np.float64
    if len(values) and isinstance(values[0], bytes):  # raw schema: packed arrays as bytes
        arr = np.frombuffer(b"".join(values), dtype=np.dtype(dtype).newbyteorder("<"))
    else:
        arr = np.asarray(values, dtype=dtype)
    expected = int(np.prod(shape)) if shape else 1
    if arr.size != expected:
        raise _BlobSizeError(
            f"Caffe layer {layer!r}: blob {index} holds {arr.size} values but its shape {shape} needs {expected}"
        )
    return arr.astype(np.float64).reshape(shape)


class _BlobSizeError(ValueError):
    pass


def _read_text(path) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _parse_prototxt(text: str):
    from google.protobuf import text_format

    net = caffe_schema(False)["NetParameter"]()
    try:
        text_format.Parse(text, net, allow_unknown_field=True)
    except text_format.ParseError as exc:
        raise ValueError(f"cannot parse the Caffe prototxt: {exc}") from exc
    return net


def _parse_caffemodel(data: bytes):
    """Parse a binary NetParameter, reading packed weights as raw bytes when possible."""
    from google.protobuf.message import DecodeError

    def parse(raw):
        net = caffe_schema(raw)["NetParameter"]()
        try:
            net.ParseFromString(data)
        except DecodeError as exc:
            raise ValueError(f"cannot parse the caffemodel (not a binary Caffe NetParameter?): {exc}") from exc
        return net

    net = parse(True)
    try:
        weights = _weights_by_name(net)
    except _BlobSizeError:  # weights written unpacked: fall back to the element-wise schema
        weights = _weights_by_name(parse(False))
    return weights


def _weights_by_name(net) -> dict:
    weights = {}
    for container in (net.layer, net.layers):
        for msg in container:
            if len(msg.blobs):
                weights[msg.name] = [_blob_array(b, msg.name, i) for i, b in enumerate(msg.blobs)]
    return weights


def _check_supported(layer: CaffeLayer) -> None:
    if layer.type not in SUPPORTED_TYPES:
        raise ValueError(
            f"Caffe layer {layer.name!r} has type {layer.type!r}, which exactsnn cannot import "
            f"(supported: {', '.join(SUPPORTED_TYPES)})"
        )


def read_caffe_net(prototxt, caffemodel=None, *, strict: bool = True) -> CaffeNet:
    """Read a Caffe network: the architecture from ``prototxt``, the weights from ``caffemodel``.

    ``prototxt`` is a path to a text ``NetParameter`` (``deploy.prototxt``) or, if it contains
    a newline or a ``{``, the text itself.  Layers are kept in file order; layers excluded
    from the TEST phase are dropped.  Weights are matched to layers by name, as Caffe does
    (``Net::CopyTrainedLayersFrom``), and returned as float64 arrays in Caffe's layout
    (convolution (out, in, kh, kw), inner product (out, in), biases (out,); legacy 4-D blob
    shapes such as (1, 1, out, in) are kept as stored).

    With ``strict`` (default) a layer whose type is not in :data:`SUPPORTED_TYPES` raises a
    :class:`ValueError` naming the layer and its type.
    """
    inline = "\n" in str(prototxt) or "{" in str(prototxt)
    text = str(prototxt) if inline else _read_text(prototxt)
    try:
        net = _parse_prototxt(text)
    except ValueError as exc:
        raise ValueError(f"{'the prototxt text' if inline else prototxt}: {exc}") from exc
    if len(net.layer) and len(net.layers):
        raise ValueError("the prototxt mixes the current 'layer' and the legacy 'layers' fields")
    legacy = len(net.layers) > 0
    weights = {}
    if caffemodel is not None:
        with open(caffemodel, "rb") as fh:
            data = fh.read()
        if not data:
            raise ValueError(f"{caffemodel}: empty file, not a Caffe model")
        try:
            weights = _parse_caffemodel(data)
        except ValueError as exc:
            raise ValueError(f"{caffemodel}: {exc}") from exc

    input_name = net.input[0] if len(net.input) else None
    input_shape = None
    if len(net.input) > 1:
        raise ValueError(f"the network has {len(net.input)} inputs; only single-input networks are supported")
    if len(net.input_shape):
        input_shape = tuple(int(d) for d in net.input_shape[0].dim)
    elif len(net.input_dim):
        input_shape = tuple(int(d) for d in net.input_dim[:4])

    layers = []
    for msg in net.layers if legacy else net.layer:
        if not _in_test_phase(msg):
            continue
        ltype = _layer_type(msg, legacy)
        layer = CaffeLayer(
            name=msg.name,
            type=ltype,
            bottoms=tuple(msg.bottom),
            tops=tuple(msg.top),
            params=_layer_params(msg, ltype),
            blobs=weights.get(msg.name, []),
        )
        if not layer.blobs and len(msg.blobs):
            layer.blobs = [_blob_array(b, msg.name, i) for i, b in enumerate(msg.blobs)]
        if strict:
            _check_supported(layer)
        if ltype == "Input":
            if input_name is not None or len(layer.tops) != 1:
                raise ValueError(f"Caffe layer {layer.name!r}: only one network input is supported")
            input_name = layer.tops[0]
            shapes = layer.params.get("shapes") or []
            input_shape = shapes[0] if shapes else None
        layers.append(layer)
    if input_shape is not None:
        input_shape = tuple(input_shape[1:]) if len(input_shape) == 4 else tuple(input_shape)
    return CaffeNet(net.name, input_name, input_shape, layers, legacy)


# --------------------------------------------------------------------------------------
# Conversion to Keras
# --------------------------------------------------------------------------------------


def _keras_name(name: str, used: set) -> str:
    base = re.sub(r"[^A-Za-z0-9_.\-]", "_", name) or "layer"
    out, k = base, 1
    while out in used:
        k += 1
        out = f"{base}_{k}"
    used.add(out)
    return out


def _caffe_pool_size(size: int, k: int, s: int, p: int, ceil: bool) -> int:
    """Caffe's pooled output size (PoolingLayer::Reshape)."""
    span = size + 2 * p - k
    out = (-(-span // s) if ceil else span // s) + 1
    if p > 0 and (out - 1) * s >= size + p:
        out -= 1  # the last window must start inside the image
    return out


def _pool_plan(layer: CaffeLayer, shape, nonnegative: bool):
    """Keras padding for a Caffe pooling layer: ("valid"|"same", explicit_pad or None)."""
    _, h, w = shape
    p = layer.params
    if p["global_pooling"]:
        if any(p["pad"]) or p["stride"] != (1, 1):
            raise ValueError(f"Caffe layer {layer.name!r}: global pooling with padding or stride is not supported")
        return (h, w), (1, 1), "valid", None, (1, 1)
    k, s, pad = p["kernel"], p["stride"], p["pad"]
    ceil = p["round_mode"] == "CEIL"
    out = tuple(_caffe_pool_size(n, k[i], s[i], pad[i], ceil) for i, n in enumerate((h, w)))
    if any(pad[i] >= k[i] for i in range(2)):
        raise ValueError(f"Caffe layer {layer.name!r}: pooling padding {pad} must be smaller than the kernel {k}")
    if any(o <= 0 for o in out):
        raise ValueError(f"Caffe layer {layer.name!r}: pooling kernel {k} is larger than its input {(h, w)}")
    if pad == (0, 0):
        valid = tuple((n - k[i]) // s[i] + 1 for i, n in enumerate((h, w)))
        if valid == out:
            return k, s, "valid", None, out
        same = tuple(-(-n // s[i]) for i, n in enumerate((h, w)))
        top = tuple(max((same[i] - 1) * s[i] + k[i] - n, 0) // 2 for i, n in enumerate((h, w)))
        if same == out and top == (0, 0):
            return k, s, "same", None, out  # TensorFlow's 'same' pads at the end only, like Caffe here
    if p["method"] != "MAX":
        raise ValueError(
            f"Caffe layer {layer.name!r}: {p['method']} pooling whose output size {out} needs padding "
            "(Caffe's ceil rounding or pad) cannot be reproduced exactly in Keras"
        )
    if not nonnegative:
        raise ValueError(
            f"Caffe layer {layer.name!r}: max pooling with Caffe's padding/ceil rounding (output {out}) "
            "is reproduced with zero padding, which is exact only on non-negative inputs (after a ReLU); "
            "this pooling layer's input can be negative"
        )
    extra = tuple(max(0, (out[i] - 1) * s[i] + k[i] - n - pad[i]) for i, n in enumerate((h, w)))
    padded = tuple(n + pad[i] + extra[i] for i, n in enumerate((h, w)))
    if tuple((padded[i] - k[i]) // s[i] + 1 for i in range(2)) != out:
        raise ValueError(f"Caffe layer {layer.name!r}: pooling geometry {k}/{s}/{pad} cannot be reproduced in Keras")
    return k, s, "valid", ((pad[0], extra[0]), (pad[1], extra[1])), out


def _plan(net: CaffeNet, input_shape, softmax: bool = True) -> list:
    """Walk the chain; return a list of Keras layer specs (dicts) with weights in Keras layout."""
    if input_shape is None:
        raise ValueError("the prototxt gives no input shape; pass input_shape=(C, H, W)")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3:
        raise ValueError(f"input shape {shape} must be (C, H, W)")
    current = net.input_name
    specs: list[dict] = []
    nonnegative = False  # is the current blob known to be >= 0 (after a ReLU)?
    flat_from = None  # (C, H, W) of a blob flattened by a Flatten layer but not yet consumed
    finished = False
    for layer in net.layers:
        _check_supported(layer)
        if layer.type == "Input":
            continue
        if finished:
            raise ValueError(f"Caffe layer {layer.name!r} ({layer.type}) follows the final Softmax")
        if len(layer.bottoms) != 1 or len(layer.tops) != 1 or (current is not None and layer.bottoms[0] != current):
            raise ValueError(
                f"Caffe layer {layer.name!r} ({layer.type}) takes {list(layer.bottoms)} and gives {list(layer.tops)}; "
                f"only straight chains are supported (expected input {current!r})"
            )
        current = layer.tops[0]
        p = layer.params
        if layer.type == "Convolution":
            if len(shape) != 3:
                raise ValueError(f"Caffe layer {layer.name!r}: convolution after an inner product")
            if p["group"] != 1:
                raise ValueError(f"Caffe layer {layer.name!r}: grouped convolution (group={p['group']}) is not supported")
            if p["axis"] != 1:
                raise ValueError(f"Caffe layer {layer.name!r}: convolution axis {p['axis']} is not supported")
            c, h, w = shape
            (kh, kw), (sh, sw), (ph, pw), (dh, dw) = p["kernel"], p["stride"], p["pad"], p["dilation"]
            n_out = p["num_output"]
            blobs = layer.blobs
            if not blobs:
                raise ValueError(f"Caffe layer {layer.name!r} has no weights (is it in the caffemodel?)")
            wt = blobs[0]
            if wt.size != n_out * c * kh * kw:
                raise ValueError(
                    f"Caffe layer {layer.name!r}: weight blob {wt.shape} does not match ({n_out}, {c}, {kh}, {kw})"
                )
            kernel = wt.reshape(n_out, c, kh, kw).transpose(2, 3, 1, 0)
            bias = blobs[1].reshape(-1) if p["bias_term"] else np.zeros(n_out)
            if bias.shape != (n_out,):
                raise ValueError(f"Caffe layer {layer.name!r}: bias blob {blobs[1].shape} does not match ({n_out},)")
            same = (sh, sw) == (1, 1) and dh * (kh - 1) == 2 * ph and dw * (kw - 1) == 2 * pw
            if (ph or pw) and not same:
                specs.append({"kind": "pad", "name": layer.name + "_pad", "padding": ((ph, ph), (pw, pw))})
            specs.append(
                {
                    "kind": "conv", "name": layer.name, "filters": n_out, "kernel_size": (kh, kw),
                    "strides": (sh, sw), "padding": "same" if (same and (ph or pw)) else "valid",
                    "dilation_rate": (dh, dw), "kernel": kernel, "bias": bias, "use_bias": p["bias_term"],
                }
            )
            ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
            wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
            if ho <= 0 or wo <= 0:
                raise ValueError(f"Caffe layer {layer.name!r}: kernel larger than its padded input {(h, w)}")
            shape, nonnegative = (n_out, ho, wo), False
        elif layer.type == "Pooling":
            if len(shape) != 3:
                raise ValueError(f"Caffe layer {layer.name!r}: pooling after an inner product")
            if p["method"] not in ("MAX", "AVE"):
                raise ValueError(f"Caffe layer {layer.name!r}: {p['method']} pooling is not supported")
            k, s, padding, explicit, out = _pool_plan(layer, shape, nonnegative)
            if explicit is not None:
                specs.append({"kind": "pad", "name": layer.name + "_pad", "padding": explicit})
            specs.append(
                {"kind": "maxpool" if p["method"] == "MAX" else "avgpool", "name": layer.name,
                 "pool_size": k, "strides": s, "padding": padding}
            )
            shape = (shape[0],) + tuple(out)  # max and mean of non-negative values stay non-negative
        elif layer.type == "Flatten":
            if p.get("axis", 1) != 1 or p.get("end_axis", -1) not in (-1, len(shape)):
                raise ValueError(f"Caffe layer {layer.name!r}: only Flatten from axis 1 to the end is supported")
            if len(shape) == 3:
                specs.append({"kind": "flatten", "name": layer.name})
                flat_from, shape = shape, (int(np.prod(shape)),)
        elif layer.type == "InnerProduct":
            if p["axis"] != 1:
                raise ValueError(f"Caffe layer {layer.name!r}: inner product axis {p['axis']} is not supported")
            if len(shape) == 3:
                specs.append({"kind": "flatten", "name": layer.name + "_flatten"})
                flat_from, shape = shape, (int(np.prod(shape)),)
            n_in, n_out = shape[0], p["num_output"]
            if not layer.blobs:
                raise ValueError(f"Caffe layer {layer.name!r} has no weights (is it in the caffemodel?)")
            wt = layer.blobs[0]
            if wt.size != n_in * n_out:
                raise ValueError(
                    f"Caffe layer {layer.name!r}: weight blob {wt.shape} does not match {n_out} outputs x {n_in} inputs"
                )
            wt = wt.reshape(n_in, n_out).T if p["transpose"] else wt.reshape(n_out, n_in)
            if flat_from is not None:
                # Caffe's input index is c*H*W + h*W + w; Keras's is (h*W + w)*C + c.
                wt = wt.reshape((n_out,) + tuple(flat_from)).transpose(0, 2, 3, 1).reshape(n_out, n_in)
                flat_from = None
            bias = layer.blobs[1].reshape(-1) if p["bias_term"] else np.zeros(n_out)
            if bias.shape != (n_out,):
                raise ValueError(f"Caffe layer {layer.name!r}: bias blob {layer.blobs[1].shape} does not match ({n_out},)")
            specs.append(
                {"kind": "dense", "name": layer.name, "units": n_out, "kernel": wt.T, "bias": bias,
                 "use_bias": p["bias_term"]}
            )
            shape, nonnegative = (n_out,), False
        elif layer.type == "ReLU":
            if p["negative_slope"] != 0.0:
                raise ValueError(
                    f"Caffe layer {layer.name!r}: leaky ReLU (negative_slope={p['negative_slope']}) is not supported"
                )
            last = specs[-1] if specs else None
            if last is not None and last["kind"] in ("conv", "dense") and last.get("activation") is None:
                last["activation"] = "relu"
            else:
                specs.append({"kind": "relu", "name": layer.name})
            nonnegative = True
        elif layer.type == "Dropout":
            if not p.get("scale_train", True):
                raise ValueError(f"Caffe layer {layer.name!r}: dropout with scale_train: false scales at test time")
            continue  # identity at inference
        elif layer.type == "Softmax":
            if len(shape) != 1 or p["axis"] not in (1, -1):
                raise ValueError(f"Caffe layer {layer.name!r}: only a softmax over a flat vector is supported")
            finished = True
            if not softmax:
                continue
            last = specs[-1]
            if last["kind"] == "dense" and last.get("activation") is None:
                last["activation"] = "softmax"
            else:
                specs.append({"kind": "softmax", "name": layer.name})
    if not any(s["kind"] in ("conv", "dense") for s in specs):
        raise ValueError("the Caffe network has no Convolution or InnerProduct layer")
    return specs


def caffe_to_keras(prototxt, caffemodel, *, input_shape=None, softmax: bool = True, dtype=None, name=None):
    """Build a channel-last Keras model equal to the Caffe net (``deploy.prototxt`` + ``.caffemodel``).

    ``input_shape`` (Caffe's order (C, H, W)) overrides the prototxt's.  The Keras input is
    (H, W, C), in the channel order the Caffe net was trained with (BGR for Caffe's ImageNet
    and Places models).  ReLUs directly after a convolution/inner product become that layer's
    activation; a final Softmax becomes the last Dense layer's activation (or is dropped with
    ``softmax=False``).  ``dtype`` (e.g. ``"float64"``) sets every layer's dtype.

    Caffe computes pooled sizes with ceil rounding.  Where Keras's floor rounding gives the
    same size the pooling is a plain ``valid`` MaxPooling2D; where TensorFlow's ``same``
    padding matches Caffe's windows it is used; otherwise max pooling gets an explicit
    ZeroPadding2D, which is exact because its input is non-negative (after a ReLU) and every
    Caffe window holds at least one real value.  Cases that cannot be reproduced exactly are
    refused with a :class:`ValueError`.
    """
    import keras

    net = read_caffe_net(prototxt, caffemodel)
    shape = tuple(input_shape) if input_shape is not None else net.input_shape
    specs = _plan(net, shape, softmax)
    c, h, w = shape
    kw = {"dtype": dtype} if dtype is not None else {}
    used: set = set()
    inputs = keras.Input(shape=(h, w, c), name=_keras_name(net.input_name or "data", used), **kw)
    x = inputs
    weighted = []
    for spec in specs:
        kind = spec["kind"]
        lname = _keras_name(spec["name"], used)
        if kind == "pad":
            layer = keras.layers.ZeroPadding2D(spec["padding"], name=lname, **kw)
        elif kind == "conv":
            layer = keras.layers.Conv2D(
                spec["filters"], spec["kernel_size"], strides=spec["strides"], padding=spec["padding"],
                dilation_rate=spec["dilation_rate"], use_bias=spec["use_bias"],
                activation=spec.get("activation"), name=lname, **kw,
            )
            weighted.append((layer, spec))
        elif kind == "maxpool":
            layer = keras.layers.MaxPooling2D(spec["pool_size"], strides=spec["strides"], padding=spec["padding"],
                                              name=lname, **kw)
        elif kind == "avgpool":
            layer = keras.layers.AveragePooling2D(spec["pool_size"], strides=spec["strides"], padding=spec["padding"],
                                                  name=lname, **kw)
        elif kind == "flatten":
            layer = keras.layers.Flatten(name=lname, **kw)
        elif kind == "dense":
            layer = keras.layers.Dense(spec["units"], use_bias=spec["use_bias"], activation=spec.get("activation"),
                                       name=lname, **kw)
            weighted.append((layer, spec))
        elif kind == "relu":
            layer = keras.layers.ReLU(name=lname, **kw)
        elif kind == "softmax":
            layer = keras.layers.Softmax(name=lname, **kw)
        else:  # pragma: no cover - _plan only emits the kinds above
            raise AssertionError(kind)
        x = layer(x)
    model = keras.Model(inputs, x, name=_keras_name(name or net.name or "caffe_net", set()))
    for layer, spec in weighted:
        values = [spec["kernel"]] + ([spec["bias"]] if spec["use_bias"] else [])
        layer.set_weights([np.asarray(v, dtype=layer.kernel.dtype) for v in values])
    return model


def main_caffe2keras(prototxt, caffemodel, out_path, **kwargs) -> str:
    """Convert a Caffe net to Keras and save it as ``out_path`` (a ``.keras`` file, written atomically)."""
    out_path = os.fspath(out_path)
    if not out_path.endswith(".keras"):
        raise ValueError(f"the output file must end in .keras, not {out_path!r}")
    model = caffe_to_keras(prototxt, caffemodel, **kwargs)
    from ..serialize import atomic

    with atomic(out_path) as tmp:
        model.save(tmp)
    return out_path
