"""Rule phase2_network: time windows, weights J and thresholds of the spiking networks, one
per neuron model (the 2023 α-model, and the B1 model in which silence codes zero), and what
simulating each needs in memory at the batch size the part budget allows."""

from wfutil import atomic, start, write_json

log = start(snakemake)

from exactsnn import serialize
from exactsnn.simulator.memory import simulation_memory
from exactsnn.spiking import spiking_network

p = snakemake.params
scaled = serialize.load(snakemake.input.network)
memory = {}
for neuron, path in zip(p.neurons, snakemake.output.networks):
    network = spiking_network(scaled, zeta=p.zeta, neuron=neuron)
    log.info(
        "%s, zeta %s: latency %.6g, %d hidden neurons",
        neuron, network.zeta, network.latency, network.hidden_neurons,
    )
    need = simulation_memory(network)
    batch = need.batch_size(p.memory_mb * 2**20, p.batch_size)
    memory[neuron] = {"batch_size": batch, "fixed_mb": need.fixed / 2**20, "per_sample_mb": need.per_sample / 2**20,
                      "mem_mb": int(need.total(batch) / 2**20) + 1}
    log.info("%s: a part needs %.0f MB + %.1f MB per sample: batches of %d (budget %d MB, at most %d) need %d MB",
             neuron, memory[neuron]["fixed_mb"], memory[neuron]["per_sample_mb"], batch, p.memory_mb, p.batch_size,
             memory[neuron]["mem_mb"])
    if need.total(1) > p.memory_mb * 2**20:
        log.warning("%s: even one sample needs %d MB, more than phase2.memory_mb = %d", neuron,
                    int(need.total(1) / 2**20) + 1, p.memory_mb)
    with atomic(path) as tmp:
        network.save(tmp)
write_json(snakemake.output.memory, memory)
