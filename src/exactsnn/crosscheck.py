"""An independent witness: the converted network run in Brian2, compared with :func:`simulate`.

Brian2 (https://briansimulator.org) is an SNN simulator nobody here wrote.  We give it the
neurons of DESIGN §2 as plain equations, explicit synapses and spike generators, run it with
its NumPy code-generation target and compare its spike times, logits and predictions with
:func:`exactsnn.simulate.simulate`.

The Brian2 network, per sample (samples are independent copies of the network, simulated
side by side in one run; one model time unit = 1 ms):

* **inputs** — a ``SpikeGeneratorGroup`` firing at the input spike times
  t = 1 − (x − p)/(q − p), one generator neuron per input value (B1: none for t = 1);
* **padded taps** of a convolution (α-model) — one more generator neuron per layer that fires
  at that layer's t_min^(n) (the spike that codes 0), with one synapse per target neuron whose
  weight is the sum of J over the neuron's padded taps (in B1 a padded tap is silence);
* **hidden layer n, α-model** — a ``NeuronGroup`` with ``dv/dt = (α H(t − t_min^(n-1)) + I)/ms``
  where the current ``I`` steps by J_ij at every input spike (``Synapses`` with
  ``on_pre: I_post += w``, explicit weights; convolutions are expanded to one synapse per
  kernel tap); it fires when ``v ≥ ϑ`` or, at the latest, at t_max^(n), and never again (a
  flag, set by the reset);
* **hidden layer n, B1** — ``dv/dt = (I H(t_min^(n) − t) + α H(t − t_min^(n)))/ms`` with
  ``I`` stepping by W_ij; it may fire (once) in [t_min^(n), t_max^(n)) when ``v ≥ ϑ``;
* **residual connections** — a layer's further synapse groups read earlier layers through
  synapses with the group's delay;
* **max pooling** — a group that fires at the first spike of its window (sign > 0) or when
  all spikes of its window have arrived, i.e. at the last one (sign < 0, a negative
  batch-norm scale folded through the pool); explicit zero pads are generator spikes at
  t_max.  Its threshold runs in the synapses slot, between the synapses that feed it and
  those that leave it, so it adds no delay;
* **read-out** — the integrator without threshold, synapses with weights W, and
  α = b / (t_min^(L) − t_min^(L-1)) (B1: α = 0 and b added at the end); its potential at
  t_min^(L) is the logit.

**Time is discrete in Brian2**, and that is the only approximation.  The potential is
integrated exactly: the input current is constant between grid points and the Euler step of
a constant slope is exact; the off-grid switches (the α current's onset at t_min^(n-1), B1's
switch at t_min^(n)) are integrated as the fraction of the step after them.  But input spikes
sit on the grid (rounded to the nearest point, as are delays) and the threshold is tested on
the grid: a spike whose potential reaches ϑ during the step (k dt, (k+1) dt] is emitted by
Brian2 in step k and acts on its targets from (k+1) dt on; we report (k+1) dt, so every
Brian2 spike is in [t*, t* + dt) where t* is the exact crossing *for Brian2's own inputs*.
Where the closed form holds (the crossing comes after the neuron's last input), a spike
codes x = ReLU(W x_in + b) of its inputs, so the error is a propagation of grid errors
through the ReLU network:

* :func:`error_bounds` (a priori, per layer): e_input = dt/2, e_n ≤ dt + ‖W_n‖ e_{n-1} with
  ‖W_n‖ = max_i Σ_j |W_ij| (α = 1; scaled weights, padded taps and skips included), because
  t_i = t_max − (W x + b)_i moves by Σ_j W_ij δ_j when the inputs move by δ_j; ReLU, the
  clip at t_max and max pooling are 1-Lipschitz.  The logits move by ≤ ‖W_L‖ e_{L-1}.  Valid
  for every input, but it grows like the product of the norms: loose for deep networks.
* :func:`interval_bounds` (a posteriori, per neuron and sample): the same argument carried
  out with interval arithmetic on the sample's values, input x ± dt/2, Brian2's value in
  [ReLU(z_lo) − dt, ReLU(z_hi)].  A neuron clipped at 0 passes no error on, so this bound is
  10–100× tighter; the cross-check requires *every* spike time and logit to be within it,
  and calls a differing prediction unexplained only if the logit intervals rule out a tie.

Measured on the default digits networks (see the README): max |Δt| ≈ 1–60 dt, shrinking
linearly with dt.

Brian2 is an optional dependency (``pip install 'exactsnn[crosscheck]'``): Brian2 2.9.0 is
the last release for Python 3.11 and needs NumPy < 2.4 (it reads ``ndarray.ptp``, removed in
NumPy 2.4, when it is imported).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import ops
from .spiking import SpikingLayer, SpikingNetwork

_TIME_UNIT = "ms"  # one model time unit


def _import_brian2():
    import sys

    hook = sys.excepthook
    try:
        import brian2
    except AttributeError as err:  # Brian2 ≤ 2.9 on NumPy ≥ 2.4
        raise ImportError(
            f"Brian2 cannot be imported with NumPy {np.__version__} ({err}); Brian2 2.9.0 (Python 3.11) "
            "needs numpy<2.4: pip install 'exactsnn[crosscheck]'"
        ) from err
    except ImportError as err:
        raise ImportError("the cross-check needs Brian2: pip install 'exactsnn[crosscheck]'") from err
    finally:
        # Brian2 installs an excepthook that reports every uncaught error as a Brian2 bug.
        sys.excepthook = hook
    return brian2


# --------------------------------------------------------------------------- connectivity


@dataclass
class _Connections:
    """Explicit synapses of one layer for one sample: flat pre index → flat post index."""

    pre: np.ndarray
    post: np.ndarray
    weight: np.ndarray
    pad_weight: np.ndarray  # (n_post,) Σ of weights over padded taps (all zero for dense)


def connections(layer, weight: np.ndarray) -> _Connections:
    """Expand a dense or conv layer into explicit synapses (inputs and outputs flattened in C order).

    ``weight`` has the shape of ``layer.weight`` (W or J).  For convolutions the input is
    cropped to ``layer.used`` and padded by ``layer.pads``; a tap on a padded position adds
    its weight to ``pad_weight`` of the output neuron instead of making a synapse.
    """
    weight = np.asarray(weight, np.float64)
    if layer.kind == "dense":
        n_in, n_out = weight.shape
        pre, post = np.meshgrid(np.arange(n_in), np.arange(n_out), indexing="ij")
        return _Connections(pre.ravel(), post.ravel(), weight.ravel(), np.zeros(n_out))
    kh, kw, cin, cout = weight.shape
    ho, wo, _ = layer.output_shape
    h_in, w_in, _ = layer.input_shape
    top, _, left, _ = layer.pads
    uh, uw = layer.used
    oy, ox, ky, kx, ci, co = np.meshgrid(
        np.arange(ho), np.arange(wo), np.arange(kh), np.arange(kw), np.arange(cin), np.arange(cout), indexing="ij"
    )
    y = oy * layer.strides[0] + ky * layer.dilation[0] - top
    x = ox * layer.strides[1] + kx * layer.dilation[1] - left
    w = weight[ky, kx, ci, co]
    post = (oy * wo + ox) * cout + co
    real = (y >= 0) & (y < uh) & (x >= 0) & (x < uw)
    pre = (y * w_in + x) * cin + ci
    pad_weight = np.zeros(ho * wo * cout)
    np.add.at(pad_weight, post[~real], w[~real])
    return _Connections(pre[real], post[real], w[real], pad_weight)


@dataclass
class _PoolConnections:
    """Pre → post pairs of a max pool for one sample; ``count`` inputs per output window
    (explicit pads included), ``pad_count`` of them explicit zero pads (spikes at t_max)."""

    pre: np.ndarray
    post: np.ndarray
    count: np.ndarray
    pad_count: np.ndarray


def pool_connections(pool, shape) -> _PoolConnections:
    """Expand a sign-aware max pool on an (H, W, C) map into explicit connections.

    Explicit ``pool.pads`` (a ZeroPadding2D before the pool) are inputs of value 0; positions
    outside the (explicitly padded) map, which ``padding="same"`` adds, are ignored, as in Keras.
    """
    h, w, c = shape
    pt, pb, pl, pr = getattr(pool, "pads", (0, 0, 0, 0))
    hp, wp = h + pt + pb, w + pl + pr
    (ph, pw), (sh, sw) = pool.size, pool.strides
    ho, wo, _ = pool.output_shape(shape)
    if pool.padding == "same":
        top = ops.same_padding(hp, ph, sh)[0]
        left = ops.same_padding(wp, pw, sw)[0]
    else:
        top = left = 0
    oy, ox, ky, kx, ch = np.meshgrid(np.arange(ho), np.arange(wo), np.arange(ph), np.arange(pw), np.arange(c), indexing="ij")
    y, x = oy * sh + ky - top, ox * sw + kx - left  # in the explicitly padded map
    inside = (y >= 0) & (y < hp) & (x >= 0) & (x < wp)
    real = inside & (y >= pt) & (y < pt + h) & (x >= pl) & (x < pl + w)
    post_all = (oy * wo + ox) * c + ch
    n_out = ho * wo * c
    pre = (((y - pt) * w + (x - pl)) * c + ch)[real]
    return _PoolConnections(
        pre, post_all[real], np.bincount(post_all[inside], minlength=n_out),
        np.bincount(post_all[inside & ~real], minlength=n_out),
    )


def _groups(layer) -> list:
    """The synapse groups of a layer's neurons: the layer itself, then its skips (residual connections)."""
    return list(getattr(layer, "groups", [layer]))


