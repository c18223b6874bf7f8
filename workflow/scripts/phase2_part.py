"""Rule phase2_part: simulate the spiking network on one part of the test set."""

import time

import numpy as np

from wfutil import open_data, start

log = start(snakemake)

import exactsnn
from exactsnn import serialize

p = snakemake.params
part = int(snakemake.wildcards.part)
network = exactsnn.load(snakemake.input.snn)
data = open_data(snakemake.input.dataset, p.test_samples)
first, stop = data.parts(p.parts)[part]
log.info("part %d of %d: test samples [%d, %d)", part, p.parts, first, stop)
x, _ = data.test(first, stop)

started = time.perf_counter()
simulation = network.simulate(
    x,
    engine=p.engine,
    batch_size=p.batch_size,
    sample_offset=first,
    relu_reference=p.relu_reference,
)
seconds = time.perf_counter() - started
log.info("simulated %d samples in %.2f s", stop - first, seconds)
serialize.save(
    {"simulation": simulation, "first": first, "stop": stop, "seconds": seconds},
    snakemake.output.part,
)
