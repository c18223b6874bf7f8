"""ImageNet scale: VGG16 and ResNet50 at 224×224, the default engine against a Keras forward pass.

    python benchmarks/bench_scale.py [--networks vgg16,resnet50] [--inputs photos,uniform]
                                     [--images 4] [--batch-size phase2] [--train 4] [--repeats 2]

The networks are ``keras.applications.VGG16`` and ``ResNet50`` with **random weights**
(``weights=None``, seed 0; nothing is downloaded), 224×224×3 inputs in [0, 255]:

* ``photos``: random 224×224 crops (rescaled by 1–1.9×, flipped) of the two photographs that ship
  with scikit-learn (``sklearn.datasets.load_sample_images``: a temple in China, a flower);
* ``uniform``: i.i.d. uniform pixels over 0..255 (no smooth region at all: the hard case).

``--batch-size phase2`` (the default) times both methods at the batch a Phase 2 part of the
workflow simulates this network in: the largest whose :func:`exactsnn.simulator.memory.simulation_memory`
estimate fits the default part budget (``phase2.memory_mb`` in workflow/schemas/config.schema.yaml),
at most ``phase2.batch_size`` of config/paper.yaml (the Places365 and PASS rows); ``--images`` is
raised to that batch.  A number times that batch instead.

For every network and input kind, each method runs in a fresh process of this script
(``--worker``), so that its time includes what a Phase 2 part pays (every part is a new
process) and its peak memory is its own:

* ``phase1``: ``exactsnn.convert`` on ``--train`` images (import, fold, scale, X_n, the
  spiking network) against one Keras float64 forward pass over the same images (batches of 2);
  the network is saved for the other workers, with the Phase 2 batch.
* ``keras``: the Keras float64 forward pass (``float64_logits_model`` under ``tf.function``),
  batches of ``--batch-size``: its first call (tracing) and the best of ``--repeats`` runs over
  ``--images`` images;
* ``snn``: ``exactsnn.simulate(snn, x)`` (the default engine) on the same images and batches:
  first call (tracing, XLA and Numba compilation, the certificates' plan) and the best of
  ``--repeats`` runs; the fraction of neurons left to the event-driven walk; the predictions
  against Keras's.

Peak memory is the process's VmHWM (everything it holds, the network included) and the same
above the RSS after set-up.  Printed: per image seconds, ratios to Keras, and the projected cost
of the paper's Places365 row (36,500 validation images in 13 parts, X_n over 2,920 training
images) on this machine: Phase 1 (X_n and the reference predictions) plus Phase 2, wall time
with the parts one after another and core hours.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_simulate import _proc_status_kib, best_time  # noqa: E402

PLACES365_TEST, PLACES365_TRAIN, PLACES365_PARTS = 36_500, 365 * 8, 13
ROOT = Path(__file__).resolve().parent.parent
PHASE1_BATCH = 2


def phase2_batch(snn) -> int:
    """The batch a Phase 2 part of the paper's configuration simulates ``snn`` in
    (workflow/scripts/phase2_network.py): the default part budget, config/paper.yaml's largest."""
    import yaml

    from exactsnn.simulator.memory import simulation_memory

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    budget_mb = schema["properties"]["phase2"]["properties"]["memory_mb"]["default"]
    largest = yaml.safe_load((ROOT / "config/paper.yaml").read_text())["phase2"]["batch_size"]
    return simulation_memory(snn).batch_size(budget_mb * 2**20, largest)


def build(name: str):
    import keras

    keras.utils.set_random_seed(0)
    factory = {"vgg16": keras.applications.VGG16, "resnet50": keras.applications.ResNet50}[name]
    return factory(weights=None, input_shape=(224, 224, 3))


