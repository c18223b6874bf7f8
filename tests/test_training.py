"""Training recipes, seeded training, and loading weights from the three file formats."""

from __future__ import annotations

import json
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
    "Activation": "activation",
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

    ``full_model`` writes TF 2.4's ``model.save('x.h5')`` instead, as the original project's
    ``models/`` folder holds its networks: the same groups under ``model_weights``, beside the
    ``model_config`` and ``training_config`` JSON attributes and an ``optimizer_weights`` group
    of Adam moments, whose arrays have the weights' shapes and must not be read as weights.
    """
    counters: dict[str, int] = {}
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if full_model else f
        names, config_layers, moments = [], [], []
        for layer in model.layers:
            stem = _TF24_NAMES[type(layer).__name__]
            n = counters.get(stem, offset)
            counters[stem] = n + 1
            name = stem if n == 0 else f"{stem}_{n}"
            inbound = [[[names[-1], 0, 0, {}]]] if names else []
            names.append(name)
            config = {"name": name, "trainable": True, "dtype": "float32"}
            if hasattr(layer, "activation"):
                config["activation"] = layer.activation.__name__
            elif stem == "activation":  # a ReLU layer, written as the original's Activation('relu')
                config["activation"] = "relu"
            config_layers.append(
                {"class_name": "Activation" if stem == "activation" else type(layer).__name__,
                 "config": config, "name": name, "inbound_nodes": inbound}
            )
            group = root.create_group(name)
            weight_names = []
            for var in layer.weights:
                wname = f"{name}/{var.name}:0"
                group.create_dataset(wname, data=var.numpy())
                weight_names.append(wname.encode())
                if var.trainable:
                    moments.append((f"Adam/{name}/{var.name}/m:0", var.numpy().shape))
            if attributes:
                group.attrs["weight_names"] = np.array(weight_names, dtype="S")
        if attributes:
            root.attrs["layer_names"] = np.array([n.encode() for n in names], dtype="S")
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.4.0"
        if full_model:
            f.attrs["backend"] = b"tensorflow"
            f.attrs["keras_version"] = b"2.4.0"
            f.attrs["model_config"] = json.dumps(
                {"class_name": "Functional",
                 "config": {"name": "model", "layers": config_layers,
                            "input_layers": [[names[0], 0, 0]], "output_layers": [[names[-1], 0, 0]]}}
            ).encode()
            f.attrs["training_config"] = json.dumps(
                {"loss": "categorical_crossentropy", "metrics": ["accuracy"],
                 "optimizer_config": {"class_name": "Adam", "config": {"name": "Adam"}}}
            ).encode()
            opt = f.create_group("optimizer_weights")
            rng = np.random.default_rng(99)
            opt.create_dataset("Adam/iter:0", data=np.int64(1000))
            for wname, shape in moments:
                opt.create_dataset(wname, data=rng.normal(size=shape).astype(np.float32))
            opt.attrs["weight_names"] = np.array([b"Adam/iter:0"] + [w.encode() for w, _ in moments], dtype="S")


@pytest.fixture(scope="module")
def trained_lenet(digits):
    """A small LeNet-style net with BN (so moving statistics must load too), trained a little."""
    model = build("digits_lenet", digits.input_shape, 10, seed=0)
    train(model, digits, recipe="adam_mnist", epochs=1, fraction=0.3, verbose=0)
    return model


FORMATS = [
    ".keras", ".weights.h5", "original", "original-offset", "original-full", "original-full-offset", "original-bare"
]


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
            offset=13 if fmt.endswith("-offset") else 0,
            full_model=fmt.startswith("original-full"),
            attributes=fmt != "original-bare",
        )
    target = build("digits_lenet", digits.input_shape, 10, seed=1)  # different names, different init
    assert not np.allclose(_predict(target, digits.x_test[:20]), _predict(src, digits.x_test[:20]))
    assert load_weights(target, path) is target
    for a, b in zip(src.weights, target.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(_predict(target, digits.x_test[:20]), _predict(src, digits.x_test[:20]), atol=1e-6)


@pytest.mark.parametrize("full_model", [False, True])
def test_load_original_fc_without_flatten(tmp_path, full_model):
    """The original FC took 784-vectors (no Flatten layer); its weights fit our fc."""
    original = keras.Sequential(
        [keras.Input((784,)), keras.layers.Dropout(0.08), keras.layers.Dense(20), keras.layers.ReLU(),
         keras.layers.ActivityRegularization(l1=4.5e-4), keras.layers.Dropout(0.08), keras.layers.Dense(10)]
    )
    write_original_h5(tmp_path / "mnist_fc_relu_original.h5", original, offset=1, full_model=full_model)
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


# Keras 2 auto-names as geifmany's cifar-vgg (2017) got them: one counter per layer class,
# starting at 1 (conv2d_1, ..., conv2d_13), unlike tf.keras 2.4's conv2d, conv2d_1, ...
def _keras2_name(counters: dict, stem: str) -> str:
    counters[stem] = counters.get(stem, 0) + 1
    return f"{stem}_{counters[stem]}"


_GEIFMANY_CONVS = [64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P"]


def write_geifmany_h5(path, num_classes, *, width, seed=0):
    """geifmany/cifar-vgg's ``cifar10vgg.h5`` / ``cifar100vgg.h5`` layout, at ``width`` of its channels.

    ``cifar10vgg.py`` / ``cifar100vgg.py`` build a Sequential: per convolution Conv2D, Activation
    ('relu'), BatchNormalization, then Dropout unless max pooling follows; after the last pooling
    Dropout, Flatten, Dense(512), Activation, BatchNormalization, Dropout, Dense(classes),
    Activation('softmax'); ``model.save_weights`` writes it weights only: ``layer_names`` lists
    every layer, each weighted one keeps ``<name>/<name>/kernel:0`` ... in ``weight_names``
    order.  Returns the arrays written, per weighted layer in file order.
    """
    rng = np.random.default_rng(seed)
    counters: dict[str, int] = {}
    layers: list[tuple[str, list[tuple[str, np.ndarray]]]] = []

    def add(stem, weights=()):
        name = _keras2_name(counters, stem)
        layers.append((name, [(f"{name}/{w}:0", a) for w, a in weights]))

    def batch_norm(c):
        add("batch_normalization", [
            ("gamma", rng.uniform(0.5, 1.5, c)), ("beta", rng.normal(size=c)),
            ("moving_mean", rng.normal(size=c)), ("moving_variance", rng.uniform(0.5, 2.0, c)),
        ])

    channels = 3
    for i, item in enumerate(_GEIFMANY_CONVS):
        if item == "P":
            add("max_pooling2d")
            continue
        out = round(item * width)
        add("conv2d", [("kernel", rng.normal(size=(3, 3, channels, out))), ("bias", rng.normal(size=out))])
        add("activation")
        batch_norm(out)
        if _GEIFMANY_CONVS[i + 1] != "P":
            add("dropout")
        channels = out
    add("dropout")
    add("flatten")
    dense = round(512 * width)
    add("dense", [("kernel", rng.normal(size=(channels, dense))), ("bias", rng.normal(size=dense))])
    add("activation")
    batch_norm(dense)
    add("dropout")
    add("dense", [("kernel", rng.normal(size=(dense, num_classes))), ("bias", rng.normal(size=num_classes))])
    add("activation")

    # any Keras 2 version: the loader does not read it
    return _write_weights_only_h5(path, layers, backend=b"tensorflow", keras_version=b"2.1.2")


def _assert_loaded(model, written):
    """Each weighted layer of ``model`` holds, in order, exactly the arrays of the file's layer."""
    ours = training._weighted_layers(model)
    assert [len(layer.weights) for layer in ours] == [len(arrays) for _, arrays in written]
    for layer, (name, arrays) in zip(ours, written):
        for var, array in zip(layer.weights, arrays):
            np.testing.assert_array_equal(var.numpy(), array, err_msg=f"{layer.name} <- {name}/{var.name}")


