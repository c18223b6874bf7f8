"""Run by tests/test_scale.py in a fresh process: one method on saved inputs, then its peak
memory (VmHWM, the whole process) as JSON on the last line of stdout.

    python scale_worker.py keras|snn WORKDIR BATCH        (one batch of BATCH images)
    python scale_worker.py phase1 WORKDIR N PARTS PART    (part PART of PARTS of Phase 1 with an
                                                          X_n sample of N images, batches of 2)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def peak_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def phase1_part(workdir: Path, n: int, parts: int, part: int, x) -> dict:
    """What rule phase1_part does: its batches of the first n images of x_train.npy, each read
    from the file when it is run, then the reference predictions of ``x`` in one chunk."""
    import keras

    from exactsnn import serialize
    from exactsnn.measure import original_logits, reference_predictions
    from exactsnn.preprocess import batch_ranges, part_maxima
    from exactsnn.simulator.memory import phase1_memory

    net = serialize.load(workdir / "scaled.npz")
    ranges = batch_ranges(n, 2, parts, part)
    read = (np.array(np.load(workdir / "x_train.npy", mmap_mode="r")[a:b]) for a, b in ranges)
    maxima = part_maxima(net, read)
    original = original_logits(keras.models.load_model(workdir / "model.keras", compile=False), 2)
    reference = reference_predictions(original, net, [(x, None)])
    return {"maxima": maxima.tolist(), "samples": sum(b - a for a, b in ranges),
            "predictions": reference["original_logits"].argmax(1).tolist(),
            "estimate_kib": phase1_memory(net, len(x)).total(2) // 1024}


def main() -> None:
    method, workdir, batch = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    from exactsnn.ops import import_tensorflow

    tf = import_tensorflow()
    x = np.load(workdir / "x.npy")
    if method == "phase1":
        out = phase1_part(workdir, batch, int(sys.argv[4]), int(sys.argv[5]), x)
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
