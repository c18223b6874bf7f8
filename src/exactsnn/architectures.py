"""The paper's ReLU networks (and three small ones for the offline digits config), in Keras 3.

Every network is a straight chain (``keras.Sequential``) of the layers the importer knows:
Conv2D/Dense without activation, BatchNormalization, ReLU, MaxPooling2D, Flatten, Dropout,
ActivityRegularization, and a final Dense with softmax.  The order of the weighted layers and
their shapes follow the original project's models, so that its HDF5 weight files load into
them by layer order (:func:`exactsnn.training.load_weights`):

``fc``            784-600-10, dropout 0.08 (inputs and hidden layer)
``fc_l1``         the same with L1 activity regularisation 4.5e-4 on the hidden layer
``lenet``         LeNet-5: 6@5×5 same, pool, 16@5×5 valid, pool, 120@5×5 valid, 84, out;
                  batch normalisation *before* ReLU, dropout 0.08
``vgg16_mnist``   64,64,128,128,P,256×3,P,512×3,P,512×3,P, dense 512, 512, out; 3×3 ``same``
                  convolutions, BN *after* ReLU, dropout 0.08; with 28×28 inputs the
                  2×2 ``valid`` pools give 14, 7, 3, 1
``vgg15_cifar``   64,64,P,128,128,P,256×3,P,512×3,P,512×3,P, dense 512, out; BN after ReLU,
                  dropout 0.3/0.4/0.5 as in the original CIFAR training script
``vgg15_cifar_l1`` the same with L1 activity regularisation 1e-6 after every ReLU
``digits_fc``, ``digits_lenet``, ``digits_vgg``  small versions for 8×8×1 digits
``resnet20``      the CIFAR ResNet-20 of He et al. (16/32/64 channels, 3×3 basic blocks,
                  BN before ReLU, 1×1 projection shortcuts with BN where the shape changes,
                  global average pooling) — a Functional model with ``Add`` merges
``digits_resnet`` a two-block ResNet in miniature for the digits (one identity, one
                  projection shortcut with stride 2)

Common keyword arguments: ``width`` multiplies every hidden layer's channels/units (tests build
thin networks this way); ``dropout`` replaces the paper's dropout rate(s) by one rate (0 leaves
the Dropout layers out); ``l1`` sets the activity regularisation of the ``*_l1`` networks;
``seed`` seeds the weight initialisation (through ``keras.utils.set_random_seed``).
"""

from __future__ import annotations

from typing import Callable

import keras
from keras import layers

__all__ = ["build", "NAMES"]

_BUILDERS: dict[str, Callable[..., keras.Model]] = {}


def _register(name: str):
    def wrap(fn):
        _BUILDERS[name] = fn
        return fn

    return wrap


_RESIDUAL: dict[str, Callable[..., keras.Model]] = {}


def build(name: str, input_shape, num_classes: int, **kw) -> keras.Model:
    """Build the named architecture for inputs of ``input_shape`` (H, W, C) and ``num_classes``.

    Returns an uncompiled ``keras.Sequential`` (a Functional model for the residual networks)
    named ``name``.  Unknown names raise ``ValueError`` listing the valid ones; unknown keyword
    arguments raise ``TypeError``.
    """
    if name not in _BUILDERS and name not in _RESIDUAL:
        raise ValueError(f"unknown architecture {name!r}; valid names: {', '.join(NAMES)}")
    seed = kw.pop("seed", None)
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    input_shape = tuple(int(d) for d in input_shape)
    if name in _RESIDUAL:
        return _RESIDUAL[name](name, input_shape, int(num_classes), **kw)
    chain = _Chain(name, input_shape)
    _BUILDERS[name](chain, int(num_classes), **kw)
    return keras.Sequential([keras.Input(shape=input_shape), *chain.layers], name=name)


class _Chain:
    """Layers collected in order, with the running output shape (for early, clear errors)."""

    def __init__(self, name: str, input_shape: tuple[int, ...]):
        self.name = name
        self.layers: list[layers.Layer] = []
        self.shape = (None, *input_shape)

    def add(self, layer: layers.Layer) -> None:
        self.shape = tuple(layer.compute_output_shape(self.shape))
        self.layers.append(layer)


def _spatial(model: _Chain) -> tuple[int, int]:
    """Height and width of the chain's current output."""
    return model.shape[1], model.shape[2]


def _units(n: int, width: float) -> int:
    """Scaled layer size; never below one unit."""
    return max(1, int(round(n * width)))


