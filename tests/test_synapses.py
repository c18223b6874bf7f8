"""The scaled layers' kinds (exactsnn.synapses): one class per kind, saved in the layout of the
single tagged class the files were written with before, so old files load and new ones read
the same."""

from __future__ import annotations

import json

import numpy as np
import pytest

from exactsnn import ir, serialize
from exactsnn.preprocess import PreprocessedNetwork, fold_network
from exactsnn.synapses import KINDS, ConvSynapses, DenseSynapses

LAYOUT = ["name", "kind", "weight", "bias", "input_shape", "relu", "pools", "strides", "dilation", "pads", "used",
          "source", "skips"]


def small_net() -> PreprocessedNetwork:
    rng = np.random.default_rng(0)
    g = ir.Graph()
    g.add("in", ir.Input((5, 5, 2)))
    g.add("conv", ir.Conv2D(rng.normal(size=(3, 3, 2, 3)), rng.normal(size=3), strides=2, padding="same"), "in")
    g.add("relu", ir.ReLU(), "conv")
    g.add("flat", ir.Flatten(), "relu")
    g.add("dense", ir.Dense(rng.normal(size=(27, 4)), rng.normal(size=4)), "flat")
    return fold_network(g, (-1.0, 2.0))


def _meta(path) -> dict:
    with np.load(path) as archive:
        return json.loads(archive["__meta__"].tobytes().decode("utf-8"))


def test_each_kind_is_saved_as_the_tagged_layer_it_was_and_loads_as_its_class(tmp_path):
    net = small_net()
    assert [type(l) for l in net.layers] == [ConvSynapses, DenseSynapses]
    net.save(tmp_path / "net.npz")
    saved = _meta(tmp_path / "net.npz")["fields"]["layers"]
    assert [l["__class__"] for l in saved] == ["AffineLayer", "AffineLayer"]
    assert [list(l["fields"]) for l in saved] == [LAYOUT, LAYOUT]
    assert [l["fields"]["kind"] for l in saved] == ["conv", "dense"]
    dense = saved[1]["fields"]
    assert [dense[k] for k in ("strides", "pads", "used")] == [
        {"__tuple__": [1, 1]}, {"__tuple__": [0, 0, 0, 0]}, {"__tuple__": [0, 0]}]
    back = serialize.load(tmp_path / "net.npz")
    assert [type(l) for l in back.layers] == [ConvSynapses, DenseSynapses]
    for a, b in zip(net.layers, back.layers):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
    assert back.layers[0].pads == net.layers[0].pads and back.layers[0].strides == (2, 2)


def test_an_unknown_kind_is_refused_by_name(tmp_path):
    small_net().save(tmp_path / "net.npz")
    with np.load(tmp_path / "net.npz") as archive:
        arrays = {k: archive[k] for k in archive.files}
    doc = _meta(tmp_path / "net.npz")
    doc["fields"]["layers"][1]["fields"]["kind"] = "lstm"
    arrays["__meta__"] = np.frombuffer(json.dumps(doc).encode("utf-8"), np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(serialize.LoadError, match="unknown kind 'lstm' of AffineLayer"):
        serialize.load(tmp_path / "bad.npz")


def test_each_kind_has_its_own_shapes_and_products():
    conv, dense = small_net().layers
    assert KINDS == {"conv": ConvSynapses, "dense": DenseSynapses}
    assert conv.output_shape == (3, 3, 3) and conv.fan_in == 18 and dense.fan_in == 27
    x = np.random.default_rng(1).uniform(size=(2, 5, 5, 2))
    # The NumPy and TensorFlow products of each kind are the same map.
    for layer, inputs in ((conv, x), (dense, conv.apply(x))):
        tf_value = np.asarray(layer.tf_product(layer.tf_inputs(inputs), layer.kernel))
        np.testing.assert_allclose(tf_value, layer.linear(inputs), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="does not fit input"):
        DenseSynapses("d", np.zeros((5, 2)), np.zeros(2), (4,))
