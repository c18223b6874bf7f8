"""Training recipes from the paper's code, and loading weights trained elsewhere.

Two recipes (:data:`RECIPES`):

``adam_mnist``  (MNIST, Fashion-MNIST, and the digits config)
    Adam, learning rate 5e-4 with ``ExponentialDecay(decay_steps=5000, decay_rate=0.9)``,
    batch 64, 100 epochs by default.  The original script builds the schedule with Keras'
    default ``staircase=False`` — a smooth decay by 0.9 per 5000 steps — and so do we.

``sgd_cifar``  (CIFAR10, CIFAR100)
    SGD 0.1 with Nesterov momentum 0.9, learning rate halved every 20 epochs, 250 epochs,
    batch 128.  Weight decay 5e-4 is an **L2 penalty added to the loss**, 5e-4·Σw² over every
    Conv2D/Dense kernel (not biases, not BN) — what the original's
    ``kernel_regularizer=l2(5e-4)`` does — not decoupled (AdamW-style) decay.  Augmentation:
    shifts of up to 10 % in both directions, rotations of up to 15°, horizontal flips, with
    nearest-pixel filling as in the original's ``ImageDataGenerator``; it runs as Keras
    preprocessing layers in the tf.data input pipeline, so the trained model holds no
    augmentation layers for the importer to skip.  (The original SGD also had a per-step
    ``decay=1e-6``, a ~9 % reduction over 250 epochs; it is left out.)

:func:`train` runs a recipe on a :class:`~exactsnn.datasets.Dataset`; :func:`load_weights`
puts weights from a ``.keras`` file, a Keras 3 ``.weights.h5`` or a Keras 1/2 HDF5 file (the
original project's ``models/`` folder, geifmany's CIFAR VGGs, Keras' ImageNet VGG16 weights)
into one of our architectures.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import h5py
import keras
import numpy as np
import tensorflow as tf

from .datasets import Dataset, take_fraction

__all__ = ["Recipe", "RECIPES", "get_recipe", "train", "load_weights", "WeightsMismatchError"]


@dataclass(frozen=True)
class Recipe:
    """How a network is trained: optimiser, batch size, epochs, regularisation, augmentation."""

    name: str
    make_optimizer: Callable[[], keras.optimizers.Optimizer]  # a fresh optimiser per run
    batch_size: int
    epochs: int  # the paper's number of epochs (a config key may override it)
    l2: float = 0.0  # L2 penalty l2·Σw² on Conv2D/Dense kernels, added to the loss
    lr_per_epoch: Callable[[int], float] | None = None  # learning rate at the start of each epoch
    augment: Callable[[int], keras.Layer] | None = None  # seed -> augmentation applied in tf.data


def _adam_mnist_optimizer() -> keras.optimizers.Optimizer:
    schedule = keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate=5e-4, decay_steps=5000, decay_rate=0.9, staircase=False
    )
    return keras.optimizers.Adam(learning_rate=schedule)


def _sgd_cifar_optimizer() -> keras.optimizers.Optimizer:
    return keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True)


def _cifar_lr(epoch: int) -> float:
    return 0.1 * 0.5 ** (epoch // 20)


def _cifar_augmentation(seed: int) -> keras.Layer:
    # Each layer gets its own seed so that the three random draws are independent.
    return keras.Sequential(
        [
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed),
            keras.layers.RandomRotation(15 / 360, fill_mode="nearest", seed=seed + 1),
            keras.layers.RandomFlip("horizontal", seed=seed + 2),
        ],
        name="cifar_augmentation",
    )


RECIPES: dict[str, Recipe] = {
    "adam_mnist": Recipe("adam_mnist", _adam_mnist_optimizer, batch_size=64, epochs=100),
    "sgd_cifar": Recipe(
        "sgd_cifar",
        _sgd_cifar_optimizer,
        batch_size=128,
        epochs=250,
        l2=5e-4,
        lr_per_epoch=_cifar_lr,
        augment=_cifar_augmentation,
    ),
}


def get_recipe(recipe: str | Recipe) -> Recipe:
    """A :class:`Recipe` by name (or the recipe itself); unknown names list the valid ones."""
    if isinstance(recipe, Recipe):
        return recipe
    if recipe not in RECIPES:
        raise ValueError(f"unknown training recipe {recipe!r}; valid names: {', '.join(RECIPES)}")
    return RECIPES[recipe]


def _kernels(model: keras.Model):
    """The kernels of every Conv/Dense layer — what weight decay applies to."""
    for layer in _weighted_layers(model):
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
            yield layer.kernel


@contextlib.contextmanager
def _l2_penalty(model: keras.Model, l2: float) -> Iterator[None]:
    """Attach an L2 regularizer to the kernels for the duration of a training run.

    Keras adds ``variable.regularizer(variable)`` to the loss; setting it on the variables
    (instead of building the model with ``kernel_regularizer``) keeps weight decay part of the
    recipe and leaves the saved architecture free of it.
    """
    if not l2:
        yield
        return
    kernels = list(_kernels(model))
    previous = [k.regularizer for k in kernels]
    for k in kernels:
        k.regularizer = keras.regularizers.L2(l2)
    try:
        yield
    finally:
        for k, reg in zip(kernels, previous):
            k.regularizer = reg


def _pipeline(x, y, *, batch_size: int, seed: int, augment: keras.Layer | None, shuffle: bool):
    """A tf.data pipeline of float32 batches; shuffled with ``seed``, augmented if asked."""
    data = tf.data.Dataset.from_tensor_slices((np.asarray(x, np.float32), np.asarray(y, np.int64)))
    if shuffle:
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size)
    if augment is not None:
        data = data.map(lambda xb, yb: (augment(xb, training=True), yb), num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


def train(
    model: keras.Model,
    dataset: Dataset,
    *,
    recipe: str | Recipe,
    epochs: int | None = None,
    fraction: float = 1.0,
    seed: int = 0,
    batch_size: int | None = None,
    verbose: int | str = 2,
    validation: bool = False,
    callbacks: list[keras.callbacks.Callback] | tuple = (),
) -> keras.callbacks.History:
    """Train ``model`` in place on ``dataset`` with a recipe; returns Keras' ``History``.

    ``epochs`` and ``batch_size`` default to the recipe's.  ``fraction`` < 1 trains on a
    seeded random part of the training set (:func:`exactsnn.datasets.take_fraction`), for quick
    runs.  ``seed`` seeds Python, NumPy and TensorFlow (``keras.utils.set_random_seed``), the
    subset, the shuffling and the augmentation, so that a run can be repeated; bit-identical
    results additionally need the same machine and thread count.  ``validation=True``
    evaluates on the test set after every epoch (as the original scripts did), which costs time.

    The model is compiled here (sparse categorical cross-entropy on its softmax output,
    accuracy metric) with a fresh optimiser, so any earlier compile is replaced.
    """
    recipe = get_recipe(recipe)
    epochs = recipe.epochs if epochs is None else int(epochs)
    batch_size = recipe.batch_size if batch_size is None else int(batch_size)
    keras.utils.set_random_seed(seed)

    x, y = take_fraction(dataset.x_train, dataset.y_train, fraction, seed=seed)
    augment = recipe.augment(seed) if recipe.augment is not None else None
    data = _pipeline(x, y, batch_size=batch_size, seed=seed, augment=augment, shuffle=True)
    val = None
    if validation:
        val = _pipeline(dataset.x_test, dataset.y_test, batch_size=batch_size, seed=seed, augment=None, shuffle=False)

    callbacks = list(callbacks)
    if recipe.lr_per_epoch is not None:
        schedule = recipe.lr_per_epoch
        callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch, lr: schedule(epoch)))

    with _l2_penalty(model, recipe.l2):
        model.compile(
            optimizer=recipe.make_optimizer(),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy"],
        )
        history = model.fit(
            data, epochs=epochs, validation_data=val, callbacks=callbacks, verbose=verbose, shuffle=False
        )
    # The compiled train step captured the L2 terms; drop it so that a later fit() recompiles.
    model.train_function = None
    return history


# --------------------------------------------------------------------------------------------
# Loading weights trained elsewhere
# --------------------------------------------------------------------------------------------


class WeightsMismatchError(ValueError):
    """A weights file does not fit the architecture; the message names the layer and shapes."""


def _weighted_layers(model: keras.Model) -> list[keras.Layer]:
    """Layers that own weights, in the model's order, nested models flattened."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out += _weighted_layers(layer)
        elif layer.weights:
            out.append(layer)
    return out


