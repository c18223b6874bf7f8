"""Measurements of a simulation run: accuracy, agreement, spikes, synaptic events, latency;
and the reference they are measured against, the original network's predictions (Phase 1)."""

from __future__ import annotations

import logging
import time

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


def original_logits(model, batch_size: int = 256):
    """The original network's float64 logits as a function of raw inputs, its float64 form
    built once: a Keras model's float64 copy (:func:`exactsnn.importers.keras.float64_logits`),
    or for an ``onnx.ModelProto`` the float64 evaluation of its import (:mod:`exactsnn.evaluate`;
    onnxruntime would compute in float32)."""
    from .importers import _is_onnx_model

    if _is_onnx_model(model):
        from .evaluate import evaluate
        from .importers.onnx import import_onnx

        graph = import_onnx(model)
        return lambda x: evaluate(graph, x, batch_size)
    from .importers.keras import float64_logits

    return float64_logits(model, batch_size)


def reference_predictions(original, network, chunks) -> dict:
    """Logits of the original network (a function of raw inputs, :func:`original_logits`) and
    of the scaled one (:class:`exactsnn.preprocess.PreprocessedNetwork`) on ``chunks`` of the
    test set, pairs (inputs, labels or None) read one at a time, so that only one chunk is in
    memory; labels −1 where there are none, and the seconds each network took.
    :func:`gather_reference` joins the parts of a test set."""
    log = logging.getLogger(__name__)
    classes = int(np.prod(network.layers[-1].output_shape))
    out = {"original_logits": [np.zeros((0, classes))], "scaled_logits": [np.zeros((0, classes))],
           "labels": [np.zeros(0, np.int64)]}
    seconds = {"original": 0.0, "scaled": 0.0}
    for x, y in chunks:
        for key, net in (("original", original), ("scaled", network.forward)):
            started = time.perf_counter()
            out[f"{key}_logits"].append(net(x))
            seconds[key] += time.perf_counter() - started
        out["labels"].append(np.full(len(x), -1) if y is None else np.asarray(y))
        log.info("reference predictions: %d test samples", sum(len(v) for v in out["labels"]))
    part = {key: np.concatenate(value) for key, value in out.items()}
    part["labels"] = part["labels"].astype(np.int64)
    return {**part, "seconds_original": seconds["original"], "seconds_scaled": seconds["scaled"]}


def gather_reference(parts: list[dict], has_labels: bool) -> dict:
    """The reference of a whole test set from its parts (:func:`reference_predictions`, in
    order): logits, predictions and labels as ``results/phase1/.../reference.npz`` holds them."""
    joined = {key: np.concatenate([part[key] for part in parts]) for key in ("original_logits", "scaled_logits", "labels")}
    return {
        "original_logits": joined["original_logits"],
        "scaled_logits": joined["scaled_logits"],
        "original_predictions": joined["original_logits"].argmax(axis=1),
        "scaled_predictions": joined["scaled_logits"].argmax(axis=1),
        "labels": joined["labels"],
        "has_labels": np.bool_(has_labels and len(joined["labels"]) > 0),
    }


def reference_summary(reference: dict) -> dict:
    """Accuracy of the original and the scaled network (None without labels), their agreement
    and the largest difference of their logits: Phase 1's check that scaling changed nothing."""
    original, scaled = reference["original_predictions"], reference["scaled_predictions"]
    labels = reference["labels"] if reference["has_labels"] else None
    return {
        "test_samples": len(original),
        "accuracy_original": accuracy(original, labels) if labels is not None else None,
        "accuracy_scaled": accuracy(scaled, labels) if labels is not None else None,
        "agreement_scaled": agreement(scaled, original),
        "max_logit_error": float(np.max(np.abs(reference["original_logits"] - reference["scaled_logits"]), initial=0.0)),
    }


