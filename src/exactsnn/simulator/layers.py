"""One layer of the simulation: its spikes from its inputs, on the compiled path (values in
TensorFlow, :mod:`.fastpath`) or in NumPy (spike-time noise, inputs outside their window, B1),
and the read-out.  Every spike time, threshold and read-out comes from the network's neuron
model (:mod:`exactsnn.neurons`)."""

from __future__ import annotations

import numpy as np

from .. import ops
from ..neurons import AlphaNeuron, B1Neuron, deviates, tolerance
from ..spiking import SpikingLayer
from .event import event_layer, event_neurons
from .fastpath import WALK_PRODUCTS, closed_form, compiled


def padded_inputs(sl: SpikingLayer, times: dict) -> list[np.ndarray]:
    """Input spike times per synapse group, delayed, with padded taps spiking at t_min^(n)
    (value 0); flattened for dense groups.  ``times`` maps layer index to pooled spike times."""
    out = []
    for g, delay in zip(sl.layer.groups, sl.group_delays()):
        t = np.asarray(times[g.source], np.float64)
        if delay:
            t = t + delay
        out.append(g.inputs(t, sl.t_min))
    return out


def arrived_sum(sl: SpikingLayer, inputs: list, model) -> np.ndarray:
    """Σ_groups W_ij a(t_j): what the inputs contribute per unit weight to a potential read at
    t_min, a(t) = the model's ``arrived`` (silent inputs, t = +inf, contribute 0)."""
    return sum(
        g.product(model.arrived(tp, sl.t_start, sl.t_min)) for g, tp in zip(sl.layer.groups, inputs)
    )


def b1_layer_spikes(sl: SpikingLayer, inputs: list):
    """Spike times of a B1 layer (+inf = silent, :meth:`B1Neuron.spike_time` from V(t_min^(n)))
    and ideal times t_max − ReLU(W x̂ + b).  A B1 neuron cannot fire while inputs arrive, so
    there is no early crossing to look for and both engines use this."""
    v = arrived_sum(sl, inputs, B1Neuron)
    spikes = B1Neuron.spike_time(sl.threshold, sl.alpha, sl.t_min, sl.t_max, v)
    return spikes, sl.t_max - np.maximum(v + sl.layer.bias, 0.0)


def layer_spikes(sl: SpikingLayer, inputs: list, engine: str = "fast", noisy_inputs: bool = False):
    """Spike times of a hidden α-model layer given its padded input times per synapse group.

    After a sample's last input (t_min^(n), or later with ``noisy_inputs``) the potential is a
    line, which crosses ϑ at the closed form; both engines take it there and look for
    crossings before that horizon only, the event engine for every neuron, the fast engine for
    the neurons its bound does not certify.  So the two agree to the last bit unless the bound
    is wrong.  Returns (spikes, ideal, certified, fallback) where ideal = t_max − ReLU(W x̂ + b)
    with x̂ = t_min − t_j the values the actual inputs code (a spike elsewhere, or before
    t_min, deviates).
    """
    layer = sl.layer
    groups = layer.groups
    s, pos_sum, neg_sum = sl.weight_sums
    one_minus = 1.0 - s
    w_x = sum(g.product(sl.t_min - tp) for g, tp in zip(groups, inputs))
    ideal = sl.t_max - np.maximum(w_x + layer.bias, 0.0)
    if engine not in ("fast", "event"):
        raise ValueError(f"unknown engine {engine!r}: use 'fast' or 'event'")
    alpha, theta = sl.alpha, sl.threshold
    spikes = AlphaNeuron.spike_time(closed_form(sl), w_x, sl.t_max)
    batch = len(inputs[0])
    if noisy_inputs:  # inputs may arrive after t_min^(n)
        last = np.max([tp.reshape(batch, -1).max(axis=1) for tp in inputs], axis=0)
        horizon = np.maximum(last, sl.t_min)
    else:
        horizon = np.full(batch, sl.t_min)
    if engine == "event":
        early = event_layer(sl, inputs, horizon)
        crossed = ~np.isnan(early)
        spikes[crossed] = early[crossed]
        return spikes, ideal, 0, spikes.size
    # Integration starts at the earliest event: t_start, or an input that came before it.
    first = np.min([tp.reshape(batch, -1).min(axis=1) for tp in inputs], axis=0)
    t_lo = np.minimum(first, sl.t_start)
    expand = (batch,) + (1,) * len(layer.output_shape)
    if noisy_inputs:
        # The bounds run to the sample's last input.
        T = horizon.reshape(expand)
        certified = np.zeros((batch,) + layer.output_shape, bool)
        channels = np.arange(layer.channels)
    else:
        T = sl.t_min
        width = sl.t_min - sl.t_start
        # All excitation at t_start still stays below ϑ (for samples without earlier inputs).
        static = np.broadcast_to(AlphaNeuron.static_certificate(alpha, pos_sum, s, width, theta),
                                 (batch,) + layer.output_shape)
        certified = static & (first >= sl.t_start).reshape(expand)
        channels = np.flatnonzero(~certified.reshape(-1, layer.channels).all(axis=0))
    if channels.size:
        # The certificate of AlphaNeuron.certified on [t_lo, T]: S = T − t_start, S' = T − t_lo.
        a, th = alpha[..., channels], theta[..., channels]
        S = T - sl.t_start
        S_lo = T - t_lo.reshape(expand)
        reach = [T - tp for tp in inputs]
        j_pos_x = sum(g.product(x, np.maximum(g.weight[..., channels], 0.0)) for g, x in zip(groups, reach))
        if noisy_inputs:
            j_x = sum(g.product(x, g.weight[..., channels]) for g, x in zip(groups, reach))
        else:
            j_x = w_x[..., channels]  # x_j = t_min − t_j: W x is already known
        cm = one_minus[channels]
        a0 = a * S + j_pos_x / cm
        a1 = a * S + j_x / cm
        b1 = (j_x - j_pos_x - S_lo * neg_sum[channels]) / cm
        certified[..., channels] |= AlphaNeuron.certified(a0, a1, b1, th)
    index = np.nonzero(~certified)
    if index[0].size:
        early = event_neurons(sl, inputs, index, horizon)
        crossed = ~np.isnan(early)
        spikes[tuple(i[crossed] for i in index)] = early[crossed]
    n_fallback = int(index[0].size)
    return spikes, ideal, spikes.size - n_fallback, n_fallback


