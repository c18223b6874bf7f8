"""Dataset loaders on small files the tests write in the official layouts: IDX, .npz, CIFAR
pickles and binary records, loose or in the distributed .tar.gz; resolution order."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import warnings

import numpy as np
import pytest

from exactsnn import datasets
from exactsnn.datasets import DataNotFoundError, IdxFormatError, load, read_cifar_pickle, read_idx

IDX_FILES = datasets._IDX_FILES


# ----------------------------------------------------------------------------------------------
# helpers that write the real on-disk formats
# ----------------------------------------------------------------------------------------------

_IDX_CODES = {np.dtype("uint8"): 0x08, np.dtype("int8"): 0x09, np.dtype("int16"): 0x0B,
              np.dtype("int32"): 0x0C, np.dtype("float32"): 0x0D, np.dtype("float64"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding: 0, 0, type code, ndim, big-endian uint32 dims, big-endian data."""
    header = bytes([0, 0, _IDX_CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, compress=True):
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if compress else data)


def fake_mnist(rng, n_train=12, n_test=6, shape=(28, 28)):
    x_train = rng.integers(0, 256, size=(n_train, *shape), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(n_test, *shape), dtype=np.uint8)
    y_train = (np.arange(n_train) % 10).astype(np.uint8)
    y_test = (np.arange(n_test) % 10).astype(np.uint8)
    return x_train, y_train, x_test, y_test


def write_idx_folder(folder, arrays, compress=True):
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(IDX_FILES, (arrays[0], arrays[1], arrays[2], arrays[3])):
        target = folder / (name if compress else name[: -len(".gz")])
        write_idx(target, array, compress=compress)
    return folder


def py2_style_pickle(data: np.ndarray, labels: list[int], label_key: bytes = b"labels") -> bytes:
    """A pickle shaped like the CIFAR files, which Python 2's cPickle wrote (protocol 2).

    Python 3 cannot write byte strings the way Python 2 did (it goes through _codecs.encode),
    so the opcodes are assembled by hand: keys, dtype strings and the pixel buffer are all
    SHORT_BINSTRING/BINSTRING, arrays come from numpy.core.multiarray._reconstruct.
    """

    def s(b: bytes) -> bytes:  # a Python 2 str
        return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<i", len(b)) + b)

    def i(v: int) -> bytes:
        return b"J" + struct.pack("<i", v)

    array = (
        b"cnumpy.core.multiarray\n_reconstruct\n"
        b"cnumpy\nndarray\n" + i(0) + b"\x85" + s(b"b") + b"\x87R"
        + b"(" + i(1) + b"(" + b"".join(i(d) for d in data.shape) + b"t"
        + b"cnumpy\ndtype\n" + s(b"u1") + i(0) + i(1) + b"\x87R"
        + b"(" + i(3) + s(b"|") + b"NNN" + i(-1) + i(-1) + i(0) + b"tb"
        + b"\x89" + s(data.astype(np.uint8).tobytes()) + b"tb"
    )
    label_list = b"](" + b"".join(i(v) for v in labels) + b"e"
    return b"\x80\x02}(" + s(b"data") + array + s(label_key) + label_list + b"u."


def fake_cifar_raw(rng, n):
    """Images in HWC uint8 and the CIFAR row layout (N, 3072: R plane, G plane, B plane)."""
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    rows = images.transpose(0, 3, 1, 2).reshape(n, 3072)
    return images, rows


# ----------------------------------------------------------------------------------------------
# IDX
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_roundtrip(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(3, 4, 5)) * 50).astype(dtype)
    write_idx(tmp_path / "a.idx", array, compress=compress)
    out = read_idx(tmp_path / "a.idx")
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_read_idx_bad_magic_names_file(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x01\x02\x08\x03" + b"\x00" * 40))
    with pytest.raises(IdxFormatError, match="train-images-idx3-ubyte.gz.*magic"):
        read_idx(bad)


def test_read_idx_unknown_type_code(tmp_path):
    bad = tmp_path / "x.idx"
    bad.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"ab")
    with pytest.raises(IdxFormatError, match="type code 0x07"):
        read_idx(bad)