def _kind(shapes: list[tuple[int, ...]]) -> str:
    """What kind of layer owns arrays of these shapes: the key for matching file to model.

    Weight files from other code do not tell the layer class (a legacy ``.h5`` has no
    architecture, and names may be anything), but the arrays do: a 4-D first array is a 2-D
    convolution kernel, a 2-D one a dense kernel, four vectors a batch normalisation.  The
    same function classifies the model's layers, so both sides always agree.
    """
    ranks = [len(s) for s in shapes]
    if ranks[0] == 4:
        return "conv2d"
    if ranks[0] == 2:
        return "dense"
    if ranks == [1, 1, 1, 1]:
        return "batch_normalization"
    return f"layer with arrays of rank {ranks}"


_SUFFIX = re.compile(r"^(?P<stem>.*?)(?:_(?P<n>\d+))?$")


def _name_order(name: str) -> tuple[str, int]:
    """Sort key from a Keras default name: ``conv2d_12`` -> ("conv2d", 12), ``conv2d`` -> ("conv2d", 0)."""
    m = _SUFFIX.match(name)
    return m.group("stem"), int(m.group("n") or 0)


@dataclass
class _StoredLayer:
    name: str  # the group's name in the file
    arrays: list[np.ndarray]  # in the layer's own weight order (kernel, bias; gamma, beta, mean, var)

    @property
    def kind(self) -> str:
        return _kind([a.shape for a in self.arrays])