def compiled_layer(sl: SpikingLayer, values: dict, times, engine: str = "fast") -> tuple:
    """One hidden α-model layer on the compiled path (:mod:`.fastpath`).

    ``values`` maps layer index to its pooled values x = t_max − t (a float64 tensor) and an
    upper bound of them; ``times[source]`` gives a source's spike times as a NumPy array.
    Returns (x, certified, fallback, deviating, non-zero, upper bound of x).  Neurons the
    compiled certificate leaves (with ``engine="event"``: all neurons) go through the
    event-driven solver (:func:`.event.event_neurons`) up to t_min^(n); after it the closed form of
    the compiled step stands.  A layer with inputs outside its input window (an upstream
    deviation) goes through :func:`layer_spikes`, which then looks up to the last input.
    """
    tf = ops._tf()
    sources = [g.source for g in sl.layer.groups]
    tol = tolerance(sl.t_max)
    # A delayed skip's bound B_s ≤ B_{n-1} = S holds for the windows as chosen; computed from
    # the rounded end points they may differ by an ulp, which is no input outside the window.
    if max(values[s][1] for s in sources) > sl.t_min - sl.t_start + 4.0 * np.spacing(sl.t_min):
        spikes, ideal, cert, fall = layer_spikes(sl, padded_inputs(sl, times), engine, noisy_inputs=True)
        deviating = int(deviates(spikes, ideal, sl.t_min, tol).sum())
        x = sl.t_max - spikes
        return tf.constant(x), cert, fall, deviating, int((x > tol).sum()), float(x.max())
    layer = compiled(sl)
    srcs = tuple(values[s][0] for s in sources)
    if engine == "event":  # its own plan: only x and z are read
        x, counts, where, x_left, ideal, z = layer.step(srcs, *layer.plan)
        return _event_on_values(sl, srcs, x, z, tol)
    x, counts, where, x_left, ideal, z = _certified_step(layer, srcs)
    nonzero, deviating, beyond, n_left = (int(c) for c in counts.numpy()[:4])
    bound, n_fallback = (np.inf if beyond else sl.window), 0
    size = int(np.prod(x.shape))
    if n_left:
        inputs = [np.asarray(values[s][0]) for s in sources]  # views
        # Every input is inside its window here: none comes after t_min^(n), the horizon.
        # NaN: no crossing before it, the closed form stands.
        early = event_neurons(sl, inputs, tuple(where.numpy().T), horizon=sl.t_min, values=True)
        n_fallback = len(early)
        crossed = ~np.isnan(early)
        x_left = x_left.numpy()
        if crossed.any():
            at, solved = tf.boolean_mask(where, crossed), sl.t_max - early[crossed]
            x = tf.tensor_scatter_nd_update(x, at, solved)
            x_left[crossed] = solved
        # Count the neurons the compiled certificate left, with their final spikes.
        ideal = ideal.numpy()
        deviating += int(deviates(sl.t_max - x_left, sl.t_max - ideal, sl.t_min, tol).sum())
        nonzero += int((x_left > tol).sum())
        if np.any(x_left > sl.window):
            bound = np.inf
    return x, size - n_fallback, n_fallback, deviating, nonzero, bound


