"""Rule robustness_table: all sweep points of all benchmarks in one CSV, and its summary over
the trials as HTML for the report."""

import pandas as pd

from wfutil import atomic, start, write_text

log = start(snakemake, tensorflow=False)

from exactsnn.tables import robustness_html

table = pd.concat([pd.read_csv(path) for path in snakemake.input.points], ignore_index=True)
table = table.sort_values(["dataset", "model", "knob", "value", "trial"], kind="stable")
log.info("%d rows", len(table))
with atomic(snakemake.output.table) as tmp:
    table.to_csv(tmp, index=False, float_format="%.10g")
write_text(snakemake.output.html, robustness_html(table))