def _group_delays(sl: SpikingLayer) -> list[float]:
    return list(sl.group_delays()) if hasattr(sl, "group_delays") else [0.0]


def _group_source(group, index: int) -> int:
    return int(getattr(group, "source", index - 1))


# --------------------------------------------------------------------------- the Brian2 network


def _step_of(t: np.ndarray, dt: float) -> np.ndarray:
    """Grid index nearest to t (the effective arrival time of a spike is a grid point)."""
    return np.rint(np.asarray(t, np.float64) / dt).astype(np.int64)


@dataclass
class Brian2Run:
    """What the Brian2 network produced: spike times per hidden layer (N, *shape), logits (N, classes)."""

    spike_times: list
    logits: np.ndarray
    spike_counts: list  # per hidden layer: spikes per neuron (N, *shape)
    dt: float
    synapses: int


def run_brian2(net: SpikingNetwork, x, dt: float = 1e-3) -> Brian2Run:
    """Simulate ``net`` on raw inputs ``x`` in Brian2 (NumPy target); see the module docstring.

    Spike times are model times (+inf where a B1 neuron stayed silent); logits are the
    read-out potentials at t_min^(L), (N, classes).
    """
    neuron = getattr(net, "neuron", "alpha")
    if neuron not in ("alpha", "b1"):
        raise NotImplementedError(f"no Brian2 model for neuron {neuron!r}")
    b1 = neuron == "b1"
    b2 = _import_brian2()
    unit = getattr(b2, _TIME_UNIT)
    b2.prefs.codegen.target = "numpy"
    dt = float(dt)
    if not dt > 0:
        raise ValueError(f"dt must be positive, got {dt}")
    x = np.asarray(x, np.float64)
    N = len(x)
    # Brian2 time = model time + one grid step, so that an input spike at t = 0 can be
    # emitted in step 0 and act from the first grid point on.
    offset = 1
    t_in = net.input_times(x).reshape(N, -1)
    objects = []

    def first_step(t):  # first step k whose effective time (k+1) dt is ≥ model time t
        return int(math.ceil(t / dt - 1e-9)) + offset - 1

    # ---- generator neurons: the inputs, and the padded taps and pool pads, which are
    # spikes of value 0 (at the layer's t_min for conv taps, at t_max for pool pads).
    gen_idx, gen_step, reserved = [], [], {}

    def reserve(key, times):
        """Generator neurons firing at ``times`` (N, k), none where +inf; returns their first index."""
        k = times.shape[1]
        base = sum(len(v) for v in reserved.values())
        reserved[key] = range(base, base + N * k)
        idx = base + np.arange(N)[:, None] * k + np.arange(k)[None, :]
        fire = np.isfinite(times)
        gen_idx.append(idx[fire])
        gen_step.append(_step_of(times[fire], dt) + offset - 1)  # emitted one step early
        return base

    def reserve_pool_pads(tag, pool_list, t_max):
        for p, pool in enumerate(pool_list):
            if any(getattr(pool, "pads", (0, 0, 0, 0))):
                reserve((tag, p), np.full((N, 1), t_max))

    reserve("input", t_in)
    reserve_pool_pads("input", net.input_pools, 1.0)
    for n, sl in enumerate(net.layers):
        if not b1 and any(g.kind == "conv" for g in _groups(sl.layer)):  # B1: a padded tap is silence
            reserve(("taps", n), np.full((N, 1), sl.t_min))
        reserve_pool_pads(n, sl.layer.pools, sl.t_max)
    n_gen = sum(len(v) for v in reserved.values())
    steps = np.concatenate(gen_step)
    if steps.min(initial=0) < 0:
        raise ValueError("an input spike lies before t = 0")
    gen = b2.SpikeGeneratorGroup(max(n_gen, 1), np.concatenate(gen_idx).astype(np.int64), steps * dt * unit,
                                 dt=dt * unit, name="inputs")
    objects.append(gen)

    order = [0]  # order of the next object in the synapses slot

    def next_order():
        order[0] += 1
        return order[0]

    def connect(src, target, tgt_size, pre, post, weight, variable, name, delay=0.0):
        """Synapses replicated over samples: source neuron base + s*size + pre → target s*tgt_size + post."""
        source, base, size = src
        syn = b2.Synapses(source, target, model="w : 1", on_pre=f"{variable}_post += w", dt=dt * unit, name=name)
        s = np.arange(N)[:, None]
        i = (base + s * size + pre[None, :]).ravel()
        j = (s * tgt_size + post[None, :]).ravel()
        syn.connect(i=i.astype(np.int64), j=j.astype(np.int64))
        syn.w = np.tile(weight, N)
        if delay:
            syn.delay = delay * unit  # Brian2 rounds it to the grid
        syn.pre.order = next_order()
        objects.append(syn)

    def pad_source(key):
        return (gen, reserved[key].start, 1)

    def pools(src, shape, pool_list, tag):
        """Chain the max pools; returns the last source (group, base, size) and shape."""
        for p, pool in enumerate(pool_list):
            pc = pool_connections(pool, shape)
            out_shape = pool.output_shape(shape)
            size = int(np.prod(out_shape))
            group = b2.NeuronGroup(
                N * size, "c : 1\nneed : 1 (constant)\nfired : 1",
                threshold="c >= need - 0.5 and fired == 0", reset="fired = 1", dt=dt * unit, name=f"pool{tag}_{p}",
            )
            channel = np.arange(size) % shape[2]
            # sign > 0: the first spike of the window; sign < 0: the last one.
            group.need = np.tile(np.where(pool.sign[channel] > 0, 1, pc.count), N).astype(np.float64)
            connect(src, group, size, pc.pre, pc.post, np.ones(len(pc.pre)), "c", f"to_pool{tag}_{p}")
            padded = np.flatnonzero(pc.pad_count)
            if padded.size:
                connect(pad_source((tag, p)), group, size, np.zeros(len(padded), np.int64), padded,
                        pc.pad_count[padded].astype(np.float64), "c", f"pads_pool{tag}_{p}")
            # Fire in the synapses slot, after the synapses that feed the pool and before
            # the ones that leave it: pooling takes no time.
            group.thresholder["spike"].when = "synapses"
            group.thresholder["spike"].order = next_order()
            objects.append(group)
            src, shape = (group, 0, size), out_shape
        return src, shape

    def fraction_after(t_model):  # part of the step [t, t + dt] after model time t_model
        return f"clip((t + dt - {t_model + offset * dt!r}*{_TIME_UNIT}) / dt, 0, 1)"

    outputs = {-1: pools((gen, reserved["input"].start, t_in.shape[1]), net.input_shape, net.input_pools, "input")[0]}
    hidden_groups = []
    readout = None
    for n, sl in enumerate(net.layers):
        layer = sl.layer
        size = int(np.prod(layer.output_shape))
        if b1:
            # Inputs integrate until t_min^(n), then the currents are off and v rises with slope α.
            rhs = f"I * (1 - {fraction_after(sl.t_min)}) + a * {fraction_after(sl.t_min)}"
        else:
            rhs = f"a * {fraction_after(sl.t_start)} + I"
        eqs = f"dv/dt = ({rhs}) / {_TIME_UNIT} : 1\nI : 1\na : 1 (constant)\n"
        if sl.hidden:
            # The threshold of step k sees v((k+1) dt): the spike's effective time is (k+1) dt.
            if b1:  # may fire from t_min^(n) on, never at or after t_max^(n)
                cond = f"timestep(t, dt) >= {first_step(sl.t_min)} and timestep(t, dt) < {first_step(sl.t_max)} and v >= theta"
            else:  # may fire from t_min^(n-1) on; forced at t_max^(n)
                cond = f"timestep(t, dt) >= {first_step(sl.t_start)} and (v >= theta or timestep(t, dt) >= {first_step(sl.t_max)})"
            group = b2.NeuronGroup(
                N * size, eqs + "theta : 1 (constant)\nfired : 1", threshold=f"fired == 0 and {cond}",
                reset="fired = 1", method="euler", dt=dt * unit, name=f"layer{n}",
            )
            group.theta = np.tile(np.broadcast_to(sl.threshold, layer.output_shape).ravel(), N)
            group.a = np.tile(np.broadcast_to(sl.alpha, layer.output_shape).ravel(), N)
            scale = 1.0 if b1 else 1.0 / (1.0 - layer.weight_sum)  # J = W / (1 − Σ W), α = 1
        else:
            group = b2.NeuronGroup(N * size, eqs, method="euler", dt=dt * unit, name=f"layer{n}")
            # B1 reads b + V with V = Σ W (t_min^(L) − t_j)^+; the α-model integrates b as α.
            group.a = 0.0 if b1 else np.tile(np.broadcast_to(sl.alpha, layer.output_shape).ravel(), N)
            scale = 1.0
        objects.append(group)
        pad_weight = np.zeros(size)
        for k, (g, delay) in enumerate(zip(_groups(layer), _group_delays(sl))):
            conn = connections(g, g.weight * scale)
            connect(outputs[_group_source(g, n)], group, size, conn.pre, conn.post, conn.weight, "I",
                    f"to_layer{n}_{k}", delay)
            pad_weight += conn.pad_weight
        padded = np.flatnonzero(pad_weight)
        if padded.size and not b1:
            connect(pad_source(("taps", n)), group, size, np.zeros(len(padded), np.int64), padded,
                    pad_weight[padded], "I", f"taps_layer{n}")
        if sl.hidden:
            mon = b2.SpikeMonitor(group, name=f"spikes{n}")
            objects.append(mon)
            hidden_groups.append((mon, layer.output_shape, size))
            outputs[n] = pools((group, 0, size), layer.output_shape, layer.pools, n)[0]
        else:
            readout = (group, layer.bias.reshape(-1) if b1 else 0.0)

    network = b2.Network(*objects)
    # Read the read-out potential at the grid points around t_min^(L) and interpolate
    # linearly: the potential is linear between grid points.
    t_read = net.output.t_min / dt + offset
    k_lo = int(math.floor(t_read))
    network.run(k_lo * dt * unit, namespace={})
    group, base = readout
    v_lo = np.array(group.v[:])
    network.run(dt * unit, namespace={})
    v_hi = np.array(group.v[:])
    frac = t_read - k_lo
    logits = ((1.0 - frac) * v_lo + frac * v_hi).reshape(N, -1) + base

    spike_times, counts = [], []
    for mon, out_shape, size in hidden_groups:
        idx = np.asarray(mon.i[:], np.int64)
        emitted = np.rint(np.asarray(mon.t[:] / unit) / dt).astype(np.int64)
        times = np.full(N * size, np.inf)
        times[idx] = (emitted + 1 - offset) * dt  # emitted in step k, effective at (k+1) dt
        counts.append(np.bincount(idx, minlength=N * size).reshape((N,) + out_shape))
        spike_times.append(times.reshape((N,) + out_shape))
    n_syn = int(sum(len(o) for o in objects if isinstance(o, b2.Synapses)))
    return Brian2Run(spike_times, logits, counts, dt, n_syn)


