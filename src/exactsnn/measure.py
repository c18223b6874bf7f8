"""Measurements of a simulation run: accuracy, agreement, spikes, synaptic events, latency."""

from __future__ import annotations

import numpy as np

from .simulator import Simulation
from .spiking import SpikingNetwork


def accuracy(predictions, labels) -> float:
    """Fraction of predictions equal to the labels (NaN without labels)."""
    if labels is None:
        return float("nan")
    predictions, labels = np.asarray(predictions), np.asarray(labels).reshape(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.shape[0]} predictions but {labels.shape[0]} labels")
    return float(np.mean(predictions == labels)) if len(labels) else float("nan")


def agreement(predictions, reference) -> float:
    """Fraction of inputs on which the SNN predicts the class the original ReLU network predicts."""
    predictions, reference = np.asarray(predictions), np.asarray(reference)
    if predictions.shape != reference.shape:
        raise ValueError(f"{predictions.shape[0]} SNN predictions but {reference.shape[0]} reference predictions")
    return float(np.mean(predictions == reference)) if len(reference) else float("nan")


def summarize(
    original_predictions,
    sim: Simulation,
    net: SpikingNetwork,
    labels=None,
    scaled_predictions=None,
) -> dict:
    """The results-table row of one run (per-sample quantities are means over the samples)."""
    n = max(sim.n_samples, 1)
    spikes = float(sim.spikes.sum()) / n
    row = {
        "test_samples": sim.n_samples,
        "accuracy_original": accuracy(original_predictions, labels),
        "accuracy_scaled": accuracy(scaled_predictions, labels) if scaled_predictions is not None else float("nan"),
        "accuracy_snn": accuracy(sim.predictions, labels),
        "agreement": agreement(sim.predictions, original_predictions),
        "latency": net.latency,
        "hidden_neurons": net.hidden_neurons,
        "spikes_per_neuron": spikes / net.hidden_neurons if net.hidden_neurons else float("nan"),
        "synaptic_events": sim.synaptic_events / n,
        "relu_macs": net.relu_macs,
        "nonzero_fraction": float(sim.nonzero.sum()) / (n * max(net.hidden_neurons, 1)),
        "deviating_spikes": int(sim.deviating.sum()),
        "certified_neurons": sim.certified,
        "fallback_neurons": sim.fallback,
    }
    if sim.max_time_error.size:
        row["max_time_error"] = float(sim.max_time_error.max())
    return row


def per_layer(sim: Simulation, net: SpikingNetwork) -> list[dict]:
    """Per hidden layer: window, X_n, neurons, spikes, non-zero fraction, deviations, time error."""
    n = max(sim.n_samples, 1)
    rows = []
    for i, sl in enumerate(net.hidden_layers):
        rows.append({
            "layer": sl.layer.name,
            "t_min": sl.t_min,
            "t_max": sl.t_max,
            "X": float(net.X[i]),
            "neurons": int(sim.neurons[i]),
            "spikes_per_sample": float(sim.spikes[i]) / n,
            "nonzero_per_sample": float(sim.nonzero[i]) / n,
            "deviating": int(sim.deviating[i]),
            "max_time_error": float(sim.max_time_error[i]) if sim.max_time_error.size else float("nan"),
        })
    return rows
