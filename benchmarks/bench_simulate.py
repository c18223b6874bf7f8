"""Benchmark: exact SNN simulation against the Keras float64 forward pass and sort-and-gather.

Three Keras networks with random (Glorot) weights and randomised batch-norm statistics:

* ``fc``     784-600-10 (the paper's MNIST FC network);
* ``lenet``  LeNet-5 on 28×28×1: 6@5×5 same, pool, 16@5×5 valid, pool, 120@5×5 valid, 84, 10,
             batch normalisation before every hidden ReLU;
* ``vgg``    VGG-style on 32×32×3: 3×3 same convolutions 32-32-P-64-64-P-128-128-P-256-256-P
             (8 conv layers), dense 256, 10; batch normalisation after every hidden ReLU, 2×2 max
             pooling.

For each network, on the same inputs, in this one process, float64, it times per sample

(a) the Keras float64 forward pass of the original network
    (``exactsnn.importers.keras.float64_logits_model`` called through ``tf.function``),
(b) the default engine ``exactsnn.simulate(snn, x)``,
(c) the event-driven engine ``exactsnn.simulate(snn, x, engine="event", record=True)`` (fewer samples),
(d) the original code's sort-and-gather algorithm (``sort_and_gather.py``, fewer samples),

and the Phase 1 time (``exactsnn.preprocess.preprocess``: fold + scale + X_n) against one Keras
forward pass over the same training sample.  Every method is warmed up on its batch shapes
first; (a), (b) and Phase 1 alternate with their reference and keep the best of ``--repeats``
runs, (c) and (d) run once.  Inputs are MNIST-like upsampled scikit-learn digits by default
(``--inputs uniform`` for i.i.d. U(0, 1) pixels); the training sample is disjoint.

Peak memory is measured separately: each method runs once more, on one batch, in a fresh
subprocess (``--worker``).  After set-up (model and SNN loaded, ``malloc_trim``) the peak RSS is
reset through ``/proc/self/clear_refs``; VmHWM after the method's warm-up and run minus VmRSS
before them is reported (so it includes tracing and allocator pools).

It checks that the default and event engines give the same spike times (≤ 1e-12) and that the
SNN predictions equal the Keras predictions.

Run from the repository root:  python benchmarks/bench_simulate.py   (--help for the flags)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

NETWORKS = ("fc", "lenet", "vgg")
METHODS = ("keras", "fast", "event", "sort")
LABELS = {
    "keras": "Keras float64 forward",
    "fast": "exactsnn default (fast)",
    "event": "exactsnn event",
    "sort": "sort-and-gather (orig.)",
}
VGG_WIDTHS = (32, 32, "P", 64, 64, "P", 128, 128, "P", 256, 256, "P")
INPUT_SHAPES = {"fc": (784,), "lenet": (28, 28, 1), "vgg": (32, 32, 3)}

DEFAULTS = {
    "samples": {"fc": 512, "lenet": 1024, "vgg": 256},
    "event": {"fc": 16, "lenet": 16, "vgg": 4},
    "sort": {"fc": 64, "lenet": 64, "vgg": 8},
    "sort_batch": {"fc": 64, "lenet": 64, "vgg": 2},
    "train": {"fc": 2048, "lenet": 2048, "vgg": 1024},
}


# --------------------------------------------------------------------------- networks


def build(name: str, x_train: np.ndarray, seed: int):
    """The Keras network ``name`` with Glorot weights and randomised BN statistics.

    BN statistics are first calibrated on ``x_train`` (the batch mean and variance of the BN
    input), then randomised: mean + N(0, 0.2 std), variance × U(0.5, 2), γ = ±U(0.5, 1.5) with
    a random sign (negative scales exercise the sign-aware pooling), β = N(0, 0.5).  Calibrating
    first keeps a deep random network from dying out or saturating.  Biases are N(0, 0.05).
    """
    import keras

    L = keras.layers
    keras.utils.set_random_seed(seed)
    if name == "fc":
        layers = [L.Dense(600, activation="relu"), L.Dense(10)]
    elif name == "lenet":
        layers = [
            L.Conv2D(6, 5, padding="same"), L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(2),
            L.Conv2D(16, 5, padding="valid"), L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(2),
            L.Conv2D(120, 5, padding="valid"), L.BatchNormalization(), L.ReLU(), L.Flatten(),
            L.Dense(84), L.BatchNormalization(), L.ReLU(), L.Dense(10),
        ]
    elif name == "vgg":
        layers = []
        for w in VGG_WIDTHS:
            if w == "P":
                layers.append(L.MaxPooling2D(2))
            else:
                layers += [L.Conv2D(w, 3, padding="same", activation="relu"), L.BatchNormalization()]
        layers += [L.Flatten(), L.Dense(256, activation="relu"), L.BatchNormalization(), L.Dense(10)]
    else:
        raise ValueError(f"unknown network {name!r}")
    model = keras.Sequential([keras.Input(INPUT_SHAPES[name])] + layers, name=name)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, (L.Dense, L.Conv2D)):
            w = layer.get_weights()
            w[1] = rng.normal(0.0, 0.05, w[1].shape)
            layer.set_weights(w)
    for layer in model.layers:  # in order, so each calibration sees the randomised layers before it
        if isinstance(layer, L.BatchNormalization):
            probe = keras.Model(model.inputs, layer.input)
            h = np.asarray(probe.predict(x_train[:512], batch_size=256, verbose=0), np.float64)
            h = h.reshape(-1, h.shape[-1])
            mean, std = h.mean(0), h.std(0) + 1e-3
            c = mean.size
            sign = np.where(rng.random(c) < 0.5, -1.0, 1.0)
            layer.set_weights([
                sign * rng.uniform(0.5, 1.5, c),
                rng.normal(0.0, 0.5, c),
                mean + rng.normal(0.0, 0.2, c) * std,
                std**2 * rng.uniform(0.5, 2.0, c),
            ])
    return model


def inputs(name: str, n_train: int, n_test: int, seed: int, kind: str = "digits"):
    """A training sample and test inputs in [0, 1], drawn independently.

    ``digits``: scikit-learn's 8×8 handwritten digits, upsampled into an MNIST-like 28×28 frame
    (digit 20×20, zero border; FC flattens it) or to 32×32 with a random colour per image and
    channel for the VGG-style net, shifted by up to ±2 pixels; about as sparse as MNIST.
    ``uniform``: i.i.d. U(0, 1) pixels (no silent inputs at all).
    """
    rng = np.random.default_rng([seed, 1])
    shape = INPUT_SHAPES[name]
    total = n_train + n_test
    if kind == "uniform":
        x = rng.uniform(0.0, 1.0, (total,) + shape)
        return x[:n_train], x[n_train:]
    if kind != "digits":
        raise ValueError(f"unknown input kind {kind!r}")
    import tensorflow as tf
    from sklearn.datasets import load_digits

    digits = load_digits().images[rng.integers(0, 1797, total)][..., None] / 16.0
    if name == "vgg":
        img = tf.image.resize(digits, (32, 32), "bilinear").numpy()
        img = img * rng.uniform(0.3, 1.0, (total, 1, 1, 3))
    else:
        img = np.pad(tf.image.resize(digits, (20, 20), "bilinear").numpy(), ((0, 0), (4, 4), (4, 4), (0, 0)))
    shifts = rng.integers(-2, 3, (total, 2))
    img = np.stack([np.roll(im, tuple(sh), axis=(0, 1)) for im, sh in zip(img, shifts)])
    x = np.clip(img, 0.0, 1.0).reshape((total,) + shape)
    return x[:n_train], x[n_train:]


# --------------------------------------------------------------------------- methods


class Methods:
    """The four simulations of one network, ready to run (compiled and warmed up)."""

    def __init__(self, model, snn, batch_size: int, sort_batch: int):
        import tensorflow as tf

        from exactsnn.importers.keras import float64_logits_model
        from sort_and_gather import SortAndGather

        self.snn, self.batch_size, self.sort_batch = snn, batch_size, sort_batch
        m64 = float64_logits_model(model)
        self._keras = tf.function(lambda x: m64(x, training=False), reduce_retracing=True)
        self._sort = SortAndGather(snn)

    def keras(self, x) -> np.ndarray:
        import tensorflow as tf

        bs = self.batch_size
        return np.concatenate([self._keras(tf.constant(x[i : i + bs])).numpy() for i in range(0, len(x), bs)])

    def fast(self, x):
        import exactsnn

        return exactsnn.simulate(self.snn, x, batch_size=self.batch_size)

    def event(self, x):
        import exactsnn

        # record=True: the recorded spike times are compared with the default engine's
        return exactsnn.simulate(self.snn, x, engine="event", batch_size=self.batch_size, record=True)

    def sort(self, x) -> np.ndarray:
        return self._sort.logits(x, self.sort_batch)

    def run(self, method: str, x):
        return getattr(self, method)(x)

    def warm_up(self, method: str, x) -> None:
        """Trace / warm the method on the batch shapes it will see."""
        bs = self.sort_batch if method == "sort" else self.batch_size
        sizes = {min(bs, len(x))}
        if len(x) % bs:
            sizes.add(len(x) % bs)
        for n in sorted(sizes):
            self.run(method, x[:n])


def best_time(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# --------------------------------------------------------------------------- memory (subprocess)


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def worker(args) -> None:
    """Warm up and run one method on the saved inputs; print its peak RSS above the RSS after set-up."""
    import keras

    import exactsnn

    d = Path(args.workdir)
    model = keras.models.load_model(d / f"{args.worker_net}.keras")
    snn = exactsnn.load(d / f"{args.worker_net}_snn.npz")
    x = np.load(d / f"{args.worker_net}_x_{args.worker_method}.npy")
    m = Methods(model, snn, args.batch_size, args.worker_sort_batch)
    gc.collect()
    try:  # hand freed heap back to the system, so that the method's allocations show in the peak
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    base = _proc_status_kib("VmRSS")
    reset = True
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    except OSError:
        reset = False
    m.warm_up(args.worker_method, x)  # tracing, first-call allocations and pools count too
    m.run(args.worker_method, x)
    peak = _proc_status_kib("VmHWM")
    print(json.dumps({"base_kib": base, "peak_kib": peak, "reset": reset}))


def peak_memory(args, net: str, method: str, workdir: Path, sort_batch: int) -> dict:
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--worker-net", net, "--worker-method", method,
        "--workdir", str(workdir), "--batch-size", str(args.batch_size), "--worker-sort-batch", str(sort_batch),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr[-3000:])
        return {"peak_mib": float("nan"), "delta_mib": float("nan")}
    info = json.loads(res.stdout.strip().splitlines()[-1])
    if not info["reset"]:
        print(f"  (could not reset the peak RSS for {net}/{method}: the figure includes set-up)")
    return {"peak_mib": info["peak_kib"] / 1024, "delta_mib": (info["peak_kib"] - info["base_kib"]) / 1024}


# --------------------------------------------------------------------------- one network


def bench_network(args, name: str, workdir: Path) -> dict:
    import exactsnn
    from exactsnn.importers.keras import import_keras
    from exactsnn.preprocess import preprocess

    n = args.samples[name]
    n_event = min(args.event[name], n)
    n_sort = min(args.sort[name], n)
    sort_batch = args.sort_batch[name]
    x_train, x = inputs(name, args.train[name], n, args.seed, args.inputs)
    t0 = time.perf_counter()
    model = build(name, x_train, args.seed)
    snn = exactsnn.convert(model, x_train, input_range=(0.0, 1.0))
    setup = time.perf_counter() - t0
    m = Methods(model, snn, args.batch_size, sort_batch)
    subsets = {"keras": x, "fast": x, "event": x[:n_event], "sort": x[:n_sort]}
    print(f"\n== {name}: {model.count_params():,} parameters, {snn.hidden_neurons:,} hidden neurons, "
          f"{snn.relu_macs / 1e6:.1f} M MACs/sample; set-up {setup:.1f} s", flush=True)

    # ---- timings, all in this process, same inputs.  Keras and the default engine alternate
    # (best of --repeats each), so a change in the machine's load hits both alike.
    res = {"name": name, "n": {k: len(v) for k, v in subsets.items()}, "time": {}, "out": {}}
    for method in METHODS:
        m.warm_up(method, subsets[method])
    rounds = {"keras": args.repeats, "fast": args.repeats, "event": 1, "sort": 1}
    best = {k: np.inf for k in METHODS}
    for r in range(args.repeats):
        for method in METHODS:
            if r >= rounds[method]:
                continue
            gc.collect()
            t0 = time.perf_counter()
            res["out"][method] = m.run(method, subsets[method])
            best[method] = min(best[method], time.perf_counter() - t0)
    for method in METHODS:
        res["time"][method] = best[method] / len(subsets[method])
        print(f"  {LABELS[method]:<26} {len(subsets[method]):>6} samples  {1e3 * res['time'][method]:10.4f} ms/sample",
              flush=True)

    # ---- Phase 1 against one forward pass over the same training sample
    graph = import_keras(model)
    m.keras(x_train[: args.batch_size])
    preprocess(graph, x_train[:8], input_range=(0.0, 1.0))  # warm-up
    res["phase1"] = res["phase1_fwd"] = np.inf
    for _ in range(args.repeats):  # alternating, best of each
        res["phase1"] = min(res["phase1"], best_time(lambda: preprocess(graph, x_train, input_range=(0.0, 1.0)), 1))
        res["phase1_fwd"] = min(res["phase1_fwd"], best_time(lambda: m.keras(x_train), 1))
    res["n_train"] = len(x_train)

    # ---- checks
    keras_logits = res["out"]["keras"]
    keras_pred = keras_logits.argmax(1)
    fast = res["out"]["fast"]
    res["checks"] = {
        "fast_pred_equal": bool(np.array_equal(fast.predictions, keras_pred)),
        "fast_logit_relerr": float(np.max(np.abs(fast.logits - keras_logits)) / np.max(np.abs(keras_logits))),
        "event_pred_equal": bool(np.array_equal(res["out"]["event"].predictions, keras_pred[:n_event])),
        "sort_pred_equal": bool(np.array_equal(res["out"]["sort"].argmax(1), keras_pred[:n_sort])),
        "certified": fast.certified,
        "fallback": fast.fallback,
        "deviating": int(fast.deviating.sum()),
        "density": float(fast.nonzero.sum() / fast.spikes.sum()),
        "classes": int(len(np.unique(keras_pred))),
    }
    a = exactsnn.simulate(snn, x[:n_event], record=True, batch_size=args.batch_size)
    b = res["out"]["event"]
    diffs = [float(np.max(np.abs(p - q))) for p, q in zip(a.spike_times, b.spike_times)]
    worst = int(np.argmax(diffs))
    res["checks"]["fast_vs_event"] = diffs[worst]
    res["checks"]["fast_vs_event_layer"] = worst
    res["checks"]["fast_vs_event_rel"] = max(d / abs(sl.t_max) for d, sl in zip(diffs, snn.hidden_layers))
    res["checks"]["t_max_last"] = float(snn.hidden_layers[-1].t_max)
    sg_times = m._sort.hidden_times(x[: min(n_sort, 2)])
    res["checks"]["sort_vs_event"] = max(
        float(np.max(np.abs(p - q[: len(p)]))) for p, q in zip(sg_times, b.spike_times)
    ) if n_event >= 2 else float("nan")
    c = res["checks"]
    print(f"  checks: fast vs event spike times ({n_event} samples) max |Δt| = {c['fast_vs_event']:.2e} "
          f"(hidden layer {c['fast_vs_event_layer']}; ≤ 1e-12: {'OK' if c['fast_vs_event'] <= 1e-12 else 'FAIL'}), "
          f"max |Δt| / t_max of its layer = {c['fast_vs_event_rel']:.1e} (spike times reach {c['t_max_last']:.1f})\n"
          f"          predictions = Keras: fast {c['fast_pred_equal']}, "
          f"event {c['event_pred_equal']}, sort-and-gather {c['sort_pred_equal']}; "
          f"max |logit − Keras| / max |logit| = {c['fast_logit_relerr']:.1e}", flush=True)
    print(f"          fast engine: {c['certified']:,} neurons certified, {c['fallback']:,} fell back, "
          f"{c['deviating']} deviate from t_max − x; spike density {c['density']:.2f}; "
          f"{c['classes']} classes predicted; sort-and-gather vs event max |Δt| = {c['sort_vs_event']:.1e}")

    # ---- peak memory, one subprocess per method
    res["mem"] = {}
    if not args.no_memory:
        model.save(workdir / f"{name}.keras")
        snn.save(workdir / f"{name}_snn.npz")
        # Peak memory does not grow with the number of samples beyond one batch (one call of
        # sort-and-gather, two samples of the event engine), so the workers run that much.
        mem_n = {"keras": args.batch_size, "fast": args.batch_size, "event": 2, "sort": sort_batch}
        for method in METHODS:
            np.save(workdir / f"{name}_x_{method}.npy", subsets[method][: mem_n[method]])
            res["mem"][method] = peak_memory(args, name, method, workdir, sort_batch)
    del res["out"]
    return res


# --------------------------------------------------------------------------- report


def table(results: list, args) -> str:
    lines = []
    head = "| network | method | samples timed | ms / sample | × Keras fwd | peak RSS, one batch (MiB) |"
    lines += [head, "|---|---|---:|---:|---:|---:|"]
    for r in results:
        k = r["time"]["keras"]
        for method in METHODS:
            mem = r["mem"].get(method, {}).get("delta_mib", float("nan"))
            lines.append(
                f"| {r['name']} | {LABELS[method]} | {r['n'][method]} | {1e3 * r['time'][method]:.4f} | "
                f"{r['time'][method] / k:.2f} | {mem:.0f} |"
            )
    lines += ["", "| network | sort-and-gather time / default engine time | Phase 1 (s) | Keras fwd on same sample (s) | Phase 1 / fwd |",
              "|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r['name']} | {r['time']['sort'] / r['time']['fast']:.3g}× | {r['phase1']:.3f} | "
            f"{r['phase1_fwd']:.3f} ({r['n_train']} samples) | {r['phase1'] / r['phase1_fwd']:.2f} |"
        )
    return "\n".join(lines)


def _per_net(text: str, default: dict) -> dict:
    """'fc=1000,vgg=64' or one number for all networks."""
    out = dict(default)
    if text is None:
        return out
    if "=" not in text:
        return {k: int(text) for k in out}
    for part in text.split(","):
        k, v = part.split("=")
        if k not in out:
            raise SystemExit(f"unknown network {k!r}; choose from {', '.join(NETWORKS)}")
        out[k] = int(v)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated subset of fc,lenet,vgg")
    fmt = lambda key: ",".join(f"{k}={v}" for k, v in DEFAULTS[key].items())  # noqa: E731
    p.add_argument("--samples", help=f"test samples for Keras and the default engine ({fmt('samples')})")
    p.add_argument("--event", help=f"samples for the event engine ({fmt('event')})")
    p.add_argument("--sort", help=f"samples for sort-and-gather ({fmt('sort')})")
    p.add_argument("--sort-batch", help=f"samples per compiled sort-and-gather call ({fmt('sort_batch')})")
    p.add_argument("--train", help=f"training sample for Phase 1 ({fmt('train')})")
    p.add_argument("--batch-size", type=int, default=256, help="batch of Keras and of snn.simulate (256)")
    p.add_argument("--repeats", type=int, default=3, help="best of this many runs for Keras, default engine, Phase 1 (3)")
    p.add_argument("--inputs", choices=("digits", "uniform"), default="digits",
                   help="digits: upsampled scikit-learn digits, MNIST-like sparsity (default); uniform: U(0, 1) pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--worker-net", help=argparse.SUPPRESS)
    p.add_argument("--worker-method", help=argparse.SUPPRESS)
    p.add_argument("--worker-sort-batch", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker_net:
        worker(args)
        return
    for key in ("samples", "event", "sort", "sort_batch", "train"):
        setattr(args, key, _per_net(getattr(args, key), DEFAULTS[key]))
    nets = [n for n in args.networks.split(",") if n]

    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}, NumPy {np.__version__}, {os.cpu_count()} CPUs, "
          f"intra-op threads {tf.config.threading.get_intra_op_parallelism_threads() or 'default'}; float64; "
          f"load average {os.getloadavg()[0]:.2f} (timings assume an otherwise idle machine)")
    start = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_simulate_") as tmp:
        for name in nets:
            results.append(bench_network(args, name, Path(tmp)))
    print("\n" + table(results, args))
    print("\nPeak memory: each method once more in its own subprocess, on one batch of the same inputs "
          f"({args.batch_size} samples for Keras and the default engine, 2 for the event engine, one "
          "sort-and-gather call): peak RSS (VmHWM) over its warm-up and run minus the RSS after set-up "
          "(model and SNN loaded, malloc_trim; the peak is reset through /proc/self/clear_refs).")
    print(f"Total wall time {time.perf_counter() - start:.0f} s; load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
