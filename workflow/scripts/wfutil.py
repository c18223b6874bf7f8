"""What every workflow script shares: logging into the rule's log file and atomic writes.

An output is written under a temporary name in its own folder and moved into place with
os.replace only when it is complete, so a job that is killed leaves nothing that looks
finished.
"""

import contextlib
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np


def start(snakemake, tensorflow=True):
    """Send this job's stdout, stderr (Python and C level) and logging to the rule's log.

    With ``tensorflow`` (for scripts that run it), TensorFlow is imported here, before any
    Keras import, without its start-up messages; EXACTSNN_VERBOSE=1 in the environment keeps
    them in the log.
    """
    log = open(snakemake.log[0], "w", buffering=1)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    logging.basicConfig(
        stream=log,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        force=True,
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if tensorflow:
        from exactsnn.ops import import_tensorflow

        import_tensorflow()
    return logging.getLogger(snakemake.rule)


@contextlib.contextmanager
def atomic(path):
    """Yield a temporary path next to `path` (same suffix); on success move it to `path`."""
    from exactsnn.serialize import atomic as atomic_file

    with atomic_file(path) as tmp:
        yield str(tmp)


def write_text(path, text):
    with atomic(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def write_npz(path, **arrays):
    with atomic(path) as tmp:
        np.savez(tmp, **arrays)


def read_json(path):
    return json.loads(Path(path).read_text())


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def part_range(n, parts, part):
    """Samples [start, stop) of part `part` when n test samples are split into `parts`."""
    return part * n // parts, (part + 1) * n // parts


DATASET_FIELDS = ("x_train", "y_train", "x_test", "y_test")


def save_dataset(path, dataset):
    """Write an exactsnn.datasets.Dataset as one .npz (arrays, input range, classes, name)."""
    write_npz(
        path,
        **{name: getattr(dataset, name) for name in DATASET_FIELDS},
        input_range=np.asarray(dataset.input_range, dtype=np.float64),
        num_classes=np.int64(dataset.num_classes),
        name=np.str_(dataset.name),
    )


def load_dataset(path):
    """Read what save_dataset wrote back into an exactsnn.datasets.Dataset."""
    from exactsnn.datasets import Dataset

    with np.load(path, allow_pickle=False) as f:
        return Dataset(
            **{name: f[name] for name in DATASET_FIELDS},
            input_range=tuple(float(v) for v in f["input_range"]),
            num_classes=int(f["num_classes"]),
            name=str(f["name"]),
        )


# ----------------------------------------------------------------------------------------
# One view of a dataset for Phase 1 and Phase 2, whether it is one .npz (data rule) or an
# image set stored as uint8 shards (places365 / pass rules).
# ----------------------------------------------------------------------------------------


def open_data(path, test_samples=None):
    """The dataset written by a data rule: ArrayData (.npz) or ImageData (.json)."""
    if str(path).endswith(".npz"):
        return ArrayData(load_dataset(path), test_samples)
    return ImageData(path)


class ArrayData:
    """A dataset held in memory; the test set may be cut to its first `test_samples`."""

    def __init__(self, dataset, test_samples=None):
        self.dataset = dataset
        self.name = dataset.name
        self.input_range = dataset.input_range
        self.num_classes = dataset.num_classes
        self.n_test = len(dataset.x_test[:test_samples])
        self.has_labels = True

    def parts(self, n_parts):
        """(start, stop) of each Phase 2 part: the test set split into n_parts near-equal parts."""
        return [part_range(self.n_test, n_parts, k) for k in range(n_parts)]

    def test(self, start, stop):
        stop = min(stop, self.n_test)
        return self.dataset.x_test[start:stop], self.dataset.y_test[start:stop]

    def sample(self, count=None, seed=0, start=0, stop=None):
        """Training inputs for X_n: a seeded draw of `count` (None = all), in file order;
        only its samples [start, stop) (a batch of a Phase 1 part)."""
        index = sample_index(len(self.dataset.x_train), count, seed)[start:stop]
        return self.dataset.x_train[index]

    def sample_size(self, count=None):
        """How many inputs the X_n sample has (all, or a draw of `count`)."""
        n = len(self.dataset.x_train)
        return n if count is None else min(count, n)


class ImageData:
    """Places365 / PASS: resized uint8 images in shards, preprocessed when read."""

    def __init__(self, path):
        from exactsnn import imagesets

        self.imagesets = imagesets
        self.root = Path(path).parent
        self.info = read_json(path)
        self.name = self.info["name"]
        self.input_range = tuple(self.info["input_range"])
        self.num_classes = self.info["num_classes"]
        self.n_test = int(self.info["test_count"])
        self.labels = None
        if self.info.get("labels"):
            with np.load(self.root / self.info["labels"]) as f:
                self.labels = f["labels"]
        self.has_labels = self.labels is not None

    def parts(self, n_parts):
        parts = [tuple(p) for p in self.info["parts"]]
        if len(parts) != n_parts:
            raise ValueError(
                f"{self.name}: the data stage made {len(parts)} test parts but the benchmark "
                f"has parts: {n_parts}; set parts: {len(parts)} in the config"
            )
        return parts

    def _preprocess(self, images):
        if self.info["preprocess"] == "caffe":
            return self.imagesets.caffe_preprocess(images)
        return self.imagesets.pass_preprocess(images)

    def test(self, start, stop):
        images = self.imagesets.read_shards(self.root / self.info["test_dir"], start, stop)
        labels = self.labels[start : start + len(images)] if self.has_labels else None
        return self._preprocess(images), labels

    def sample(self, count=None, seed=0, start=0, stop=None):
        """As ArrayData.sample; only the shards holding samples [start, stop) are read."""
        index = sample_index(self.sample_size(), count, seed)[start:stop]
        images = self.imagesets.read_shards(self.root / self.info["sample_dir"], index[0], index[-1] + 1)
        return self._preprocess(images[index - index[0]])

    def sample_size(self, count=None):
        """How many images the X_n sample has (the stored ones, or a draw of `count`)."""
        stored = int(self.imagesets.shard_manifest(self.root / self.info["sample_dir"])["count"])
        return stored if count is None else min(count, stored)


def sample_index(n, count=None, seed=0):
    """The X_n sample's indices among n training inputs: a seeded draw of `count` (None = all), sorted."""
    if count is None or count >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, count, replace=False))
