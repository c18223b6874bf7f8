"""Rule table: one row per benchmark, as CSV, as a Markdown table and as HTML for the report."""

import pandas as pd

from wfutil import atomic, read_json, start, write_text

log = start(snakemake, tensorflow=False)

from exactsnn.tables import RESULT_COLUMNS, results_html, results_markdown

table = pd.DataFrame([read_json(path) for path in snakemake.input.metrics])[list(RESULT_COLUMNS)]
for column in ("test_samples", "hidden_neurons", "deviating_spikes", "deviating_spikes_b1"):
    table[column] = table[column].astype(int)
log.info("\n%s", table.to_string())

with atomic(snakemake.output.csv) as tmp:
    table.to_csv(tmp, index=False, float_format="%.10g")
write_text(snakemake.output.markdown, results_markdown(table))
published = {tuple(key.split("/")): values for key, values in snakemake.params.published.items()}
write_text(snakemake.output.html, results_html(table, published))
