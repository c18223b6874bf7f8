"""Caffe importer: small caffemodels written here with the importer's own protobuf schema,
compared against an independent channel-first NumPy forward pass of the Caffe net."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import exactsnn
from exactsnn import ir

keras = pytest.importorskip("keras")
pytest.importorskip("google.protobuf")

from exactsnn.importers import caffe  # noqa: E402
from exactsnn.importers.caffe import graph as caffe_graph_module  # noqa: E402
from exactsnn.importers.caffe import schema  # noqa: E402

# ----------------------------------------------------------------------------------------
# An independent reference: Caffe's forward pass in NumPy, channel-first (C, H, W)
# ----------------------------------------------------------------------------------------


def np_conv(x, w, b, stride=(1, 1), pad=(0, 0), dilation=(1, 1)):
    c, h, wd = x.shape
    o, ci, kh, kw = w.shape
    assert ci == c
    xp = np.zeros((c, h + 2 * pad[0], wd + 2 * pad[1]))
    xp[:, pad[0] : pad[0] + h, pad[1] : pad[1] + wd] = x
    ho = (h + 2 * pad[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * pad[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            for a in range(kh):
                for bb in range(kw):
                    pix = xp[:, i * stride[0] + a * dilation[0], j * stride[1] + bb * dilation[1]]
                    out[:, i, j] += w[:, :, a, bb] @ pix
    return out + b[:, None, None]


def np_pool(x, kernel, stride, pad=(0, 0), method="MAX"):
    """Caffe's PoolingLayer (ceil rounding; max ignores padding; AVE divides by the padded window)."""
    c, h, w = x.shape
    out_size = []
    for n, k, s, p in zip((h, w), kernel, stride, pad):
        o = int(np.ceil((n + 2 * p - k) / s)) + 1
        if p and (o - 1) * s >= n + p:
            o -= 1
        out_size.append(o)
    out = np.zeros((c,) + tuple(out_size))
    for i in range(out_size[0]):
        for j in range(out_size[1]):
            hs, ws = i * stride[0] - pad[0], j * stride[1] - pad[1]
            he, we = min(hs + kernel[0], h + pad[0]), min(ws + kernel[1], w + pad[1])
            area = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            win = x[:, hs:he, ws:we]
            if method == "MAX":
                out[:, i, j] = win.max(axis=(1, 2))
            else:
                out[:, i, j] = win.sum(axis=(1, 2)) / area
    return out


def np_forward(ops, x):
    """Run ``ops`` (a list of (kind, params)) on one channel-first image; returns pre-softmax logits."""
    for kind, p in ops:
        if kind == "conv":
            x = np_conv(x, p["w"], p["b"], p.get("stride", (1, 1)), p.get("pad", (0, 0)), p.get("dilation", (1, 1)))
        elif kind == "relu":
            x = np.maximum(x, 0.0)
        elif kind == "pool":
            x = np_pool(x, p["kernel"], p["stride"], p.get("pad", (0, 0)), p.get("method", "MAX"))
        elif kind == "ip":
            x = p["w"] @ x.reshape(-1) + p["b"]  # Caffe flattens (C, H, W) row-major
    return x


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------------------
# Fixture writers
# ----------------------------------------------------------------------------------------


def add_blob(layer_msg, array, legacy=False):
    blob = layer_msg.blobs.add()
    array = np.asarray(array, dtype=np.float32)
    if legacy:
        dims = (1,) * (4 - array.ndim) + array.shape
        blob.num, blob.channels, blob.height, blob.width = (int(d) for d in dims)
    else:
        blob.shape.dim.extend(int(d) for d in array.shape)
    blob.data.extend(array.reshape(-1).tolist())


def write_model(path, weights, legacy=False, extra_layers=(), schema=None):
    """A binary NetParameter holding ``weights`` (name -> [arrays]) in 'layer' or V1 'layers'."""
    classes = schema or caffe.caffe_schema()
    net = classes["NetParameter"]()
    net.name = "fixture"
    for name, ltype in extra_layers:
        msg = net.layer.add()
        msg.name = name
        msg.type = ltype
    for name, arrays in weights.items():
        msg = net.layers.add() if legacy else net.layer.add()
        msg.name = name
        if legacy:
            msg.type = 4 if arrays[0].ndim == 4 else 14  # CONVOLUTION / INNER_PRODUCT
        else:
            msg.type = "Convolution" if arrays[0].ndim == 4 else "InnerProduct"
        for a in arrays:
            add_blob(msg, a, legacy=legacy)
    path.write_bytes(net.SerializeToString())
    return path


