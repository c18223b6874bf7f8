"""Training recipes, seeded training, and loading weights from the three file formats."""

from __future__ import annotations

import math

import h5py
import keras
import numpy as np
import pytest

from exactsnn import training
from exactsnn.architectures import build
from exactsnn.datasets import Dataset, load
from exactsnn.training import RECIPES, WeightsMismatchError, load_weights, train


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def _fake_cifar(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, size=(n, 32, 32, 3))
    y = np.arange(n) % 10
    return Dataset(x, y, x[:4].copy(), y[:4].copy(), input_range=(-3.0, 3.0), num_classes=10, name="fake")


def _predict(model, x):
    return model.predict(x, verbose=0)


# ----------------------------------------------------------------------------------------------
# recipes
# ----------------------------------------------------------------------------------------------


def test_adam_mnist_recipe():
    recipe = RECIPES["adam_mnist"]
    opt = recipe.make_optimizer()
    assert isinstance(opt, keras.optimizers.Adam)
    schedule = opt.learning_rate if callable(opt.learning_rate) else opt._learning_rate
    assert float(schedule(0)) == pytest.approx(5e-4)
    assert float(schedule(5000)) == pytest.approx(5e-4 * 0.9)
    # the original's schedule is smooth (Keras' default staircase=False)
    assert float(schedule(2500)) == pytest.approx(5e-4 * 0.9**0.5)
    assert recipe.batch_size == 64 and recipe.l2 == 0 and recipe.augment is None


def test_sgd_cifar_recipe():
    recipe = RECIPES["sgd_cifar"]
    opt = recipe.make_optimizer()
    assert isinstance(opt, keras.optimizers.SGD)
    assert opt.nesterov and opt.momentum == pytest.approx(0.9)
    assert float(opt.learning_rate) == pytest.approx(0.1)
    assert [recipe.lr_per_epoch(e) for e in (0, 19, 20, 39, 40, 249)] == pytest.approx(
        [0.1, 0.1, 0.05, 0.05, 0.025, 0.1 * 0.5**12]
    )
    assert recipe.batch_size == 128 and recipe.epochs == 250 and recipe.l2 == pytest.approx(5e-4)
    aug = recipe.augment(0)
    kinds = {type(layer).__name__: layer for layer in aug.layers}
    assert set(kinds) == {"RandomTranslation", "RandomRotation", "RandomFlip"}
    assert kinds["RandomTranslation"].height_factor == 0.1 and kinds["RandomTranslation"].width_factor == 0.1
    assert kinds["RandomRotation"].factor == pytest.approx((-15 / 360, 15 / 360))
    assert kinds["RandomFlip"].mode == "horizontal"


def test_unknown_recipe():
    with pytest.raises(ValueError, match="adam_mnist, sgd_cifar"):
        training.get_recipe("rmsprop")


def test_l2_penalty_is_attached_only_during_training():
    model = build("digits_vgg", (8, 8, 1), 10, width=0.5)
    assert model.losses == []
    kernels = [layer.kernel for layer in model.layers if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))]
    with training._l2_penalty(model, 5e-4):
        losses = model.losses
        assert len(losses) == len(kernels)
        expected = sum(5e-4 * float(np.sum(np.square(k.numpy()))) for k in kernels)
        assert float(sum(losses)) == pytest.approx(expected, rel=1e-5)
    assert model.losses == []


def test_augmentation_pipeline_changes_images_keeps_shapes():
    data = _fake_cifar(n=8)
    aug = RECIPES["sgd_cifar"].augment(0)
    batches = list(training._pipeline(data.x_train, data.y_train, batch_size=8, seed=0, augment=aug, shuffle=False))
    (xb, yb), = batches
    assert xb.shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(yb.numpy(), data.y_train)
    assert not np.allclose(xb.numpy(), data.x_train.astype(np.float32))


# ----------------------------------------------------------------------------------------------
# train()
# ----------------------------------------------------------------------------------------------


class _CountBatches(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def test_train_uses_fraction_and_batch_size(digits):
    model = build("digits_fc", digits.input_shape, 10, seed=0)
    counter = _CountBatches()
    train(model, digits, recipe="adam_mnist", epochs=2, fraction=0.1, batch_size=32, verbose=0, callbacks=[counter])
    assert counter.batches == 2 * math.ceil(round(0.1 * len(digits.x_train)) / 32)


def test_train_is_seeded(digits):
    def run(seed):
        model = build("digits_fc", digits.input_shape, 10, seed=0, dropout=0.1)  # dropout draws too
        train(model, digits, recipe="adam_mnist", epochs=1, fraction=0.2, seed=seed, verbose=0)
        return model.get_weights()

    a, b, c = run(1), run(1), run(2)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)
    assert any(not np.allclose(x, y) for x, y in zip(a, c))


def test_train_learns_digits(digits):
    model = build("digits_fc", digits.input_shape, 10, seed=0)
    history = train(model, digits, recipe="adam_mnist", epochs=5, verbose=0, validation=True)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.8


