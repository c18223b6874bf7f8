"""The neuron models, each defined once and chosen once per network.

A :class:`~exactsnn.spiking.SpikingNetwork` names its model (``neuron``: "alpha" or "b1");
:func:`neuron_model` turns the name into the model's type, whose functions every engine,
the read-out, the Brian2 network, the HDF5 export and the plots use: input coding, synaptic
weights, thresholds, spike times, the certificate, the read-out and the potential.

* :class:`~exactsnn.neurons.alpha.AlphaNeuron` — the 2023 α-model (DESIGN §2): every neuron
  fires exactly once, a zero value at t_max.
* :class:`~exactsnn.neurons.b1.B1Neuron` — the later B1 model: silence codes zero.

What counts as a *deviating* spike is the same for both (:func:`deviates`).
"""

from __future__ import annotations


from .alpha import AlphaNeuron
from .b1 import B1Neuron

MODELS = {model.name: model for model in (AlphaNeuron, B1Neuron)}
NEURON_MODELS = tuple(MODELS)


def neuron_model(name: str):
    """The model type called ``name``."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown neuron model {name!r}: choose one of {', '.join(MODELS)}") from None


def tolerance(t_max: float) -> float:
    """The round-off allowance of a layer's spike times: 1e-9 relative to max(1, |t_max|)."""
    return 1e-9 * max(1.0, abs(t_max))


def deviates(spikes, ideal, t_min: float, tol: float):
    """Spikes that are not where the ReLU network says: t ≠ ``ideal`` = t_max − ReLU(W x̂ + b)
    (x̂ the values the actual input spikes code: an early crossing, a changed threshold) or
    t < t_min^(n) (a value beyond the window B_n).  A silent B1 neuron is compared as a spike
    at t_max.  Works on NumPy arrays and TensorFlow tensors alike."""
    return (abs(spikes - ideal) > tol) | (spikes < t_min - tol)


__all__ = ["AlphaNeuron", "B1Neuron", "MODELS", "NEURON_MODELS", "neuron_model", "deviates", "tolerance"]