def rand(rng, *shape, scale=0.5):
    # float32-representable values, so the caffemodel holds them exactly
    return (rng.standard_normal(shape) * scale).astype(np.float32).astype(np.float64)


PROTO_A = """
name: "tiny_a"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 13 dim: 11 } } }
layer {
  name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param {
    num_output: 4 kernel_h: 3 kernel_w: 5 pad_h: 1 pad_w: 2 engine: CAFFE
    weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" value: 0 }
  }
}
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer {
  name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 6 kernel_size: 3 stride: 2 pad: 1 }
}
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "relu2_out" }
layer {
  name: "conv3" type: "Convolution" bottom: "relu2_out" top: "conv3"
  convolution_param { num_output: 5 kernel_size: 3 pad: 2 dilation: 2 }
}
layer { name: "relu3" type: "ReLU" bottom: "conv3" top: "conv3" }
layer { name: "pool2" type: "Pooling" bottom: "conv3" top: "pool2" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "fc6" type: "InnerProduct" bottom: "pool2" top: "fc6" inner_product_param { num_output: 10 } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "drop6" type: "Dropout" bottom: "fc6" top: "fc6" dropout_param { dropout_ratio: 0.5 } }
layer { name: "train_only" type: "Dropout" bottom: "fc6" top: "fc6" include { phase: TRAIN } }
layer { name: "fc8a" type: "InnerProduct" bottom: "fc6" top: "fc8a" inner_product_param { num_output: 7 } }
layer { name: "prob" type: "Softmax" bottom: "fc8a" top: "prob" }
"""


@pytest.fixture(scope="module")
def net_a(tmp_path_factory):
    rng = np.random.default_rng(1)
    d = tmp_path_factory.mktemp("caffe_a")
    w = {
        "conv1": [rand(rng, 4, 3, 3, 5), rand(rng, 4)],
        "conv2": [rand(rng, 6, 4, 3, 3), rand(rng, 6)],
        "conv3": [rand(rng, 5, 6, 3, 3), rand(rng, 5)],
        # conv1 13x11 -> pool1 7x6 (ceil) -> conv2 4x3 -> conv3 4x3 -> pool2 3x2 (ceil, pad 1)
        "fc6": [rand(rng, 10, 5 * 3 * 2, scale=0.3), rand(rng, 10)],
        "fc8a": [rand(rng, 7, 10), rand(rng, 7)],
    }
    proto = d / "deploy.prototxt"
    proto.write_text(PROTO_A)
    # The caffemodel is a train net: extra data/loss layers without blobs must be ignored.
    model = write_model(d / "weights.caffemodel", w, extra_layers=[("data", "Data"), ("loss", "SoftmaxWithLoss")])
    ops = [
        ("conv", {"w": w["conv1"][0], "b": w["conv1"][1], "pad": (1, 2)}),
        ("relu", {}),
        ("pool", {"kernel": (2, 2), "stride": (2, 2)}),
        ("conv", {"w": w["conv2"][0], "b": w["conv2"][1], "stride": (2, 2), "pad": (1, 1)}),
        ("relu", {}),
        ("conv", {"w": w["conv3"][0], "b": w["conv3"][1], "pad": (2, 2), "dilation": (2, 2)}),
        ("relu", {}),
        ("pool", {"kernel": (3, 3), "stride": (2, 2), "pad": (1, 1)}),
        ("ip", {"w": w["fc6"][0], "b": w["fc6"][1]}),
        ("relu", {}),
        ("ip", {"w": w["fc8a"][0], "b": w["fc8a"][1]}),
    ]
    x = rng.uniform(-2, 2, size=(6, 3, 13, 11))
    ref = np.stack([np_forward(ops, xi) for xi in x])
    return proto, model, x, ref


def keras_out(model, x_chw):
    return np.asarray(model(np.transpose(x_chw, (0, 2, 3, 1)), training=False), dtype=np.float64)


