"""Rule data: load one dataset (config path → system copy → Keras cache → download) into one .npz."""

import sys

from wfutil import start

log = start(snakemake)

from exactsnn import datasets

spec = snakemake.params.spec
try:
    dataset = datasets.load(
        snakemake.wildcards.dataset,
        path=spec["path"],
        cache_dir=spec["cache_dir"],
        system_dir=spec["system_dir"],
        download=spec["download"],
        seed=spec["seed"],
    )
except datasets.DataNotFoundError as error:
    # The message says which files to put where; no traceback needed.
    log.error("%s", error)
    sys.exit(1)
log.info(
    "%s read from %s: %d training and %d test samples of shape %s, input range %s, %d classes",
    dataset.name,
    dataset.source,
    len(dataset.x_train),
    len(dataset.x_test),
    dataset.input_shape,
    dataset.input_range,
    dataset.num_classes,
)
dataset.save(snakemake.output.dataset)
