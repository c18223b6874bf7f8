"""Command line: ``exactsnn convert | predict | inspect | export | crosscheck | caffe2keras``.

Bad input (a missing file, an array of the wrong shape or dtype, a layer the mapping
cannot represent) ends with one line on stderr and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np


class CLIError(Exception):
    """An input problem to report in one line."""


def _load_array(path: str, what: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise CLIError(f"{path}: no such file ({what})")
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as err:  # numpy raises several types for non-.npy content
        detail = " ".join(str(err).split())[:200] or type(err).__name__
        raise CLIError(f"{path}: not a NumPy .npy array, or a truncated one ({detail})") from err
    if not isinstance(arr, np.ndarray):
        raise CLIError(f"{path}: expected a single .npy array, got an archive")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise CLIError(f"{path}: {what} must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _check_array(x: np.ndarray, shape: tuple, input_range, path: str, clip: bool) -> np.ndarray:
    """Shape, finiteness and input range of an array read from ``path``
    (:func:`exactsnn.checks.check_inputs`); clipped values are reported on stderr."""
    from .checks import check_inputs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = check_inputs(x, shape, input_range, what=path, clip=clip)
    for w in caught:
        print(f"exactsnn: {w.message}", file=sys.stderr)
    return x


def _check_output(path: str) -> None:
    """Refuse an output path that cannot be written before any work is done (a directory,
    a parent that is a file, a folder without write permission)."""
    p = Path(path)
    if p.is_dir():
        raise CLIError(f"{path}: is a directory; -o needs a file name")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # the writer creates missing folders; check the first that exists
    if not parent.is_dir():
        raise CLIError(f"{path}: cannot be written, {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"{path}: cannot be written, no write permission in {parent}")
    if p.exists() and not os.access(p, os.W_OK):
        raise CLIError(f"{path}: cannot be written, the file is read-only")


def _load_network(path: str):
    from . import load
    from .spiking import SpikingNetwork

    try:
        net = load(path)
    except (FileNotFoundError, ValueError, OSError) as err:
        raise CLIError(str(err).splitlines()[0] if str(err) else f"{path}: cannot be read") from err
    if not isinstance(net, SpikingNetwork):
        raise CLIError(f"{path}: holds a {type(net).__name__}, not a spiking network")
    return net


def _check_shape(x: np.ndarray, shape: tuple, path: str) -> None:
    if x.shape[1:] != tuple(shape):
        raise CLIError(f"{path}: arrays of shape (N, {', '.join(map(str, shape))}) expected, got {x.shape}")


def cmd_convert(args) -> None:
    from . import convert
    from .importers import import_model, read_model

    _check_output(args.output)
    if not Path(args.model).is_file():
        raise CLIError(f"{args.model}: no such file (model)")
    graph = import_model(read_model(args.model))  # by file type: .onnx → ONNX, anything else → Keras
    sample = _load_array(args.sample, "training sample")
    sample = _check_array(sample, graph.nodes[graph.source].shape, args.input_range, args.sample, args.clip_inputs)
    net = convert(graph, sample, input_range=tuple(args.input_range), zeta=args.zeta, lower=args.lower,
                  upper=args.upper, neuron=args.neuron)
    net.save(args.output)
    print(f"wrote {args.output}: {len(net.hidden_layers)} spiking layers, {net.hidden_neurons} neurons, latency {net.latency:.6g}")


def cmd_predict(args) -> None:
    from .serialize import atomic
    from .simulator import simulate

    _check_output(args.output)
    net = _load_network(args.network)
    x = _check_array(_load_array(args.inputs, "inputs"), net.input_shape, net.input_range, args.inputs,
                     args.clip_inputs)
    sim = simulate(net, x, engine=args.engine, batch_size=args.batch_size, progress=sys.stderr.isatty())
    with atomic(args.output) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, logits=sim.logits, predictions=sim.predictions)
    print(f"wrote {args.output}: {sim.n_samples} samples, {int(sim.deviating.sum())} deviating spikes")


def cmd_inspect(args) -> None:
    net = _load_network(args.network)
    p, q = net.input_range
    print(f"input {net.input_shape}, range [{p:g}, {q:g}], zeta {net.zeta:g}, neuron model {net.neuron}")
    print(f"{'layer':<24}{'kind':<7}{'shape':<16}{'neurons':>9}{'t_start':>10}{'t_min':>10}{'t_max':>10}{'X_n':>10}{'threshold':>24}")
    for i, sl in enumerate(net.layers):
        shape = "x".join(map(str, sl.layer.output_shape))
        if sl.hidden:
            th = f"[{np.min(sl.threshold):.4g}, {np.max(sl.threshold):.4g}]"
            x_n = f"{net.X[i]:.4g}"
        else:
            th, x_n = "read-out", "-"
        print(f"{sl.layer.name:<24}{sl.layer.kind:<7}{shape:<16}{sl.neurons:>9}{sl.t_start:>10.4g}{sl.t_min:>10.4g}{sl.t_max:>10.4g}{x_n:>10}{th:>24}")
    print(f"hidden neurons {net.hidden_neurons}, latency t_min^(L) = {net.latency:.6g}, ReLU MACs {net.relu_macs}")


def cmd_export(args) -> None:
    from .export import save_hdf5

    _check_output(args.output)
    net = _load_network(args.network)
    save_hdf5(net, args.output)
    print(f"wrote {args.output}")


def cmd_crosscheck(args) -> None:
    from .crosscheck import main_crosscheck

    if args.output:
        _check_output(args.output)
    for path in (args.network, args.inputs):
        if not Path(path).is_file():
            raise CLIError(f"{path}: no such file")
    try:
        import brian2  # noqa: F401
    except ImportError as err:
        raise CLIError(f"the cross-check needs Brian2: pip install 'exactsnn[crosscheck]' ({err})") from err
    main_crosscheck(args.network, args.inputs, args.dt, args.n, output=args.output)  # exits 1 on a failed check


def cmd_caffe2keras(args) -> None:
    from .importers.caffe import main_caffe2keras

    _check_output(args.output)
    for path in (args.prototxt, args.caffemodel):
        if not Path(path).is_file():
            raise CLIError(f"{path}: no such file")
    main_caffe2keras(args.prototxt, args.caffemodel, args.output)
    print(f"wrote {args.output}")


def build_parser() -> argparse.ArgumentParser:
    from .neurons import NEURON_MODELS

    parser = argparse.ArgumentParser(
        prog="exactsnn",
        description="Map trained ReLU networks exactly onto single-spike (time-to-first-spike) spiking networks, "
        "simulate them, inspect, export and cross-check them.",
        epilog="Bad input ends with one line on stderr and exit status 2.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    # Commands that run TensorFlow take --verbose: its start-up lines are dropped otherwise.
    uses_tf = argparse.ArgumentParser(add_help=False)
    uses_tf.add_argument("-v", "--verbose", action="store_true",
                         help="keep TensorFlow's start-up messages on stderr (CUDA, oneDNN, CPU features); "
                         "also on with the environment variable EXACTSNN_VERBOSE=1")
    uses_tf.set_defaults(uses_tensorflow=True)

    c = sub.add_parser("convert", parents=[uses_tf], help="map a Keras or ONNX ReLU model to its exact SNN")
    c.add_argument("model", help="trained model: ONNX (.onnx) or Keras (.keras, .h5)")
    c.add_argument("sample", help="training sample for X_n (.npy, raw input domain)")
    c.add_argument("-o", "--output", required=True, help="spiking network to write (.npz)")
    c.add_argument("--input-range", nargs=2, type=float, default=(0.0, 1.0), metavar=("P", "Q"),
                   help="range [p, q] of the model's raw inputs, coded as spike times 1 − (x − p)/(q − p) "
                   "(default 0 1)")
    c.add_argument("--zeta", type=float, default=0.5, help="time-window margin ζ (default 0.5)")
    c.add_argument("--lower", type=float, default=-10.0, help="lower bound of Σ_j W_ij (default -10)")
    c.add_argument("--upper", type=float, default=0.99, help="upper bound of Σ_j W_ij (default 0.99)")
    c.add_argument("--neuron", choices=NEURON_MODELS, default="alpha",
                   help="neuron model: alpha (2023, one spike per neuron) or b1 (silence codes zero)")
    c.add_argument("--clip-inputs", action="store_true",
                   help="clip sample values outside the input range to it (reported) instead of refusing them")
    c.set_defaults(func=cmd_convert)

    p = sub.add_parser("predict", parents=[uses_tf], help="simulate the SNN on inputs")
    p.add_argument("network", help="spiking network (.npz)")
    p.add_argument("inputs", help="inputs (.npy, raw input domain)")
    p.add_argument("-o", "--output", required=True, help="output .npz with arrays logits and predictions")
    p.add_argument("--engine", choices=("fast", "event"), default="fast",
                   help="fast: certified closed form with an event-driven fallback (default); "
                   "event: every neuron walks its potential (same spikes, slower)")
    p.add_argument("--batch-size", type=int, default=256, help="samples simulated at once (default 256)")
    p.add_argument("--clip-inputs", action="store_true",
                   help="clip input values outside the network's input range to it (reported) instead of refusing them")
    p.set_defaults(func=cmd_predict)

    i = sub.add_parser("inspect", help="print windows, X_n, thresholds and neuron counts")
    i.add_argument("network", help="spiking network (.npz)")
    i.set_defaults(func=cmd_inspect)

    e = sub.add_parser("export", help="write a converted network in the documented HDF5 layout")
    e.add_argument("network", help="spiking network (.npz)")
    e.add_argument("-o", "--output", required=True, help="HDF5 file to write (.h5)")
    e.set_defaults(func=cmd_export)

    x = sub.add_parser("crosscheck", parents=[uses_tf], help="compare our simulator with Brian2 on the first samples")
    x.add_argument("network", help="spiking network (.npz or .h5)")
    x.add_argument("inputs", help="inputs (.npy, raw input domain)")
    x.add_argument("--dt", type=float, default=1e-3, help="Brian2 time step (default 0.001)")
    x.add_argument("-n", type=int, default=20, help="number of samples (default 20)")
    x.add_argument("--output", help="also write the comparison table as CSV")
    x.set_defaults(func=cmd_crosscheck)

    k = sub.add_parser("caffe2keras", parents=[uses_tf],
                       help="convert a Caffe VGG (prototxt + caffemodel) to a Keras model")
    k.add_argument("prototxt", help="Caffe network definition (deploy.prototxt)")
    k.add_argument("caffemodel", help="Caffe weights (.caffemodel)")
    k.add_argument("-o", "--output", required=True, help="Keras model to write (.keras)")
    k.set_defaults(func=cmd_caffe2keras)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "uses_tensorflow", False):
            from .ops import import_tensorflow

            import_tensorflow(verbose=args.verbose or None)
        args.func(args)
    except (CLIError, FileNotFoundError) as err:
        print(f"exactsnn: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as err:  # unsupported layers, bad ranges, broken files, unwritable paths
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"exactsnn: error: {text}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
