"""Float64 tensor operations shared by the preprocessing, the ReLU reference and the simulator.

Convolutions always run on explicitly padded inputs (``VALID`` in TensorFlow's terms), so the
padding value is ours to choose: zeros for activations, ``t_min`` for spike times (a padded
tap is an input spike that codes 0, DESIGN §2).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import numpy as np

VERBOSE_ENV = "EXACTSNN_VERBOSE"


def _verbose_from_env() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def _stderr_captured():
    """Point file descriptor 2 at a temporary file; yield it, put the old stderr back after.

    TensorFlow's C++ start-up lines (CUDA probing, oneDNN, CPU features) are written by absl
    before its logging is initialised, straight to fd 2, so TF_CPP_MIN_LOG_LEVEL cannot stop
    them and redirecting sys.stderr does not reach them.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow(verbose: bool | None = None):
    """TensorFlow, imported on first use, without its start-up noise on stderr.

    ``verbose`` (default: the environment variable EXACTSNN_VERBOSE set to anything but
    "", 0, false or no) keeps TensorFlow's messages.  If the import fails, what TensorFlow
    wrote is passed on to stderr before the error, so a broken installation still says why.
    Only the first import is affected; call this before anything imports Keras (which imports
    TensorFlow) to keep that one quiet too.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    if verbose is None:
        verbose = _verbose_from_env()
    if verbose:
        import tensorflow as tf

        return tf
    error = None
    with _stderr_captured() as captured:
        try:
            import tensorflow as tf

            # Probing the devices here, not at the first op, keeps the CUDA driver's
            # complaints (cuInit on a machine without a GPU) inside the capture.
            tf.config.list_physical_devices()
        except BaseException as err:  # re-raised below, once stderr is back
            error = err
        captured.seek(0)
        text = captured.read()
    if error is not None:
        sys.stderr.write(text.decode(errors="replace"))
        raise error
    return tf


def _tf():
    """TensorFlow, imported on first use: jobs that only read results need not pay for it."""
    return import_tensorflow()


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """Keras/TensorFlow ``same`` padding (before, after) along one axis."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def conv_output_size(size: int, kernel: int, stride: int, dilation: int = 1) -> int:
    """Output length of a ``valid`` convolution or pooling along one axis."""
    effective = (kernel - 1) * dilation + 1
    return (size - effective) // stride + 1


def pad_input(x, pads, used, value: float):
    """Crop ``x`` (N, H, W, C) to its first ``used`` rows/columns, then pad with ``value``.

    ``pads`` is (top, bottom, left, right).  The crop exists for averaging pools folded into
    a convolution (see :func:`exactsnn.folding.fold_avg_pool_into_conv`).
    """
    x = np.asarray(x, np.float64)[:, : used[0], : used[1], :]
    top, bottom, left, right = pads
    if top or bottom or left or right:
        x = np.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)], constant_values=value)
    return x


def conv2d(x, kernel: np.ndarray, strides, dilation):
    """``valid`` 2-D convolution (cross-correlation, as Keras) in float64."""
    tf = _tf()
    return tf.nn.conv2d(
        tf.convert_to_tensor(x, tf.float64),
        tf.convert_to_tensor(kernel, tf.float64),
        strides=[1, strides[0], strides[1], 1],
        padding="VALID",
        dilations=[1, dilation[0], dilation[1], 1],
    )


def padded_conv2d(x, kernel, strides, dilation, pads):
    """2-D convolution in TensorFlow (tensors in, a tensor out) with zeros at the ``pads`` (top,
    bottom, left, right) given to the convolution as explicit padding, so that no padded copy
    of the input is made."""
    tf = _tf()
    top, bottom, left, right = pads
    return tf.nn.conv2d(
        x, kernel, strides=[1, strides[0], strides[1], 1], padding=[[0, 0], [top, bottom], [left, right], [0, 0]],
        dilations=[1, dilation[0], dilation[1], 1],
    )


def signed_max_pool(x, size, strides, padding: str, sign: np.ndarray):
    """Max pooling per channel where ``sign`` > 0 and min pooling where ``sign`` < 0.

    Min pooling appears when a batch normalisation with a negative scale was folded through
    the pool: s·max(x) = min(s·x) for s < 0.  Padding is ignored either way (as in Keras).
    """
    tf = _tf()
    x = tf.convert_to_tensor(x, tf.float64)
    ksize = [1, size[0], size[1], 1]
    st = [1, strides[0], strides[1], 1]
    pad = padding.upper()
    up = tf.nn.max_pool2d(x, ksize, st, pad)
    if np.all(sign >= 0):
        return up
    down = -tf.nn.max_pool2d(-x, ksize, st, pad)
    return tf.where(tf.convert_to_tensor(sign >= 0), up, down)


def pooled_shape(shape, size, strides, padding: str):
    h, w, c = shape
    if padding == "same":
        return (-(-h // strides[0]), -(-w // strides[1]), c)
    return (conv_output_size(h, size[0], strides[0]), conv_output_size(w, size[1], strides[1]), c)
