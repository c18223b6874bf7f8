"""Rule phase1: X_n from the parts' maxima (their maximum is the sample's, exactly) set on the
scaled network, and the parts' reference predictions joined in order."""

from dataclasses import replace

from wfutil import atomic, read_json, start, write_json, write_npz

log = start(snakemake, tensorflow=False)

from exactsnn import serialize
from exactsnn.measure import gather_reference, reference_summary
from exactsnn.preprocess import merge_maxima

parts = [serialize.load(path) for path in snakemake.input.parts]
samples = [part["samples"] for part in parts]
network = replace(serialize.load(snakemake.input.network), X=merge_maxima([part["maxima"] for part in parts], samples))
reference = gather_reference(parts, has_labels=all(part["has_labels"] for part in parts))
summary = {
    **reference_summary(reference),
    "x_sample": sum(samples),
    "X": [float(x) for x in network.X],
    "seconds_preprocess": read_json(snakemake.input.memory)["seconds"] + sum(part["seconds_sample"] for part in parts),
    "seconds_original": sum(part["seconds_original"] for part in parts),
    "seconds_scaled": sum(part["seconds_scaled"] for part in parts),
}
log.info("Phase 1 summary (%d parts): %s", len(parts), summary)
if summary["agreement_scaled"] < 1.0:
    log.warning("the scaled ReLU network disagrees with the original on some test samples")
with atomic(snakemake.output.network) as tmp:
    network.save(tmp)
write_npz(snakemake.output.reference, **reference)
write_json(snakemake.output.summary, summary)
