"""Checks at the doors: arrays and saved networks are checked where they enter, once.

The mapping is exact only for finite inputs of the model's shape inside the declared input
range [p, q] (an input below p codes a spike after t_max^(0), one above q a spike before 0,
and either leaves the regime in which t = t_max − ReLU(W x + b) holds), and only for networks
whose arrays fit together.  A value outside that domain does not crash anything downstream:
it gives finite logits that look exact and are not.  So the door refuses it, in one line
that names the file (or argument), the array and the first bad index.

* :func:`check_inputs` — inputs of :func:`exactsnn.simulate`, the X_n sample of
  :func:`exactsnn.preprocess.preprocess` / :func:`exactsnn.convert`, the CLI's arrays;
* :func:`check_preprocessed`, :func:`check_spiking` — a network just read by
  :func:`exactsnn.serialize.load` (through the classes' ``check_loaded``).

This module imports nothing from the package: the data objects and the simulator import it,
and the classes it checks are handed to it, so no import circle forms.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

__all__ = ["InputError", "ClippedInputsWarning", "NetworkFileError", "check_inputs", "check_simulation",
           "check_preprocessed", "check_spiking"]

# Rows per block when scanning a large input array, so that the boolean masks of a 10,000-image
# ImageNet part never need gigabytes next to the images themselves.
_BLOCK_ELEMENTS = 1 << 22


class InputError(ValueError):
    """An input array the mapping cannot take (non-finite, wrong shape, outside [p, q])."""


class NetworkFileError(ValueError):
    """A saved network whose arrays do not make a consistent network."""


class ClippedInputsWarning(UserWarning):
    """Inputs outside [p, q] were clipped because the caller asked for it (``clip_inputs``)."""


def _first_index(mask: np.ndarray, offset: int) -> tuple:
    idx = tuple(int(i) for i in np.argwhere(mask)[0])
    return (idx[0] + offset,) + idx[1:]


def _blocks(x: np.ndarray):
    rows = max(1, _BLOCK_ELEMENTS // max(1, int(np.prod(x.shape[1:]))))
    for start in range(0, len(x), rows):
        yield start, x[start : start + rows]


def _count(n: int) -> str:
    return "1 value is" if n == 1 else f"{n} values are"


def _fmt(v: float) -> str:
    return f"{v:g}"


def check_inputs(x, shape, input_range, *, what: str = "inputs", clip: bool = False,
                 allow_outside: bool = False):
    """Return ``x`` (as an array) after checking it is fit for the exact mapping.

    Refused with :class:`InputError`, in one line naming ``what``: a non-numeric dtype, a
    shape other than (N, *shape), NaN or ±inf (count and first index), and values outside
    ``input_range`` = [p, q] (count, the range, the extremes and the first index).  With
    ``clip`` the out-of-range values are clipped to [p, q] instead (a copy), and a
    :class:`ClippedInputsWarning` reports how many: the result is then exact for the clipped
    inputs, which is what the caller asked for.  With ``allow_outside`` they pass as they are:
    for studying the α-model outside its exact regime (an input spike before 0 or after
    t_max^(0)), where the simulator follows the neurons and counts the spikes that deviate.
    """
    x = np.asarray(x)
    shape = tuple(int(s) for s in shape)
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise InputError(f"{what}: must be a numeric array, got dtype {x.dtype}")
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise InputError(f"{what}: arrays of shape (N, {', '.join(map(str, shape))}) expected, got {x.shape}")
    p, q = (float(v) for v in input_range)
    if not (math.isfinite(p) and math.isfinite(q) and p < q):
        raise InputError(f"input range [{_fmt(p)}, {_fmt(q)}] must be finite with p < q")
    bad = first_bad = 0
    outside = first_outside = 0
    lo, hi = math.inf, -math.inf
    for start, block in _blocks(x):
        if np.issubdtype(block.dtype, np.floating):
            nonfinite = ~np.isfinite(block)
            n = int(nonfinite.sum())
            if n:
                if not bad:
                    first_bad = _first_index(nonfinite, start)
                bad += n
                continue
        out = (block < p) | (block > q)
        n = int(out.sum())
        if n:
            if not outside:
                first_outside = _first_index(out, start)
            outside += n
            lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    if bad:
        raise InputError(f"{what}: {_count(bad)} NaN or infinite, the first at index {first_bad}")
    if outside and allow_outside and not clip:
        return x
    if outside and not clip:
        raise InputError(
            f"{what}: {_count(outside)} outside the input range [{_fmt(p)}, {_fmt(q)}] "
            f"(min {_fmt(lo)}, max {_fmt(hi)}), the first at index {first_outside}; "
            "clip them with clip_inputs=True (--clip-inputs) or declare the range they come from"
        )
    if outside:
        warnings.warn(
            f"{what}: {outside} values outside the input range [{_fmt(p)}, {_fmt(q)}] were clipped to it",
            ClippedInputsWarning, stacklevel=3,
        )
        return np.clip(x, p, q)
    return x


def check_simulation(net, x, *, clip: bool = False, allow_outside: bool = False, noise_sigma: float = 0.0,
                     what: str = "inputs"):
    """The door of :func:`exactsnn.simulate`: its settings and :func:`check_inputs` on ``x``.

    A negative σ would be drawn as |σ| by NumPy but reported under its negative label, so it
    is refused here rather than quietly taken as something else.
    """
    if not (isinstance(noise_sigma, (int, float, np.floating, np.integer)) and noise_sigma >= 0
            and math.isfinite(noise_sigma)):
        raise ValueError(f"noise_sigma must be a finite number >= 0, got {noise_sigma!r}")
    return check_inputs(x, net.input_shape, net.input_range, what=what, clip=clip, allow_outside=allow_outside)


# ------------------------------------------------------------------------------------ networks


_ARRAY_FIELDS = ("weight", "bias", "threshold", "alpha", "X", "sign")


def _fail(path, key: str, reason: str):
    # Arrays are named as stored in the archive; other fields live in its JSON description.
    what = "array" if key.rsplit("/", 1)[-1] in _ARRAY_FIELDS else "entry"
    raise NetworkFileError(f"{path}: {what} {key!r} {reason}")


def _finite(path, key: str, a: np.ndarray) -> None:
    if not np.issubdtype(a.dtype, np.number):
        _fail(path, key, f"has dtype {a.dtype}, not a number")
    if not np.all(np.isfinite(a)):
        _fail(path, key, f"has {int((~np.isfinite(a)).sum())} NaN or infinite values")


def _check_affine(path, key: str, layer, in_shape: tuple) -> None:
    """One synapse group: its geometry reads the shape its source gives, arrays finite."""
    _finite(path, f"{key}/weight", layer.weight)
    _finite(path, f"{key}/bias", layer.bias)
    if layer.input_shape != tuple(in_shape):
        _fail(path, f"{key}/input_shape", f"is {layer.input_shape}, but its source gives {tuple(in_shape)}")
    fault = layer.fault(in_shape)  # what only its kind knows (:mod:`exactsnn.synapses`)
    if fault is not None:
        _fail(path, f"{key}/{fault[0]}", fault[1])


def _pooled(path, key: str, pools, shape: tuple) -> tuple:
    for i, pool in enumerate(pools):
        k = f"{key}/pools/{i}"
        if len(shape) != 3:
            _fail(path, k, f"is a 2-D pool on an output of shape {shape}")
        if len(pool.size) != 2 or len(pool.strides) != 2 or min(pool.size + pool.strides) < 1:
            _fail(path, k,
                  f"has size {pool.size} and strides {pool.strides}, expected 2 positive integers each")
        if (not isinstance(pool.padding, str) or pool.padding not in ("valid", "same")
                or len(pool.pads) != 4 or min(pool.pads) < 0):
            _fail(path, k, f"has padding {pool.padding!r} with pads {pool.pads}")
        if pool.sign.shape != (shape[-1],):
            _fail(path, f"{k}/sign", f"has shape {pool.sign.shape}, expected ({shape[-1]},) for the channels")
        shape = tuple(pool.output_shape(shape))
        if min(shape) < 1:
            _fail(path, k, f"leaves an empty output {shape}")
    return shape


def _check_layers(path, input_shape: tuple, input_pools, layers, Synapses, prefix: str = "root") -> dict:
    """The layer chain of a preprocessed or spiking network; returns {index: pooled shape}."""
    shapes = {-1: _pooled(path, f"{prefix}/input_pools", input_pools, tuple(input_shape))}
    if not layers:
        _fail(path, f"{prefix}/layers", "is empty: a network needs at least its read-out layer")
    for k, layer in enumerate(layers):
        key = f"{prefix}/layers/{k}"
        if not isinstance(layer, Synapses):
            _fail(path, key, f"holds a {type(layer).__name__}, not a layer")
        if not isinstance(layer.name, str):
            _fail(path, f"{key}/name", f"is {layer.name!r}, not a string")
        if layer.relu != (k < len(layers) - 1):
            _fail(path, f"{key}/relu", "must be true for every hidden layer and false for the read-out, the last")
        for j, group in enumerate(layer.groups):
            gkey = key if j == 0 else f"{key}/skips/{j - 1}"
            if not isinstance(group, Synapses):
                _fail(path, gkey, f"holds a {type(group).__name__}, not a synapse group")
            if not -1 <= group.source < k:
                _fail(path, f"{gkey}/source", f"is {group.source}, not one of the earlier layers (-1 ... {k - 1})")
            _check_affine(path, gkey, group, shapes[group.source])
            if j and group.output_shape != layer.output_shape:
                _fail(path, gkey, f"gives shape {group.output_shape}, the layer's neurons are {layer.output_shape}")
        if not layer.relu and layer.pools:
            _fail(path, f"{key}/pools", "the read-out cannot be pooled")
        shapes[k] = _pooled(path, key, layer.pools, layer.output_shape)
    return shapes


def _range_and_X(path, obj, hidden: int, may_lack_X: bool = False) -> None:
    p, q = obj.input_range
    if len(obj.input_range) != 2 or not (math.isfinite(p) and math.isfinite(q) and p < q):
        _fail(path, "root/input_range", f"is {obj.input_range}, expected finite p < q")
    if obj.X.shape != (hidden,) and not (obj.X.size == 0 and may_lack_X):
        _fail(path, "root/X", f"has shape {obj.X.shape}, expected ({hidden},): one X_n per hidden layer")
    _finite(path, "root/X", obj.X)
    if np.any(obj.X < 0):
        _fail(path, "root/X", "has negative entries (X_n is the largest ReLU output, >= 0)")


def check_preprocessed(net, path, Synapses) -> None:
    """Refuse, with :class:`NetworkFileError` naming ``path`` and the array, a preprocessed
    network whose layers do not fit together: every layer reads the shape its source gives,
    hidden layers then the read-out, weights and biases finite, one X_n per hidden layer (or
    none yet).  ``Synapses`` is the layers' base class (handed in: no import circle)."""
    _check_layers(path, net.input_shape, net.input_pools, net.layers, Synapses)
    _range_and_X(path, net, sum(1 for l in net.layers if l.relu), may_lack_X=True)


