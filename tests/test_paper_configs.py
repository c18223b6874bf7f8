"""config/paper.yaml (the published networks) and config/paper_retrain.yaml (trained here), planned.

A dry run checks that every input file exists but never opens one, so the published weights
are stood in for by empty files at the configured paths in the run's working directory.  The
layouts of the files themselves are tested in tests/test_training.py; here the PASS row's job
also runs once on a file in the layout of Keras' ImageNet VGG16 weights.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from test_training import write_keras_vgg16_h5, write_original_h5
from test_workflow import CONFIG, PAPER_RULES, digits_row, job_counts, snakemake, write_config

IMAGESETS = {"places365", "pass"}

# Table 1 of Stanojevic et al. 2023, row by row, as (dataset, model).
PAPER_TABLE = {
    ("mnist", "fc"),
    ("mnist", "fc_l1"),
    ("mnist", "lenet"),
    ("mnist", "vgg"),
    ("fashion_mnist", "fc"),
    ("fashion_mnist", "lenet"),
    ("fashion_mnist", "vgg"),
    ("cifar10", "vgg"),
    ("cifar10", "vgg_l1"),
    ("cifar100", "vgg"),
    ("places365", "vgg16"),
    ("pass", "vgg16"),
}

LOADS = re.compile(r"^Job \d+: (\S+) on (\S+): loading (\S+), not training$", re.M)
TRAINS = re.compile(r"^Job \d+: (\S+) on (\S+): training with the (\S+) recipe$", re.M)


def _rows(name: str) -> list[dict]:
    return yaml.safe_load((CONFIG / name).read_text())["benchmarks"]


def _stand_ins(rows: list[dict], workdir: Path) -> list[Path]:
    """Empty files at every path the rows name, relative to the run's working directory."""
    made = []
    for row in rows:
        for key in ("weights", "prototxt"):
            if row.get(key):
                path = workdir / row[key]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
                made.append(path)
    return made


