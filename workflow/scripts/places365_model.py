"""Rule places365_model: the Caffe VGG16 (deploy.prototxt + .caffemodel) as a Keras model."""

import sys
from pathlib import Path

from wfutil import atomic, start, write_json

log = start(snakemake)

from exactsnn.importers.caffe import caffe_to_keras

p = snakemake.params
for name, path in (("prototxt", p.prototxt), ("weights", p.caffemodel)):
    if not Path(path).is_file():
        log.error(
            "Places365: %s file %s does not exist (benchmark key '%s'); download "
            "deploy_vgg16_places365.prototxt and vgg16_places365.caffemodel and set their paths.",
            name, path, name,
        )
        sys.exit(1)

model = caffe_to_keras(p.prototxt, p.caffemodel)
model.summary(print_fn=log.info)
with atomic(snakemake.output.model) as tmp:
    model.save(tmp)
write_json(snakemake.output.history, {"prototxt": p.prototxt, "caffemodel": p.caffemodel})