def test_read_caffe_net_layers_and_weights(net_a):
    proto, model, _, _ = net_a
    net = caffe.read_caffe_net(proto, model)
    names = [l.name for l in net.layers]
    assert "train_only" not in names  # TRAIN-phase layer dropped
    assert names[0] == "data" and names[-1] == "prob"
    assert net.input_shape == (3, 13, 11)
    conv1 = net.layer("conv1")
    assert conv1.type == "Convolution"
    assert conv1.params["kernel"] == (3, 5) and conv1.params["pad"] == (1, 2)
    assert conv1.blobs[0].dtype == np.float64 and conv1.blobs[0].shape == (4, 3, 3, 5)
    assert net.layer("pool2").params == {
        "method": "MAX", "kernel": (3, 3), "stride": (2, 2), "pad": (1, 1),
        "global_pooling": False, "round_mode": "CEIL",
    }
    assert net.layer("fc6").blobs[0].shape == (10, 30)


def test_caffe_to_keras_matches_numpy_caffe_forward_float64(net_a):
    proto, model, x, ref = net_a
    m = caffe.caffe_to_keras(proto, model, dtype="float64", softmax=False)
    out = keras_out(m, x)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)
    kinds = [type(l).__name__ for l in m.layers]
    # ceil-mode pool1 is TF 'same'; conv2 (stride 2) and pool2 (pad 1) need explicit padding
    assert m.get_layer("pool1").padding == "same"
    assert m.get_layer("conv1").padding == "same"
    assert "ZeroPadding2D" in kinds and m.get_layer("conv2_pad") and m.get_layer("pool2_pad")
    assert m.get_layer("conv1").activation.__name__ == "relu"


def test_caffe_to_keras_float32_with_softmax(net_a):
    proto, model, x, ref = net_a
    m = caffe.caffe_to_keras(proto, model)
    assert m.layers[-1].name == "fc8a" and m.layers[-1].activation.__name__ == "softmax"
    np.testing.assert_allclose(keras_out(m, x), softmax(ref), atol=1e-5)
    logits = caffe.caffe_to_keras(proto, model, softmax=False)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(keras_out(logits, x), ref, atol=1e-5 * scale)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # inside Keras's saver
def test_main_caffe2keras_saves_loadable_model(net_a, tmp_path):
    proto, model, x, ref = net_a
    out = tmp_path / "sub" / "model.keras"
    assert caffe.main_caffe2keras(proto, model, out) == str(out)
    loaded = keras.models.load_model(out)
    np.testing.assert_allclose(keras_out(loaded, x), softmax(ref), atol=1e-5)
    assert [p.name for p in out.parent.iterdir()] == ["model.keras"]  # no temporary left behind
    with pytest.raises(ValueError, match=r"\.keras"):
        caffe.main_caffe2keras(proto, model, tmp_path / "model.h5")


PROTO_V1 = """
name: "tiny_v1"
input: "data"
input_dim: 1
input_dim: 3
input_dim: 10
input_dim: 10
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
  blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
  convolution_param { num_output: 4 kernel_size: 3 } }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layers { name: "flat" type: FLATTEN bottom: "pool1" top: "flat" }
layers { name: "fc6" type: INNER_PRODUCT bottom: "flat" top: "fc6" inner_product_param { num_output: 8 } }
layers { name: "relu6" type: RELU bottom: "fc6" top: "fc6" }
layers { name: "drop6" type: DROPOUT bottom: "fc6" top: "fc6" }
layers { name: "fc7" type: INNER_PRODUCT bottom: "fc6" top: "fc7" inner_product_param { num_output: 3 } }
layers { name: "prob" type: SOFTMAX bottom: "fc7" top: "prob" }
"""