def _decode(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


# Keras' order of a layer's weights; HDF5 lists names alphabetically (bias before kernel).
_WEIGHT_ORDER = ("kernel", "depthwise_kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance")


def _weight_rank(name: str) -> tuple[int, str]:
    base = name.rsplit("/", 1)[-1].split(":")[0]
    return (_WEIGHT_ORDER.index(base) if base in _WEIGHT_ORDER else len(_WEIGHT_ORDER), name)


def _attribute(group: h5py.Group, name: str) -> list[str]:
    """A list attribute as Keras 2 writes it: whole, or split into ``name0``, ``name1``, ...

    Keras 2 splits a list whose attribute would pass HDF5's 64 KiB object-header limit (a
    model with thousands of layers) into numbered chunks; read back, they are one list.
    """
    if name in group.attrs:
        return _decode(group.attrs[name])
    values, chunk = [], 0
    while f"{name}{chunk}" in group.attrs:
        values += _decode(group.attrs[f"{name}{chunk}"])
        chunk += 1
    return values


def _read_legacy_h5(root: h5py.Group, path: Path) -> list[_StoredLayer]:
    """Keras 1/2 and tf.keras HDF5 weights (``save_weights('x.h5')`` or a full ``model.save``).

    One group per layer, listed in model order by the ``layer_names`` attribute; each group
    holds its arrays in the order of its ``weight_names`` attribute: ``conv2d/kernel:0`` (Keras
    2, stored one group deeper, ``conv2d/conv2d/kernel:0``) or ``block1_conv1_W_1:0`` (Keras 1,
    e.g. Keras' ImageNet VGG16 file).  Without the attribute (files written by hand), groups
    are ordered by their names' counters.
    """
    names = _attribute(root, "layer_names")
    if not names:
        names = sorted((k for k in root if isinstance(root[k], h5py.Group)), key=_name_order)
    out = []
    for name in names:
        if name not in root:
            raise WeightsMismatchError(f"{path}: layer {name!r} is listed in layer_names but has no group in the file")
        group = root[name]
        weight_names = _attribute(group, "weight_names")
        if weight_names:
            missing = [w for w in weight_names if w not in group]
            if missing:
                raise WeightsMismatchError(
                    f"{path}: layer {name!r} lists weight {missing[0]!r} in weight_names, "
                    "but the file has no such array"
                )
            arrays = [np.asarray(group[w]) for w in weight_names]
        else:  # no attribute: take the datasets below the group, in Keras' weight order
            found: list[tuple[str, np.ndarray]] = []

            def collect(n, obj):
                if isinstance(obj, h5py.Dataset):
                    found.append((n, np.asarray(obj)))

            group.visititems(collect)
            arrays = [a for _, a in sorted(found, key=lambda item: _weight_rank(item[0]))]
        if arrays:
            out.append(_StoredLayer(name, arrays))
    return out


def _read_keras3_h5(root: h5py.Group) -> list[_StoredLayer]:
    """Keras 3 weights (``.weights.h5``, or the ``model.weights.h5`` inside a ``.keras`` file).

    Layers are groups ``layers/<stem>[_<n>]/vars/<i>``: the stem comes from the class, the
    counter numbers the layers of one class in model order, ``<i>`` the layer's weights.
    """
    out = []
    for name in sorted(root["layers"], key=_name_order):
        group = root["layers"][name]
        if "layers" in group:
            raise WeightsMismatchError(
                f"the weights file holds a nested model ({name!r}); only flat chains are supported"
            )
        if "vars" in group and len(group["vars"]):
            out.append(_StoredLayer(name, [np.asarray(group["vars"][str(i)]) for i in range(len(group["vars"]))]))
    return out


def _read_weight_file(path: Path) -> list[_StoredLayer]:
    """The weighted layers stored in a file, each kind in the order of the model that wrote it."""
    if zipfile.is_zipfile(path):  # a .keras archive: read its weights, ignore its architecture
        with zipfile.ZipFile(path) as archive:
            if "model.weights.h5" not in archive.namelist():
                raise WeightsMismatchError(f"{path}: a zip file without model.weights.h5, so not a .keras model")
            blob = io.BytesIO(archive.read("model.weights.h5"))
        with h5py.File(blob, "r") as f:
            return _read_keras3_h5(f)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise WeightsMismatchError(f"{path}: neither an HDF5 nor a .keras file ({err})") from err
    with f:
        if "layers" in f and "layer_names" not in f.attrs:
            return _read_keras3_h5(f)
        # A full model.save() keeps the weights under model_weights, beside model_config and
        # optimizer_weights (whose moment arrays have the kernels' shapes and must stay unread).
        return _read_legacy_h5(f["model_weights"] if "model_weights" in f else f, path)


_POOLS = {"MaxPool2D": "MaxPooling2D", "AvgPool2D": "AveragePooling2D"}


def _steps(class_name: str, activation) -> list[str]:
    """What a layer adds to the chain that its weights' meaning depends on.

    Weights fit by shape whether a batch normalisation sits before or after its ReLU, or a
    pooling before or after a convolution, but they compute something else; these steps
    (weighted layers, ReLUs, batch normalisations, poolings) tell the two apart.  Dropout,
    activity regularisation, flattening and a final softmax change nothing at inference.
    """
    class_name = _POOLS.get(class_name, class_name)
    if class_name in ("Conv2D", "Dense"):
        return [class_name] + (["ReLU"] if activation == "relu" else [])
    if class_name == "ReLU" or (class_name == "Activation" and activation == "relu"):
        return ["ReLU"]
    if class_name in ("BatchNormalization", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D"):
        return [class_name]
    return []


def _file_chain(path: Path) -> list[tuple[str, str]] | None:
    """(step, layer name) of a whole-model Keras 2 file, from its ``model_config``; None without one."""
    if zipfile.is_zipfile(path):
        return None
    with h5py.File(path, "r") as f:
        raw = f.attrs.get("model_config")
    if raw is None:
        return None
    try:
        config = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))["config"]
    except (ValueError, KeyError, TypeError) as err:
        raise WeightsMismatchError(f"{path}: its model_config attribute is not a Keras model description ({err})") from err
    layers = config if isinstance(config, list) else config.get("layers", [])  # Keras 2.0's Sequential: a list
    chain = []
    for layer in layers:
        if layer.get("class_name") in ("Sequential", "Functional", "Model"):
            return None  # a nested model: its order is not one list; the weights' shapes still decide
        cfg = layer.get("config", {})
        chain += [(step, cfg.get("name", "?")) for step in _steps(layer.get("class_name", ""), cfg.get("activation"))]
    return chain