# --------------------------------------------------------------------------- comparison


def _sensitivities(sl: SpikingLayer, b1: bool) -> list[float]:
    """Per synapse group, max_i Σ_j |∂t_i/∂t_j| over the group's inputs j:
    Σ_j |J_ij| / (α_i + Σ_j J_ij) (α-model), Σ_j |W_ij| / α_i (B1), Σ_j |W_ij| (read-out).
    For α = 1 all three are Σ_j |W_ij|, the row norm of the scaled weights."""
    layer = sl.layer
    alpha = np.broadcast_to(sl.alpha, layer.output_shape)
    out = []
    for g in _groups(layer):
        w_abs = np.abs(g.weight).reshape(-1, layer.channels).sum(axis=0)
        if not sl.hidden:
            out.append(float(w_abs.max()))
        elif b1:
            out.append(float(np.max(w_abs / alpha)))
        else:
            j_abs = w_abs / np.abs(1.0 - layer.weight_sum)
            out.append(float(np.max(j_abs / (alpha + sl.J_sum))))
    return out


def error_bounds(net: SpikingNetwork, dt: float) -> tuple[list[float], float]:
    """Grid-error bounds |Δt| per hidden layer and |Δ logit| for a step ``dt`` (module docstring).

    e_input = dt/2; e_n = dt + Σ_g s_g (e_source(g) + r_g), s_g the sensitivity of synapse
    group g (:func:`_sensitivities`), r_g = dt/2 for a delayed group (Brian2 rounds delays
    to the grid), else 0; the logits move by at most Σ_g s_g (e_source(g) + r_g).
    Valid where the closed form holds (no transient crossing while inputs arrive).
    """
    b1 = getattr(net, "neuron", "alpha") == "b1"
    e = {-1: dt / 2}
    bounds, logit_bound = [], 0.0
    for n, sl in enumerate(net.layers):
        spread = sum(
            s * (e[_group_source(g, n)] + (dt / 2 if delay else 0.0))
            for s, g, delay in zip(_sensitivities(sl, b1), _groups(sl.layer), _group_delays(sl))
        )
        if sl.hidden:
            e[n] = dt + spread
            bounds.append(e[n])
        else:
            logit_bound = spread
    return bounds, logit_bound


