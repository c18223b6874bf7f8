"""Fuzz test of every load path: broken networks and arrays give one line and exit 2, never a traceback.

Saved networks (a residual conv network with pooling, and its Phase 1 network) and input
arrays are damaged at random, 260 cases in all: byte-level (truncation, byte flips, zeroed
ranges, appended junk, empty files) and structural (an archive rewritten with an array
dropped, added, cut short, reshaped, of another dtype or holding NaN; the JSON description
with a field dropped, added, retyped or renamed).  Each goes through ``exactsnn.serialize.load``
and the command line: a damaged file must be refused with a ``ValueError`` (or
``FileNotFoundError``) whose one-line message names the file, and ``exactsnn inspect`` /
``predict`` must answer 0 or 2 with one line on stderr; anything else (a traceback) fails.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from exactsnn import serialize
from exactsnn.cli import main

keras = pytest.importorskip("keras")

N_BYTE, N_STRUCT, N_ARRAY = 100, 110, 50  # 260 cases


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    import exactsnn
    from exactsnn.importers.keras import import_keras
    from exactsnn.preprocess import preprocess

    tmp = tmp_path_factory.mktemp("fuzz")
    L = keras.layers
    keras.utils.set_random_seed(1)
    inp = keras.Input((6, 6, 1))
    h = L.Conv2D(3, 3, padding="same", activation="relu")(inp)
    r = L.Conv2D(3, 3, padding="same", activation="relu")(h)
    h = L.ReLU()(L.Add()([L.Conv2D(3, 1)(r), h]))
    h = L.MaxPooling2D(2)(h)
    h = L.Dense(5, activation="relu")(L.Flatten()(h))
    model = keras.Model(inp, L.Dense(3)(h))
    x = np.random.default_rng(0).uniform(0, 1, (12, 6, 6, 1))
    net = exactsnn.convert(model, x)
    net.save(tmp / "snn.npz")
    preprocess(import_keras(model), x).save(tmp / "prep.npz")
    np.save(tmp / "x.npy", x[:3])
    return tmp


def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _arrays(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as a:
        return {k: a[k] for k in a.files}


def _write_npz(path, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def _byte_damage(data: bytes, rng) -> bytes:
    kind = rng.integers(5)
    if kind == 0:
        return data[: rng.integers(0, len(data))]
    b = bytearray(data)
    if kind == 1:
        for i in rng.integers(0, len(b), rng.integers(1, 8)):
            b[i] ^= int(rng.integers(1, 256))
    elif kind == 2:
        a = int(rng.integers(0, len(b)))
        b[a : a + int(rng.integers(1, 200))] = bytes(min(len(b) - a, 200))[: len(b[a : a + 200])]
    elif kind == 3:
        b += bytes(rng.integers(0, 256, rng.integers(1, 100), dtype=np.uint8))
    else:
        return b""
    return bytes(b)


def _json_paths(doc, prefix=()):
    """Every (path, value) of the JSON description."""
    yield prefix, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _json_paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _json_paths(v, prefix + (i,))


_REPLACEMENTS = [None, "x", -1, 0, 2.5, 1e308, True, [], [1, "a"], {}, {"__class__": "Nope", "fields": {}},
                 {"__array__": "missing"}, {"__tuple__": 3}, float("nan")]


def _struct_damage(arrays: dict, rng) -> dict:
    arrays = dict(arrays)
    meta = "__meta__"
    names = [k for k in arrays if k != meta]
    kind = rng.integers(9)
    if kind == 0:  # an array missing
        del arrays[names[rng.integers(len(names))]]
    elif kind == 1:  # an array left over
        arrays[f"root/extra{rng.integers(100)}"] = np.zeros(3)
    elif kind == 2:  # an array of the wrong length
        k = names[rng.integers(len(names))]
        a = arrays[k]
        arrays[k] = a.reshape(-1)[: max(0, a.size - int(rng.integers(1, 3)))] if a.size else np.zeros(2)
    elif kind == 3:  # reshaped
        k = names[rng.integers(len(names))]
        arrays[k] = arrays[k].reshape(-1)
    elif kind == 4:  # another dtype
        k = names[rng.integers(len(names))]
        arrays[k] = np.array(["a"] * max(1, arrays[k].size))
    elif kind == 5:  # non-finite values
        k = names[rng.integers(len(names))]
        a = arrays[k].astype(np.float64).copy()
        if a.size:
            a.reshape(-1)[rng.integers(a.size)] = [np.nan, np.inf, -np.inf][rng.integers(3)]
        arrays[k] = a
    else:  # the JSON description: a value replaced, a field added or dropped, bytes damaged
        doc = json.loads(arrays[meta].tobytes().decode())
        paths = [p for p, _ in _json_paths(doc) if p]
        path = paths[rng.integers(len(paths))]
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        if kind == 6:
            parent[path[-1]] = _REPLACEMENTS[rng.integers(len(_REPLACEMENTS))]
        elif kind == 7 and isinstance(parent, dict):
            if rng.integers(2):
                del parent[path[-1]]
            else:
                parent[f"unknown_{rng.integers(9)}"] = 1
        else:
            text = bytearray(json.dumps(doc).encode())
            for i in rng.integers(0, len(text), rng.integers(1, 4)):
                text[i] = int(rng.integers(32, 127))
            arrays[meta] = np.frombuffer(bytes(text), np.uint8)
            return arrays
        arrays[meta] = np.frombuffer(json.dumps(doc).encode(), np.uint8)
    return arrays


def _one_line_or_ok(rc: int, err: str, path) -> None:
    assert rc in (0, 2), (rc, err)
    if rc == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("exactsnn: error:"), err
        assert str(path) in lines[0], err


def _check_load(path) -> bool:
    """serialize.load refuses in one line naming the file, or gives an object; True if it loaded."""
    try:
        serialize.load(path)
    except (ValueError, FileNotFoundError) as err:
        text = str(err)
        assert "\n" not in text and str(path) in text, text
        return False
    return True


def test_damaged_networks_never_give_a_traceback(saved, capsys):
    rng = np.random.default_rng(17)
    originals = {name: (saved / name).read_bytes() for name in ("snn.npz", "prep.npz")}
    structures = {name: _arrays(saved / name) for name in originals}
    refused = loaded = 0
    for case in range(N_BYTE + N_STRUCT):
        name = ("snn.npz", "prep.npz")[case % 2]
        path = saved / f"damaged_{case}.npz"
        if case < N_BYTE:
            path.write_bytes(_byte_damage(originals[name], rng))
        else:
            _write_npz(path, _struct_damage(structures[name], rng))
        ok = _check_load(path)
        loaded += ok
        refused += not ok
        capsys.readouterr()
        if name == "snn.npz":
            _one_line_or_ok(main(["inspect", str(path)]), capsys.readouterr().err, path)
            # Whatever loads must also simulate without a traceback (a few: each new network
            # costs a second of TensorFlow tracing).
            if ok and loaded <= 6:
                rc = main(["predict", str(path), str(saved / "x.npy"), "-o", str(saved / "out.npz")])
                _one_line_or_ok(rc, capsys.readouterr().err, path)
        path.unlink()
    assert refused >= 0.8 * (N_BYTE + N_STRUCT), (refused, loaded)


def test_damaged_input_arrays_never_give_a_traceback(saved, capsys, monkeypatch):
    import exactsnn.simulator

    simulated = []
    real = exactsnn.simulator.simulate
    monkeypatch.setattr(exactsnn.simulator, "simulate", lambda *a, **k: (simulated.append(1), real(*a, **k))[1])
    rng = np.random.default_rng(18)
    original = (saved / "x.npy").read_bytes()
    x = np.load(saved / "x.npy")
    for case in range(N_ARRAY):
        path = saved / f"x_damaged_{case}.npy"
        wrong = None
        if case % 2:
            path.write_bytes(_byte_damage(original, rng))
        else:  # well-formed files holding the wrong thing: refused, not simulated
            wrong = [x[..., 0], x.astype(np.float32) * np.nan, x * 100, np.array(["a"] * 3), x.reshape(3, -1),
                     np.where(x > 0.5, np.inf, x), x.astype(bool), -x][case // 2 % 8]
            np.save(path, wrong)
        rc = main(["predict", str(saved / "snn.npz"), str(path), "-o", str(saved / "out.npz")])
        _one_line_or_ok(rc, capsys.readouterr().err, path)
        assert wrong is None or rc == 2, (case, rc)
        path.unlink()
    assert simulated  # some damaged files still hold valid inputs, and those are simulated
