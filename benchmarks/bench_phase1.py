"""Phase 1 of VGG16 at 224×224 as the workflow runs it, each job in a fresh process: what the
SLURM profile's requests for phase1_network and phase1_part are taken from.

    python benchmarks/bench_phase1.py [--workdir DIR] [--images 4] [--batch-size 2] [--chunk 2]

``keras.applications.VGG16`` with random weights (``weights=None``, seed 0; nothing is
downloaded), uniform inputs in [0, 255].  ``network``: import, fold and scale the saved model
and save the scaled network (rule phase1_network).  ``part``: X_n over ``--images`` images in
batches of ``--batch-size``, then the reference predictions of one chunk of ``--chunk`` images,
the original in float64 built once (rule phase1_part).  Printed per job: peak memory (VmHWM)
against :func:`exactsnn.simulator.memory.phase1_memory`'s estimate at the same batch and chunk, and
seconds per image of each forward pass; then the estimate at the workflow's batch size
(ACTIVATION_BUDGET) and chunk (phase1.batch_size, 1000).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_simulate import _proc_status_kib  # noqa: E402


def worker(args) -> dict:
    from exactsnn.ops import import_tensorflow

    import_tensorflow()
    import keras

    from exactsnn import serialize
    from exactsnn.importers import import_model
    from exactsnn.measure import original_logits, reference_predictions
    from exactsnn.preprocess import batch_ranges, fold_network, part_maxima, scale_weights
    from exactsnn.simulator.memory import phase1_memory

    d = Path(args.workdir)
    if args.worker == "network":
        started = time.perf_counter()
        net = scale_weights(fold_network(import_model(d / "vgg16.keras"), (0.0, 255.0)))
        seconds = time.perf_counter() - started
        net.save(d / "scaled.npz")
        return {"seconds": seconds, "peak_kib": _proc_status_kib("VmHWM")}
    net = serialize.load(d / "scaled.npz")
    x = np.random.default_rng(1).uniform(0.0, 255.0, (args.images, 224, 224, 3))
    started = time.perf_counter()
    part_maxima(net, (x[a:b] for a, b in batch_ranges(len(x), args.batch_size)))
    seconds_sample = time.perf_counter() - started
    original = original_logits(keras.models.load_model(d / "vgg16.keras", compile=False), args.batch_size)
    reference = reference_predictions(original, net, [(x[: args.chunk], None)])
    return {"seconds_sample": seconds_sample / len(x), "seconds_original": reference["seconds_original"] / args.chunk,
            "seconds_scaled": reference["seconds_scaled"] / args.chunk, "peak_kib": _proc_status_kib("VmHWM"),
            "estimate_kib": phase1_memory(net, args.chunk).total(args.batch_size) // 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="results/bench_phase1")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=2)
    parser.add_argument("--worker", choices=("network", "part"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    d = Path(args.workdir)
    d.mkdir(parents=True, exist_ok=True)
    from exactsnn.ops import import_tensorflow

    import_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    keras.applications.VGG16(weights=None, input_shape=(224, 224, 3)).save(d / "vgg16.keras")
    out = {}
    for job in ("network", "part"):
        cmd = [sys.executable, __file__, "--worker", job, "--workdir", str(d), "--images", str(args.images),
               "--batch-size", str(args.batch_size), "--chunk", str(args.chunk)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[job] = json.loads(res.stdout.strip().splitlines()[-1])
    from exactsnn import serialize
    from exactsnn.simulator.memory import phase1_memory

    net = serialize.load(d / "scaled.npz")
    gib = 2**30
    print(f"phase1_network: peak {out['network']['peak_kib'] * 1024 / gib:.2f} GiB, {out['network']['seconds']:.1f} s")
    part = out["part"]
    print(f"phase1_part (batches of {args.batch_size}, a chunk of {args.chunk}): peak {part['peak_kib'] * 1024 / gib:.2f} "
          f"GiB, estimate {part['estimate_kib'] * 1024 / gib:.2f} GiB; s/image: X_n {part['seconds_sample']:.2f}, "
          f"original {part['seconds_original']:.2f}, scaled {part['seconds_scaled']:.2f}")
    batch = net.batch_size(256)
    print(f"the workflow's part (batches of {batch}, chunks of 1000): estimate "
          f"{phase1_memory(net, 1000).total(batch) / gib:.2f} GiB")


if __name__ == "__main__":
    main()
