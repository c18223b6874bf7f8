"""The workflow scripts' data view (workflow/scripts/wfutil.py): a Phase 1 part reads only its
batches of the X_n sample, and the batches of all parts are the whole sample in order."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))
import wfutil  # noqa: E402

from exactsnn import imagesets  # noqa: E402
from exactsnn.datasets import Dataset  # noqa: E402
from exactsnn.preprocess import batch_ranges  # noqa: E402


def _whole_and_batches(data, count, seed=4):
    whole = data.sample(count, seed)
    n = data.sample_size(count)
    batches = [data.sample(count, seed, a, b) for k in range(3) for a, b in batch_ranges(n, 4, 3, k)]
    return whole, n, batches


@pytest.mark.parametrize("count", [None, 7, 100])
def test_array_data_sample_in_batches_is_the_whole_sample(count):
    rng = np.random.default_rng(0)
    data = wfutil.ArrayData(Dataset(rng.uniform(0, 1, (19, 3)), rng.integers(0, 2, 19), rng.uniform(0, 1, (5, 3)),
                                    rng.integers(0, 2, 5), (0.0, 1.0), 2, "toy"))
    whole, n, batches = _whole_and_batches(data, count)
    assert n == len(whole) == (19 if count in (None, 100) else 7)
    assert np.array_equal(np.concatenate(batches), whole)


def test_image_data_reads_only_the_shards_of_a_batch(tmp_path, monkeypatch):
    from PIL import Image

    rng = np.random.default_rng(1)
    paths = []
    for k in range(23):
        paths.append(tmp_path / "images" / f"{k:02d}.png")
        paths[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)).save(paths[-1])
    imagesets.write_shards(paths, tmp_path / "sample", shard_size=5, size=8)
    (tmp_path / "dataset.json").write_text(json.dumps({
        "name": "pass", "preprocess": "vgg16", "input_range": list(imagesets.PASS_INPUT_RANGE), "num_classes": 3,
        "test_dir": "sample", "sample_dir": "sample", "labels": None, "test_count": 23, "parts": [[0, 23]]}))
    data = wfutil.open_data(tmp_path / "dataset.json")
    for count in (None, 9):
        whole, n, batches = _whole_and_batches(data, count)
        assert n == len(whole) == (23 if count is None else 9)
        assert np.array_equal(np.concatenate(batches), whole)
    read = []
    real = imagesets.read_shards
    monkeypatch.setattr(imagesets, "read_shards", lambda d, start=0, stop=None: read.append((start, stop)) or real(d, start, stop))
    data.sample(None, 0, 8, 12)
    assert read == [(8, 12)]
