"""Rule crosscheck: one benchmark's spiking networks re-simulated in Brian2 and compared."""

from wfutil import atomic, start

log = start(snakemake)

import pandas as pd

import exactsnn
from exactsnn.crosscheck import crosscheck
from exactsnn.imagesets import open_data

p = snakemake.params
data = open_data(snakemake.input.dataset)
x, _ = data.test(0, p.samples)
frames = []
for path in snakemake.input.networks:
    network = exactsnn.load(path)
    table = crosscheck(network, x, dt=p.dt)
    log.info("%s: %s", network.neuron, dict(table.attrs))
    frames.append(table.assign(
        dataset=snakemake.wildcards.dataset, model=snakemake.wildcards.model, neuron=network.neuron,
        samples=len(x), dt=p.dt, agreement=table.attrs["agreement"],
    ))
with atomic(snakemake.output.table) as tmp:
    pd.concat(frames).to_csv(tmp, index=False, float_format="%.10g")