def test_read_idx_truncated_names_file(tmp_path):
    data = idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-10]
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(data))
    with pytest.raises(IdxFormatError, match="t10k-images-idx3-ubyte.gz.*truncated"):
        read_idx(bad)


def test_read_idx_corrupt_gzip_names_file(tmp_path):
    good = gzip.compress(idx_bytes(np.zeros((40, 28, 28), np.uint8)))
    bad = tmp_path / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(IdxFormatError, match="train-labels-idx1-ubyte.gz"):
        read_idx(bad)


# ----------------------------------------------------------------------------------------------
# MNIST family: path, system copy, Keras cache, precedence
# ----------------------------------------------------------------------------------------------


def _isolated(tmp_path):
    """Keyword arguments that keep a load away from the real system folders and caches."""
    return dict(system_dir=tmp_path / "no-system", cache_dir=tmp_path / "no-cache", download=False)


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_from_idx_folder(tmp_path, compress):
    raw = fake_mnist(np.random.default_rng(1))
    folder = write_idx_folder(tmp_path / "mnist", raw, compress=compress)
    ds = load("mnist", path=folder, **_isolated(tmp_path))
    assert ds.name == "mnist" and ds.num_classes == 10 and ds.input_range == (0.0, 1.0)
    assert ds.x_train.shape == (12, 28, 28, 1) and ds.x_test.shape == (6, 28, 28, 1)
    assert ds.x_train.dtype == np.float64 and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.x_train[..., 0], raw[0] / 255.0)
    np.testing.assert_array_equal(ds.y_test, raw[3])
    assert ds.input_shape == (28, 28, 1)


def test_fashion_mnist_from_system_dir(tmp_path):
    """The Debian package's layout: four gzipped IDX files in one folder."""
    raw = fake_mnist(np.random.default_rng(2))
    system = write_idx_folder(tmp_path / "usr/share/datasets/fashion-mnist", raw)
    ds = load("fashion_mnist", system_dir=system, cache_dir=tmp_path / "no-cache", download=False)
    assert ds.name == "fashion_mnist"
    np.testing.assert_array_equal(ds.x_test[..., 0], raw[2] / 255.0)


def test_fashion_mnist_default_system_dir_is_debians():
    assert datasets._SPECS["fashion_mnist"].system_dirs == ("/usr/share/datasets/fashion-mnist",)


def test_path_takes_precedence_over_system_copy(tmp_path):
    system = write_idx_folder(tmp_path / "system", fake_mnist(np.random.default_rng(3)))
    given = write_idx_folder(tmp_path / "given", fake_mnist(np.random.default_rng(4), n_train=20))
    ds = load("fashion_mnist", path=given, system_dir=system, cache_dir=tmp_path / "c", download=False)
    assert len(ds.x_train) == 20


def test_missing_path_warns_and_falls_back(tmp_path):
    system = write_idx_folder(tmp_path / "system", fake_mnist(np.random.default_rng(5)))
    with pytest.warns(UserWarning, match="does not exist"):
        ds = load("fashion_mnist", path=tmp_path / "nowhere", system_dir=system,
                  cache_dir=tmp_path / "c", download=False)
    assert len(ds.x_train) == 12


def test_corrupt_file_raises_instead_of_falling_back(tmp_path):
    folder = write_idx_folder(tmp_path / "broken", fake_mnist(np.random.default_rng(6)))
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"garbage-not-idx"))
    system = write_idx_folder(tmp_path / "system", fake_mnist(np.random.default_rng(7)))
    with pytest.raises(IdxFormatError, match="train-images-idx3-ubyte.gz"):
        load("mnist", path=folder, system_dir=system, cache_dir=tmp_path / "c", download=False)


