"""Random Keras ReLU networks covering every feature of the mapping, for property tests."""

from __future__ import annotations

import numpy as np


def randomise_batch_norm(model, rng) -> None:
    """Give every BatchNormalization random statistics, negative scales included."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([
                rng.normal(0.0, 1.0, c), rng.normal(0.0, 0.5, c), rng.normal(0.0, 0.3, c), rng.uniform(0.5, 2.0, c),
            ])


def randomise_biases(model, rng, scale=0.1) -> None:
    import keras

    for layer in model.layers:
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)) and layer.use_bias:
            w = layer.get_weights()
            w[1] = rng.normal(0.0, scale, w[1].shape)
            layer.set_weights(w)


def draw_conv_network(draw, st):
    """A conv stack: kernels 1–5, strides 1–2, both paddings, BN before/after ReLU, pools, dense head."""
    import keras

    L = keras.layers
    size = draw(st.integers(6, 11))
    channels = draw(st.integers(1, 3))
    layers = [keras.Input((size, size, channels))]
    h = size
    for _ in range(draw(st.integers(1, 3))):
        k = draw(st.integers(1, 5))
        stride = draw(st.integers(1, 2))
        padding = draw(st.sampled_from(["same", "valid"]))
        if padding == "valid" and h < k:
            padding = "same"
        layers.append(L.Conv2D(draw(st.integers(1, 5)), k, strides=stride, padding=padding))
        h = -(-h // stride) if padding == "same" else (h - k) // stride + 1
        bn = draw(st.sampled_from(["none", "before", "after"]))
        if bn == "before":
            layers.append(L.BatchNormalization())
        if draw(st.booleans()) and bn != "before":
            layers.append(L.MaxPooling2D(2, strides=1, padding="same"))  # pool before the ReLU
        layers.append(L.ReLU())
        if bn == "after":
            layers.append(L.BatchNormalization())
        if h >= 2 and draw(st.booleans()):
            pstride = draw(st.integers(1, 2))
            ppad = draw(st.sampled_from(["same", "valid"]))
            layers.append(L.MaxPooling2D(2, strides=pstride, padding=ppad))
            h = -(-h // pstride) if ppad == "same" else (h - 2) // pstride + 1
            if draw(st.booleans()):
                layers.append(L.BatchNormalization())  # after the pool: folded through nothing
    head = draw(st.sampled_from(["flatten", "gap", "avg"]))
    if head == "gap":
        layers.append(L.GlobalAveragePooling2D())
    else:
        if head == "avg" and h >= 2:
            layers.append(L.AveragePooling2D(2, strides=draw(st.integers(1, 2)), padding=draw(st.sampled_from(["same", "valid"]))))
        layers.append(L.Flatten())
    for _ in range(draw(st.integers(0, 2))):
        layers.append(L.Dense(draw(st.integers(2, 12)), activation="relu"))
        if draw(st.booleans()):
            layers.append(L.Dropout(0.2))
    layers.append(L.Dense(draw(st.integers(2, 6)), activation="softmax"))
    return keras.Sequential(layers)


def draw_avg_conv_network(draw, st):
    """Average pooling folded into a following convolution (non-overlapping pools)."""
    import keras

    L = keras.layers
    size = draw(st.integers(6, 10))
    layers = [keras.Input((size, size, 2)), L.Conv2D(3, 3, padding="same", activation="relu")]
    if draw(st.booleans()):
        layers.append(L.BatchNormalization())
    p = draw(st.integers(1, 2))
    layers.append(L.AveragePooling2D(p, strides=p))
    layers.append(L.Conv2D(4, draw(st.integers(1, 3)), padding=draw(st.sampled_from(["same", "valid"])), activation="relu"))
    layers += [L.Flatten(), L.Dense(4)]
    return keras.Sequential(layers)


def draw_dense_network(draw, st):
    import keras

    L = keras.layers
    n_in = draw(st.integers(2, 30))
    layers = [keras.Input((n_in,))]
    for _ in range(draw(st.integers(1, 4))):
        layers.append(L.Dense(draw(st.integers(2, 40))))
        bn = draw(st.sampled_from(["none", "before", "after"]))
        if bn == "before":
            layers.append(L.BatchNormalization())
        layers.append(L.Activation("relu") if draw(st.booleans()) else L.ReLU())
        if bn == "after":
            layers.append(L.BatchNormalization())
    layers.append(L.Dense(draw(st.integers(2, 10))))
    return keras.Sequential(layers)


def finish(model, draw, st, seed: int):
    """Random BN statistics and biases, and an input range other than [0, 1] most of the time."""
    rng = np.random.default_rng(seed)
    randomise_batch_norm(model, rng)
    randomise_biases(model, rng)
    p, q = draw(st.sampled_from([(0.0, 1.0), (0.0, 16.0), (-3.0, 3.0), (-200.0, 200.0), (2.0, 5.0)]))
    x = rng.uniform(p, q, (24,) + tuple(model.inputs[0].shape[1:]))
    return model, x, (p, q)


def draw_residual_network(draw, st):
    """Residual blocks with identity and projection shortcuts, strides, BN before/after ReLU."""
    import keras

    L = keras.layers
    size = draw(st.integers(6, 10))
    inp = keras.Input((size, size, draw(st.integers(1, 3))))
    channels = draw(st.integers(2, 4))
    x = L.Conv2D(channels, 3, padding="same")(inp)
    x = L.ReLU()(L.BatchNormalization()(x))
    if draw(st.booleans()):
        x = L.MaxPooling2D(2, strides=1, padding="same")(x)
    for _ in range(draw(st.integers(1, 3))):
        stride = draw(st.integers(1, 2))
        out_channels = draw(st.sampled_from([channels, channels + 1]))
        h = L.Conv2D(out_channels, 3, strides=stride, padding="same")(x)
        h = L.ReLU()(L.BatchNormalization()(h))
        h = L.BatchNormalization()(L.Conv2D(out_channels, draw(st.sampled_from([1, 3])), padding="same")(h))
        if stride == 1 and out_channels == channels and draw(st.booleans()):
            shortcut = x
        else:
            shortcut = L.BatchNormalization()(L.Conv2D(out_channels, 1, strides=stride)(x))
        x = L.ReLU()(L.Add()([h, shortcut]))
        if draw(st.booleans()):
            x = L.BatchNormalization()(x)  # after the ReLU: folded into both next branches
        channels = out_channels
    x = L.GlobalAveragePooling2D()(x) if draw(st.booleans()) else L.Flatten()(x)
    return keras.Model(inp, L.Dense(draw(st.integers(2, 5)), activation="softmax")(x))


def draw_dense_residual_network(draw, st, branch_std=0.1):
    """Dense residual blocks; the last layer of each branch starts small, as in trained ResNets.

    With Glorot-sized residual branches the identity skip (W = I, arriving late in the merge
    window) occasionally drives a merge neuron over threshold before its last input — a
    genuine early crossing that the simulator reports (see test_residual.py).
    """
    import keras

    L = keras.layers
    n = draw(st.integers(3, 12))
    inp = keras.Input((n,))
    x = L.Dense(n, activation="relu")(inp)
    init = keras.initializers.RandomNormal(stddev=branch_std) if branch_std else "glorot_uniform"
    for _ in range(draw(st.integers(1, 3))):
        h = L.Dense(draw(st.integers(2, 12)), activation="relu")(x)
        h = L.Dense(n, kernel_initializer=init)(h)
        x = L.ReLU()(L.Add()([x, h]))
    return keras.Model(inp, L.Dense(3)(x))
