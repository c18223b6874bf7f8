"""HDF5 export: the documented layout, and an exact round trip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import exactsnn
from exactsnn.export import FORMAT, FORMAT_VERSION, load_hdf5, save_hdf5

import random_networks as rn

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")


def assert_same(a, b, where="net"):
    """Recursive equality of exactsnn objects: same classes, fields, array dtypes and bits."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            if f.init:
                assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        assert np.array_equal(a, b, equal_nan=True), where
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for k, (u, v) in enumerate(zip(a, b)):
            assert_same(u, v, f"{where}[{k}]")
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def conv_net(neuron):
    keras.utils.set_random_seed(5)
    L = keras.layers
    model = keras.Sequential([
        keras.Input((9, 9, 2)), L.Conv2D(3, 3, padding="same"), L.ReLU(), L.BatchNormalization(),
        L.MaxPooling2D(2, strides=1, padding="same"), L.Conv2D(4, 2, strides=2), L.BatchNormalization(), L.ReLU(),
        L.MaxPooling2D(2), L.Flatten(), L.Dense(7, activation="relu"), L.Dense(4),
    ])
    rng = np.random.default_rng(5)
    rn.randomise_batch_norm(model, rng)
    rn.randomise_biases(model, rng)
    x = rng.uniform(-3, 3, (40, 9, 9, 2))
    return exactsnn.convert(model, x, input_range=(-3.0, 3.0), neuron=neuron), x


def dense_net(neuron, **kw):
    keras.utils.set_random_seed(6)
    L = keras.layers
    model = keras.Sequential([keras.Input((12,)), L.Dense(10, activation="relu"), L.Dense(6, activation="relu"), L.Dense(3)])
    rng = np.random.default_rng(6)
    rn.randomise_biases(model, rng)
    x = rng.uniform(0, 1, (30, 12))
    return exactsnn.convert(model, x, neuron=neuron, **kw), x


def residual_net(neuron):
    from test_crosscheck import residual_net as build

    return build(neuron)


def deviating_net(neuron):
    """Outside the exact regime (ζ = −0.5, edited thresholds, ϑ ≤ 0): early spikes and early inputs."""
    from test_crosscheck import deviating_dense_net

    return deviating_dense_net(neuron)


@pytest.mark.parametrize("neuron", ["alpha", "b1"])
@pytest.mark.parametrize("build", [conv_net, dense_net, residual_net, deviating_net])
def test_hdf5_round_trip_is_exact(tmp_path, build, neuron):
    net, x = build(neuron)
    path = tmp_path / "snn.h5"
    save_hdf5(net, path)
    back = load_hdf5(path)
    assert_same(net, back)
    a, b = exactsnn.simulate(net, x, record=True), exactsnn.simulate(back, x, record=True)
    assert np.array_equal(a.logits, b.logits)
    assert np.array_equal(a.predictions, b.predictions)
    for s, t in zip(a.spike_times, b.spike_times):
        assert np.array_equal(s, t)


def test_hdf5_round_trip_keeps_device_mismatch(tmp_path):
    net, x = dense_net("alpha", alpha_sigma=0.1, alpha_seed=3, zeta=0.3)
    save_hdf5(net, tmp_path / "m.h5")
    back = load_hdf5(tmp_path / "m.h5")
    assert_same(net, back)
    assert np.array_equal(exactsnn.simulate(net, x).logits, exactsnn.simulate(back, x).logits)


def test_hdf5_layout_is_readable_without_exactsnn(tmp_path):
    """What the module docstring promises, read with plain h5py."""
    net, _ = conv_net("alpha")
    path = tmp_path / "snn.h5"
    save_hdf5(net, path)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == FORMAT and f.attrs["format_version"] == FORMAT_VERSION
        assert f.attrs["neuron"] == "alpha"
        assert tuple(f.attrs["input_shape"]) == net.input_shape
        assert f.attrs["n_layers"] == len(net.layers) == len(f["layers"])
        assert np.isclose(f.attrs["latency"], net.latency)
        edges = f["graph/edges"][()]
        assert edges.tolist() == [[i - 1, i] for i in range(len(net.layers))]
        assert np.allclose(f["graph/edge_delay"][()], 0.0)
        for i, sl in enumerate(net.layers):
            g = f["layers"][str(i)]
            assert g.attrs["kind"] == sl.layer.kind
            assert g.attrs["role"] == ("hidden" if sl.hidden else "readout")
            assert (g.attrs["t_start"], g.attrs["t_min"], g.attrs["t_max"]) == (sl.t_start, sl.t_min, sl.t_max)
            if sl.hidden:
                assert g.attrs["synaptic_weights"] == "J"
                np.testing.assert_array_equal(g["J"][()], sl.J)
                np.testing.assert_array_equal(g["threshold"][()], sl.threshold)
            else:
                assert g.attrs["synaptic_weights"] == "W" and "J" not in g
            np.testing.assert_array_equal(g["W"][()], sl.layer.weight)
            assert len(g["pools"]) == len(sl.layer.pools)
        signs = f["layers/0/pools/0/sign"][()]
        assert np.any(signs < 0)  # the negative BN scale folded through the pool


