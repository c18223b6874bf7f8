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


def _run(method: str, workdir: Path, *args: int) -> dict:
    env = {**os.environ, "EXACTSNN_VERBOSE": "0"}
    res = subprocess.run([sys.executable, str(WORKER), method, str(workdir), *map(str, args)], capture_output=True,
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


def test_a_phase1_part_at_224_peaks_as_one_batch_whatever_the_sample(tmp_path):
    """Phase 1 parts (X_n in batches of 2, read a batch at a time, then the reference
    predictions of 2 test images), each in a fresh process: a part of a 64-image sample in 2
    parts (16 batches each) peaks as the one-part 2-image sample (one batch) does, up to 24 MB of
    allocator noise (measured: 4 MB; the 32 images a part runs take 38 MB in float64, the 64 of
    the sample 77 MB),
    below the estimate that sizes the SLURM request; the parts' merged X_n is the unsplit X_n
    bit for bit."""
    from exactsnn.importers import import_model
    from exactsnn.preprocess import fold_network, max_activations, merge_maxima, scale_weights
    from exactsnn.simulator.memory import phase1_memory

    model = narrow_vgg16()
    model.save(tmp_path / "model.keras")
    x_train = np.random.default_rng(1).uniform(0, 255, (64, 224, 224, 3))
    np.save(tmp_path / "x_train.npy", x_train)
    np.save(tmp_path / "x.npy", x_train[:2])
    net = scale_weights(fold_network(import_model(model), (0.0, 255.0)), -10.0, 0.99)
    net.save(tmp_path / "scaled.npz")
    single = _run("phase1", tmp_path, 2, 1, 0)
    parts = [_run("phase1", tmp_path, 64, 2, k) for k in range(2)]
    print("Phase 1 part peaks (MiB): one batch", single["peak_kib"] // 1024, "parts of 64",
          [part["peak_kib"] // 1024 for part in parts], "estimate", single["estimate_kib"] // 1024)
    for part in parts:
        assert part["samples"] == 32 and part["predictions"] == single["predictions"]
        assert part["peak_kib"] <= single["peak_kib"] + 24 * 1024, (single["peak_kib"], part["peak_kib"])
        assert part["peak_kib"] <= part["estimate_kib"] == single["estimate_kib"], part
    merged = merge_maxima([part["maxima"] for part in parts], [part["samples"] for part in parts])
    assert merged.tobytes() == max_activations(net, x_train, batch_size=2).tobytes()
    assert np.asarray(single["maxima"]).tobytes() == max_activations(net, x_train[:2]).tobytes()