def test_sgd_cifar_trains_with_schedule_and_l2():
    data = _fake_cifar()
    model = build("vgg15_cifar", (32, 32, 3), 10, width=1 / 32, seed=0)
    history = train(model, data, recipe="sgd_cifar", epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert history.history["learning_rate"] == pytest.approx([0.1])
    assert model.losses == []  # the L2 penalty does not outlive the run


# ----------------------------------------------------------------------------------------------
# load_weights
# ----------------------------------------------------------------------------------------------

_TF24_NAMES = {
    "Conv2D": "conv2d",
    "Dense": "dense",
    "BatchNormalization": "batch_normalization",
    "ReLU": "activation",  # the original used Activation('relu') layers
    "Dropout": "dropout",
    "MaxPooling2D": "max_pooling2d",
    "Flatten": "flatten",
    "ActivityRegularization": "activity_regularization",
}


def write_original_h5(path, model, *, offset=0, full_model=False, attributes=True):
    """Write ``model``'s weights the way TF 2.4's ``save_weights('x.h5')`` did.

    Layer groups are named by kind with a global counter (``conv2d``, ``conv2d_1``, ...; the
    counter starts at ``offset`` to mimic models built after others in one session), list
    every layer in ``layer_names`` (weightless ones too), and keep each layer's arrays under
    ``<name>/<name>/<weight>:0`` in the order of ``weight_names``.
    """
    counters: dict[str, int] = {}
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if full_model else f
        names = []
        for layer in model.layers:
            stem = _TF24_NAMES[type(layer).__name__]
            n = counters.get(stem, offset)
            counters[stem] = n + 1
            name = stem if n == 0 else f"{stem}_{n}"
            names.append(name)
            group = root.create_group(name)
            weight_names = []
            for var in layer.weights:
                wname = f"{name}/{var.name}:0"
                group.create_dataset(wname, data=var.numpy())
                weight_names.append(wname.encode())
            if attributes:
                group.attrs["weight_names"] = np.array(weight_names, dtype="S")
        if attributes:
            root.attrs["layer_names"] = np.array([n.encode() for n in names], dtype="S")
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.4.0"


@pytest.fixture(scope="module")
def trained_lenet(digits):
    """A small LeNet-style net with BN (so moving statistics must load too), trained a little."""
    model = build("digits_lenet", digits.input_shape, 10, seed=0)
    train(model, digits, recipe="adam_mnist", epochs=1, fraction=0.3, verbose=0)
    return model


FORMATS = [".keras", ".weights.h5", "original", "original-offset", "original-full", "original-bare"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_load_weights_formats(tmp_path, digits, trained_lenet, fmt):
    src = trained_lenet
    path = tmp_path / f"model{fmt if fmt.startswith('.') else '.h5'}"
    if fmt == ".keras":
        src.save(path)
    elif fmt == ".weights.h5":
        src.save_weights(path)
    else:
        write_original_h5(
            path,
            src,
            offset=13 if fmt == "original-offset" else 0,
            full_model=fmt == "original-full",
            attributes=fmt != "original-bare",
        )
    target = build("digits_lenet", digits.input_shape, 10, seed=1)  # different names, different init
    assert not np.allclose(_predict(target, digits.x_test[:20]), _predict(src, digits.x_test[:20]))
    assert load_weights(target, path) is target
    for a, b in zip(src.weights, target.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(_predict(target, digits.x_test[:20]), _predict(src, digits.x_test[:20]), atol=1e-6)


def test_load_original_fc_without_flatten(tmp_path):
    """The original FC took 784-vectors (no Flatten layer); its weights fit our fc."""
    original = keras.Sequential(
        [keras.Input((784,)), keras.layers.Dropout(0.08), keras.layers.Dense(20), keras.layers.ReLU(),
         keras.layers.ActivityRegularization(l1=4.5e-4), keras.layers.Dropout(0.08), keras.layers.Dense(10)]
    )
    write_original_h5(tmp_path / "mnist_fc_relu_original.h5", original)
    ours = build("fc_l1", (28, 28, 1), 10, width=20 / 600)
    load_weights(ours, tmp_path / "mnist_fc_relu_original.h5")
    x = np.random.default_rng(0).uniform(size=(5, 28, 28, 1)).astype(np.float32)
    logits = original.predict(x.reshape(5, 784), verbose=0)
    np.testing.assert_allclose(_predict(ours, x), keras.ops.softmax(logits).numpy(), atol=1e-6)


def test_shape_mismatch_names_layer_and_shapes(tmp_path, digits, trained_lenet):
    path = tmp_path / "w.h5"
    write_original_h5(path, trained_lenet)
    wider = build("digits_lenet", digits.input_shape, 10, width=2.0)
    before = [w.copy() for w in wider.get_weights()]
    with pytest.raises(WeightsMismatchError) as info:
        load_weights(wider, path)
    message = str(info.value)
    assert "'conv2d'" in message and wider.layers[0].name in message
    assert "(3, 3, 1, 6)" in message and "(3, 3, 1, 12)" in message
    for a, b in zip(before, wider.get_weights()):  # nothing was half-loaded
        np.testing.assert_array_equal(a, b)


def test_layer_count_mismatch(tmp_path, trained_lenet):
    path = tmp_path / "w.weights.h5"
    trained_lenet.save_weights(path)
    other = build("digits_vgg", (8, 8, 1), 10)
    expected = "file has 3 batch_normalization layer.*the model 'digits_vgg' has 5"
    with pytest.raises(WeightsMismatchError, match=expected):
        load_weights(other, path)


def test_not_a_weights_file(tmp_path, trained_lenet):
    bad = tmp_path / "w.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(WeightsMismatchError, match="neither an HDF5 nor a .keras"):
        load_weights(trained_lenet, bad)
    with pytest.raises(FileNotFoundError):
        load_weights(trained_lenet, tmp_path / "missing.h5")