def test_paper_config_plans_every_row_from_its_published_weights(tmp_path):
    rows = _rows("paper.yaml")
    assert {(r["dataset"], r["model"]) for r in rows} == PAPER_TABLE and len(rows) == len(PAPER_TABLE)
    for row in rows:
        assert str(row.get("weights", "")).startswith("models/"), row
    _stand_ins(rows, tmp_path)

    result = snakemake("-n", "--configfile", str(CONFIG / "paper.yaml"), workdir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    assert PAPER_RULES <= set(counts), f"rules not planned: {PAPER_RULES - set(counts)}"
    assert counts["measure"] == len(rows)
    assert counts["phase2_part"] == sum(row.get("parts", 1) for row in rows)
    # Every trained dataset's row loads its own file, and no row trains.
    trained = {(r["dataset"], r["model"]): r["weights"] for r in rows if r["dataset"] not in IMAGESETS}
    loads = {(dataset, model): path for model, dataset, path in LOADS.findall(result.stdout)}
    assert loads == trained
    assert counts["train"] == len(trained)
    assert not TRAINS.findall(result.stdout)
    assert counts["places365_model"] == counts["pass_model"] == 1
    assert not (tmp_path / "results").exists()


def test_paper_config_without_the_weights_names_the_missing_file(tmp_path):
    result = snakemake("-n", "--configfile", str(CONFIG / "paper.yaml"), workdir=tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "MissingInputException" in out, out
    assert any(row["weights"] in out for row in _rows("paper.yaml") if row["dataset"] not in IMAGESETS), out


def test_retrain_config_is_paper_config_trained(tmp_path):
    paper = yaml.safe_load((CONFIG / "paper.yaml").read_text())
    retrain = yaml.safe_load((CONFIG / "paper_retrain.yaml").read_text())
    # The same study: every other section as in paper.yaml, the same rows less their weights.
    assert {k: v for k, v in retrain.items() if k != "benchmarks"} == {
        k: v for k, v in paper.items() if k != "benchmarks"
    }
    expected = [
        row if row["dataset"] in IMAGESETS else {k: v for k, v in row.items() if k != "weights"}
        for row in paper["benchmarks"]
    ]
    beyond = [row for row in retrain["benchmarks"] if (row["dataset"], row["model"]) not in PAPER_TABLE]
    assert [(r["dataset"], r["model"]) for r in beyond] == [("cifar10", "resnet20")]
    assert [row for row in retrain["benchmarks"] if row not in beyond] == expected

    result = snakemake("-n", "--configfile", str(CONFIG / "paper_retrain.yaml"), workdir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    assert PAPER_RULES <= set(counts), f"rules not planned: {PAPER_RULES - set(counts)}"
    rows = retrain["benchmarks"]
    assert counts["measure"] == len(rows)
    trains = {(dataset, model): recipe for model, dataset, recipe in TRAINS.findall(result.stdout)}
    assert trains == {(r["dataset"], r["model"]): r["recipe"] for r in rows if r["dataset"] not in IMAGESETS}
    assert counts["train"] == len(trains)
    assert not LOADS.findall(result.stdout)
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_pass_row_converts_keras_vgg16_file(tmp_path):
    """The pass_model job builds VGG16 from a file in the layout of Keras' ImageNet weights.

    Full channel counts (so the file fits keras.applications.VGG16 itself), 32x32 inputs to keep
    fc1 small; the saved model must hold the file's arrays exactly.
    """
    import keras

    from exactsnn import training

    weights = tmp_path / "models" / "PASS" / "VGG" / "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    weights.parent.mkdir(parents=True)
    written = write_keras_vgg16_h5(weights, width=1.0, size=32, classes=1000)
    config = write_config(
        tmp_path / "pass.yaml",
        benchmarks=[{"dataset": "pass", "model": "vgg16", "weights": str(weights)}],
        datasets={"pass": {"root": str(tmp_path / "no-images"), "size": 32}},
    )
    target = "results/train/pass/vgg16/model.keras"
    result = snakemake(target, "--cores", "1", "--configfile", str(config), workdir=tmp_path / "run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    model = keras.models.load_model(tmp_path / "run" / target, compile=False)
    layers = training._weighted_layers(model)
    assert [layer.name for layer in layers] == [name for name, _ in written]
    for layer, (name, arrays) in zip(layers, written):
        for var, array in zip(layer.weights, arrays):
            np.testing.assert_array_equal(var.numpy(), array, err_msg=name)


@pytest.mark.workflow
def test_train_job_loads_a_whole_model_file_instead_of_training(tmp_path):
    """A row with weights: the train job puts the file's arrays into the architecture, trains nothing."""
    import json

    import keras

    from exactsnn.architectures import build

    source = build("digits_lenet", (8, 8, 1), 10, seed=3)
    rng = np.random.default_rng(3)
    for var in source.weights:
        var.assign(rng.uniform(0.5, 1.5, size=var.shape).astype(np.float32))
    weights = tmp_path / "models" / "digits_lenet_relu_original.h5"
    weights.parent.mkdir(parents=True)
    write_original_h5(weights, source, offset=4, full_model=True)
    row = digits_row(model="lenet", architecture="digits_lenet", weights=str(weights))
    config = write_config(tmp_path / "w.yaml", benchmarks=[row])
    target = "results/train/digits/lenet/model.keras"
    result = snakemake(target, "--cores", "1", "--configfile", str(config), workdir=tmp_path / "run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"lenet on digits: loading {weights}, not training" in result.stdout + result.stderr
    model = keras.models.load_model(tmp_path / "run" / target, compile=False)
    for a, b in zip(source.weights, model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    history = json.loads((tmp_path / "run" / "results/train/digits/lenet/history.json").read_text())
    assert history["weights"] == str(weights) and history["history"] == {}
