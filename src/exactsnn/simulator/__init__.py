"""Simulating the single-spike network: a certified fast path and an event-driven reference.

Once a neuron's last input has arrived its potential is a line, which crosses ϑ_i at the
closed form of its neuron model (:meth:`exactsnn.neurons.AlphaNeuron.spike_time`),
computed for a whole layer with one matmul/convolution.  The engines differ in how they
settle what happens before:

* **event-driven** (``engine="event"``): every neuron sorts its input spikes and walks its
  piecewise-linear potential from its first event up to its last input
  (:func:`.kernels.walk`, Numba, one sort per receptive field); a crossing there is its
  spike, otherwise the closed form (or the forced spike at t_max^(n)).
* **fast** (default, DESIGN §4): a bound proves, for nearly every neuron at once, that V_i
  stays below ϑ_i until the last input (:mod:`.fastpath`); only the neurons it leaves are
  walked, after two cheaper per-neuron bounds.

Both take the same closed form, so they agree to the last bit unless a bound is wrong.
Noise-free α-model networks run layer by layer as traced TensorFlow steps with values
x = t_max − t between layers; with spike-time noise, or after an upstream deviation puts an
input outside its window, a layer runs in NumPy (:mod:`.layers`), looking up to the
sample's last input.

The files follow the work: :mod:`.result` (what a run produced), :mod:`.kernels` (compiled
walk and bounds), :mod:`.event` (the event-driven solver), :mod:`.fastpath` (the certified
compiled layer), :mod:`.layers` (one layer, either path, and the read-out), :mod:`.network`
(the loop over the network graph).
"""

from __future__ import annotations

from .event import first_crossings
from .network import simulate
from .result import Simulation

__all__ = ["simulate", "Simulation", "first_crossings"]