@pytest.mark.parametrize("num_classes", [10, 100])
def test_load_geifmany_cifar_vgg(tmp_path, num_classes):
    path = tmp_path / f"cifar{num_classes}vgg.h5"
    written = write_geifmany_h5(path, num_classes, width=1 / 16)
    assert len(written) == 13 + 13 + 1 + 1 + 1  # 13 conv and 1 dense hidden, each with its BN; the output
    model = build("vgg15_cifar", (32, 32, 3), num_classes, width=1 / 16)
    load_weights(model, path)
    _assert_loaded(model, written)


_VGG16_BLOCKS = [(1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)]


def write_keras_vgg16_h5(path, *, width, size, classes, seed=0):
    """Keras' ``vgg16_weights_tf_dim_ordering_tf_kernels.h5`` layout, at ``width`` of its channels.

    The file (fchollet/deep-learning-models v0.1, which ``keras.applications.VGG16`` downloads)
    is weights only, Keras 1 style: ``layer_names`` lists input_1, block1_conv1 ... block5_pool,
    flatten, fc1, fc2, predictions; a weighted layer's group holds ``<name>_W_1:0`` (kernel,
    channels last) and ``<name>_b_1:0`` directly, listed in its ``weight_names``.  Returns the
    arrays written, per weighted layer in file order.
    """
    rng = np.random.default_rng(seed)
    layers: list[tuple[str, list[tuple[str, np.ndarray]]]] = [("input_1", [])]

    def add(name, kernel_shape=None):
        if kernel_shape is None:
            layers.append((name, []))
        else:
            layers.append((name, [(f"{name}_W_1:0", rng.normal(size=kernel_shape)),
                                  (f"{name}_b_1:0", rng.normal(size=kernel_shape[-1]))]))

    channels = 3
    for block, convs, filters in _VGG16_BLOCKS:
        out = round(filters * width)
        for c in range(1, convs + 1):
            add(f"block{block}_conv{c}", (3, 3, channels, out))
            channels = out
        add(f"block{block}_pool")
        size //= 2
    add("flatten")
    fc = round(4096 * width)
    add("fc1", (size * size * channels, fc))
    add("fc2", (fc, fc))
    add("predictions", (fc, classes))

    return _write_weights_only_h5(path, layers)