def _pool_values(pool, v: np.ndarray, pad_value: float) -> np.ndarray:
    """Sign-aware max pooling of values, explicit pads taking ``pad_value``."""
    if any(getattr(pool, "pads", (0, 0, 0, 0))):
        return -np.asarray(pool.on_times(-v, -pad_value))  # max(pad(v, p)) = −min(pad(−v, −p))
    return np.asarray(pool.on_values(v))


def interval_bounds(net: SpikingNetwork, x, dt: float, spike_times: list, logits: np.ndarray):
    """Per-neuron bounds of |t_Brian2 − t_exactsnn| and per-logit bounds of |Δ logit|, for each sample.

    Interval arithmetic on the values the spikes code (x = t_max − t): the inputs are rounded
    to the grid, x ∈ [x − dt/2, x + dt/2] (padded taps, pool pads and delays likewise), a layer's
    pre-activation interval follows from W⁺ and W⁻, and Brian2's spike comes up to one step after
    the exact crossing for its inputs, so its value lies in [ReLU(z_lo) − dt, ReLU(z_hi)]; pooling
    is monotone.  Unlike :func:`error_bounds` this follows the sample: a neuron clipped at
    t_max passes no error on.  ``spike_times`` and ``logits`` are exactsnn's.  Valid where the
    closed form holds for Brian2's inputs too (no transient crossing while inputs arrive).
    """
    b1 = getattr(net, "neuron", "alpha") == "b1"
    h = dt / 2
    t_in = net.input_times(np.asarray(x, np.float64))
    v = np.where(np.isfinite(t_in), 1.0 - t_in, 0.0)
    silent = ~np.isfinite(t_in)
    lo, hi = np.where(silent, 0.0, v - h), np.where(silent, 0.0, v + h)
    for pool in net.input_pools:
        lo, hi = _pool_values(pool, lo, -h), _pool_values(pool, hi, h)
    vals = {-1: (lo, hi)}
    bounds, logit_bound = [], None
    hidden_index = 0
    for n, sl in enumerate(net.layers):
        layer = sl.layer
        clip = b1 or not sl.hidden  # late inputs (after t_min) add nothing
        z_lo = np.broadcast_to(layer.bias, layer.output_shape).astype(np.float64)
        z_hi = z_lo.copy()
        for g, delay in zip(_groups(layer), _group_delays(sl)):
            lo_s, hi_s = vals[_group_source(g, n)]
            if delay:
                lo_s, hi_s = lo_s - h, hi_s + h
            pad_lo, pad_hi = (0.0, 0.0) if b1 else (-h, h)
            if clip:
                lo_s, hi_s, pad_lo, pad_hi = np.maximum(lo_s, 0), np.maximum(hi_s, 0), max(pad_lo, 0.0), max(pad_hi, 0.0)
            w_pos, w_neg = np.maximum(g.weight, 0.0), np.minimum(g.weight, 0.0)
            shape = (-1,) + layer.output_shape
            z_lo = z_lo + g.linear(lo_s, w_pos, pad_lo).reshape(shape) + g.linear(hi_s, w_neg, pad_hi).reshape(shape)
            z_hi = z_hi + g.linear(hi_s, w_pos, pad_hi).reshape(shape) + g.linear(lo_s, w_neg, pad_lo).reshape(shape)
        if sl.hidden:
            lo_n, hi_n = np.maximum(z_lo, 0.0) - dt, np.maximum(z_hi, 0.0)
            exact = sl.t_max - np.minimum(spike_times[hidden_index], sl.t_max)
            bounds.append(np.maximum(hi_n - exact, exact - lo_n))
            hidden_index += 1
            for pool in layer.pools:
                lo_n, hi_n = _pool_values(pool, lo_n, -h), _pool_values(pool, hi_n, h)
            vals[n] = (lo_n, hi_n)
        else:
            z_lo, z_hi = z_lo.reshape(len(z_lo), -1), z_hi.reshape(len(z_hi), -1)
            logit_bound = np.maximum(z_hi - logits, logits - z_lo)
            decided_lo, decided_hi = z_lo, z_hi
    # A sample's prediction is decided when the top class's lower bound beats every other
    # class's upper bound.
    top = np.argmax(logits, axis=1)
    rows = np.arange(len(top))
    others = decided_hi.copy()
    others[rows, top] = -np.inf
    decided = decided_lo[rows, top] > others.max(axis=1, initial=-np.inf)
    return bounds, logit_bound, decided


