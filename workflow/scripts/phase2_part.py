"""Rule phase2_part: simulate the spiking network on one part of the test set."""

import time

from wfutil import open_data, start

log = start(snakemake)

import exactsnn
from exactsnn import serialize

p = snakemake.params
part = int(snakemake.wildcards.part)
networks = {"simulation": exactsnn.load(snakemake.input.snn), "simulation_b1": exactsnn.load(snakemake.input.snn_b1)}
data = open_data(snakemake.input.dataset, p.test_samples)
first, stop = data.parts(p.parts)[part]
log.info("part %d of %d: test samples [%d, %d)", part, p.parts, first, stop)
x, _ = data.test(first, stop)

result = {"first": first, "stop": stop}
for key, network in networks.items():
    started = time.perf_counter()
    result[key] = exactsnn.simulate(
        network,
        x,
        engine=p.engine,
        batch_size=p.batch_size,
        sample_offset=first,
        relu_reference=p.relu_reference,
        progress=True,  # a tqdm bar in the rule's log
    )
    seconds = time.perf_counter() - started
    log.info("%s: simulated %d samples in %.2f s", network.neuron, stop - first, seconds)
    result["seconds" if key == "simulation" else "seconds_b1"] = seconds
serialize.save(result, snakemake.output.part)