def images(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.uniform(0.0, 255.0, (n, 224, 224, 3))
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    out = np.empty((n, 224, 224, 3))
    for i in range(n):
        photo = photos[rng.integers(len(photos))]
        side = int(224 * rng.uniform(1.0, 1.9))  # the photographs are 427 × 640
        top, left = rng.integers(photo.shape[0] - side + 1), rng.integers(photo.shape[1] - side + 1)
        crop = Image.fromarray(photo[top : top + side, left : left + side]).resize((224, 224), Image.BILINEAR)
        out[i] = np.asarray(crop, np.float64)[:, ::-1] if rng.integers(2) else np.asarray(crop, np.float64)
    return out


def _settle() -> int:
    gc.collect()
    try:  # hand freed heap back, so that what the method allocates shows in its peak
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    return _proc_status_kib("VmRSS")


def _keras_forward(model, batch_size: int):
    import tensorflow as tf

    from exactsnn.importers.keras import float64_logits_model

    m64 = float64_logits_model(model)
    forward = tf.function(lambda v: m64(v, training=False), reduce_retracing=True)
    return lambda x: np.concatenate([forward(tf.constant(x[i : i + batch_size])).numpy()
                                     for i in range(0, len(x), batch_size)])


def worker(args) -> dict:
    import exactsnn

    d = Path(args.workdir)
    key = f"{args.network}_{args.kind}"
    if args.worker == "phase1":
        model = build(args.network)
        x_train = images(args.kind, args.train, seed=1)
        forward = _keras_forward(model, PHASE1_BATCH)
        forward(x_train[:PHASE1_BATCH])
        t_forward = best_time(lambda: forward(x_train), 1)
        t = time.perf_counter()
        snn = exactsnn.convert(model, x_train, input_range=(0.0, 255.0))
        t_phase1 = time.perf_counter() - t
        snn.save(d / f"{key}.npz")
        batch = phase2_batch(snn) if args.batch_size == "phase2" else int(args.batch_size)
        np.save(d / f"{key}_x.npy", images(args.kind, max(args.images, batch), seed=2))
        return {"phase1_s": t_phase1, "forward_s": t_forward, "train": len(x_train),
                "neurons": int(snn.hidden_neurons), "peak_kib": _proc_status_kib("VmHWM"), "batch": batch}
    x = np.load(d / f"{key}_x.npy")
    batch = int(args.batch_size)
    if args.worker == "keras":
        model = build(args.network)
        run = _keras_forward(model, batch)
    else:
        snn = exactsnn.load(d / f"{key}.npz")
        run = lambda v: exactsnn.simulate(snn, v, batch_size=batch)  # noqa: E731
    base = _settle()
    t = time.perf_counter()
    first = run(x[:batch])
    t_first = time.perf_counter() - t
    results = []
    t_steady = best_time(lambda: results.append(run(x)), args.repeats)
    out = {"first_s": t_first, "steady_s": t_steady, "images": len(x), "batch": batch,
           "base_kib": base, "peak_kib": _proc_status_kib("VmHWM")}
    if args.worker == "keras":
        np.save(d / f"{key}_keras_logits.npy", results[-1])
        return out
    sim = results[-1]
    keras_logits = np.load(d / f"{key}_keras_logits.npy")
    scale = np.abs(keras_logits).max()
    from exactsnn.simulator.memory import simulation_memory

    out["estimate_kib"] = simulation_memory(snn).total(batch) // 1024
    out.update(first_fallback=int(first.fallback), fallback=int(sim.fallback), certified=int(sim.certified),
               deviating=int(sim.deviating.sum()),
               agreement=float(np.mean(sim.logits.argmax(1) == keras_logits.argmax(1))),
               logit_error=float(np.abs(sim.logits - keras_logits).max() / scale))
    return out


def run_worker(args, method: str, network: str, kind: str, batch) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method, "--network", network, "--kind", kind,
           "--workdir", args.workdir, "--images", str(args.images), "--batch-size", str(batch),
           "--train", str(args.train), "--repeats", str(args.repeats)]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "EXACTSNN_VERBOSE": "0"})
    if res.returncode != 0:
        sys.stderr.write(res.stderr[-4000:])
        raise SystemExit(f"worker {method} {network} {kind} failed (exit {res.returncode})")
    return json.loads(res.stdout.strip().splitlines()[-1])