def crosscheck(net: SpikingNetwork, x, dt: float = 1e-3, engine: str = "fast"):
    """Run ``net`` in Brian2 and in exactsnn on ``x`` and compare.

    Returns a :class:`pandas.DataFrame` with one row per hidden layer (max and mean |Δt| of
    the spike times, spikes in each simulator, spikes Brian2 missed or added) and one row for
    the read-out (max and mean |Δ logit|, prediction agreement).  ``bound`` is the largest
    per-neuron bound of :func:`interval_bounds`; ``within_bound`` says whether *every*
    difference is within its own neuron's bound, ``a_priori`` is the sample-independent
    bound of :func:`error_bounds`.  A silent B1 neuron is compared as a spike at t_max (what it
    codes); ``missing``/``extra`` count neurons that fired in one simulator and not in the
    other beyond their bound's reach of t_max (α-model: any neuron without exactly one spike).
    ``df.attrs`` holds the summary: ``agreement`` (fraction of samples with the same
    prediction), ``undecided`` (samples whose logit bounds allow another prediction),
    ``unexplained`` (different predictions on decided samples), ``max_abs_dt``,
    ``max_logit_diff``, ``within_bound``, ``dt``, ``samples``, ``neuron``, ``synapses``.
    """
    import pandas as pd

    from .simulator import simulate

    x = np.asarray(x, np.float64)
    b1 = getattr(net, "neuron", "alpha") == "b1"
    tol = 1e-9
    ref = simulate(net, x, engine=engine, record=True)
    run = run_brian2(net, x, dt)
    a_priori, a_priori_logit = error_bounds(net, dt)
    bounds, logit_bound, decided = interval_bounds(net, x, dt, ref.spike_times, ref.logits)
    rows = []
    for n, (sl, t_ref, t_b2, count, bound) in enumerate(
        zip(net.hidden_layers, ref.spike_times, run.spike_times, run.spike_counts, bounds)
    ):
        diff = np.abs(np.minimum(t_b2, sl.t_max) - np.minimum(t_ref, sl.t_max))
        if b1:  # firing in one and not the other is fine within the bound of t_max
            near_end = np.minimum(t_ref, sl.t_max) >= sl.t_max - bound - tol
            missing = int((np.isfinite(t_ref) & (count == 0) & ~near_end).sum())
            extra = int(((count > 1) | (~np.isfinite(t_ref) & (count == 1) & ~near_end)).sum())
        else:
            missing, extra = int((count == 0).sum()), int((count > 1).sum())
        rows.append({
            "layer": sl.layer.name, "kind": sl.layer.kind, "neurons": sl.neurons, "quantity": "spike time",
            "max_abs_diff": float(diff.max(initial=0.0)), "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
            "bound": float(bound.max(initial=0.0)), "a_priori": a_priori[n],
            "within": bool(np.all(diff <= bound + tol)),
            "spikes_exactsnn": int(np.isfinite(t_ref).sum()), "spikes_brian2": int(count.sum()),
            "missing": missing, "extra": extra, "deviating_exactsnn": int(ref.deviating[n]), "agreement": np.nan,
        })
    out = net.output
    ldiff = np.abs(run.logits - ref.logits)
    same = np.argmax(run.logits, 1) == ref.predictions
    agreement = float(np.mean(same)) if len(x) else 1.0
    rows.append({
        "layer": out.layer.name, "kind": out.layer.kind, "neurons": out.neurons, "quantity": "logit",
        "max_abs_diff": float(ldiff.max(initial=0.0)), "mean_abs_diff": float(ldiff.mean()) if ldiff.size else 0.0,
        "bound": float(logit_bound.max(initial=0.0)), "a_priori": a_priori_logit,
        "within": bool(np.all(ldiff <= logit_bound + tol)),
        "spikes_exactsnn": 0, "spikes_brian2": 0, "missing": 0, "extra": 0, "deviating_exactsnn": 0,
        "agreement": agreement,
    })
    top2 = np.sort(ref.logits, axis=1)[:, -2:] if ref.logits.shape[1] > 1 else np.zeros((len(x), 2))
    margin = top2[:, 1] - top2[:, 0]  # exactsnn's lead of the predicted class
    df = pd.DataFrame(rows)
    df["within_bound"] = df["within"] & (df["missing"] == 0) & (df["extra"] == 0)
    df = df.drop(columns="within")
    spikes = df.loc[df.quantity == "spike time", "max_abs_diff"]
    df.attrs.update(
        agreement=agreement,
        undecided=int((~decided).sum()),
        unexplained=int((~same & decided).sum()),
        # For samples predicted differently: exactsnn's margin between its two best classes,
        # and the sample's largest logit difference (a flip needs margin ≤ 2 |Δ logit|).
        differing_margin=float(margin[~same].max(initial=0.0)),
        differing_logit_diff=float(ldiff[~same].max(initial=0.0)),
        max_abs_dt=float(spikes.max()) if len(spikes) else 0.0,
        max_logit_diff=float(ldiff.max(initial=0.0)),
        within_bound=bool(df["within_bound"].all()),
        dt=float(dt),
        samples=int(len(x)),
        neuron="b1" if b1 else "alpha",
        synapses=run.synapses,
    )
    return df


