"""exactsnn: exact mapping of trained ReLU networks onto single-spike spiking networks.

Stanojevic et al., "An Exact Mapping From ReLU Networks to Spiking Neural Networks",
Neural Networks (2023).  The stages follow the data: import → network description (ir) →
preprocess (Phase 1) → spiking network (Phase 2) → simulate (:func:`simulate`) → measure.
"""

from __future__ import annotations

from .simulator import Simulation, simulate
from .spiking import SpikingNetwork

__version__ = "0.1.0"
__all__ = ["convert", "load", "simulate", "Simulation", "SpikingNetwork", "__version__"]


def convert(model, x_sample, *, input_range=(0.0, 1.0), zeta=0.5, lower=-10.0, upper=0.99,
            alpha_sigma=0.0, alpha_seed=0, neuron="alpha", clip_inputs=False) -> SpikingNetwork:
    """Map a trained ReLU network to its exact single-spike network.

    ``model`` is a Keras model, an ONNX model (``onnx.ModelProto``), a path to either (``.onnx``
    or a Keras file) or an already imported :class:`exactsnn.ir.Graph`
    (:func:`exactsnn.importers.import_model`).  ``x_sample`` (training inputs, in the raw domain
    the model takes, channels last) gives X_n; ``input_range`` = (p, q) is the range of the raw
    inputs; ``neuron`` is "alpha" (the 2023 model, one spike per neuron) or "b1" (silence codes zero).
    The sample must be finite and inside ``input_range`` unless ``clip_inputs`` (then it is
    clipped, with a :class:`exactsnn.checks.ClippedInputsWarning` saying how many values).
    """
    from .importers import import_model
    from .preprocess import preprocess
    from .spiking import spiking_network

    prep = preprocess(import_model(model), x_sample, input_range=input_range, lower=lower, upper=upper,
                      clip_inputs=clip_inputs)
    return spiking_network(prep, zeta=zeta, alpha_sigma=alpha_sigma, alpha_seed=alpha_seed, neuron=neuron)


def load(path) -> SpikingNetwork:
    """Load a network saved with :meth:`SpikingNetwork.save` (or any exactsnn object)."""
    from . import serialize

    obj = serialize.load(path)
    return obj
