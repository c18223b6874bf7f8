"""Caffe network → Keras model (the optional export behind ``exactsnn caffe2keras``)."""

from __future__ import annotations

import os
import re

import numpy as np

from .reader import CaffeLayer, CaffeNet, check_supported, read_caffe_net

__all__ = ["caffe_to_keras", "main_caffe2keras"]


def _keras_name(name: str, used: set) -> str:
    base = re.sub(r"[^A-Za-z0-9_.\-]", "_", name) or "layer"
    out, k = base, 1
    while out in used:
        k += 1
        out = f"{base}_{k}"
    used.add(out)
    return out


def _caffe_pool_size(size: int, k: int, s: int, p: int, ceil: bool) -> int:
    """Caffe's pooled output size (PoolingLayer::Reshape)."""
    span = size + 2 * p - k
    out = (-(-span // s) if ceil else span // s) + 1
    if p > 0 and (out - 1) * s >= size + p:
        out -= 1  # the last window must start inside the image
    return out


def _pool_plan(layer: CaffeLayer, shape, nonnegative: bool):
    """Keras padding for a Caffe pooling layer: ("valid"|"same", explicit_pad or None)."""
    _, h, w = shape
    p = layer.params
    if p["global_pooling"]:
        if any(p["pad"]) or p["stride"] != (1, 1):
            raise ValueError(f"Caffe layer {layer.name!r}: global pooling with padding or stride is not supported")
        return (h, w), (1, 1), "valid", None, (1, 1)
    k, s, pad = p["kernel"], p["stride"], p["pad"]
    ceil = p["round_mode"] == "CEIL"
    out = tuple(_caffe_pool_size(n, k[i], s[i], pad[i], ceil) for i, n in enumerate((h, w)))
    if any(pad[i] >= k[i] for i in range(2)):
        raise ValueError(f"Caffe layer {layer.name!r}: pooling padding {pad} must be smaller than the kernel {k}")
    if any(o <= 0 for o in out):
        raise ValueError(f"Caffe layer {layer.name!r}: pooling kernel {k} is larger than its input {(h, w)}")
    if pad == (0, 0):
        valid = tuple((n - k[i]) // s[i] + 1 for i, n in enumerate((h, w)))
        if valid == out:
            return k, s, "valid", None, out
        same = tuple(-(-n // s[i]) for i, n in enumerate((h, w)))
        top = tuple(max((same[i] - 1) * s[i] + k[i] - n, 0) // 2 for i, n in enumerate((h, w)))
        if same == out and top == (0, 0):
            return k, s, "same", None, out  # TensorFlow's 'same' pads at the end only, like Caffe here
    if p["method"] != "MAX":
        raise ValueError(
            f"Caffe layer {layer.name!r}: {p['method']} pooling whose output size {out} needs padding "
            "(Caffe's ceil rounding or pad) cannot be reproduced exactly in Keras"
        )
    if not nonnegative:
        raise ValueError(
            f"Caffe layer {layer.name!r}: max pooling with Caffe's padding/ceil rounding (output {out}) "
            "is reproduced with zero padding, which is exact only on non-negative inputs (after a ReLU); "
            "this pooling layer's input can be negative"
        )
    extra = tuple(max(0, (out[i] - 1) * s[i] + k[i] - n - pad[i]) for i, n in enumerate((h, w)))
    padded = tuple(n + pad[i] + extra[i] for i, n in enumerate((h, w)))
    if tuple((padded[i] - k[i]) // s[i] + 1 for i in range(2)) != out:
        raise ValueError(f"Caffe layer {layer.name!r}: pooling geometry {k}/{s}/{pad} cannot be reproduced in Keras")
    return k, s, "valid", ((pad[0], extra[0]), (pad[1], extra[1])), out


def _plan(net: CaffeNet, input_shape, softmax: bool = True) -> list:
    """Walk the chain; return a list of Keras layer specs (dicts) with weights in Keras layout."""
    if input_shape is None:
        raise ValueError("the prototxt gives no input shape; pass input_shape=(C, H, W)")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3:
        raise ValueError(f"input shape {shape} must be (C, H, W)")
    current = net.input_name
    specs: list[dict] = []
    nonnegative = False  # is the current blob known to be >= 0 (after a ReLU)?
    flat_from = None  # (C, H, W) of a blob flattened by a Flatten layer but not yet consumed
    finished = False
    for layer in net.layers:
        check_supported(layer)
        if layer.type == "Input":
            continue
        if finished:
            raise ValueError(f"Caffe layer {layer.name!r} ({layer.type}) follows the final Softmax")
        if len(layer.bottoms) != 1 or len(layer.tops) != 1 or (current is not None and layer.bottoms[0] != current):
            raise ValueError(
                f"Caffe layer {layer.name!r} ({layer.type}) takes {list(layer.bottoms)} and gives {list(layer.tops)}; "
                f"only straight chains are supported (expected input {current!r})"
            )
        current = layer.tops[0]
        p = layer.params
        if layer.type == "Convolution":
            if len(shape) != 3:
                raise ValueError(f"Caffe layer {layer.name!r}: convolution after an inner product")
            if p["group"] != 1:
                raise ValueError(f"Caffe layer {layer.name!r}: grouped convolution (group={p['group']}) is not supported")
            if p["axis"] != 1:
                raise ValueError(f"Caffe layer {layer.name!r}: convolution axis {p['axis']} is not supported")
            c, h, w = shape
            (kh, kw), (sh, sw), (ph, pw), (dh, dw) = p["kernel"], p["stride"], p["pad"], p["dilation"]
            n_out = p["num_output"]
            blobs = layer.blobs
            if not blobs:
                raise ValueError(f"Caffe layer {layer.name!r} has no weights (is it in the caffemodel?)")
            wt = blobs[0]
            if wt.size != n_out * c * kh * kw:
                raise ValueError(
                    f"Caffe layer {layer.name!r}: weight blob {wt.shape} does not match ({n_out}, {c}, {kh}, {kw})"
                )
            kernel = wt.reshape(n_out, c, kh, kw).transpose(2, 3, 1, 0)
            bias = blobs[1].reshape(-1) if p["bias_term"] else np.zeros(n_out)
            if bias.shape != (n_out,):
                raise ValueError(f"Caffe layer {layer.name!r}: bias blob {blobs[1].shape} does not match ({n_out},)")
            same = (sh, sw) == (1, 1) and dh * (kh - 1) == 2 * ph and dw * (kw - 1) == 2 * pw
            if (ph or pw) and not same:
                specs.append({"kind": "pad", "name": layer.name + "_pad", "padding": ((ph, ph), (pw, pw))})
            specs.append(
                {
                    "kind": "conv", "name": layer.name, "filters": n_out, "kernel_size": (kh, kw),
                    "strides": (sh, sw), "padding": "same" if (same and (ph or pw)) else "valid",
                    "dilation_rate": (dh, dw), "kernel": kernel, "bias": bias, "use_bias": p["bias_term"],
                }
            )
            ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
            wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
            if ho <= 0 or wo <= 0:
                raise ValueError(f"Caffe layer {layer.name!r}: kernel larger than its padded input {(h, w)}")
            shape, nonnegative = (n_out, ho, wo), False
        elif layer.type == "Pooling":
            if len(shape) != 3:
                raise ValueError(f"Caffe layer {layer.name!r}: pooling after an inner product")
            if p["method"] not in ("MAX", "AVE"):
                raise ValueError(f"Caffe layer {layer.name!r}: {p['method']} pooling is not supported")
            k, s, padding, explicit, out = _pool_plan(layer, shape, nonnegative)
            if explicit is not None:
                specs.append({"kind": "pad", "name": layer.name + "_pad", "padding": explicit})
            specs.append(
                {"kind": "maxpool" if p["method"] == "MAX" else "avgpool", "name": layer.name,
                 "pool_size": k, "strides": s, "padding": padding}
            )
            shape = (shape[0],) + tuple(out)  # max and mean of non-negative values stay non-negative
        elif layer.type == "Flatten":
            if p.get("axis", 1) != 1 or p.get("end_axis", -1) not in (-1, len(shape)):
                raise ValueError(f"Caffe layer {layer.name!r}: only Flatten from axis 1 to the end is supported")
            if len(shape) == 3:
                specs.append({"kind": "flatten", "name": layer.name})
                flat_from, shape = shape, (int(np.prod(shape)),)
        elif layer.type == "InnerProduct":
            if p["axis"] != 1:
                raise ValueError(f"Caffe layer {layer.name!r}: inner product axis {p['axis']} is not supported")
            if len(shape) == 3:
                specs.append({"kind": "flatten", "name": layer.name + "_flatten"})
                flat_from, shape = shape, (int(np.prod(shape)),)
            n_in, n_out = shape[0], p["num_output"]
            if not layer.blobs:
                raise ValueError(f"Caffe layer {layer.name!r} has no weights (is it in the caffemodel?)")
            wt = layer.blobs[0]
            if wt.size != n_in * n_out:
                raise ValueError(
                    f"Caffe layer {layer.name!r}: weight blob {wt.shape} does not match {n_out} outputs x {n_in} inputs"
                )
            wt = wt.reshape(n_in, n_out).T if p["transpose"] else wt.reshape(n_out, n_in)
            if flat_from is not None:
                # Caffe's input index is c*H*W + h*W + w; Keras's is (h*W + w)*C + c.
                wt = wt.reshape((n_out,) + tuple(flat_from)).transpose(0, 2, 3, 1).reshape(n_out, n_in)
                flat_from = None
            bias = layer.blobs[1].reshape(-1) if p["bias_term"] else np.zeros(n_out)
            if bias.shape != (n_out,):
                raise ValueError(f"Caffe layer {layer.name!r}: bias blob {layer.blobs[1].shape} does not match ({n_out},)")
            specs.append(
                {"kind": "dense", "name": layer.name, "units": n_out, "kernel": wt.T, "bias": bias,
                 "use_bias": p["bias_term"]}
            )
            shape, nonnegative = (n_out,), False
        elif layer.type == "ReLU":
            if p["negative_slope"] != 0.0:
                raise ValueError(
                    f"Caffe layer {layer.name!r}: leaky ReLU (negative_slope={p['negative_slope']}) is not supported"
                )
            last = specs[-1] if specs else None
            if last is not None and last["kind"] in ("conv", "dense") and last.get("activation") is None:
                last["activation"] = "relu"
            else:
                specs.append({"kind": "relu", "name": layer.name})
            nonnegative = True
        elif layer.type == "Dropout":
            if not p.get("scale_train", True):
                raise ValueError(f"Caffe layer {layer.name!r}: dropout with scale_train: false scales at test time")
            continue  # identity at inference
        elif layer.type == "Softmax":
            if len(shape) != 1 or p["axis"] not in (1, -1):
                raise ValueError(f"Caffe layer {layer.name!r}: only a softmax over a flat vector is supported")
            finished = True
            if not softmax:
                continue
            last = specs[-1]
            if last["kind"] == "dense" and last.get("activation") is None:
                last["activation"] = "softmax"
            else:
                specs.append({"kind": "softmax", "name": layer.name})
    if not any(s["kind"] in ("conv", "dense") for s in specs):
        raise ValueError("the Caffe network has no Convolution or InnerProduct layer")
    return specs


def caffe_to_keras(prototxt, caffemodel, *, input_shape=None, softmax: bool = True, dtype=None, name=None):
    """Build a channel-last Keras model equal to the Caffe net (``deploy.prototxt`` + ``.caffemodel``).

    ``input_shape`` (Caffe's order (C, H, W)) overrides the prototxt's.  The Keras input is
    (H, W, C), in the channel order the Caffe net was trained with (BGR for Caffe's ImageNet
    and Places models).  ReLUs directly after a convolution/inner product become that layer's
    activation; a final Softmax becomes the last Dense layer's activation (or is dropped with
    ``softmax=False``).  ``dtype`` (e.g. ``"float64"``) sets every layer's dtype.

    Caffe computes pooled sizes with ceil rounding.  Where Keras's floor rounding gives the
    same size the pooling is a plain ``valid`` MaxPooling2D; where TensorFlow's ``same``
    padding matches Caffe's windows it is used; otherwise max pooling gets an explicit
    ZeroPadding2D, which is exact because its input is non-negative (after a ReLU) and every
    Caffe window holds at least one real value.  Cases that cannot be reproduced exactly are
    refused with a :class:`ValueError`.
    """
    import keras

    net = read_caffe_net(prototxt, caffemodel)
    shape = tuple(input_shape) if input_shape is not None else net.input_shape
    specs = _plan(net, shape, softmax)
    c, h, w = shape
    kw = {"dtype": dtype} if dtype is not None else {}
    used: set = set()
    inputs = keras.Input(shape=(h, w, c), name=_keras_name(net.input_name or "data", used), **kw)
    x = inputs
    weighted = []
    for spec in specs:
        kind = spec["kind"]
        lname = _keras_name(spec["name"], used)
        if kind == "pad":
            layer = keras.layers.ZeroPadding2D(spec["padding"], name=lname, **kw)
        elif kind == "conv":
            layer = keras.layers.Conv2D(
                spec["filters"], spec["kernel_size"], strides=spec["strides"], padding=spec["padding"],
                dilation_rate=spec["dilation_rate"], use_bias=spec["use_bias"],
                activation=spec.get("activation"), name=lname, **kw,
            )
            weighted.append((layer, spec))
        elif kind == "maxpool":
            layer = keras.layers.MaxPooling2D(spec["pool_size"], strides=spec["strides"], padding=spec["padding"],
                                              name=lname, **kw)
        elif kind == "avgpool":
            layer = keras.layers.AveragePooling2D(spec["pool_size"], strides=spec["strides"], padding=spec["padding"],
                                                  name=lname, **kw)
        elif kind == "flatten":
            layer = keras.layers.Flatten(name=lname, **kw)
        elif kind == "dense":
            layer = keras.layers.Dense(spec["units"], use_bias=spec["use_bias"], activation=spec.get("activation"),
                                       name=lname, **kw)
            weighted.append((layer, spec))
        elif kind == "relu":
            layer = keras.layers.ReLU(name=lname, **kw)
        elif kind == "softmax":
            layer = keras.layers.Softmax(name=lname, **kw)
        else:  # pragma: no cover - _plan only emits the kinds above
            raise AssertionError(kind)
        x = layer(x)
    model = keras.Model(inputs, x, name=_keras_name(name or net.name or "caffe_net", set()))
    for layer, spec in weighted:
        values = [spec["kernel"]] + ([spec["bias"]] if spec["use_bias"] else [])
        layer.set_weights([np.asarray(v, dtype=layer.kernel.dtype) for v in values])
    return model


def main_caffe2keras(prototxt, caffemodel, out_path, **kwargs) -> str:
    """Convert a Caffe net to Keras and save it as ``out_path`` (a ``.keras`` file, written atomically)."""
    out_path = os.fspath(out_path)
    if not out_path.endswith(".keras"):
        raise ValueError(f"the output file must end in .keras, not {out_path!r}")
    model = caffe_to_keras(prototxt, caffemodel, **kwargs)
    from ...serialize import atomic

    with atomic(out_path) as tmp:
        model.save(tmp)
    return out_path
