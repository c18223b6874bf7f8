"""The loop over the network graph: inputs coded as spikes, every hidden layer in order
(:mod:`.layers`), noise, recording, and the read-out."""

from __future__ import annotations

import numpy as np

from .. import ops
from ..checks import check_simulation
from ..neurons import deviates, tolerance
from ..spiking import SpikingNetwork
from .fastpath import compiled, forget_if_edited
from .layers import b1_layer_spikes, layer_spikes, padded_inputs, readout, synaptic_events, compiled_layer
from .result import Simulation


def simulate(
    net: SpikingNetwork,
    x,
    *,
    engine: str = "fast",
    noise_sigma: float = 0.0,
    noise_seed: int = 0,
    batch_size: int = 256,
    progress: bool = False,
    sample_offset: int = 0,
    record: bool = False,
    relu_reference: bool = False,
    clip_inputs: bool = False,
    allow_outside_range: bool = False,
) -> Simulation:
    """Run the spiking network on raw inputs ``x`` (the domain the original model takes).

    ``noise_sigma`` adds N(0, σ²) to every spike time (inputs too, clipped at ≥ 0); the
    noise of sample k is drawn from ``(noise_seed, sample_offset + k)`` — the inputs' draw first,
    then one per hidden layer in order, each spike's before pooling — so splitting a data set
    into parts gives the same result as one run.  ``relu_reference`` also runs the
    scaled ReLU network and reports max |t_spike − (t_max − x)| per layer.  Inputs must be
    finite, of the network's shape and inside its input range, or are clipped to it with
    ``clip_inputs``, or are simulated as they are with ``allow_outside_range`` (the α-model
    outside its exact regime; :func:`exactsnn.checks.check_simulation`).
    """
    x = check_simulation(net, x, clip=clip_inputs, allow_outside=allow_outside_range, noise_sigma=noise_sigma)
    hidden = net.hidden_layers
    n_hidden = len(hidden)
    deviating = np.zeros(n_hidden, np.int64)
    spikes_total = np.zeros(n_hidden, np.int64)
    nonzero = np.zeros(n_hidden, np.int64)
    max_err = np.zeros(n_hidden)
    certified = fallback = 0
    model = net.model
    # Every synapse carries one event per sample unless silence codes zero (then: only fired inputs).
    events = 0.0 if model.silent_zero else float(len(x) * sum(sl.layer.synapses for sl in net.layers))
    logits, recorded = [], [[] for _ in hidden]
    starts = range(0, len(x), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"simulate ({engine})", unit="batch")
    for sl in net.layers:
        forget_if_edited(sl)
    last_use = net.scaled_network().last_use()
    # Noise-free α-model networks keep values x = t_max − t in TensorFlow (.fastpath).
    compiled_path = model.crosses_while_integrating and noise_sigma == 0
    t_maxes = {-1: 1.0, **{n: sl.t_max for n, sl in enumerate(hidden)}}
    if engine not in ("fast", "event"):
        raise ValueError(f"unknown engine {engine!r}: use 'fast' or 'event'")
    for start in starts:
        xb = np.asarray(x[start : start + batch_size], np.float64)
        rngs = [np.random.default_rng([noise_seed, sample_offset + start + k]) for k in range(len(xb))] if noise_sigma > 0 else None
        t = net.input_times(xb)
        if rngs:
            t = np.maximum(t + _noise(rngs, t.shape[1:], noise_sigma), 0.0)
        for pool in net.input_pools:
            t = np.asarray(pool.on_times(t, 1.0))
        times = {-1: t}
        if relu_reference:
            h = (xb - net.input_range[0]) / (net.input_range[1] - net.input_range[0])
            for pool in net.input_pools:
                h = np.asarray(pool.on_values(h))
            values = {-1: h}
        if compiled_path:
            x0 = 1.0 - t
            # An input after t_min^(1) (a raw value below the input range) takes the NumPy path.
            bound = float(x0.max(initial=0.0)) if np.all(x0 >= 0.0) else np.inf
            x0 = ops._tf().constant(x0)
            state = {-1: (x0, bound)}
            times = _TimesOf(state, t_maxes)
        for n, sl in enumerate(hidden):
            tol = tolerance(sl.t_max)
            if compiled_path:
                values_out, cert, fall, dev, nz, bound = compiled_layer(sl, state, times, engine)
                certified += cert
                fallback += fall
                deviating[n] += dev
                nonzero[n] += nz
                spikes_total[n] += cert + fall
                spikes = sl.t_max - values_out.numpy() if record or relu_reference else None
                compare = spikes
            else:
                inputs = padded_inputs(sl, times)
                if model.silent_zero:
                    events += synaptic_events(sl, times)
                if not model.crosses_while_integrating:
                    spikes, ideal = b1_layer_spikes(sl, inputs)
                    fired = np.isfinite(spikes)
                    compare = np.where(fired, spikes, sl.t_max)
                else:
                    spikes, ideal, cert, fall = layer_spikes(sl, inputs, engine, noisy_inputs=noise_sigma > 0)
                    certified += cert
                    fallback += fall
                    fired, compare = np.ones(spikes.shape, bool), spikes
                deviating[n] += int(deviates(compare, ideal, sl.t_min, tol).sum())
                spikes_total[n] += int(fired.sum())
                nonzero[n] += int((compare < sl.t_max - tol).sum())
            if relu_reference:
                h = np.maximum(sl.layer.apply_groups(values), 0.0)
                max_err[n] = max(max_err[n], float(np.abs(compare - (sl.t_max - h)).max(initial=0.0)))
                for pool in sl.layer.pools:
                    h = np.asarray(pool.on_values(h))
                values[n] = h
            if rngs:
                spikes = spikes + _noise(rngs, spikes.shape[1:], noise_sigma)
            if record:
                recorded[n].append(spikes)
            if compiled_path:
                if sl.layer.pools:
                    values_out = compiled(sl).pool(values_out)
                state[n] = (values_out, bound)
            else:
                for pool in sl.layer.pools:
                    spikes = np.asarray(pool.on_times(spikes, sl.t_max))
                times[n] = spikes
            for src in [s for s, user in last_use.items() if user == n]:
                (state if compiled_path else times).pop(src, None)
        if compiled_path:
            out = compiled(net.output)
            logits.append(out.logits(tuple(state[g.source][0] for g in net.output.layer.groups)))
            continue
        inputs = padded_inputs(net.output, times)
        if model.silent_zero:
            events += synaptic_events(net.output, times)
        logits.append(readout(net.output, inputs, model))
    n_out = net.output.layer.output_shape
    return Simulation(
        logits=np.concatenate(logits) if logits else np.zeros((0, int(np.prod(n_out)))),
        deviating=deviating,
        spikes=spikes_total,
        nonzero=nonzero,
        neurons=np.array([sl.neurons for sl in hidden], np.int64),
        synaptic_events=events,
        certified=certified,
        fallback=fallback,
        max_time_error=max_err if relu_reference else np.zeros(0),
        spike_times=[np.concatenate(r) for r in recorded] if record and logits else [],
        engine=engine,
    )


class _TimesOf:
    """Spike times t = t_max − x of the compiled path's values, as NumPy arrays, on demand
    (for the NumPy certificates, the event-driven solver and the read-out)."""

    def __init__(self, state: dict, t_maxes: dict):
        self.state, self.t_maxes = state, t_maxes

    def __getitem__(self, source: int) -> np.ndarray:
        return self.t_maxes[source] - np.asarray(self.state[source][0])


def _noise(rngs, shape, sigma) -> np.ndarray:
    return np.stack([rng.normal(0.0, sigma, size=shape) for rng in rngs])