def _model_chain(model: keras.Model) -> list[tuple[str, str]]:
    chain = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            chain += _model_chain(layer)
            continue
        activation = getattr(layer, "activation", None)
        activation = getattr(activation, "__name__", activation)
        chain += [(step, layer.name) for step in _steps(type(layer).__name__, activation)]
    return chain


def _check_chain(path: Path, model: keras.Model) -> None:
    """A whole-model file must chain its layers as ``model`` does (see :func:`_steps`)."""
    theirs = _file_chain(path)
    if theirs is None:
        return
    ours = _model_chain(model)
    for i in range(max(len(theirs), len(ours))):
        a = theirs[i] if i < len(theirs) else None
        b = ours[i] if i < len(ours) else None
        if a is None or b is None or a[0] != b[0]:
            file_side = f"{a[0]} (layer {a[1]!r})" if a else "nothing more"
            model_side = f"{b[0]} (layer {b[1]!r})" if b else "nothing more"
            raise WeightsMismatchError(
                f"{path}: the network in the file is not the architecture {model.name!r}: at step "
                f"{i + 1} its model_config has {file_side} where the model has {model_side} "
                "(order of ReLU, BatchNormalization and pooling around the weighted layers)"
            )


def _names(names, limit: int = 4) -> str:
    """A short list of layer names for an error message."""
    names = list(names)
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown + (f", ... {names[-1]}" if len(names) > limit else "")