def main_crosscheck(snn_path, x_path, dt: float = 1e-3, n: int = 20, engine: str = "fast", output=None):
    """CLI entry (``exactsnn crosscheck SNN X.npy --dt DT``): cross-check the first ``n`` samples.

    ``snn_path`` is a network saved by exactsnn (``.npz``) or exported to HDF5 (``.h5``,
    :mod:`exactsnn.export`); ``x_path`` a ``.npy`` array of raw inputs.  Prints the table
    and returns it; ``output`` also writes it as CSV.  Raises ``SystemExit(1)`` when a
    difference exceeds its bound or a prediction differs where the bounds rule out a tie, so
    scripts can rely on the status.
    """
    import pandas as pd

    from . import load

    if str(snn_path).endswith((".h5", ".hdf5")):
        from .export import load_hdf5

        net = load_hdf5(snn_path)
    else:
        net = load(snn_path)
    x = np.load(x_path)
    if n:
        x = x[:n]
    df = crosscheck(net, x, dt=dt, engine=engine)
    cols = ["layer", "kind", "neurons", "quantity", "max_abs_diff", "mean_abs_diff", "bound", "a_priori",
            "spikes_exactsnn", "spikes_brian2", "missing", "extra", "agreement"]
    a = df.attrs
    print(f"Brian2 {_brian2_version()} cross-check ({a['neuron']} neurons): {a['samples']} samples, dt = {dt:g}, "
          f"{a['synapses']} Brian2 synapses")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3g}".format):
        print(df[cols].to_string(index=False))
    print(f"prediction agreement {100 * a['agreement']:.2f} % ({a['undecided']} samples within the logit bound of a tie, "
          f"{a['unexplained']} unexplained), max |Δt| {a['max_abs_dt']:.3g}, max |Δlogit| {a['max_logit_diff']:.3g}, "
          f"every difference within its bound: {a['within_bound']}")
    if a["agreement"] < 1.0:
        print(f"the differing samples are near-ties: exactsnn margin ≤ {a['differing_margin']:.3g} between the two best "
              f"classes, |Δlogit| ≤ {a['differing_logit_diff']:.3g}")
    if output:
        df.assign(dt=dt, samples=a["samples"], neuron=a["neuron"], undecided=a["undecided"],
                  unexplained=a["unexplained"]).to_csv(output, index=False)
    if not a["within_bound"] or a["unexplained"]:
        raise SystemExit(1)
    return df


def _brian2_version() -> str:
    return getattr(_import_brian2(), "__version__", "?")
