"""The command line: convert, predict, inspect, and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

import exactsnn
from exactsnn.cli import main

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    L = keras.layers
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, padding="same", activation="relu"),
                              L.MaxPooling2D(2), L.Flatten(), L.Dense(10, activation="softmax")])
    model.save(tmp / "model.keras")
    x = np.random.default_rng(0).uniform(0, 16, (20, 8, 8, 1))
    np.save(tmp / "x.npy", x)
    return tmp, model, x


def test_convert_predict_inspect(files, capsys):
    tmp, model, x = files
    assert main(["convert", str(tmp / "model.keras"), str(tmp / "x.npy"), "-o", str(tmp / "snn.npz"),
                 "--input-range", "0", "16", "--zeta", "0.5"]) == 0
    assert main(["predict", str(tmp / "snn.npz"), str(tmp / "x.npy"), "-o", str(tmp / "out.npz")]) == 0
    out = np.load(tmp / "out.npz")
    from exactsnn.importers.keras import keras_logits

    ref = keras_logits(model, x)
    np.testing.assert_allclose(out["logits"], ref, atol=1e-9 * np.abs(ref).max())
    assert np.array_equal(out["predictions"], ref.argmax(1))
    assert main(["inspect", str(tmp / "snn.npz")]) == 0
    text = capsys.readouterr().out
    assert "conv2d" in text and "latency" in text and "read-out" in text


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["convert", "{tmp}/missing.keras", "{tmp}/x.npy", "-o", "{tmp}/s.npz"], "missing.keras: no such file"),
        (["convert", "{tmp}/x.npy", "{tmp}/x.npy", "-o", "{tmp}/s.npz"], "cannot load as a Keras model"),
        (["convert", "{tmp}/model.keras", "{tmp}/flat.npy", "-o", "{tmp}/s.npz"], "arrays of shape (N, 8, 8, 1) expected"),
        (["convert", "{tmp}/model.keras", "{tmp}/words.npy", "-o", "{tmp}/s.npz"], "must be numeric"),
        (["predict", "{tmp}/nope.npz", "{tmp}/x.npy", "-o", "{tmp}/o.npz"], "nope.npz: no such file"),
        (["predict", "{tmp}/x.npy", "{tmp}/x.npy", "-o", "{tmp}/o.npz"], "not an exactsnn"),
        (["convert", "{tmp}/model.keras", "{tmp}/x.npy", "-o", "{tmp}/s.npz", "--input-range", "1", "0"], "p < q"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(files, capsys, argv, fragment):
    tmp, _, _ = files
    np.save(tmp / "flat.npy", np.zeros((3, 64)))
    np.save(tmp / "words.npy", np.array(["a", "b"]))
    assert main([a.format(tmp=tmp) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("exactsnn: error:") and fragment in err, err


def test_export_writes_hdf5_that_loads_back(files, capsys):
    from exactsnn.export import load_hdf5

    tmp, model, x = files
    assert main(["convert", str(tmp / "model.keras"), str(tmp / "x.npy"), "-o", str(tmp / "snn2.npz"),
                 "--input-range", "0", "16", "--neuron", "b1"]) == 0
    assert main(["export", str(tmp / "snn2.npz"), "-o", str(tmp / "snn2.h5")]) == 0
    net = load_hdf5(tmp / "snn2.h5")
    assert net.neuron == "b1"
    import exactsnn

    assert np.array_equal(exactsnn.simulate(net, x).logits, exactsnn.simulate(exactsnn.load(tmp / "snn2.npz"), x).logits)


def test_every_option_has_a_help_line_and_the_help_is_plain_text():
    import argparse

    from exactsnn.cli import build_parser

    parser = build_parser()
    texts = [parser.format_help()]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                texts.append(sub.format_help())
                for option in sub._actions:
                    assert option.help, f"exactsnn {name}: {option.option_strings or option.dest} has no help"
    for text in texts:
        assert "``" not in text and ":func:" not in text and ":class:" not in text, text
