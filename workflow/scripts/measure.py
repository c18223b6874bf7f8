"""Rule measure: the metrics of one benchmark (one row of the results table)."""

import numpy as np

from wfutil import read_json, start, write_json

log = start(snakemake)

import exactsnn
from exactsnn import serialize
from exactsnn.measure import per_layer, summarize

gathered = serialize.load(snakemake.input.simulation)
network = exactsnn.load(snakemake.input.snn)
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
row = {
    "dataset": snakemake.params.dataset,
    "model": snakemake.params.model,
    "test_samples": len(reference["original_predictions"]),
    **metrics,
    "runtime_s": gathered["seconds"],
    "phase1_s": phase1["seconds_preprocess"],
    "X": phase1["X"],
    "layers": per_layer(gathered["simulation"], network),
}
log.info("%s", row)
write_json(snakemake.output.metrics, row)