def test_hdf5_graph_lists_skips_with_their_delays(tmp_path):
    net, _ = residual_net("alpha")
    save_hdf5(net, tmp_path / "r.h5")
    with h5py.File(tmp_path / "r.h5", "r") as f:
        edges, delay, group = f["graph/edges"][()], f["graph/edge_delay"][()], f["graph/edge_group"][()]
        want = []
        for i, sl in enumerate(net.layers):
            for k, g in enumerate(sl.layer.groups):
                want.append((g.source, i, sl.group_delays()[k], k))
        assert [(int(a), int(b), float(d), int(k)) for (a, b), d, k in zip(edges, delay, group)] == want
        skip = f["layers/2/skips/0"]
        assert skip.attrs["source"] == 0 and skip.attrs["delay"] > 0
        np.testing.assert_array_equal(skip["J"][()], net.layers[2].group_J(net.layers[2].layer.skips[0]))


@pytest.mark.parametrize("neuron", ["alpha", "b1"])
def test_hdf5_synapses_are_the_models(tmp_path, neuron):
    """Each hidden layer's synaptic_weights names the model's synapse and its dataset holds
    the model's synaptic weights; the read-out's are W."""
    net, _ = residual_net(neuron)
    model = net.model
    save_hdf5(net, tmp_path / "s.h5")
    with h5py.File(tmp_path / "s.h5", "r") as f:
        for i, sl in enumerate(net.layers):
            g = f["layers"][str(i)]
            name = model.synapse if sl.hidden else "W"
            assert g.attrs["synaptic_weights"] == name
            for group, data in zip(sl.layer.groups, [g] + [g["skips"][str(k)] for k in range(len(sl.layer.skips))]):
                want = model.synaptic_weights(group.weight, sl.layer.weight_sum) if sl.hidden else group.weight
                np.testing.assert_array_equal(data[name][()], want)
                assert ("J" in data) == (name == "J")


def test_b1_files_name_w_as_the_synaptic_weights(tmp_path):
    net, _ = dense_net("b1")
    save_hdf5(net, tmp_path / "b1.h5")
    with h5py.File(tmp_path / "b1.h5", "r") as f:
        assert f.attrs["neuron"] == "b1"
        assert all(f["layers"][str(i)].attrs["synaptic_weights"] == "W" for i in range(len(net.layers)))
        assert all("J" not in f["layers"][str(i)] for i in range(len(net.layers)))


def test_load_hdf5_rejects_other_files(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "something else"
    with pytest.raises(ValueError, match="not an exactsnn-snn"):
        load_hdf5(tmp_path / "other.h5")
    with pytest.raises(FileNotFoundError):
        load_hdf5(tmp_path / "missing.h5")
    net, _ = dense_net("alpha")
    save_hdf5(net, tmp_path / "new.h5")
    with h5py.File(tmp_path / "new.h5", "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(ValueError, match="newer"):
        load_hdf5(tmp_path / "new.h5")
    save_hdf5(net, tmp_path / "lif.h5")
    with h5py.File(tmp_path / "lif.h5", "a") as f:
        f.attrs["neuron"] = "lif"
    with pytest.raises(ValueError, match="unknown neuron model 'lif'"):
        load_hdf5(tmp_path / "lif.h5")


def test_save_refuses_fields_the_layout_does_not_know(tmp_path):
    @dataclasses.dataclass
    class Newer(type(dense_net("alpha")[0])):
        extra: int = 0

    net, _ = dense_net("alpha")
    newer = Newer(**{f.name: getattr(net, f.name) for f in dataclasses.fields(net) if f.init}, extra=7)
    with pytest.raises(ValueError, match="extra"):
        save_hdf5(newer, tmp_path / "x.h5")
    save_hdf5(Newer(**{f.name: getattr(net, f.name) for f in dataclasses.fields(net) if f.init}), tmp_path / "y.h5")
