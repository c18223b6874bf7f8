"""No quiet wrong answers (issue 17): every case outside what the mapping covers is refused or
flagged by name, or gives a supported, exact result.

One test per case of the issue: shared layers and data formats in the Keras importer,
non-finite and out-of-range inputs and X_n samples, negative σ, config values the code cannot
honour, broken saved files and output paths on the command line, and the image sets (16-bit
images, the decompression-bomb guard, paths leaving the data folder).  The loaders' fuzz test
is tests/test_fuzz_loaders.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

import exactsnn
from exactsnn import imagesets, serialize
from exactsnn.cli import main

keras = pytest.importorskip("keras")
L = keras.layers
ROOT = Path(__file__).resolve().parents[1]


def _exact(model, x_sample, x, input_range=(0.0, 1.0)):
    """Convert, simulate, compare with Keras in float64: logits to 1e-9 and every prediction."""
    from exactsnn.importers.keras import keras_logits

    net = exactsnn.convert(model, x_sample, input_range=input_range)
    sim = exactsnn.simulate(net, x)
    ref = keras_logits(model, x)
    np.testing.assert_allclose(sim.logits, ref, rtol=0, atol=1e-9 * max(1.0, np.abs(ref).max()))
    assert np.array_equal(sim.predictions, ref.argmax(1))
    return net


# ------------------------------------------------------------------ the Keras importer


def test_a_layer_called_twice_is_two_layers_sharing_weights():
    keras.utils.set_random_seed(3)
    inp = keras.Input((6,))
    shared = L.Dense(6, activation="relu", name="shared")
    out = L.Dense(3, name="out")(shared(shared(inp)))
    model = keras.Model(inp, out)
    x = np.random.default_rng(0).uniform(0, 1, (40, 6))
    net = _exact(model, x, x)
    assert [sl.layer.name for sl in net.layers] == ["shared", "shared#1", "out"]


@pytest.mark.parametrize("layer, option", [
    (lambda: L.Flatten(data_format="channels_first", name="flat_cf"), "data_format='channels_first'"),
    (lambda: L.MaxPooling2D(data_format="channels_first", name="pool_cf"), "data_format='channels_first'"),
    (lambda: L.AveragePooling2D(2, data_format="channels_first", name="avg_cf"), "data_format='channels_first'"),
    (lambda: L.GlobalAveragePooling2D(keepdims=True, name="gap_keep"), "keepdims=True"),
])
def test_layer_options_that_change_the_function_are_refused_by_name(layer, option):
    from exactsnn.importers.keras import UnsupportedLayerError

    lay = layer()
    model = keras.Sequential([keras.Input((4, 4, 2)), lay, L.Flatten(), L.Dense(3)])
    with pytest.raises(UnsupportedLayerError) as err:
        exactsnn.convert(model, np.zeros((2, 4, 4, 2)))
    assert repr(lay.name) in str(err.value) and option in str(err.value), str(err.value)


def test_a_layer_called_with_training_true_is_refused():
    from exactsnn.importers.keras import UnsupportedLayerError

    inp = keras.Input((4,))
    h = L.BatchNormalization(name="bn_train")(L.Dense(4, activation="relu")(inp), training=True)
    model = keras.Model(inp, L.Dense(2)(h))
    with pytest.raises(UnsupportedLayerError, match="'bn_train'.*training=True"):
        exactsnn.convert(model, np.zeros((2, 4)))


def _functional(draw, st):
    """A Functional graph with layers called more than once and a drawn data format."""
    formats = st.sampled_from(["channels_last", "channels_last", "channels_first"])
    fmt = {"pool": draw(formats), "flatten": draw(formats)}
    channels = draw(st.integers(2, 3))  # a channels_first pool then pools over (width, channels)
    inp = keras.Input((6, 6, channels))
    conv = L.Conv2D(channels, 3, padding="same", activation="relu", name="shared_conv")
    h = inp
    for _ in range(draw(st.integers(1, 2))):
        h = conv(h)
    pool_cls = draw(st.sampled_from([L.MaxPooling2D, L.AveragePooling2D]))
    h = pool_cls(2, data_format=fmt["pool"], name="pool")(h)
    h = L.Flatten(data_format=fmt["flatten"], name="flatten")(h)
    width = int(np.prod(h.shape[1:]))
    dense = L.Dense(width, name="shared_dense")
    for k in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):  # a residual step around the shared layer
            h = L.ReLU(name=f"merge_relu{k}")(L.Add(name=f"add{k}")([h, dense(h)]))
        else:
            h = L.ReLU(name=f"relu{k}")(dense(h))
    model = keras.Model(inp, L.Dense(3, name="out")(h))
    for layer in model.layers:  # small residual branches keep the merge neurons inside the exact regime
        if layer.name == "shared_dense":
            w = layer.get_weights()
            layer.set_weights([w[0] * 0.3, w[1]])
    return model, fmt


def test_functional_graphs_with_shared_layers_and_both_data_formats():
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    from exactsnn.importers.keras import UnsupportedLayerError

    @hypothesis.settings(max_examples=5, deadline=None, derandomize=True,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(st.data())
    def check(data):
        keras.utils.set_random_seed(data.draw(st.integers(0, 1000)))
        model, fmt = _functional(data.draw, st)
        x = np.random.default_rng(0).uniform(0, 1, (20,) + tuple(model.inputs[0].shape[1:]))
        refused = [name for name, f in (("pool", fmt["pool"]), ("flatten", fmt["flatten"])) if f == "channels_first"]
        if refused:
            with pytest.raises(UnsupportedLayerError) as err:
                exactsnn.convert(model, x)
            assert "data_format='channels_first'" in str(err.value)
            assert any(repr(name) in str(err.value) for name in refused), str(err.value)
        else:
            _exact(model, x, x)

    check()


# ------------------------------------------------------------------ inputs at entry


@pytest.fixture(scope="module")
def digits_net():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(3, 3, activation="relu"), L.Flatten(),
                              L.Dense(10)])
    x = np.random.default_rng(1).uniform(0, 16, (30, 8, 8, 1))
    return model, x, exactsnn.convert(model, x, input_range=(0, 16))


def test_nan_and_inf_inputs_are_refused_with_count_and_index(digits_net):
    from exactsnn.checks import InputError

    model, x, net = digits_net
    bad = x.copy()
    bad[2, 3, 4, 0] = np.nan
    bad[5, 0, 0, 0] = np.inf
    with pytest.raises(InputError, match=r"inputs: 2 values are NaN or infinite, the first at index \(2, 3, 4, 0\)"):
        exactsnn.simulate(net, bad)
    with pytest.raises(InputError, match=r"X_n sample: 2 values are NaN or infinite"):
        exactsnn.convert(model, bad, input_range=(0, 16))


def test_inputs_outside_the_range_are_refused_or_clipped_when_asked(digits_net):
    from exactsnn.checks import ClippedInputsWarning, InputError

    model, x, net = digits_net
    with pytest.raises(InputError, match=r"outside the input range \[0, 16\] \(min .*, max .*\)"):
        exactsnn.simulate(net, x * 10)
    with pytest.raises(InputError, match="X_n sample: .* outside the input range"):
        exactsnn.convert(model, x * 10, input_range=(0, 16))
    n_out = int(((x * 10) > 16).sum())
    with pytest.warns(ClippedInputsWarning, match=f"{n_out} values outside the input range"):
        clipped = exactsnn.simulate(net, x * 10, clip_inputs=True)
    reference = exactsnn.simulate(net, np.clip(x * 10, 0, 16))
    np.testing.assert_array_equal(clipped.logits, reference.logits)
    with pytest.warns(ClippedInputsWarning):
        exactsnn.convert(model, x * 10, input_range=(0, 16), clip_inputs=True)
    # Asked for by name, the α-model runs on them as they are (its regime outside the mapping).
    raw = exactsnn.simulate(net, x * 10, allow_outside_range=True)
    assert not np.array_equal(raw.logits, clipped.logits)


def test_negative_sigmas_are_refused(digits_net):
    model, x, net = digits_net
    with pytest.raises(ValueError, match="noise_sigma must be a finite number >= 0"):
        exactsnn.simulate(net, x, noise_sigma=-0.1)
    with pytest.raises(ValueError, match="alpha_sigma must be a finite number >= 0"):
        exactsnn.convert(model, x, input_range=(0, 16), alpha_sigma=-0.1)


# ------------------------------------------------------------------ saved files and the CLI


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, digits_net):
    model, x, net = digits_net
    tmp = tmp_path_factory.mktemp("refusals")
    model.save(tmp / "model.keras")
    net.save(tmp / "snn.npz")
    np.save(tmp / "x.npy", x)
    return tmp


def _rewrite(src, dst, change):
    with np.load(src, allow_pickle=False) as a:
        arrays = {k: a[k] for k in a.files}
    change(arrays)
    with open(dst, "wb") as fh:
        np.savez(fh, **arrays)


def _meta(change):
    def edit(arrays):
        doc = json.loads(arrays["__meta__"].tobytes().decode())
        change(doc)
        arrays["__meta__"] = np.frombuffer(json.dumps(doc).encode(), np.uint8)
    return edit


def _cut(arrays):
    arrays["root/X"] = arrays["root/X"][:-1]


BROKEN = {
    "empty": (lambda src, dst: dst.write_bytes(b""), "empty file"),
    "truncated": (lambda src, dst: dst.write_bytes(src.read_bytes()[:1000]), "not an exactsnn .npz file"),
    "missing_array": (lambda src, dst: _rewrite(src, dst, lambda a: a.pop("root/layers/0/threshold")),
                      "array 'root/layers/0/threshold' is missing"),
    "extra_array": (lambda src, dst: _rewrite(src, dst, lambda a: a.update({"root/extra": np.zeros(2)})),
                    "array 'root/extra' is not part of the saved object"),
    "unknown_field": (lambda src, dst: _rewrite(src, dst, _meta(lambda d: d["fields"].update(colour=1))),
                      "'root': unknown field 'colour' for SpikingNetwork"),
    "short_X": (lambda src, dst: _rewrite(src, dst, _cut), "array 'root/X' has shape (0,), expected (1,)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_network_files_give_one_line_naming_file_and_array(cli_files, capsys, case):
    make, message = BROKEN[case]
    path = cli_files / f"{case}.npz"
    make(cli_files / "snn.npz", path)
    with pytest.raises(ValueError) as err:
        serialize.load(path)
    assert str(path) in str(err.value) and message in str(err.value) and "\n" not in str(err.value), str(err.value)
    for argv in (["inspect", str(path)], ["predict", str(path), str(cli_files / "x.npy"), "-o", str(cli_files / "o.npz")]):
        assert main(argv) == 2
        err_text = capsys.readouterr().err.strip()
        assert err_text.count("\n") == 0 and message in err_text and str(path) in err_text, err_text


def test_cli_inputs_are_checked_and_clipping_is_reported(cli_files, capsys):
    x = np.load(cli_files / "x.npy")
    bad = x.copy()
    bad[1, 2, 3, 0] = np.nan
    np.save(cli_files / "nan.npy", bad)
    np.save(cli_files / "big.npy", x * 10)
    out = str(cli_files / "o.npz")
    assert main(["predict", str(cli_files / "snn.npz"), str(cli_files / "nan.npy"), "-o", out]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"exactsnn: error: {cli_files / 'nan.npy'}: 1 value is NaN or infinite, the first at index (1, 2, 3, 0)"
    assert main(["predict", str(cli_files / "snn.npz"), str(cli_files / "big.npy"), "-o", out]) == 2
    assert "outside the input range [0, 16]" in capsys.readouterr().err
    assert main(["predict", str(cli_files / "snn.npz"), str(cli_files / "big.npy"), "-o", out, "--clip-inputs"]) == 0
    assert "were clipped to it" in capsys.readouterr().err
    assert main(["convert", str(cli_files / "model.keras"), str(cli_files / "big.npy"), "-o",
                 str(cli_files / "c.npz"), "--input-range", "0", "16"]) == 2
    assert "big.npy: " in capsys.readouterr().err


def test_output_paths_are_checked_before_any_work(cli_files, capsys, monkeypatch):
    import exactsnn.simulator

    monkeypatch.setattr(exactsnn.simulator, "simulate", lambda *a, **k: pytest.fail("simulated before -o was checked"))
    (cli_files / "a_file").write_text("")
    for output, message in ((cli_files, "is a directory"), (cli_files / "a_file" / "o.npz", "is not a directory")):
        for argv in (["predict", str(cli_files / "snn.npz"), str(cli_files / "x.npy"), "-o", str(output)],
                     ["convert", str(cli_files / "model.keras"), str(cli_files / "x.npy"), "-o", str(output)],
                     ["export", str(cli_files / "snn.npz"), "-o", str(output)],
                     ["caffe2keras", str(cli_files / "d.prototxt"), str(cli_files / "w.caffemodel"), "-o", str(output)],
                     ["crosscheck", str(cli_files / "snn.npz"), str(cli_files / "x.npy"), "--output", str(output)]):
            assert main(argv) == 2, argv
            err = capsys.readouterr().err.strip()
            assert err.count("\n") == 0 and message in err, err


# ------------------------------------------------------------------ the config schema


def _dry_run(tmp_path, name, **sections):
    config = {"benchmarks": [{"dataset": "digits", "model": "fc", "architecture": "digits_fc",
                              "recipe": "adam_mnist"}],
              "robustness": {"benchmarks": []}, "figures": {"benchmarks": []}}
    config.update(sections)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "Snakefile"),
                           "-d", str(tmp_path / "run"), "-n", "--configfile", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


_SWEEP = {"benchmarks": [{"dataset": "digits", "model": "fc"}]}
_ROW = {"dataset": "digits", "model": "fc", "architecture": "digits_fc", "recipe": "adam_mnist"}
SCHEMA_CASES = {
    "zeta": ({"robustness": dict(_SWEEP, zeta=[0.5, -2])}, "config key 'robustness.zeta[1]'"),
    "noise_sigma": ({"robustness": dict(_SWEEP, noise_sigma=[-0.1])}, "config key 'robustness.noise_sigma[0]'"),
    "alpha_sigma": ({"robustness": dict(_SWEEP, alpha_sigma=[0.1, -0.1])}, "config key 'robustness.alpha_sigma[1]'"),
    "dataset": ({"benchmarks": [dict(_ROW, dataset="digitz")]}, "config key 'benchmarks[0].dataset'"),
    "architecture": ({"benchmarks": [dict(_ROW, architecture="digits_fcc")]}, "config key 'benchmarks[0].architecture'"),
    "datasets_key": ({"datasets": {"mnits": {"download": False}}}, "config key 'datasets'"),
    "max_pixels": ({"benchmarks": [{"dataset": "pass", "model": "vgg16"}],
                    "datasets": {"pass": {"root": "/nowhere", "max_pixels": 0}}}, "config key 'datasets.pass.max_pixels'"),
    "weights": ({"benchmarks": [dict(_ROW, weights="/nowhere/weights.h5")]}, "/nowhere/weights.h5"),
}


def _schema_error(sections) -> str:
    """The key the schema names for a config, as workflow/rules/common.smk reports it."""
    import jsonschema

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    config = {"benchmarks": [dict(_ROW)], "robustness": {"benchmarks": []}, "figures": {"benchmarks": []}}
    config.update(sections)
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return ""
    key = ""
    for part in error.absolute_path:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return f"config key '{key}': {error.message}"


@pytest.mark.parametrize("case", sorted(set(SCHEMA_CASES) - {"weights"}))
def test_config_values_the_code_cannot_honour_are_refused_by_the_schema(case):
    sections, message = SCHEMA_CASES[case]
    assert message in _schema_error(sections)


@pytest.mark.parametrize("case", ["zeta", "architecture", "weights"])
def test_the_dry_run_fails_the_same_way(tmp_path, case):
    sections, message = SCHEMA_CASES[case]
    result = _dry_run(tmp_path, case, **sections)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and message in out, out
    assert not (tmp_path / "run" / "results").exists()


@pytest.mark.parametrize("where", ["benchmarks", "robustness"])
def test_image_sets_refuse_test_samples(tmp_path, where):
    row = {"dataset": "pass", "model": "vgg16"}
    sections = {"benchmarks": [dict(row, test_samples=100) if where == "benchmarks" else dict(row)],
                "datasets": {"pass": {"root": "/nowhere"}},
                "robustness": {"benchmarks": [dict(row)], "test_samples": 100 if where == "robustness" else None}}
    result = _dry_run(tmp_path, where, **sections)
    out = result.stdout + result.stderr
    key = "benchmarks[0].test_samples" if where == "benchmarks" else "robustness.test_samples"
    assert result.returncode != 0 and f"config key '{key}': pass does not take test_samples" in out, out


def test_schema_names_are_the_codes_names():
    from exactsnn import architectures, datasets, training

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    row = schema["properties"]["benchmarks"]["items"]["properties"]
    assert schema["$defs"]["dataset_name"]["enum"] == list(datasets.NAMES) + ["places365", "pass"]
    assert row["architecture"]["enum"] == list(architectures.NAMES)
    assert row["recipe"]["enum"] == list(training.RECIPES)
    assert schema["$defs"]["max_pixels"]["minimum"] == 1
    for image_set in ("places365", "pass"):
        assert schema["properties"]["datasets"]["properties"][image_set]["properties"]["max_pixels"]["default"] \
            == imagesets.DEFAULT_MAX_PIXELS


# ------------------------------------------------------------------ image sets


def test_16_bit_grayscale_is_scaled_not_saturated(tmp_path):
    from PIL import Image

    a = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    Image.fromarray(a.astype(np.int32)).save(tmp_path / "g32.tif")  # 16-bit values in mode I
    expected = np.rint(a * (255 / 65535)).astype(np.uint8)
    for name in ("g16.png", "g32.tif"):
        img = imagesets.load_image(tmp_path / name, 16)
        assert img.shape == (16, 16, 3)
        np.testing.assert_array_equal(img[..., 0], expected)
        np.testing.assert_array_equal(img[..., 1], img[..., 2])
    Image.fromarray(a.astype(np.float32) / 65535).save(tmp_path / "f.tif")
    with pytest.raises(imagesets.ImageRefused, match="mode F"):
        imagesets.load_image(tmp_path / "f.tif", 16)


def test_the_decompression_bomb_guard_is_on_and_configurable(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "big.png")
    assert imagesets.load_image(tmp_path / "big.png", 8).shape == (8, 8, 3)
    with pytest.raises(imagesets.ImageRefused, match=r"40 x 30 = 1200 pixels, more than max_pixels = 1000"):
        imagesets.load_image(tmp_path / "big.png", 8, max_pixels=1000)
    manifest = imagesets.write_shards([tmp_path / "big.png"], tmp_path / "s", size=8, skip_invalid=True,
                                      max_pixels=1000)
    assert manifest["count"] == 0
    assert [s["kind"] for s in manifest["skipped"]] == ["too many pixels"]
    assert "max_pixels = 1000" in manifest["skipped"][0]["reason"]
    # the default is Pillow's own limit, and Pillow's guard is not silenced
    assert imagesets.DEFAULT_MAX_PIXELS == 89_478_485


def test_list_files_and_symlinks_cannot_leave_the_data_folder(tmp_path):
    from PIL import Image

    val, outside = tmp_path / "val", tmp_path / "elsewhere"
    val.mkdir()
    outside.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(outside / "secret.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(val / "ok.png")
    for name in ("../elsewhere/secret.png", str(outside / "secret.png")):
        (tmp_path / "list.txt").write_text(f"ok.png 1\n{name} 2\n")
        with pytest.raises(ValueError, match=r"list.txt:2: path .* leaves the data folder"):
            imagesets.places365_val_list(val, tmp_path / "list.txt")
    (val / "link.png").symlink_to(outside / "secret.png")
    with pytest.raises(imagesets.ImageRefused, match="outside the image folder"):
        imagesets.load_image(val / "link.png", 4, root=val)
    with pytest.raises(imagesets.ImageRefused, match="outside the image folder"):
        imagesets.write_shards([val / "ok.png", val / "link.png"], tmp_path / "s1", size=4, root=val)
    manifest = imagesets.write_shards([val / "ok.png", val / "link.png"], tmp_path / "s2", size=4, root=val,
                                      skip_invalid=True)
    assert manifest["count"] == 1 and [s["kind"] for s in manifest["skipped"]] == ["outside its folder"]
    (tmp_path / "files.txt").write_text("0/a.jpg\n../b.jpg\n")
    with pytest.raises(ValueError, match=r"files.txt:2: path '../b.jpg' leaves"):
        imagesets.load_file_list(tmp_path / "files.txt")
    _, kept, skipped = imagesets.load_pass_uint8(["ok.png", "link.png"], 4, root=val)
    assert kept == ["ok.png"] and skipped == 1
