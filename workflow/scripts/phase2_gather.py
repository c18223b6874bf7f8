"""Rule phase2_gather: the parts of the test set, in order, as one Simulation."""

from wfutil import start

log = start(snakemake)

from exactsnn import serialize
from exactsnn.simulator import Simulation

parts = [serialize.load(path) for path in snakemake.input.parts]
for previous, part in zip(parts, parts[1:]):
    if part["first"] != previous["stop"]:
        raise ValueError(f"parts do not tile the test set: {previous['stop']} then {part['first']}")
seconds = sum(part["seconds"] for part in parts)
log.info("%d parts, %d samples, %.2f s of simulation", len(parts), parts[-1]["stop"], seconds)
serialize.save(
    {
        "simulation": Simulation.concat([part["simulation"] for part in parts]),
        "simulation_b1": Simulation.concat([part["simulation_b1"] for part in parts]),
        "first": parts[0]["first"],
        "stop": parts[-1]["stop"],
        "seconds": seconds,
        "seconds_b1": sum(part["seconds_b1"] for part in parts),
    },
    snakemake.output.simulation,
)
