"""Rule phase1: fold and scale the network, X_n from a training sample, reference predictions.

The reference predictions (original and scaled ReLU network) are computed over the test set in
chunks, so that image sets of tens of thousands of images never sit in memory at once.  The
original is the Keras model run in float64, or for an ONNX model the float64 evaluation of its
import (exactsnn.evaluate; onnxruntime would compute in float32).
"""

import time

import numpy as np

from wfutil import atomic, open_data, start, write_json, write_npz

log = start(snakemake)

from exactsnn.preprocess import preprocess

p = snakemake.params
data = open_data(snakemake.input.dataset, p.test_samples)
if str(snakemake.input.model).endswith(".onnx"):
    from exactsnn.evaluate import evaluate
    from exactsnn.importers.onnx import import_onnx

    graph = import_onnx(snakemake.input.model)
    original_logits = lambda x: evaluate(graph, x)  # noqa: E731
else:
    import keras

    from exactsnn.importers.keras import import_keras, keras_logits

    model = keras.models.load_model(snakemake.input.model, compile=False)
    graph = import_keras(model)
    original_logits = lambda x: keras_logits(model, x, batch_size=network.batch_size(256))  # noqa: E731

x_sample = data.sample(p.samples, p.seed)
n_sample = len(x_sample)
log.info("X_n from %d training samples; %d test samples", n_sample, data.n_test)
started = time.perf_counter()
network = preprocess(graph, x_sample, input_range=data.input_range, lower=p.lower, upper=p.upper)
seconds_preprocess = time.perf_counter() - started
log.info("forward passes in batches of %d (%.0f MB of activations a sample, exactsnn.preprocess.ACTIVATION_BUDGET)",
         network.batch_size(256), network.sample_bytes() / 1e6)
del x_sample

original, scaled, labels = [], [], []
seconds_original = seconds_scaled = 0.0
for first in range(0, data.n_test, p.batch_size):
    x, y = data.test(first, first + p.batch_size)
    started = time.perf_counter()
    original.append(original_logits(x))
    seconds_original += time.perf_counter() - started
    started = time.perf_counter()
    scaled.append(network.forward(x))
    seconds_scaled += time.perf_counter() - started
    labels.append(y if y is not None else np.full(len(x), -1))
    log.info("reference predictions: %d of %d", first + len(x), data.n_test)
original = np.concatenate(original)
scaled = np.concatenate(scaled)
labels = np.concatenate(labels).astype(np.int64)

original_predictions = original.argmax(axis=1)
scaled_predictions = scaled.argmax(axis=1)
has_labels = data.has_labels and len(labels) > 0
summary = {
    "test_samples": len(original),
    "x_sample": n_sample,
    "X": [float(x) for x in network.X],
    "accuracy_original": float(np.mean(original_predictions == labels)) if has_labels else None,
    "accuracy_scaled": float(np.mean(scaled_predictions == labels)) if has_labels else None,
    "agreement_scaled": float(np.mean(original_predictions == scaled_predictions)),
    "max_logit_error": float(np.max(np.abs(original - scaled), initial=0.0)),
    "seconds_preprocess": seconds_preprocess,
    "seconds_original": seconds_original,
    "seconds_scaled": seconds_scaled,
}
log.info("Phase 1 summary: %s", summary)
if summary["agreement_scaled"] < 1.0:
    log.warning("the scaled ReLU network disagrees with the original on some test samples")

with atomic(snakemake.output.network) as tmp:
    network.save(tmp)
write_npz(
    snakemake.output.reference,
    original_logits=original,
    scaled_logits=scaled,
    original_predictions=original_predictions,
    scaled_predictions=scaled_predictions,
    labels=labels,
    has_labels=np.bool_(has_labels),
)
write_json(snakemake.output.summary, summary)