def _write_weights_only_h5(path, layers, **attrs):
    """A Keras 2 weights-only HDF5 file: root attribute layer_names, one group per layer with its
    weight_names; returns [(layer, [float32 arrays])] for the layers that have weights."""
    written = []
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n, _ in layers], dtype="S")
        f.attrs.update(attrs)
        for name, weights in layers:
            group = f.create_group(name)
            for wname, array in weights:
                group.create_dataset(wname, data=array.astype(np.float32))
            group.attrs["weight_names"] = np.array([w.encode() for w, _ in weights], dtype="S")
            if weights:
                written.append((name, [a.astype(np.float32) for _, a in weights]))
    return written


def _narrow_vgg16(width, size, classes):
    """keras.applications.VGG16's layers, names and order, at ``width`` of its channels."""
    L = keras.layers
    model = keras.Sequential([keras.Input((size, size, 3))], name="vgg16")
    for block, convs, filters in _VGG16_BLOCKS:
        for c in range(1, convs + 1):
            model.add(L.Conv2D(round(filters * width), 3, padding="same", activation="relu", name=f"block{block}_conv{c}"))
        model.add(L.MaxPooling2D(2, name=f"block{block}_pool"))
    model.add(L.Flatten(name="flatten"))
    model.add(L.Dense(round(4096 * width), activation="relu", name="fc1"))
    model.add(L.Dense(round(4096 * width), activation="relu", name="fc2"))
    model.add(L.Dense(classes, activation="softmax", name="predictions"))
    return model


def test_narrow_vgg16_has_the_layers_of_keras_vgg16():
    """The stand-in above is keras.applications.VGG16 but for the channel counts."""
    real = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    narrow = _narrow_vgg16(1.0, 32, 10)
    assert [layer.name for layer in real.layers[1:]] == [layer.name for layer in narrow.layers[: len(real.layers) - 1]]
    for a, b in zip(real.layers[1:], narrow.layers):
        assert [tuple(v.shape) for v in a.weights] == [tuple(v.shape) for v in b.weights], a.name
    assert [layer.name for layer in narrow.layers[len(real.layers) - 1 :]] == ["flatten", "fc1", "fc2", "predictions"]


def test_load_keras_imagenet_vgg16(tmp_path):
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    written = write_keras_vgg16_h5(path, width=1 / 16, size=64, classes=1000)
    model = _narrow_vgg16(1 / 16, 64, 1000)
    load_weights(model, path)
    _assert_loaded(model, written)
    assert [name for name, _ in written][-3:] == ["fc1", "fc2", "predictions"]


