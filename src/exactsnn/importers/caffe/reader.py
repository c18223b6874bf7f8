"""The reader: a Caffe network (``deploy.prototxt`` + ``.caffemodel``) as a :class:`CaffeNet`, a
plain list of layers with their parameters normalised and their weights as float64 arrays in
Caffe's own layout, parsed with the schema of :mod:`.schema` (no Caffe needed).

The TEST-phase layers of the prototxt are kept in file order, V1 enum types are translated to
the type strings current Caffe uses, and the weights are matched to the layers by name, as
Caffe's ``Net::CopyTrainedLayersFrom`` does.  With ``strict`` a layer type outside
:data:`SUPPORTED_TYPES` (LRN, Eltwise, Concat, BatchNorm, ...) is refused with a
:class:`ValueError` naming the layer and its type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .schema import V1_TYPE_NAMES, caffe_schema

__all__ = ["CaffeLayer", "CaffeNet", "SUPPORTED_TYPES", "check_supported", "read_caffe_net"]

SUPPORTED_TYPES = ("Input", "Convolution", "ReLU", "Pooling", "InnerProduct", "Flatten", "Dropout", "Softmax")


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
    return V1_TYPE_NAMES.get(enum_name, enum_name)


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


def check_supported(layer: CaffeLayer) -> None:
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
            check_supported(layer)
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