@pytest.fixture(scope="module")
def net_v1(tmp_path_factory):
    rng = np.random.default_rng(2)
    d = tmp_path_factory.mktemp("caffe_v1")
    w = {
        "conv1": [rand(rng, 4, 3, 3, 3), rand(rng, 4)],
        "fc6": [rand(rng, 8, 4 * 4 * 4, scale=0.3), rand(rng, 8)],
        "fc7": [rand(rng, 3, 8), rand(rng, 3)],
    }
    proto = d / "deploy_v1.prototxt"
    proto.write_text(PROTO_V1)
    # legacy blobs: 4-D num/channels/height/width, inner products stored as (1, 1, out, in)
    model = write_model(d / "v1.caffemodel", w, legacy=True)
    ops = [
        ("conv", {"w": w["conv1"][0], "b": w["conv1"][1]}),
        ("relu", {}),
        ("pool", {"kernel": (2, 2), "stride": (2, 2), "method": "AVE"}),
        ("ip", {"w": w["fc6"][0], "b": w["fc6"][1]}),
        ("relu", {}),
        ("ip", {"w": w["fc7"][0], "b": w["fc7"][1]}),
    ]
    x = rng.uniform(-1, 1, size=(4, 3, 10, 10))
    ref = np.stack([np_forward(ops, xi) for xi in x])
    return proto, model, x, ref


@pytest.fixture(scope="module")
def net_v1_current(net_v1):
    """The V1 net's prototxt in the current format (as text), with the V1 caffemodel."""
    _, model, x, ref = net_v1
    current = PROTO_V1.replace("layers {", "layer {")
    for v1, new in [("CONVOLUTION", '"Convolution"'), ("RELU", '"ReLU"'), ("POOLING", '"Pooling"'),
                    ("FLATTEN", '"Flatten"'), ("INNER_PRODUCT", '"InnerProduct"'), ("DROPOUT", '"Dropout"'),
                    ("SOFTMAX", '"Softmax"')]:
        current = current.replace(f"type: {v1} ", f"type: {new} ")
    current = current.replace("blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0", "")
    return current, model, x, ref


def test_v1_legacy_layers(net_v1, net_v1_current):
    proto, model, x, ref = net_v1
    net = caffe.read_caffe_net(proto, model)
    assert net.legacy and [l.type for l in net.layers][:4] == ["Convolution", "ReLU", "Pooling", "Flatten"]
    assert net.layer("fc6").blobs[0].shape == (1, 1, 8, 64)
    m = caffe.caffe_to_keras(proto, model, dtype="float64", softmax=False)
    np.testing.assert_allclose(keras_out(m, x), ref, rtol=1e-10, atol=1e-10)
    # a current-format prototxt takes weights from a V1 caffemodel (matched by name)
    current, _, _, _ = net_v1_current
    assert not caffe.read_caffe_net(current, model).legacy
    m2 = caffe.caffe_to_keras(current, model, dtype="float64", softmax=False)
    np.testing.assert_allclose(keras_out(m2, x), ref, rtol=1e-10, atol=1e-10)


NETS = ["net_a", "net_v1", "net_v1_current"]


def _fields_equal(a, b) -> bool:
    """Same node class and the same values in every dataclass field (arrays element by element)."""
    if type(a) is not type(b):
        return False
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (np.shape(x) == np.shape(y) and np.array_equal(x, y)):
                return False
        elif x != y:
            return False
    return True