def test_vgg16_file_for_another_model_names_layer_and_shapes(tmp_path):
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    write_keras_vgg16_h5(path, width=1 / 16, size=64, classes=1000)
    model = _narrow_vgg16(1 / 16, 64, 365)
    with pytest.raises(WeightsMismatchError) as info:
        load_weights(model, path)
    message = str(info.value)
    assert str(path) in message and "'predictions'" in message
    assert "(256, 1000)" in message and "(256, 365)" in message, message


def test_broken_legacy_files_name_the_layer_and_key(tmp_path, trained_lenet):
    path = tmp_path / "w.h5"
    write_original_h5(path, trained_lenet)
    with h5py.File(path, "a") as f:
        names = list(f.attrs["layer_names"])
        f.attrs["layer_names"] = np.array(names + [b"dense_9"], dtype="S")
    with pytest.raises(WeightsMismatchError, match=r"w\.h5: layer 'dense_9' is listed in layer_names but has no group"):
        load_weights(trained_lenet, path)

    write_original_h5(path, trained_lenet)
    with h5py.File(path, "a") as f:
        del f["conv2d_1/conv2d_1/bias:0"]
    with pytest.raises(WeightsMismatchError, match=r"layer 'conv2d_1' lists weight 'conv2d_1/bias:0'"):
        load_weights(trained_lenet, path)


def test_chunked_layer_names_are_read_whole(tmp_path):
    """Keras 2 splits a list attribute past HDF5's header limit into layer_names0, layer_names1, ...

    The layers' names sort against their order ('z_hidden' before 'a_output'), so only the
    chunks read back as one list give the order; sorted names would swap the two.
    """
    rng = np.random.default_rng(0)
    written = [("z_hidden", [rng.normal(size=(4, 6)), rng.normal(size=6)]),
               ("a_output", [rng.normal(size=(6, 3)), rng.normal(size=3)])]
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names0"] = np.array([b"input_1", b"z_hidden"], dtype="S")
        f.attrs["layer_names1"] = np.array([b"a_output"], dtype="S")
        f.create_group("input_1").attrs["weight_names"] = np.array([], dtype="S")
        for name, arrays in written:
            group = f.create_group(name)
            names = [f"{name}/kernel:0", f"{name}/bias:0"]
            for wname, array in zip(names, arrays):
                group.create_dataset(wname, data=array.astype(np.float32))
            group.attrs["weight_names0"] = np.array([names[0].encode()], dtype="S")
            group.attrs["weight_names1"] = np.array([names[1].encode()], dtype="S")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="relu"), keras.layers.Dense(3)])
    load_weights(model, path)
    _assert_loaded(model, [(n, [a.astype(np.float32) for a in arrays]) for n, arrays in written])


def _lenet_relu_before_bn(digits):
    """digits_lenet's layers and shapes with each ReLU moved before its batch normalisation."""
    L = keras.layers
    return keras.Sequential([
        keras.Input(digits.input_shape),
        L.Conv2D(6, 3, padding="same"), L.ReLU(), L.BatchNormalization(), L.MaxPooling2D(2),
        L.Conv2D(16, 3, padding="valid"), L.ReLU(), L.BatchNormalization(), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(32), L.ReLU(), L.BatchNormalization(), L.Dense(10, activation="softmax"),
    ])