def test_mnist_npz_in_keras_cache(tmp_path):
    x_train, y_train, x_test, y_test = fake_mnist(np.random.default_rng(8))
    (tmp_path / "keras/datasets").mkdir(parents=True)
    np.savez(tmp_path / "keras/datasets/mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    ds = load("mnist", system_dir=tmp_path / "none", cache_dir=tmp_path / "keras", download=False)
    np.testing.assert_array_equal(ds.x_train[..., 0], x_train / 255.0)


def test_fashion_mnist_in_keras_cache_folder(tmp_path):
    raw = fake_mnist(np.random.default_rng(9))
    write_idx_folder(tmp_path / "keras/datasets/fashion-mnist", raw)
    ds = load("fashion_mnist", system_dir=tmp_path / "none", cache_dir=tmp_path / "keras", download=False)
    np.testing.assert_array_equal(ds.y_train, raw[1])


def test_npz_file_as_path(tmp_path):
    x_train, y_train, x_test, y_test = fake_mnist(np.random.default_rng(10))
    np.savez(tmp_path / "data.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    ds = load("fashion-mnist", path=tmp_path / "data.npz", **_isolated(tmp_path))
    assert ds.name == "fashion_mnist" and ds.x_train.shape == (12, 28, 28, 1)


def test_npz_with_wrong_shape_is_an_error(tmp_path):
    x = np.zeros((4, 27, 28), np.uint8)
    y = np.zeros(4, np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    with pytest.raises(ValueError, match=r"shape \(27, 28, 1\)"):
        load("mnist", path=tmp_path, **_isolated(tmp_path))


def test_npz_missing_array_is_an_error(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="lacks the arrays y_train"):
        load("mnist", path=tmp_path / "d.npz", **_isolated(tmp_path))


def test_not_found_message_names_places_and_files(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load("fashion_mnist", **_isolated(tmp_path))
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert "fashion_mnist" in message
    assert str(tmp_path / "no-system") in message
    assert str(tmp_path / "no-cache" / "datasets" / "fashion-mnist") in message
    assert "download=False" in message
    for name in IDX_FILES:
        assert name in message
    assert "dataset-fashion-mnist" in message


def test_not_found_message_for_cifar_names_the_batch_files(tmp_path):
    with pytest.raises(DataNotFoundError) as info, pytest.warns(UserWarning, match="missing"):
        load("cifar10", path=tmp_path / "missing", **_isolated(tmp_path))
    message = str(info.value)
    assert str(tmp_path / "missing") in message
    assert "cifar-10-batches-py" in message and "data_batch_1" in message and "test_batch" in message


def test_unknown_dataset_lists_names():
    with pytest.raises(ValueError, match="digits, mnist, fashion_mnist, cifar10, cifar100"):
        load("svhn")


# ----------------------------------------------------------------------------------------------
# CIFAR pickles
# ----------------------------------------------------------------------------------------------


def test_cifar10_pickle_folder_python2_format(tmp_path):
    rng = np.random.default_rng(11)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    images, labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        img, rows = fake_cifar_raw(rng, 3)
        lab = rng.integers(0, 10, size=3).tolist()
        (folder / name).write_bytes(py2_style_pickle(rows, lab))
        images.append(img)
        labels.append(lab)
    # the parent folder works too (the conventional sub-folder is found)
    ds = load("cifar10", path=tmp_path, **_isolated(tmp_path))
    assert ds.x_train.shape == (15, 32, 32, 3) and ds.x_test.shape == (3, 32, 32, 3)
    assert ds.input_range == (-3.0, 3.0) and ds.num_classes == 10
    expected = (np.concatenate(images[:5]).astype(np.float64) - 120.707) / (64.15 + 1e-7)
    np.testing.assert_array_equal(ds.x_train, expected)
    np.testing.assert_array_equal(ds.y_train, np.concatenate(labels[:5]))
    np.testing.assert_array_equal(ds.y_test, labels[5])
    assert ds.x_train.min() >= -3.0 and ds.x_train.max() <= 3.0


@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar100_pickle_folder_python3_format(tmp_path, protocol):
    rng = np.random.default_rng(12)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    parts = {}
    for name in ("train", "test"):
        img, rows = fake_cifar_raw(rng, 4)
        fine = rng.integers(0, 100, size=4).tolist()
        blob = {b"data": rows, b"fine_labels": fine, b"coarse_labels": [0] * 4, b"filenames": [b"a.png"] * 4}
        (folder / name).write_bytes(pickle.dumps(blob, protocol=protocol))
        parts[name] = (img, fine)
    ds = load("cifar100", path=folder, **_isolated(tmp_path))
    assert ds.num_classes == 100
    np.testing.assert_array_equal(ds.x_test, (parts["test"][0] - 121.936) / (68.389 + 1e-7))
    np.testing.assert_array_equal(ds.y_train, parts["train"][1])


def test_cifar_pickle_in_keras3_cache_layout(tmp_path):
    rng = np.random.default_rng(13)
    folder = tmp_path / "keras/datasets/cifar-10-batches-py-target/cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _, rows = fake_cifar_raw(rng, 2)
        (folder / name).write_bytes(pickle.dumps({"data": rows, "labels": [1, 2]}))
    ds = load("cifar10", system_dir=tmp_path / "none", cache_dir=tmp_path / "keras", download=False)
    assert ds.x_train.shape == (10, 32, 32, 3)


def test_cifar_npz(tmp_path):
    rng = np.random.default_rng(14)
    x = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    y = np.arange(5, dtype=np.uint8).reshape(5, 1)  # Keras' (N, 1) label layout
    np.savez(tmp_path / "cifar10.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    ds = load("cifar10", path=tmp_path, **_isolated(tmp_path))
    assert ds.y_train.shape == (5,)
    np.testing.assert_allclose(ds.x_test, (x - 120.707) / (64.15 + 1e-7))


def test_pickle_refuses_other_globals(tmp_path):
    import collections

    evil = tmp_path / "data_batch_1"
    evil.write_bytes(pickle.dumps({"data": collections.OrderedDict(a=1)}))
    with pytest.raises(datasets.UnsafePickleError, match="data_batch_1.*collections.OrderedDict"):
        read_cifar_pickle(evil)


def test_pickle_truncated_is_a_clear_error(tmp_path):
    blob = pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]})
    bad = tmp_path / "test_batch"
    bad.write_bytes(blob[:50])
    with pytest.raises(ValueError, match="test_batch"):
        read_cifar_pickle(bad)


# ----------------------------------------------------------------------------------------------
# CIFAR as distributed: python and binary versions, loose and as the official .tar.gz
# ----------------------------------------------------------------------------------------------

# (folder the archive unpacks to, train files, test files, label bytes per binary record; 0 = pickles)
CIFAR_LAYOUTS = {
    ("cifar10", "python"): ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], 0),
    ("cifar10", "binary"): ("cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"], 1),
    ("cifar100", "python"): ("cifar-100-python", ["train"], ["test"], 0),
    ("cifar100", "binary"): ("cifar-100-binary", ["train.bin"], ["test.bin"], 2),
}
# The files besides the batches that the official archives hold (read by nobody, but present).
CIFAR_EXTRAS = {
    "cifar-10-batches-py": {"batches.meta": pickle.dumps({"label_names": ["x"] * 10}, protocol=2),
                            "readme.html": b"<html></html>"},
    "cifar-10-batches-bin": {"batches.meta.txt": b"airplane\n", "readme.html": b"<html></html>"},
    "cifar-100-python": {"meta": pickle.dumps({"fine_label_names": ["x"] * 100}, protocol=2)},
    "cifar-100-binary": {"coarse_label_names.txt": b"a\n", "fine_label_names.txt": b"b\n"},
}


