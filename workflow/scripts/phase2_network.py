"""Rule phase2_network: time windows, weights J and thresholds of the spiking networks, one
per neuron model (the 2023 α-model, and the B1 model in which silence codes zero)."""

from wfutil import atomic, start

log = start(snakemake)

from exactsnn import serialize
from exactsnn.spiking import spiking_network

scaled = serialize.load(snakemake.input.network)
for neuron, path in zip(snakemake.params.neurons, snakemake.output.networks):
    network = spiking_network(scaled, zeta=snakemake.params.zeta, neuron=neuron)
    log.info(
        "%s, zeta %s: latency %.6g, %d hidden neurons",
        neuron, network.zeta, network.latency, network.hidden_neurons,
    )
    with atomic(path) as tmp:
        network.save(tmp)
