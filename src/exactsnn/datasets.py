"""The paper's datasets, in each model's raw input domain, found without surprises.

Every image dataset is looked for in a fixed order (DESIGN §5):

1. ``path`` — a folder or file the user (the workflow config) names;
2. a system-wide copy — ``/usr/share/datasets/fashion-mnist/`` is where Debian's
   ``dataset-fashion-mnist`` package puts the real Fashion-MNIST; ``system_dir`` overrides;
3. the Keras download cache (``$KERAS_HOME`` or ``~/.keras``, ``datasets/`` below it);
4. a download through ``keras.datasets`` (only with ``download=True``).

If none of them has the data, :class:`DataNotFoundError` says which places were tried and
exactly which files to put where.  The ``digits`` dataset ships with scikit-learn, so the
default workflow config runs offline.

The loaders read the files as they are distributed: gzipped (or plain) IDX files (MNIST,
Fashion-MNIST), Keras' ``.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``), and CIFAR in
both official versions, "python" (pickled batches) and "binary" (fixed-size records), either as
the downloaded ``.tar.gz`` (read member by member, nothing is unpacked to disk) or as the folder
it unpacks to.  The pickles are read with an unpickler that refuses every global except the few
NumPy reconstructors a pickled array needs, so a crafted file cannot run code.

Scaling follows the paper's code: MNIST-type images /255 in [p, q] = [0, 1]; CIFAR10
(x − 120.707)/(64.15 + 1e-7) and CIFAR100 (x − 121.936)/(68.389 + 1e-7), both declared as
[p, q] = [−3, 3] (the scaled values of 0..255 lie inside that interval).
"""

from __future__ import annotations

import codecs
import gzip
import io
import os
import pickle
import tarfile
import warnings
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = [
    "Dataset",
    "DataNotFoundError",
    "IdxFormatError",
    "UnsafePickleError",
    "NAMES",
    "load",
    "read_idx",
    "read_cifar_pickle",
    "read_cifar_binary",
    "take_fraction",
]


class DataNotFoundError(FileNotFoundError):
    """No copy of a dataset was found anywhere we looked (and none could be downloaded)."""


class IdxFormatError(ValueError):
    """An IDX file is corrupt or not an IDX file at all; the message names the file."""


