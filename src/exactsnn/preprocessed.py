"""The ReLU network of Phase 1 (DESIGN §2, Phase 1): a chain of synapse groups
(:mod:`exactsnn.synapses`) with its input coding, as :func:`exactsnn.preprocess.fold_network`
makes it and :func:`exactsnn.preprocess.scale_weights` scales it; it computes the original
network's function in float64."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import ops
from .serialize import register
from .synapses import Synapses

#: Activations one forward batch may hold (Phase 1's X_n and reference predictions): 2 GiB.
ACTIVATION_BUDGET = 2 * 2**30


@register
@dataclass
class PreprocessedNetwork:
    """The scaled ReLU network of Phase 1.

    Its inputs are the raw inputs mapped to [0, 1] with ``input_range`` = (p, q);
    ``input_pools`` act on them before the first layer.  ``X`` holds X_n, the largest
    ReLU output of each hidden layer on the training sample.
    """

    input_shape: tuple
    input_range: tuple
    layers: list
    input_pools: list = field(default_factory=list)
    X: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lower: float = -10.0
    upper: float = 0.99

    def __post_init__(self):
        self.input_shape = tuple(int(s) for s in self.input_shape)
        self.input_range = tuple(float(v) for v in self.input_range)
        self.X = np.asarray(self.X, np.float64)

    @property
    def hidden(self) -> list:
        return [l for l in self.layers if l.relu]

    def normalise(self, x) -> np.ndarray:
        """Raw inputs to the unit interval the SNN codes: u = (x − p) / (q − p)."""
        p, q = self.input_range
        x = np.asarray(x, np.float64)
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"inputs have shape {x.shape[1:]}, the network expects {self.input_shape}")
        return (x - p) / (q - p)

    def last_use(self) -> dict:
        """For each layer index (−1: input), the last layer that reads its output."""
        last = {}
        for k, layer in enumerate(self.layers):
            for g in layer.groups:
                last[g.source] = k
        return last

    def sample_bytes(self) -> int:
        """Bytes one sample's activations take while its widest layer is computed: the input,
        W x + b and the ReLU output (pooled or not), float64."""
        widest = 0
        for layer in self.layers:
            inputs = sum(int(np.prod(g.input_shape)) for g in layer.groups)
            widest = max(widest, inputs + 2 * int(np.prod(layer.output_shape)))
        return 8 * widest

    def batch_size(self, largest: int = 512, budget_bytes: int = ACTIVATION_BUDGET) -> int:
        """The largest batch (≤ ``largest``, ≥ 1) whose activations fit ``budget_bytes``: small
        networks keep ``largest``, VGG16 at 224×224 (77 MB a sample) gets 27."""
        return int(max(1, min(largest, budget_bytes // max(self.sample_bytes(), 1))))

    def batches(self, x, batch_size: int | None = None, hidden: str = "arrays"):
        """Per batch of ``x``: (logits, per hidden layer its ReLU output) in float64.

        ``hidden`` = "arrays": the outputs as NumPy views; "max": only their largest values
        (the outputs are dropped as soon as the next layer has them, so memory does not grow
        with the number of layers kept).  ``batch_size`` None: :meth:`batch_size`.
        Activations stay TensorFlow tensors from layer to layer (:meth:`Synapses.tf_product`)."""
        tf = ops._tf()
        batch_size = batch_size or self.batch_size()
        last = self.last_use()
        kernels = [[tf.constant(g.kernel) for g in l.groups] for l in self.layers]
        for start in range(0, len(x), batch_size):
            h = self.normalise(x[start : start + batch_size])
            for pool in self.input_pools:
                h = pool.on_values(h)
            outputs, acts = {-1: tf.convert_to_tensor(h, tf.float64)}, []
            for k, layer in enumerate(self.layers):
                z = tf.add_n([
                    g.tf_product(g.tf_inputs(outputs[g.source]), w) for g, w in zip(layer.groups, kernels[k])
                ]) + layer.bias
                for src in [s for s, user in last.items() if user == k]:
                    outputs.pop(src, None)
                if not layer.relu:
                    yield np.asarray(z).reshape(len(z), -1), acts
                    break
                z = tf.maximum(z, 0.0)
                acts.append(np.asarray(z) if hidden == "arrays" else float(tf.reduce_max(z)))
                for pool in layer.pools:
                    z = pool.on_values(z)
                outputs[k] = tf.convert_to_tensor(z, tf.float64)

    def forward(self, x, return_hidden: bool = False, batch_size: int | None = None):
        """Float64 logits of the scaled ReLU network; optionally every hidden layer's ReLU output
        (memory grows with the data set: :func:`max_activations` reduces per batch instead).
        ``batch_size`` None: as many samples at once as :meth:`batch_size` allows."""
        logits, hidden = [], []
        for out, acts in self.batches(x, batch_size, hidden="arrays" if return_hidden else "max"):
            logits.append(out)
            if return_hidden:
                hidden.append(acts)
        logits = np.concatenate(logits) if logits else np.zeros((0,))
        if not return_hidden:
            return logits
        return logits, [np.concatenate([a[n] for a in hidden]) for n in range(len(self.hidden))]

    def predict(self, x) -> np.ndarray:
        return np.argmax(self.forward(x), axis=1)

    def check_loaded(self, path) -> None:
        """Refuse a loaded network whose layers do not fit together (:func:`exactsnn.checks.check_preprocessed`)."""
        from .checks import check_preprocessed

        check_preprocessed(self, path, Synapses)

    def save(self, path) -> None:
        from .serialize import save

        save(self, path)
