"""The scaled layers' kinds (exactsnn.synapses): one class per kind, saved in the layout of the
single tagged class the files were written with before, so old files load and new ones read
the same."""

from __future__ import annotations

import json

import numpy as np
import pytest

from exactsnn import ir, serialize
from exactsnn.preprocess import PreprocessedNetwork, fold_network
from exactsnn.synapses import KINDS, ConvSynapses, DenseSynapses, PooledDenseSynapses

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
    assert KINDS == {"conv": ConvSynapses, "dense": DenseSynapses, "pooled_dense": PooledDenseSynapses}
    assert conv.output_shape == (3, 3, 3) and conv.fan_in == 18 and dense.fan_in == 27
    x = np.random.default_rng(1).uniform(size=(2, 5, 5, 2))
    # The NumPy and TensorFlow products of each kind are the same map.
    for layer, inputs in ((conv, x), (dense, conv.apply(x))):
        tf_value = np.asarray(layer.tf_product(layer.tf_inputs(inputs), layer.kernel))
        np.testing.assert_allclose(tf_value, layer.linear(inputs), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="does not fit input"):
        DenseSynapses("d", np.zeros((5, 2)), np.zeros(2), (4,))


def gap_net(bn_before_pool: bool = True) -> PreprocessedNetwork:
    """conv → ReLU → (BN with negative scales) → global average pool → Dense(ReLU) → Dense."""
    rng = np.random.default_rng(2)
    g = ir.Graph()
    g.add("in", ir.Input((6, 5, 2)))
    g.add("conv", ir.Conv2D(rng.normal(size=(3, 3, 2, 4)), rng.normal(size=4), padding="same"), "in")
    g.add("relu", ir.ReLU(), "conv")
    last = "relu"
    if bn_before_pool:
        g.add("bn", ir.BatchNorm(rng.uniform(-2, 2, 4), rng.normal(size=4)), "relu")
        last = "bn"
    g.add("gap", ir.GlobalAvgPool2D(), last)
    g.add("fc", ir.Dense(rng.normal(size=(4, 7)), rng.normal(size=7)), "gap")
    g.add("fc_relu", ir.ReLU(), "fc")
    g.add("out", ir.Dense(rng.normal(size=(7, 3)), rng.normal(size=3)), "fc_relu")
    return fold_network(g, (-1.0, 2.0))


def test_a_global_average_pool_stays_factored_and_is_the_dense_layer_it_stands_for(tmp_path):
    net = gap_net()
    conv, pooled, out = net.layers
    assert type(pooled) is PooledDenseSynapses and type(out) is DenseSynapses
    # (C, O) stored, not (H·W·C, O): ResNet50's classifier would be 800 MB expanded.
    assert pooled.weight.shape == (4, 7) and pooled.input_shape == (6, 5, 4)
    dense = pooled.explicit()
    assert type(dense) is DenseSynapses and dense.weight.shape == (120, 7)
    assert pooled.fan_in == dense.fan_in == 120
    assert pooled.synapses == dense.synapses and pooled.macs == dense.macs
    np.testing.assert_allclose(pooled.weight_sum, dense.weight_sum, rtol=1e-14)
    np.testing.assert_allclose(pooled.per_synapse(np.maximum(pooled.weight, 0)).sum(0),
                               np.maximum(pooled.weight, 0).sum(0), rtol=1e-14)
    x = conv.apply(np.random.default_rng(3).uniform(size=(3, 6, 5, 2)))
    np.testing.assert_allclose(pooled.linear(x), dense.linear(x), rtol=1e-13, atol=1e-13)
    scale, shift = np.array([2.0, -1.0, 0.5, -3.0]), np.array([0.1, 0.2, -0.3, 0.4])
    np.testing.assert_allclose(pooled.per_synapse(pooled.input_scaled(scale)), dense.input_scaled(scale), rtol=1e-14)
    np.testing.assert_allclose(pooled.on_constant(shift), dense.on_constant(shift), rtol=1e-13, atol=1e-14)
    for dtype in ("float64", "float32"):
        import tensorflow as tf

        tf_value = np.asarray(pooled.tf_product(pooled.tf_inputs(tf.constant(x, dtype)), tf.constant(pooled.kernel, dtype)))
        # float32: within the γ_{fan-in + 2} Σ|W||x| the certificate allows for.
        u = 2.0 ** -24 if dtype == "float32" else 2.0 ** -53
        allowed = 2 * (pooled.fan_in + 2) * u * (np.abs(x.reshape(3, -1)) @ np.abs(dense.weight))
        assert np.all(np.abs(tf_value - pooled.linear(x)) <= allowed)
    # Folded with the network it came from, and the same after a save and a load.
    net.save(tmp_path / "net.npz")
    back = serialize.load(tmp_path / "net.npz")
    assert type(back.layers[1]) is PooledDenseSynapses and np.array_equal(back.layers[1].weight, pooled.weight)
    with pytest.raises(ValueError, match="does not fit pooled input"):
        PooledDenseSynapses("p", np.zeros((5, 2)), np.zeros(2), (3, 3, 4))
