"""Rule phase2_gather: the parts of the test set, in order, as one Simulation per neuron model."""

from wfutil import start

log = start(snakemake, tensorflow=False)

from exactsnn import serialize
from exactsnn.simulator import Simulation

parts = [serialize.load(path) for path in snakemake.input.parts]
for previous, part in zip(parts, parts[1:]):
    if part["first"] != previous["stop"]:
        raise ValueError(f"parts do not tile the test set: {previous['stop']} then {part['first']}")
neurons = list(parts[0]["simulations"])
seconds = {n: sum(part["seconds"][n] for part in parts) for n in neurons}
log.info("%d parts, %d samples, seconds of simulation: %s", len(parts), parts[-1]["stop"], seconds)
serialize.save(
    {
        "simulations": {n: Simulation.concat([part["simulations"][n] for part in parts]) for n in neurons},
        "first": parts[0]["first"],
        "stop": parts[-1]["stop"],
        "seconds": seconds,
    },
    snakemake.output.simulation,
)
