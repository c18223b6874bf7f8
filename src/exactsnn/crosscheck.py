"""An independent witness: the converted network run in Brian2, compared with :func:`simulate`.

Brian2 (https://briansimulator.org) is an SNN simulator nobody here wrote.  We give it the
neurons of the network's model (DESIGN §2, :mod:`exactsnn.neurons`) as plain equations,
explicit synapses and spike generators, run it with its NumPy code-generation target and
compare its spike times, logits and predictions with :func:`exactsnn.simulate`.

The Brian2 network, per sample (samples are independent copies of the network, simulated
side by side in one run; one model time unit = 1 ms).  What differs between the models is
read from the model's attributes: ``synaptic_weights`` (J or W), ``silent_zero`` (a value 0
is no spike) and ``crosses_while_integrating`` (the α-model integrates its inputs alongside
the α current and may fire meanwhile; B1 integrates them in [t_start, t_min^(n)) and then
ramps with α alone); the read-out's constant part is the model's ``readout_base``.

* **inputs** — a ``SpikeGeneratorGroup`` firing at the model's input spike times
  (``net.input_times``), one generator neuron per input value (none where the model codes
  silence);
* **padded taps** of a convolution and explicit zero pads of a pool code the value 0: one
  more generator neuron per layer firing at that layer's t_min^(n) (taps, with one synapse
  per target neuron whose weight is the sum over its padded taps) or t_max (pool pads);
  none where a zero is silence (``silent_zero``: B1);
* **hidden layer n, α-model** (``crosses_while_integrating``) — a ``NeuronGroup`` with
  ``dv/dt = (α H(t − t_min^(n-1)) + I)/ms`` from v = 0, where the current ``I`` steps by
  J_ij at every input spike (``Synapses`` with ``on_pre: I_post += w``, explicit weights
  from the model's ``synaptic_weights``; convolutions are expanded to one synapse per kernel
  tap).  Nothing clamps, resets or ignores an input: one that arrives before t_start (an
  early spike of the layer before) counts from its own arrival, as in DESIGN §2.  The neuron
  fires once (a flag, set by the reset), the first time ``v ≥ ϑ`` after its first event (an
  input or the α onset at t_start; a flag set by the input synapses; at that event when
  ϑ ≤ 0, since V = 0 there), or at t_max^(n) at the latest;
* **hidden layer n, B1** — ``dv/dt = (I [t_start ≤ t < t_min^(n)] + α H(t − t_min^(n)))/ms``
  with ``I`` stepping by W_ij (an input before t_start counts from t_start, one after
  t_min^(n) adds nothing, as the model's ``arrived``); it may fire (once) in
  [t_min^(n), t_max^(n)) when ``v ≥ ϑ``, and stays silent otherwise;
* **residual connections** — a layer's further synapse groups read earlier layers through
  synapses with the group's delay;
* **max pooling** — a group that fires at the first spike of its window (sign > 0) or when
  all spikes of its window have arrived, i.e. at the last one (sign < 0, a negative
  batch-norm scale folded through the pool).  Its threshold runs in the synapses slot,
  between the synapses that feed it and those that leave it, so it adds no delay;
* **read-out** — the inputs' part of the model's read-out potential: ``dv/dt = I g(t)/ms``
  with ``I`` stepping by W_ij and g the model's input window (α-model: every input from its
  arrival until t_min^(L), the raw-time read-out Σ_j W_ij (t_min^(L) − t_j)⁺; B1:
  [t_start, t_min^(L))).  v is read at the first grid point after t_min^(L), where it has
  stopped moving, and the logit is ``readout_base`` + v (α-model: α (t_min^(L) − t_start);
  B1: b).

**Time is discrete in Brian2**, and that is the only approximation.  The potential is
integrated exactly: the input current is constant between grid points and the Euler step of
a constant slope is exact; the off-grid switches (the α current's onset, B1's input window)
are integrated as the fraction of the step after them.  But input spikes sit on the grid
(rounded to the nearest point, as are delays) and the threshold is tested on the grid: a
spike whose potential reaches ϑ during the step (k dt, (k+1) dt] is emitted by Brian2 in
step k and acts on its targets from (k+1) dt on; we report (k+1) dt.  So every Brian2 spike
lies in [t*, t* + dt], t* the exact crossing *for Brian2's own inputs* (a convex kink inside
the step, the α onset, cannot undo a crossing; α ≥ 0).

**Bounds.**

* :func:`interval_bounds` (a posteriori, per neuron and sample), valid in every regime:
  every Brian2 input time t'_j lies in an interval [lo_j, hi_j] (the input ± dt/2, padded
  taps, pool pads and delays likewise; a hidden spike in the interval below).  The
  potential only falls when an input comes later ((t − t_j)⁺ decreases in t_j), so Brian2's
  potential lies between two potentials of the same model for all t: V_hi, with the
  excitatory inputs at lo and the inhibitory ones at hi, and V_lo, the other way round.  Its
  crossing therefore lies between theirs, T(V_hi) ≤ t* ≤ T(V_lo), and its spike in
  [T(V_hi), T(V_lo) + dt] (clipped at t_max).  T is the model's own first crossing
  (α-model: the event-driven walk, :func:`exactsnn.simulator.first_crossings`, which finds a
  crossing before the last input — a neuron firing early, outside the exact regime — as
  well as the closed form; B1: ``spike_time`` from V(t_min) = the model's ``arrived``), so
  the bound needs no assumption on where the crossing happens.  (A neuron with ϑ ≤ 0
  fires at its first event, min(t_start, first input), in Brian2 one step later: its
  interval is that of its first event, + dt.)  The read-out's value lies between the two
  potentials at t_min^(L).  In the exact regime this is the interval arithmetic of the
  ReLU network on the values the spikes code, Brian2's value in [ReLU(z_lo) − dt, ReLU(z_hi)];
  a neuron clipped at t_max passes no error on, so on the default fc and LeNet it is 11–21×
  tighter than the a priori bound on the logits (not on the default VGG, see the README).  Outside it, a neuron whose potential only just touches ϑ (an early crossing of
  one envelope that the other misses) gets a wide interval: rightly, since Brian2 may fire
  there or not.  The cross-check requires *every* spike time and logit to be within its
  own bound, and calls a differing prediction unexplained only if the logit intervals rule
  out a tie.
* :func:`error_bounds` (a priori, per layer): e_input = dt/2, e_n ≤ dt + ‖W_n‖ e_{n-1} with
  ‖W_n‖ = max_i Σ_j |∂t_i/∂t_j| (Σ_j |W_ij| for α = 1; scaled weights, padded taps and
  skips included), because after the last input t_i = t_max − (W x + b)_i moves by
  Σ_j W_ij δ_j when the inputs move by δ_j; ReLU, the clip at t_max and max pooling are
  1-Lipschitz.  The logits move by ≤ ‖W_L‖ e_{L-1}.  It grows like the product of the
  norms (loose for deep networks), and it holds only where every crossing comes after the
  neuron's last input: a first crossing before it is not even continuous in the inputs.
  :func:`crosscheck` reports it for a layer only where the intervals above prove that for
  every neuron of the layer and of those before it (T(V_hi) ≥ the latest possible last
  input), NaN elsewhere.

Measured on the default digits networks (see the README): max |Δt| ≈ 3–67 dt in the hidden
layers and up to 138 dt on the logits, shrinking linearly with dt.

Brian2 is an optional dependency (``pip install 'exactsnn[crosscheck]'``): Brian2 2.9.0 is
the last release for Python 3.11 and needs NumPy < 2.4 (it reads ``ndarray.ptp``, removed in
NumPy 2.4, when it is imported).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import ops
from .neurons import tolerance
from .spiking import SpikingLayer, SpikingNetwork
from .synapses import ConvSynapses, DenseSynapses

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
    if isinstance(layer, DenseSynapses):
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


def _per_neuron(values, layer, n_samples: int) -> np.ndarray:
    """A per-neuron parameter (α, ϑ, b: broadcastable to the layer's output shape) for every sample, flattened."""
    return np.tile(np.broadcast_to(values, layer.output_shape).ravel(), n_samples)


def run_brian2(net: SpikingNetwork, x, dt: float = 1e-3) -> Brian2Run:
    """Simulate ``net`` on raw inputs ``x`` in Brian2 (NumPy target); see the module docstring.

    Spike times are model times (+inf where a neuron of a ``silent_zero`` model stayed
    silent); logits are the read-out potentials at t_min^(L), (N, classes).
    """
    model = net.model
    # The model's dynamics in Brian2 (module docstring): an α-model neuron integrates its
    # inputs alongside the α current and fires whenever v reaches ϑ; a B1 neuron integrates
    # them in [t_start, t_min^(n)), then ramps with α alone and fires from t_min^(n) on.
    integrating = model.crosses_while_integrating
    zero_spikes = not model.silent_zero  # a value 0 is a spike (padded taps, pool pads)
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
            if zero_spikes and any(getattr(pool, "pads", (0, 0, 0, 0))):
                reserve((tag, p), np.full((N, 1), t_max))

    reserve("input", t_in)
    reserve_pool_pads("input", net.input_pools, 1.0)
    for n, sl in enumerate(net.layers):
        if zero_spikes and any(isinstance(g, ConvSynapses) for g in _groups(sl.layer)):
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

    def connect(src, target, tgt_size, pre, post, weight, on_pre, name, delay=0.0):
        """Synapses replicated over samples: source neuron base + s*size + pre → target s*tgt_size + post."""
        source, base, size = src
        syn = b2.Synapses(source, target, model="w : 1", on_pre=on_pre, dt=dt * unit, name=name)
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
            # sign > 0: the first spike of the window; sign < 0: the last one.  Pads count
            # even where a zero is silence: a latest-spike pool over a pad then never fires,
            # as a spike at t_max (value 0) would add nothing.
            group.need = np.tile(np.where(pool.sign[channel] > 0, 1, pc.count), N).astype(np.float64)
            connect(src, group, size, pc.pre, pc.post, np.ones(len(pc.pre)), "c_post += w", f"to_pool{tag}_{p}")
            padded = np.flatnonzero(pc.pad_count)
            if padded.size and zero_spikes:
                connect(pad_source((tag, p)), group, size, np.zeros(len(padded), np.int64), padded,
                        pc.pad_count[padded].astype(np.float64), "c_post += w", f"pads_pool{tag}_{p}")
            # Fire in the synapses slot, after the synapses that feed the pool and before
            # the ones that leave it: pooling takes no time.
            group.thresholder["spike"].when = "synapses"
            group.thresholder["spike"].order = next_order()
            objects.append(group)
            src, shape = (group, 0, size), out_shape
        return src, shape

    def after(t_model):  # part of the step [t, t + dt] after model time t_model
        return f"clip((t + dt - {t_model + offset * dt!r}*{_TIME_UNIT}) / dt, 0, 1)"

    def during(t_from, t_to):  # part of the step inside [t_from, t_to]
        return f"({after(t_from)} - {after(t_to)})"

    def step_at_least(t_model):
        return f"timestep(t, dt) >= {first_step(t_model)}"

    outputs = {-1: pools((gen, reserved["input"].start, t_in.shape[1]), net.input_shape, net.input_pools, "input")[0]}
    hidden_groups = []
    readout = None
    for n, sl in enumerate(net.layers):
        layer = sl.layer
        size = int(np.prod(layer.output_shape))
        on_pre = "I_post += w"
        if sl.hidden:
            if integrating:
                # Inputs count from their arrival, also before t_start; α switches on at t_start.
                rhs = f"a * {after(sl.t_start)} + I"
                # v = 0 until the first event (an input: ``started``, or the α onset), and
                # v = 0 ≥ ϑ at it fires there: Brian2 sees the event only in the step after
                # (its synapses run after the threshold), when v may have moved below ϑ.
                can_fire = f"(started == 1 or {step_at_least(sl.t_start)})"
                reached = "(v >= theta or theta <= 0)"
                on_pre += "\nstarted_post = 1"
            else:
                # Inputs integrate in [t_start, t_min^(n)); then the currents are off and v rises with slope α.
                rhs = f"I * {during(sl.t_start, sl.t_min)} + a * {after(sl.t_min)}"
                can_fire = step_at_least(sl.t_min)
                reached = "v >= theta"
            # The threshold of step k sees v((k+1) dt): the spike's effective time is (k+1) dt.
            fire = f"{reached} and {can_fire}"
            if model.silent_zero:  # no spike at or after t_max^(n): silence codes 0
                cond = f"{fire} and timestep(t, dt) < {first_step(sl.t_max)}"
            else:  # the spike at t_max^(n) codes 0
                cond = f"({fire}) or {step_at_least(sl.t_max)}"
            eqs = f"dv/dt = ({rhs}) / {_TIME_UNIT} : 1\nI : 1\na : 1 (constant)\ntheta : 1 (constant)\nfired : 1\n"
            if integrating:
                eqs += "started : 1\n"
            group = b2.NeuronGroup(N * size, eqs, threshold=f"fired == 0 and ({cond})", reset="fired = 1",
                                   method="euler", dt=dt * unit, name=f"layer{n}")
            group.theta = _per_neuron(sl.threshold, layer, N)
            group.a = _per_neuron(sl.alpha, layer, N)
        else:
            # The inputs' part of the read-out potential, in the model's input window; it stops
            # moving at t_min^(L).  Its constant part is the model's readout_base.
            gate = f"(1 - {after(sl.t_min)})" if integrating else during(sl.t_start, sl.t_min)
            group = b2.NeuronGroup(N * size, f"dv/dt = I * {gate} / {_TIME_UNIT} : 1\nI : 1", method="euler",
                                   dt=dt * unit, name=f"layer{n}")
            base = model.readout_base(np.broadcast_to(sl.alpha, layer.output_shape),
                                      np.broadcast_to(layer.bias, layer.output_shape), sl.t_start, sl.t_min)
            readout = (group, np.asarray(base, np.float64).reshape(-1))
        objects.append(group)
        pad_weight = np.zeros(size)
        for k, (g, delay) in enumerate(zip(_groups(layer), _group_delays(sl))):
            conn = connections(g, _synapses(model, sl, g))
            connect(outputs[_group_source(g, n)], group, size, conn.pre, conn.post, conn.weight, on_pre,
                    f"to_layer{n}_{k}", delay)
            pad_weight += conn.pad_weight
        padded = np.flatnonzero(pad_weight)
        if padded.size and zero_spikes:
            connect(pad_source(("taps", n)), group, size, np.zeros(len(padded), np.int64), padded,
                    pad_weight[padded], on_pre, f"taps_layer{n}")
        if sl.hidden:
            mon = b2.SpikeMonitor(group, name=f"spikes{n}")
            objects.append(mon)
            hidden_groups.append((mon, layer.output_shape, size))
            outputs[n] = pools((group, 0, size), layer.output_shape, layer.pools, n)[0]

    network = b2.Network(*objects)
    # Run past t_min^(L) (one step more than needed): the read-out potential is constant after it.
    t_read = net.output.t_min / dt + offset
    network.run((int(math.ceil(t_read - 1e-9)) + 1) * dt * unit, namespace={})
    group, base = readout
    logits = np.array(group.v[:]).reshape(N, -1) + base

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


def _synapses(model, sl: SpikingLayer, group) -> np.ndarray:
    """The synaptic weights of one synapse group: the model's ``synaptic_weights`` for a hidden
    layer (α-model: J for α = 1, B1: W; Σ_j W_ij over all groups), W for the read-out."""
    if not sl.hidden:
        return group.per_synapse(group.weight)
    return group.per_synapse(np.asarray(model.synaptic_weights(group.weight, sl.layer.weight_sum), np.float64))


# --------------------------------------------------------------------------- comparison


def _sensitivities(sl: SpikingLayer, model) -> list[float]:
    """Per synapse group, max_i Σ_j |∂t_i/∂t_j| over the group's inputs j, after the last input.

    Moving input j by δ_j moves the potential after the last input by −w_ij δ_j (w the
    synaptic weights, :func:`_synapses`), so the crossing moves by Σ_j |w_ij| δ_j / slope_i,
    slope_i the potential's final slope, read from the model's ``potential`` after every input
    and after t_min (α-model: α_i + Σ_j J_ij; B1: α_i, the ramp alone).  The read-out's value
    moves by Σ_j |W_ij| δ_j.  For α = 1 all are Σ_j |W_ij|, the row norm of the scaled weights.
    """
    layer = sl.layer
    c = layer.channels
    syn = [_synapses(model, sl, g).reshape(-1, c) for g in _groups(layer)]
    if not sl.hidden:
        return [float(np.abs(w).sum(axis=0).max()) for w in syn]
    w = np.concatenate(syn).T  # (channels, synapses)
    at = np.full(w.shape[1], sl.t_start)  # every input inside the window
    late = np.array([sl.t_max + 1.0, sl.t_max + 2.0])[:, None]  # after every input and t_min

    def rise(weights, alpha):
        v = model.potential(late, at, weights, alpha, np.nan, sl.t_start, sl.t_min)
        return v[1] - v[0]

    # The potential is linear in α and in the weights: slope = α · (slope of α alone) + (that of the inputs).
    slope = np.broadcast_to(sl.alpha, layer.output_shape) * rise(np.zeros_like(w), 1.0)[0] + rise(w, 0.0)
    return [float(np.max(np.abs(wg).sum(axis=0) / slope)) for wg in syn]


def error_bounds(net: SpikingNetwork, dt: float) -> tuple[list[float], float]:
    """Grid-error bounds |Δt| per hidden layer and |Δ logit| for a step ``dt`` (module docstring).

    e_input = dt/2; e_n = dt + Σ_g s_g (e_source(g) + r_g), s_g the sensitivity of synapse
    group g (:func:`_sensitivities`), r_g = dt/2 for a delayed group (Brian2 rounds delays
    to the grid), else 0; the logits move by at most Σ_g s_g (e_source(g) + r_g).
    Valid only where every crossing comes after the neuron's last input, in Brian2 and in
    exactsnn (:func:`crosscheck` checks that per layer and sample set).
    """
    e = {-1: dt / 2}
    bounds, logit_bound = [], 0.0
    for n, sl in enumerate(net.layers):
        spread = sum(
            s * (e[_group_source(g, n)] + (dt / 2 if delay else 0.0))
            for s, g, delay in zip(_sensitivities(sl, net.model), _groups(sl.layer), _group_delays(sl))
        )
        if sl.hidden:
            e[n] = dt + spread
            bounds.append(e[n])
        else:
            logit_bound = spread
    return bounds, logit_bound


def _field_rows(sl: SpikingLayer, index: int, times: dict, shift: float, pad_time: float) -> np.ndarray:
    """Input times of every neuron's receptive field, (samples × positions, synapses).

    Synapse group after synapse group, each in the order of its weights' rows
    (``weight.reshape(-1, channels)``); ``times`` maps a source layer to its pooled spike times,
    a delayed group's times are delayed and moved by ``shift`` (Brian2 rounds the delay to the
    grid), padded taps spike at ``pad_time``.  Dense layers have one position.
    """
    layer = sl.layer
    rows = []
    for g, delay in zip(_groups(layer), _group_delays(sl)):
        t = np.asarray(times[_group_source(g, index)], np.float64)
        if delay:
            t = t + (delay + shift)
        if isinstance(g, DenseSynapses):
            rows.append(t.reshape(len(t), -1))
            continue
        padded = np.asarray(g.padded(t, pad_time), np.float64)
        kh, kw = g.weight.shape[:2]
        ho, wo = layer.output_shape[:2]
        r = (np.arange(ho) * g.strides[0])[:, None] + np.arange(kh) * g.dilation[0]  # (ho, kh)
        c = (np.arange(wo) * g.strides[1])[:, None] + np.arange(kw) * g.dilation[1]  # (wo, kw)
        patch = padded[:, r[:, None, :, None], c[None, :, None, :], :]  # (N, ho, wo, kh, kw, c_in)
        rows.append(patch.reshape(len(t) * ho * wo, -1))
    return np.concatenate(rows, axis=1)


def _per_field(values, layer, n_samples: int) -> np.ndarray:
    """A per-neuron parameter as (samples × positions, channels), the rows of :func:`_field_rows`."""
    return np.broadcast_to(values, (n_samples,) + tuple(layer.output_shape)).reshape(-1, layer.channels)


def _first_crossings(tau, w, alpha, theta, t_start: float) -> np.ndarray:
    """The α-model's first crossings (:func:`exactsnn.simulator.first_crossings`) of neurons
    with input times ``tau`` (P, F) and shared weights ``w`` (F, C), in chunks of P."""
    from .simulator import first_crossings

    P, F = tau.shape
    C = w.shape[1]
    out = np.empty((P, C))
    chunk = max(1, (1 << 22) // max(1, F * C))
    for s in range(0, P, chunk):
        e = min(P, s + chunk)
        out[s:e] = first_crossings(tau[s:e], np.broadcast_to(w, (e - s, F, C)), alpha[s:e], theta[s:e], float(t_start))
    return out


def _pool_times(pools, t, pad_time: float):
    for pool in pools:
        t = np.asarray(pool.on_times(t, pad_time))
    return t


@dataclass
class _Intervals:
    """What :func:`_intervals` finds (one entry per hidden layer where per layer)."""

    bounds: list  # per neuron and sample: the largest |t_Brian2 − t_exactsnn| the intervals allow
    logit_bound: np.ndarray  # (N, classes)
    decided: np.ndarray  # (N,) the prediction cannot change within the logit intervals
    after_inputs: list  # per hidden layer: every crossing provably after the neuron's last input
    early: list  # per hidden layer: exactsnn's spikes before the neuron's last input (count)
    early_inputs: list  # per layer, read-out included: neurons with an input before t_start (count)


def _intervals(net: SpikingNetwork, x, dt: float, spike_times: list, logits: np.ndarray) -> _Intervals:
    """The interval propagation of the module docstring, on spike times.

    Each Brian2 spike time is known to lie in [lo, hi]: inputs t ± dt/2 (model coding; none
    where it codes silence), padded taps t_min^(n) ± dt/2 and pool pads t_max ± dt/2 (none
    where a zero is silence), delays ± dt/2.  A hidden neuron's spike lies in
    [T(V_hi), T(V_lo) + dt], clipped at t_max (V_hi: excitatory inputs at lo, inhibitory at
    hi; V_lo the other way round; T the model's first crossing), the read-out's value between
    its two potentials at t_min^(L).  ``spike_times`` and ``logits`` are exactsnn's.
    """
    model = net.model
    zero_spikes = not model.silent_zero
    h = dt / 2
    N = len(x)
    t_in = net.input_times(np.asarray(x, np.float64))
    lo, hi = _pool_times(net.input_pools, t_in - h, 1.0 - h if zero_spikes else np.inf), \
        _pool_times(net.input_pools, t_in + h, 1.0 + h if zero_spikes else np.inf)
    times_lo, times_hi = {-1: lo}, {-1: hi}
    times_exact = {-1: _pool_times(net.input_pools, t_in, 1.0 if zero_spikes else np.inf)}
    bounds, after_inputs, early, early_inputs = [], [], [], []
    hidden_index = 0
    for n, sl in enumerate(net.layers):
        layer = sl.layer
        pad_lo, pad_hi = (sl.t_min - h, sl.t_min + h) if zero_spikes else (np.inf, np.inf)
        rows_lo = _field_rows(sl, n, times_lo, -h, pad_lo)  # the earliest Brian2 may see each input
        rows_hi = _field_rows(sl, n, times_hi, h, pad_hi)  # the latest
        rows_exact = _field_rows(sl, n, times_exact, 0.0, sl.t_min if zero_spikes else np.inf)
        early_inputs.append(int((rows_exact < sl.t_start - tolerance(sl.t_start)).any(axis=1).sum()) * layer.channels)
        w = np.concatenate([_synapses(model, sl, g).reshape(-1, layer.channels) for g in _groups(layer)])
        w_pos, w_neg = np.maximum(w, 0.0), np.minimum(w, 0.0)
        shape = (N,) + tuple(layer.output_shape)
        if not sl.hidden:
            base = model.readout_base(_per_field(sl.alpha, layer, N), _per_field(layer.bias, layer, N),
                                      sl.t_start, sl.t_min)
            early_in = model.arrived(rows_lo, sl.t_start, sl.t_min)  # ≥ late_in: arrived falls with t
            late_in = model.arrived(rows_hi, sl.t_start, sl.t_min)
            z_hi = (base + early_in @ w_pos + late_in @ w_neg).reshape(N, -1)
            z_lo = (base + late_in @ w_pos + early_in @ w_neg).reshape(N, -1)
            continue
        alpha, theta = _per_field(sl.alpha, layer, N), _per_field(sl.threshold, layer, N)
        last_in = rows_hi.max(axis=1, initial=-np.inf)[:, None]
        if model.crosses_while_integrating:
            # V_hi and V_lo as potentials of 2F inputs at shared times: lo then hi.
            tau = np.concatenate([rows_lo, rows_hi], axis=1)
            t_early = _first_crossings(tau, np.concatenate([w_pos, w_neg]), alpha, theta, sl.t_start)
            t_late = _first_crossings(tau, np.concatenate([w_neg, w_pos]), alpha, theta, sl.t_start)
            # ϑ ≤ 0: V = 0 ≥ ϑ at the first event, which is the spike.  The 2F inputs above put
            # an event at every lo, so V_lo's first event is too early; the inputs' own times
            # at lo, then at hi, date the earliest and the latest first event.
            at_first = theta <= 0.0
            fields = np.flatnonzero(at_first.any(axis=1))
            if fields.size:
                for rows, t_bound in ((rows_lo, t_early), (rows_hi, t_late)):
                    first = _first_crossings(rows[fields], w, alpha[fields], theta[fields], sl.t_start)
                    t_bound[fields] = np.where(at_first[fields], first, t_bound[fields])
            after_inputs.append(bool(np.all(~at_first & (t_early >= last_in))))
        else:  # fires after its inputs, from V(t_min^(n)) (silent: +inf)
            early_in = model.arrived(rows_lo, sl.t_start, sl.t_min)
            late_in = model.arrived(rows_hi, sl.t_start, sl.t_min)
            t_early = model.spike_time(theta, alpha, sl.t_min, sl.t_max, early_in @ w_pos + late_in @ w_neg)
            t_late = model.spike_time(theta, alpha, sl.t_min, sl.t_max, late_in @ w_pos + early_in @ w_neg)
            after_inputs.append(True)
        lo_n = np.minimum(t_early, sl.t_max).reshape(shape)
        hi_n = (np.minimum(t_late, sl.t_max) + dt).reshape(shape)
        exact = np.minimum(spike_times[hidden_index], sl.t_max)
        bounds.append(np.maximum(np.minimum(hi_n, sl.t_max) - exact, exact - lo_n))
        # exactsnn's neurons that fire before their last input (its own input times; a model
        # that does not cross while integrating ignores the inputs after t_min^(n)).
        if model.crosses_while_integrating:
            last_exact = rows_exact.max(axis=1, initial=-np.inf).reshape(shape[:-1] + (1,))
            tol = tolerance(sl.t_max)
            early.append(int(((exact < last_exact - tol) & (exact < sl.t_max - tol)).sum()))
        else:
            early.append(0)
        hidden_index += 1
        pad = sl.t_max if zero_spikes else np.inf
        times_lo[n] = _pool_times(layer.pools, lo_n, pad - h)
        times_hi[n] = _pool_times(layer.pools, hi_n, pad + h)
        times_exact[n] = _pool_times(layer.pools, spike_times[hidden_index - 1], pad)
    logit_bound = np.maximum(z_hi - logits, logits - z_lo)
    # A sample's prediction is decided when the top class's lower bound beats every other
    # class's upper bound.
    top = np.argmax(logits, axis=1)
    samples = np.arange(len(top))
    others = z_hi.copy()
    others[samples, top] = -np.inf
    decided = z_lo[samples, top] > others.max(axis=1, initial=-np.inf)
    return _Intervals(bounds, logit_bound, decided, after_inputs, early, early_inputs)


def interval_bounds(net: SpikingNetwork, x, dt: float, spike_times: list, logits: np.ndarray):
    """Per-neuron bounds of |t_Brian2 − t_exactsnn| and per-logit bounds of |Δ logit|, for each sample.

    Interval arithmetic on the spike times (module docstring): every Brian2 input lies in an
    interval around its exact time, a neuron's potential between the potentials of its
    inputs' extreme times, and its spike between their first crossings (+ dt, the grid);
    pooling is monotone.  Valid in every regime, a crossing before the last input included.
    ``spike_times`` and ``logits`` are exactsnn's.  Returns (bounds per hidden layer,
    logit bounds, decided), ``decided`` (N,) True where the logit intervals rule out another
    prediction.
    """
    iv = _intervals(net, x, dt, spike_times, logits)
    return iv.bounds, iv.logit_bound, iv.decided


def crosscheck(net: SpikingNetwork, x, dt: float = 1e-3, engine: str = "fast"):
    """Run ``net`` in Brian2 and in exactsnn on ``x`` and compare.

    Returns a :class:`pandas.DataFrame` with one row per hidden layer (max and mean |Δt| of
    the spike times, spikes in each simulator, spikes Brian2 missed or added) and one row for
    the read-out (max and mean |Δ logit|, prediction agreement).  ``bound`` is the largest
    per-neuron bound of :func:`interval_bounds`; ``within_bound`` says whether *every*
    difference is within its own neuron's bound, ``a_priori`` is the sample-independent
    bound of :func:`error_bounds`, NaN for a layer where the intervals do not prove that every
    crossing up to it comes after the neuron's last input (then it does not apply).
    ``early_inputs`` counts the neurons (× samples) with an input before the layer's t_start,
    ``early_spikes`` exactsnn's spikes before the neuron's last input: both are 0 in the exact
    regime.  A silent neuron (a ``silent_zero`` model: B1) is compared as a spike at t_max
    (what it codes); ``missing``/``extra`` count neurons that fired in one simulator and not
    in the other beyond their bound's reach of t_max (α-model: any neuron without exactly one
    spike).  ``df.attrs`` holds the summary: ``agreement`` (fraction of samples with the same
    prediction), ``undecided`` (samples whose logit bounds allow another prediction),
    ``unexplained`` (different predictions on decided samples), ``max_abs_dt``,
    ``max_logit_diff``, ``within_bound``, ``dt``, ``samples``, ``neuron``, ``synapses``.
    """
    import pandas as pd

    from .simulator import simulate

    x = np.asarray(x, np.float64)
    model = net.model
    tol = 1e-9
    ref = simulate(net, x, engine=engine, record=True)
    run = run_brian2(net, x, dt)
    a_priori, a_priori_logit = error_bounds(net, dt)
    iv = _intervals(net, x, dt, ref.spike_times, ref.logits)
    applies = np.cumprod(iv.after_inputs).astype(bool)  # every layer up to this one
    rows = []
    for n, (sl, t_ref, t_b2, count, bound) in enumerate(
        zip(net.hidden_layers, ref.spike_times, run.spike_times, run.spike_counts, iv.bounds)
    ):
        diff = np.abs(np.minimum(t_b2, sl.t_max) - np.minimum(t_ref, sl.t_max))
        if model.silent_zero:  # firing in one and not the other is fine within the bound of t_max
            near_end = np.minimum(t_ref, sl.t_max) >= sl.t_max - bound - tol
            missing = int((np.isfinite(t_ref) & (count == 0) & ~near_end).sum())
            extra = int(((count > 1) | (~np.isfinite(t_ref) & (count == 1) & ~near_end)).sum())
        else:
            missing, extra = int((count == 0).sum()), int((count > 1).sum())
        rows.append({
            "layer": sl.layer.name, "kind": sl.layer.kind, "neurons": sl.neurons, "quantity": "spike time",
            "max_abs_diff": float(diff.max(initial=0.0)), "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
            "bound": float(bound.max(initial=0.0)), "a_priori": a_priori[n] if applies[n] else np.nan,
            "within": bool(np.all(diff <= bound + tol)),
            "spikes_exactsnn": int(np.isfinite(t_ref).sum()), "spikes_brian2": int(count.sum()),
            "missing": missing, "extra": extra, "deviating_exactsnn": int(ref.deviating[n]),
            "early_inputs": iv.early_inputs[n], "early_spikes": iv.early[n], "agreement": np.nan,
        })
    out = net.output
    ldiff = np.abs(run.logits - ref.logits)
    same = np.argmax(run.logits, 1) == ref.predictions
    agreement = float(np.mean(same)) if len(x) else 1.0
    rows.append({
        "layer": out.layer.name, "kind": out.layer.kind, "neurons": out.neurons, "quantity": "logit",
        "max_abs_diff": float(ldiff.max(initial=0.0)), "mean_abs_diff": float(ldiff.mean()) if ldiff.size else 0.0,
        "bound": float(iv.logit_bound.max(initial=0.0)), "a_priori": a_priori_logit if applies.all() else np.nan,
        "within": bool(np.all(ldiff <= iv.logit_bound + tol)),
        "spikes_exactsnn": 0, "spikes_brian2": 0, "missing": 0, "extra": 0, "deviating_exactsnn": 0,
        "early_inputs": iv.early_inputs[-1], "early_spikes": 0, "agreement": agreement,
    })
    top2 = np.sort(ref.logits, axis=1)[:, -2:] if ref.logits.shape[1] > 1 else np.zeros((len(x), 2))
    margin = top2[:, 1] - top2[:, 0]  # exactsnn's lead of the predicted class
    df = pd.DataFrame(rows)
    df["within_bound"] = df["within"] & (df["missing"] == 0) & (df["extra"] == 0)
    df = df.drop(columns="within")
    spikes = df.loc[df.quantity == "spike time", "max_abs_diff"]
    df.attrs.update(
        agreement=agreement,
        undecided=int((~iv.decided).sum()),
        unexplained=int((~same & iv.decided).sum()),
        # For samples predicted differently: exactsnn's margin between its two best classes,
        # and the sample's largest logit difference (a flip needs margin ≤ 2 |Δ logit|).
        differing_margin=float(margin[~same].max(initial=0.0)),
        differing_logit_diff=float(ldiff[~same].max(initial=0.0)),
        max_abs_dt=float(spikes.max()) if len(spikes) else 0.0,
        max_logit_diff=float(ldiff.max(initial=0.0)),
        within_bound=bool(df["within_bound"].all()),
        dt=float(dt),
        samples=int(len(x)),
        neuron=model.name,
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
            "spikes_exactsnn", "spikes_brian2", "missing", "extra", "early_inputs", "early_spikes", "agreement"]
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
