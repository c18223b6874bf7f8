"""Rule train: build the architecture, then train it with a seeded recipe or load given weights."""

import time

from wfutil import atomic, start, write_json

log = start(snakemake)

from exactsnn import architectures, training
from exactsnn.datasets import Dataset

p = snakemake.params
dataset = Dataset.load(snakemake.input.dataset)
model = architectures.build(p.architecture, dataset.input_shape, dataset.num_classes, seed=p.seed, **p.options)
model.summary(print_fn=log.info)
weights = snakemake.input.weights
weights = [weights] if isinstance(weights, str) else list(weights)

started = time.perf_counter()
if weights:
    log.info("Loading weights from %s (training skipped)", weights[0])
    training.load_weights(model, weights[0])
    history = {}
else:
    history = training.train(model, dataset, recipe=p.recipe, epochs=p.epochs, fraction=p.fraction, seed=p.seed,
                             batch_size=p.batch_size).history
with atomic(snakemake.output.model) as tmp:
    model.save(tmp)
write_json(snakemake.output.history, {
    "architecture": p.architecture,
    "recipe": p.recipe,
    "epochs": p.epochs,
    "fraction": p.fraction,
    "seed": p.seed,
    "batch_size": p.batch_size,
    "weights": weights[0] if weights else None,
    "seconds": time.perf_counter() - started,
    "history": {k: [float(v) for v in vals] for k, vals in history.items()},
})
