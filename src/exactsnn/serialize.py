"""One writer and one reader for every plain object of the pipeline.

Objects are dataclasses whose fields are NumPy arrays, scalars, strings, tuples, lists,
dicts or further dataclasses.  Arrays go into an ``.npz`` archive, everything else into a
JSON document stored in the same archive, so loading never runs code (unlike pickle).
Classes take part by being decorated with :func:`register`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

_REGISTRY: dict[str, type] = {}
_META_KEY = "__meta__"


def register(cls: type) -> type:
    """Make a dataclass saveable and loadable by name."""
    _REGISTRY[cls.__name__] = cls
    return cls


def _encode(obj: Any, arrays: dict[str, np.ndarray], key: str) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        name = type(obj).__name__
        if name not in _REGISTRY:
            raise TypeError(f"{name} is not registered with exactsnn.serialize.register")
        return {
            "__class__": name,
            "fields": {
                f.name: _encode(getattr(obj, f.name), arrays, f"{key}/{f.name}")
                for f in dataclasses.fields(obj)
                if f.init
            },
        }
    if isinstance(obj, np.ndarray):
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays, f"{key}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, arrays, f"{key}/{i}") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"{key}: only dicts with string keys can be saved")
        return {"__dict__": {k: _encode(v, arrays, f"{key}/{k}") for k, v in obj.items()}}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"{key}: cannot save a value of type {type(obj).__name__}")


def _decode(doc: Any, arrays: Any) -> Any:
    if isinstance(doc, list):
        return [_decode(v, arrays) for v in doc]
    if isinstance(doc, dict):
        if "__array__" in doc:
            return np.asarray(arrays[doc["__array__"]])
        if "__tuple__" in doc:
            return tuple(_decode(v, arrays) for v in doc["__tuple__"])
        if "__dict__" in doc:
            return {k: _decode(v, arrays) for k, v in doc["__dict__"].items()}
        if "__class__" in doc:
            cls = _REGISTRY.get(doc["__class__"])
            if cls is None:
                raise ValueError(f"unknown object type {doc['__class__']!r} in saved file")
            return cls(**{k: _decode(v, arrays) for k, v in doc["fields"].items()})
    return doc


def atomic_path(path: str | os.PathLike) -> tuple[Path, Path]:
    """A temporary sibling of ``path``, so a finished file appears in one ``os.replace``.

    The temporary keeps the file's suffixes: writers that infer the format from the name
    (matplotlib, pandas) write the right one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix="".join(path.suffixes), dir=path.parent)
    os.close(fd)
    # mkstemp makes the file private (0600); give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return path, Path(tmp)


@contextlib.contextmanager
def atomic(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; when the block ends without error it becomes
    ``path`` in one ``os.replace``, otherwise it is removed.  An interrupted job leaves
    nothing that looks finished."""
    path, tmp = atomic_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save(obj: Any, path: str | os.PathLike) -> None:
    """Save ``obj`` to ``path`` (an ``.npz`` archive), atomically."""
    arrays: dict[str, np.ndarray] = {}
    doc = _encode(obj, arrays, "root")
    meta = np.frombuffer(json.dumps(doc).encode("utf-8"), dtype=np.uint8)
    with atomic(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{_META_KEY: meta}, **arrays)


def load(path: str | os.PathLike) -> Any:
    """Load an object written by :func:`save`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not an exactsnn .npz file ({err})") from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not an exactsnn .npz file (a single array)")
    with archive:
        if _META_KEY not in archive.files:
            raise ValueError(f"{path}: not an exactsnn .npz file (no {_META_KEY} entry)")
        doc = json.loads(archive[_META_KEY].tobytes().decode("utf-8"))
        arrays = {k: archive[k] for k in archive.files if k != _META_KEY}
    return _decode(doc, arrays)