def check_spiking(obj, path, Synapses, SpikingLayer) -> None:
    """Refuse, with :class:`NetworkFileError` naming ``path`` and the array, a spiking network
    whose parts do not fit together.

    Checked: the layers as in :func:`check_preprocessed`; thresholds and α of the neurons'
    shape and finite (the read-out's threshold is NaN by definition); windows ordered
    t_start ≤ t_min ≤ t_max and chained; one delay per skip group; one X_n per hidden layer;
    ζ > −1.
    """
    if not obj.layers:
        _fail(path, "root/layers", "is empty: a network needs at least its read-out layer")
    for k, sl in enumerate(obj.layers):
        if not isinstance(sl, SpikingLayer):
            _fail(path, f"root/layers/{k}", f"holds a {type(sl).__name__}, not a spiking layer")
    _check_layers(path, obj.input_shape, obj.input_pools, [sl.layer for sl in obj.layers], Synapses)
    _range_and_X(path, obj, len(obj.layers) - 1)
    if not (isinstance(obj.zeta, (int, float)) and obj.zeta > -1 and math.isfinite(obj.zeta)):
        _fail(path, "root/zeta", f"is {obj.zeta!r}, expected a number > -1")
    previous_min = 0.0
    for k, sl in enumerate(obj.layers):
        key = f"root/layers/{k}"
        shape = sl.layer.output_shape
        for name in ("threshold", "alpha"):
            a = np.asarray(getattr(sl, name))
            if a.shape != shape:
                _fail(path, f"{key}/{name}", f"has shape {a.shape}, the layer's neurons are {shape}")
            if name == "alpha" or sl.hidden:
                _finite(path, f"{key}/{name}", a)
        times = (sl.t_start, sl.t_min, sl.t_max)
        if not all(isinstance(t, (int, float)) and math.isfinite(t) for t in times) or not (
            sl.t_start <= sl.t_min <= sl.t_max
        ):
            _fail(path, f"{key}/t_min", f"window (t_start, t_min, t_max) = {times} must be finite and ordered")
        if k and not math.isclose(sl.t_start, previous_min, rel_tol=1e-12, abs_tol=1e-12):
            _fail(path, f"{key}/t_start", f"is {sl.t_start}, but the layer before starts firing at {previous_min}")
        previous_min = sl.t_min
        if len(sl.delays) != len(sl.layer.skips) or not all(
            isinstance(d, (int, float)) and math.isfinite(d) and d >= 0 for d in sl.delays
        ):
            _fail(path, f"{key}/delays", f"{sl.delays!r}: one finite delay >= 0 per skip group ({len(sl.layer.skips)})")
