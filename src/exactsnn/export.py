"""Export a converted network for other tools: a documented HDF5 layout.

:func:`save_hdf5` writes a :class:`~exactsnn.spiking.SpikingNetwork` to HDF5 (h5py) and
:func:`load_hdf5` reads it back; the round trip is exact (float64 throughout), so the loaded
network gives identical spike times and logits.  The file is meant to be read without
exactsnn: everything a simulator needs (synaptic weights, thresholds, α, time windows,
neuron model, geometry, layer graph) is stored explicitly.

Time is in units of the synaptic time constant τ_c (1 unit; the input window is [0, 1]).

Layout (format ``exactsnn-snn``, ``format_version`` 1)::

    /                       attrs: format = "exactsnn-snn", format_version = 1,
                                   exactsnn_version, neuron ("alpha" | "b1"),
                                   input_shape (int[]), input_range (p, q), zeta,
                                   alpha_sigma, alpha_seed, n_layers, latency (= t_min^(L))
    /X                      float64 (hidden layers,): X_n, the largest ReLU output per hidden layer
    /input_pools/<k>/       pools applied to the input spike times (see "pool" below)
    /layers/<i>/            i = 0 … n_layers−1 in topological order; the last is the read-out
        attrs: name, kind ("dense" | "conv"), role ("hidden" | "readout"),
               t_start (= t_min^(n-1)), t_min, t_max (read-out: t_max = t_min = t_min^(L)),
               input_shape, output_shape, source (index of the layer read; −1 = the input),
               strides, dilation, pads (top, bottom, left, right), used (rows, cols),
               synaptic_weights ("J" or "W": the dataset the neurons' synapses apply)
        W          float64: the scaled ReLU weights; dense (n_in, n_out) acting on the
                   C-order flattened input, conv (kh, kw, c_in, c_out) acting on the input
                   cropped to ``used`` rows/cols and zero padded by ``pads``, then a
                   ``valid`` cross-correlation with ``strides`` and ``dilation``
        J          float64 (hidden layers of a model whose synapses carry J, the α-model):
                   J = W / (1 − Σ_j W_ij), α = 1 (the sum runs over the whole receptive field,
                   padded taps and skips included)
        bias       float64, output_shape: b (a per-position map for conv layers)
        threshold  float64, output_shape (hidden layers): ϑ
        alpha      float64, output_shape: α (read-out: b / (t_min^(L) − t_start))
        pools/<k>/ pools applied, in order, to the layer's spike times before its targets read them
        skips/<g>/ further synapse groups of the same neurons reading an earlier layer
                   (residual connections): attrs name, kind, source, input_shape, strides,
                   dilation, pads, used, relu, delay; datasets W, J (as the layer's), bias
                   (zero: the neurons' bias is the layer's)
    pool: attrs size (2), strides (2), padding ("same" | "valid"), pads (4); dataset
          sign (C,): +1 the earliest spike of the window (max of values), −1 the latest
          (min of values: a negative batch-norm scale folded through the pool);
          ``pads`` are explicit zero-valued inputs (spikes at the layer's t_max), while
          "same" padding ignores out-of-range positions
    /graph/edges        int64 (E, 2): (source layer, target layer), −1 = the input; one row
                        per synapse group (the main group first, then the skips)
    /graph/edge_delay   float64 (E,): axonal delay of the group's spikes
                        (t_min^(target) − t_max^(source); 0 for the main group)
    /graph/edge_group   int64 (E,): 0 for the main group, g + 1 for skips/<g>

The neurons (DESIGN §2; windows [t_min^(n), t_max^(n)] per layer, t_start = t_min^(n-1);
u⁺ = max(u, 0)):

* ``neuron = "alpha"``: V_i(t) = α_i (t − t_start)⁺ + Σ_j J_ij (t − t_j)⁺, i.e.
  dV_i/dt = α_i H(t − t_start) + Σ_j J_ij H(t − t_j) from V = 0 before the first event (the α
  onset or an input).  Every input counts from its own arrival t_j, also one that arrives
  before t_start (a neuron of the layer before that fired early, outside the exact regime);
  nothing clamps an input time to a window.  The neuron fires once, at the first t where
  V_i(t) = ϑ_i (at its first event if ϑ_i ≤ 0), and at t_max at the latest; that may be
  before its last input.  A padded conv tap is an input spike at the layer's t_min.
* ``neuron = "b1"``: during [t_start, t_min) dV_i/dt = Σ_j W_ij H(t − t_j) (an input before
  t_start counts from t_start, one after t_min adds nothing) and the neuron cannot fire;
  from t_min on dV_i/dt = α_i; it fires once when V ≥ ϑ_i (at once at t_min if V ≥ ϑ_i
  already) and stays silent if that is not before t_max.  Silence codes 0.
* read-out: no spikes; the logits are its potential at t_min^(L), with weights W:
  α-model α (t_min^(L) − t_start) + Σ_j W_ij (t_min^(L) − t_j)⁺ over the raw input times
  (the integral of α H(t − t_start) + Σ_j W_ij H(t − t_j)); B1
  b + Σ_j W_ij (t_min^(L) − min(max(t_j, t_start), t_min^(L))).

Inputs x in [p, q] spike at t = 1 − (x − p)/(q − p) (B1: no spike where t = 1).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .neurons import neuron_model
from .spiking import SpikingLayer, SpikingNetwork
from .synapses import KINDS, SAVED_GEOMETRY, Pool, Synapses

FORMAT = "exactsnn-snn"
FORMAT_VERSION = 1

_LAYER_GEOMETRY = ("strides", "dilation", "pads", "used")


def _is_default(f: dataclasses.Field, value) -> bool:
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        return False
    if isinstance(value, np.ndarray) or isinstance(default, np.ndarray):
        return bool(np.array_equal(value, default))
    try:
        return bool(value == default)
    except Exception:  # noqa: BLE001 - an exotic value is not a default
        return False


def _check_fields(obj, known: set[str]) -> None:
    """Refuse to drop silently a field this layout does not know (an object of a newer exactsnn)."""
    for f in dataclasses.fields(obj):
        if f.name not in known and f.init and not _is_default(f, getattr(obj, f.name)):
            raise ValueError(
                f"{type(obj).__name__}.{f.name} = {getattr(obj, f.name)!r} has no place in HDF5 format "
                f"version {FORMAT_VERSION}"
            )


def _write_pool(group, pool: Pool) -> None:
    _check_fields(pool, {"size", "strides", "padding", "sign", "pads"})
    group.attrs["size"] = np.asarray(pool.size, np.int64)
    group.attrs["strides"] = np.asarray(pool.strides, np.int64)
    group.attrs["padding"] = pool.padding
    group.attrs["pads"] = np.asarray(getattr(pool, "pads", (0, 0, 0, 0)), np.int64)
    group.create_dataset("sign", data=np.asarray(pool.sign, np.float64))


def _read_pool(group) -> Pool:
    kw = dict(
        size=tuple(int(v) for v in group.attrs["size"]),
        strides=tuple(int(v) for v in group.attrs["strides"]),
        padding=str(group.attrs["padding"]),
        sign=np.asarray(group["sign"][()], np.float64),
    )
    pads = tuple(int(v) for v in group.attrs.get("pads", (0, 0, 0, 0)))
    if "pads" in {f.name for f in dataclasses.fields(Pool)}:
        kw["pads"] = pads
    elif any(pads):
        raise ValueError("this exactsnn has no explicitly padded pools; the file needs a newer version")
    return Pool(**kw)


def _write_pools(parent, name: str, pools: list) -> None:
    group = parent.create_group(name)
    for k, pool in enumerate(pools):
        _write_pool(group.create_group(str(k)), pool)


def _read_pools(parent, name: str) -> list:
    if name not in parent:
        return []
    group = parent[name]
    return [_read_pool(group[str(k)]) for k in range(len(group))]


def _skips(layer: Synapses) -> list:
    return list(getattr(layer, "skips", []) or [])


def _write_geometry(group, layer: Synapses) -> None:
    group.attrs["name"] = layer.name
    group.attrs["kind"] = layer.kind
    group.attrs["input_shape"] = np.asarray(layer.input_shape, np.int64)
    group.attrs["source"] = int(getattr(layer, "source", -1))
    for name in _LAYER_GEOMETRY:  # a dense group has none of its own: written as a convolution's defaults
        group.attrs[name] = np.asarray(getattr(layer, name, SAVED_GEOMETRY[name]), np.int64)


def _geometry(group) -> tuple[type, dict]:
    """The synapse class of a layer group (by its ``kind``) and the geometry it takes."""
    kind = str(group.attrs["kind"])
    if kind not in KINDS:
        raise ValueError(f"{group.name}: unknown layer kind {kind!r}")
    cls = KINDS[kind]
    kw = dict(name=str(group.attrs["name"]), input_shape=tuple(int(v) for v in group.attrs["input_shape"]))
    names = {f.name for f in dataclasses.fields(cls)}
    for name in _LAYER_GEOMETRY:
        if name in names:
            kw[name] = tuple(int(v) for v in group.attrs[name])
    return cls, kw


_AFFINE_KNOWN = {"name", "kind", "weight", "bias", "input_shape", "relu", "pools", "source", "skips", *_LAYER_GEOMETRY}


def _group_delays(sl: SpikingLayer) -> list[float]:
    """Delay of each synapse group of the layer (0 for the main group, then the skips)."""
    skips = _skips(sl.layer)
    delays = [float(d) for d in sl.group_delays()] if hasattr(sl, "group_delays") else [0.0]
    if len(delays) != 1 + len(skips):
        raise ValueError(f"{sl.layer.name}: {len(skips)} skip groups but {len(delays) - 1} delays")
    return delays


def save_hdf5(net: SpikingNetwork, path) -> None:
    """Write ``net`` to ``path`` in the layout of the module docstring (atomically)."""
    import h5py

    from . import __version__
    from .serialize import atomic

    _check_fields(net, {"input_shape", "input_range", "input_pools", "layers", "X", "zeta", "alpha_sigma", "alpha_seed", "neuron"})
    model = net.model
    with atomic(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["exactsnn_version"] = __version__
        f.attrs["neuron"] = model.name
        f.attrs["input_shape"] = np.asarray(net.input_shape, np.int64)
        f.attrs["input_range"] = np.asarray(net.input_range, np.float64)
        f.attrs["zeta"] = float(net.zeta)
        f.attrs["alpha_sigma"] = float(net.alpha_sigma)
        f.attrs["alpha_seed"] = int(net.alpha_seed)
        f.attrs["n_layers"] = len(net.layers)
        f.attrs["latency"] = float(net.latency)
        f.create_dataset("X", data=np.asarray(net.X, np.float64))
        _write_pools(f, "input_pools", net.input_pools)
        layers = f.create_group("layers")
        edges, delays, kinds = [], [], []
        for i, sl in enumerate(net.layers):
            _check_fields(sl, {"layer", "t_start", "t_min", "t_max", "threshold", "alpha", "delays"})
            layer = sl.layer.explicit()  # the file knows dense and convolution groups only
            _check_fields(layer, _AFFINE_KNOWN)
            g = layers.create_group(str(i))
            _write_geometry(g, layer)
            g.attrs["role"] = "hidden" if sl.hidden else "readout"
            g.attrs["relu"] = bool(layer.relu)
            g.attrs["output_shape"] = np.asarray(layer.output_shape, np.int64)
            g.attrs["t_start"] = float(sl.t_start)
            g.attrs["t_min"] = float(sl.t_min)
            g.attrs["t_max"] = float(sl.t_max)
            # The read-out's synapses carry W in every model; hidden ones the model's weights.
            synapse = model.synapse if sl.hidden else "W"
            g.attrs["synaptic_weights"] = synapse
            g.create_dataset("W", data=layer.weight)
            if synapse != "W":
                g.create_dataset(synapse, data=model.synaptic_weights(layer.weight, layer.weight_sum))
            g.create_dataset("bias", data=layer.bias)
            if sl.hidden:
                g.create_dataset("threshold", data=np.asarray(sl.threshold, np.float64))
            g.create_dataset("alpha", data=np.asarray(sl.alpha, np.float64))
            _write_pools(g, "pools", layer.pools)
            group_delays = _group_delays(sl)
            edges.append((int(getattr(layer, "source", i - 1)), i))
            delays.append(group_delays[0])
            kinds.append(0)
            skips = g.create_group("skips")
            for k, skip in enumerate(_skips(layer)):
                _check_fields(skip, _AFFINE_KNOWN)
                if skip.pools or _skips(skip):
                    raise ValueError(f"{layer.name}: a skip group with pools or skips of its own")
                s = skips.create_group(str(k))
                _write_geometry(s, skip)
                delay = group_delays[k + 1]
                s.attrs["delay"] = delay
                s.attrs["relu"] = bool(skip.relu)
                s.create_dataset("W", data=skip.weight)
                s.create_dataset("bias", data=skip.bias)
                if synapse != "W":
                    s.create_dataset(synapse, data=model.synaptic_weights(skip.weight, layer.weight_sum))
                edges.append((int(skip.source), i))
                delays.append(delay)
                kinds.append(k + 1)
        graph = f.create_group("graph")
        graph.create_dataset("edges", data=np.asarray(edges, np.int64).reshape(-1, 2))
        graph.create_dataset("edge_delay", data=np.asarray(delays, np.float64))
        graph.create_dataset("edge_group", data=np.asarray(kinds, np.int64))


def _affine(group, bias, relu: bool, pools: list, skips: list) -> Synapses:
    cls, kw = _geometry(group)
    kw["source"] = int(group.attrs.get("source", -1))
    return cls(weight=np.asarray(group["W"][()], np.float64), bias=bias, relu=relu, pools=pools, skips=skips, **kw)


def load_hdf5(path) -> SpikingNetwork:
    """Read a network written by :func:`save_hdf5`."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path}: not an {FORMAT} HDF5 file")
        version = int(f.attrs["format_version"])
        if version > FORMAT_VERSION:
            raise ValueError(f"{path}: format version {version} is newer than this exactsnn reads ({FORMAT_VERSION})")
        layers = []
        for i in range(int(f.attrs["n_layers"])):
            g = f["layers"][str(i)]
            skips, delays = [], []
            for k in range(len(g["skips"])) if "skips" in g else []:
                s = g["skips"][str(k)]
                skips.append(_affine(s, np.asarray(s["bias"][()], np.float64), bool(s.attrs["relu"]), [], []))
                delays.append(float(s.attrs["delay"]))
            hidden = str(g.attrs["role"]) == "hidden"
            layer = _affine(g, np.asarray(g["bias"][()], np.float64), bool(g.attrs["relu"]), _read_pools(g, "pools"), skips)
            threshold = np.asarray(g["threshold"][()], np.float64) if hidden else np.full(layer.output_shape, np.nan)
            extra = {"delays": delays} if "delays" in {fl.name for fl in dataclasses.fields(SpikingLayer)} else {}
            layers.append(SpikingLayer(
                layer, float(g.attrs["t_start"]), float(g.attrs["t_min"]), float(g.attrs["t_max"]),
                threshold, np.asarray(g["alpha"][()], np.float64), **extra,
            ))
        kw = dict(
            input_shape=tuple(int(v) for v in f.attrs["input_shape"]),
            input_range=tuple(float(v) for v in f.attrs["input_range"]),
            input_pools=_read_pools(f, "input_pools"),
            layers=layers,
            X=np.asarray(f["X"][()], np.float64),
            zeta=float(f.attrs["zeta"]),
            alpha_sigma=float(f.attrs["alpha_sigma"]),
            alpha_seed=int(f.attrs["alpha_seed"]),
        )
        neuron = str(f.attrs["neuron"])
    try:
        neuron_model(neuron)
    except ValueError as err:  # a model this exactsnn does not know
        raise ValueError(f"{path}: {err}; the file may need a newer exactsnn") from None
    return SpikingNetwork(**kw, neuron=neuron)

