"""Rule crosscheck_table: the per-benchmark cross-checks in one CSV."""

from wfutil import atomic, start

log = start(snakemake, tensorflow=False)

import pandas as pd

table = pd.concat([pd.read_csv(path) for path in snakemake.input.tables])
log.info("\n%s", table.to_string())
with atomic(snakemake.output.table) as tmp:
    table.to_csv(tmp, index=False, float_format="%.10g")
