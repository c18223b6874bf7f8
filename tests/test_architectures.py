"""Every architecture builds, has the paper's layer structure, trains a step and converts exactly."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import exactsnn
from exactsnn import architectures
from exactsnn.architectures import build
from exactsnn.datasets import Dataset
from exactsnn.training import train

# name -> (input shape, classes, width used in the fast tests)
CASES = {
    "fc": ((28, 28, 1), 10, 0.05),
    "fc_l1": ((28, 28, 1), 10, 0.05),
    "lenet": ((28, 28, 1), 10, 0.5),
    "vgg16_mnist": ((28, 28, 1), 10, 1 / 32),
    "vgg15_cifar": ((32, 32, 3), 100, 1 / 32),
    "vgg15_cifar_l1": ((32, 32, 3), 10, 1 / 32),
    "digits_fc": ((8, 8, 1), 10, 1.0),
    "digits_lenet": ((8, 8, 1), 10, 1.0),
    "digits_vgg": ((8, 8, 1), 10, 1.0),
    "resnet20": ((32, 32, 3), 10, 0.25),
    "digits_resnet": ((8, 8, 1), 10, 1.0),
}


def test_every_name_is_tested():
    assert set(architectures.NAMES) == set(CASES)


def _fake_dataset(shape, classes, n=16, seed=0):
    rng = np.random.default_rng(seed)
    p, q = (0.0, 1.0) if shape[-1] == 1 else (-3.0, 3.0)
    x = rng.uniform(p, q, size=(n, *shape))
    y = np.arange(n) % classes
    return Dataset(x, y, x[:4].copy(), y[:4].copy(), input_range=(p, q), num_classes=classes, name="fake")


def _kinds(model):
    return [type(layer).__name__ for layer in model.layers]


@pytest.mark.parametrize("name", list(CASES))
def test_builds_trains_one_step_and_converts(name):
    shape, classes, width = CASES[name]
    model = build(name, shape, classes, width=width, seed=0)
    assert model.name == name
    assert model.output_shape == (None, classes)
    assert model.layers[-1].activation.__name__ == "softmax"

    data = _fake_dataset(shape, classes)
    recipe = "sgd_cifar" if name.startswith(("vgg15", "resnet")) else "adam_mnist"
    before = [w.copy() for w in model.get_weights()]
    history = train(model, data, recipe=recipe, epochs=1, batch_size=len(data.x_train), verbose=0)
    assert len(history.history["loss"]) == 1 and np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))

    # The acceptance check: the exact SNN agrees with the ReLU network.
    exactsnn = pytest.importorskip("exactsnn")
    if not hasattr(exactsnn, "convert"):
        pytest.skip("exactsnn.convert is not available yet")
    from exactsnn.importers.keras import keras_logits

    net = exactsnn.convert(model, data.x_train, input_range=data.input_range)
    sim = exactsnn.simulate(net, data.x_test)
    np.testing.assert_array_equal(sim.predictions, keras_logits(model, data.x_test).argmax(axis=1))
    assert sim.deviating.sum() == 0


def test_resnet20_structure():
    model = build("resnet20", (32, 32, 3), 10)
    kinds = _kinds(model)
    assert kinds.count("Add") == 9 and kinds.count("Conv2D") == 19 + 2  # 19 + two projections
    assert kinds[-2:] == ["GlobalAveragePooling2D", "Dense"]
    assert model.count_params() < 300_000


def test_fc_structure():
    model = build("fc", (28, 28, 1), 10)
    assert _kinds(model) == ["Flatten", "Dropout", "Dense", "ReLU", "Dropout", "Dense"]
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [0.08, 0.08]
    assert model.layers[2].kernel.shape == (784, 600)
    assert model.count_params() == 784 * 600 + 600 + 600 * 10 + 10


def test_fc_l1_regularises_the_hidden_layer():
    model = build("fc_l1", (28, 28, 1), 10)
    kinds = _kinds(model)
    reg = model.layers[kinds.index("ActivityRegularization")]
    assert kinds.index("ActivityRegularization") == kinds.index("ReLU") + 1
    assert reg.l1 == pytest.approx(4.5e-4)
    assert build("fc_l1", (28, 28, 1), 10, l1=1e-3).layers[4].l1 == pytest.approx(1e-3)


def test_lenet_structure_bn_before_relu():
    model = build("lenet", (28, 28, 1), 10)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [6, 16, 120]
    assert [c.kernel_size for c in convs] == [(5, 5)] * 3
    assert [c.padding for c in convs] == ["same", "valid", "valid"]
    assert convs[-1].output.shape[1:] == (1, 1, 120)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [84, 10]
    kinds = _kinds(model)
    for i, kind in enumerate(kinds):
        if kind in ("Conv2D", "Dense") and i < len(kinds) - 1:
            assert kinds[i + 1 : i + 3] == ["BatchNormalization", "ReLU"]
    assert kinds.count("MaxPooling2D") == 2


@pytest.mark.parametrize(
    "name, shape, filters, dense",
    [
        ("vgg16_mnist", (28, 28, 1), [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512], [512, 512]),
        ("vgg15_cifar", (32, 32, 3), [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512], [512]),
    ],
)
def test_vgg_structure_bn_after_relu(name, shape, filters, dense):
    model = build(name, shape, 10)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == filters
    assert all(c.kernel_size == (3, 3) and c.padding == "same" for c in convs)
    denses = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in denses] == dense + [10]
    assert denses[0].kernel.shape[0] == 512  # the pools end at 1×1×512 (28→14→7→3→1, 32→…→1)
    kinds = _kinds(model)
    for i, kind in enumerate(kinds[:-1]):
        if kind in ("Conv2D", "Dense"):
            assert kinds[i + 1 : i + 3] == ["ReLU", "BatchNormalization"]
    assert kinds.count("MaxPooling2D") == 4 if name == "vgg16_mnist" else 5


def test_vgg16_mnist_pool_positions():
    model = build("vgg16_mnist", (28, 28, 1), 10)
    seq = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            seq.append(layer.filters)
        elif isinstance(layer, keras.layers.MaxPooling2D):
            seq.append("P")
    assert seq == [64, 64, 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P"]


def test_vgg15_cifar_dropout_as_original():
    model = build("vgg15_cifar", (32, 32, 3), 10)
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.3] + [0.4] * 7 + [0.5, 0.5]
    no_dropout = build("vgg15_cifar", (32, 32, 3), 10, dropout=0.0, width=1 / 32)
    assert "Dropout" not in _kinds(no_dropout)


def test_vgg15_cifar_l1_regularises_every_relu():
    model = build("vgg15_cifar_l1", (32, 32, 3), 10, width=1 / 32)
    kinds = _kinds(model)
    regs = [layer for layer in model.layers if isinstance(layer, keras.layers.ActivityRegularization)]
    assert len(regs) == kinds.count("ReLU") == 14
    assert all(r.l1 == pytest.approx(1e-6) for r in regs)


def test_width_scales_hidden_layers_only():
    model = build("lenet", (28, 28, 1), 7, width=0.5)
    convs = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs == [3, 8, 60]
    assert model.layers[-1].units == 7


def test_seed_makes_initialisation_repeatable():
    a = build("digits_vgg", (8, 8, 1), 10, seed=3).get_weights()
    b = build("digits_vgg", (8, 8, 1), 10, seed=3).get_weights()
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: fc, fc_l1, lenet, vgg16_mnist"):
        build("resnet50", (32, 32, 3), 10)


def test_too_small_input_is_a_clear_error():
    with pytest.raises(ValueError, match="too small"):
        build("vgg16_mnist", (8, 8, 1), 10, width=1 / 32)
    with pytest.raises(ValueError, match="valid convolution does not fit"):
        build("lenet", (8, 8, 1), 10)


def test_unknown_keyword_is_an_error():
    with pytest.raises(TypeError):
        build("fc", (28, 28, 1), 10, depth=3)
