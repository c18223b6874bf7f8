"""Rule measure: the metrics of one benchmark (one row of the results table)."""

import numpy as np

from wfutil import read_json, start, write_json

log = start(snakemake)

import exactsnn
from exactsnn import serialize
from exactsnn.measure import per_layer, summarize

gathered = serialize.load(snakemake.input.simulation)
network = exactsnn.load(snakemake.input.snn)
network_b1 = exactsnn.load(snakemake.input.snn_b1)
phase1 = read_json(snakemake.input.phase1)
with np.load(snakemake.input.reference) as f:
    reference = {k: f[k] for k in ("labels", "original_predictions", "scaled_predictions")}
    if not f["has_labels"]:
        reference["labels"] = None  # PASS: agreement only

metrics = summarize(
    reference["original_predictions"],
    gathered["simulation"],
    labels=reference["labels"],
    scaled_predictions=reference["scaled_predictions"],
    net=network,
)
b1 = summarize(
    reference["original_predictions"],
    gathered["simulation_b1"],
    labels=reference["labels"],
    net=network_b1,
)
B1_COLUMNS = ("accuracy_snn", "agreement", "spikes_per_neuron", "synaptic_events", "deviating_spikes")
row = {
    "dataset": snakemake.params.dataset,
    "model": snakemake.params.model,
    "test_samples": len(reference["original_predictions"]),
    **metrics,
    **{f"{key}_b1": b1[key] for key in B1_COLUMNS},
    "runtime_s": gathered["seconds"],
    "runtime_b1_s": gathered["seconds_b1"],
    "phase1_s": phase1["seconds_preprocess"],
    "X": phase1["X"],
    "layers": per_layer(gathered["simulation"], network),
}
log.info("%s", row)
write_json(snakemake.output.metrics, row)
