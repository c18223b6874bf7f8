"""Importers: trained networks from other frameworks → the network description (:mod:`exactsnn.ir`).

:mod:`.keras` (Keras 3 models), :mod:`.onnx` (ONNX files: PyTorch, TensorFlow, ... exports) and
:mod:`.caffe` (a prototxt and a caffemodel: :func:`exactsnn.importers.caffe.import_caffe`, with an
optional Keras export).  :func:`import_model` picks the Keras or the ONNX importer by what it is given.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ModelFileError", "import_model", "read_model"]

ONNX_SUFFIXES = (".onnx",)


class ModelFileError(ValueError):
    """A model file that cannot be read (the message names it and says why, in one line)."""


def _is_onnx_model(model) -> bool:
    # Checked by type name, so that telling a Keras model from an ONNX one needs neither package.
    return type(model).__name__ == "ModelProto" and type(model).__module__.startswith("onnx")


def read_model(path) -> object:
    """The ``onnx.ModelProto`` (``.onnx``) or Keras model (any other file) stored at ``path``."""
    path = Path(os.fspath(path))
    if path.suffix.lower() in ONNX_SUFFIXES:
        try:
            from .onnx import load_onnx
        except ImportError as err:  # pragma: no cover - the onnx module itself imports nothing optional
            raise ModelFileError(f"{path}: {err}") from err
        try:
            return load_onnx(path)
        except ImportError as err:
            raise ModelFileError(f"{path}: reading ONNX files needs the onnx package: pip install 'exactsnn[onnx]' ({err})") from err
        except Exception as err:  # onnx raises protobuf's DecodeError, OSError, ...
            raise ModelFileError(f"{path}: cannot load as an ONNX model ({type(err).__name__}: {err})".splitlines()[0]) from err
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:  # Keras raises many types for a file that is not a model
        raise ModelFileError(f"{path}: cannot load as a Keras model ({err})".splitlines()[0]) from err


def import_model(model, **options):
    """The network description (:class:`exactsnn.ir.Graph`) of ``model``, by what it is.

    An ``ir.Graph`` is returned as it is; an ``onnx.ModelProto`` goes to
    :func:`exactsnn.importers.onnx.import_onnx` (``options``: ``input_layout``); a path is read
    with :func:`read_model` (``.onnx`` → ONNX, anything else → Keras) and imported; anything
    else is taken for a Keras model (:func:`exactsnn.importers.keras.import_keras`).
    """
    from .. import ir

    if isinstance(model, ir.Graph):
        return model
    if isinstance(model, (str, os.PathLike)):
        model = read_model(model)
    if _is_onnx_model(model):
        from .onnx import import_onnx

        return import_onnx(model, **options)
    if options:
        raise TypeError(f"options {sorted(options)} apply to ONNX models only")
    from .keras import import_keras

    return import_keras(model)
