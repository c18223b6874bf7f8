"""Rule phase1_network: the network folded and weight-scaled once (its X_n left to the parts),
and what a Phase 1 part holds in memory at the batch size ACTIVATION_BUDGET allows."""

import time

from wfutil import atomic, start, write_json

log = start(snakemake)

from exactsnn.imagesets import open_data
from exactsnn.importers import import_model
from exactsnn.preprocess import fold_network, scale_weights
from exactsnn.simulator.memory import phase1_memory

p = snakemake.params
data = open_data(snakemake.input.dataset, p.test_samples)
started = time.perf_counter()
network = scale_weights(fold_network(import_model(snakemake.input.model), data.input_range), p.lower, p.upper)
seconds = time.perf_counter() - started
batch = network.batch_size(256)
need = phase1_memory(network, min(p.batch_size, max(data.n_test, 1)))
memory = {"batch_size": batch, "fixed_mb": need.fixed / 2**20, "per_sample_mb": need.per_sample / 2**20,
          "mem_mb": int(need.total(batch) / 2**20) + 1, "seconds": seconds}
log.info("forward batches of %d (%.0f MB of activations a sample, exactsnn.preprocess.ACTIVATION_BUDGET); "
         "a part needs %.0f MB + %.1f MB per sample: %d MB", batch, network.sample_bytes() / 1e6,
         memory["fixed_mb"], memory["per_sample_mb"], memory["mem_mb"])
with atomic(snakemake.output.network) as tmp:
    network.save(tmp)
write_json(snakemake.output.memory, memory)
