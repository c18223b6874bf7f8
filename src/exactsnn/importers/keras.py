"""Import a trained Keras 3 model (Sequential or a straight-chain Functional) into a Graph."""

from __future__ import annotations

import numpy as np

from .. import ir


class UnsupportedLayerError(ValueError):
    """A layer that the exact mapping cannot represent."""

    def __init__(self, layer, reason: str):
        super().__init__(f"layer {layer.name!r} ({type(layer).__name__}): {reason}")
        self.layer_name = layer.name


_NON_RELU = "only ReLU hidden units can be coded exactly by one spike time in a bounded window"
_OTHER_MERGES = {"Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot"}
_IGNORED_AT_INFERENCE = {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "ActivityRegularization"}


def _activation_name(layer) -> str:
    act = getattr(layer, "activation", None)
    if act is None:
        return "linear"
    return getattr(act, "__name__", str(act))


def _inbound(layer) -> list[str]:
    """Names of the layers whose outputs feed ``layer``."""
    tensors = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
    return [t._keras_history.operation.name for t in tensors]


def _layers(model) -> list:
    """The model's layers in topological order, after checking what the mapping can take."""
    import keras

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError("only models with exactly one input and one output can be converted")
    layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
    for layer in layers:
        if type(layer).__name__ in _OTHER_MERGES:
            raise UnsupportedLayerError(
                layer, "merge layers other than Add (concatenation, products, ...) are not supported"
            )
        if isinstance(layer, keras.Model):
            raise UnsupportedLayerError(layer, "nested models are not supported; flatten the model first")
    return layers


def _weights(layer) -> list[np.ndarray]:
    return [np.asarray(w, dtype=np.float64) for w in layer.get_weights()]


