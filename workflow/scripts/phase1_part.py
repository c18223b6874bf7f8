"""Rule phase1_part: on its batches of the X_n sample, each hidden layer's largest ReLU output of
the scaled network; on its chunks of the test set, the original's and the scaled network's
logits (exactsnn.measure.reference_predictions)."""

import time

from wfutil import read_json, start

log = start(snakemake)

from exactsnn import serialize
from exactsnn.imagesets import open_data
from exactsnn.importers import read_model
from exactsnn.measure import original_logits, reference_predictions
from exactsnn.preprocess import batch_ranges, part_maxima

p = snakemake.params
part = int(snakemake.wildcards.part)
data = open_data(snakemake.input.dataset, p.test_samples)
network = serialize.load(snakemake.input.network)
batch = read_json(snakemake.input.memory)["batch_size"]
sample = batch_ranges(data.sample_size(p.samples), batch, p.parts, part)
test = batch_ranges(data.n_test, p.batch_size, p.parts, part)
log.info("part %d of %d: X_n sample %s, test samples %s, forward batches of %d", part, p.parts,
         sample and (sample[0][0], sample[-1][1]), test and (test[0][0], test[-1][1]), batch)
started = time.perf_counter()
maxima = part_maxima(network, (data.sample(p.samples, p.seed, a, b) for a, b in sample))
seconds = time.perf_counter() - started
reference = reference_predictions(original_logits(read_model(snakemake.input.model), batch), network,
                                  (data.test(a, b) for a, b in test))
serialize.save({"maxima": maxima, "samples": sum(b - a for a, b in sample), "seconds_sample": seconds,
                "has_labels": data.has_labels, **reference}, snakemake.output.part)