def _certified_step(layer, srcs: tuple):
    """The compiled step with the majorants the layer's plan (convex, bins, groups) names, the
    plan updated from the counts.  Where the convex majorant alone leaves more than 1 % of the
    neurons, the edge majorant is added at its cheapest plan; from there a layer climbs its
    ``edge_plans`` while the neurons left would cost more to walk (``WALK_PRODUCTS`` products
    each) than the next plan's extra products (two plans at a time while ten times more), and
    the batch is stepped again.  After a batch
    with both majorants, the one that certified fewer than 0.1 % of the neurons by itself is
    dropped.  Which majorant certifies a neuron never changes its spike time, only whether it
    is walked."""
    while True:
        # A batch stepped again frees the last step's tensors first, not after the new step:
        # ResNet50's conv2_block1_out at 224×224, first batch of 16, peaked 673 MiB above the
        # RSS before it instead of 839.
        step = None
        step = layer.step(srcs, *layer.plan)
        counts = step[1].numpy()
        size = int(np.prod(step[0].shape))
        convex, bins, groups = layer.plan
        if not layer.edges_help:
            break
        if not bins:
            if counts[3] <= 0.01 * size:
                break
            layer.use((convex, *layer.edge_plans[0]))
            continue
        plans = layer.edge_plans
        k = plans.index((bins, groups)) if (bins, groups) in plans else len(plans) - 1
        if k + 1 == len(plans):
            break
        extra = _product_count(plans[k + 1]) - _product_count(plans[k])
        if counts[3] * WALK_PRODUCTS <= extra * size:
            break
        # Far from it (ten times as many left): skip a plan, one compilation fewer.
        far = counts[3] * WALK_PRODUCTS > 10 * extra * size and k + 2 < len(plans)
        layer.use((convex, *plans[k + 2 if far else k + 1]))
    if convex and bins:
        if counts[4] <= 0.001 * size:
            layer.use((False, bins, groups))
        elif counts[5] <= 0.001 * size:
            layer.edges_help = False
            layer.use((True, 0, 1))
    return step


def _product_count(plan: tuple) -> int:
    """Float32 products of an edge plan (bins, groups)."""
    bins, groups = plan
    return bins - 1 + groups


def _event_on_values(sl: SpikingLayer, srcs: tuple, closed, z, tol: float) -> tuple:
    """The event engine on the compiled path: every neuron walks its inputs up to t_min^(n);
    where it has not crossed by then, the closed form ``closed`` of the compiled step (the
    fast engine's own) stands; z = W x + b of the same step gives the ReLU reference.
    Returns what :func:`compiled_layer` returns."""
    tf = ops._tf()
    x = closed.numpy().copy()
    relu = np.maximum(z.numpy(), 0.0)
    early = event_layer(sl, [np.asarray(v) for v in srcs], np.full(len(x), sl.t_min), values=True)
    crossed = ~np.isnan(early)
    x[crossed] = sl.t_max - early[crossed]
    deviating = int(deviates(sl.t_max - x, sl.t_max - relu, sl.t_min, tol).sum())
    bound = np.inf if np.any(x > sl.window) else sl.window
    return tf.constant(x), 0, x.size, deviating, int((x > tol).sum()), bound


def readout(out: SpikingLayer, inputs: list, model) -> np.ndarray:
    """Potential of the read-out neurons at t_min^(L), flattened to (N, classes): the model's
    base (α-model: α (t_min^(L) − t_min^(L-1)); B1: b) + Σ_j W_ij a(t_j), a the model's
    ``arrived`` (α-model: (t_min^(L) − t_j)⁺ over the raw t_j)."""
    v = model.readout_base(out.alpha, out.layer.bias, out.t_start, out.t_min) + arrived_sum(out, inputs, model)
    return v.reshape(len(v), -1)


def synaptic_events(sl: SpikingLayer, times: dict) -> float:
    """Synaptic events caused by a layer's input spikes: Σ over real synapses whose presynaptic neuron fired."""
    total = 0.0
    for g in sl.layer.groups:
        t = np.asarray(times[g.source], np.float64)
        total += g.synaptic_events(np.isfinite(t).astype(np.float64))
    return total
