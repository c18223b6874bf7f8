"""Rule table: one row per benchmark, as CSV and as a Markdown table."""

import pandas as pd

from wfutil import atomic, read_json, start, write_text

log = start(snakemake, tensorflow=False)

COLUMNS = {
    # column: (Markdown header, Markdown format)
    "dataset": ("Dataset", "{}"),
    "model": ("Model", "{}"),
    "test_samples": ("Test samples", "{:d}"),
    "accuracy_original": ("Original acc. (%)", "{:.2%}"),
    "accuracy_scaled": ("Scaled acc. (%)", "{:.2%}"),
    "accuracy_snn": ("SNN acc. (%)", "{:.2%}"),
    "agreement": ("Agreement (%)", "{:.2%}"),
    "latency": ("Latency", "{:.4g}"),
    "hidden_neurons": ("Hidden neurons", "{:d}"),
    "spikes_per_neuron": ("Spikes / neuron", "{:.4g}"),
    "synaptic_events": ("Synaptic events / sample", "{:.4g}"),
    "relu_macs": ("ReLU MACs / sample", "{:.4g}"),
    "deviating_spikes": ("Deviating spikes", "{:d}"),
    "runtime_s": ("Runtime (s)", "{:.1f}"),
    # the same network with B1 neurons (silence codes zero)
    "accuracy_snn_b1": ("B1 SNN acc. (%)", "{:.2%}"),
    "agreement_b1": ("B1 agreement (%)", "{:.2%}"),
    "spikes_per_neuron_b1": ("B1 spikes / neuron", "{:.4g}"),
    "synaptic_events_b1": ("B1 synaptic events / sample", "{:.4g}"),
    "deviating_spikes_b1": ("B1 deviating spikes", "{:d}"),
}

table = pd.DataFrame([read_json(path) for path in snakemake.input.metrics])[list(COLUMNS)]
for column in ("test_samples", "hidden_neurons", "deviating_spikes", "deviating_spikes_b1"):
    table[column] = table[column].astype(int)
log.info("\n%s", table.to_string())

with atomic(snakemake.output.csv) as tmp:
    table.to_csv(tmp, index=False, float_format="%.10g")

lines = [
    "| " + " | ".join(header for header, _ in COLUMNS.values()) + " |",
    "|" + "|".join("---" if c in ("dataset", "model") else "---:" for c in COLUMNS) + "|",
]
for row in table.itertuples(index=False):
    cells = [
        "n/a" if pd.isna(v) else fmt.format(v).replace("%", "")  # PASS has no labels
        for v, (_, fmt) in zip(row, COLUMNS.values())
    ]
    lines.append("| " + " | ".join(cells) + " |")
write_text(snakemake.output.markdown, "\n".join(lines) + "\n")