@pytest.mark.parametrize("fixture", NETS)
def test_import_caffe_equals_the_keras_path(fixture, request):
    """Direct import = caffe2keras then the Keras importer: same nodes, same weights, same float64 logits."""
    from exactsnn.evaluate import evaluate
    from exactsnn.importers.keras import import_keras, keras_logits

    proto, model, x, ref = request.getfixturevalue(fixture)
    x_hwc = np.transpose(x, (0, 2, 3, 1))
    direct = caffe.import_caffe(proto, model)
    assert isinstance(direct, ir.Graph)
    converted = caffe.caffe_to_keras(proto, model)  # float32, as the workflow saves it
    via_keras = import_keras(converted)
    assert len(direct.nodes) == len(via_keras.nodes)
    for (name, a), (other, b) in zip(direct.nodes.items(), via_keras.nodes.items()):
        assert _fields_equal(a, b), (name, other)
    scale = np.abs(ref).max()
    logits = evaluate(direct, x_hwc)
    assert logits.dtype == np.float64
    np.testing.assert_allclose(logits, ref, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(logits, keras_logits(converted, x_hwc), rtol=0, atol=1e-12 * scale)
    np.testing.assert_array_equal(logits, evaluate(via_keras, x_hwc))


@pytest.mark.parametrize("fixture", NETS)
def test_import_caffe_maps_to_an_exact_snn(fixture, request):
    """The directly imported Caffe net through Phase 1 and 2: SNN logits = Caffe's, agreement 100 %."""
    proto, model, x, ref = request.getfixturevalue(fixture)
    x_hwc = np.transpose(x, (0, 2, 3, 1))
    bound = float(np.abs(x).max())
    snn = exactsnn.convert(caffe.import_caffe(proto, model), x_hwc, input_range=(-bound, bound))
    sim = exactsnn.simulate(snn, x_hwc)
    np.testing.assert_allclose(sim.logits, ref, rtol=0, atol=1e-9 * np.abs(ref).max())
    assert np.array_equal(sim.logits.argmax(axis=1), ref.argmax(axis=1))
    assert sim.deviating.sum() == 0


def test_import_caffe_needs_no_keras(net_a):
    """The direct path imports neither Keras nor TensorFlow (it reads with protobuf and NumPy alone)."""
    import subprocess
    import sys

    proto, model, _, _ = net_a
    code = (
        "import sys\n"
        "from exactsnn.importers.caffe import import_caffe\n"
        f"g = import_caffe({str(proto)!r}, {str(model)!r})\n"
        "print(' '.join(f'{n}:{type(v).__name__}' for n, v in g.nodes.items()))\n"
        "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    nodes, imported = out.stdout.splitlines()
    assert imported == "[]"
    # Caffe's layer names; padding for the strided conv2 and the ceil-rounded pool2, conv3's
    # dilated pad is TensorFlow's 'same'; the train-only Dropout, drop6 and the Softmax leave no node
    assert nodes.split() == [
        "data:Input", "conv1:Conv2D", "relu1:ReLU", "pool1:MaxPool2D", "conv2/pad:ZeroPadding2D", "conv2:Conv2D",
        "relu2:ReLU", "conv3:Conv2D", "relu3:ReLU", "pool2/pad:ZeroPadding2D", "pool2:MaxPool2D",
        "fc6/flatten:Flatten", "fc6:Dense", "relu6:ReLU", "fc8a:Dense",
    ]


def test_unpacked_float_weights_fall_back(tmp_path, net_a):
    """Blobs written with non-packed floats still load (slow element-wise path)."""
    from google.protobuf import descriptor_pool, message_factory

    fdp = schema.schema_file(False)
    for m in fdp.message_type:
        if m.name == "BlobProto":
            for f in m.field:
                if f.name == "data":
                    f.options.packed = False
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    classes = {m.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{m.name}"))
              for m in fdp.message_type}
    proto, packed_model, x, ref = net_a
    weights = {l.name: l.blobs for l in caffe.read_caffe_net(proto, packed_model).layers if l.blobs}
    unpacked = write_model(tmp_path / "unpacked.caffemodel", weights, schema=classes)
    assert unpacked.read_bytes() != packed_model.read_bytes()
    net = caffe.read_caffe_net(proto, unpacked)
    for name, arrays in weights.items():
        for a, b in zip(arrays, net.layer(name).blobs):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "layer_text, name, ltype",
    [
        ('layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1" lrn_param { local_size: 5 } }', "norm1", "LRN"),
        ('layer { name: "sum" type: "Eltwise" bottom: "conv1" bottom: "data" top: "sum" }', "sum", "Eltwise"),
        ('layer { name: "cat" type: "Concat" bottom: "conv1" bottom: "data" top: "cat" }', "cat", "Concat"),
    ],
)
def test_refused_layers_name_layer_and_type(layer_text, name, ltype):
    text = (
        'input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
        'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
        "convolution_param { num_output: 2 kernel_size: 3 } }\n" + layer_text
    )
    with pytest.raises(ValueError, match=rf"'{name}'.*'{ltype}'"):
        caffe.read_caffe_net(text)
    with pytest.raises(ValueError, match=rf"'{name}'.*'{ltype}'"):
        caffe.import_caffe(text, None)
    net = caffe.read_caffe_net(text, strict=False)  # reading for inspection still works
    assert net.layers[-1].type == ltype


def test_refused_v1_lrn_and_other_unsupported_settings(tmp_path):
    text = PROTO_V1.replace(
        'layers { name: "flat"', 'layers { name: "norm1" type: LRN bottom: "pool1" top: "pool1" }\nlayers { name: "flat"'
    )
    with pytest.raises(ValueError, match=r"'norm1'.*'LRN'"):
        caffe.read_caffe_net(text)
    leaky = PROTO_V1.replace('type: RELU bottom: "conv1"', 'type: RELU relu_param { negative_slope: 0.1 } bottom: "conv1"')
    rng = np.random.default_rng(0)
    model = write_model(tmp_path / "m.caffemodel", {
        "conv1": [rand(rng, 4, 3, 3, 3), rand(rng, 4)],
        "fc6": [rand(rng, 8, 64), rand(rng, 8)], "fc7": [rand(rng, 3, 8), rand(rng, 3)],
    })
    for read in (caffe.import_caffe, caffe.caffe_to_keras):
        with pytest.raises(ValueError, match=r"'relu1'.*negative_slope"):
            read(leaky, model)
    # max pooling that needs padding directly on (possibly negative) input is refused
    neg = ('input: "data" input_dim: 1 input_dim: 1 input_dim: 5 input_dim: 5\n'
           'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }\n'
           'layer { name: "fc" type: "InnerProduct" bottom: "p" top: "fc" inner_product_param { num_output: 2 } }')
    m2 = write_model(tmp_path / "m2.caffemodel", {"fc": [rand(rng, 2, 9), rand(rng, 2)]})
    with pytest.raises(ValueError, match=r"'p'.*non-negative"):
        caffe.import_caffe(neg, m2)
    # the same pool after a ReLU is exact with a zero pad
    relu_first = neg.replace('bottom: "data" top: "p"', 'bottom: "r" top: "p"').replace(
        "layer {", 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\nlayer {', 1)
    assert isinstance(caffe.import_caffe(relu_first, m2).nodes["p/pad"], ir.ZeroPadding2D)
    # missing weights, a missing bias blob
    with pytest.raises(ValueError, match=r"'conv1' has no weights"):
        caffe.import_caffe(PROTO_V1, m2)
    no_bias = write_model(tmp_path / "m3.caffemodel", {"conv1": [rand(rng, 4, 3, 3, 3)]})
    with pytest.raises(ValueError, match=r"'conv1' has bias_term set but no bias blob"):
        caffe.import_caffe(PROTO_V1, no_bias)
    # no input shape; a layer after the final Softmax
    with pytest.raises(ValueError, match=r"no input shape; pass input_shape"):
        caffe.import_caffe(PROTO_V1.replace("input_dim: 1\ninput_dim: 3\ninput_dim: 10\ninput_dim: 10\n", ""), model)
    after = PROTO_V1 + 'layers { name: "late" type: RELU bottom: "prob" top: "prob" }\n'
    with pytest.raises(ValueError, match=r"'late' \(ReLU\) follows the final Softmax"):
        caffe.import_caffe(after, model)


def test_branch_refused(net_a):
    proto, model, _, _ = net_a
    branch = PROTO_A.replace('bottom: "conv1" top: "pool1"', 'bottom: "data" top: "pool1"')
    with pytest.raises(ValueError, match=r"'pool1'.*straight chains"):
        caffe.import_caffe(branch, model)


def test_layers_without_bias_term(tmp_path):
    """bias_term: false reads one blob per layer; the bias is zero in the graph and in the Keras export."""
    from exactsnn.evaluate import evaluate

    rng = np.random.default_rng(3)
    w = {"conv1": [rand(rng, 4, 3, 3, 3)], "fc6": [rand(rng, 8, 64)], "fc7": [rand(rng, 3, 8)]}
    text = PROTO_V1.replace("num_output: 4 kernel_size: 3", "num_output: 4 kernel_size: 3 bias_term: false")
    text = text.replace("num_output: 8 }", "num_output: 8 bias_term: false }")
    text = text.replace("num_output: 3 }", "num_output: 3 bias_term: false }")
    model = write_model(tmp_path / "nobias.caffemodel", w, legacy=True)
    zero = {name: np.zeros(len(a[0])) for name, a in w.items()}
    ops = [
        ("conv", {"w": w["conv1"][0], "b": zero["conv1"]}),
        ("relu", {}),
        ("pool", {"kernel": (2, 2), "stride": (2, 2), "method": "AVE"}),
        ("ip", {"w": w["fc6"][0], "b": zero["fc6"]}),
        ("relu", {}),
        ("ip", {"w": w["fc7"][0], "b": zero["fc7"]}),
    ]
    x = rng.uniform(-1, 1, size=(3, 3, 10, 10))
    ref = np.stack([np_forward(ops, xi) for xi in x])
    g = caffe.import_caffe(text, model)
    assert not np.any(g.nodes["conv1"].bias) and not np.any(g.nodes["fc7"].bias)
    np.testing.assert_allclose(evaluate(g, np.transpose(x, (0, 2, 3, 1))), ref, rtol=0, atol=1e-12)
    m = caffe.caffe_to_keras(text, model, dtype="float64", softmax=False)
    np.testing.assert_allclose(keras_out(m, x), ref, rtol=0, atol=1e-12)


def test_keras_export_softmax_layer_and_refusals(net_v1):
    from exactsnn.importers.caffe import to_keras

    proto, model, x, ref = net_v1
    # a ReLU on the logits: the Dense takes it as activation, the softmax becomes its own layer
    relu_logits = PROTO_V1.replace(
        'layers { name: "prob"', 'layers { name: "relu7" type: RELU bottom: "fc7" top: "fc7" }\nlayers { name: "prob"'
    )
    m = caffe.caffe_to_keras(relu_logits, model, dtype="float64")
    assert [l.name for l in m.layers[-2:]] == ["fc7", "prob"] and type(m.layers[-1]).__name__ == "Softmax"
    np.testing.assert_allclose(keras_out(m, x), softmax(np.maximum(ref, 0)), rtol=1e-10, atol=1e-12)
    g = ir.Graph()
    g.add("x", ir.Input((4,)))
    g.add("bn", ir.BatchNorm(np.ones(4), np.zeros(4)), after="x")
    with pytest.raises(TypeError, match=r"'bn'.*BatchNorm"):
        to_keras.keras_model(g)


def test_pool_size_rules():
    # Caffe's ceil rounding and the "last window starts inside the image" correction
    assert caffe_graph_module.caffe_pool_size(7, 2, 2, 0, True) == 4
    assert caffe_graph_module.caffe_pool_size(7, 2, 2, 0, False) == 3
    assert caffe_graph_module.caffe_pool_size(224, 2, 2, 0, True) == 112
    assert caffe_graph_module.caffe_pool_size(4, 2, 2, 1, True) == 3
    assert caffe_graph_module.caffe_pool_size(5, 2, 2, 1, True) == 3  # would be 4 without the correction


def test_cli_caffe2keras_then_the_exact_snn(net_a, tmp_path):
    """The CLI writes the Keras model; its strided, padded and ceil-mode layers map exactly."""
    import exactsnn
    from exactsnn.cli import main
    from exactsnn.importers.keras import keras_logits

    proto, model, x, ref = net_a
    out = tmp_path / "caffe.keras"
    assert main(["caffe2keras", str(proto), str(model), "-o", str(out)]) == 0
    converted = keras.models.load_model(out)
    x_hwc = np.transpose(x, (0, 2, 3, 1))
    snn = exactsnn.convert(converted, x_hwc, input_range=(-2.0, 2.0))
    sim = exactsnn.simulate(snn, x_hwc)
    np.testing.assert_allclose(sim.logits, ref, atol=1e-9 * np.abs(ref).max())
    np.testing.assert_allclose(keras_logits(converted, x_hwc), ref, atol=1e-9 * np.abs(ref).max())
    assert sim.deviating.sum() == 0


@pytest.mark.parametrize("damage", ["empty", "garbage", "prototxt"])
def test_broken_caffe_files_give_one_line_naming_the_file(net_a, tmp_path, capsys, damage):
    from exactsnn.cli import main

    proto, model, _, _ = net_a
    if damage == "prototxt":
        proto = tmp_path / "deploy.prototxt"
        proto.write_text("layer { name: 'c' type: {{ ")
        bad = proto
    else:
        bad = tmp_path / "net.caffemodel"
        bad.write_bytes(b"" if damage == "empty" else np.random.default_rng(0).bytes(200))
        model = bad
    assert main(["caffe2keras", str(proto), str(model), "-o", str(tmp_path / "m.keras")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0], err
