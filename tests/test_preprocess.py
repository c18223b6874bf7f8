"""Phase 1 in parts (exactsnn.preprocess): the batches a part runs, its maxima, and X_n merged
from the parts, which must be the unsplit X_n bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from exactsnn.checks import ClippedInputsWarning, InputError
from exactsnn.preprocess import batch_ranges, fold_network, max_activations, merge_maxima, part_maxima, scale_weights

keras = pytest.importorskip("keras")


def small_conv_net():
    keras.utils.set_random_seed(3)
    L = keras.layers
    model = keras.Sequential([keras.Input((8, 8, 2)), L.Conv2D(3, 3, padding="same", activation="relu"),
                              L.MaxPooling2D(2), L.Flatten(), L.Dense(5, activation="relu"), L.Dense(4)])
    from exactsnn.importers import import_model

    return scale_weights(fold_network(import_model(model), (0.0, 1.0)))


def test_parts_deal_out_the_unsplit_batches_in_order():
    whole = batch_ranges(1347, 256)
    assert whole[0] == (0, 256) and whole[-1] == (1280, 1347) and len(whole) == 6
    parts = [batch_ranges(1347, 256, 4, k) for k in range(4)]
    assert [len(p) for p in parts] == [1, 2, 1, 2]
    assert sum(parts, []) == whole
    # More parts than batches: some parts get none, the rest still tile the sample.
    few = [batch_ranges(5, 2, 5, k) for k in range(5)]
    assert sum(few, []) == [(0, 2), (2, 4), (4, 5)] and few.count([]) == 2
    with pytest.raises(ValueError, match="part 3 of 3"):
        batch_ranges(10, 2, 3, 3)


def test_x_n_merged_from_parts_is_the_unsplit_x_n_bit_for_bit():
    net = small_conv_net()
    x = np.random.default_rng(0).uniform(0, 1, (23, 8, 8, 2))
    unsplit = max_activations(net, x, batch_size=4)
    assert np.all(unsplit > 0)
    maxima, samples = [], []
    for k in range(8):  # 6 batches over 8 parts: two parts without a batch
        ranges = batch_ranges(len(x), 4, 8, k)
        maxima.append(part_maxima(net, (x[a:b] for a, b in ranges)))
        samples.append(sum(b - a for a, b in ranges))
    assert samples.count(0) == 2 and sum(samples) == len(x)
    assert merge_maxima(maxima, samples).tobytes() == unsplit.tobytes()
    # One part alone misses the other parts' maxima somewhere.
    assert any(np.any(m < unsplit) for m in maxima if m.any())


def test_part_maxima_checks_its_batches_and_merge_refuses_an_empty_sample():
    net = small_conv_net()
    bad = np.random.default_rng(1).uniform(0, 1, (3, 8, 8, 2))
    bad[2, 0, 0, 0] = 1.5
    with pytest.raises(InputError, match="X_n sample"):
        part_maxima(net, [bad[:2], bad[2:]])
    with pytest.warns(ClippedInputsWarning, match="1 values"):
        clipped = part_maxima(net, [bad], clip_inputs=True)
    assert clipped.tobytes() == max_activations(net, np.clip(bad, 0, 1)).tobytes()
    with pytest.raises(ValueError, match="empty"):
        merge_maxima([np.zeros(2), np.zeros(2)], [0, 0])
    with pytest.raises(ValueError, match="different shapes"):
        merge_maxima([np.zeros(2), np.zeros(3)], [1, 1])
