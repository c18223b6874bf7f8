"""Rule measure: the metrics of one benchmark (one row of the results table)."""

import numpy as np

from wfutil import read_json, start, write_json

log = start(snakemake)

import exactsnn
from exactsnn import serialize
from exactsnn.measure import per_layer, summarize

gathered = serialize.load(snakemake.input.simulation)
networks = [exactsnn.load(path) for path in snakemake.input.networks]
phase1 = read_json(snakemake.input.phase1)
with np.load(snakemake.input.reference) as f:
    reference = {k: f[k] for k in ("labels", "original_predictions", "scaled_predictions")}
    if not f["has_labels"]:
        reference["labels"] = None  # PASS: agreement only

# The first model (the paper's α-model) gives the table's main columns; every other model
# adds these columns with its name as a suffix.
OTHER_MODEL_COLUMNS = ("accuracy_snn", "agreement", "spikes_per_neuron", "synaptic_events", "deviating_spikes")
main, others = networks[0], networks[1:]
metrics = summarize(
    reference["original_predictions"],
    gathered["simulations"][main.neuron],
    labels=reference["labels"],
    scaled_predictions=reference["scaled_predictions"],
    net=main,
)
row = {
    "dataset": snakemake.params.dataset,
    "model": snakemake.params.model,
    "test_samples": len(reference["original_predictions"]),
    **metrics,
}
for network in others:
    other = summarize(
        reference["original_predictions"], gathered["simulations"][network.neuron], labels=reference["labels"], net=network
    )
    row.update({f"{key}_{network.neuron}": other[key] for key in OTHER_MODEL_COLUMNS})
row["runtime_s"] = gathered["seconds"][main.neuron]
row.update({f"runtime_{network.neuron}_s": gathered["seconds"][network.neuron] for network in others})
row.update({
    "phase1_s": phase1["seconds_preprocess"],
    "X": phase1["X"],
    "layers": per_layer(gathered["simulations"][main.neuron], main),
})
log.info("%s", row)
write_json(snakemake.output.metrics, row)