def fake_cifar_files(name, version, rng, n=3):
    """The batch files of one official CIFAR version (name -> bytes) and the arrays they hold.

    CIFAR-100 gets distinct coarse and fine labels, so a loader that took the wrong one fails.
    """
    folder, train, test, label_bytes = CIFAR_LAYOUTS[(name, version)]
    classes = 10 if name == "cifar10" else 100
    files, expected = {}, {"train": ([], []), "test": ([], [])}
    for part, names in (("train", train), ("test", test)):
        for file in names:
            images, rows = fake_cifar_raw(rng, n)
            fine = rng.integers(0, classes, size=n)
            coarse = fine // 5
            if label_bytes == 0 and name == "cifar10":
                files[file] = py2_style_pickle(rows, fine.tolist())
            elif label_bytes == 0:
                files[file] = pickle.dumps({b"data": rows, b"fine_labels": fine.tolist(),
                                            b"coarse_labels": coarse.tolist()}, protocol=2)
            else:
                labels = fine[:, None] if label_bytes == 1 else np.stack([coarse, fine], axis=1)
                files[file] = np.concatenate([labels.astype(np.uint8), rows], axis=1).tobytes()
            expected[part][0].append(images)
            expected[part][1].append(fine)
    arrays = {part: (np.concatenate(x), np.concatenate(y)) for part, (x, y) in expected.items()}
    return folder, files, arrays


