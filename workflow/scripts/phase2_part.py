"""Rule phase2_part: simulate the spiking networks (one per neuron model) on one part of the test set."""

import time

from wfutil import read_json, start

log = start(snakemake)

import exactsnn
from exactsnn import serialize
from exactsnn.imagesets import open_data
from exactsnn.simulator import Simulation

p = snakemake.params
part = int(snakemake.wildcards.part)
data = open_data(snakemake.input.dataset, p.test_samples)
first, stop = data.test_parts(p.parts)[part]
log.info("part %d of %d: test samples [%d, %d)", part, p.parts, first, stop)
x, _ = data.test(first, stop)
memory = read_json(snakemake.input.memory)

simulations, seconds = {}, {}
for path in snakemake.input.networks:
    network = exactsnn.load(path)
    batch = memory[network.neuron]["batch_size"]
    run = dict(engine=p.engine, batch_size=batch, relu_reference=p.relu_reference, progress=True)
    # The first batch traces and compiles every layer (once in this process); timed apart.
    started = time.perf_counter()
    head = exactsnn.simulate(network, x[:batch], sample_offset=first, **run)
    compiled = time.perf_counter() - started
    rest = exactsnn.simulate(network, x[batch:], sample_offset=first + batch, **run) if len(x) > batch else None
    seconds[network.neuron] = time.perf_counter() - started
    sim = simulations[network.neuron] = Simulation.concat([head, rest] if rest is not None else [head])
    log.info("%s: %d samples in batches of up to %d (%d MB estimated for a full one): %.2f s, of which %.2f s "
             "for the first batch (tracing and compiling the layers, once per process)",
             network.neuron, stop - first, batch, memory[network.neuron]["mem_mb"], seconds[network.neuron], compiled)
    if sim.certified + sim.fallback:
        log.info("%s: %d of %d neurons walked (the rest certified)", network.neuron, sim.fallback,
                 sim.certified + sim.fallback)
serialize.save({"first": first, "stop": stop, "simulations": simulations, "seconds": seconds}, snakemake.output.part)
