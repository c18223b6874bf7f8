"""Import a trained Keras 3 model (Sequential or Functional) into a Graph, call by call."""

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


def _history(tensor):
    """(operation, node index, tensor index) of a Keras tensor: which call produced it."""
    h = tensor._keras_history
    return h.operation, h.node_index, h.tensor_index


def _as_list(tensors) -> list:
    return list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]


def _calls(model) -> list[tuple]:
    """Every call of a layer that the model's output depends on, in topological order.

    Each item is (layer, node, call, sources): ``node`` the Keras graph node of that call,
    ``call`` its number among this layer's calls in the model (0, 1, ...) and ``sources``
    the (operation, node index, tensor index) of each input.  The walk follows the graph of
    calls from the output, not ``model.layers``: a layer called twice is two calls (two
    neurons layers sharing weights), and a layer the output does not depend on is none.
    """
    import keras

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError("only models with exactly one input and one output can be converted")
    order, state = [], {}
    stack = [(_history(model.outputs[0])[:2], False)]
    while stack:  # depth first, without recursion (deep ResNets)
        (op, index), done = stack.pop()
        key = (id(op), index)
        if done:
            if state[key] != "done":
                state[key] = "done"
                order.append((op, op._inbound_nodes[index]))
            continue
        if key in state:
            continue
        state[key] = "open"
        if isinstance(op, keras.layers.InputLayer):
            continue
        if isinstance(op, keras.Model):
            raise UnsupportedLayerError(op, "nested models are not supported; flatten the model first")
        node = op._inbound_nodes[index]
        stack.append(((op, index), True))
        for t in reversed(_as_list(node.input_tensors)):
            parent = _history(t)[:2]
            if (id(parent[0]), parent[1]) not in state:
                stack.append((parent, False))
    calls, count = [], {}
    for op, node in order:
        call = count.get(id(op), 0)
        count[id(op)] = call + 1
        if type(op).__name__ in _OTHER_MERGES:
            raise UnsupportedLayerError(
                op, "merge layers other than Add (concatenation, products, ...) are not supported"
            )
        kwargs = getattr(node.arguments, "kwargs", {}) or {}
        if kwargs.get("training"):
            raise UnsupportedLayerError(op, "called with training=True: the network at inference is what is mapped")
        if kwargs.get("mask") is not None:
            raise UnsupportedLayerError(op, "called with a mask, which the mapping does not take")
        calls.append((op, node, call, [_history(t) for t in _as_list(node.input_tensors)]))
    return calls


def _call_name(layer, call: int) -> str:
    """Graph name of one call: the layer's name, then name#1, name#2 ... for later calls."""
    return layer.name if call == 0 else f"{layer.name}#{call}"


def _option(layer, option: str, value, reason: str):
    return UnsupportedLayerError(layer, f"{option}={value!r} is not supported: {reason}")


def _check_data_format(layer) -> None:
    fmt = getattr(layer, "data_format", "channels_last")
    if fmt not in (None, "channels_last"):
        raise _option(layer, "data_format", fmt, "only channels_last (height, width, channels) is mapped")


def _check_padding(layer) -> None:
    if layer.padding not in ("valid", "same"):
        raise _option(layer, "padding", layer.padding, "only 'valid' and 'same' are mapped")