def write_cifar_folder(parent, folder, files):
    target = parent / folder
    target.mkdir(parents=True)
    for file, data in {**files, **CIFAR_EXTRAS[folder]}.items():
        (target / file).write_bytes(data)
    return target


def write_cifar_archive(path, folder, files):
    """A .tar.gz laid out as the official one: a folder entry, then folder/<file> members."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        entry = tarfile.TarInfo(folder)
        entry.type = tarfile.DIRTYPE
        tar.addfile(entry)
        for file, data in {**CIFAR_EXTRAS[folder], **files}.items():
            info = tarfile.TarInfo(f"{folder}/{file}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def assert_cifar(ds, name, arrays):
    scale = {"cifar10": (120.707, 64.15), "cifar100": (121.936, 68.389)}[name]
    for part in ("train", "test"):
        x, y = getattr(ds, f"x_{part}"), getattr(ds, f"y_{part}")
        np.testing.assert_array_equal(x, (arrays[part][0].astype(np.float64) - scale[0]) / (scale[1] + 1e-7))
        np.testing.assert_array_equal(y, arrays[part][1])


OFFICIAL_ARCHIVES = {
    ("cifar10", "python"): "cifar-10-python.tar.gz",
    ("cifar10", "binary"): "cifar-10-binary.tar.gz",
    ("cifar100", "python"): "cifar-100-python.tar.gz",
    ("cifar100", "binary"): "cifar-100-binary.tar.gz",
}


@pytest.mark.parametrize("name, version", list(CIFAR_LAYOUTS))
def test_cifar_official_archive_is_read_without_unpacking(tmp_path, name, version):
    folder, files, arrays = fake_cifar_files(name, version, np.random.default_rng(21))
    archive = write_cifar_archive(tmp_path / "downloads" / OFFICIAL_ARCHIVES[(name, version)], folder, files)
    before = sorted(p.name for p in archive.parent.iterdir())
    ds = load(name, path=archive, **_isolated(tmp_path))
    assert_cifar(ds, name, arrays)
    assert ds.source == f"path {archive} (archive, read without unpacking)"
    # the folder that holds the archive is enough, and nothing was unpacked next to it
    ds = load(name, path=archive.parent, **_isolated(tmp_path))
    assert_cifar(ds, name, arrays)
    assert sorted(p.name for p in archive.parent.iterdir()) == before


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_binary_folder(tmp_path, name):
    folder, files, arrays = fake_cifar_files(name, "binary", np.random.default_rng(22))
    target = write_cifar_folder(tmp_path, folder, files)
    for where in (tmp_path, target):  # the unpacked folder, or the folder it was unpacked into
        ds = load(name, path=where, **_isolated(tmp_path))
        assert_cifar(ds, name, arrays)
        assert ds.source == f"path {target} (CIFAR batch files)"


def test_cifar_archive_in_the_keras_2_cache(tmp_path):
    # Keras 2 keeps the download as datasets/cifar-10-batches-py.tar.gz.
    folder, files, arrays = fake_cifar_files("cifar10", "python", np.random.default_rng(23))
    archive = write_cifar_archive(tmp_path / "keras" / "datasets" / "cifar-10-batches-py.tar.gz", folder, files)
    ds = load("cifar10", system_dir=tmp_path / "none", cache_dir=tmp_path / "keras", download=False)
    assert_cifar(ds, "cifar10", arrays)
    assert ds.source == f"Keras cache {archive} (archive, read without unpacking)"


@pytest.mark.parametrize("packed", [False, True])
def test_cifar_binary_truncated_record_names_the_file(tmp_path, packed):
    folder, files, _ = fake_cifar_files("cifar10", "binary", np.random.default_rng(24))
    files["data_batch_3.bin"] = files["data_batch_3.bin"][:-100]
    if packed:
        where = write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz", folder, files)
        expected = r"cifar-10-binary\.tar\.gz:cifar-10-batches-bin/data_batch_3\.bin: 9119 bytes"
    else:
        where = write_cifar_folder(tmp_path, folder, files)
        expected = r"cifar-10-batches-bin/data_batch_3\.bin: 9119 bytes"
    with pytest.raises(ValueError, match=expected + r" is not a whole number of 3073-byte CIFAR binary records"):
        load("cifar10", path=where, **_isolated(tmp_path))


def test_cifar100_binary_record_size_counts_both_labels(tmp_path):
    folder, files, _ = fake_cifar_files("cifar100", "binary", np.random.default_rng(25), n=2)
    files["test.bin"] = files["test.bin"][:-2]
    expected = r"test\.bin: 6146 bytes is not a whole number of 3074-byte CIFAR binary records \(2 label bytes"
    with pytest.raises(ValueError, match=expected):
        load("cifar100", path=write_cifar_folder(tmp_path, folder, files), **_isolated(tmp_path))


def test_truncated_cifar_archive_names_the_archive(tmp_path):
    folder, files, _ = fake_cifar_files("cifar100", "python", np.random.default_rng(26))
    archive = write_cifar_archive(tmp_path / "cifar-100-python.tar.gz", folder, files)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cifar-100-python\.tar\.gz: cannot read the archive .*truncated or corrupt"):
        load("cifar100", path=archive, **_isolated(tmp_path))


def test_pickle_in_an_archive_is_read_by_the_restricted_unpickler(tmp_path):
    import collections

    folder, files, _ = fake_cifar_files("cifar10", "python", np.random.default_rng(27))
    files["data_batch_2"] = pickle.dumps({"data": collections.OrderedDict(a=1), "labels": []})
    archive = write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", folder, files)
    with pytest.raises(datasets.UnsafePickleError, match=r"cifar-10-batches-py/data_batch_2.*collections.OrderedDict"):
        load("cifar10", path=archive, **_isolated(tmp_path))


def test_every_source_is_named(tmp_path):
    folder = write_idx_folder(tmp_path / "m", fake_mnist(np.random.default_rng(28)))
    assert load("mnist", path=folder, **_isolated(tmp_path)).source == f"path {folder} (IDX files)"
    raw = fake_mnist(np.random.default_rng(29))
    cache = tmp_path / "keras" / "datasets"
    cache.mkdir(parents=True)
    np.savez(cache / "mnist.npz", x_train=raw[0], y_train=raw[1], x_test=raw[2], y_test=raw[3])
    ds = load("mnist", system_dir=tmp_path / "none", cache_dir=tmp_path / "keras", download=False)
    assert ds.source == f"Keras cache {cache / 'mnist.npz'} (.npz)"
    system = write_idx_folder(tmp_path / "sys", raw)
    ds = load("fashion_mnist", system_dir=system, cache_dir=tmp_path / "none", download=False)
    assert ds.source == f"system copy {system} (IDX files)"
    assert "scikit-learn" in load("digits").source


def test_label_out_of_range_is_an_error(tmp_path):
    raw = list(fake_mnist(np.random.default_rng(15)))
    raw[1] = raw[1] + 5  # labels up to 14
    folder = write_idx_folder(tmp_path / "m", raw)
    with pytest.raises(ValueError, match="labels span"):
        load("mnist", path=folder, **_isolated(tmp_path))


# ----------------------------------------------------------------------------------------------
# digits and subsets
# ----------------------------------------------------------------------------------------------


def test_digits_split():
    ds = load("digits")
    assert ds.name == "digits" and ds.input_range == (0.0, 16.0) and ds.num_classes == 10
    assert ds.x_train.shape == (1347, 8, 8, 1) and ds.x_test.shape == (450, 8, 8, 1)
    assert ds.x_train.dtype == np.float64 and ds.y_train.dtype == np.int64
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 16.0
    # stratified: every class is a quarter test, give or take one sample
    counts_test = np.bincount(ds.y_test, minlength=10)
    counts_all = counts_test + np.bincount(ds.y_train, minlength=10)
    assert np.all(np.abs(counts_test - counts_all / 4) <= 1)


def test_digits_split_is_seeded():
    a, b, c = load("digits", seed=0), load("digits", seed=0), load("digits", seed=1)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.y_test, c.y_test)


def test_take_fraction_is_seeded_and_ordered():
    x = np.arange(100.0)
    y = np.arange(100)
    xa, ya = datasets.take_fraction(x, y, 0.1, seed=3)
    xb, _ = datasets.take_fraction(x, y, 0.1, seed=3)
    xc, _ = datasets.take_fraction(x, y, 0.1, seed=4)
    assert len(xa) == 10 and np.all(np.diff(xa) > 0)
    np.testing.assert_array_equal(xa, ya)
    np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(xa, xc)
    assert datasets.take_fraction(x, y, 1.0)[0] is x
    assert len(datasets.take_fraction(x, y, 1e-6)[0]) == 1
    with pytest.raises(ValueError):
        datasets.take_fraction(x, y, 0.0)


def test_subset():
    ds = load("digits")
    small = ds.subset(0.5, seed=1, test=20)
    assert len(small.x_train) == round(0.5 * 1347) and len(small.x_test) == 20
    assert small.input_range == ds.input_range and small.name == ds.name
    np.testing.assert_array_equal(small.x_test, ds.x_test[:20])


def test_no_warning_when_found_first(tmp_path):
    folder = write_idx_folder(tmp_path / "m", fake_mnist(np.random.default_rng(16)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load("mnist", path=folder, **_isolated(tmp_path))


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_the_debian_package():
    data = datasets.load("fashion_mnist", download=False, cache_dir="/nonexistent")
    assert data.x_train.shape == (60000, 28, 28, 1) and data.x_test.shape == (10000, 28, 28, 1)
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0 and data.input_range == (0.0, 1.0)
    assert np.array_equal(np.bincount(data.y_train), np.full(10, 6000))


# --------------------------------------------------------------------------------------------
# The saved dataset and the reads Phase 1 and Phase 2 make of it
# --------------------------------------------------------------------------------------------


def _toy(rng):
    return datasets.Dataset(rng.uniform(0, 1, (19, 3)), rng.integers(0, 2, 19), rng.uniform(0, 1, (5, 3)),
                            rng.integers(0, 2, 5), (0.0, 1.0), 2, "toy", source="made up")


def whole_and_batches(data, count, seed=4):
    """The X_n sample of ``data`` read at once and in the batches of three Phase 1 parts."""
    from exactsnn.preprocess import batch_ranges

    whole = data.sample(count, seed)
    n = data.sample_size(count)
    batches = [data.sample(count, seed, a, b) for k in range(3) for a, b in batch_ranges(n, 4, 3, k)]
    return whole, n, batches


@pytest.mark.parametrize("count", [None, 7, 100])
def test_dataset_sample_in_batches_is_the_whole_sample(count):
    whole, n, batches = whole_and_batches(_toy(np.random.default_rng(0)), count)
    assert n == len(whole) == (19 if count in (None, 100) else 7)
    assert np.array_equal(np.concatenate(batches), whole)


def test_dataset_saved_and_opened_with_its_test_set_cut(tmp_path):
    toy = _toy(np.random.default_rng(1))
    toy.save(tmp_path / "dataset.npz")
    from exactsnn.imagesets import open_data

    back = open_data(tmp_path / "dataset.npz", test_samples=3)
    for name in ("x_train", "y_train"):
        assert np.array_equal(getattr(back, name), getattr(toy, name))
    assert np.array_equal(back.test(0, 10)[0], toy.x_test[:3]) and back.n_test == 3
    assert (back.input_range, back.num_classes, back.name, back.source) == ((0.0, 1.0), 2, "toy", "")
    assert back.test_parts(2) == [(0, 1), (1, 3)]


def test_dataset_load_names_the_file_it_cannot_read(tmp_path):
    np.savez(tmp_path / "other.npz", x_train=np.zeros(2))
    with pytest.raises(ValueError, match=r"other\.npz.*no y_train"):
        datasets.Dataset.load(tmp_path / "other.npz")


def test_check_network_names_the_file_and_the_mismatch():
    toy = _toy(np.random.default_rng(2))
    toy.check_network((3,), 2, "net.onnx")
    with pytest.raises(ValueError, match=r"net\.onnx: the network takes inputs of shape \(4,\)"):
        toy.check_network((4,), 2, "net.onnx")
    with pytest.raises(ValueError, match=r"net\.onnx: the network has 3 outputs, toy has 2 classes"):
        toy.check_network((3,), 3, "net.onnx")
