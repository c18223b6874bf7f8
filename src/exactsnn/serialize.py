"""One writer and one reader for every plain object of the pipeline.

Objects are dataclasses whose fields are NumPy arrays, scalars, strings, tuples, lists,
dicts or further dataclasses.  Arrays go into an ``.npz`` archive, everything else into a
JSON document stored in the same archive, so loading never runs code (unlike pickle).
Classes take part by being decorated with :func:`register`, or, several classes under one
saved name, by :func:`register_variants`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

_REGISTRY: dict[str, type] = {}
_META_KEY = "__meta__"


@dataclasses.dataclass(frozen=True)
class _Variants:
    """Classes saved under one name, told apart by the value of the field ``tag``."""

    name: str
    tag: str
    classes: dict  # tag value -> class
    layout: tuple  # the saved fields, in the order they are written
    defaults: dict  # field of ``layout`` -> what a class without it is saved with


_VARIANTS: dict[str, _Variants] = {}  # saved name -> its variants
_VARIANT_OF: dict[type, tuple[_Variants, str]] = {}  # class -> (its variants, its tag value)


def register(cls: type) -> type:
    """Make a dataclass saveable and loadable by name."""
    _REGISTRY[cls.__name__] = cls
    return cls


def register_variants(name: str, tag: str, classes: dict, layout: tuple, defaults: dict) -> None:
    """Save the dataclasses ``classes`` (tag value -> class) under the one name ``name``, each
    with the field ``tag`` set to its tag value, so that the files keep one layout whichever
    class wrote them: all fields of ``layout`` in its order, a field the class lacks as its
    value in ``defaults``.  Reading picks the class by the tag and drops the fields it lacks."""
    variants = _Variants(name, tag, dict(classes), tuple(layout), dict(defaults))
    for value, cls in variants.classes.items():
        own = {f.name for f in dataclasses.fields(cls) if f.init}
        if not own <= set(layout) or not set(layout) - own <= {tag, *defaults}:
            raise TypeError(f"{cls.__name__}: its fields do not fit the saved layout of {name}")
        _VARIANT_OF[cls] = (variants, value)
    _VARIANTS[name] = variants


def _saved_fields(obj: Any) -> tuple[str, dict]:
    """The name ``obj`` is saved under and its saved fields' values."""
    cls = type(obj)
    if cls in _VARIANT_OF:
        variants, value = _VARIANT_OF[cls]
        own = {f.name for f in dataclasses.fields(obj) if f.init}
        fields = {}
        for name in variants.layout:
            if name in own:
                fields[name] = getattr(obj, name)
            else:
                fields[name] = value if name == variants.tag else variants.defaults[name]
        return variants.name, fields
    if cls.__name__ not in _REGISTRY:
        raise TypeError(f"{cls.__name__} is not registered with exactsnn.serialize.register")
    return cls.__name__, {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}


