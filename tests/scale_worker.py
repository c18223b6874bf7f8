"""Run by tests/test_scale.py in a fresh process: one method on saved inputs, then its peak
memory (VmHWM, the whole process) as JSON on the last line of stdout.

    python scale_worker.py keras|snn WORKDIR BATCH      (one batch of BATCH images)
    python scale_worker.py phase1 WORKDIR N             (X_n of N images, in batches of 2)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def peak_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def main() -> None:
    method, workdir, batch = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    from exactsnn.ops import import_tensorflow

    tf = import_tensorflow()
    x = np.load(workdir / "x.npy")
    if method == "phase1":
        import keras

        from exactsnn.importers import import_model
        from exactsnn.preprocess import fold_network, max_activations, scale_weights

        graph = import_model(keras.models.load_model(workdir / "model.keras"))
        net = scale_weights(fold_network(graph, (0.0, 255.0)), -10.0, 0.99)
        x_sample = np.load(workdir / "x_train.npy")[:batch]
        out = {"X": max_activations(net, x_sample, batch_size=2).tolist()}
    elif method == "keras":
        import keras

        from exactsnn.importers.keras import float64_logits_model

        m64 = float64_logits_model(keras.models.load_model(workdir / "model.keras"))
        forward = tf.function(lambda v: m64(v, training=False))
        logits = np.concatenate([forward(tf.constant(x[i : i + batch])).numpy() for i in range(0, len(x), batch)])
        out = {"predictions": logits.argmax(1).tolist()}
    else:
        import exactsnn

        sim = exactsnn.simulate(exactsnn.load(workdir / "snn.npz"), x, batch_size=batch)
        out = {"predictions": sim.predictions.tolist(), "deviating": int(sim.deviating.sum()),
               "fallback": int(sim.fallback), "neurons": int(sim.fallback + sim.certified)}
    out["peak_kib"] = peak_kib()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