def _dropout(model: _Chain, rate: float) -> None:
    # A zero rate adds nothing: fewer layers for the importer to skip, same function.
    if rate > 0:
        model.add(layers.Dropout(rate))


def _pool(model: _Chain) -> None:
    h, w = _spatial(model)
    if h < 2 or w < 2:
        raise ValueError(
            f"{model.name}: input too small, the feature map is {h}×{w} before a 2×2 max pooling; "
            "use a larger input or a smaller network"
        )
    model.add(layers.MaxPooling2D(pool_size=2))


def _conv(model, filters, kernel, padding):
    h, w = _spatial(model)
    if padding == "valid" and (h < kernel or w < kernel):
        raise ValueError(f"{model.name}: a {kernel}×{kernel} valid convolution does not fit a {h}×{w} feature map")
    model.add(layers.Conv2D(filters, kernel, padding=padding))


def _output(model: _Chain, num_classes: int) -> None:
    # Softmax belongs to training only; the importer reads the logits before it.
    model.add(layers.Dense(num_classes, activation="softmax"))


def _fc(model, num_classes, *, width=1.0, dropout=0.08, l1=0.0, hidden=600):
    """Flatten, dropout, dense hidden layer, ReLU, [L1], dropout, output (the paper's FC)."""
    model.add(layers.Flatten())
    _dropout(model, dropout)
    model.add(layers.Dense(_units(hidden, width)))
    model.add(layers.ReLU())
    if l1:
        model.add(layers.ActivityRegularization(l1=l1))
    _dropout(model, dropout)
    _output(model, num_classes)


@_register("fc")
def _build_fc(model, num_classes, *, width=1.0, dropout=0.08):
    _fc(model, num_classes, width=width, dropout=dropout)


@_register("fc_l1")
def _build_fc_l1(model, num_classes, *, width=1.0, dropout=0.08, l1=4.5e-4):
    _fc(model, num_classes, width=width, dropout=dropout, l1=l1)


@_register("lenet")
def _build_lenet(model, num_classes, *, width=1.0, dropout=0.08):
    """LeNet-5 with BN before ReLU (the BN folds into the preceding layer)."""
    for filters, padding, pool in ((6, "same", True), (16, "valid", True), (120, "valid", False)):
        _conv(model, _units(filters, width), 5, padding)
        model.add(layers.BatchNormalization())
        model.add(layers.ReLU())
        _dropout(model, dropout)
        if pool:
            _pool(model)
    model.add(layers.Flatten())
    model.add(layers.Dense(_units(84, width)))
    model.add(layers.BatchNormalization())
    model.add(layers.ReLU())
    _output(model, num_classes)


def _vgg(model, num_classes, plan, dense, *, width, conv_dropout, dense_dropout, flat_dropout, l1):
    """VGG-style chain: 3×3 ``same`` conv, ReLU, [L1], BN, [dropout] per entry; 'P' pools.

    ``conv_dropout(i, next_is_pool)`` gives the rate after the i-th convolution; BN comes
    after ReLU, so it folds into the *next* layer (through pooling and flatten).
    """
    for i, item in enumerate(plan):
        if item == "P":
            _pool(model)
            continue
        _conv(model, _units(item, width), 3, "same")
        model.add(layers.ReLU())
        if l1:
            model.add(layers.ActivityRegularization(l1=l1))
        model.add(layers.BatchNormalization())
        next_is_pool = i + 1 < len(plan) and plan[i + 1] == "P"
        _dropout(model, conv_dropout(i, next_is_pool))
    _dropout(model, flat_dropout)
    model.add(layers.Flatten())
    for units in dense:
        model.add(layers.Dense(_units(units, width)))
        model.add(layers.ReLU())
        if l1:
            model.add(layers.ActivityRegularization(l1=l1))
        model.add(layers.BatchNormalization())
        _dropout(model, dense_dropout)
    _output(model, num_classes)