def report(network: str, kind: str, p1: dict, k: dict, s: dict) -> list[str]:
    n = k["images"]
    keras_img, snn_img = k["steady_s"] / n, s["steady_s"] / n
    gib = lambda kib: kib / 2**20  # noqa: E731
    neurons = p1["neurons"] * n
    lines = [
        f"{network} / {kind}: {p1['neurons']:,} hidden neurons per image, {n} images, batches of {k['batch']}",
        f"  Keras float64 forward   {keras_img:8.3f} s/image   first call {k['first_s']:7.2f} s   "
        f"peak {gib(k['peak_kib']):5.2f} GiB ({gib(k['peak_kib'] - k['base_kib']):5.2f} above set-up)",
        f"  exactsnn default engine {snn_img:8.3f} s/image   first call {s['first_s']:7.2f} s   "
        f"peak {gib(s['peak_kib']):5.2f} GiB ({gib(s['peak_kib'] - s['base_kib']):5.2f} above set-up)",
        f"  engine / Keras: time {snn_img / keras_img:5.2f}×  first call {s['first_s'] / k['first_s']:5.2f}×  "
        f"peak memory {s['peak_kib'] / k['peak_kib']:5.2f}×; the estimate a Phase 2 part plans with "
        f"(simulation_memory) {gib(s['estimate_kib']):5.2f} GiB",
        f"  walked (fallback): {s['fallback']:,} of {neurons:,} neurons ({100 * s['fallback'] / neurons:.3f} %); "
        f"first call {s['first_fallback']:,} of {p1['neurons'] * k['batch']:,}",
        f"  checks: agreement {s['agreement']:.4f}, deviating spikes {s['deviating']}, "
        f"max |logit − Keras| / max |logit| {s['logit_error']:.1e}",
        f"  Phase 1 ({p1['train']} images): {p1['phase1_s'] / p1['train']:.2f} s/image, "
        f"{p1['phase1_s'] / p1['forward_s']:.2f}× a forward pass over them; peak {gib(p1['peak_kib']):.2f} GiB",
    ]
    if network == "vgg16":
        phase1 = p1["phase1_s"] / p1["train"] * PLACES365_TRAIN + keras_img * PLACES365_TEST
        phase2 = snn_img * PLACES365_TEST + PLACES365_PARTS * max(s["first_s"] - snn_img * k["batch"], 0.0)
        cores = os.cpu_count() or 1
        lines.append(
            f"  Places365 row, projected: Phase 1 {phase1 / 3600:.1f} h + Phase 2 {phase2 / 3600:.1f} h = "
            f"{(phase1 + phase2) / 3600:.1f} h wall on this machine ({cores} cores), "
            f"{cores * (phase1 + phase2) / 3600:.1f} core hours")
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--networks", default="vgg16,resnet50")
    p.add_argument("--inputs", default="photos,uniform")
    p.add_argument("--images", type=int, default=4, help="images timed per method")
    p.add_argument("--batch-size", default="phase2",
                   help="'phase2' (the batch a Phase 2 part of the paper's configuration uses) or a number")
    p.add_argument("--train", type=int, default=4, help="training images for X_n (Phase 1)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", help="write the raw results here")
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=["phase1", "keras", "snn"], help=argparse.SUPPRESS)
    p.add_argument("--network", help=argparse.SUPPRESS)
    p.add_argument("--kind", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.batch_size != "phase2" and not args.batch_size.isdigit():
        p.error(f"--batch-size: 'phase2' or a number, not {args.batch_size!r}")
    if args.worker:
        print(json.dumps(worker(args)))
        return
    import tempfile

    raw = {}
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as workdir:
        args.workdir = workdir
        for network in args.networks.split(","):
            for kind in args.inputs.split(","):
                res = {"phase1": run_worker(args, "phase1", network, kind, args.batch_size)}
                for m in ("keras", "snn"):
                    res[m] = run_worker(args, m, network, kind, res["phase1"]["batch"])
                raw[f"{network}/{kind}"] = res
                print("\n".join(report(network, kind, res["phase1"], res["keras"], res["snn"])), flush=True)
                for f in Path(workdir).glob(f"{network}_{kind}*"):
                    f.unlink()
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
