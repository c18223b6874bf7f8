"""Rule pass_model: VGG16 with ImageNet weights (Keras' cache or a local file), or a given .keras model."""

from wfutil import atomic, start, write_json

log = start(snakemake)

import keras

p = snakemake.params
if p.weights and str(p.weights).endswith(".keras"):
    model = keras.models.load_model(p.weights, compile=False)
else:
    # weights=None in the config: Keras' ImageNet weights (downloaded once into its cache).
    model = keras.applications.VGG16(
        weights=p.weights or "imagenet", input_shape=(p.size, p.size, 3), include_top=True
    )
model.summary(print_fn=log.info)
with atomic(snakemake.output.model) as tmp:
    model.save(tmp)
write_json(snakemake.output.history, {"weights": p.weights or "imagenet"})
