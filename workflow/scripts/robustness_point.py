"""Rule robustness_point: seeded trials at one value of zeta, spike-time noise or alpha spread."""

import pandas as pd

from wfutil import atomic, start

log = start(snakemake)

from exactsnn import serialize
from exactsnn.imagesets import open_data
from exactsnn.measure import read_reference, robustness_trials

p, wc = snakemake.params, snakemake.wildcards
data = open_data(snakemake.input.dataset, p.test_samples)
x, _ = data.test(0, data.n_test)
rows = robustness_trials(serialize.load(snakemake.input.network), x, read_reference(snakemake.input.reference, len(x)),
                         wc.knob, float(wc.value), zeta=p.zeta, trials=p.trials, seed=p.seed, engine=p.engine,
                         batch_size=p.batch_size)
rows = [{"dataset": wc.dataset, "model": wc.model, **row} for row in rows]
for row in rows:
    log.info("%s", row)
with atomic(snakemake.output.table) as tmp:
    pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.10g")
