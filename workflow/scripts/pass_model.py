"""Rule pass_model: VGG16 with ImageNet weights (Keras' cache or a local file), or a given .keras model."""

from wfutil import atomic, start, write_json

log = start(snakemake)

import keras

p = snakemake.params
if p.weights and str(p.weights).endswith(".keras"):
    model = keras.models.load_model(p.weights, compile=False)
elif p.weights:
    # A local VGG16 .h5 (Keras' vgg16_weights_tf_dim_ordering_tf_kernels.h5, or the original
    # project's models/PASS/VGG/pass_vgg_relu_original.h5) goes through exactsnn's loader, whose
    # layouts are tested and whose errors name the file, the layer and both shapes.
    from exactsnn.training import load_weights

    model = keras.applications.VGG16(weights=None, input_shape=(p.size, p.size, 3), include_top=True)
    load_weights(model, p.weights)
else:
    # weights=None in the config: Keras' ImageNet weights (downloaded once into its cache).
    model = keras.applications.VGG16(weights="imagenet", input_shape=(p.size, p.size, 3), include_top=True)
model.summary(print_fn=log.info)
with atomic(snakemake.output.model) as tmp:
    model.save(tmp)
write_json(snakemake.output.history, {"weights": p.weights or "imagenet"})
