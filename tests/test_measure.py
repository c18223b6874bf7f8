"""The reference a run is measured against (exactsnn.measure): the original network's float64
logits, built once, and the reference predictions of a test set computed in parts."""

from __future__ import annotations

import numpy as np
import pytest

from exactsnn import measure
from exactsnn.preprocess import batch_ranges, preprocess

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def model_and_network():
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(7, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    x = np.random.default_rng(0).uniform(0, 1, (40, 6))
    return model, _network(model, x)


def _network(model, x):
    from exactsnn.importers import import_model

    return preprocess(import_model(model), x)


def test_original_logits_build_the_float64_model_once(model_and_network, monkeypatch):
    from exactsnn.importers import keras as keras_importer

    model, _ = model_and_network
    x = np.random.default_rng(1).uniform(0, 1, (10, 6))
    built = []
    real = keras_importer.float64_logits_model
    monkeypatch.setattr(keras_importer, "float64_logits_model", lambda m: built.append(m) or real(m))
    logits = measure.original_logits(model, batch_size=3)
    chunks = [logits(x[a:b]) for a, b in batch_ranges(len(x), 4)]
    assert len(built) == 1
    expected = keras_importer.keras_logits(model, x, batch_size=3)
    assert np.concatenate(chunks).dtype == np.float64
    np.testing.assert_allclose(np.concatenate(chunks), expected, rtol=1e-15, atol=0)


def test_reference_gathered_from_parts_is_the_unsplit_reference(model_and_network):
    model, network = model_and_network
    rng = np.random.default_rng(2)
    x, y = rng.uniform(0, 1, (17, 6)), rng.integers(0, 3, 17)
    original = measure.original_logits(model)

    def part(k, parts):
        return measure.reference_predictions(original, network, ((x[a:b], y[a:b]) for a, b in batch_ranges(17, 5, parts, k)))

    whole = measure.gather_reference([part(0, 1)], has_labels=True)
    split = measure.gather_reference([part(k, 6) for k in range(6)], has_labels=True)  # two parts empty
    assert sorted(whole) == sorted(split)
    for key in whole:
        assert whole[key].tobytes() == split[key].tobytes(), key
    assert np.array_equal(whole["labels"], y) and whole["original_logits"].shape == (17, 3)
    summary = measure.reference_summary(whole)
    assert summary["test_samples"] == 17 and summary["agreement_scaled"] == 1.0
    assert summary["accuracy_original"] == np.mean(whole["original_predictions"] == y)
    assert summary["max_logit_error"] <= 1e-12

    unlabelled = measure.gather_reference(
        [measure.reference_predictions(original, network, [(x[:4], None)])], has_labels=False)
    assert not unlabelled["has_labels"] and np.all(unlabelled["labels"] == -1)
    assert measure.reference_summary(unlabelled)["accuracy_original"] is None
