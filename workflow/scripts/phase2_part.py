"""Rule phase2_part: simulate the spiking networks (one per neuron model) on one part of the test set."""

import time

from wfutil import open_data, start

log = start(snakemake)

import exactsnn
from exactsnn import serialize

p = snakemake.params
part = int(snakemake.wildcards.part)
data = open_data(snakemake.input.dataset, p.test_samples)
first, stop = data.parts(p.parts)[part]
log.info("part %d of %d: test samples [%d, %d)", part, p.parts, first, stop)
x, _ = data.test(first, stop)

simulations, seconds = {}, {}
for path in snakemake.input.networks:
    network = exactsnn.load(path)
    started = time.perf_counter()
    simulations[network.neuron] = exactsnn.simulate(
        network,
        x,
        engine=p.engine,
        batch_size=p.batch_size,
        sample_offset=first,
        relu_reference=p.relu_reference,
        progress=True,  # a tqdm bar in the rule's log
    )
    seconds[network.neuron] = time.perf_counter() - started
    log.info("%s: simulated %d samples in %.2f s", network.neuron, stop - first, seconds[network.neuron])
serialize.save({"first": first, "stop": stop, "simulations": simulations, "seconds": seconds}, snakemake.output.part)
