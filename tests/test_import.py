"""The Keras importer: what it takes, and the messages for what it refuses."""

from __future__ import annotations

import numpy as np
import pytest

import exactsnn
from exactsnn.importers.keras import UnsupportedLayerError, import_keras, keras_logits
from exactsnn.preprocess import FoldingError, fold_network

keras = pytest.importorskip("keras")
L = keras.layers


def _seq(*layers, shape=(6,)):
    return keras.Sequential([keras.Input(shape), *layers])


def _refuse(model, name_fragment, reason_fragment):
    with pytest.raises((UnsupportedLayerError, FoldingError)) as info:
        fold_network(import_keras(model))
    msg = str(info.value)
    assert name_fragment in msg and reason_fragment in msg, msg


def test_other_merges_are_refused_with_their_name():
    inp = keras.Input((4,))
    a = L.Dense(4, activation="relu", name="branch")(inp)
    out = L.Dense(2)(L.Concatenate(name="cat")([inp, a]))
    _refuse(keras.Model(inp, out), "cat", "merge")


def test_a_sum_without_relu_is_refused():
    inp = keras.Input((4,))
    a = L.Dense(4, activation="relu")(inp)
    out = L.Dense(2, name="after_sum")(L.Add()([inp, a]))
    _refuse(keras.Model(inp, out), "after_sum", "without a ReLU")


def test_parallel_branches_without_a_chain_are_refused():
    inp = keras.Input((4,))
    a = L.Dense(3, activation="relu", name="left")(inp)
    b = L.Dense(3, activation="relu", name="right")(inp)
    out = L.Dense(2)(L.ReLU(name="merge")(L.Add()([L.Dense(3)(a), L.Dense(3)(b)])))
    _refuse(keras.Model(inp, out), "right", "does not read the layer before it")


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "gelu"])
def test_other_activations_are_refused(act):
    _refuse(_seq(L.Dense(4, activation=act, name="hidden"), L.Dense(2)), "hidden", "only ReLU")


def test_activation_layer_other_than_relu_is_refused():
    _refuse(_seq(L.Dense(4), L.Activation("elu", name="act"), L.Dense(2)), "act", "only ReLU")


def test_leaky_and_capped_relu_are_refused():
    _refuse(_seq(L.Dense(4), L.LeakyReLU(name="leaky"), L.Dense(2)), "leaky", "no exact")
    _refuse(_seq(L.Dense(4), L.ReLU(max_value=6.0, name="relu6"), L.Dense(2)), "relu6", "max_value")


def test_hidden_layer_without_relu_is_refused():
    _refuse(_seq(L.Dense(4, name="linear_hidden"), L.Dense(2)), "linear_hidden", "without ReLU")


def test_softmax_in_the_middle_is_refused():
    _refuse(_seq(L.Dense(4), L.Softmax(name="mid_softmax"), L.Dense(2)), "mid_softmax", "last layer")


def test_relu_on_the_output_is_refused():
    _refuse(_seq(L.Dense(4, activation="relu"), L.Dense(2, activation="relu", name="out")), "out", "must not have a ReLU")


def test_unknown_layers_are_refused():
    _refuse(_seq(L.Reshape((2, 3), name="reshape"), L.Flatten(), L.Dense(2)), "reshape", "no exact")
    _refuse(_seq(L.Conv1D(2, 2, name="c1d"), L.Flatten(), L.Dense(2), shape=(6, 1)), "c1d", "no exact")


def test_max_pooling_after_average_pooling_is_refused():
    model = _seq(
        L.Conv2D(2, 3, activation="relu"), L.AveragePooling2D(2, name="avg"), L.MaxPooling2D(1, name="maxp"),
        L.Flatten(), L.Dense(2), shape=(8, 8, 1),
    )
    _refuse(model, "maxp", "no exact single-spike")


def test_nested_model_is_refused():
    inner = _seq(L.Dense(3, activation="relu"), shape=(4,))
    inner.name = "inner_block"
    _refuse(keras.Sequential([keras.Input((4,)), inner, L.Dense(2)]), "inner_block", "nested")


def test_graph_is_a_chain_of_float64_nodes_with_the_softmax_dropped(tmp_path):
    from exactsnn import serialize

    model = _seq(L.Dense(5, activation="relu", name="h"), L.Dropout(0.5), L.Dense(3, activation="softmax", name="o"))
    graph = import_keras(model)
    assert graph.chain() == ["input", "h", "h/relu", "o"]
    assert graph.nodes["h"].weight.dtype == np.float64
    serialize.save(graph, tmp_path / "g.npz")
    again = serialize.load(tmp_path / "g.npz")
    assert again.chain() == graph.chain()
    np.testing.assert_array_equal(again.nodes["o"].bias, graph.nodes["o"].bias)


def test_keras_logits_are_pre_softmax_float64():
    model = _seq(L.Dense(3, activation="softmax"))
    x = np.random.default_rng(0).uniform(0, 1, (4, 6))
    w, b = (np.asarray(v, np.float64) for v in model.layers[0].get_weights())
    np.testing.assert_allclose(keras_logits(model, x), x @ w + b, rtol=0, atol=1e-13)


@pytest.mark.parametrize("head", ["conv", "dense"])
def test_zero_padding_folds_into_the_next_layer(head):
    import exactsnn

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    tail = [L.Conv2D(3, 3, strides=2, activation="relu"), L.Flatten(), L.Dense(4)] if head == "conv" else [L.Flatten(), L.Dense(4)]
    model = _seq(L.Conv2D(2, 3, activation="relu"), L.BatchNormalization(), L.ZeroPadding2D(((1, 2), (0, 1))), *tail,
                 shape=(9, 9, 1))
    model.layers[1].set_weights([rng.normal(0, 1, 2), rng.normal(0, 1, 2), rng.normal(0, 1, 2), rng.uniform(0.5, 2, 2)])
    x = rng.uniform(0, 1, (8, 9, 9, 1))
    ref = keras_logits(model, x)
    sim = exactsnn.simulate(exactsnn.convert(model, x), x)
    np.testing.assert_allclose(sim.logits, ref, atol=1e-9 * np.abs(ref).max())
    assert sim.deviating.sum() == 0