def test_whole_model_file_of_another_chain_is_refused(tmp_path, digits):
    other = _lenet_relu_before_bn(digits)
    target = build("digits_lenet", digits.input_shape, 10, seed=1)
    assert [tuple(v.shape) for v in other.weights] == [tuple(v.shape) for v in target.weights]
    before = [w.copy() for w in target.get_weights()]
    path = tmp_path / "other.h5"
    write_original_h5(path, other, full_model=True)
    with pytest.raises(WeightsMismatchError) as info:
        load_weights(target, path)
    message = str(info.value)
    assert str(path) in message and "'digits_lenet'" in message
    assert "at step 2 its model_config has ReLU (layer 'activation')" in message, message
    assert "where the model has BatchNormalization" in message, message
    for a, b in zip(before, target.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Weights alone cannot tell the two apart: the same arrays without model_config load.
    write_original_h5(path, other)
    load_weights(target, path)


def _original_network(name, width):
    """The original project's MNIST networks (its utils.py), at ``width`` of their units.

    create_fc_model_ReLU: 784 inputs, Dropout, Dense(600), Activation('relu'),
    ActivityRegularization, Dropout, Dense(10), Activation('softmax').
    create_lenet_model_ReLU: Conv2D 6@5x5 same, 16@5x5 valid, 120@5x5 valid, each followed by
    BatchNormalization, Activation('relu'), Dropout (and MaxPool2D after the first two); Flatten,
    Dense(84), BatchNormalization, Activation('relu'), Dense(10), softmax.
    create_vgg_model_ReLU for MNIST: 3x3 same convolutions 64, 64, 128, 128, pool, 256 x3, pool,
    512 x3, pool, 512 x3, pool, each Conv2D, Activation('relu'), BatchNormalization, Dropout;
    Flatten; Dense 512 twice, each with Activation('relu'), BatchNormalization, Dropout; Dense(10).
    For CIFAR (``cifar_vgg``, the network its Phase 1 loads the CIFAR weights into) the plan
    starts 64, 64, pool, 128, 128, pool, and there is one Dense 512.
    """
    L = keras.layers
    n = lambda units: max(1, round(units * width))  # noqa: E731
    relu = lambda: L.Activation("relu")  # noqa: E731
    if name == "fc":
        layers = [keras.Input((784,)), L.Dropout(0.08), L.Dense(n(600)), relu(),
                  L.ActivityRegularization(0.0), L.Dropout(0.08), L.Dense(10)]
    elif name == "lenet":
        layers = [keras.Input((28, 28, 1))]
        for filters, padding, pool in ((6, "same", True), (16, "valid", True), (120, "valid", False)):
            layers += [L.Conv2D(n(filters), 5, padding=padding), L.BatchNormalization(), relu(), L.Dropout(0.08)]
            layers += [L.MaxPool2D()] if pool else []
        layers += [L.Flatten(), L.Dense(n(84)), L.BatchNormalization(), relu(), L.Dense(10)]
    else:  # the CIFAR VGG: 64, 64, pool, 128, 128, pool, then as for MNIST; one Dense 512
        cifar = name == "cifar_vgg"
        layers = [keras.Input((32, 32, 3) if cifar else (28, 28, 1))]
        head = [64, 64, "pool", 128, 128, "pool"] if cifar else [64, 64, 128, 128, "pool"]
        for item in head + [256, 256, 256, "pool", 512, 512, 512, "pool", 512, 512, 512, "pool"]:
            if item == "pool":
                layers.append(L.MaxPool2D())
            else:
                layers += [L.Conv2D(n(item), 3, padding="same"), relu(), L.BatchNormalization(), L.Dropout(0.0)]
        layers.append(L.Flatten())
        for _ in range(1 if cifar else 2):
            layers += [L.Dense(n(512)), relu(), L.BatchNormalization(), L.Dropout(0.0)]
        layers.append(L.Dense(10))
    return keras.Sequential(layers + [L.Activation("softmax")])


@pytest.mark.parametrize(
    "original, ours",
    [("fc", "fc"), ("fc", "fc_l1"), ("lenet", "lenet"), ("vgg", "vgg16_mnist"), ("cifar_vgg", "vgg15_cifar")],
)
def test_original_networks_load_into_ours(tmp_path, original, ours):
    """The authors' models/ files (whole models, TF 2.4) fit our architectures, chain and shapes."""
    source = _original_network(original, 1 / 16)
    rng = np.random.default_rng(0)
    for var in source.weights:
        var.assign(rng.uniform(0.5, 1.5, size=var.shape).astype(np.float32))  # variances stay positive
    path = tmp_path / f"mnist_{original}_relu_original.h5"
    write_original_h5(path, source, offset=2, full_model=True)
    model = build(ours, (32, 32, 3) if original == "cifar_vgg" else (28, 28, 1), 10, width=1 / 16)
    load_weights(model, path)
    _assert_loaded(model, [(layer.name, [v.numpy() for v in layer.weights]) for layer in training._weighted_layers(source)])