def read_reference(path, n: int | None = None) -> dict:
    """The reference Phase 1 wrote (:func:`gather_reference`, ``reference.npz``) for its first
    ``n`` test samples (None = all): the labels (None without: PASS, agreement only) and the
    original's and the scaled network's predictions."""
    with np.load(path, allow_pickle=False) as f:
        return {
            "labels": f["labels"][:n] if f["has_labels"] else None,
            "original_predictions": f["original_predictions"][:n],
            "scaled_predictions": f["scaled_predictions"][:n],
        }


# Of a benchmark's further neuron models (after the paper's α-model), the columns the results
# table has, each with the model's name as suffix.
OTHER_MODEL_COLUMNS = ("accuracy_snn", "agreement", "spikes_per_neuron", "synaptic_events", "deviating_spikes")


def benchmark_metrics(reference: dict, simulations: dict, networks: list[SpikingNetwork]) -> dict:
    """The metrics of one benchmark's row of the results table: :func:`summarize` of its first
    network (the paper's α-model), :data:`OTHER_MODEL_COLUMNS` of every other one, and the first
    one's :func:`per_layer` under ``layers``.  ``reference`` is :func:`read_reference`'s,
    ``simulations`` maps each network's ``neuron`` to its :class:`Simulation` of the test set."""
    main, others = networks[0], networks[1:]
    metrics = {
        "test_samples": len(reference["original_predictions"]),
        **summarize(reference["original_predictions"], simulations[main.neuron], labels=reference["labels"],
                    scaled_predictions=reference["scaled_predictions"], net=main),
    }
    for network in others:
        other = summarize(reference["original_predictions"], simulations[network.neuron], labels=reference["labels"],
                          net=network)
        metrics.update({f"{key}_{network.neuron}": other[key] for key in OTHER_MODEL_COLUMNS})
    metrics["layers"] = per_layer(simulations[main.neuron], main)
    return metrics


ROBUSTNESS_KNOBS = ("zeta", "noise_sigma", "alpha_sigma")


def robustness_trials(network, x, reference: dict, knob: str, value: float, *, zeta: float, trials: int,
                      seed: int, engine: str, batch_size: int) -> list[dict]:
    """The robustness study at one setting: the spiking network of the scaled ``network``
    (:class:`exactsnn.preprocess.PreprocessedNetwork`) with ``knob`` set to ``value`` (ζ, the
    σ of Gaussian spike-time noise, or the σ of the spread of the α factors; the others at
    ζ = ``zeta`` and 0) simulated on ``x`` and measured against ``reference``
    (:func:`read_reference`).  ζ alone is deterministic, so it gets one trial; noise and α
    spread get ``trials`` seeds ``seed``, ``seed + 1``, ...  One row per trial, with its
    settings, metrics and simulation seconds."""
    from .simulator import simulate
    from .spiking import spiking_network

    if knob not in ROBUSTNESS_KNOBS:
        raise ValueError(f"robustness knob {knob!r} is not one of {ROBUSTNESS_KNOBS}")
    rows = []
    for trial in range(1 if knob == "zeta" else trials):
        settings = {"zeta": zeta, "noise_sigma": 0.0, "alpha_sigma": 0.0, knob: value}
        snn = spiking_network(network, zeta=settings["zeta"], alpha_sigma=settings["alpha_sigma"],
                              alpha_seed=seed + trial)
        started = time.perf_counter()
        simulation = simulate(snn, x, engine=engine, batch_size=batch_size, noise_sigma=settings["noise_sigma"],
                              noise_seed=seed + trial)
        seconds = time.perf_counter() - started
        metrics = summarize(reference["original_predictions"], simulation, labels=reference["labels"],
                            scaled_predictions=reference["scaled_predictions"], net=snn)
        rows.append({
            "knob": knob, "value": value, "trial": trial, "seed": seed + trial, **settings, "test_samples": len(x),
            **{key: metrics[key] for key in ("accuracy_original", "accuracy_snn", "agreement", "latency",
                                             "deviating_spikes")},
            "runtime_s": seconds,
        })
    return rows
