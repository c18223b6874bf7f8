"""What one simulation run produced (a plain, saveable object)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..serialize import register


@register
@dataclass
class Simulation:
    """What one simulation run produced.

    Counts are totals over the samples; per-layer arrays are indexed by hidden layer.
    A spike *deviates* when it is not at t_max − ReLU(W x̂ + b) inside the window
    [t_min, t_max], x̂ the values its actual input spikes code (an early crossing, or a
    value beyond the window B_n).
    """

    logits: np.ndarray  # (N, classes)
    deviating: np.ndarray  # (hidden layers,)
    spikes: np.ndarray  # (hidden layers,) spikes emitted
    nonzero: np.ndarray  # (hidden layers,) spikes before t_max (non-zero values)
    neurons: np.ndarray  # (hidden layers,) neurons per sample
    synaptic_events: float  # total over samples
    certified: int = 0
    fallback: int = 0
    max_time_error: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (hidden layers,) vs ReLU
    spike_times: list = field(default_factory=list)  # per hidden layer (N, *shape) when recorded
    engine: str = "fast"

    @property
    def n_samples(self) -> int:
        return len(self.logits)

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.logits, axis=1)

    @staticmethod
    def concat(parts: list["Simulation"]) -> "Simulation":
        """Gather the simulations of consecutive parts of a data set."""
        if not parts:
            raise ValueError("nothing to gather")
        first = parts[0]
        errs = [p.max_time_error for p in parts if p.max_time_error.size]
        return Simulation(
            logits=np.concatenate([p.logits for p in parts]),
            deviating=sum(p.deviating for p in parts),
            spikes=sum(p.spikes for p in parts),
            nonzero=sum(p.nonzero for p in parts),
            neurons=first.neurons,
            synaptic_events=float(sum(p.synaptic_events for p in parts)),
            certified=int(sum(p.certified for p in parts)),
            fallback=int(sum(p.fallback for p in parts)),
            max_time_error=np.max(errs, axis=0) if len(errs) == len(parts) else np.zeros(0),
            spike_times=[np.concatenate(ts) for ts in zip(*[p.spike_times for p in parts])]
            if all(p.spike_times for p in parts) else [],
            engine=first.engine,
        )