def import_keras(model) -> ir.Graph:
    """Translate ``model`` into an :class:`exactsnn.ir.Graph` of float64 nodes.

    Sequential and Functional models are both read through their layer graph, so residual
    ``Add`` merges come through as :class:`exactsnn.ir.Add` nodes.  The final softmax is
    dropped: it does not change the argmax, and the spiking network's read-out reproduces
    the logits before it.  Anything the mapping cannot reproduce exactly raises
    :class:`UnsupportedLayerError` naming the layer and the reason.
    """
    import keras

    layers = _layers(model)
    if not layers:
        raise ValueError("the model has no layers")
    graph = ir.Graph()
    in_shape = tuple(model.inputs[0].shape[1:])
    if any(s is None for s in in_shape):
        raise ValueError(f"the model's input shape {in_shape} must be fully known (except the batch axis)")
    graph.add("input", ir.Input(in_shape))
    produced: dict[str, str] = {}  # keras layer name -> graph node holding its output
    final_layer = model.outputs[0]._keras_history.operation

    for layer in layers:
        final = layer is final_layer
        kind = type(layer).__name__
        sources = [produced.get(n, "input") for n in _inbound(layer)]
        if isinstance(layer, keras.layers.Add):
            graph.add(layer.name, ir.Add(), after=sources)
            produced[layer.name] = layer.name
            continue
        if len(sources) != 1:
            raise UnsupportedLayerError(layer, f"{kind} with {len(sources)} inputs is not supported")
        last = sources[0]

        def add(name, node):
            nonlocal last
            graph.add(name, node, after=last)
            last = name

        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
            w = _weights(layer)
            bias = w[1] if layer.use_bias else np.zeros(w[0].shape[-1])
            if isinstance(layer, keras.layers.Dense):
                if len(layer.input.shape) != 2:
                    raise UnsupportedLayerError(layer, "Dense must act on a flat vector (add a Flatten layer)")
                add(layer.name, ir.Dense(w[0], bias))
            else:
                if type(layer) is not keras.layers.Conv2D:
                    raise UnsupportedLayerError(layer, f"{kind} is not supported (only plain Conv2D)")
                if layer.data_format != "channels_last":
                    raise UnsupportedLayerError(layer, "only channels_last convolutions are supported")
                if getattr(layer, "groups", 1) != 1:
                    raise UnsupportedLayerError(layer, "grouped convolutions are not supported")
                add(layer.name, ir.Conv2D(w[0], bias, layer.strides, layer.padding, layer.dilation_rate))
            act = _activation_name(layer)
            if act == "relu":
                add(f"{layer.name}/relu", ir.ReLU())
            elif act == "softmax" and final:
                pass
            elif act != "linear":
                raise UnsupportedLayerError(layer, f"activation {act!r}: {_NON_RELU}")
        elif isinstance(layer, keras.layers.BatchNormalization):
            axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
            if axis not in (-1, len(layer.input.shape) - 1):
                raise UnsupportedLayerError(layer, "only batch normalisation over the last (channel) axis is supported")
            channels = layer.input.shape[-1]
            gamma = np.asarray(layer.gamma, np.float64) if layer.scale else np.ones(channels)
            beta = np.asarray(layer.beta, np.float64) if layer.center else np.zeros(channels)
            mean = np.asarray(layer.moving_mean, np.float64)
            var = np.asarray(layer.moving_variance, np.float64)
            scale = gamma / np.sqrt(var + layer.epsilon)
            add(layer.name, ir.BatchNorm(scale, beta - mean * scale))
        elif isinstance(layer, keras.layers.ReLU):
            if layer.max_value is not None or layer.negative_slope or layer.threshold:
                raise UnsupportedLayerError(
                    layer, f"ReLU with max_value/negative_slope/threshold set: {_NON_RELU}"
                )
            add(layer.name, ir.ReLU())
        elif isinstance(layer, keras.layers.Activation):
            act = _activation_name(layer)
            if act == "relu":
                add(layer.name, ir.ReLU())
            elif not ((act == "softmax" and final) or act == "linear"):
                raise UnsupportedLayerError(layer, f"activation {act!r}: {_NON_RELU}")
        elif isinstance(layer, keras.layers.Softmax):
            if not final:
                raise UnsupportedLayerError(layer, "softmax is only allowed as the last layer")
        elif isinstance(layer, keras.layers.MaxPooling2D):
            add(layer.name, ir.MaxPool2D(layer.pool_size, layer.strides, layer.padding))
        elif isinstance(layer, keras.layers.AveragePooling2D):
            add(layer.name, ir.AvgPool2D(layer.pool_size, layer.strides, layer.padding))
        elif isinstance(layer, keras.layers.GlobalAveragePooling2D):
            add(layer.name, ir.GlobalAvgPool2D())
        elif isinstance(layer, keras.layers.ZeroPadding2D):
            if layer.data_format != "channels_last":
                raise UnsupportedLayerError(layer, "only channels_last padding is supported")
            (top, bottom), (left, right) = layer.padding
            add(layer.name, ir.ZeroPadding2D((top, bottom, left, right)))
        elif isinstance(layer, keras.layers.Flatten):
            add(layer.name, ir.Flatten())
        elif kind not in _IGNORED_AT_INFERENCE:
            raise UnsupportedLayerError(layer, f"{kind} has no exact single-spike counterpart in exactsnn")
        produced[layer.name] = last
    graph.output = produced[final_layer.name]
    return graph


def float64_logits_model(model):
    """A float64 copy of ``model`` whose output is the pre-softmax logits.

    The copy is rebuilt layer by layer from a float64 Input, so no layer (the input
    included) rounds to float32 on the way.
    """
    import keras

    layers = _layers(model)
    final = model.outputs[0]._keras_history.operation
    inp = keras.Input(tuple(model.inputs[0].shape[1:]), dtype="float64")
    tensors: dict[str, object] = {}
    copies = []
    for layer in layers:
        args = [tensors.get(n, inp) for n in _inbound(layer)]
        if layer is final and (
            isinstance(layer, keras.layers.Softmax)
            or (isinstance(layer, keras.layers.Activation) and _activation_name(layer) == "softmax")
        ):
            tensors[layer.name] = args[0]
            continue
        cfg = layer.get_config()
        cfg["dtype"] = "float64"
        if layer is final and cfg.get("activation") == "softmax":
            cfg["activation"] = "linear"
        copy = type(layer).from_config(cfg)
        tensors[layer.name] = copy(args if len(args) > 1 else args[0])
        copies.append((layer, copy))
    for layer, copy in copies:
        copy.set_weights([np.asarray(w, np.float64) for w in layer.get_weights()])
    return keras.Model(inp, tensors[final.name])


def keras_logits(model, x, batch_size: int = 256) -> np.ndarray:
    """Float64 pre-softmax outputs of the original Keras model on ``x``."""
    m64 = float64_logits_model(model)
    x = np.asarray(x, np.float64)
    out = [np.asarray(m64(x[i : i + batch_size], training=False), np.float64) for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0,) + tuple(m64.outputs[0].shape[1:]))