_VGG16_MNIST = [64, 64, 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P"]
_VGG15_CIFAR = [64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P"]


@_register("vgg16_mnist")
def _build_vgg16_mnist(model, num_classes, *, width=1.0, dropout=0.08):
    _vgg(
        model,
        num_classes,
        _VGG16_MNIST,
        [512, 512],
        width=width,
        conv_dropout=lambda i, pool: dropout,
        dense_dropout=dropout,
        flat_dropout=0.0,
        l1=0.0,
    )


def _cifar(model, num_classes, *, width, dropout, l1):
    if dropout is None:
        # The original CIFAR script: 0.3 after the first convolution, 0.4 after every other
        # convolution that is not followed by pooling, 0.5 before flatten and after the dense.
        conv = lambda i, pool: 0.0 if pool else (0.3 if i == 0 else 0.4)  # noqa: E731
        dense = flat = 0.5
    else:
        conv = lambda i, pool: dropout  # noqa: E731
        dense = flat = dropout
    _vgg(
        model,
        num_classes,
        _VGG15_CIFAR,
        [512],
        width=width,
        conv_dropout=conv,
        dense_dropout=dense,
        flat_dropout=flat,
        l1=l1,
    )


@_register("vgg15_cifar")
def _build_vgg15_cifar(model, num_classes, *, width=1.0, dropout=None):
    _cifar(model, num_classes, width=width, dropout=dropout, l1=0.0)


@_register("vgg15_cifar_l1")
def _build_vgg15_cifar_l1(model, num_classes, *, width=1.0, dropout=None, l1=1e-6):
    _cifar(model, num_classes, width=width, dropout=dropout, l1=l1)


@_register("digits_fc")
def _build_digits_fc(model, num_classes, *, width=1.0, dropout=0.0):
    """64-100-10 for the 8×8 digits."""
    _fc(model, num_classes, width=width, dropout=dropout, hidden=100)


@_register("digits_lenet")
def _build_digits_lenet(model, num_classes, *, width=1.0, dropout=0.0):
    """A LeNet in miniature: 6@3×3 same, pool, 16@3×3 valid, pool, 32, out; BN before ReLU."""
    for filters, padding in ((6, "same"), (16, "valid")):
        _conv(model, _units(filters, width), 3, padding)
        model.add(layers.BatchNormalization())
        model.add(layers.ReLU())
        _dropout(model, dropout)
        _pool(model)
    model.add(layers.Flatten())
    model.add(layers.Dense(_units(32, width)))
    model.add(layers.BatchNormalization())
    model.add(layers.ReLU())
    _output(model, num_classes)


@_register("digits_vgg")
def _build_digits_vgg(model, num_classes, *, width=1.0, dropout=0.0):
    """A VGG in miniature: 16,16,P,32,32,P, dense 64, out; 3×3 same convs, BN after ReLU."""
    _vgg(
        model,
        num_classes,
        [16, 16, "P", 32, 32, "P"],
        [64],
        width=width,
        conv_dropout=lambda i, pool: dropout,
        dense_dropout=dropout,
        flat_dropout=0.0,
        l1=0.0,
    )


def _basic_block(x, filters: int, stride: int, name: str):
    """conv3×3(stride)-BN-ReLU-conv3×3-BN, plus the shortcut, then ReLU (He et al. 2016)."""
    h = layers.Conv2D(filters, 3, strides=stride, padding="same", name=f"{name}_conv1")(x)
    h = layers.ReLU(name=f"{name}_relu1")(layers.BatchNormalization(name=f"{name}_bn1")(h))
    h = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(h)
    h = layers.BatchNormalization(name=f"{name}_bn2")(h)
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([h, shortcut]))


def _resnet(name, input_shape, num_classes, stages, *, width=1.0, stem=16):
    inp = keras.Input(shape=input_shape)
    x = layers.Conv2D(_units(stem, width), 3, padding="same", name="stem_conv")(inp)
    x = layers.ReLU(name="stem_relu")(layers.BatchNormalization(name="stem_bn")(x))
    for s, (filters, blocks) in enumerate(stages):
        for b in range(blocks):
            stride = 2 if (s > 0 and b == 0) else 1
            x = _basic_block(x, _units(filters, width), stride, f"stage{s + 1}_block{b + 1}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Dense(num_classes, activation="softmax", name="logits")(x)
    return keras.Model(inp, out, name=name)


def _build_resnet20(name, input_shape, num_classes, *, width=1.0):
    return _resnet(name, input_shape, num_classes, [(16, 3), (32, 3), (64, 3)], width=width)


def _build_digits_resnet(name, input_shape, num_classes, *, width=1.0):
    return _resnet(name, input_shape, num_classes, [(8, 1), (16, 1)], width=width, stem=8)


_RESIDUAL["resnet20"] = _build_resnet20
_RESIDUAL["digits_resnet"] = _build_digits_resnet

NAMES: tuple[str, ...] = tuple(_BUILDERS) + tuple(_RESIDUAL)
