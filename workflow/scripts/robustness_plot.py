"""Rule robustness_plot: accuracy and agreement against one robustness parameter."""

import pandas as pd

from wfutil import atomic, start

log = start(snakemake, tensorflow=False)

from exactsnn import plots

p = snakemake.params
table = pd.read_csv(snakemake.input.table)
rows = table[(table.dataset == p.dataset) & (table.model == p.model) & (table.knob == p.knob)]
figure = plots.robustness(rows, p.knob, title=f"{p.dataset} {p.model}")
with atomic(snakemake.output.plot) as tmp:
    figure.savefig(tmp, dpi=150, format="png")
