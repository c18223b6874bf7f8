"""Rule measure: the metrics of one benchmark (one row of the results table)."""

from wfutil import read_json, start, write_json

log = start(snakemake)

import exactsnn
from exactsnn import serialize
from exactsnn.measure import benchmark_metrics, read_reference

gathered = serialize.load(snakemake.input.simulation)
networks = [exactsnn.load(path) for path in snakemake.input.networks]
phase1 = read_json(snakemake.input.phase1)
main, others = networks[0], networks[1:]
row = {
    "dataset": snakemake.params.dataset,
    "model": snakemake.params.model,
    **benchmark_metrics(read_reference(snakemake.input.reference), gathered["simulations"], networks),
    "runtime_s": gathered["seconds"][main.neuron],
    **{f"runtime_{network.neuron}_s": gathered["seconds"][network.neuron] for network in others},
    "phase1_s": phase1["seconds_preprocess"],
    "X": phase1["X"],
}
log.info("%s", row)
write_json(snakemake.output.metrics, row)
