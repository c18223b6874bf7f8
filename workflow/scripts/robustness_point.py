"""Rule robustness_point: seeded trials at one value of zeta, spike-time noise or alpha spread."""

import time

import numpy as np
import pandas as pd

from wfutil import atomic, open_data, start

log = start(snakemake)

from exactsnn import serialize, simulate
from exactsnn.measure import summarize
from exactsnn.spiking import spiking_network

p = snakemake.params
knob, value = snakemake.wildcards.knob, float(snakemake.wildcards.value)
network = serialize.load(snakemake.input.network)
data = open_data(snakemake.input.dataset, p.test_samples)
x_test, _ = data.test(0, data.n_test)
n = len(x_test)
with np.load(snakemake.input.reference) as f:
    labels = f["labels"][:n] if f["has_labels"] else None
    original = f["original_predictions"][:n]
    scaled = f["scaled_predictions"][:n]

# zeta alone is deterministic: one trial; noise and alpha spread get `trials` seeds each.
trials = 1 if knob == "zeta" else p.trials
rows = []
for trial in range(trials):
    seed = p.seed + trial
    settings = {"zeta": p.zeta, "noise_sigma": 0.0, "alpha_sigma": 0.0, knob: value}
    snn = spiking_network(
        network, zeta=settings["zeta"], alpha_sigma=settings["alpha_sigma"], alpha_seed=seed
    )
    started = time.perf_counter()
    simulation = simulate(
        snn,
        x_test,
        engine=p.engine,
        batch_size=p.batch_size,
        noise_sigma=settings["noise_sigma"],
        noise_seed=seed,
    )
    seconds = time.perf_counter() - started
    metrics = summarize(original, simulation, labels=labels, scaled_predictions=scaled, net=snn)
    rows.append(
        {
            "dataset": snakemake.wildcards.dataset,
            "model": snakemake.wildcards.model,
            "knob": knob,
            "value": value,
            "trial": trial,
            "seed": seed,
            **settings,
            "test_samples": n,
            "accuracy_original": metrics["accuracy_original"],
            "accuracy_snn": metrics["accuracy_snn"],
            "agreement": metrics["agreement"],
            "latency": metrics["latency"],
            "deviating_spikes": metrics["deviating_spikes"],
            "runtime_s": seconds,
        }
    )
    log.info("%s", rows[-1])

with atomic(snakemake.output.table) as tmp:
    pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.10g")