def load_weights(model: keras.Model, path: str | os.PathLike) -> keras.Model:
    """Load weights into ``model`` from a ``.keras`` file, a ``.weights.h5`` or a legacy ``.h5``.

    Legacy means Keras 1/2 HDF5, weights only (``save_weights``) or a full ``model.save``
    (its ``model_weights`` group is read, its ``model_config`` and optimizer state are not).
    Files from other code (the original project's ``models/`` folder, an older Keras) do not
    share our layer names, so layers are matched by *kind and order*: the i-th convolution of
    the file goes into the i-th Conv2D of the model, likewise for Dense and
    BatchNormalization (kinds are told apart by the arrays' shapes, see :func:`_kind`).
    Layers without weights (activations, pooling, dropout, activity regularisation) take no
    part, so a file from a model with extra or fewer such layers still fits; but a whole-model
    file's ``model_config`` must place its ReLUs, batch normalisations and poolings among the
    weighted layers as the model does (:func:`_steps`), for the same weights placed otherwise
    compute another function.  Every array's
    shape is checked before anything is assigned: a different number of layers of a kind,
    or any shape difference, raises :class:`WeightsMismatchError` naming the layers and both
    shapes, and leaves the model unchanged.  Returns the model.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} does not exist")
    stored: dict[str, list[_StoredLayer]] = {}
    for s in _read_weight_file(path):
        stored.setdefault(s.kind, []).append(s)
    _check_chain(path, model)
    ours: dict[str, list[keras.Layer]] = {}
    for layer in _weighted_layers(model):
        ours.setdefault(_kind([tuple(v.shape) for v in layer.weights]), []).append(layer)

    for kind in sorted(set(ours) | set(stored)):
        in_model, in_file = ours.get(kind, []), stored.get(kind, [])
        if len(in_model) != len(in_file):
            raise WeightsMismatchError(
                f"{path}: the file has {len(in_file)} {kind} layer(s) with weights "
                f"({_names(s.name for s in in_file)}), the model {model.name!r} has {len(in_model)} "
                f"({_names(layer.name for layer in in_model)}); the architectures differ"
            )

    assignments = []
    for kind, model_layers in ours.items():
        for layer, s in zip(model_layers, stored[kind]):
            variables = layer.weights
            if len(variables) != len(s.arrays):
                raise WeightsMismatchError(
                    f"{path}: layer {s.name!r} in the file has {len(s.arrays)} arrays, "
                    f"model layer {layer.name!r} has {len(variables)} ({', '.join(v.name for v in variables)})"
                )
            for var, array in zip(variables, s.arrays):
                if tuple(var.shape) != array.shape:
                    raise WeightsMismatchError(
                        f"{path}: shape mismatch between layer {s.name!r} in the file and layer "
                        f"{layer.name!r} of the model, weight {var.name!r}: the file has {array.shape}, "
                        f"the model expects {tuple(var.shape)}"
                    )
                assignments.append((var, array))
    for var, array in assignments:
        var.assign(array.astype(var.dtype))
    return model