def _check_plain(layer) -> None:
    """Options that change a parameterised layer's weights behind get_weights()."""
    if getattr(layer, "lora_enabled", False):
        raise _option(layer, "lora_rank", getattr(layer, "lora_rank", None), "merge the LoRA update into the kernel first")
    mode = getattr(getattr(layer, "dtype_policy", None), "quantization_mode", None)
    if mode:
        raise _option(layer, "quantization_mode", mode, "quantized kernels are not float64 weights")


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

    calls = _calls(model)
    if not calls:
        raise ValueError("the model has no layers")
    graph = ir.Graph()
    in_shape = tuple(model.inputs[0].shape[1:])
    if any(s is None for s in in_shape):
        raise ValueError(f"the model's input shape {in_shape} must be fully known (except the batch axis)")
    graph.add("input", ir.Input(in_shape))
    produced: dict[tuple, str] = {}  # (id(layer), call) -> graph node holding its output
    final_layer, final_index, _ = _history(model.outputs[0])
    node_index = {}  # (id(layer), node index in layer._inbound_nodes) -> call number

    for layer, node, call, inbound in calls:
        node_index[(id(layer), layer._inbound_nodes.index(node))] = call
        final = layer is final_layer and node is final_layer._inbound_nodes[final_index]
        kind = type(layer).__name__
        name = _call_name(layer, call)
        sources = [
            "input" if isinstance(op, keras.layers.InputLayer) else produced[(id(op), node_index[(id(op), i)])]
            for op, i, _ in inbound
        ]
        in_tensor = _as_list(node.input_tensors)[0]
        if isinstance(layer, keras.layers.Add):
            graph.add(name, ir.Add(), after=sources)
            produced[(id(layer), call)] = name
            continue
        if len(sources) != 1:
            raise UnsupportedLayerError(layer, f"{kind} with {len(sources)} inputs is not supported")
        last = sources[0]

        def add(node_name, ir_node):
            nonlocal last
            graph.add(node_name, ir_node, after=last)
            last = node_name

        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
            _check_plain(layer)
            w = _weights(layer)
            bias = w[1] if layer.use_bias else np.zeros(w[0].shape[-1])
            if isinstance(layer, keras.layers.Dense):
                if type(layer) is not keras.layers.Dense:
                    raise UnsupportedLayerError(layer, f"{kind} is not supported (only plain Dense)")
                if len(in_tensor.shape) != 2:
                    raise UnsupportedLayerError(layer, "Dense must act on a flat vector (add a Flatten layer)")
                add(name, ir.Dense(w[0], bias))
            else:
                if type(layer) is not keras.layers.Conv2D:
                    raise UnsupportedLayerError(layer, f"{kind} is not supported (only plain Conv2D)")
                _check_data_format(layer)
                _check_padding(layer)
                if getattr(layer, "groups", 1) != 1:
                    raise _option(layer, "groups", layer.groups, "grouped convolutions are not mapped")
                add(name, ir.Conv2D(w[0], bias, layer.strides, layer.padding, layer.dilation_rate))
            act = _activation_name(layer)
            if act == "relu":
                add(f"{name}/relu", ir.ReLU())
            elif act == "softmax" and final:
                pass
            elif act != "linear":
                raise UnsupportedLayerError(layer, f"activation {act!r}: {_NON_RELU}")
        elif isinstance(layer, keras.layers.BatchNormalization):
            axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
            if axis not in (-1, len(in_tensor.shape) - 1):
                raise _option(layer, "axis", layer.axis, "only batch normalisation over the last (channel) axis is mapped")
            channels = in_tensor.shape[-1]
            gamma = np.asarray(layer.gamma, np.float64) if layer.scale else np.ones(channels)
            beta = np.asarray(layer.beta, np.float64) if layer.center else np.zeros(channels)
            mean = np.asarray(layer.moving_mean, np.float64)
            var = np.asarray(layer.moving_variance, np.float64)
            scale = gamma / np.sqrt(var + layer.epsilon)
            add(name, ir.BatchNorm(scale, beta - mean * scale))
        elif isinstance(layer, keras.layers.ReLU):
            if layer.max_value is not None or layer.negative_slope or layer.threshold:
                raise UnsupportedLayerError(
                    layer, f"ReLU with max_value/negative_slope/threshold set: {_NON_RELU}"
                )
            add(name, ir.ReLU())
        elif isinstance(layer, keras.layers.Activation):
            act = _activation_name(layer)
            if act == "relu":
                add(name, ir.ReLU())
            elif not ((act == "softmax" and final) or act == "linear"):
                raise UnsupportedLayerError(layer, f"activation {act!r}: {_NON_RELU}")
        elif isinstance(layer, keras.layers.Softmax):
            if not final:
                raise UnsupportedLayerError(layer, "softmax is only allowed as the last layer")
        elif isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
            _check_data_format(layer)
            _check_padding(layer)
            pool = ir.MaxPool2D if isinstance(layer, keras.layers.MaxPooling2D) else ir.AvgPool2D
            add(name, pool(layer.pool_size, layer.strides, layer.padding))
        elif isinstance(layer, keras.layers.GlobalAveragePooling2D):
            _check_data_format(layer)
            if layer.keepdims:
                raise _option(layer, "keepdims", True, "the pooled output is mapped as a flat vector; use keepdims=False")
            add(name, ir.GlobalAvgPool2D())
        elif isinstance(layer, keras.layers.ZeroPadding2D):
            _check_data_format(layer)
            (top, bottom), (left, right) = layer.padding
            add(name, ir.ZeroPadding2D((top, bottom, left, right)))
        elif isinstance(layer, keras.layers.Flatten):
            if len(in_tensor.shape) > 2:
                _check_data_format(layer)  # channels_first flattens in another order
            add(name, ir.Flatten())
        elif kind not in _IGNORED_AT_INFERENCE:
            raise UnsupportedLayerError(layer, f"{kind} has no exact single-spike counterpart in exactsnn")
        produced[(id(layer), call)] = last
    graph.output = produced[(id(final_layer), node_index[(id(final_layer), final_index)])]
    return graph


