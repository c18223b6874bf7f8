"""Rule onnx_model: import the benchmark's ONNX model, check it against the dataset, keep a copy.

Importing here makes an unsupported operator fail this first job, with the node named, rather
than Phase 1.  The copy is self-contained (weights kept in external data files are read in),
so later jobs do not depend on the configured file staying where it is.
"""

from wfutil import atomic, start, write_json

log = start(snakemake)

import numpy as np
import onnx

from exactsnn.datasets import Dataset
from exactsnn.evaluate import evaluate
from exactsnn.importers.onnx import import_onnx, load_onnx

weights = snakemake.input.weights
weights = weights if isinstance(weights, str) else weights[0]
model = load_onnx(weights)
graph = import_onnx(model)
shape = tuple(graph.nodes[graph.source].shape)
log.info("Imported %s: %d nodes, input %s (channels last)", weights, len(graph.nodes), shape)
classes = evaluate(graph, np.zeros((1, *shape))).shape[1]
Dataset.load(snakemake.input.dataset).check_network(shape, classes, weights)
with atomic(snakemake.output.model) as tmp:
    onnx.save(model, tmp)
write_json(snakemake.output.summary, {
    "weights": weights,
    "input_shape": list(shape),
    "classes": int(classes),
    "nodes": len(graph.nodes),
    "producer": f"{model.producer_name} {model.producer_version}".strip(),
    "opset": [{"domain": o.domain, "version": o.version} for o in model.opset_import],
})