def _encode(obj: Any, arrays: dict[str, np.ndarray], key: str) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        name, fields = _saved_fields(obj)
        return {
            "__class__": name,
            "fields": {k: _encode(v, arrays, f"{key}/{k}") for k, v in fields.items()},
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


class LoadError(ValueError):
    """A saved file that cannot be read back: the message names the file and the array."""


def _decode(doc: Any, arrays: dict, key: str, used: set) -> Any:
    """Rebuild the object whose JSON is ``doc``; ``key`` is its array key in the archive
    (the same path :func:`_encode` wrote), so that an error can name what is broken."""
    if isinstance(doc, list):
        return [_decode(v, arrays, f"{key}/{i}", used) for i, v in enumerate(doc)]
    if isinstance(doc, dict):
        if "__array__" in doc:
            name = doc["__array__"]
            if not isinstance(name, str):
                raise LoadError(f"{key!r}: {name!r} is not an array name")
            if name not in arrays:
                raise LoadError(f"array {name!r} is missing")
            used.add(name)
            return np.asarray(arrays[name])
        if "__tuple__" in doc:
            return tuple(_decode(v, arrays, f"{key}/{i}", used) for i, v in enumerate(_items(doc["__tuple__"], key)))
        if "__dict__" in doc:
            return {k: _decode(v, arrays, f"{key}/{k}", used) for k, v in _mapping(doc["__dict__"], key).items()}
        if "__class__" in doc:
            given = _mapping(doc.get("fields"), key)
            variants = _VARIANTS.get(doc["__class__"]) if isinstance(doc["__class__"], str) else None
            if variants is not None:
                value = given.get(variants.tag)
                cls = variants.classes.get(value) if isinstance(value, str) else None
                if cls is None:
                    raise LoadError(f"{key!r}: unknown {variants.tag} {value!r} of {variants.name}")
                own = {f.name for f in dataclasses.fields(cls) if f.init}
                given = {k: v for k, v in given.items() if k in own or k not in {variants.tag, *variants.defaults}}
            else:
                cls = _REGISTRY.get(doc["__class__"])
            if cls is None:
                raise LoadError(f"{key!r}: unknown object type {doc['__class__']!r}")
            fields = {f.name for f in dataclasses.fields(cls) if f.init}
            unknown = sorted(set(given) - fields)
            if unknown:
                raise LoadError(f"{key!r}: unknown field {unknown[0]!r} for {cls.__name__}")
            values = {k: _decode(v, arrays, f"{key}/{k}", used) for k, v in given.items()}
            try:
                return cls(**values)
            except LoadError:
                raise
            except TypeError as err:  # a required field is missing
                raise LoadError(f"{key!r}: cannot build {cls.__name__} from its saved fields ({_one_line(err)})") from err
            except (ValueError, IndexError, KeyError, AttributeError, ArithmeticError) as err:
                # A field of the wrong kind or shape, caught by the class's own checks.
                raise LoadError(f"{key!r}: {cls.__name__} refused its saved fields ({_one_line(err)})") from err
        raise LoadError(f"{key!r}: unrecognised entry {sorted(doc)[:3]}")
    if doc is None or isinstance(doc, (bool, int, float, str)):
        return doc
    raise LoadError(f"{key!r}: unrecognised entry of type {type(doc).__name__}")


def _items(doc, key) -> list:
    if not isinstance(doc, list):
        raise LoadError(f"{key!r}: expected a list, got {type(doc).__name__}")
    return doc


def _mapping(doc, key) -> dict:
    if not isinstance(doc, dict):
        raise LoadError(f"{key!r}: expected a mapping, got {type(doc).__name__}")
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
    """Load an object written by :func:`save`.

    A broken file (empty, truncated, corrupted, not ours, arrays missing, left over or of
    the wrong length, a field the class does not have) raises :class:`LoadError`, a
    ``ValueError`` whose one-line message names the file and the array; a missing file
    raises ``FileNotFoundError``.  An object whose class has a ``check_loaded(path)`` method
    (the networks, through :mod:`exactsnn.checks`) is also checked as a whole before it is
    returned: its ``ValueError`` becomes the one-line error.
    """

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise LoadError(f"{path}: empty file, not an exactsnn .npz file")
    # A damaged archive can fail in zipfile, zlib, NumPy's header parser or JSON, each
    # with its own exception type; every one of them means the same thing to the caller.
    damaged = (OSError, ValueError, EOFError, KeyError, IndexError, TypeError, RuntimeError,
               zipfile.BadZipFile, zlib.error, UnicodeDecodeError, OverflowError, MemoryError)
    current = _META_KEY
    try:
        archive = np.load(path, allow_pickle=False)
    except damaged as err:
        raise LoadError(f"{path}: not an exactsnn .npz file ({_one_line(err)})") from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise LoadError(f"{path}: not an exactsnn .npz file (a single array)")
    try:
        with archive:
            if _META_KEY not in archive.files:
                raise LoadError(f"{path}: not an exactsnn .npz file (no {_META_KEY} entry)")
            meta = archive[_META_KEY]
            if meta.dtype != np.uint8 or meta.ndim != 1:
                raise LoadError(f"{path}: array {_META_KEY!r} is not the JSON description")
            doc = json.loads(meta.tobytes().decode("utf-8"))
            arrays = {}
            for current in archive.files:
                if current != _META_KEY:
                    arrays[current] = archive[current]
    except LoadError:
        raise
    except damaged as err:
        raise LoadError(f"{path}: array {current!r} cannot be read ({_one_line(err)})") from err
    used: set = set()
    try:
        obj = _decode(doc, arrays, "root", used)
    except LoadError as err:
        raise LoadError(f"{path}: {err}") from err
    except RecursionError as err:
        raise LoadError(f"{path}: the JSON description is nested too deeply") from err
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as err:
        # Entries of the wrong JSON type (a list where a class name belongs, ...).
        raise LoadError(f"{path}: array {_META_KEY!r} holds a malformed description ({_one_line(err)})") from err
    extra = sorted(set(arrays) - used)
    if extra:
        raise LoadError(f"{path}: array {extra[0]!r} is not part of the saved object ({len(extra)} extra arrays)")
    try:
        check = getattr(obj, "check_loaded", None)
        if check is not None:
            check(path)
    except LoadError:
        raise
    except ValueError as err:  # the check's own one-line refusal, which names file and array
        raise LoadError(str(err)) from err
    except (TypeError, IndexError, AttributeError, ArithmeticError) as err:
        # Fields of the wrong type that the dataclasses let through (a string for a shape, ...).
        raise LoadError(f"{path}: the saved network does not fit together ({_one_line(err)})") from err
    return obj


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."
