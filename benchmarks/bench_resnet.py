"""ResNet-20 (CIFAR shape, random weights and batch-norm statistics): default engine vs Keras.

    python benchmarks/bench_resnet.py [--samples 256] [--batch-size 128]

Prints the time per sample of the Keras float64 forward pass of the original network and of
``exactsnn.simulate`` (default engine) on the same inputs in the same process, their ratio, and the
checks that make the timing meaningful (agreement, deviating spikes, fallback neurons).
The original code's sort-and-gather has no residual counterpart, so it is not timed here.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    import keras
    import tensorflow as tf

    import exactsnn
    from exactsnn.architectures import build
    from exactsnn.importers.keras import float64_logits_model

    model = build("resnet20", (32, 32, 3), 10, seed=0)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c), rng.normal(0, 0.2, c),
                               rng.uniform(0.5, 2.0, c)])
    x = rng.uniform(-3, 3, (args.samples, 32, 32, 3))
    x_train = rng.uniform(-3, 3, (256, 32, 32, 3))
    m64 = float64_logits_model(model)
    forward = tf.function(lambda v: m64(v, training=False), reduce_retracing=True)  # as bench_simulate.py
    bs = args.batch_size

    def keras_forward():
        return np.concatenate([forward(tf.constant(x[i : i + bs])).numpy() for i in range(0, len(x), bs)])

    snn = exactsnn.convert(model, x_train, input_range=(-3.0, 3.0))
    keras_forward()
    exactsnn.simulate(snn, x[:bs], batch_size=bs)
    t_keras = t_snn = np.inf
    for _ in range(args.repeats):  # alternate, keep the best of each: the machine is shared
        t = time.perf_counter()
        logits = keras_forward()
        t_keras = min(t_keras, time.perf_counter() - t)
        t = time.perf_counter()
        sim = exactsnn.simulate(snn, x, batch_size=bs)
        t_snn = min(t_snn, time.perf_counter() - t)
    n = len(x)
    print(f"resnet20: {snn.hidden_neurons} hidden neurons, {n} samples, batch {bs}")
    print(f"  Keras float64 forward   {t_keras / n * 1e3:9.3f} ms/sample   1.00")
    print(f"  exactsnn default (fast) {t_snn / n * 1e3:9.3f} ms/sample   {t_snn / t_keras:.2f}× Keras")
    print(f"  agreement {np.mean(sim.predictions == logits.argmax(1)):.4f}, deviating spikes {int(sim.deviating.sum())}, "
          f"fallback {sim.fallback} of {sim.certified + sim.fallback} neurons")


if __name__ == "__main__":
    main()
