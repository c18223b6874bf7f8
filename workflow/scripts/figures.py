"""Rule figures: one test sample through the spiking network, drawn as in the paper's Figure 4."""

from wfutil import atomic, start

log = start(snakemake)

import exactsnn
from exactsnn import plots
from exactsnn.imagesets import open_data

p = snakemake.params
network = exactsnn.load(snakemake.input.snn)
x, y = open_data(snakemake.input.dataset).test(p.sample, p.sample + 1)
simulation = exactsnn.simulate(network, x, record=True)
label = int(y[0]) if y is not None else None
log.info("sample %d: label %s, predicted %d", p.sample, label, simulation.predictions[0])

figures = {
    "raster": plots.raster(network, simulation, x),
    "histogram": plots.spike_time_histogram(network, simulation),
    "potentials": plots.membrane_potentials(network, simulation, x, neurons=p.neurons),
    "output": plots.output_potentials(network, simulation, x),
}
for name, figure in figures.items():
    with atomic(snakemake.output[name]) as tmp:
        figure.savefig(tmp, dpi=150, format="png")