@dataclass(frozen=True, eq=False)  # arrays have no single truth value, so no __eq__
class Dataset:
    """A labelled train/test split in the model's raw input domain.

    ``x_*`` are float64 arrays, NHWC for images (N, H, W, C); ``y_*`` are int64 class indices
    (N,).  ``input_range`` is the interval [p, q] that every input value lies in; the mapping
    folds it into the first layer so that spike times of the inputs lie in [0, 1].  ``source``
    says where the data was read (kind of place, file or folder, format), for the logs.
    """

    x_train: np.ndarray  # (N_train, H, W, C) float64
    y_train: np.ndarray  # (N_train,) int64
    x_test: np.ndarray  # (N_test, H, W, C) float64
    y_test: np.ndarray  # (N_test,) int64
    input_range: tuple[float, float]
    num_classes: int
    name: str
    source: str = ""

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample, without the batch axis."""
        return tuple(self.x_train.shape[1:])

    def subset(self, fraction: float = 1.0, *, seed: int = 0, test: int | None = None) -> "Dataset":
        """A copy with a seeded ``fraction`` of the training data and the first ``test`` test samples.

        Quick runs (config key ``fraction``) train on a random but reproducible part of the
        training set; the test set is cut from the front so that runs with different seeds
        are scored on the same images.
        """
        x_train, y_train = take_fraction(self.x_train, self.y_train, fraction, seed=seed)
        x_test, y_test = self.x_test, self.y_test
        if test is not None:
            x_test, y_test = x_test[:test], y_test[:test]
        return replace(self, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)

    # The reads Phase 1 and Phase 2 make, shared with :class:`exactsnn.imagesets.ImageSet`.

    has_labels = True

    @property
    def n_test(self) -> int:
        """Number of test samples."""
        return len(self.x_test)

    def test_parts(self, n_parts: int) -> list[tuple[int, int]]:
        """(start, stop) of each Phase 2 part: the test set split into ``n_parts`` near-equal parts."""
        return [part_range(self.n_test, n_parts, k) for k in range(n_parts)]

    def test(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Test inputs and labels [start, stop)."""
        return self.x_test[start:stop], self.y_test[start:stop]

    def sample(self, count: int | None = None, seed: int = 0, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Training inputs [start, stop) of the X_n sample: a seeded draw of ``count`` (None =
        all) in file order (:func:`sample_index`); a Phase 1 part reads only its batches."""
        return self.x_train[sample_index(len(self.x_train), count, seed)[start:stop]]

    def sample_size(self, count: int | None = None) -> int:
        """How many inputs the X_n sample has (all, or a draw of ``count``)."""
        n = len(self.x_train)
        return n if count is None else min(count, n)

    def check_network(self, input_shape: tuple[int, ...], classes: int, origin: str) -> None:
        """Raise ValueError, naming ``origin`` (the network's file), unless a network taking
        inputs of ``input_shape`` (channels last) with ``classes`` outputs fits this dataset."""
        if tuple(input_shape) != self.input_shape:
            raise ValueError(
                f"{origin}: the network takes inputs of shape {tuple(input_shape)} (channels last; an NCHW model's "
                f"(C, H, W) becomes (H, W, C)), but {self.name} has {self.input_shape}"
            )
        if classes != self.num_classes:
            raise ValueError(f"{origin}: the network has {classes} outputs, {self.name} has {self.num_classes} classes")

    def save(self, path: str | os.PathLike) -> None:
        """Write the arrays, input range, classes and name as one ``.npz``, atomically (the
        ``source`` is for the logs of the job that read the data, so it is not kept)."""
        from .serialize import atomic

        with atomic(path) as tmp:
            np.savez(
                tmp,
                **{name: getattr(self, name) for name in _SAVED_ARRAYS},
                input_range=np.asarray(self.input_range, dtype=np.float64),
                num_classes=np.int64(self.num_classes),
                name=np.str_(self.name),
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Dataset":
        """Read what :meth:`save` wrote."""
        with np.load(path, allow_pickle=False) as f:
            missing = [key for key in (*_SAVED_ARRAYS, "input_range", "num_classes", "name") if key not in f]
            if missing:
                raise ValueError(f"{os.fspath(path)}: not a dataset written by Dataset.save (no {', '.join(missing)})")
            return cls(
                **{name: f[name] for name in _SAVED_ARRAYS},
                input_range=tuple(float(v) for v in f["input_range"]),
                num_classes=int(f["num_classes"]),
                name=str(f["name"]),
            )


_SAVED_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def part_range(n: int, parts: int, part: int) -> tuple[int, int]:
    """Samples [start, stop) of part ``part`` when ``n`` samples are split into ``parts``."""
    return part * n // parts, (part + 1) * n // parts


def sample_index(n: int, count: int | None = None, seed: int = 0) -> np.ndarray:
    """The X_n sample's indices among ``n`` training inputs: a seeded draw of ``count`` (None =
    all), sorted."""
    if count is None or count >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, count, replace=False))


def take_fraction(x: np.ndarray, y: np.ndarray, fraction: float, *, seed: int = 0):
    """A seeded random ``fraction`` of the samples of (x, y), kept in their original order.

    At least one sample is kept.  ``fraction == 1`` returns the arrays unchanged (no copy).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return x, y
    n = len(x)
    keep = max(1, int(round(fraction * n)))
    # Sorting the chosen indices keeps the subset in file order, so it does not depend on
    # anything but (seed, fraction, n).
    index = np.sort(np.random.default_rng(seed).permutation(n)[:keep])
    return x[index], y[index]


# --------------------------------------------------------------------------------------------
# File formats
# --------------------------------------------------------------------------------------------

# IDX type codes (third byte of the magic number) and the big-endian dtype each stands for.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped if the name ends in ``.gz`` or the bytes say so).

    The IDX format (used by MNIST and Fashion-MNIST) is a 4-byte magic number — two zero
    bytes, a type code, the number of dimensions — then one big-endian uint32 per dimension,
    then the data.  Any deviation raises :class:`IdxFormatError` naming the file, rather than
    returning garbage shaped like an image.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip's magic number; trust the bytes, not the suffix
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise IdxFormatError(f"{path}: cannot decompress ({err}); the file is corrupt") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise IdxFormatError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise IdxFormatError(f"{path}: unknown IDX data type code 0x{code:02x}")
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise IdxFormatError(f"{path}: truncated IDX header ({ndim} dimensions, {len(raw)} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise IdxFormatError(
            f"{path}: header says shape {shape} ({expected} bytes of data) "
            f"but the file holds {len(raw) - header} bytes; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


class UnsafePickleError(pickle.UnpicklingError):
    """A data pickle names a Python object other than the NumPy array machinery."""


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler for data files: plain containers and NumPy arrays, nothing else.

    ``pickle.load`` would call any function a file names; the CIFAR batches only need
    the array reconstructor, ``ndarray``, ``dtype`` and (for Python-3 protocol-2 pickles of
    ``bytes``) ``_codecs.encode``.  Everything else is refused with the file's name.
    """

    # The reconstructors are looked up through public objects so that we do not depend on
    # where a given NumPy version keeps them (numpy.core vs numpy._core).
    _ALLOWED: dict[tuple[str, str], Callable] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.empty(0))[0],
        ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.empty(0))[0],
        ("numpy.core.multiarray", "scalar"): np.float64(0).__reduce__()[0],
        ("numpy._core.multiarray", "scalar"): np.float64(0).__reduce__()[0],
        ("_codecs", "encode"): codecs.encode,
    }

    def __init__(self, file, origin: str):
        # encoding="bytes": the CIFAR files were written by Python 2, whose byte strings must
        # stay bytes (the pixel buffer of each array is one of them).
        super().__init__(file, encoding="bytes")
        self._origin = origin

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._origin}: refusing to load '{module}.{name}' from a data pickle "
                "(only NumPy arrays and plain containers are allowed)"
            ) from None


def read_cifar_pickle(path: str | os.PathLike) -> dict[str, object]:
    """Read one CIFAR "python version" batch file into a dict with ``str`` keys.

    Values are returned as stored (``data`` is a (N, 3072) uint8 array, labels are lists).
    """
    path = Path(path)
    with open(path, "rb") as f:
        return _unpickle_cifar(f, str(path))


def _unpickle_cifar(f, origin: str) -> dict[str, object]:
    try:
        obj = _ArrayOnlyUnpickler(f, origin).load()
    except UnsafePickleError:
        raise
    except Exception as err:  # truncated files raise EOFError or UnpicklingError, garbage many things
        raise ValueError(f"{origin}: not a readable CIFAR pickle ({type(err).__name__}: {err})") from err
    if not isinstance(obj, dict):
        raise ValueError(f"{origin}: expected a dict in a CIFAR pickle, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def read_cifar_binary(raw: bytes, label_bytes: int, origin: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels (N, ``label_bytes``) of a CIFAR "binary version" file.

    Each record is ``label_bytes`` label bytes (CIFAR-10: the class; CIFAR-100: coarse, then
    fine) followed by the 3072 pixel bytes in the pickles' order (1024 red, 1024 green, 1024
    blue, each row-major).  The format has no header, so a length that is not a whole number of
    records is the only sign of a truncated or foreign file; it raises naming ``origin``.
    """
    record = label_bytes + 3072
    if not raw or len(raw) % record:
        raise ValueError(
            f"{origin}: {len(raw)} bytes is not a whole number of {record}-byte CIFAR binary records "
            f"({label_bytes} label byte{'s' if label_bytes > 1 else ''} + 3072 pixel bytes); "
            "the file is truncated or not a CIFAR binary file"
        )
    rows = np.frombuffer(raw, np.uint8).reshape(-1, record)
    images = rows[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, rows[:, :label_bytes]


# --------------------------------------------------------------------------------------------
# Dataset descriptions
# --------------------------------------------------------------------------------------------

_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

_Raw = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x_train, y_train, x_test, y_test


@dataclass(frozen=True)
class _Spec:
    """What a dataset looks like and where its files are conventionally kept."""

    name: str
    shape: tuple[int, int, int]  # H, W, C of one image
    num_classes: int
    input_range: tuple[float, float]
    scale: Callable[[np.ndarray], np.ndarray]  # raw 0..255 values -> model input domain
    kind: str  # "idx" (MNIST family) or "cifar10" / "cifar100" (see _CIFAR_VERSIONS)
    npz_names: tuple[str, ...]  # .npz file names accepted inside a folder
    cache_entries: tuple[str, ...]  # paths below <keras home>/datasets/, newest Keras first
    system_dirs: tuple[str, ...] = ()
    keras_module: str = ""  # keras.datasets.<this>

    def files_hint(self) -> str:
        """The exact files a user must provide, for the not-found message."""
        if self.kind == "idx":
            return ", ".join(_IDX_FILES) + " (gzipped IDX)"
        return " or ".join(
            f"{v.archives[0]} (or the folder {v.folder}/ it unpacks to: {', '.join(v.train + v.test)})"
            for v in _CIFAR_VERSIONS[self.kind]
        )


@dataclass(frozen=True)
class _CifarVersion:
    """One official distribution of CIFAR-10 or CIFAR-100, as https://www.cs.toronto.edu/~kriz/cifar.html has it."""

    folder: str  # what the archive unpacks to
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_bytes: int  # binary version: label bytes per record (the last is the label we use); 0 = pickles
    archives: tuple[str, ...]  # names the .tar.gz is kept under, the official one first


_CIFAR_VERSIONS: dict[str, tuple[_CifarVersion, ...]] = {
    "cifar10": (
        _CifarVersion(
            "cifar-10-batches-py",
            tuple(f"data_batch_{i}" for i in range(1, 6)),
            ("test_batch",),
            0,
            # Keras 2 keeps the download as cifar-10-batches-py.tar.gz next to the unpacked folder.
            ("cifar-10-python.tar.gz", "cifar-10-batches-py.tar.gz"),
        ),
        _CifarVersion(
            "cifar-10-batches-bin",
            tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
            ("test_batch.bin",),
            1,
            ("cifar-10-binary.tar.gz",),
        ),
    ),
    "cifar100": (
        _CifarVersion("cifar-100-python", ("train",), ("test",), 0, ("cifar-100-python.tar.gz",)),
        # Records of CIFAR-100's binary version carry the coarse (superclass) label, then the fine one.
        _CifarVersion("cifar-100-binary", ("train.bin",), ("test.bin",), 2, ("cifar-100-binary.tar.gz",)),
    ),
}
_CIFAR_LABEL_KEYS = {"cifar10": "labels", "cifar100": "fine_labels"}


def _mnist_scale(x: np.ndarray) -> np.ndarray:
    return x / 255.0


def _standardize(mean: float, std: float) -> Callable[[np.ndarray], np.ndarray]:
    # The paper's code divides by (std + 1e-7); keeping the epsilon keeps inputs bit-identical.
    return lambda x: (x - mean) / (std + 1e-7)


_SPECS: dict[str, _Spec] = {
    "mnist": _Spec(
        name="mnist",
        shape=(28, 28, 1),
        num_classes=10,
        input_range=(0.0, 1.0),
        scale=_mnist_scale,
        kind="idx",
        npz_names=("mnist.npz",),
        cache_entries=("mnist.npz",),
        keras_module="mnist",
    ),
    "fashion_mnist": _Spec(
        name="fashion_mnist",
        shape=(28, 28, 1),
        num_classes=10,
        input_range=(0.0, 1.0),
        scale=_mnist_scale,
        kind="idx",
        npz_names=("fashion_mnist.npz", "fashion-mnist.npz"),
        cache_entries=("fashion-mnist",),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        keras_module="fashion_mnist",
    ),
    "cifar10": _Spec(
        name="cifar10",
        shape=(32, 32, 3),
        num_classes=10,
        input_range=(-3.0, 3.0),
        scale=_standardize(120.707, 64.15),
        kind="cifar10",
        npz_names=("cifar10.npz", "cifar-10.npz"),
        cache_entries=(
            "cifar-10-batches-py-target/cifar-10-batches-py",
            "cifar-10-batches-py",
            "cifar-10-batches-py.tar.gz",
            "cifar-10-python.tar.gz",
        ),
        keras_module="cifar10",
    ),
    "cifar100": _Spec(
        name="cifar100",
        shape=(32, 32, 3),
        num_classes=100,
        input_range=(-3.0, 3.0),
        scale=_standardize(121.936, 68.389),
        kind="cifar100",
        npz_names=("cifar100.npz", "cifar-100.npz"),
        cache_entries=(
            "cifar-100-python-target/cifar-100-python",
            "cifar-100-python",
            "cifar-100-python.tar.gz",
        ),
        keras_module="cifar100",
    ),
}

NAMES: tuple[str, ...] = ("digits", *_SPECS)

_ALIASES = {"fmnist": "fashion_mnist", "fashionmnist": "fashion_mnist", "cifar_10": "cifar10", "cifar_100": "cifar100"}


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(NAMES)}")
    return key


# --------------------------------------------------------------------------------------------
# Reading one candidate location
# --------------------------------------------------------------------------------------------


class _Missing(Exception):
    """A candidate location does not hold the dataset; the message says what is missing."""


def _read_npz(file: Path) -> _Raw:
    # allow_pickle=False: an .npz of plain arrays needs no code execution.
    with np.load(file, allow_pickle=False) as f:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f.files]
        if missing:
            raise ValueError(f"{file}: .npz lacks the arrays {', '.join(missing)} (has {', '.join(f.files)})")
        return f["x_train"], f["y_train"], f["x_test"], f["y_test"]


def _find_idx_file(folder: Path, gz_name: str) -> Path | None:
    # Accept the gzipped file or its decompressed twin, and the dotted variant
    # (train-images.idx3-ubyte) that some mirrors use.
    stem = gz_name[: -len(".gz")]
    for candidate in (gz_name, stem, stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def _read_idx_folder(folder: Path) -> _Raw:
    files = [_find_idx_file(folder, name) for name in _IDX_FILES]
    missing = [name for name, f in zip(_IDX_FILES, files) if f is None]
    if missing:
        raise _Missing(f"missing {', '.join(missing)}")
    x_train, y_train, x_test, y_test = (read_idx(f) for f in files)
    return x_train, y_train, x_test, y_test


def _decode_cifar(kind: str, version: _CifarVersion, read: Callable[[str], bytes], origin: str) -> _Raw:
    """The train and test arrays of one CIFAR version; ``read(name)`` gives a file's bytes and
    ``origin/name`` names it in errors."""

    def part(names: tuple[str, ...]):
        xs, ys = [], []
        for name in names:
            where = f"{origin}/{name}"
            if version.label_bytes:
                images, labels = read_cifar_binary(read(name), version.label_bytes, where)
                xs.append(images)
                ys.append(labels[:, -1])
                continue
            batch = _unpickle_cifar(io.BytesIO(read(name)), where)
            key = _CIFAR_LABEL_KEYS[kind]
            if "data" not in batch or key not in batch:
                raise ValueError(f"{where}: CIFAR pickle lacks 'data' or '{key}' (has {sorted(batch)})")
            # Stored as rows of 3072 bytes: 1024 red, 1024 green, 1024 blue, each row-major.
            xs.append(np.asarray(batch["data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(np.asarray(batch[key]))
        return np.concatenate(xs), np.concatenate(ys)

    x_train, y_train = part(version.train)
    x_test, y_test = part(version.test)
    return x_train, y_train, x_test, y_test


def _read_cifar_folder(folder: Path, kind: str) -> _Raw:
    """The first CIFAR version whose files are all in ``folder``."""
    reasons = []
    for version in _CIFAR_VERSIONS[kind]:
        missing = [f for f in version.train + version.test if not (folder / f).is_file()]
        if not missing:
            return _decode_cifar(kind, version, lambda name: (folder / name).read_bytes(), str(folder))
        reasons.append(f"missing {', '.join(missing)}")
    raise _Missing(" / ".join(reasons))


def _read_cifar_archive(archive: Path, kind: str) -> _Raw:
    """A CIFAR ``.tar.gz`` read as downloaded: its members are read into memory, none is unpacked
    to disk.  The first version whose files are all in the archive (under its folder) is used."""
    wanted = {f"{v.folder}/{f}": v for v in _CIFAR_VERSIONS[kind] for f in v.train + v.test}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if name in wanted and member.isfile():
                    found[name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"{archive}: cannot read the archive ({type(err).__name__}: {err}); "
                         "it is truncated or corrupt") from err
    for version in _CIFAR_VERSIONS[kind]:
        if all(f"{version.folder}/{f}" in found for f in version.train + version.test):
            return _decode_cifar(kind, version, lambda name: found[f"{version.folder}/{name}"], f"{archive}:{version.folder}")
    raise _Missing(f"is an archive without {_cifar_members(kind)}")


def _cifar_members(kind: str) -> str:
    return " or ".join(f"{v.folder}/{{{','.join(v.train + v.test)}}}" for v in _CIFAR_VERSIONS[kind])


def _is_archive(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz", ".tar"))


def _read_location(spec: _Spec, where: Path) -> tuple[_Raw, str]:
    """Read the dataset from a file or folder, or raise :class:`_Missing` saying why not.

    A folder may hold the IDX files or the CIFAR batches directly, one of the conventional
    ``.npz`` names, the folder an official CIFAR archive unpacks to (``cifar-10-batches-py``,
    ``cifar-10-batches-bin``, ...) or the archive itself.  Returns the arrays and the file or
    folder they came from, with its format.
    """
    if where.is_file():
        if where.suffix == ".npz":
            return _read_npz(where), f"{where} (.npz)"
        if spec.kind != "idx" and _is_archive(where):
            return _read_cifar_archive(where, spec.kind), f"{where} (archive, read without unpacking)"
        raise _Missing(f"is a file but not an .npz; give the folder that holds {spec.files_hint()}")
    if not where.is_dir():
        raise _Missing("does not exist")
    reasons = []
    for npz in spec.npz_names:
        if (where / npz).is_file():
            return _read_npz(where / npz), f"{where / npz} (.npz)"
    if spec.kind == "idx":
        try:
            return _read_idx_folder(where), f"{where} (IDX files)"
        except _Missing as err:
            reasons.append(str(err))
    else:
        versions = _CIFAR_VERSIONS[spec.kind]
        for folder in [where] + [where / v.folder for v in versions]:
            if not folder.is_dir():
                continue
            try:
                return _read_cifar_folder(folder, spec.kind), f"{folder} (CIFAR batch files)"
            except _Missing as err:
                reasons.append(f"{folder}: {err}")
        for archive in [where / a for v in versions for a in v.archives]:
            if archive.is_file():
                try:
                    return _read_cifar_archive(archive, spec.kind), f"{archive} (archive, read without unpacking)"
                except _Missing as err:
                    reasons.append(f"{archive}: {err}")
    raise _Missing("; ".join(reasons) or "holds none of the expected files")


def _keras_homes(cache_dir: str | os.PathLike | None) -> list[Path]:
    """Keras cache roots to search: ``cache_dir`` if given, else where Keras itself would look."""
    if cache_dir is not None:
        return [Path(cache_dir).expanduser()]
    if "KERAS_HOME" in os.environ:
        return [Path(os.environ["KERAS_HOME"]).expanduser()]
    # Keras falls back to /tmp/.keras when the home folder is not writable.
    return [Path("~/.keras").expanduser(), Path("/tmp/.keras")]


def _download(spec: _Spec) -> _Raw:
    """Fetch through ``keras.datasets`` (it verifies the files' hashes and caches them)."""
    import importlib

    module = importlib.import_module(f"keras.datasets.{spec.keras_module}")
    (x_train, y_train), (x_test, y_test) = module.load_data()
    return x_train, y_train, x_test, y_test


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def load(
    name: str,
    *,
    path: str | os.PathLike | None = None,
    system_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    seed: int = 0,
) -> Dataset:
    """Load a dataset by name, scaled to the paper's input domain.

    ``name``: one of :data:`NAMES` (``digits``, ``mnist``, ``fashion_mnist``, ``cifar10``,
    ``cifar100``).  ``path``: a folder (IDX files; CIFAR batch files of the python or binary
    version, the folder they come in, or the official ``.tar.gz``; a conventionally named
    ``.npz``), an ``.npz`` file or a CIFAR ``.tar.gz``.  ``system_dir``: replaces the default
    system-wide folder.  ``cache_dir``: the Keras cache root (files live in its ``datasets/``;
    default ``$KERAS_HOME`` or ``~/.keras``).  ``download``: allow a download through
    ``keras.datasets`` as the last resort (it caches into the Keras home, not ``cache_dir``).
    ``seed``: only for ``digits``, which has no official split: it seeds the stratified
    3:1 train/test split.

    A location that does not hold the data is skipped (with a warning if the user named it);
    a location whose files are corrupt raises at once, naming the file.
    """
    key = _canonical(name)
    if key == "digits":
        return _load_digits(seed)
    spec = _SPECS[key]

    tried: list[str] = []
    candidates: list[tuple[str, Path]] = []
    if path is not None:
        candidates.append(("path", Path(path).expanduser()))
    system = [Path(system_dir)] if system_dir is not None else [Path(d) for d in spec.system_dirs]
    candidates += [("system copy", d) for d in system]
    for home in _keras_homes(cache_dir):
        candidates += [("Keras cache", home / "datasets" / entry) for entry in spec.cache_entries]
        if cache_dir is not None:
            # A user-given cache folder may also hold the files directly.
            candidates += [("Keras cache", home / entry) for entry in spec.cache_entries]

    for label, where in candidates:
        try:
            raw, read = _read_location(spec, where)
        except _Missing as err:
            tried.append(f"{label} {where}: {err}")
            if label == "path":
                warnings.warn(f"{spec.name}: {where} {err}; looking elsewhere", stacklevel=2)
            continue
        return _finish(spec, raw, source=f"{label} {read}")

    if download:
        try:
            raw = _download(spec)
        except Exception as err:  # no network, proxy, hash mismatch: all mean "not here"
            tried.append(f"download via keras.datasets.{spec.keras_module}: failed ({type(err).__name__}: {err})")
        else:
            return _finish(spec, raw, source=f"download via keras.datasets.{spec.keras_module} (into the Keras cache)")
    else:
        tried.append("download: not attempted (download=False)")
    raise DataNotFoundError(_not_found_message(spec, tried, system, _keras_homes(cache_dir)[0]))


def _not_found_message(spec: _Spec, tried: list[str], system: list[Path], home: Path) -> str:
    lines = [f"dataset {spec.name!r} not found. Looked in:"]
    lines += [f"  - {t}" for t in tried]
    lines.append("To provide it, do one of:")
    if spec.kind == "idx":
        files = ", ".join(_IDX_FILES)
        if system:
            lines.append(f"  - put {files} into {system[0]}/")
        if spec.name == "fashion_mnist":
            lines.append("    (on Debian/Ubuntu, `apt-get install dataset-fashion-mnist` installs exactly these there)")
        lines.append(
            f"  - put {files} into any folder and pass that folder as path=... (the dataset's path in the config)"
        )
        entry = spec.cache_entries[0]
        if entry.endswith(".npz"):
            lines.append(f"  - put the Keras file {entry} at {home / 'datasets' / entry}")
        else:
            lines.append(f"  - put the same four files into the Keras cache folder {home / 'datasets' / entry}/")
        shapes = f"(N, {spec.shape[0]}, {spec.shape[1]}) or (N, {', '.join(map(str, spec.shape))})"
    else:
        python, binary = _CIFAR_VERSIONS[spec.kind]
        lines.append(
            f"  - pass as path=... the downloaded {python.archives[0]} or {binary.archives[0]} "
            "(read as it is, no need to unpack), or the folder holding it"
        )
        lines.append(
            f"  - or the folder an archive unpacks to: {python.folder}/ ({', '.join(python.train + python.test)}) "
            f"or {binary.folder}/ ({', '.join(binary.train + binary.test)})"
        )
        lines.append(f"  - or put {python.archives[0]} or the folder {python.folder}/ into {home / 'datasets'}/")
        shapes = f"(N, {', '.join(map(str, spec.shape))})"
    lines.append(
        f"  - or pass as path=... an .npz file with arrays x_train, y_train, x_test, y_test "
        f"(raw 0..255 pixel values, images of shape {shapes}, integer labels)"
    )
    return "\n".join(lines)


def _finish(spec: _Spec, raw: _Raw, *, source: str) -> Dataset:
    """Check shapes and labels, scale to the model's input domain, convert to float64 NHWC."""
    x_train, y_train, x_test, y_test = raw
    out = []
    for part, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x = np.asarray(x)
        y = np.asarray(y).reshape(-1).astype(np.int64)
        if x.ndim == 4 and spec.shape[2] == 3 and x.shape[1] == 3 and x.shape[3] != 3:
            x = x.transpose(0, 2, 3, 1)  # channels-first arrays from other tools
        if x.ndim == 3:
            x = x[..., None]
        if x.shape[1:] != spec.shape:
            raise ValueError(f"{source}: {spec.name} {part} images have shape {x.shape[1:]}, expected {spec.shape}")
        if len(x) != len(y):
            raise ValueError(f"{source}: {spec.name} has {len(x)} {part} images but {len(y)} labels")
        if len(y) and (y.min() < 0 or y.max() >= spec.num_classes):
            raise ValueError(
                f"{source}: {spec.name} {part} labels span {y.min()}..{y.max()}, expected 0..{spec.num_classes - 1}"
            )
        out += [spec.scale(x.astype(np.float64)), y]
    return Dataset(*out, input_range=spec.input_range, num_classes=spec.num_classes, name=spec.name, source=source)


def _load_digits(seed: int) -> Dataset:
    """scikit-learn's 8×8 digits: raw values 0..16, a seeded stratified 3:1 train/test split.

    Kept in the raw domain (range (0, 16)) so that the mapping's input-range folding is
    exercised with q − p ≠ 1.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.images.astype(np.float64)[..., None]  # (1797, 8, 8, 1)
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, stratify=y, random_state=seed)
    return Dataset(
        x_train=np.ascontiguousarray(x_train),
        y_train=y_train,
        x_test=np.ascontiguousarray(x_test),
        y_test=y_test,
        input_range=(0.0, 16.0),
        num_classes=10,
        name="digits",
        source="scikit-learn's bundled copy (sklearn.datasets.load_digits)",
    )