def float64_logits_model(model):
    """A float64 copy of ``model`` whose output is the pre-softmax logits.

    The copy is rebuilt layer by layer from a float64 Input, so no layer (the input
    included) rounds to float32 on the way.
    """
    import keras

    calls = _calls(model)
    final, final_index, _ = _history(model.outputs[0])
    inp = keras.Input(tuple(model.inputs[0].shape[1:]), dtype="float64")
    tensors: dict[tuple, object] = {}  # (id(layer), node index) -> output of the copy's call
    copies: dict[int, tuple] = {}  # id(layer) -> (layer, copy): a shared layer has one copy
    for layer, node, _, inbound in calls:
        index = layer._inbound_nodes.index(node)
        args = [inp if isinstance(op, keras.layers.InputLayer) else tensors[(id(op), i)] for op, i, _ in inbound]
        last = layer is final and index == final_index
        if last and (
            isinstance(layer, keras.layers.Softmax)
            or (isinstance(layer, keras.layers.Activation) and _activation_name(layer) == "softmax")
        ):
            tensors[(id(layer), index)] = args[0]
            continue
        if id(layer) not in copies:
            cfg = layer.get_config()
            cfg["dtype"] = "float64"
            if last and cfg.get("activation") == "softmax":
                cfg["activation"] = "linear"
            copies[id(layer)] = (layer, type(layer).from_config(cfg))
        copy = copies[id(layer)][1]
        tensors[(id(layer), index)] = copy(args if len(args) > 1 else args[0])
    for layer, copy in copies.values():
        copy.set_weights([np.asarray(w, np.float64) for w in layer.get_weights()])
    return keras.Model(inp, tensors[(id(final), final_index)])


def float64_logits(model, batch_size: int = 256):
    """The float64 pre-softmax outputs of the Keras ``model`` as a function of inputs, in
    batches of ``batch_size``; its float64 copy (:func:`float64_logits_model`) is built once,
    here, so that calling it chunk after chunk does not rebuild it."""
    m64 = float64_logits_model(model)
    empty = np.zeros((0,) + tuple(m64.outputs[0].shape[1:]))

    def logits(x) -> np.ndarray:
        x = np.asarray(x, np.float64)
        out = [np.asarray(m64(x[i : i + batch_size], training=False), np.float64) for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else empty

    return logits


def keras_logits(model, x, batch_size: int = 256) -> np.ndarray:
    """Float64 pre-softmax outputs of the original Keras model on ``x``."""
    return float64_logits(model, batch_size)(x)
