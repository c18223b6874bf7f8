"""Rule phase2_network: time windows, weights J and thresholds of the spiking network."""

from wfutil import atomic, start

log = start(snakemake)

from exactsnn import serialize
from exactsnn.spiking import spiking_network

network = spiking_network(serialize.load(snakemake.input.network), zeta=snakemake.params.zeta)
log.info(
    "zeta %s: latency %.6g, %d hidden neurons", network.zeta, network.latency, network.hidden_neurons
)
with atomic(snakemake.output.snn) as tmp:
    network.save(tmp)
