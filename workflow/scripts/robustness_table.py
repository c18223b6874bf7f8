"""Rule robustness_table: all sweep points of all benchmarks in one CSV."""

import pandas as pd

from wfutil import atomic, start

log = start(snakemake, tensorflow=False)

table = pd.concat([pd.read_csv(path) for path in snakemake.input.points], ignore_index=True)
table = table.sort_values(["dataset", "model", "knob", "value", "trial"], kind="stable")
log.info("%d rows", len(table))
with atomic(snakemake.output.table) as tmp:
    table.to_csv(tmp, index=False, float_format="%.10g")
