"""A Phase 2 part at ImageNet's input size stays within a memory ceiling set by the network's
own Keras forward pass (issue 15): a VGG16 at 224×224 with an eighth of the channels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import exactsnn
from exactsnn.simulator.memory import simulation_memory

keras = pytest.importorskip("keras")

WORKER = Path(__file__).with_name("scale_worker.py")


def narrow_vgg16(divisor: int = 8):
    """VGG16's layers at 224×224×3 with every width divided by ``divisor`` (random weights)."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    layers = [keras.Input((224, 224, 3))]
    for block, (width, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]):
        layers += [L.Conv2D(width // divisor, 3, padding="same", activation="relu") for _ in range(convs)]
        layers.append(L.MaxPooling2D(2))
    layers += [L.Flatten(), L.Dense(4096 // divisor, activation="relu"), L.Dense(4096 // divisor, activation="relu"),
               L.Dense(10)]
    return keras.Sequential(layers)


def _run(method: str, workdir: Path, batch: int) -> dict:
    env = {**os.environ, "EXACTSNN_VERBOSE": "0"}
    res = subprocess.run([sys.executable, str(WORKER), method, str(workdir), str(batch)], capture_output=True,
                         text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_a_phase2_part_at_224_stays_under_twice_the_keras_forward_memory(tmp_path):
    rng = np.random.default_rng(0)
    model = narrow_vgg16()
    x_train = rng.uniform(0, 255, (4, 224, 224, 3))
    x = rng.uniform(0, 255, (4, 224, 224, 3))
    snn = exactsnn.convert(model, x_train, input_range=(0.0, 255.0))
    snn.save(tmp_path / "snn.npz")
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", x)
    need = simulation_memory(snn)
    batch = need.batch_size(need.total(4), 4)  # a budget that fits the whole part
    assert batch == 4
    forward = _run("keras", tmp_path, batch)
    part = _run("snn", tmp_path, batch)
    assert part["predictions"] == forward["predictions"]
    assert part["deviating"] == 0
    # The ceiling: twice what the Keras float64 forward pass of the same batch peaked at.
    assert part["peak_kib"] <= 2 * forward["peak_kib"], (part, forward)
    # The estimate the workflow sizes batches and SLURM requests by is an upper bound.
    assert part["peak_kib"] * 1024 <= need.total(batch), (part["peak_kib"] / 1024, need.total(batch) / 2**20)


def test_phase1_memory_does_not_grow_with_the_sample(tmp_path):
    """X_n of 2 and of 10 images at 224×224, in batches of 2, each in a fresh process: the same
    peak memory (up to the extra images themselves and 64 MB of allocator noise), and the same
    X_n as one batch of all of them."""
    from exactsnn.preprocess import fold_network, max_activations, scale_weights
    from exactsnn.importers import import_model

    model = narrow_vgg16()
    model.save(tmp_path / "model.keras")
    x_train = np.random.default_rng(1).uniform(0, 255, (10, 224, 224, 3))
    np.save(tmp_path / "x_train.npy", x_train)
    np.save(tmp_path / "x.npy", x_train[:1])
    small, large = _run("phase1", tmp_path, 2), _run("phase1", tmp_path, 10)
    extra_kib = 8 * x_train[2:].size / 1024
    assert large["peak_kib"] <= small["peak_kib"] + extra_kib + 64 * 1024, (small["peak_kib"], large["peak_kib"])
    net = scale_weights(fold_network(import_model(model), (0.0, 255.0)), -10.0, 0.99)
    # The same maxima (dense products round by batch: an ulp).
    np.testing.assert_allclose(large["X"], max_activations(net, x_train, batch_size=10), rtol=1e-14, atol=0)
